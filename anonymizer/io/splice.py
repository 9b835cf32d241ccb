"""Write a de-identified dataset by copying the input's bytes for untouched elements.

pydicom keeps elements it has not decoded as :class:`~pydicom.dataelem.RawDataElement`
with their file offset. An element the engine never touched is written by copying its
encoded bytes from the input (runs of adjacent untouched elements in one copy, Pixel
Data streamed in chunks from a file); only changed elements are encoded by pydicom.
This is what makes writing cost little more than ``cp`` and keeps memory flat on huge
files. It is used only where the copy is exact: little endian, the input's own
transfer syntax, unchanged character set; otherwise :func:`splice_supported` says no.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

_LONG_HEADER_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR",
                              "UT", "UV"})
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
CHUNK = 1 << 20


class Source:
    """Random access to the input's bytes: an in-memory buffer or an open file."""

    def __init__(self, data: bytes | None = None, path: Path | None = None):
        self.data = data
        self.handle: BinaryIO | None = open(path, "rb") if data is None and path else None  # noqa: SIM115

    def read(self, start: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[start:start + length]
        assert self.handle is not None
        self.handle.seek(start)
        return self.handle.read(length)

    def copy(self, start: int, end: int, out: BinaryIO) -> None:
        if self.data is not None:
            out.write(memoryview(self.data)[start:end])
            return
        assert self.handle is not None
        self.handle.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = self.handle.read(min(CHUNK, remaining))
            if not chunk:
                raise OSError("input changed while being written")
            out.write(chunk)
            remaining -= len(chunk)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def splice_supported(ds: Dataset) -> bool:
    """Whether the input's encoding can be copied verbatim into the output."""
    meta = getattr(ds, "file_meta", None)
    implicit, little = ds.original_encoding
    if meta is None or implicit is None or not little:
        return False
    syntax = meta.get("TransferSyntaxUID")
    if syntax is None or syntax == DeflatedExplicitVRLittleEndian:
        return False
    if syntax.is_implicit_VR != implicit or not syntax.is_little_endian:
        return False
    return ds.original_character_set == ds._character_set


def _encapsulated_end(source: Source, start: int) -> int | None:
    """Offset after the Sequence Delimitation Item of encapsulated Pixel Data at ``start``."""
    offset = start
    while True:
        header = source.read(offset, 8)
        if len(header) < 8:
            return None
        if header == _SEQUENCE_DELIMITER:
            return offset + 8
        if header[:4] != _ITEM:
            return None
        offset += 8 + struct.unpack("<I", header[4:])[0]


def _span(raw: RawDataElement, implicit: bool, source: Source) -> tuple[int, int] | None:
    """The input byte range [start, end) of a raw element, verified; None if unsure."""
    tell, length = raw.value_tell, raw.length
    if tell is None or length is None:
        return None
    tag_bytes = struct.pack("<HH", raw.tag >> 16, raw.tag & 0xFFFF)
    candidates = (8,) if implicit else ((12, 8) if raw.VR in _LONG_HEADER_VRS else (8, 12))
    start = next((tell - size for size in candidates
                  if tell - size >= 0 and source.read(tell - size, 4) == tag_bytes), None)
    if start is None:
        return None
    if length != _UNDEFINED:
        return start, tell + length
    if raw.tag == _PIXEL_DATA:
        end = _encapsulated_end(source, tell)
        return (start, end) if end is not None else None
    if isinstance(raw.value, bytes):
        end = tell + len(raw.value) + 8
        return (start, end) if source.read(end - 8, 8) == _SEQUENCE_DELIMITER else None
    return None


def _encoder(implicit: bool) -> DicomBytesIO:
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, True
    return buffer


def write_spliced(ds: Dataset, source: Source, out: BinaryIO) -> None:
    """Write ``ds`` as a Part 10 file to ``out``, copying untouched elements from ``source``.

    The caller checks :func:`splice_supported` first and completes the file meta.
    """
    implicit, little = ds.original_encoding
    assert implicit is not None and little
    out.write(b"\x00" * 128 + b"DICM")
    meta_buffer = DicomBytesIO()
    write_file_meta_info(meta_buffer, ds.file_meta, enforce_standard=True)
    out.write(meta_buffer.getvalue())
    encoding = ds.get("SpecificCharacterSet", "iso8859")
    pending: tuple[int, int] | None = None
    encoded = _encoder(implicit)

    def flush_encoded() -> None:
        nonlocal encoded
        if encoded.tell():
            out.write(encoded.getvalue())
            encoded = _encoder(implicit)

    for tag in sorted(ds.keys()):
        if not tag & 0xFFFF and tag >> 16 > 6:
            continue  # group lengths are never written (PS3.5 7.2)
        elem = ds.get_item(tag)
        span = _span(elem, implicit, source) if isinstance(elem, RawDataElement) else None
        if span is not None:
            flush_encoded()
            if pending is not None and pending[1] == span[0]:
                pending = (pending[0], span[1])
                continue
            if pending is not None:
                source.copy(*pending, out)
            pending = span
            continue
        if pending is not None:
            source.copy(*pending, out)
            pending = None
        write_data_element(encoded, ds[tag], encoding)
    flush_encoded()
    if pending is not None:
        source.copy(*pending, out)
