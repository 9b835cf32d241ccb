"""Recognise and parse DICOM files by content (preamble + ``DICM``, or a raw dataset)."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from anonymizer.elements import stored, text_value
from anonymizer.errors import AnonymizerError
from anonymizer.io.scan import Unsupported, scan
from anonymizer.io.splice import (
    ChangedWhileReadError,
    Source,
    SpliceMap,
    splice_supported,
    stat_identity,
)
from anonymizer.reasons import exception_class, tag_label
from anonymizer.tags import AFTER_PIXEL_DATA, PIXEL_DATA, UNDEFINED_LENGTH

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_RAW_DATASET_STARTS = (b"\x08\x00", b"\x02\x00", b"\x00\x08", b"\x00\x02")


class NotDicomError(Exception):
    """The file is not DICOM (or is a DICOMDIR): skipped, with this reason."""


#: Files above this size are not read into memory: their large values (Pixel Data)
#: stay on disk and are streamed to the output by the writer.
LARGE_FILE = 64 << 20
_DEFER_SIZE = 1 << 20


@dataclass
class ReadResult:
    """A parsed dataset, the sha256 of the bytes it came from and access to those bytes."""

    dataset: Dataset
    sha256: str
    size: int
    notes: list[str]
    source: Source
    #: where each element lies in ``source``, for the splice writer (None: not copyable)
    splice: SpliceMap | None = None

    def close(self) -> None:
        self.source.close()


def _looks_like_raw_dataset(head: bytes) -> bool:
    """A dataset without preamble starts with a group 0002 or 0008 tag and a sane VR/length."""
    if len(head) < 8 or head[:2] not in _RAW_DATASET_STARTS:
        return False
    vr = head[4:6]
    return vr.isalpha() and vr.isupper() or int.from_bytes(head[4:8], "little") < 0x10000


class TruncatedError(AnonymizerError):
    """The file ends inside an element: it is failed, never written."""


_DELIMITER = 8  # a Sequence Delimitation Item after an undefined-length value


def _end_offset(raw: RawDataElement) -> int | None:
    """File offset just after an element's value, or None if unknown."""
    if raw.length == UNDEFINED_LENGTH:
        return raw.value_tell + len(raw.value) + _DELIMITER \
            if isinstance(raw.value, bytes) else None
    return raw.value_tell + raw.length


def _check_complete(ds: Dataset, size: int) -> list[str]:
    """Fail a dataset pydicom read only partly; drop data trailing the Pixel Data.

    pydicom stops silently at the end of the data: an element cut short, or bytes
    left over after the last element parsed, mean the file is truncated. Elements
    that follow Pixel Data in the file (other than Digital Signatures / Trailing
    Padding) and unparsed bytes after complete Pixel Data are trailing garbage: they
    are dropped so that nothing unparsed reaches the output.

    Returns
    -------
    list of str
        Warnings for the audit log.

    Raises
    ------
    TruncatedError
        When an element's value is shorter than its declared length, or the parse
        stopped before the end of the file with no complete Pixel Data before it.
    """
    notes: list[str] = []
    elements = stored(ds)
    pixel = elements.get(PIXEL_DATA)
    pixel_end = _end_offset(pixel) if isinstance(pixel, RawDataElement) else None
    pixel_tell = getattr(pixel, "value_tell", None)
    if pixel_tell is not None:
        trailing = [t for t in ds.keys() if t not in AFTER_PIXEL_DATA and t != PIXEL_DATA
                    and (getattr(elements[t], "value_tell", 0) or 0)
                    > pixel_tell]
        for tag in trailing:
            del ds[tag]
        if trailing:
            notes.append(f"{len(trailing)} element(s) of trailing data after Pixel Data dropped")
    ends: list[int | None] = []
    for tag, raw in elements.items():
        if not isinstance(raw, RawDataElement):
            ends.append(None)  # decoded while reading (sequences): no offsets
            continue
        length, value, tell = raw.length, raw.value, raw.value_tell
        if length == UNDEFINED_LENGTH:
            ends.append(tell + len(value) + _DELIMITER if isinstance(value, bytes) else None)
            continue
        if (len(value) != length) if value is not None else (tell + length > size):
            raise TruncatedError(f"truncated: element {tag_label(tag)} is cut short")
        ends.append(tell + length)
    if not ends or ends[-1] is None:
        return notes  # the last element's end is unknown: trust the parse
    last_end = max(e for e in ends if e is not None)
    if last_end < size:
        if pixel_end is not None and pixel_end <= last_end:
            notes.append(f"{size - last_end} bytes of trailing data after the dataset dropped")
        else:
            raise TruncatedError(f"truncated or corrupt: parse stopped {size - last_end} bytes "
                                 "before the end of the file")
    return notes


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    with open(path, "rb") as handle:
        return _sha256_of(handle)


def _sha256_of(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class InputBytes:
    """An input as read once: its bytes (None above :data:`LARGE_FILE`: those stay on
    disk), its size and its sha256. Lets a caller check the hash before parsing.

    ``stat`` is the ``fstat`` of the file read, taken before and after the read; None
    when the two differ (the file changed while it was read).
    """

    path: Path
    data: bytes | None
    size: int
    sha256: str
    stat: os.stat_result | None = None


def read_input(path: str | os.PathLike[str]) -> InputBytes:
    """Read a file into memory and hash it (a large file is only hashed, in chunks)."""
    with open(path, "rb") as handle:
        before = os.fstat(handle.fileno())
        if before.st_size > LARGE_FILE:
            data, sha256 = None, _sha256_of(handle)
        else:
            data = handle.read()
            sha256 = hashlib.sha256(data).hexdigest()
        after = os.fstat(handle.fileno())
    size = len(data) if data is not None else after.st_size
    steady = stat_identity(before) == stat_identity(after) and size == after.st_size
    return InputBytes(Path(path), data, size, sha256, after if steady else None)


def read_dataset(path: str | os.PathLike[str], read: InputBytes | None = None) -> ReadResult:
    """Read one file completely and parse it (``read``: its bytes, if already read).

    Raises
    ------
    NotDicomError
        For an empty file, a file that is neither Part 10 nor a raw dataset, or a DICOMDIR.
    Exception
        Any parse error from pydicom (the caller records the file as failed).
    """
    read = read or read_input(path)
    if read.data is None:
        return _read_large(read)
    data, digest = read.data, read.sha256
    if not data:
        raise NotDicomError("empty file")
    is_part10 = data[128:132] == b"DICM"
    if not is_part10 and not _looks_like_raw_dataset(data[:8]):
        raise NotDicomError("not DICOM (no DICM marker and not a raw dataset)")
    source = Source(data=data)
    if is_part10:
        try:
            scanned = scan(data)
        except Unsupported:
            pass  # not the plain case: pydicom parses it, and the checks below judge it
        else:
            ds = scanned.dataset
            _refuse_dicomdir(ds)
            splice = SpliceMap(source, scanned.implicit, scanned.spans, dict(stored(ds))) \
                if splice_supported(ds) else None
            return ReadResult(ds, digest, len(data), [], source, splice)
    ds = _parse(io.BytesIO(data), is_part10)
    if len(ds) == 0:
        if not is_part10:
            raise NotDicomError("not DICOM (no elements)")
        raise TruncatedError("truncated or corrupt: no data elements after the file meta")
    _check_file_meta(ds)
    notes = _check_complete(ds, len(data))
    _refuse_dicomdir(ds)
    return ReadResult(ds, digest, len(data), notes, source, SpliceMap.build(ds, source))


def _check_file_meta(ds: Dataset) -> None:
    """Fail a file whose File Meta Information swallowed dataset elements.

    A corrupt group length makes pydicom read dataset elements (patient name and
    all) as file meta; they must never pass as meta into the output.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is not None and any(tag >> 16 != 0x0002 for tag in meta.keys()):
        raise TruncatedError("corrupt file meta: its group length covers dataset elements")


def _parse(stream: BinaryIO, is_part10: bool, defer: bool = False) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lenient parse; real damage is checked after
        try:
            return pydicom.dcmread(stream, force=not is_part10,
                                   defer_size=_DEFER_SIZE if defer else None)
        except InvalidDicomError as exc:
            raise NotDicomError(f"not DICOM ({exception_class(exc)})") from None


def _refuse_dicomdir(ds: Dataset) -> None:
    sop_class = text_value(ds, "SOPClassUID") or getattr(ds, "file_meta", Dataset()).get(
        "MediaStorageSOPClassUID")
    if sop_class == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise NotDicomError("DICOMDIR: an index of paths that can hold PHI; not de-identified")


def _read_large(read: InputBytes) -> ReadResult:
    """Parse a large file (hashed already) leaving values over 1 MiB on disk.

    Its hashing pass and this parse are two reads of the file: it must be the same file,
    unchanged, for both (its stat then and now), or the file fails.
    """
    size = read.size
    source = Source(path=Path(read.path))
    try:
        assert source.handle is not None
        if read.stat is None or source.identity != stat_identity(read.stat):
            raise ChangedWhileReadError("changed while it was read")  # since it was hashed
        head = source.handle.read(132)
        source.handle.seek(0)
        is_part10 = head[128:132] == b"DICM"
        if not is_part10 and not _looks_like_raw_dataset(head[:8]):
            raise NotDicomError("not DICOM (no DICM marker and not a raw dataset)")
        ds = _parse(source.handle, is_part10, defer=True)
        if len(ds) == 0:
            raise TruncatedError("truncated or corrupt: no data elements after the file meta")
        _check_file_meta(ds)
        notes = _check_complete(ds, size)
        _refuse_dicomdir(ds)
        splice = SpliceMap.build(ds, source)
        source.check_unchanged()  # again when its bytes are copied (write_temporary)
    except BaseException:
        source.close()
        raise
    return ReadResult(ds, read.sha256, size, notes, source, splice)
