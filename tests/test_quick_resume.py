"""The resume's quick check: an input whose keyed stat digest (size, mtime, ctime, inode,
device) is the one recorded when it was written, and whose output is there, is not read
again; a touched, racy or replaced input is read and hashed; ``--rehash`` reads them all.

End to end through the real pipeline (one job: the worker runs in this process, so a
Python audit hook sees every file it opens, also as root, where ``chmod 000`` stops
nothing) and through the CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import KEY_A, SAMPLE_DATA
from pipeline_helpers import AUDIT, anonymize, audit_records, cli, file_records, input_token

from anonymizer.keyed import KeyedSource
from anonymizer.pipeline import RunConfig, run
from anonymizer.pipeline.resume import PreviousRuns, compact, ends_compacted
from anonymizer.pipeline.worker import RACY_NS

SAMPLE_FILES = sorted(p.relative_to(SAMPLE_DATA).as_posix()
                      for p in SAMPLE_DATA.rglob("*") if p.is_file())
NOT_DICOM = "DOE^JOHN_12345678/notes.txt"  # skipped, so read by every run
DOE_CT = "DOE^JOHN_12345678/20190101_CT_CHEST/IM0001.dcm"
ROE_HEAD = "ROE^RICHARD_99887766/20220911_CT_HEAD/IM0001.dcm"
DICOM_COUNT = len(SAMPLE_FILES) - 1

#: paths opened for reading while :func:`opened_under` watches (None: not watching)
_opened: list[str] | None = None


def _audit_hook(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit_hook)  # for the whole session: it records nothing unless watching


def opened_under(root: Path, action: Callable[[], object]) -> set[str]:
    """The files under ``root`` (relative) this process opened while ``action`` ran."""
    global _opened
    _opened = []
    try:
        action()
        opened = _opened
    finally:
        _opened = None
    prefix = str(root) + os.sep
    return {path[len(prefix):] for path in opened if path.startswith(prefix)}


@pytest.fixture(scope="module")
def aged_trees(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """Copies of the sample data whose files were last changed more than the racy window
    before the tests read them (one wait for the whole module)."""
    root = tmp_path_factory.mktemp("aged")
    trees = []
    for number in range(6):
        shutil.copytree(SAMPLE_DATA, root / f"in{number}")
        trees.append(root / f"in{number}")
    time.sleep(RACY_NS / 1e9 + 0.2)
    yield trees


@pytest.fixture()
def aged(aged_trees: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An input folder of its own, not racy (one more copy and wait once the module's
    are used up: a new test, a rerun)."""
    if not aged_trees:
        tree = tmp_path_factory.mktemp("aged-more") / "in"
        shutil.copytree(SAMPLE_DATA, tree)
        time.sleep(RACY_NS / 1e9 + 0.2)
        return tree
    return aged_trees.pop()


def _run(source: Path, out: Path, key_file: Path, rehash: bool = False) -> dict[str, int]:
    summary = run(RunConfig(source, out, "research", key_file=str(key_file), jobs=1,
                            progress=False, rehash=rehash))
    return dict(summary.counts)


def _records(out: Path) -> list[dict]:
    return audit_records(out / AUDIT)


def _file_records(out: Path) -> dict[str, dict]:
    return {r["input"]: r for r in file_records(out)}


def _token(relative: str) -> str:
    return input_token(KeyedSource(KEY_A), relative)


def _same_size_change(path: Path) -> None:
    """Another byte in the patient's name: the same size, other content."""
    data = path.read_bytes()
    assert b"DOE^JOHN" in data
    path.write_bytes(data.replace(b"DOE^JOHN", b"DOE^JOHM", 1))


FIRST = {"written": DICOM_COUNT, "skipped": 1}
NOTHING_TO_DO = {"unchanged": DICOM_COUNT, "skipped": 1}


def test_an_unchanged_tree_is_not_read(aged: Path, tmp_path: Path, key_file: Path):
    out = tmp_path / "out"
    assert _run(aged, out, key_file) == FIRST
    written = [r for r in _file_records(out).values() if r["status"] == "written"]
    assert len(written) == DICOM_COUNT
    assert all(re.fullmatch(r"[0-9a-f]{32}", r["input_stat"]) for r in written)
    counts: dict[str, int] = {}
    opened = opened_under(aged, lambda: counts.update(_run(aged, out, key_file)))
    assert counts == NOTHING_TO_DO
    assert opened == {NOT_DICOM}  # the one input not written is read again, no other
    opened = opened_under(aged, lambda: counts.update(_run(aged, out, key_file, rehash=True)))
    assert counts == NOTHING_TO_DO
    assert opened == set(SAMPLE_FILES)  # --rehash reads every input
    starts = [r for r in _records(out) if r["type"] == "run_start"]
    assert [r["resume_check"] for r in starts] == ["stat", "stat", "sha256"]


def test_a_touched_file_is_rehashed_and_keeps_its_output(aged: Path, tmp_path: Path,
                                                          key_file: Path):
    out = tmp_path / "out"
    assert _run(aged, out, key_file) == FIRST
    before = _file_records(out)[_token(DOE_CT)]
    output = out / before["output"]
    output_mtime = output.stat().st_mtime_ns
    later = time.time_ns() - RACY_NS - 10**9  # a new time, yet not racy
    os.utime(aged / DOE_CT, ns=(later, later))  # ctime moves to now: racy for a moment
    time.sleep(RACY_NS / 1e9 + 0.2)
    opened = opened_under(aged, lambda: _run(aged, out, key_file))
    assert opened == {DOE_CT, NOT_DICOM}
    records = _file_records(out)
    after = records[_token(DOE_CT)]
    assert after["status"] == "written" and after["output"] == before["output"]
    assert after["input_stat"] != before["input_stat"]  # the new stat, folded into its record
    assert {k: v for k, v in after.items() if k != "input_stat"} == \
        {k: v for k, v in before.items() if k != "input_stat"}
    assert output.stat().st_mtime_ns == output_mtime  # not written again
    assert not [r for r in _records(out) if r["type"] == "stat"]  # compacted away
    assert len(records) == len(SAMPLE_FILES)  # still one record per input
    # and the next run trusts the new stat
    assert opened_under(aged, lambda: _run(aged, out, key_file)) == {NOT_DICOM}


def test_a_file_changed_within_the_racy_window_is_processed_again(
        tmp_path: Path, key_file: Path):
    source, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(SAMPLE_DATA, source)  # just written: every input is racy
    target = source / DOE_CT
    assert _run(source, out, key_file) == FIRST
    record = _file_records(out)[_token(DOE_CT)]
    assert "input_stat" not in record  # racy: nothing that a later write could fool
    info = target.stat()
    _same_size_change(target)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert target.stat().st_size == info.st_size
    assert _run(source, out, key_file) == {"written": 1, "unchanged": DICOM_COUNT - 1,
                                           "skipped": 1}
    again = _file_records(out)[_token(DOE_CT)]
    assert again["input_sha256"] != record["input_sha256"]


def test_a_file_replaced_with_the_same_size_and_mtime_is_processed_again(
        aged: Path, tmp_path: Path, key_file: Path):
    out = tmp_path / "out"
    assert _run(aged, out, key_file) == FIRST
    target = aged / DOE_CT
    info = target.stat()
    replacement = target.with_name("replacement")
    shutil.copyfile(target, replacement)
    _same_size_change(replacement)
    os.utime(replacement, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.replace(replacement, target)
    assert target.stat().st_ino != info.st_ino
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (info.st_size,
                                                                  info.st_mtime_ns)
    before = _file_records(out)[_token(DOE_CT)]
    assert _run(aged, out, key_file) == {"written": 1, "unchanged": DICOM_COUNT - 1,
                                         "skipped": 1}
    after = _file_records(out)[_token(DOE_CT)]
    assert after["input_sha256"] != before["input_sha256"]


def _standalone(number: int) -> re.Pattern[str]:
    """``number`` written as a number of its own (not inside a hex digest)."""
    return re.compile(rf"(?<![0-9a-fA-F.]){number}(?![0-9a-fA-F])")


def test_the_log_holds_no_raw_stat(aged: Path, tmp_path: Path, key_file: Path):
    out = tmp_path / "out"
    assert _run(aged, out, key_file) == FIRST
    recorded = _file_records(out)[_token(ROE_HEAD)]["input_stat"]
    os.utime(aged / ROE_HEAD)  # a stat record, then folded into the record
    time.sleep(RACY_NS / 1e9 + 0.2)
    assert _run(aged, out, key_file) == NOTHING_TO_DO
    assert _file_records(out)[_token(ROE_HEAD)]["input_stat"] not in (recorded, None)
    log = (out / AUDIT).read_text()
    for relative in SAMPLE_FILES:
        info = (aged / relative).stat()
        for number in (info.st_mtime_ns, info.st_ctime_ns, int(info.st_mtime),
                       int(info.st_ctime), info.st_ino, info.st_size):
            assert not _standalone(number).search(log), (relative, number)


def test_rehash_catches_what_the_stat_cannot_see(aged: Path, tmp_path: Path,
                                                 key_file: Path):
    """A log whose hash no longer matches the input (as when bytes change under an
    unchanged stat): the quick check keeps the earlier output, ``--rehash`` reads the input
    and writes it again. Through the CLI, with ``report`` after each run."""
    out = tmp_path / "out"
    assert anonymize(aged, out, key_file, "-p", "research", "-j", "2").returncode == 0
    token = _token(DOE_CT)
    lines = (out / AUDIT).read_text().splitlines(keepends=True)
    stale = "0" * 64
    edited = [line.replace(json.loads(line)["input_sha256"], stale)
              if json.loads(line).get("input") == token else line for line in lines]
    (out / AUDIT).write_text("".join(edited))
    quick = anonymize(aged, out, key_file, "-p", "research", "-j", "2")
    assert quick.returncode == 0 and "anonymizer: 0 written," in quick.stderr, quick.stderr
    assert _file_records(out)[token]["input_sha256"] == stale  # trusted by its stat
    report = cli("report", out / AUDIT)
    assert report.returncode == 0 and f"{DICOM_COUNT} written" in report.stdout
    full = anonymize(aged, out, key_file, "-p", "research", "-j", "2", "--rehash")
    assert full.returncode == 0 and "anonymizer: 1 written," in full.stderr, full.stderr
    assert _file_records(out)[token]["input_sha256"] != stale
    starts = [r for r in _records(out) if r["type"] == "run_start"]
    assert [r["resume_check"] for r in starts] == ["stat", "stat", "sha256"]
    assert cli("report", out / AUDIT).returncode == 0


# --------------------------------------------------------------------------- the index

def _log(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))


def test_stat_records_update_the_index_and_are_folded_by_compaction(tmp_path: Path):
    path = tmp_path / AUDIT
    file_a = {"type": "file", "input": "a" * 32, "status": "written", "output": "a.dcm",
              "input_sha256": "1" * 64, "input_stat": "2" * 32}
    file_b = {"type": "file", "input": "b" * 32, "status": "written", "output": "b.dcm",
              "input_sha256": "3" * 64, "input_stat": "4" * 32}
    _log(path, [{"type": "run_start"}, file_a, file_b, {"type": "run_end"},
                {"type": "run_start"}, {"type": "stat", "input": "a" * 32, "input_stat": "5" * 32},
                {"type": "stat", "input": "b" * 32, "input_stat": "6" * 32},
                {**file_b, "input_sha256": "7" * 64, "input_stat": "8" * 32},
                {"type": "run_end"}])
    previous = PreviousRuns.load(path)
    try:
        assert previous.latest["a" * 32].input_stat == "5" * 32  # the later stat record
        assert previous.latest["b" * 32].input_stat == "8" * 32  # the later file record
    finally:
        previous.close()
    compact(path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in records] == ["run_start", "run_end", "run_start", "file",
                                            "file", "run_end"]
    files = {r["input"]: r for r in records if r["type"] == "file"}
    assert files["a" * 32] == {**file_a, "input_stat": "5" * 32}
    assert files["b" * 32]["input_stat"] == "8" * 32
    previous = PreviousRuns.load(path)
    try:
        assert previous.latest["a" * 32].input_stat == "5" * 32
    finally:
        previous.close()


def test_rehash_is_refused_for_a_network_source(tmp_path: Path, key_file: Path):
    proc = anonymize("dicomweb+http://127.0.0.1:9/dicom-web", tmp_path / "out", key_file,
                     "--rehash")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "anonymizer: error: --rehash applies to a folder IN (a network source's instances are "
        "never fetched again once written)"]


# --------------------------------------------------------------------------- compaction

def test_a_rerun_that_records_nothing_leaves_the_compacted_log_as_it_was(
        aged: Path, tmp_path: Path, key_file: Path) -> None:
    """A nightly rerun with nothing to do appends its header and footer and does not
    rewrite a log of millions of records; a run that records something compacts it."""
    (aged / NOT_DICOM).unlink()  # a non-DICOM input is recorded (skipped) by every run
    out = tmp_path / "out"
    assert anonymize(aged, out, key_file, "-p", "research").returncode == 0
    log = out / AUDIT
    first, inode = log.read_bytes(), log.stat().st_ino
    assert json.loads(first.splitlines()[-1])["compacted"] is True
    rerun = anonymize(aged, out, key_file, "-p", "research")
    assert rerun.returncode == 0 and "anonymizer: 0 written," in rerun.stderr, rerun.stderr
    second = log.read_bytes()
    assert log.stat().st_ino == inode and second.startswith(first)  # appended to only
    added = [json.loads(line) for line in second[len(first):].splitlines()]
    assert [record["type"] for record in added] == ["run_start", "run_end"]
    assert added[-1]["compacted"] is True
    shutil.copyfile(aged / ROE_HEAD, aged / DOE_CT)  # one input changes
    changed = anonymize(aged, out, key_file, "-p", "research")
    assert changed.returncode == 0 and "anonymizer: 1 written," in changed.stderr, changed.stderr
    assert log.stat().st_ino != inode  # rewritten
    records = _records(out)
    inputs = [record["input"] for record in records if record["type"] == "file"]
    assert len(inputs) == len(set(inputs)) == DICOM_COUNT
    assert records[-1]["compacted"] is True
    assert cli("report", log).returncode == 0


@pytest.mark.parametrize(("tail", "compacted"), [
    ('{"type":"run_end","compacted":true}\n', True),
    ('{"type":"run_end"}\n', False),  # a log from before compaction marked its footer
    ('{"type":"run_end","compacted":true}\n{"type":"run_sta', False),  # torn by a crash
    ('{"type":"run_end","compacted":true}\n{"type":"run_start"}\n', False),  # killed run
    ('{"type":"run_end","compacted":true}', False),  # no newline: cut short
    ('', False),
])
def test_only_a_log_ending_in_a_compacted_footer_counts_as_compacted(
        tmp_path: Path, tail: str, compacted: bool) -> None:
    path = tmp_path / AUDIT
    path.write_text('{"type":"run_start"}\n{"type":"file","input":"a"}\n' * (tail != "")
                    + tail)
    assert ends_compacted(path) is compacted
