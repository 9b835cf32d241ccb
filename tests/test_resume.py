"""Resume at scale: tag lists stored once in the audit log, the scratch resume index,
compaction that keeps what kept records refer to, torn lines.

End to end through the real pipeline (``anonymizer.pipeline.run``, one job) on the sample
data; the log format and the index on logs written with the real :class:`AuditLog`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA

from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.pipeline import RunConfig, commit, resume, run
from anonymizer.pipeline.audit import (
    AuditLog,
    encode_list,
    iter_records,
    list_id,
    read_records,
)
from anonymizer.pipeline.resume import DoneIndex, PreviousRuns, compact

AUDIT = "audit.jsonl"
SAMPLE_COUNT = sum(1 for p in SAMPLE_DATA.rglob("*") if p.is_file())
#: what a rerun with nothing to do counts: every DICOM file done, the one that is not
#: skipped again
NOTHING_TO_DO = {"unchanged": SAMPLE_COUNT - 1, "skipped": 1}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _assert_refs_defined_before_use(records: list[dict]) -> None:
    """Every ``tags_ref`` / ``warnings_ref`` names a definition on an earlier line; one
    definition per id."""
    defined: set[tuple[str, str]] = set()
    for record in records:
        kind = record["type"]
        if kind in ("tags", "warnings"):
            assert (kind, record["id"]) not in defined, f"a {kind} list defined twice"
            assert record["id"] == list_id(record[kind])
            defined.add((kind, record["id"]))
        elif kind == "file":
            for name in ("tags", "warnings"):
                if f"{name}_ref" in record:
                    assert (name, record[f"{name}_ref"]) in defined
                    assert name not in record


def _run(source: Path, out: Path, key_file: Path) -> dict[str, int]:
    summary = run(RunConfig(source, out, "research", key_file=str(key_file), jobs=1,
                            progress=False))
    return dict(summary.counts)


@pytest.fixture()
def done_run(sample_copy: Path, tmp_path: Path, key_file: Path) -> Path:
    out = tmp_path / "out"
    assert _run(sample_copy, out, key_file) == {"written": SAMPLE_COUNT - 1, "skipped": 1}
    return out


# --------------------------------------------------------------------------- the log format

def test_a_tag_list_is_written_once_and_referred_to(tmp_path: Path):
    log = AuditLog(tmp_path / AUDIT)
    first, second = [["(0010,0010)", "Z"], ["(0008,1140)>(0008,1155)", "U"]], [["(0010,0020)", "X"]]
    for token, tags in (("a", first), ("b", second), ("c", first), ("d", [])):
        log.write({"type": "file", "input": token, "status": "written", "tags": tags})
    log.close()
    records = _lines(tmp_path / AUDIT)
    assert [r["type"] for r in records] == ["tags", "file", "tags", "file", "file", "file"]
    _assert_refs_defined_before_use(records)
    assert records[4]["tags_ref"] == records[1]["tags_ref"] == list_id(first)
    assert records[5]["tags"] == []  # nothing acted on: nothing to refer to
    # readers get the lists back, in place of the references
    resolved = {r["input"]: r["tags"] for r in read_records(tmp_path / AUDIT)}
    assert resolved == {"a": first, "b": second, "c": first, "d": []}
    assert all(r["type"] != "tags" for r in read_records(tmp_path / AUDIT))
    assert any(r["type"] == "tags" for r in iter_records(tmp_path / AUDIT))


@pytest.mark.parametrize("values", [
    [["(0010,0010)", "Z"], ["(0008,1140)>(0008,1155)", "U"]],
    # the engine's shape: pairs as tuples (hashable: through encode_list's memo)
    [("(0010,0010)", "Z"), ("(0008,1140)>(0008,1155)", "U")],
    ['quote " backslash \\ tab \t', "Ä non-ASCII, \u2028 line separator", "</script>"],
    [["(0009,10xx) \"CREATOR\"", "K"]],
])
def test_a_list_encoded_in_the_worker_is_logged_as_the_list_itself(tmp_path: Path, values):
    """Workers send their lists encoded (:func:`encode_list`): the log must not change."""
    as_read = json.loads(json.dumps(values))  # JSON has no tuples
    logs = {}
    for how, given in (("list", values), ("encoded", encode_list(values))):
        log = AuditLog(tmp_path / how)
        log.write({"type": "file", "input": "a", "status": "written", "tags": given,
                   "warnings": given})
        log.close()
        logs[how] = (tmp_path / how).read_bytes()
    assert logs["encoded"] == logs["list"]
    # the very line json.dumps writes (earlier runs' definitions are the same lines)
    assert logs["list"].splitlines()[0] == json.dumps(
        {"type": "tags", "id": list_id(values), "tags": values},
        ensure_ascii=True, separators=(",", ":")).encode("ascii")
    assert [r["tags"] for r in read_records(tmp_path / "encoded")] == [as_read]
    assert list(encode_list(values)) == as_read  # readable as sent
    assert encode_list([]) == []  # written as an empty list, not referred to


def test_a_list_changed_after_it_was_encoded_is_encoded_anew() -> None:
    """Workers encode each distinct list once: by its contents when it was given, so a
    list the caller changes later (or another with the same contents) is never taken for
    the one encoded before."""
    values = [("(0010,0010)", "Z")]
    first = encode_list(values)
    values.append(("(0010,0020)", "Z"))
    second = encode_list(values)
    assert list(first) == [["(0010,0010)", "Z"]]
    assert list(second) == [["(0010,0010)", "Z"], ["(0010,0020)", "Z"]]
    assert second.id == list_id(values) != first.id
    assert encode_list([("(0010,0010)", "Z")]) == first


def test_warnings_are_shared_the_same_way(tmp_path: Path):
    log = AuditLog(tmp_path / AUDIT)
    warned = ["(0040,0009): Type 1 attribute removed"]
    for token, warnings in (("a", warned), ("b", warned), ("c", [])):
        log.write({"type": "file", "input": token, "status": "written", "tags": [],
                   "warnings": warnings})
    log.close()
    records = _lines(tmp_path / AUDIT)
    assert [r["type"] for r in records] == ["warnings", "file", "file", "file"]
    _assert_refs_defined_before_use(records)
    assert {r["input"]: r["warnings"] for r in read_records(tmp_path / AUDIT)} == {
        "a": warned, "b": warned, "c": []}


def test_the_same_list_has_the_same_id_in_every_run(tmp_path: Path):
    tags = [["(0010,0010)", "Z"]]
    for token in ("a", "b"):  # two writers: two runs
        log = AuditLog(tmp_path / AUDIT)
        log.write({"type": "file", "input": token, "status": "written", "tags": tags})
        log.close()
    definitions = [r for r in _lines(tmp_path / AUDIT) if r["type"] == "tags"]
    assert len(definitions) == 2 and definitions[0] == definitions[1]
    assert list_id(tags) != list_id([["(0010,0010)", "X"]])


def test_a_run_logs_tag_lists_by_reference(done_run: Path):
    records = _lines(done_run / AUDIT)
    files = [r for r in records if r["type"] == "file"]
    assert len(files) == SAMPLE_COUNT
    assert all("tags_ref" in r for r in files if r["status"] == "written")
    _assert_refs_defined_before_use(records)
    # distinct lists are fewer than files: that is where the log gets smaller
    assert sum(r["type"] == "tags" for r in records) < len(files)
    resolved = [r for r in read_records(done_run / AUDIT) if r["type"] == "file"]
    assert all(r["tags"] for r in resolved if r["status"] == "written")


# --------------------------------------------------------------------------- resume, compaction

def test_resume_over_a_log_with_references(done_run: Path, sample_copy: Path, key_file: Path):
    before = (done_run / AUDIT).read_bytes()
    assert _run(sample_copy, done_run, key_file) == NOTHING_TO_DO
    changed = sorted(p for p in sample_copy.rglob("*.dcm"))[0]
    changed.write_bytes(changed.read_bytes() + b"\0\0")  # new content: processed again
    counts = _run(sample_copy, done_run, key_file)
    assert counts == {"unchanged": SAMPLE_COUNT - 2, "written": 1, "skipped": 1}
    records = _lines(done_run / AUDIT)
    _assert_refs_defined_before_use(records)
    assert sum(r["type"] == "file" for r in records) == SAMPLE_COUNT
    assert sum(r["type"] == "run_start" for r in records) == 3
    assert len((done_run / AUDIT).read_bytes()) < len(before) + 4096  # no second copy
    # nothing of the scratch index stays beside the log
    assert not [p for p in done_run.iterdir() if p.name.endswith(".index")]


def test_compaction_keeps_the_definitions_kept_records_refer_to(tmp_path: Path, spill: bool):
    path = tmp_path / AUDIT
    old, kept, new = [["(0010,0010)", "Z"]], [["(0010,0020)", "X"]], [["(0010,0030)", "D"]]
    for run_number, files in enumerate(({"a": old, "b": kept}, {"a": new})):
        log = AuditLog(path)
        log.write({"type": "run_start", "n": run_number})
        for token, tags in files.items():
            log.write({"type": "file", "input": token, "status": "written", "tags": tags})
        log.write({"type": "run_end", "n": run_number})
        log.close()
    compact(path)
    records = _lines(path)
    _assert_refs_defined_before_use(records)
    assert {r["id"] for r in records if r["type"] == "tags"} == {list_id(kept), list_id(new)}
    assert {r["input"]: r["tags"] for r in read_records(path) if r["type"] == "file"} == {
        "a": new, "b": kept}
    assert [r["type"] for r in records][:3] == ["run_start", "run_end", "run_start"]
    assert records[-1] == {"type": "run_end", "n": 1, "compacted": True}  # marked


def test_compaction_keeps_one_definition_of_a_list_two_runs_wrote(tmp_path: Path):
    path = tmp_path / AUDIT
    tags = [["(0010,0010)", "Z"]]
    for token in ("a", "b"):
        log = AuditLog(path)
        log.write({"type": "file", "input": token, "status": "written", "tags": tags})
        log.close()
    compact(path)
    records = _lines(path)
    assert [r["type"] for r in records] == ["tags", "file", "file"]
    _assert_refs_defined_before_use(records)


def test_a_torn_last_line_is_skipped_and_the_next_run_starts_on_its_own_line(
        done_run: Path, sample_copy: Path, key_file: Path):
    with open(done_run / AUDIT, "a", encoding="utf-8") as handle:
        handle.write('{"type":"file","input":"0123456789abcdef0123456789abcdef","sta')
    previous = PreviousRuns.load(done_run / AUDIT)
    assert len(previous.latest) == SAMPLE_COUNT
    previous.close()
    assert _run(sample_copy, done_run, key_file) == NOTHING_TO_DO
    records = _lines(done_run / AUDIT)  # every line is whole JSON again
    assert sum(r["type"] == "run_start" for r in records) == 2
    assert sum(r["type"] == "file" for r in records) == SAMPLE_COUNT


# --------------------------------------------------------------------------- the index

def _synthetic_log(path: Path, count: int) -> None:
    log = AuditLog(path)
    log.write({"type": "run_start", "profile_sha256": "p", "key_fingerprint": "k",
               "layout": "mirror"})
    for number in range(count):
        log.write({"type": "file", "input": f"{number:032x}", "status": "written",
                   "output": f"series-{number % 97}/image-{number:08d}.dcm",
                   "input_sha256": f"{number:064x}", "tags": [["(0010,0010)", "Z"]]})
        if number % 1000 == 999:
            log.flush()
    log.close()


@pytest.fixture(params=["in memory", "spilled to disk", "on disk from the start"])
def spill(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """The index small (in memory), moved to its scratch file as it grows (at once), or
    built there from the start (the log is larger than the spill size); true: on disk."""
    if request.param != "in memory":
        monkeypatch.setattr(resume, "SPILL_BYTES", 0)
        monkeypatch.setattr(resume, "_SPILL_CHECK_ROWS", 1)
    if request.param == "spilled to disk":  # a log too small to start on disk
        monkeypatch.setattr(resume, "_large_log", lambda path: False)
    return request.param != "in memory"


def _open_scratch_indexes() -> list[str]:
    """The scratch index files this process holds open (unlinked at once: "(deleted)")."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed since
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [link for link in links if ".index" in link and TEMP_PREFIX in link]


def test_the_runs_index_is_closed_before_the_log_is_compacted(
        sample_copy: Path, tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch):
    """Compaction builds an index of its own: the run's (in its scratch file here) is gone
    by then, so that the two never take the parent's memory at once."""
    monkeypatch.setattr(resume, "SPILL_BYTES", 0)
    monkeypatch.setattr(resume, "_SPILL_CHECK_ROWS", 1)
    held: list[list[str]] = []

    def compact_and_look(path: Path) -> None:
        held.append(_open_scratch_indexes())
        compact(path)

    monkeypatch.setattr(commit, "compact", compact_and_look)
    out = tmp_path / "out"
    assert _run(sample_copy, out, key_file) == {"written": SAMPLE_COUNT - 1, "skipped": 1}
    assert _run(sample_copy, out, key_file) == NOTHING_TO_DO
    assert held == [[], []]


def test_an_index_known_to_be_large_starts_in_its_scratch_file(tmp_path: Path):
    """Never in memory (no copy to the file later: both at once were the parent's peak on
    a large run), the file unlinked at once; where no file can be made, in memory."""
    large = resume._LazyDatabase(tmp_path / AUDIT, large=True)  # noqa: SLF001
    try:
        large.get().execute("INSERT INTO claims VALUES ('a.dcm', 't')")
        assert not large._in_memory  # noqa: SLF001
        assert list(tmp_path.iterdir()) == []
    finally:
        large.close()
    no_room = resume._LazyDatabase(tmp_path / "gone" / AUDIT, large=True)  # noqa: SLF001
    try:
        no_room.get().execute("INSERT INTO claims VALUES ('a.dcm', 't')")
        assert no_room._in_memory  # noqa: SLF001
    finally:
        no_room.close()


def test_a_log_over_the_spill_size_is_indexed_in_a_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / AUDIT
    _synthetic_log(path, 100)
    monkeypatch.setattr(resume, "SPILL_BYTES", path.stat().st_size - 1)
    previous = PreviousRuns.load(path)
    try:
        assert len(previous.latest) == 100
        assert not previous._database._in_memory  # noqa: SLF001
    finally:
        previous.close()
    monkeypatch.setattr(resume, "SPILL_BYTES", path.stat().st_size)
    previous = PreviousRuns.load(path)
    try:
        assert previous._database._in_memory  # noqa: SLF001
    finally:
        previous.close()


def test_the_index_answers_like_the_log(tmp_path: Path, spill: bool):
    path = tmp_path / AUDIT
    _synthetic_log(path, 3000)
    with open(path, "a", encoding="utf-8") as handle:  # a later run failed one input
        handle.write(json.dumps({"type": "file", "input": f"{7:032x}", "status": "failed",
                                 "reason": "read: x", "output": None}) + "\n")
    previous = PreviousRuns.load(path)
    try:
        assert isinstance(previous.latest, DoneIndex)
        assert previous.settings == {"profile_sha256": "p", "key_fingerprint": "k",
                                     "layout": "mirror"}
        assert len(previous.latest) == 3000 and bool(previous.latest)
        done = previous.latest[f"{5:032x}"]
        assert done == ("written", f"{5:064x}", "series-5/image-00000005.dcm", None)
        assert previous.latest.get(f"{7:032x}") == ("failed", None, None, None)
        assert previous.latest.get("absent") is None and "absent" not in previous.latest
        claims = previous.claims()
        assert len(claims) == 2999 and f"{7:032x}" not in set(claims.values())
        assert claims["series-5/image-00000005.dcm"] == f"{5:032x}"
        claims["new.dcm"] = "t"
        del claims["series-5/image-00000005.dcm"]
        assert claims.get("new.dcm") == "t" and "series-5/image-00000005.dcm" not in claims
        previous.latest["t"] = previous.latest[f"{5:032x}"]._replace(output="new.dcm")
        assert previous.latest["t"].output == "new.dcm"
        assert previous._database._in_memory is not spill  # noqa: SLF001
        # the input hash is stored as its 32 bytes, not as text
        database = previous._database.get()  # noqa: SLF001 - the storage is what is tested
        if spill:  # the small cache of the copy into the file is not the index's
            assert database.execute("PRAGMA cache_size").fetchone()[0] == \
                -resume.INDEX_CACHE_KIB
        assert database.execute("SELECT typeof(sha), length(sha) FROM done WHERE token = ?",
                                (f"{5:032x}",)).fetchone() == ("blob", 32)
    finally:
        previous.close()
    assert not [p for p in tmp_path.iterdir() if p.name != AUDIT]


def test_loading_holds_no_python_object_per_input(tmp_path: Path):
    """Python memory while a log is indexed stays flat: twice the inputs, the same peak
    (a dict of records grows with them: about 0.3 KiB per input)."""
    peaks = []
    for count in (4000, 8000):
        path = tmp_path / f"{count}.jsonl"
        _synthetic_log(path, count)
        tracemalloc.start()
        previous = PreviousRuns.load(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(previous.latest) == count
        previous.close()
        peaks.append(peak)
    assert peaks[1] < peaks[0] * 1.25 + 65536
    assert peaks[1] < 8000 * 300 / 2


def test_an_empty_start_creates_no_file_until_a_claim(tmp_path: Path):
    previous = PreviousRuns.load(tmp_path / AUDIT)
    assert not previous.latest and previous.latest.get("x") is None
    assert os.listdir(tmp_path) == []
    claims = previous.claims()
    claims["a.dcm"] = "t"
    assert claims["a.dcm"] == "t" and os.listdir(tmp_path) == []  # unlinked at once
    previous.close()
