"""The command line as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KEY_A, SAMPLE_DATA, one_line_error

from anonymizer import __version__

ANONYMIZER = [sys.executable, "-m", "anonymizer"]
ONE_FILE = SAMPLE_DATA / "ROE^RICHARD_99887766" / "20220911_CT_HEAD" / "IM0001.dcm"


def cli(*args: object, key: bytes | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ANONYMIZER_KEY"}
    if key is not None:
        env["ANONYMIZER_KEY"] = key.decode()
    return subprocess.run([*ANONYMIZER, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120, check=False)


@pytest.fixture()
def small_input(tmp_path: Path) -> Path:
    source = tmp_path / "in"
    source.mkdir()
    shutil.copyfile(ONE_FILE, source / "IM0001.dcm")
    return source


@pytest.mark.parametrize("command", [
    [], ["run"], ["keygen"], ["report"], ["profiles"], ["profiles", "list"],
    ["profiles", "check"], ["profiles", "show"],
], ids=lambda c: " ".join(c) or "top")
def test_help_of_each_command_exits_0(command):
    proc = cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: anonymizer {' '.join(command)}".rstrip())
    assert proc.stderr == ""


def test_run_help_lists_the_options():
    text = cli("run", "--help").stdout
    for option in ("--profile", "--key-file", "--jobs", "--batch-size", "--layout", "--audit",
                   "--manifest", "--crosswalk", "--no-progress", "IN", "OUT"):
        assert option in text


_THREADS_AFTER_NUMPY = """
import atexit, os, sys
sys.argv = ["anonymizer", "--version"]

def report():
    import numpy  # what pydicom loads in a run
    print(os.environ.get("OPENBLAS_NUM_THREADS"), len(os.listdir("/proc/self/task")))

atexit.register(report)
from anonymizer.cli import console
console()
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
@pytest.mark.parametrize(("given", "expected"), [(None, "1 1"), ("2", "2 2")])
def test_the_command_keeps_numpys_blas_to_one_thread_unless_told(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    done = subprocess.run([sys.executable, "-c", _THREADS_AFTER_NUMPY], env=env,
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == expected


def test_version():
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"anonymizer {__version__}"


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["run"], ["run", "only-in"]],
                         ids=["no-command", "unknown-command", "run-no-args", "run-one-arg"])
def test_usage_errors_exit_2(argv):
    proc = cli(*argv)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_keygen_creates_a_private_key_and_refuses_to_overwrite(tmp_path, small_input):
    path = tmp_path / "secret.key"
    proc = cli("keygen", path)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    assert re.fullmatch(rb"[0-9a-f]{64}\n", content)
    assert content.strip().decode() not in proc.stdout + proc.stderr  # the key is not shown

    again = cli("keygen", path)
    line = one_line_error(again)
    assert "exists" in line
    assert path.read_bytes() == content  # untouched

    other = tmp_path / "other.key"
    assert cli("keygen", other).returncode == 0
    assert other.read_bytes() != content  # random

    run = cli("run", "--key-file", path, "--no-progress", small_input, tmp_path / "out")
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1


def test_keygen_into_a_missing_folder_exits_2(tmp_path):
    one_line_error(cli("keygen", tmp_path / "no" / "such" / "dir" / "k"))
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("option", [["--jobs", "-1"], ["--jobs", "abc"], ["--jobs", "1.5"],
                                    ["-j", "-3"], ["--batch-size", "0"],
                                    ["--batch-size", "x"]])
def test_bad_jobs_or_batch_size_exit_2(tmp_path, small_input, option):
    key = tmp_path / "k"
    key.write_bytes(KEY_A)
    out = tmp_path / "out"
    line = one_line_error(cli("run", "--key-file", key, *option, small_input, out))
    assert ("jobs" if option[0] in ("--jobs", "-j") else "batch-size") in line
    assert not out.exists()


def test_unknown_profile_exits_2_with_one_line(tmp_path, small_input):
    out = tmp_path / "out"
    line = one_line_error(cli("run", "--profile", "no-such-profile", "--no-progress",
                              small_input, out, key=KEY_A))
    assert "no such profile" in line
    assert not out.exists()


def test_broken_profile_file_exits_2_with_one_line(tmp_path, small_input):
    profile = tmp_path / "broken.yaml"
    profile.write_text("name: broken\nrules: [unclosed\n")
    out = tmp_path / "out"
    line = one_line_error(cli("run", "--profile", profile, "--no-progress", small_input, out,
                              key=KEY_A))
    assert "broken.yaml" in line
    assert not out.exists()


@pytest.mark.parametrize("layout", ["{NoSuchKeyword}/{SOPInstanceUID}.dcm",
                                    "/abs/{SOPInstanceUID}.dcm", "../{SOPInstanceUID}.dcm",
                                    "{PatientID!r}/{SOPInstanceUID}.dcm"])
def test_bad_layout_exits_2(tmp_path, small_input, layout):
    out = tmp_path / "out"
    line = one_line_error(cli("run", "--layout", layout, small_input, out, key=KEY_A))
    assert "--layout" in line
    assert not out.exists()


def test_short_key_in_environment_exits_2(tmp_path, small_input):
    out = tmp_path / "out"
    line = one_line_error(cli("run", "--no-progress", small_input, out, key=b"short"))
    assert "ANONYMIZER_KEY" in line
    assert not out.exists()


def test_key_from_environment_is_accepted(tmp_path, small_input):
    proc = cli("run", "--no-progress", small_input, tmp_path / "out", key=KEY_A)
    assert proc.returncode == 0, proc.stderr
    assert "1 written, 0 failed, 0 skipped" in proc.stderr


def test_report_of_a_missing_audit_log_exits_2(tmp_path):
    one_line_error(cli("report", tmp_path / "missing.jsonl"))


def test_profiles_list_names_the_builtin_profiles():
    proc = cli("profiles", "list")
    assert proc.returncode == 0, proc.stderr
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"basic", "default", "research"} <= names


def test_relative_paths_and_parallel_jobs(tmp_path, small_input):
    (tmp_path / "k").write_bytes(KEY_A)
    shutil.copyfile(ONE_FILE, small_input / "copy.dcm")
    proc = cli("run", "--key-file", "k", "--jobs", "2", "--batch-size", "1", "--no-progress",
               "in", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 2
    assert (tmp_path / "out" / "audit.jsonl").is_file()


def test_output_piped_into_head_stops_quietly():
    # research's listing (~90 KB) outgrows a pipe's buffer (64 KiB), so head's exit
    # always reaches the writer.
    command = " ".join([*map(shlex.quote, ANONYMIZER), "profiles", "show", "research"])
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -3"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout.startswith("profile research")
    assert len(proc.stdout.splitlines()) == 3
    assert proc.stderr == ""
    assert proc.returncode == 141


@pytest.mark.parametrize("command", [
    ["profiles", "show", "research"], ["profiles", "show", "basic", "--sop-class", "CT"],
    ["profiles", "list"], ["profiles", "check", "profiles/research.yaml"],
], ids=" ".join)
def test_closed_stdout_exits_141_without_a_traceback(command):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes its first byte
    try:
        proc = subprocess.run([*ANONYMIZER, *command], stdout=write, stderr=subprocess.PIPE,
                              text=True, cwd=SAMPLE_DATA.parent, timeout=120, check=False)
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == 141
