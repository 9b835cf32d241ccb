"""``anonymizer profiles list | check | show``: output, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from profile_helpers import (
    CT,
    ENHANCED_CT,
    cli,
    write,
)

from anonymizer.profiles import builtin_profile_names


def test_cli_check_bad_profile_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "BAD.yaml", """\
        name: bad
        standard: ps3.15
        actions:
          PatientName: keep
          PatientNme: remove
        """)
    result = cli("profiles", "check", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "BAD.yaml:5:" in lines[0]
    assert "PatientNme" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_check_yaml_error_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "BAD.yaml", "name: bad\nactions: [\n")
    result = cli("profiles", "check", str(path))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "BAD.yaml:3:" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_profile_layout_is_one_line_from_check_and_run(tmp_path: Path) -> None:
    path = write(tmp_path, "BAD.yaml", """\
        name: bad
        extends: research
        layout: "{PatientID}/{StudyDate/{SOPInstanceUID}.dcm"
        """)
    source = tmp_path / "in"
    source.mkdir()
    (source / "x.dcm").write_bytes(b"not read: the profile fails first")
    out = tmp_path / "out"
    key = tmp_path / "k"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    for result in (cli("profiles", "check", str(path)),
                   cli("run", "--profile", str(path), "--key-file", str(key), str(source),
                       str(out))):
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"anonymizer: error: {path}:3: layout "), result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "bad braces" in result.stderr
    assert not out.exists()


def test_cli_check_good_profile(tmp_path: Path) -> None:
    path = write(tmp_path, "good.yaml", """\
        name: good
        extends: basic
        actions:
          PatientName: keep
        """)
    result = cli("profiles", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert f"{path}: ok (profile good" in result.stdout


def test_cli_show_research() -> None:
    result = cli("profiles", "show", "research")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "DeviceSerialNumber" in line]
    assert len(lines) == 1
    assert "retain_device_identity" in lines[0] and "keep" in lines[0]


def _show_line(result: subprocess.CompletedProcess[str], keyword: str) -> str:
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if f" {keyword} " in line]
    assert len(lines) == 1, result.stdout[:2000]
    return lines[0]


@pytest.mark.parametrize(
    ("sop_class", "expected"),
    [
        ("CT", "remove (Type 3, X/Z/D)"),
        (CT, "remove (Type 3, X/Z/D)"),
        ("Enhanced CT Image Storage", "dummy (Type 1, X/Z/D)"),
        (ENHANCED_CT, "dummy (Type 1, X/Z/D)"),
    ],
)
def test_cli_show_basic_resolved_for_sop_class(sop_class: str, expected: str) -> None:
    line = _show_line(cli("profiles", "show", "basic", "--sop-class", sop_class),
                      "DeviceSerialNumber")
    assert expected in line
    assert "PS3.15 Basic Profile" in line


def test_cli_show_unknown_sop_class_is_usage_error() -> None:
    result = cli("profiles", "show", "basic", "--sop-class", "Not A SOP Class")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "unknown SOP Class" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_list() -> None:
    result = cli("profiles", "list")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert names == builtin_profile_names()
    assert "research" in names
