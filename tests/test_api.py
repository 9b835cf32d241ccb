"""The public Python API (``anonymizer.__all__``): a dataset de-identified in memory is what
``anonymizer run`` writes for its file, failing closed raises, ``run`` returns the summary."""

from __future__ import annotations

import csv
import inspect
import io
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from conftest import KEY_A, SAMPLE_DATA, dcmread_quiet
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

import anonymizer
from anonymizer import DeidentificationError, Deidentifier, SecretKeyError, UsageError

PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm",
                 "MR_small_bigendian.dcm", "SC_rgb_rle.dcm")


def test_import_is_light() -> None:
    code = "import sys, anonymizer; print(sorted(m for m in ('pydicom', 'numpy', " \
           "'anonymizer.engine') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip() == "[]"


def test_everything_in_all_is_there_and_documented() -> None:
    for name in anonymizer.__all__:
        value = getattr(anonymizer, name)
        if name == "__version__":
            continue
        assert inspect.getdoc(value), name
        if inspect.isfunction(value) or inspect.isclass(value) and name[0].isupper() \
                and not issubclass(value, Exception):
            doc = inspect.getdoc(value) or ""
            assert "Parameters\n----------" in doc or "Attributes\n----------" in doc, name
    with pytest.raises(AttributeError):
        anonymizer.Engine  # noqa: B018 - internal: not exported


def _tree(root: Path) -> Path:
    """sample_data and some of pydicom's test files (a raw dataset, big endian, JPEG 2000,
    an RT plan, RLE colour), as one input folder."""
    source = root / "in"
    shutil.copytree(SAMPLE_DATA, source)
    for name in PYDICOM_FILES:
        shutil.copy(get_testdata_file(name), source / name)
    return source


def _run_outputs(tmp_path: Path, profile: str) -> dict[Path, Path]:
    source, out = _tree(tmp_path), tmp_path / "out"
    key = tmp_path / "project.key"
    key.write_bytes(KEY_A)
    manifest = tmp_path / "manifest.csv"
    summary = anonymizer.run(source, out, profile=profile, key_file=key, jobs=1,
                             manifest=manifest)
    assert summary.exit_code == 0, summary.failures
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] == "written"]
    assert len(rows) == summary.counts["written"] == 18
    return {source / row["input"]: out / row["output"] for row in rows}


def _encoded(ds: Dataset, part10: bool = True) -> bytes:
    """``ds`` written by pydicom (``save_as``), as a user of the API writes it."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=part10)
    return buffer.getvalue()


@pytest.mark.parametrize("profile", ["basic", "research"])
def test_deidentify_in_memory_gives_the_bytes_run_writes(tmp_path: Path, profile: str) -> None:
    """Same profile and key: the dataset ``deidentify`` returns, saved with pydicom, is
    byte for byte the file ``anonymizer run`` writes for its input; the input dataset is
    left as it was."""
    pairs = _run_outputs(tmp_path, profile)
    deidentifier = Deidentifier(profile, key=KEY_A)
    for source, output in pairs.items():
        original = dcmread_quiet(source, force=True)
        before = _encoded(original, part10=False)
        assert _encoded(deidentifier.deidentify(original)) == output.read_bytes(), source
        assert _encoded(original, part10=False) == before, source


def test_every_form_of_the_key_gives_the_same_results(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "project.key"
    key_file.write_bytes(KEY_A + b"\n")
    monkeypatch.setenv("ANONYMIZER_KEY", KEY_A.decode())
    ds = dcmread_quiet(Path(get_testdata_file("CT_small.dcm")))
    results = {str(Deidentifier("default", **form).deidentify(ds).PatientID)
               for form in ({"key": KEY_A}, {"key": KEY_A.decode()}, {"key_file": key_file},
                            {})}
    assert len(results) == 1 and results != {str(ds.PatientID)}
    with pytest.raises(SecretKeyError):
        Deidentifier("basic", key=KEY_A, key_file=key_file)
    with pytest.raises(SecretKeyError):
        Deidentifier("basic", key=b"short")


def test_a_dataset_that_cannot_be_cleaned_raises(tmp_path: Path) -> None:
    deidentifier = Deidentifier(anonymizer.load_profile("basic"), key=KEY_A)
    ds = dcmread_quiet(Path(get_testdata_file("CT_small.dcm")))
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(DeidentificationError, match="^burned-in annotation: pixel data "
                                                    "not cleaned$"):
        deidentifier.deidentify(ds)
    # a Person Name that lost its VR: the header cannot be trusted past it
    path = tmp_path / "flipped.dcm"
    dcmread_quiet(Path(get_testdata_file("CT_small.dcm"))).save_as(path)
    path.write_bytes(path.read_bytes().replace(b"PN", b"Q@", 1))
    with pytest.raises(DeidentificationError, match="lost its VR|invalid VR") as caught:
        deidentifier.deidentify(dcmread_quiet(path))
    assert "CompressedSamples" not in str(caught.value)


def test_run_refuses_as_the_command_does(tmp_path: Path) -> None:
    key = tmp_path / "project.key"
    key.write_bytes(KEY_A)
    with pytest.raises(UsageError, match="--jobs"):
        anonymizer.run(SAMPLE_DATA, tmp_path / "out", key_file=key, jobs=-1)
    with pytest.raises(UsageError):
        anonymizer.run(SAMPLE_DATA, SAMPLE_DATA / "out", key_file=key)
    with pytest.raises(anonymizer.ProfileError):
        anonymizer.load_profile(tmp_path / "missing.yaml")


def test_a_dataset_built_in_memory(tmp_path: Path) -> None:
    """No file behind it: no file meta, no encoding read from a file."""
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.StudyDate = "DOE^JANE", "PID-88421", "19700101"
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5.6.7"
    result = Deidentifier("research", key=KEY_A).deidentify(ds)
    encoded = _encoded(result)
    for value in (b"DOE", b"88421", b"19700101", b"1.2.3.4.5.6.7"):
        assert value not in encoded
    assert result.PatientIdentityRemoved == "YES"
    assert result.file_meta.MediaStorageSOPInstanceUID == result.SOPInstanceUID
    assert ds.PatientName == "DOE^JANE" and "PatientIdentityRemoved" not in ds


def test_the_callers_pydicom_settings_do_not_change_the_result(tmp_path: Path) -> None:
    """A caller who validates values strictly and turns warnings into errors still gets
    what ``run`` writes for a file with invalid values, and keeps their settings."""
    from pydicom import config

    ds = dcmread_quiet(Path(get_testdata_file("CT_small.dcm")))
    path = tmp_path / "invalid.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.PatientAge, ds.StudyDate = "DOE^JOHN", "19700101 Jane"  # invalid AS and DA
        ds.save_as(path, enforce_file_format=True)
    deidentifier = Deidentifier("research", key=KEY_A)
    expected = _encoded(deidentifier.deidentify(dcmread_quiet(path)))
    before = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pydicom's warnings quote values: none
            assert _encoded(deidentifier.deidentify(pydicom.dcmread(path))) == expected
        assert config.settings.reading_validation_mode == config.RAISE
    finally:
        config.settings.reading_validation_mode = before
