"""The backends: local worker processes in any number give the same outputs and records
as one; a worker process that dies fails only the file it died on; reusable workers are
replaced when the key changes. (The Dask backend: test_dask.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KEY_A, KEY_B, SAMPLE_DATA
from pipeline_helpers import (
    AUDIT,
    anonymize,
    audit_records,
    check_audit_matches_outputs,
    dicom_values,
    env_without_key,
    file_records,
    output_tree,
)

from anonymizer.keyed import KeyedSource
from anonymizer.pipeline.backends import backend, died_outcome, process_batches
from anonymizer.pipeline.layout import DEFAULT_LAYOUT
from anonymizer.pipeline.parallel import batches, each_alone
from anonymizer.pipeline.worker import FileOutcome, WorkerConfig, WorkItem, input_token

KILLER = "kills-its-worker"


def _config(source: Path, out: Path, key_file: Path) -> WorkerConfig:
    return WorkerConfig(profile="basic", key_file=str(key_file), input_dir=str(source),
                        output_dir=str(out), layout=DEFAULT_LAYOUT)


def _dies_on_the_killer(config: WorkerConfig, items: list[WorkItem]) -> list[FileOutcome]:
    """A batch function whose worker process dies (as on a crash in a C extension) when
    it meets the killer item; the other items pass."""
    if any(item.relative == KILLER for item in items):
        os._exit(70)
    return [FileOutcome(item.relative, item.token or "", "skipped", reason=f"pid {os.getpid()}")
            for item in items]


def _items(names: list[str]) -> list[WorkItem]:
    keyed = KeyedSource(KEY_A)
    return [WorkItem(name, token=input_token(keyed, name)) for name in names]


def test_local_backend_uses_the_jobs_given() -> None:
    with backend("local", None) as (jobs, died):
        assert jobs is None and died


@pytest.mark.parametrize("jobs", [1, 2])
def test_batches_come_back_in_order_with_every_file(tmp_path: Path, key_file: Path,
                                                    jobs: int) -> None:
    names = sorted(p.relative_to(SAMPLE_DATA).as_posix() for p in SAMPLE_DATA.rglob("*")
                   if p.is_file())
    out = tmp_path / "out"
    out.mkdir()
    seen: list[list[str]] = []
    flushes: list[int] = []
    process_batches(batches(_items(names), 3), _config(SAMPLE_DATA, out, key_file), jobs,
                    lambda outcomes: seen.append([o.relative for o in outcomes]),
                    lambda: flushes.append(len(seen)))
    assert [name for batch in seen for name in batch] == names
    assert [len(batch) for batch in seen] == [len(b) for b in batches(names, 3)]
    assert flushes == list(range(1, len(seen) + 1))  # a flush after every batch


def test_a_dying_worker_fails_only_its_file(tmp_path: Path, key_file: Path) -> None:
    names = ["a", "b", KILLER, "c", "d", "e"]
    seen: list[FileOutcome] = []
    process_batches(batches(_items(names), 2), _config(tmp_path, tmp_path, key_file), 2,
                    seen.extend, lambda: None, function=_dies_on_the_killer)
    assert [o.relative for o in seen] == names
    assert [o.status for o in seen] == ["skipped", "skipped", "failed", "skipped", "skipped",
                                        "skipped"]
    assert seen[2].reason == died_outcome(_items([KILLER])[0]).reason
    alone = each_alone(_dies_on_the_killer, _config(tmp_path, tmp_path, key_file),
                       _items(["x", KILLER]), died_outcome)
    assert [o.status for o in alone] == ["skipped", "failed"]


def test_parallel_and_serial_runs_are_byte_identical(tmp_path, testdata_tree, key_file):
    source = tmp_path / "in"
    shutil.copytree(SAMPLE_DATA, source / "sample")
    shutil.copytree(testdata_tree, source / "testdata")
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    # basic: the same walk without OCR of the test images' pixels, which would make this
    # the slowest test by far (the pixel stage's own pipeline runs are in test_pixel_stage)
    first = anonymize(source, serial, key_file, "--jobs", "1", "--profile", "basic")
    second = anonymize(source, parallel, key_file, "--jobs", "2", "--batch-size", "3",
                       "--profile", "basic")
    assert first.returncode == second.returncode
    assert first.returncode in (0, 1), first.stderr
    tree = output_tree(serial)
    assert len(tree) > 100
    assert sorted(tree) == sorted(output_tree(parallel))  # same relative paths
    assert tree == output_tree(parallel)  # and the same bytes
    # same records, same order (but for the stat digest, which a file read less than 2 s
    # after it was copied does not get: the first run may meet it racy, the second not)
    assert [{k: v for k, v in r.items() if k != "input_stat"} for r in file_records(serial)] \
        == [{k: v for k, v in r.items() if k != "input_stat"} for r in file_records(parallel)]
    check_audit_matches_outputs(serial)



_TWO_API_RUNS = """
import os, sys
from pathlib import Path
from anonymizer.pipeline import RunConfig, run
source, base, mode, jobs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
key_path = base / "rotated.key"
for name, key in (("a", sys.argv[5]), ("b", sys.argv[6])):
    if mode == "env":
        os.environ["ANONYMIZER_KEY"] = key
    else:
        key_path.write_text(key)
    summary = run(RunConfig(input_dir=source, output_dir=base / ("out-" + name),
                            profile="default", key_file=str(key_path) if mode != "env" else None,
                            jobs=jobs, batch_size=1, progress=False))
    assert summary.counts["written"] == 12, summary.counts
"""


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("source", ["env", "key-file"])
def test_python_api_runs_use_the_key_they_are_given(tmp_path, sample_copy, source, jobs):
    """One process, two API runs, the key changed in between: the second uses the new key.

    The key comes from ANONYMIZER_KEY, or from one key file rewritten between the runs.
    (In a subprocess, so that the test process and its worker pool stay clean.)
    """
    proc = subprocess.run([sys.executable, "-c", _TWO_API_RUNS, sample_copy, tmp_path, source,
                           str(jobs), KEY_A.decode(), KEY_B.decode()],
                          capture_output=True, text=True, env=env_without_key(), timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    outs = [tmp_path / "out-a", tmp_path / "out-b"]
    fingerprints = [audit_records(out / AUDIT)[0]["key_fingerprint"] for out in outs]
    assert fingerprints == [KeyedSource(KEY_A).fingerprint, KeyedSource(KEY_B).fingerprint]
    values_a, values_b = dicom_values(outs[0]), dicom_values(outs[1])
    assert values_a["PatientID"].isdisjoint(values_b["PatientID"])
    assert values_a["SOPInstanceUID"].isdisjoint(values_b["SOPInstanceUID"])


_FORK_PROBE = """
import sys, threading
import anonymizer.review  # only this process imports it: a worker started afresh has not
from anonymizer.pipeline.parallel import forked_workers, worker_pool
if sys.argv[1] == "with-a-thread":
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
if sys.argv[1] == "with-onnxruntime":  # the OCR engine's library: thread pools of its own
    import onnxruntime
probe = "'anonymizer.review' in __import__('sys').modules"
with forked_workers(2) as forked:
    seen = {worker_pool(2).submit(eval, probe).result() for _ in range(6)}
print(forked, sorted(seen))
"""


@pytest.mark.parametrize(("threads", "expected"), [("alone", "True [True]"),
                                                   ("with-a-thread", "False [False]"),
                                                   ("with-onnxruntime", "False [False]")])
def test_workers_are_forked_only_from_a_process_without_other_threads(threads: str,
                                                                      expected: str) -> None:
    """Forked workers start with what the main process loaded (no second import of the
    package); with another thread running, whose locks a fork could copy held, or the OCR
    engine's library loaded (its thread pools do not survive a fork), the pool is loky's
    fresh processes instead."""
    proc = subprocess.run([sys.executable, "-c", _FORK_PROBE, threads], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == expected


#: for the scripts below: this process's children from /proc, but for loky's resource
#: tracker (a helper process, not a worker); a process gone since listed is skipped
_CHILD_WORKERS = """
import os

def child_workers():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat, open(f"/proc/{pid}/cmdline") as cmd:
                parent, command = stat.read().rsplit(")", 1)[1].split()[1], cmd.read()
        except OSError:
            continue
        if parent == str(os.getpid()) and "resource_tracker" not in command:
            found.append(pid)
    return found
"""

_RUN_THEN_LOCK = _CHILD_WORKERS + """
import os, sys
from pathlib import Path
from anonymizer.pipeline import RunConfig, run
from anonymizer.pipeline.lock import exclusive_output
source, out, key_file = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
summary = run(RunConfig(input_dir=source, output_dir=out, profile="basic", key_file=key_file,
                        jobs=2, batch_size=2, progress=False))
assert summary.counts["written"] == 12, summary.counts
children = child_workers()
with exclusive_output(out, 0.0):  # no forked worker holds a copy of the run's lock
    pass
print(len(children), "joblib" in sys.modules)
"""


def test_no_forked_worker_outlives_its_run(tmp_path: Path, key_file: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _RUN_THEN_LOCK, SAMPLE_DATA, tmp_path / "out",
                           key_file], capture_output=True, text=True, env=env_without_key(),
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    # and a run with forked workers never imports joblib (~60 ms of start-up)
    assert proc.stdout.strip() == "0 False"
    records = audit_records(tmp_path / "out" / AUDIT)
    assert records[-1]["type"] == "run_end"


_FORKED_KILLER = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_backends import _config, _dies_on_the_killer, _items, KILLER
from anonymizer.pipeline.backends import process_batches
from anonymizer.pipeline.parallel import batches, forked_workers
tmp = Path(sys.argv[1])
seen = []
with forked_workers(2) as forked:
    assert forked
    process_batches(batches(_items(["a", "b", KILLER, "c", "d", "e"]), 2),
                    _config(tmp, tmp, Path(sys.argv[3])), 2, seen.extend, lambda: None,
                    function=_dies_on_the_killer)
print(" ".join(o.status for o in seen))
"""


def test_a_dying_forked_worker_fails_only_its_file(tmp_path: Path, key_file: Path) -> None:
    """The forked pool breaks when a worker dies: its batches run one file at a time in
    fresh processes and the rest of the run goes on in a new pool."""
    proc = subprocess.run([sys.executable, "-c", _FORKED_KILLER, tmp_path,
                           Path(__file__).parent, key_file], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["skipped", "skipped", "failed", "skipped", "skipped",
                                   "skipped"]


_STOPPED_EARLY = _CHILD_WORKERS + """
import sys, time
from anonymizer.pipeline.parallel import forked_workers, pooled_results

def slow(config, batch):
    time.sleep(batch[0] % 3 * 0.01)
    return batch

def died(item):
    return None

forked = []
for attempt in range(12):  # the stop lands at a different point of the pool's work each time
    with forked_workers(2) as fork:  # (a queue thread of the last pool may still be ending)
        forked.append(fork)
        results = pooled_results(slow, None, iter([[n] for n in range(40)]), 2, died)
        for _ in range(attempt % 5 + 1):
            first = next(results)
        results.close()  # the caller stops: batches are still running and waiting
print("stopped", forked[0], len(child_workers()))
"""


def test_stopping_early_kills_the_workers_and_returns() -> None:
    """A run that stops (a signal, a full disk) while batches wait in the pool: its workers
    are killed and the call returns. (Cancelling the waiting futures first made loky's
    manager thread die in its own shutdown, and the run hang with its workers alive.)"""
    proc = subprocess.run([sys.executable, "-c", _STOPPED_EARLY], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["stopped", "True", "0"]  # and no worker left behind
    assert "Exception in thread" not in proc.stderr, proc.stderr
