"""One run per output folder: a second run on a held OUT stops (exit 4) or waits."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA

from anonymizer.errors import OutputInUseError
from anonymizer.pipeline.lock import HOLDER_NAME, exclusive_output

RUN = [sys.executable, "-m", "anonymizer", "run", "--profile", "basic", "--no-progress"]


def _run(tmp_path: Path, key_file: Path, *extra: str, out: str = "out"
         ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*RUN, "--key-file", str(key_file), *extra, str(SAMPLE_DATA), str(tmp_path / out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_run_on_a_held_out_stops_naming_the_holder(tmp_path: Path,
                                                            key_file: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with exclusive_output(out):
        started = time.monotonic()
        _, stderr = (process := _run(tmp_path, key_file)).communicate(timeout=60)
        assert process.returncode == 4, stderr
        assert time.monotonic() - started < 30  # it did not wait
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "in use by another anonymizer run" in lines[0]
        assert f"pid {os.getpid()}, started 20" in lines[0]
        assert sorted(p.name for p in out.iterdir()) == [HOLDER_NAME]  # nothing touched
    assert list(out.iterdir()) == []  # the holder file goes with the lock


def test_wait_lock_waits_for_the_other_run(tmp_path: Path, key_file: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with exclusive_output(out):
        process = _run(tmp_path, key_file, "--wait-lock", "60")
        time.sleep(1.5)
        assert process.poll() is None  # still waiting
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert any(out.rglob("*.dcm"))


def test_in_process_second_holder_is_refused(tmp_path: Path) -> None:
    with exclusive_output(tmp_path), pytest.raises(OutputInUseError) as refused, \
            exclusive_output(tmp_path, wait=0.3):
        pass
    assert "after waiting 0.3 s" in str(refused.value)


def test_a_killed_runs_lock_never_blocks_the_next(tmp_path: Path, key_file: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from anonymizer.pipeline.lock import exclusive_output\n"
         "with exclusive_output(Path(sys.argv[1])):\n print('held', flush=True); "
         "time.sleep(600)", str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (out / HOLDER_NAME).exists()  # stale: says who held it, holds nothing
    _, stderr = (process := _run(tmp_path, key_file)).communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert not (out / HOLDER_NAME).exists()


def test_overlapping_runs_on_one_out_both_complete_with_wait_lock(tmp_path: Path,
                                                                  key_file: Path) -> None:
    """The nightly-job overlap: two runs started together; without the lock they swept
    each other's temporary files and failed inputs."""
    source = tmp_path / "in"
    shutil.copytree(SAMPLE_DATA, source)
    commands = [[*RUN, "--key-file", str(key_file), "--wait-lock", "120", str(source),
                 str(tmp_path / "out")] for _ in range(2)]
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for c in commands]
    results = [p.communicate(timeout=240) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], results
    summaries = sorted(stderr.strip().splitlines()[0] for _, stderr in results)
    assert " 0 failed" in summaries[0] and " 0 failed" in summaries[1]
    assert any("already done" in line for line in summaries)  # the second resumed
