"""Helpers of the profile tests: real YAML files in ``tmp_path``, errors at file:line, the CLI.

Line numbers in the assertions are the 1-based lines of the files :func:`write` writes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from anonymizer.errors import ProfileError
from anonymizer.profiles import load_profile

REPO = Path(__file__).resolve().parents[1]

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
PATIENT_SEX = 0x00100040
PATIENT_AGE = 0x00101010
ACCESSION_NUMBER = 0x00080050
STUDY_DATE = 0x00080020
INSTITUTION_NAME = 0x00080080
MANUFACTURER = 0x00080070
DEVICE_SERIAL_NUMBER = 0x00181000
DATE_OF_LAST_CALIBRATION = 0x00181200
ROWS = 0x00280010
EVALUATOR_NAME = 0x00142006  # PN, not in Table E.1-1 nor in basic.yaml's actions
CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def write(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` (dedented; line 1 is the first line after the opening quotes)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def compile_error(path: Path) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    return info.value


def assert_at(exc: ProfileError, path: Path, line: int, *fragments: str) -> None:
    """The error names ``path`` and ``line`` (attributes and message) and says ``fragments``."""
    assert exc.source == str(path), str(exc)
    assert exc.line == line, str(exc)
    assert str(exc).startswith(f"{path}:{line}: "), str(exc)
    for fragment in fragments:
        assert fragment in exc.message, str(exc)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("anonymizer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "anonymizer"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd or REPO, check=False)
