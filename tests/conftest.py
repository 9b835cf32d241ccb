"""Shared fixtures: keys, the sample data, and the real test files of pydicom + pydicom-data."""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files

from anonymizer.engine import Engine
from anonymizer.io import NotDicomError, read_dataset
from anonymizer.keyed import KeyedSource
from anonymizer.profiles import load_profile

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "sample_data"
KEY_A = b"test-key-A-0123456789abcdef0123456789"
KEY_B = b"test-key-B-fedcba9876543210fedcba9876"


@pytest.fixture(scope="session")
def keyed() -> KeyedSource:
    return KeyedSource(KEY_A)


@pytest.fixture(scope="session")
def other_keyed() -> KeyedSource:
    return KeyedSource(KEY_B)


@pytest.fixture(scope="module")
def key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key file shared by the tests of one module (KEY_A)."""
    path = tmp_path_factory.mktemp("key") / "secret.key"
    path.write_bytes(KEY_A)
    return path


def required_tool(*names: str, package: str) -> str:
    """The path of the first of ``names`` on PATH; without any, the test is skipped
    locally and fails in CI (``CI`` set), where ``.ci/run`` installs ``package``."""
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    message = f"{names[0]} is not installed: apt-get install {package}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture()
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.key"
    path.write_bytes(KEY_A)
    return path


@pytest.fixture(scope="session")
def engines(keyed: KeyedSource) -> dict[str, Engine]:
    return {name: Engine(load_profile(name), keyed) for name in ("basic", "default", "research")}


def _testdata_files() -> list[Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sorted(Path(f) for f in get_testdata_files() if os.path.isfile(f))


@pytest.fixture(scope="session")
def testdata_files() -> list[Path]:
    """Every file of pydicom's and pydicom-data's test sets (DICOM or not)."""
    return _testdata_files()


@pytest.fixture(scope="session")
def readable_testdata() -> list[Path]:
    """The test files our reader accepts as DICOM (not DICOMDIR, not other formats)."""
    readable = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in _testdata_files():
            try:
                read_dataset(path)
            except NotDicomError:
                continue
            except Exception:  # noqa: BLE001 - unreadable files are not part of this set
                continue
            readable.append(path)
    return readable


@pytest.fixture(scope="session")
def testdata_tree(tmp_path_factory: pytest.TempPathFactory, testdata_files: list[Path]) -> Path:
    """A copy of all pydicom + pydicom-data test files as one input folder."""
    root = tmp_path_factory.mktemp("testdata")
    common = Path(os.path.commonpath([str(p) for p in testdata_files]))
    for path in testdata_files:
        target = root / path.relative_to(common)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return root


@pytest.fixture()
def sample_copy(tmp_path: Path) -> Path:
    """A writable copy of sample_data/."""
    target = tmp_path / "in"
    shutil.copytree(SAMPLE_DATA, target)
    return target


def dcmread_quiet(path: Path, **kwargs) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, **kwargs)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert exit 2 with exactly one stderr line and no traceback; return that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("anonymizer: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


# -- a real Orthanc for the network tests (tests/test_net_*.py) ------------------------------
# One PACS and one research archive for the whole session; tests wipe what they stored.

@pytest.fixture(scope="session")
def orthanc_pair(tmp_path_factory: pytest.TempPathFactory):
    """(pacs, archive, move_port): two real Orthanc servers on loopback.

    The PACS knows our AE title ANONYMIZER (C-FIND/C-GET/C-MOVE), with ``move_port`` as
    its C-MOVE destination; the archive overwrites instances it already has, so that
    every store shows in its change log. Without Orthanc the tests skip, except in CI
    (``CI`` set), where they fail: ``.ci/run`` installs it.
    """
    from orthanc_server import Orthanc, free_port, orthanc_missing, remove

    missing = orthanc_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("orthanc")
    move_port = free_port()
    pacs = Orthanc(root / "pacs", "PACS", modalities={"ANONYMIZER": move_port})
    archive = Orthanc(root / "archive", "ARCHIVE", overwrite=True)
    try:
        pacs.start()
        archive.start()
        yield pacs, archive, move_port
    finally:
        remove(pacs, archive)


@pytest.fixture()
def netrc_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A netrc file (mode 0600) with the test Orthancs' credentials, as ``$NETRC``."""
    from orthanc_server import PASSWORD, USER

    path = tmp_path / "netrc"
    path.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


@pytest.fixture(scope="session")
def folder_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """SOP Instance UID -> bytes of each output of a folder run (basic, the test key)."""
    from net_helpers import cli, tree

    out = tmp_path_factory.mktemp("folder-run") / "out"
    proc = cli("run", "-p", "basic", "-j", "1", "--layout", "{SOPInstanceUID}", SAMPLE_DATA, out)
    assert proc.returncode == 0, proc.stderr
    return tree(out)


@pytest.fixture()
def archive(orthanc_pair, netrc_file):
    """The research archive of ``orthanc_pair``, empty before and after the test."""
    _, archive, _ = orthanc_pair
    archive.wipe()
    yield archive
    archive.wipe()
