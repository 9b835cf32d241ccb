"""Batch runs that survive anything: bad inputs, killed processes, signals, resume, full disks.

Every test here runs the real pipeline: in-process through ``process_batch`` for single
inputs, or the ``anonymizer`` command as a subprocess with real signals.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import KEY_A, KEY_B, SAMPLE_DATA, dcmread_quiet
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from anonymizer.engine import Engine
from anonymizer.io import reader
from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.keyed import KeyedSource
from anonymizer.pipeline.layout import DEFAULT_LAYOUT
from anonymizer.pipeline.worker import WorkerConfig, WorkItem, input_token, process_batch

_SCRIPT = Path(sys.executable).with_name("anonymizer")
CLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "anonymizer"]
CT_IMAGE = SAMPLE_DATA / "DOE^JOHN_12345678" / "20190101_CT_CHEST" / "IM0001.dcm"
RUN_TIMEOUT = 120  # seconds: a hung run fails the test instead of hanging the suite
KILL_OPTIONS = ["--jobs", "2", "--batch-size", "4", "--no-progress"]


# --------------------------------------------------------------------------- helpers


def _cli(*args: object, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(out: Path, audit_name: str = "audit.jsonl") -> dict[str, str]:
    """Relative path -> sha256 of every file in OUT except the audit log."""
    return {p.relative_to(out).as_posix(): _sha256(p) for p in sorted(out.rglob("*"))
            if p.is_file() and p.relative_to(out).as_posix() != audit_name}


def _temporaries(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob(f"{TEMP_PREFIX}*"))


def _records(audit: Path) -> list[dict]:
    """Every line of the log parsed as JSON (an invalid line fails the test)."""
    lines = audit.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            pytest.fail(f"{audit}:{number} is not valid JSON ({exc}): {line[:120]!r}")
    return records


def _file_records(audit: Path) -> list[dict]:
    return [r for r in _records(audit) if r.get("type") == "file"]


def _inputs(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _tokens(root: Path, key: bytes = KEY_A) -> dict[str, str]:
    """Input token -> relative path, for every input file under ``root``."""
    keyed = KeyedSource(key)
    return {input_token(keyed, rel): rel for rel in _inputs(root)}


def _assert_one_record_per_input(audit: Path, in_dir: Path) -> dict[str, dict]:
    records = _file_records(audit)
    tokens = [r["input"] for r in records]
    assert len(tokens) == len(set(tokens)), "an input has more than one file record"
    assert set(tokens) == set(_tokens(in_dir)), "file records do not match the inputs"
    return {r["input"]: r for r in records}


def _children(pid: int) -> dict[int, str]:
    """Direct children of ``pid`` (from /proc): pid -> command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                found[int(entry)] = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _reap(pids: dict[int, str]) -> None:
    """SIGKILL processes this test started (still alive and still the same command)."""
    for pid, cmdline in pids.items():
        if not _alive(pid):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                current = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if current == cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [pid for pid in pids if _alive(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


class _Run:
    """An ``anonymizer run`` subprocess; stderr goes to a file (orphaned workers of a
    killed run may hold a pipe open for minutes)."""

    def __init__(self, in_dir: Path, out: Path, key: Path, *extra: str):
        self.out = out
        self.stderr_path = out.with_name(out.name + f".stderr.{time.monotonic_ns()}")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*CLI, "run", str(in_dir), str(out), "--key-file", str(key), *KILL_OPTIONS, *extra],
            stdout=subprocess.DEVNULL, stderr=self._stderr)

    def file_records_written(self) -> int:
        try:
            return (self.out / "audit.jsonl").read_bytes().count(b'"type":"file"')
        except OSError:
            return 0

    def wait_for_records(self, count: int, limit: float = 60.0) -> None:
        """Poll until the audit log holds ``count`` file records (the run is mid-way)."""
        deadline = time.monotonic() + limit
        while self.file_records_written() < count:
            assert self.proc.poll() is None, (
                f"the run ended (exit {self.proc.returncode}) before {count} records were "
                f"logged: {self.stderr()}")
            assert time.monotonic() < deadline, "no progress in the audit log"
            time.sleep(0.002)

    def workers(self) -> dict[int, str]:
        """Its worker processes: forked from it (its own command line) or loky's."""
        own = " ".join(self.proc.args) + " "  # type: ignore[arg-type]
        return {pid: cmd for pid, cmd in _children(self.proc.pid).items()
                if cmd.endswith(own) or "LokyProcess" in cmd}

    def wait(self, limit: float = RUN_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=limit)
        finally:
            self._stderr.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 distinct DICOM files (sample_data x 25, each with its own SOPInstanceUID) in
    nested folders, plus the 25 copies of sample_data's notes.txt (skipped)."""
    root = tmp_path_factory.mktemp("big") / "in"
    sources = sorted(p for p in SAMPLE_DATA.rglob("*") if p.is_file())
    datasets = {p: dcmread_quiet(p, force=True) for p in sources if p.suffix != ".txt"}
    for copy in range(25):
        for source in sources:
            relative = source.relative_to(SAMPLE_DATA)
            target = root / f"site{copy % 5}" / f"copy{copy:02d}" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if source not in datasets:
                shutil.copyfile(source, target)
                continue
            ds = datasets[source]
            uid = generate_uid(entropy_srcs=[str(copy), relative.as_posix()])
            ds.SOPInstanceUID = uid
            ds.file_meta.MediaStorageSOPInstanceUID = uid
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds.save_as(target)
    assert sum(1 for rel in _inputs(root) if not rel.endswith(".txt")) == 300
    return root


@pytest.fixture(scope="module")
def clean_run(big_tree: Path, key_path: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, str]:
    """OUT_A: one uninterrupted run; its tree (path -> sha256) is the reference."""
    out = tmp_path_factory.mktemp("clean") / "OUT_A"
    result = _cli("run", big_tree, out, "--key-file", key_path, *KILL_OPTIONS)
    assert result.returncode == 0, result.stderr
    records = _assert_one_record_per_input(out / "audit.jsonl", big_tree)
    assert sum(r["status"] == "written" for r in records.values()) == 300
    assert not _temporaries(out)
    tree = _tree(out)
    assert len(tree) == 300
    return tree


def _assert_same_as_clean(out: Path, big_tree: Path, clean_run: dict[str, str]) -> None:
    assert not _temporaries(out), "temporary files left in OUT"
    tree = _tree(out)
    assert set(tree) == set(clean_run), (
        f"paths differ: extra {sorted(set(tree) - set(clean_run))[:5]}, "
        f"missing {sorted(set(clean_run) - set(tree))[:5]}")
    assert tree == clean_run, "output bytes differ from the uninterrupted run"
    records = _assert_one_record_per_input(out / "audit.jsonl", big_tree)
    assert sum(r["status"] == "written" for r in records.values()) == 300


# --------------------------------------------------------------------------- bad inputs


def _raw_dataset(implicit: bool) -> bytes:
    """CT_IMAGE without preamble and file meta (a raw dataset, as old archives hold)."""
    ds = dcmread_quiet(CT_IMAGE)
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=False, implicit_vr=implicit, little_endian=True)
    data = buffer.getvalue()
    assert data[:2] == b"\x08\x00" and b"DICM" not in data[:200]
    return data


def _burned_in() -> bytes:
    ds = dcmread_quiet(CT_IMAGE)
    ds.BurnedInAnnotation = "YES"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _bad_inputs() -> dict[str, bytes]:
    """File name -> content of every kind of bad input (and one good one)."""
    good = CT_IMAGE.read_bytes()
    return {
        "good.dcm": good,
        "empty.dcm": b"",
        "text.dcm": b"This is a letter to the patient, not an image.\n" * 20,
        "truncated.dcm": good[:-100],  # pixel data cut short
        "trailing.dcm": good + b"GARBAGE-AFTER-THE-DATASET\x00\x01\x02\x03",
        "raw-explicit.dcm": _raw_dataset(implicit=False),
        "raw-implicit.dcm": _raw_dataset(implicit=True),
        "DICOMDIR": Path(get_testdata_file("DICOMDIR")).read_bytes(),
    }


def _process(in_dir: Path, out: Path, key: Path, names: list[str], profile: str = "default"):
    config = WorkerConfig(profile=profile, key_file=str(key), input_dir=str(in_dir),
                          output_dir=str(out), layout=DEFAULT_LAYOUT, timeout=10)
    return {o.relative: o for o in process_batch(config, [WorkItem(n) for n in names])}


@pytest.fixture()
def bad_outcomes(tmp_path: Path, key_file: Path):
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    for name, data in _bad_inputs().items():
        (in_dir / name).write_bytes(data)
    outcomes = _process(in_dir, out, key_file, [*_bad_inputs(), "vanished.dcm"])
    return outcomes, out


def _big_endian_with_large_pixels(path: Path) -> None:
    """A file the splice writer cannot copy from (big endian), with Pixel Data over the
    1 MiB the large-file reader leaves on disk until the output is written."""
    ds = dcmread_quiet(get_testdata_file("MR_small_bigendian.dcm"))
    ds.Rows = ds.Columns = 1024
    ds.PixelData = b"\x11" * (1024 * 1024 * 2)
    ds.save_as(path, enforce_file_format=True)


def test_a_large_input_changed_after_its_parse_is_failed_without_a_splice(
        tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large input is parsed with its large values left on disk; written without a
    splice (big endian) those values are read while the output is written. Changed in
    between (another process writing the export), the file fails and nothing is written:
    its bytes were never seen by the rules, and its record would carry another hash."""
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    source = in_dir / "large.dcm"
    _big_endian_with_large_pixels(source)
    monkeypatch.setattr(reader, "LARGE_FILE", 1 << 20)  # this 4 MiB file is "large"
    assert _process(in_dir, out, key_file, ["large.dcm"])["large.dcm"].status == "written"
    shutil.rmtree(out)

    deidentify = Engine.deidentify

    def deidentify_then_change(self, ds, scratch_dir=None):
        result = deidentify(self, ds, scratch_dir)
        with open(source, "r+b") as handle:  # in place, the same size: the pixels' end
            handle.seek(-16, os.SEEK_END)
            handle.write(b"\x99" * 16)
        return result

    monkeypatch.setattr(Engine, "deidentify", deidentify_then_change)
    outcome = _process(in_dir, out, key_file, ["large.dcm"])["large.dcm"]
    assert (outcome.status, outcome.reason) == ("failed", "write: changed while it was read")
    assert not [p for p in out.rglob("*") if p.is_file()]


@pytest.mark.parametrize(("name", "status", "reason"), [
    ("good.dcm", "written", None),
    ("empty.dcm", "skipped", "empty file"),
    ("text.dcm", "skipped", "not DICOM"),
    ("truncated.dcm", "failed", "read: truncated"),
    ("trailing.dcm", "written", None),
    ("raw-explicit.dcm", "written", None),
    ("raw-implicit.dcm", "written", None),
    ("DICOMDIR", "skipped", "DICOMDIR"),
    ("vanished.dcm", "failed", "read: No such file or directory"),
])
def test_bad_input_has_its_named_outcome(bad_outcomes, name: str, status: str,
                                         reason: str | None) -> None:
    outcomes, out = bad_outcomes
    outcome = outcomes[name]
    assert outcome.status == status, outcome.reason
    if reason is None:
        assert outcome.reason is None
    elif status == "failed":
        assert (outcome.reason or "").startswith(reason), outcome.reason
    else:
        assert reason in (outcome.reason or ""), outcome.reason
    if status == "written":
        assert outcome.temporary is not None and Path(outcome.temporary).is_file()
    else:
        assert outcome.temporary is None and outcome.target is None


def test_failed_and_skipped_inputs_leave_nothing_in_out(bad_outcomes) -> None:
    outcomes, out = bad_outcomes
    written = {Path(o.temporary) for o in outcomes.values() if o.status == "written"}
    present = {p for p in out.rglob("*") if p.is_file()}
    assert present == written


def test_trailing_garbage_is_dropped_with_a_warning(bad_outcomes) -> None:
    outcomes, _ = bad_outcomes
    outcome = outcomes["trailing.dcm"]
    assert any("trailing data" in w for w in outcome.warnings), outcome.warnings
    assert b"GARBAGE" not in Path(outcome.temporary).read_bytes()
    assert outcome.output_sha256 == outcomes["good.dcm"].output_sha256


@pytest.mark.parametrize("name", ["raw-explicit.dcm", "raw-implicit.dcm"])
def test_raw_dataset_is_written_as_part10(bad_outcomes, name: str) -> None:
    outcomes, _ = bad_outcomes
    data = Path(outcomes[name].temporary).read_bytes()
    assert data[128:132] == b"DICM", "no preamble + DICM: not a Part 10 file"
    ds = dcmread_quiet(outcomes[name].temporary)  # no force: a valid Part 10 file
    assert ds.file_meta.TransferSyntaxUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID


def test_burned_in_annotation_fails_the_file(tmp_path: Path, key_file: Path) -> None:
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (in_dir / "burned.dcm").write_bytes(_burned_in())
    outcome = _process(in_dir, out, key_file, ["burned.dcm"])["burned.dcm"]
    assert outcome.status == "failed"
    assert outcome.reason == "de-identify: burned-in annotation: pixel data not cleaned"
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_burned_in_annotation_accepted_by_profile(tmp_path: Path, key_file: Path) -> None:
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (in_dir / "burned.dcm").write_bytes(_burned_in())
    profile = tmp_path / "accept.yaml"
    profile.write_text('name: accept-burned\nversion: "1"\ndescription: test\n'
                       "extends: default\nburned_in_annotation: accept\n", encoding="utf-8")
    outcome = _process(in_dir, out, key_file, ["burned.dcm"], str(profile))["burned.dcm"]
    assert outcome.status == "written", outcome.reason
    assert dcmread_quiet(outcome.temporary).BurnedInAnnotation == "YES"


def test_unreadable_file_fails(tmp_path: Path, key_file: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not block reading")
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    shutil.copyfile(CT_IMAGE, in_dir / "locked.dcm")
    (in_dir / "locked.dcm").chmod(0)
    outcome = _process(in_dir, out, key_file, ["locked.dcm"])["locked.dcm"]
    assert outcome.status == "failed"
    assert outcome.reason == "read: Permission denied"


def test_cli_run_over_bad_inputs(tmp_path: Path, key_file: Path) -> None:
    """The whole run: each bad input has its record, OUT holds only written outputs."""
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    for name, data in _bad_inputs().items():
        (in_dir / name).write_bytes(data)
    result = _cli("run", in_dir, out, "--key-file", key_file, *KILL_OPTIONS)
    assert result.returncode == 1, result.stderr  # truncated.dcm failed
    assert "failed x1: read: truncated" in result.stderr
    tokens = _tokens(in_dir)
    records = _assert_one_record_per_input(out / "audit.jsonl", in_dir)
    status = {tokens[t]: r["status"] for t, r in records.items()}
    assert status == {"good.dcm": "written", "empty.dcm": "skipped", "text.dcm": "skipped",
                      "truncated.dcm": "failed", "trailing.dcm": "written",
                      "raw-explicit.dcm": "written", "raw-implicit.dcm": "written",
                      "DICOMDIR": "skipped"}
    outputs = {r["output"] for r in records.values() if r["status"] == "written"}
    assert set(_tree(out)) == outputs
    assert not _temporaries(out)
    for record in records.values():
        if record["status"] != "written":
            assert record["output"] is None and record["output_sha256"] is None


def test_symlink_loop_terminates_and_each_file_is_processed_once(tmp_path: Path,
                                                                 key_file: Path) -> None:
    in_dir, out = tmp_path / "in", tmp_path / "out"
    (in_dir / "a" / "b").mkdir(parents=True)
    shutil.copyfile(CT_IMAGE, in_dir / "a" / "one.dcm")
    shutil.copyfile(SAMPLE_DATA / "ROE^RICHARD_99887766" / "20220911_CT_HEAD" / "IM0001.dcm",
                    in_dir / "a" / "b" / "two.dcm")
    os.symlink(in_dir / "a", in_dir / "a" / "b" / "loop")  # child -> parent
    os.symlink(in_dir, in_dir / "a" / "root")  # -> the input root itself
    result = _cli("run", in_dir, out, "--key-file", key_file, *KILL_OPTIONS, timeout=60)
    assert result.returncode == 0, result.stderr
    records = _file_records(out / "audit.jsonl")
    assert len(records) == 2
    assert len({r["input"] for r in records}) == 2
    assert len({r["input_sha256"] for r in records}) == 2
    assert len(_tree(out)) == 2


# --------------------------------------------------------------------------- quarantine


def _quarantine_inputs(in_dir: Path) -> None:
    in_dir.mkdir()
    good = CT_IMAGE.read_bytes()
    (in_dir / "good.dcm").write_bytes(good)
    (in_dir / "cut.dcm").write_bytes(good[:-100])
    (in_dir / "empty.dcm").write_bytes(b"")  # skipped: not a failure


def test_quarantine_lists_failed_inputs(tmp_path: Path, key_file: Path) -> None:
    in_dir, out, quarantine = tmp_path / "in", tmp_path / "out", tmp_path / "quarantine"
    _quarantine_inputs(in_dir)
    result = _cli("run", in_dir, out, "--key-file", key_file, "--quarantine", quarantine,
                  "--no-progress")
    assert result.returncode == 1, result.stderr
    with open(quarantine / "failed-inputs.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["input", "reason"]
    assert len(rows) == 2
    assert rows[1][0] == "cut.dcm"
    assert rows[1][1].startswith("read: truncated")
    assert not list(out.rglob("failed-inputs.csv"))


def test_quarantine_not_written_unless_asked(tmp_path: Path, key_file: Path) -> None:
    in_dir, out = tmp_path / "in", tmp_path / "out"
    _quarantine_inputs(in_dir)
    result = _cli("run", in_dir, out, "--key-file", key_file, "--no-progress")
    assert result.returncode == 1, result.stderr
    assert not list(tmp_path.rglob("failed-inputs.csv"))


def test_quarantine_inside_out_is_refused(tmp_path: Path, key_file: Path) -> None:
    in_dir, out = tmp_path / "in", tmp_path / "out"
    _quarantine_inputs(in_dir)
    result = _cli("run", in_dir, out, "--key-file", key_file, "--quarantine", out / "q",
                  "--no-progress")
    assert result.returncode == 2
    assert "--quarantine" in result.stderr
    assert not (out / "q").exists()


# --------------------------------------------------------------------------- kills


@pytest.mark.parametrize("after_records", [1, 120, 240])
def test_sigkill_main_then_rerun_gives_identical_output(
        after_records: int, big_tree: Path, key_path: Path, clean_run: dict[str, str],
        tmp_path: Path) -> None:
    out = tmp_path / "OUT_B"
    run = _Run(big_tree, out, key_path)
    workers: dict[int, str] = {}
    try:
        run.wait_for_records(after_records)
        workers = _children(run.proc.pid)
        run.proc.kill()
        assert run.wait() == -signal.SIGKILL
    finally:
        _reap(workers)  # orphaned workers: see test_sigkill_main_leaves_no_workers
        if run.proc.poll() is None:
            run.proc.kill()
            run.wait()
    _wait_gone(list(workers), 10)
    rerun = _cli("run", big_tree, out, "--key-file", key_path, *KILL_OPTIONS)
    assert rerun.returncode == 0, rerun.stderr
    _assert_same_as_clean(out, big_tree, clean_run)


def test_sigkill_main_leaves_no_workers_behind(big_tree: Path, key_path: Path,
                                                tmp_path: Path) -> None:
    """Workers of a killed run must not live on (they hold OUT and the caller's pipes)."""
    out = tmp_path / "OUT_B"
    run = _Run(big_tree, out, key_path)
    children: dict[int, str] = {}
    try:
        run.wait_for_records(40)
        children = _children(run.proc.pid)
        assert run.workers(), children
        run.proc.kill()
        run.wait()
        left = _wait_gone(list(children), 5)
        assert not left, ("processes of the killed run still alive 5 s later: "
                          f"{[children[pid] for pid in left]}")
    finally:
        _reap(children)
        if run.proc.poll() is None:
            run.proc.kill()
            run.wait()


def test_killed_worker_run_finishes_identical(big_tree: Path, key_path: Path,
                                              clean_run: dict[str, str],
                                              tmp_path: Path) -> None:
    out = tmp_path / "OUT_W"
    run = _Run(big_tree, out, key_path)
    try:
        run.wait_for_records(60)
        workers = run.workers()
        assert workers, "no worker process found"
        os.kill(min(workers), signal.SIGKILL)
        code = run.wait()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.wait()
    assert code == 0, run.stderr()
    _assert_same_as_clean(out, big_tree, clean_run)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_and_rerun_completes(sig: signal.Signals, code: int,
                                                  big_tree: Path, key_path: Path,
                                                  clean_run: dict[str, str],
                                                  tmp_path: Path) -> None:
    out = tmp_path / "OUT_S"
    run = _Run(big_tree, out, key_path)
    children: dict[int, str] = {}
    try:
        run.wait_for_records(40)
        children = _children(run.proc.pid)
        run.proc.send_signal(sig)
        assert run.wait() == code, run.stderr()
        assert not _wait_gone(list(children), 10), "workers outlived a stopped run"
    finally:
        _reap(children)
        if run.proc.poll() is None:
            run.proc.kill()
            run.wait()
    assert f"stopped by {sig.name}" in run.stderr()
    records = _records(out / "audit.jsonl")
    assert records[-1]["type"] == "run_end"
    assert sig.name in (records[-1]["stopped"] or "")
    assert not _temporaries(out)
    for record in records:  # every output the log names is there, with its hash
        if record.get("type") == "file" and record["status"] == "written":
            assert _sha256(out / record["output"]) == record["output_sha256"]
    rerun = _cli("run", big_tree, out, "--key-file", key_path, *KILL_OPTIONS)
    assert rerun.returncode == 0, rerun.stderr
    _assert_same_as_clean(out, big_tree, clean_run)


# --------------------------------------------------------------------------- resume


def _stat_tree(out: Path) -> dict[str, tuple[str, int, int]]:
    return {rel: (sha, (out / rel).stat().st_ino, (out / rel).stat().st_mtime_ns)
            for rel, sha in _tree(out).items()}


@pytest.fixture()
def done_run(sample_copy: Path, key_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    result = _cli("run", sample_copy, out, "--key-file", key_file, "--no-progress")
    assert result.returncode == 0, result.stderr
    return out


def test_rerun_on_completed_out_processes_nothing(done_run: Path, sample_copy: Path,
                                                  key_file: Path) -> None:
    before = _stat_tree(done_run)
    result = _cli("run", sample_copy, done_run, "--key-file", key_file, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "already done" in result.stderr
    assert " 0 written" in result.stderr
    assert _stat_tree(done_run) == before
    _assert_one_record_per_input(done_run / "audit.jsonl", sample_copy)


def test_changed_input_alone_is_reprocessed(done_run: Path, sample_copy: Path,
                                            key_file: Path) -> None:
    relative = "DOE^JOHN_12345678/20190101_CT_CHEST/IM0001.dcm"
    token = input_token(KeyedSource(KEY_A), relative)
    before = _stat_tree(done_run)
    old = {r["input"]: r for r in _file_records(done_run / "audit.jsonl")}[token]
    ds = dcmread_quiet(sample_copy / relative)
    ds.KVP = "135"
    ds.save_as(sample_copy / relative)
    result = _cli("run", sample_copy, done_run, "--key-file", key_file, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "1 written" in result.stderr
    after = _stat_tree(done_run)
    assert set(after) == set(before)
    changed = sorted(rel for rel in after if after[rel] != before[rel])
    assert changed == [old["output"]], changed
    assert dcmread_quiet(done_run / old["output"]).KVP == 135
    records = _assert_one_record_per_input(done_run / "audit.jsonl", sample_copy)
    assert records[token]["input_sha256"] == _sha256(sample_copy / relative)
    assert records[token]["output_sha256"] == after[old["output"]][0]


@pytest.mark.parametrize(("option", "named"), [("profile", "profile"), ("key", "key")])
def test_other_profile_or_key_is_refused_then_forced(done_run: Path, sample_copy: Path,
                                                     key_file: Path, tmp_path: Path,
                                                     option: str, named: str) -> None:
    args: list[object] = ["run", sample_copy, done_run, "--no-progress"]
    if option == "profile":
        args += ["--key-file", key_file, "--profile", "basic"]
    else:
        other = tmp_path / "other.key"
        other.write_bytes(KEY_B)
        args += ["--key-file", other]
    before = _stat_tree(done_run)
    audit_before = (done_run / "audit.jsonl").read_bytes()
    refused = _cli(*args)
    assert refused.returncode == 2, refused.stderr
    assert named in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _stat_tree(done_run) == before
    assert (done_run / "audit.jsonl").read_bytes() == audit_before
    forced = _cli(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "already done" not in forced.stderr
    assert not _temporaries(done_run)


# --------------------------------------------------------------------------- disk full


@contextlib.contextmanager
def _tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mountpoint.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(mountpoint)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True,
                          check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def full_disk(big_tree: Path, key_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A run into a 300 KiB tmpfs (1.5 MB of outputs), then the same run after the
    tmpfs is grown to 20 MiB (contents kept)."""
    with _tmpfs(tmp_path_factory.mktemp("full") / "mnt", "300k") as mount:
        out = mount / "OUT"
        first = _cli("run", big_tree, out, "--key-file", key_path, *KILL_OPTIONS)
        state = {
            "first": first, "temporaries": _temporaries(mount),
            "lines": (out / "audit.jsonl").read_text(encoding="utf-8").splitlines()
            if (out / "audit.jsonl").is_file() else [],
        }
        grown = subprocess.run(["mount", "-o", "remount,size=20m", str(mount)],
                               capture_output=True, check=False)
        if grown.returncode == 0:
            state["second"] = _cli("run", big_tree, out, "--key-file", key_path,
                                   *KILL_OPTIONS)
            state["second_temporaries"] = _temporaries(mount)
            state["tree"] = _tree(out)
            state["records"] = _file_records(out / "audit.jsonl")
        yield state


def test_full_disk_stops_with_exit_3(full_disk) -> None:
    first = full_disk["first"]
    assert "No space left on device" in first.stderr
    assert "Traceback" not in first.stderr, first.stderr[-2000:]
    assert first.returncode == 3, first.stderr[-2000:]


def test_full_disk_leaves_no_temporaries(full_disk) -> None:
    assert full_disk["temporaries"] == []


def test_full_disk_audit_log_stays_valid_json(full_disk) -> None:
    lines = full_disk["lines"]
    assert lines, "no audit log"
    bad = []
    for number, line in enumerate(lines, 1):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            bad.append((number, line[:80] + " ... " + line[-120:]))
    assert not bad, f"invalid audit lines: {bad}"
    assert json.loads(lines[-1])["type"] == "run_end"


def test_full_disk_rerun_after_space_is_freed_completes(full_disk, big_tree: Path,
                                                        clean_run: dict[str, str]) -> None:
    if "second" not in full_disk:
        pytest.skip("tmpfs could not be remounted larger")
    assert full_disk["second"].returncode == 0, full_disk["second"].stderr[-2000:]
    assert full_disk["second_temporaries"] == []
    assert full_disk["tree"] == clean_run
    tokens = [r["input"] for r in full_disk["records"]]
    assert sorted(tokens) == sorted(_tokens(big_tree))


def test_audit_log_on_a_full_disk_keeps_what_fits_and_room_for_its_footer(
        tmp_path: Path) -> None:
    """Records that no longer fit are dropped one by one (not all at once), so the
    ``run_end`` record, written next, still fits (tmpfs: whole 4 KiB pages)."""
    from anonymizer.pipeline.audit import AuditLog

    with _tmpfs(tmp_path / "mnt", "8k") as mount:
        (mount / "filler").write_bytes(b"\x00" * 4096)  # one page of two
        audit = AuditLog(mount / "audit.jsonl")
        for number in range(3):  # 1,500 bytes each: the third needs a second page
            audit.write({"type": "file", "input": str(number), "pad": "x" * 1460})
        assert audit.flush_what_fits() == 1
        audit.write({"type": "run_end"})
        audit.close()
        records = _records(mount / "audit.jsonl")
        assert [r["type"] for r in records] == ["file", "file", "run_end"]


def test_full_audit_disk_stops_with_exit_3_and_a_valid_log(
        big_tree: Path, key_path: Path, clean_run: dict[str, str], tmp_path: Path) -> None:
    """The audit log's disk fills first (8 KiB: a few records), deterministically."""
    out = tmp_path / "OUT"
    with _tmpfs(tmp_path / "mnt", "8k") as mount:
        audit = mount / "audit.jsonl"
        result = _cli("run", big_tree, out, "--key-file", key_path, "--audit", audit,
                      *KILL_OPTIONS)
        assert "No space left on device" in result.stderr
        assert not _temporaries(out) and not _temporaries(mount)
        lines = audit.read_text(encoding="utf-8").splitlines()
        invalid = []
        for number, line in enumerate(lines, 1):
            try:
                json.loads(line)
            except json.JSONDecodeError:
                invalid.append(number)
        problems = []
        if result.returncode != 3:
            problems.append(f"exit code {result.returncode}, not 3")
        if "Traceback" in result.stderr:
            problems.append("a traceback: " + result.stderr.strip().splitlines()[-1])
        if invalid:
            problems.append(f"audit lines {invalid} of {len(lines)} are not valid JSON")
        assert not problems, problems
        subprocess.run(["mount", "-o", "remount,size=20m", str(mount)], check=True)
        rerun = _cli("run", big_tree, out, "--key-file", key_path, "--audit", audit,
                     *KILL_OPTIONS)
        assert rerun.returncode == 0, rerun.stderr[-1500:]
        assert not _temporaries(out)
        assert _tree(out) == clean_run
        assert sorted(r["input"] for r in _file_records(audit)) == sorted(_tokens(big_tree))


def test_full_disk_with_audit_elsewhere_stops_with_exit_3(big_tree: Path, key_path: Path,
                                                          tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "mnt", "300k") as mount:
        audit = tmp_path / "audit.jsonl"
        result = _cli("run", big_tree, mount / "OUT", "--key-file", key_path,
                      "--audit", audit, *KILL_OPTIONS)
        assert result.returncode == 3, result.stderr[-2000:]
        assert "No space left on device" in result.stderr
        assert not _temporaries(mount)
        records = _records(audit)
        assert records[-1]["type"] == "run_end"
        assert "No space left on device" in (records[-1]["stopped"] or "")
        for record in records:
            if record.get("type") == "file" and record["status"] == "written":
                assert _sha256(mount / "OUT" / record["output"]) == record["output_sha256"]
