"""The one-pass scanner (``anonymizer/io/scan.py``) held to pydicom's reader.

The scanner replaces ``pydicom.dcmread`` on the hot path, so every element the
de-identifier sees comes from it: a value it parses differently from pydicom is a value
the rules judge wrongly. The differential test reads every test file of pydicom and
pydicom-data, the sample data and freshly generated benchmark-like files both ways and
compares the datasets element by element at every depth: the raw elements as read
(tag, VR, length, value bytes, encoding flags), then every element decoded (VR, value,
private creator, lengths), sequences item by item with each item's own state
(encodings, undefined length, offsets, pixel representation), the file meta and the
preamble. A file the scanner does not handle must be declined (:class:`Unsupported`),
and the files it declines are a committed list with the reasons: a new decline, or one
gone, fails the test until the list is updated on purpose.

Rerun after upgrading pydicom (pinned to the minor version this was checked against).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import SAMPLE_DATA
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from anonymizer.elements import stored
from anonymizer.io import InputBytes, read_dataset
from anonymizer.io.scan import Unsupported, scan, sequence_item
from anonymizer.tags import ITEM_TAG, LONG_LENGTH_VRS, UNDEFINED_LENGTH

_TAG = struct.Struct("<HH")

#: Files the scanner leaves to pydicom, by label (see :func:`_label`), with its reason.
#: Big endian and deflated files are pydicom's; the others are damaged (truncated, a
#: missing or wrong file meta group length or transfer syntax, encapsulated Pixel Data
#: without its delimiter), SC_rgb_jpeg.dcm is an implicit VR dataset labelled explicit
#: (pydicom reads it as implicit) and UN_sequence.dcm has a sequence encoded as UN of
#: undefined length.
EXPECTED_DECLINES: dict[str, str] = {
    'pydicom-data:OBXXXX1A_expb.dcm': 'big endian or deflated',
    'pydicom-data:OBXXXX1A_expb_2frame.dcm': 'big endian or deflated',
    'pydicom-data:SC_rgb_expb.dcm': 'big endian or deflated',
    'pydicom-data:SC_rgb_expb_16bit.dcm': 'big endian or deflated',
    'pydicom-data:SC_rgb_expb_16bit_2frame.dcm': 'big endian or deflated',
    'pydicom-data:SC_rgb_expb_2frame.dcm': 'big endian or deflated',
    'pydicom-data:SC_rgb_expb_32bit.dcm': 'big endian or deflated',
    'pydicom-data:SC_rgb_expb_32bit_2frame.dcm': 'big endian or deflated',
    'pydicom-data:emri_small_big_endian.dcm': 'big endian or deflated',
    'pydicom-data:emri_small_jpeg_2k_lossless_too_short.dcm':
        'encapsulated Pixel Data without its delimiter',
    'pydicom-data:gdcm-US-ALOKA-16_big.dcm': 'big endian or deflated',
    'pydicom-data:liver_expb.dcm': 'big endian or deflated',
    'pydicom:ExplVR_BigEnd.dcm': 'big endian or deflated',
    'pydicom:MR_small_bigendian.dcm': 'big endian or deflated',
    'pydicom:MR_small_expb.dcm': 'big endian or deflated',
    'pydicom:MR_truncated.dcm': 'value cut short',
    'pydicom:SC_rgb_jpeg.dcm': 'unknown VR',
    'pydicom:SC_rgb_small_odd_big_endian.dcm': 'big endian or deflated',
    'pydicom:UN_sequence.dcm': 'undefined length outside Sequences and Pixel Data',
    'pydicom:dicomdirtests/DICOMDIR-bigEnd': 'big endian or deflated',
    'pydicom:dicomdirtests/DICOMDIR-nooffset': 'item cut short',
    'pydicom:image_dfl.dcm': 'big endian or deflated',
    'pydicom:liver_expb_1frame.dcm': 'big endian or deflated',
    'pydicom:meta_missing_tsyntax.dcm': 'no transfer syntax',
    'pydicom:no_meta_group_length.dcm': 'file meta group length missing or wrong',
    'pydicom:rtdose_expb.dcm': 'big endian or deflated',
    'pydicom:rtdose_expb_1frame.dcm': 'big endian or deflated',
    'pydicom:rtplan_truncated.dcm': 'value cut short',
}


# -- the files ---------------------------------------------------------------------------


def _label(path: Path, roots: dict[str, Path]) -> str:
    for prefix, root in roots.items():
        if path.is_relative_to(root):
            return f"{prefix}:{path.relative_to(root).as_posix()}"
    return path.name


@pytest.fixture(scope="session")
def generated_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few files from each of the benchmark's generators (not the corpus on disk)."""
    from bench.corpus import single_frame, ultrasound, write_multiframe

    root = tmp_path_factory.mktemp("generated")
    single_frame(6, root=root, log=lambda _: None)
    ultrasound(2, root=root, log=lambda _: None)
    (root / "mf").mkdir()
    write_multiframe(root / "mf" / "enhanced-ct.dcm", 2)
    return root


@pytest.fixture(scope="session")
def all_files(generated_files: Path) -> list[tuple[str, bytes]]:
    """(label, bytes) of every test, sample and generated file, DICOM or not."""
    import pydicom.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        testdata = [Path(f) for f in get_testdata_files() if os.path.isfile(f)]
    pydicom_root = Path(pydicom.data.__file__).parent / "test_files"
    roots = {"pydicom": pydicom_root, "sample": SAMPLE_DATA, "bench": generated_files}
    roots["pydicom-data"] = next(p.parent for p in testdata
                                 if not p.is_relative_to(pydicom_root))
    paths = testdata + [p for root in (SAMPLE_DATA, generated_files)
                        for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return sorted((_label(path, roots), path.read_bytes()) for path in paths)


# -- the comparison ------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    """Equal values; NaN equals NaN (a float value the file holds, read both ways)."""
    try:
        if a == b:
            return True
    except ValueError:  # arrays
        pass
    return type(a) is type(b) and repr(a) == repr(b)


def _raw_form(elem: RawDataElement, data: bytes, shift: int) -> tuple[Any, ...]:
    """A raw element as read, its offset shifted by ``shift`` (see :func:`differences`);
    a value left in the file is read from the file's bytes."""
    value = elem.value
    if value is None and elem.length:
        value = data[elem.value_tell + shift:elem.value_tell + shift + elem.length]
    return (elem.tag, elem.VR, elem.length, value, elem.value_tell + shift,
            elem.is_implicit_VR, elem.is_little_endian, elem.is_raw, elem.is_buffered)


def _decode(ds: Dataset, tag: BaseTag) -> tuple[DataElement | None, tuple[str, str] | None]:
    try:
        return ds[tag], None
    except Exception as exc:  # noqa: BLE001 - both readers must fail alike
        return None, (type(exc).__name__, str(exc))


#: Dataset attributes not compared as values: the buffer the values are read from
#: (compared by content), the file meta (compared as a dataset) and the elements (one by
#: one); the offsets of an item are compared shifted.
_NOT_STATE = frozenset({"_dict", "buffer", "file_meta"})
_POSITIONS = frozenset({"seq_item_tell", "file_tell"})


def differences(scanned: Dataset, reference: Dataset, data: bytes, where: str = "",
                shift: int = 0, own_shift: int = 0) -> list[str]:
    """Every way ``scanned`` differs from ``reference`` (pydicom's), at every depth.

    Decodes both datasets completely (as the engine may). Offsets are compared shifted:
    pydicom parses a defined-length sequence when it is first read, from its value's
    bytes, and the offsets of the elements in its items count from the start of that
    value; the scanner's count from the start of the file (where pydicom parses an
    undefined-length sequence in place, or the scanner too leaves a value to pydicom,
    the two count alike). ``shift`` is what to add to the offsets of ``reference``'s
    elements to get the scanner's, ``own_shift`` the same for its own offset as an item.
    """
    found: list[str] = []
    state, expected_state = vars(scanned), vars(reference)
    if ("buffer" in state or "buffer" in expected_state) \
            and state["buffer"].getvalue() != expected_state["buffer"].getvalue():
        found.append(f"{where}: buffer")
    if "file_meta" in state or "file_meta" in expected_state:
        found += differences(state["file_meta"], expected_state["file_meta"], data,
                             f"{where}meta")
    keys, expected_keys = list(scanned._dict), list(reference._dict)
    if keys != expected_keys:
        found.append(f"{where}: tags {keys} != {expected_keys}")
    for tag in expected_keys:
        if tag in scanned._dict:
            found += _element_differences(scanned, reference, tag, data, f"{where} {tag}",
                                          shift)
    # after decoding: pydicom sets state (pixel representation) when it converts sequences
    state, expected_state = vars(scanned), vars(reference)
    for name in sorted((state.keys() | expected_state.keys()) - _NOT_STATE):
        value = state.get(name, "<missing>")
        expected = expected_state.get(name, "<missing>")
        if name in _POSITIONS and isinstance(expected, int):
            expected += own_shift
        if not _same(value, expected):
            found.append(f"{where}: {name} {value!r:.60} != {expected!r:.60}")
    return found


def _element_differences(scanned: Dataset, reference: Dataset, tag: BaseTag, data: bytes,
                         where: str, shift: int) -> list[str]:
    found: list[str] = []
    raw, expected_raw = scanned._dict[tag], reference._dict[tag]
    scanner_raw = isinstance(raw, RawDataElement)
    reference_raw = isinstance(expected_raw, RawDataElement)
    if scanner_raw and reference_raw:
        form, expected_form = _raw_form(raw, data, 0), _raw_form(expected_raw, data, shift)
        if form != expected_form:
            found.append(f"{where}: raw {form!r:.200} != {expected_form!r:.200}")
    elif scanner_raw and expected_raw.VR == "SQ":
        found.append(f"{where}: a sequence pydicom parsed while reading is left as bytes")
    # otherwise one of them decoded the element while reading: the scanner every sequence
    # (pydicom those of undefined length), pydicom the file meta it checks and the
    # character set; their decoded values are compared below
    expected_tell = expected_raw.value_tell if reference_raw else expected_raw.file_tell
    elem, error = _decode(scanned, tag)
    expected, expected_error = _decode(reference, tag)
    if error or expected_error:
        if error != expected_error:
            found.append(f"{where}: decoding {error} != {expected_error}")
        return found
    assert elem is not None and expected is not None
    state, expected_state = dict(vars(elem)), dict(vars(expected))
    value, expected_value = state.pop("_value"), expected_state.pop("_value")
    expected_state["file_tell"] = expected_tell + shift
    if state != expected_state:
        found.append(f"{where}: element {state} != {expected_state}")
    if not isinstance(value, Sequence) and not isinstance(expected_value, Sequence):
        if not _same(value, expected_value):
            found.append(f"{where}: value {value!r:.100} != {expected_value!r:.100}")
        return found
    if not isinstance(value, Sequence) or not isinstance(expected_value, Sequence):
        return [*found, f"{where}: {type(value).__name__} != {type(expected_value).__name__}"]
    sequence_state, expected_sequence_state = dict(vars(value)), dict(vars(expected_value))
    sequence_state.pop("_list")
    expected_sequence_state.pop("_list")
    if sequence_state != expected_sequence_state:
        found.append(f"{where}: sequence {sequence_state} != {expected_sequence_state}")
    if len(value) != len(expected_value):
        return [*found, f"{where}: {len(value)} items != {len(expected_value)}"]
    # parsed by the scanner, by pydicom from its value: see ``differences``
    inner = expected_tell + shift if reference_raw and not scanner_raw \
        else 0 if reference_raw else shift
    for index, (item, expected_item) in enumerate(zip(value, expected_value, strict=True)):
        found += differences(item, expected_item, data, f"{where}[{index}]", inner, shift)
    return found


def _dcmread(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


def _outcomes(all_files: list[tuple[str, bytes]]) -> Iterator[tuple[str, str | None,
                                                                     list[str]]]:
    """(label, decline reason or None, differences) of each Part 10 file."""
    for label, data in all_files:
        if data[128:132] != b"DICM":
            continue  # no preamble and DICM: never offered to the scanner
        try:
            scanned = scan(data)
        except Unsupported as exc:
            yield label, str(exc), []
            continue
        except Exception as exc:  # noqa: BLE001 - the reader would fail the file with it
            yield label, None, [f"the scanner raised {exc!r}, not Unsupported"]
            continue
        try:
            reference = _dcmread(data)
        except Exception as exc:  # noqa: BLE001 - scanned what pydicom cannot read
            yield label, None, [f"pydicom cannot read it: {exc!r}"]
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = _span_differences(scanned.spans, reference, data)
            yield label, None, found + differences(scanned.dataset, reference, data)


def _span_differences(spans: dict[int, tuple[int, int]], reference: Dataset,
                      data: bytes) -> list[str]:
    """The splice writer copies each top-level element from its span: the spans tile the
    dataset to the end of the file, each starts at the element's tag and a defined-length
    element's ends with its value, where pydicom read them."""
    found = []
    ordered = sorted(spans.values())
    if any(a[1] != b[0] for a, b in zip(ordered, ordered[1:], strict=False)) \
            or ordered[-1][1] != len(data):
        found.append("spans: not contiguous to the end of the file")
    if spans.keys() != reference._dict.keys():
        found.append("spans: not one per top-level element")
    implicit = reference.original_encoding[0]
    for tag, elem in stored(reference).items():
        start, end = spans.get(tag, (0, 0))
        tell = elem.value_tell if isinstance(elem, RawDataElement) else elem.file_tell
        # the header as the file has it (pydicom may have replaced a VR UN it decoded)
        vr = None if implicit else data[start + 4:start + 6].decode("latin-1")
        header = 12 if vr in LONG_LENGTH_VRS else 8
        length = elem.length if isinstance(elem, RawDataElement) else None
        if start != tell - header or _TAG.unpack_from(data, start) != (tag >> 16, tag & 0xFFFF) \
                or length not in (None, UNDEFINED_LENGTH) and end != tell + length:
            found.append(f"span of {BaseTag(tag)}: {(start, end)}, pydicom read it at {tell}")
    return found


# -- the tests -----------------------------------------------------------------------------


def test_scanner_reads_every_file_as_pydicom_does_or_declines_it(
        all_files: list[tuple[str, bytes]]) -> None:
    declines: dict[str, str] = {}
    found: dict[str, list[str]] = {}
    scanned = 0
    for label, reason, problems in _outcomes(all_files):
        if reason is not None:
            declines[label] = reason
            continue
        scanned += 1
        if problems:
            found[label] = problems
    print(f"\n{scanned} files scanned like pydicom reads them, {len(declines)} declined:")
    for label, reason in sorted(declines.items()):
        print(f"  {label:70} {reason}")
    assert not found, "\n".join(f"{label}:\n  " + "\n  ".join(lines[:20])
                                for label, lines in found.items())
    assert declines == EXPECTED_DECLINES, (
        "the files the scanner declines changed; update EXPECTED_DECLINES on purpose:\n"
        + "\n".join(f"  {label!r}: {reason!r}," for label, reason in sorted(declines.items())))
    assert scanned > 3 * len(declines)  # the fallback is for the unusual files only


def test_files_the_scanner_declines_are_read_by_pydicom(all_files: list[tuple[str, bytes]],
                                                        tmp_path: Path) -> None:
    """The reader falls back to pydicom: a declined file is read, or refused with
    pydicom's (or the reader's own) reason, never with the scanner's."""
    fallback = 0
    for label, data in all_files:
        if data[128:132] != b"DICM" or label not in EXPECTED_DECLINES:
            continue
        path = tmp_path / "input.dcm"
        read = InputBytes(path, data, len(data), hashlib.sha256(data).hexdigest())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read_dataset(path, read).close()
        except Unsupported:
            pytest.fail(f"{label}: the scanner's decline escaped the reader")
        except Exception:  # noqa: BLE001, S110 - pydicom's verdict (truncated, not DICOM)
            pass
        fallback += 1
    assert fallback == len(EXPECTED_DECLINES)


# -- files made to differ --------------------------------------------------------------------

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
EXPLICIT = b"1.2.840.10008.1.2.1\x00"
IMPLICIT = b"1.2.840.10008.1.2\x00\x00\x00"  # the same length, padded


def _dataset_start(data: bytes) -> int:
    return 144 + int.from_bytes(data[140:144], "little")


def _ambiguous_in_an_item(implicit: bool) -> bytes:
    """Signed pixels (Pixel Representation 1) and, in a defined-length sequence item, an
    element whose VR is ``US or SS`` by the dictionary, holding -5."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit \
        else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = "1.2.3.4"
    mapping = Dataset()
    mapping.add_new(0x00409216, "SS", -5)  # Real World Value First Value Mapped
    ds.RealWorldValueMappingSequence = [mapping]
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 1, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\xfb\xff" * 4
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("implicit", [True, False])
def test_an_ambiguous_element_in_an_item_is_read_with_the_pixel_representation(
        implicit: bool) -> None:
    """pydicom reads -5 (SS, from the Pixel Representation it passes down to the items
    of a sequence as it parses it); the scanner read 65531 (US) in implicit VR files
    until it passed it down too."""
    data = _ambiguous_in_an_item(implicit)
    scanned = scan(data).dataset
    assert differences(scanned, _dcmread(data), data) == []
    value = scanned.RealWorldValueMappingSequence[0][0x00409216]
    assert (value.VR, value.value) == ("SS", -5)


def _explicit_labelled_implicit() -> bytes:
    """An explicit VR dataset whose file meta says implicit VR: pydicom reads it as
    explicit; read as implicit, the first element's length would be its VR and length
    (676,675 bytes here), far enough into a large file to parse on."""
    data = CT_SMALL.read_bytes().replace(EXPLICIT, IMPLICIT, 1)
    return data + b"\x00" * 700_000  # would-be trailing padding inside the swallowed span


def _charset(value: bytes, after_sequence: bool = False) -> bytes:
    data = CT_SMALL.read_bytes()
    start = _dataset_start(data)
    charset = struct.pack("<HH2sH", 8, 5, b"CS", len(value)) + value
    if after_sequence:  # a defined-length sequence in a group before 0008
        sequence = struct.pack("<HH2sHI", 7, 0x10, b"SQ", 0, 8) + ITEM_TAG + b"\0\0\0\0"
        return data[:start] + sequence + charset + data[start:]
    return data[:start] + charset + data[start:]


def _cut_in_a_long_header() -> bytes:
    """Cut between the 8 bytes of the Pixel Data's header and its 4-byte length."""
    data = CT_SMALL.read_bytes()
    return data[:scan(data).spans[0x7FE00010][0] + 10]


def _command_elements() -> bytes:
    data = CT_SMALL.read_bytes()
    start = _dataset_start(data)
    return data[:start] + struct.pack("<HHI", 0, 0x0100, 2) + b"\x01\x00" + data[start:]


@pytest.mark.parametrize("make, reason", [
    (_explicit_labelled_implicit, "explicit VR dataset in an implicit VR file"),
    (lambda: _charset(b"ISO_IR 100\x00\x08"), "Specific Character Set"),
    (lambda: _charset(b"ISO_IR 100", after_sequence=True),
     "Specific Character Set after a sequence"),
    (_command_elements, "command elements"),
    (lambda: _cut_in_a_long_header(), "truncated element header"),
], ids=["explicit-labelled-implicit", "bad-charset", "charset-after-sequence", "command",
        "cut-in-header"])
def test_scanner_declines_what_pydicom_reads_its_own_way(make: Any, reason: str) -> None:
    """Each of these the scanner parsed differently from pydicom, or failed the file with
    its own exception instead of leaving it to pydicom."""
    with pytest.raises(Unsupported, match=reason):
        scan(make())


def test_a_file_cut_anywhere_in_its_header_is_scanned_like_pydicom_or_declined() -> None:
    data = CT_SMALL.read_bytes()
    start = _dataset_start(data)
    scanned = 0
    for size in range(132, start + 2_000):
        cut = data[:size]
        try:
            result = scan(cut)
        except Unsupported:
            continue
        scanned += 1  # it ends at an element's end: a complete (shorter) dataset
        assert differences(result.dataset, _dcmread(cut), cut) == [], size
    assert scanned > 20


# -- moved from test_io.py -------------------------------------------------------------------


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
    expected.file_tell = 42
    item = sequence_item(elements, ["latin_1"], False, ["latin_1"], undefined, 42)
    assert vars(item) == vars(expected)
    other = sequence_item({}, "iso8859", False, "iso8859", undefined, 0)
    assert other._private_blocks is not item._private_blocks  # containers not shared
