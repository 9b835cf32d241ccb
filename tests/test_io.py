"""The one-pass scanner and the element encoder agree with pydicom on real files."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag

from anonymizer.elements import stored
from anonymizer.engine import Engine
from anonymizer.errors import DeidentificationError, PixelDataError
from anonymizer.io import read_dataset, write_temporary
from anonymizer.io.encoder import encode_element
from anonymizer.io.scan import Unsupported, scan, sequence_item


def _part10(paths: list[Path]) -> list[tuple[Path, bytes]]:
    files = [(path, path.read_bytes()) for path in paths]
    return [(path, data) for path, data in files if data[128:132] == b"DICM"]


def _content(ds: Dataset) -> list[Any]:
    """Every element's tag, VR and decoded value, sequences as nested lists."""
    out: list[Any] = []
    for tag in sorted(ds.keys()):
        elem = ds[tag]
        if elem.VR == "SQ":
            out.append((tag, [(_content(item), item.is_undefined_length_sequence_item)
                              for item in elem.value]))
        else:
            out.append((tag, elem.VR, elem.value, elem.is_undefined_length))
    return out


def test_scan_parses_like_pydicom(readable_testdata: list[Path]) -> None:
    scanned = unsupported = 0
    for path, data in _part10(readable_testdata):
        try:
            result = scan(data)
        except Unsupported:
            unsupported += 1
            continue
        scanned += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = pydicom.dcmread(path)
            assert _content(result.dataset) == _content(reference), path.name
        assert result.dataset.original_encoding == reference.original_encoding
        assert result.dataset.original_character_set == reference.original_character_set
        assert result.dataset.file_meta == reference.file_meta
        # the spans tile the dataset: each element starts where the previous one ended
        spans = sorted(result.spans.values())
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False)), path.name
        assert spans[-1][1] == len(data)
    assert scanned > 3 * unsupported  # the fallback is for the unusual files only


@pytest.mark.parametrize("damage", ["truncate", "garbage", "group_length", "big_endian"])
def test_scan_leaves_damaged_or_unusual_files_to_pydicom(damage: str) -> None:
    path = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    data = path.read_bytes()
    if damage == "truncate":
        data = data[:-1000]
    elif damage == "garbage":
        data += b"\x10\x00\x10\x00PN\x04\x00DOE^"  # an element after the Pixel Data
    elif damage == "group_length":
        data = data[:140] + bytes([data[140] + 2]) + data[141:]
    else:
        data = Path(pydicom.data.get_testdata_file("MR_small_bigendian.dcm")).read_bytes()
    with pytest.raises(Unsupported):
        scan(data)


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


def test_scanned_pixel_data_stays_in_the_file_bytes_until_asked_for() -> None:
    path = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds = scan(path.read_bytes()).dataset
    assert stored(ds)[0x7FE00010].value is None  # not copied out while scanning
    assert ds.PixelData == pydicom.dcmread(path).PixelData  # pydicom reads it when asked


@pytest.mark.parametrize("undefined", [False, True])
def test_sequence_item_is_the_item_pydicom_builds(undefined: bool) -> None:
    elements = {BaseTag(0x00100010): RawDataElement(BaseTag(0x00100010), "PN", 4, b"DOE^",
                                                    8, False, True)}
    expected = Dataset(elements, parent_encoding=["latin_1"])
    expected.is_undefined_length_sequence_item = undefined
    expected.seq_item_tell = 42
    expected.set_original_encoding(False, True, ["latin_1"])
    item = sequence_item(elements, ["latin_1"], False, ["latin_1"], undefined, 42)
    assert vars(item) == vars(expected)
    other = sequence_item({}, "iso8859", False, "iso8859", undefined, 0)
    assert other._private_blocks is not item._private_blocks  # containers not shared


def test_an_input_read_once_is_parsed_from_those_bytes(tmp_path: Path) -> None:
    """Resume hashes an input before deciding to parse it: the parse reuses those bytes
    (the file is not read a second time) and reports that hash."""
    from anonymizer.io import read_input

    path = tmp_path / "ct.dcm"
    path.write_bytes(Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes())
    raw = read_input(path)
    path.unlink()  # a second read would fail
    read = read_dataset(path, raw)
    assert read.sha256 == raw.sha256 == hashlib.sha256(raw.data or b"").hexdigest()
    assert read.dataset.PatientName == "CompressedSamples^CT1"
