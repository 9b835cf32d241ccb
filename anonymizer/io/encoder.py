"""Encode data elements little endian without pydicom's general-purpose writer.

Almost everything a de-identifier re-encodes is either still raw bytes (a value copied
from the input or stored already encoded by an action) or a Sequence whose items hold
such elements. Those are framed here directly: tag, VR, length, value. Anything
else (a decoded value, an ambiguous VR, an item read with another encoding or
character set) is handed to :func:`pydicom.filewriter.write_data_element`, so the
bytes are always what pydicom itself would write.
"""

from __future__ import annotations

import os
import struct
from typing import Any, BinaryIO

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element

from anonymizer.elements import stored
from anonymizer.tags import (
    ITEM_DELIMITER,
    ITEM_TAG,
    LONG_LENGTH_VRS,
    PIXEL_DATA,
    SEQUENCE_DELIMITER,
    UNDEFINED_LENGTH,
    VALID_VRS,
)

_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2sHI")
_IMPLICIT = struct.Struct("<HHI")
_UL = struct.Struct("<I")


def _header(tag: int, vr: str | None, length: int, implicit: bool) -> bytes | None:
    if implicit:
        return _IMPLICIT.pack(tag >> 16, tag & 0xFFFF, length)
    if vr not in VALID_VRS:
        return None  # no VR to write (read implicit), or not a real one: pydicom decides
    if vr in LONG_LENGTH_VRS:
        return _LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    if length > 0xFFFF:
        return None  # pydicom writes such a value as UN (PS3.5 6.2.2)
    return _SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), length)


def write_buffered_element(elem: DataElement, implicit: bool, out: BinaryIO,
                           chunk: int = 1 << 20) -> None:
    """Write an element whose value is a file (Pixel Data cleaned on disk) in chunks,
    never holding the value in memory.

    Raises
    ------
    ValueError
        When the element's VR cannot be written with that length.
    """
    buffer = elem.value
    length = buffer.seek(0, os.SEEK_END)
    header = _header(elem.tag, elem.VR, length, implicit)
    if header is None or length % 2:
        raise ValueError(f"cannot write a {length}-byte {elem.VR} value from a file")
    out.write(header)
    buffer.seek(0)
    while data := buffer.read(chunk):
        out.write(data)
    buffer.seek(0)


def _encode_raw(raw: RawDataElement, implicit: bool) -> bytes | None:
    value = raw.value
    if not isinstance(value, bytes) or not raw.is_little_endian:
        return None
    undefined = raw.length == UNDEFINED_LENGTH
    header = _header(raw.tag, raw.VR, UNDEFINED_LENGTH if undefined else len(value), implicit)
    if header is None:
        return None
    if undefined:
        if raw.tag == PIXEL_DATA and not value.startswith(ITEM_TAG):
            return None  # not encapsulated: pydicom refuses it with a clear error
        return header + value + SEQUENCE_DELIMITER
    return header + value


def _encode_item(item: Dataset, implicit: bool, parent_encoding: Any) -> bytes | None:
    """The encoded elements of one sequence item, or None if pydicom must do it."""
    fresh = item.original_encoding == (None, None)  # built in memory, not read
    if not fresh and (item.original_encoding != (implicit, True)
                      or item.original_character_set != item._character_set):
        return None  # pydicom would decode and re-encode every value of this item
    encoding = item.get("SpecificCharacterSet", parent_encoding)
    elements = stored(item)
    parts = []
    for tag in sorted(item.keys()):
        if not tag & 0xFFFF and tag >> 16 > 6:
            continue  # group lengths are never written (PS3.5 7.2)
        elem = elements[tag]
        if fresh and (elem.is_raw or elem.VR is not None and len(elem.VR) != 2):
            return None  # pydicom decodes these and resolves ambiguous VRs first
        encoded = _encode_nested(elem, implicit, encoding)
        if encoded is None:
            return None
        parts.append(encoded)
    return b"".join(parts)


def _encode_sequence(elem: DataElement, implicit: bool, encoding: Any) -> bytes | None:
    parts = []
    for item in elem.value:
        body = _encode_item(item, implicit, encoding)
        if body is None:
            return None
        if getattr(item, "is_undefined_length_sequence_item", False):
            parts += (ITEM_TAG, b"\xff\xff\xff\xff", body, ITEM_DELIMITER)
        else:
            parts += (ITEM_TAG, _UL.pack(len(body)), body)
    value = b"".join(parts)
    if elem.is_undefined_length:
        header = _header(elem.tag, "SQ", UNDEFINED_LENGTH, implicit)
        return None if header is None else header + value + SEQUENCE_DELIMITER
    header = _header(elem.tag, "SQ", len(value), implicit)
    return None if header is None else header + value


def _encode_with_pydicom(elem: DataElement | RawDataElement, implicit: bool,
                         encoding: Any) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, True
    write_data_element(buffer, elem, encoding)
    return buffer.getvalue()


def _encode_framed(elem: DataElement | RawDataElement, implicit: bool,
                   encoding: Any) -> bytes | None:
    """``elem`` framed here, or None where only pydicom can say what it writes."""
    if elem.is_raw:
        return _encode_raw(elem, implicit)  # type: ignore[arg-type]
    if elem.VR == "SQ":
        return _encode_sequence(elem, implicit, encoding)  # type: ignore[arg-type]
    return None


def _encode_nested(elem: DataElement | RawDataElement, implicit: bool,
                   encoding: Any) -> bytes | None:
    """An element inside an item: decoded values go to pydicom one by one, exactly as
    its dataset writer would; None when the whole sequence must go to pydicom."""
    framed = _encode_framed(elem, implicit, encoding)
    if framed is None and not elem.is_raw and elem.VR != "SQ":
        return _encode_with_pydicom(elem, implicit, encoding)
    return framed


def encode_element(elem: DataElement | RawDataElement, implicit: bool,
                   encoding: Any = None) -> bytes:
    """Encode one element (little endian) exactly as pydicom's writer would.

    Parameters
    ----------
    elem : DataElement or RawDataElement
        The element as stored in its dataset.
    implicit : bool
        Implicit VR (True) or explicit VR (False) encoding.
    encoding : str or list of str, optional
        The character set of the dataset holding ``elem`` (for decoded text values).
    """
    framed = _encode_framed(elem, implicit, encoding)
    return framed if framed is not None else _encode_with_pydicom(elem, implicit, encoding)
