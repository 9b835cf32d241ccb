"""The reader and the element encoder agree with pydicom on real files (the scanner: test_scan)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import SAMPLE_DATA
from pydicom.dataelem import RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element

from anonymizer.elements import stored
from anonymizer.engine import Engine
from anonymizer.errors import DeidentificationError, PixelDataError
from anonymizer.io import read_dataset, read_input, write_temporary
from anonymizer.io.encoder import encode_element
from anonymizer.io.splice import ChangedWhileReadError
from anonymizer.io.writer import TEMP_PREFIX


def _pydicom_bytes(elem: Any, implicit: bool, encoding: Any) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, True
    write_data_element(buffer, elem, encoding)
    return buffer.getvalue()


def test_encoder_writes_what_pydicom_writes(readable_testdata: list[Path],
                                            engines: dict[str, Engine]) -> None:
    """Every element of every de-identified test file (raw, re-encoded, sequences)."""
    compared = 0
    for path in readable_testdata:
        read = read_dataset(path)
        ds = read.dataset
        implicit, little = ds.original_encoding
        if not little or read.splice is None:
            continue
        try:
            engines["research"].deidentify(ds)
        except DeidentificationError as exc:  # pixels with text, or not searchable
            assert isinstance(exc, PixelDataError) or "in pixels" in str(exc) \
                or "burned-in" in str(exc), (path.name, exc)
            continue
        encoding = ds.get("SpecificCharacterSet", "iso8859")
        for tag, elem in stored(ds).items():
            if not tag & 0xFFFF and tag >> 16 > 6:
                continue
            if isinstance(elem, RawDataElement) and elem.value is None:
                continue  # a value left on disk: only large files, written by copying
            try:
                expected = _pydicom_bytes(elem, bool(implicit), encoding)
            except (TypeError, ValueError):  # pydicom cannot write it: neither can we
                with pytest.raises((TypeError, ValueError)):
                    encode_element(elem, bool(implicit), encoding)
                continue
            assert encode_element(elem, bool(implicit), encoding) == expected, \
                (path.name, hex(tag))
            compared += 1
    assert compared > 5_000


def test_preamble_never_reaches_the_output(tmp_path: Path, engines: dict[str, Engine]) -> None:
    """The 128-byte preamble is the sender's free-form bytes: written as zeros, also for a
    file without SOP UIDs that is written by pydicom rather than spliced."""
    source = Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()
    secret = b"DOE^JOHN 19700101".ljust(128, b"\x00")
    for name, drop_uids in (("spliced.dcm", False), ("plain.dcm", True)):
        path = tmp_path / name
        path.write_bytes(secret + source[128:])
        read = read_dataset(path)
        if drop_uids:
            del read.dataset.SOPInstanceUID
        result = engines["basic"].deidentify(read.dataset)
        written, _ = write_temporary(read.dataset, tmp_path / "out", name, read.splice,
                                     result.changes)
        assert b"DOE^JOHN" not in written.read_bytes()
        assert written.read_bytes()[:128] == b"\x00" * 128


@pytest.mark.parametrize("change", ["written to", "replaced"])
def test_a_large_input_changed_before_its_bytes_are_copied_is_not_written(
        tmp_path: Path, engines: dict[str, Engine], change: str) -> None:
    """The untouched elements of an input over LARGE_FILE are copied from the file when the
    output is written, after it was parsed and de-identified: if it is no longer that file
    as it was, nothing is written (its bytes were never looked at)."""
    path = tmp_path / "input.dcm"
    shutil.copyfile(SAMPLE_DATA / "DOE^JOHN_12345678/20190101_CT_CHEST/IM0001.dcm", path)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    out = tmp_path / "out"

    def read_and_clean():
        read = read_dataset(path, dataclasses.replace(read_input(path), data=None))
        assert read.splice is not None and read.splice.source.handle is not None
        return read, engines["basic"].deidentify(read.dataset)

    read, result = read_and_clean()  # unchanged: written
    written, _ = write_temporary(read.dataset, out, "same", read.splice, result.changes)
    read.close()
    assert written.is_file()
    read, result = read_and_clean()
    data = path.read_bytes()
    if change == "written to":  # in place, the same size
        with open(path, "r+b") as handle:
            handle.write(data.replace(b"DOE^JOHN", b"ROE^JANE"))
    else:
        path.with_name("new").write_bytes(data)
        os.replace(path.with_name("new"), path)
    try:
        with pytest.raises(ChangedWhileReadError, match="changed while it was read"):
            write_temporary(read.dataset, out, "changed", read.splice, result.changes)
    finally:
        read.close()
    assert sorted(p.name for p in out.iterdir()) == [written.name]  # no temporary left


def test_an_output_folder_removed_during_a_run_is_made_again(tmp_path: Path,
                                                            engines: dict[str, Engine]) -> None:
    """The writer makes each folder once per process; one removed since is made again."""
    folder = tmp_path / "out" / "series"

    def write(name: str) -> Path:
        read = read_dataset(pydicom.data.get_testdata_file("CT_small.dcm"))
        result = engines["basic"].deidentify(read.dataset)
        return write_temporary(read.dataset, folder, name, read.splice, result.changes)[0]

    assert write("first").is_file()
    shutil.rmtree(tmp_path / "out")
    assert write("second") == folder / f"{TEMP_PREFIX}second"
    assert (folder / f"{TEMP_PREFIX}second").is_file()


def test_an_input_read_once_is_parsed_from_those_bytes(tmp_path: Path) -> None:
    """Resume hashes an input before deciding to parse it: the parse reuses those bytes
    (the file is not read a second time) and reports that hash."""
    path = tmp_path / "ct.dcm"
    path.write_bytes(Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes())
    raw = read_input(path)
    path.unlink()  # a second read would fail
    read = read_dataset(path, raw)
    assert read.sha256 == raw.sha256 == hashlib.sha256(raw.data or b"").hexdigest()
    assert read.dataset.PatientName == "CompressedSamples^CT1"


def test_a_large_input_changed_after_its_hashing_fails(tmp_path: Path) -> None:
    """An input over LARGE_FILE is hashed in one pass and parsed in another: parsed only if
    it is still the file that was hashed, so the recorded hash describes what was read."""
    path = tmp_path / "input.dcm"
    shutil.copyfile(SAMPLE_DATA / "DOE^JOHN_12345678/20190101_CT_CHEST/IM0001.dcm", path)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # long before: not racy, a stat kept
    hashed = dataclasses.replace(read_input(path), data=None)  # as for a file over 64 MiB
    assert hashed.stat is not None
    read_dataset(path, hashed).close()  # the same file: parsed
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))  # touched in between
    with pytest.raises(ChangedWhileReadError, match="changed while it was read"):
        read_dataset(path, hashed)
    with pytest.raises(ChangedWhileReadError):  # changed during the hashing pass itself
        read_dataset(path, dataclasses.replace(hashed, stat=None))
