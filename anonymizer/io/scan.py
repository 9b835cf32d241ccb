"""Parse a plain little-endian Part 10 file in one pass over its bytes.

The de-identifier needs every element's tag, VR, value bytes and position, and the
items of every sequence; it never needs a value decoded to be read. This scanner
builds the same :class:`~pydicom.dataset.Dataset` of
:class:`~pydicom.dataelem.RawDataElement` that :func:`pydicom.dcmread` builds (with
sequences parsed into items, as the engine visits all of them), records where each
top-level element lies for the splice writer, and checks the file is complete, all
in one loop.

It handles the common case only: a preamble and ``DICM``, file meta whose group
length is right, an explicit or implicit VR little endian dataset (native or
encapsulated), nothing after the Pixel Data. Anything else raises
:class:`Unsupported` and the reader falls back to pydicom, whose results (and
failures) then decide; so this module never needs to be lenient.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

from pydicom.charset import convert_encodings
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from anonymizer.tags import (
    AFTER_PIXEL_DATA,
    ITEM_TAG,
    LONG_LENGTH_VRS,
    PIXEL_DATA,
    UNDEFINED_LENGTH,
    VALID_VRS,
    dictionary_vr,
)

_SHORT = struct.Struct("<HH2sH")
_IMPLICIT = struct.Struct("<HHI")
_UL = struct.Struct("<I")
_VR_NAMES = {vr.encode(): vr for vr in VALID_VRS}
_LONG = frozenset(vr.encode() for vr in LONG_LENGTH_VRS)
_EMPTY = {vr: empty_value_for_VR(vr, raw=True) for vr in (*VALID_VRS, None)}
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_CHARACTER_SET = 0x00080005
#: Top-level values never copied out of the file's bytes (their value is None, like a
#: value pydicom defers): the pixel data, which nothing but the writer touches, and it
#: copies it from the input.
_LEFT_IN_PLACE = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_IMPLICIT_LITTLE = "1.2.840.10008.1.2"
#: Little endian transfer syntaxes that are not plain explicit VR (pydicom handles them).
_NOT_PLAIN = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})


class Unsupported(Exception):
    """Not the plain case this scanner handles: parse the file with pydicom."""


@dataclass
class Scanned:
    """A parsed file: its dataset (with file meta), and where each top-level element lies."""

    dataset: Dataset
    implicit: bool
    #: tag -> (offset of the element's tag, offset after its value) in the file
    spans: dict[int, tuple[int, int]]


def scan(data: bytes) -> Scanned:
    """Parse a Part 10 file held in ``data`` (preamble and ``DICM`` already checked).

    Raises
    ------
    Unsupported
        For anything but the plain case (see the module docstring), truncation included.
    """
    meta_elements, position = _file_meta(data)
    meta = FileMetaDataset(meta_elements)
    syntax = meta.get("TransferSyntaxUID")
    if syntax is None:
        raise Unsupported("no transfer syntax")
    syntax = str(syntax).rstrip("\x00 ")
    if syntax in _NOT_PLAIN:
        raise Unsupported("big endian or deflated")
    implicit = syntax == _IMPLICIT_LITTLE
    spans: dict[int, tuple[int, int]] = {}
    elements, end, encoding = _Parser(data, implicit).elements(
        position, len(data), "iso8859", spans, False)
    if end != len(data) or not elements:
        raise Unsupported("data after the dataset, or no dataset")
    # the buffer is where pydicom reads a value left in place (value None) if asked for it
    ds = FileDataset(io.BytesIO(data), elements, data[:128], meta, implicit, True)
    ds.set_original_encoding(implicit, True, encoding)
    return Scanned(ds, implicit, spans)


def _file_meta(data: bytes) -> tuple[dict[BaseTag, Any], int]:
    """Group 0002 elements (always explicit VR little endian) and where the dataset starts."""
    position, size = 132, len(data)
    elements: dict[BaseTag, Any] = {}
    while position + 8 <= size:
        group, element, vr_bytes, length = _SHORT.unpack_from(data, position)
        if group != 2:
            break
        vr = _VR_NAMES.get(vr_bytes)
        if vr is None:
            raise Unsupported("file meta VR")
        start = position + 8
        if vr_bytes in _LONG:
            (length,) = _UL.unpack_from(data, start)
            start += 4
        position = start + length
        if length == UNDEFINED_LENGTH or position > size:
            raise Unsupported("file meta length")
        tag = BaseTag(0x00020000 | element)
        elements[tag] = RawDataElement(tag, vr, length, data[start:position] if length
                                       else _EMPTY[vr], start, False, True)
    group_length = elements.get(BaseTag(0x00020000))
    if group_length is None or group_length.length != 4 \
            or _UL.unpack(group_length.value)[0] != position - group_length.value_tell - 4:
        raise Unsupported("file meta group length missing or wrong")
    return elements, position


class _Parser:
    """The element loop over one file's bytes, for one VR encoding."""

    def __init__(self, data: bytes, implicit: bool):
        self.data = data
        self.implicit = implicit

    def elements(self, position: int, end: int, encoding: Any,
                 spans: dict[int, tuple[int, int]] | None,
                 in_undefined_item: bool) -> tuple[dict[BaseTag, Any], int, Any]:
        """Elements from ``position`` up to ``end`` (or an Item Delimitation Item).

        Returns the elements, the offset after the last one (after the delimiter)
        and the character set in effect.
        """
        data, implicit = self.data, self.implicit
        elements: dict[BaseTag, Any] = {}
        after_pixel_data = False
        while position < end:
            if position + 8 > end:
                raise Unsupported("truncated element header")
            start = position
            if implicit:
                group, element, length = _IMPLICIT.unpack_from(data, position)
                vr = None
                position += 8
            else:
                group, element, vr_bytes, length = _SHORT.unpack_from(data, position)
                if group == 0xFFFE:
                    group, element, length = _IMPLICIT.unpack_from(data, position)
                    vr = None
                    position += 8
                else:
                    vr = _VR_NAMES.get(vr_bytes)
                    if vr is None:
                        raise Unsupported("unknown VR")
                    position += 8
                    if vr_bytes in _LONG:
                        (length,) = _UL.unpack_from(data, position)
                        position += 4
            tag = group << 16 | element
            if after_pixel_data and tag not in AFTER_PIXEL_DATA:
                raise Unsupported("data after the Pixel Data")
            if tag == _ITEM_DELIMITER:
                if not in_undefined_item or length:
                    raise Unsupported("misplaced item delimiter")
                return elements, position, encoding
            if group == 0xFFFE:
                raise Unsupported("item tag among elements")
            key = BaseTag(tag)
            if key in elements:
                raise Unsupported("duplicate element")
            if length == UNDEFINED_LENGTH:
                elem, position = self._undefined_length(key, vr, position, end, encoding)
            else:
                value_end = position + length
                if value_end > end:
                    raise Unsupported("value cut short")
                if vr == "SQ" or vr is None and dictionary_vr(tag) == "SQ":
                    items = self._items(position, value_end, encoding, False)[0]
                    elem = _sequence(key, items, position, False)
                else:
                    value = _EMPTY[vr] if not length else None \
                        if tag in _LEFT_IN_PLACE and spans is not None else data[position:value_end]
                    elem = RawDataElement(key, vr, length, value, position, implicit, True)
                    if tag == _CHARACTER_SET:
                        encoding = convert_encodings(convert_raw_data_element(elem).value)
                position = value_end
            elements[key] = elem
            if spans is not None:
                spans[tag] = (start, position)
                after_pixel_data = after_pixel_data or tag == PIXEL_DATA
        if in_undefined_item:
            raise Unsupported("item without delimiter")
        return elements, position, encoding

    def _undefined_length(self, tag: BaseTag, vr: str | None, position: int, end: int,
                          encoding: Any) -> tuple[Any, int]:
        data = self.data
        if vr == "SQ" or vr is None and (dictionary_vr(tag) == "SQ" or tag >> 16 & 1
                                         and data[position:position + 4] == ITEM_TAG):
            items, after = self._items(position, end, encoding, True)
            return _sequence(tag, items, position, True), after
        if tag != PIXEL_DATA:
            raise Unsupported("undefined length outside Sequences and Pixel Data")
        # Encapsulated Pixel Data: fragments (items of defined length) up to the delimiter
        offset = position
        while offset + 8 <= end:
            group, element, length = _IMPLICIT.unpack_from(data, offset)
            item = group << 16 | element
            if item == _SEQUENCE_DELIMITER:
                value = data[position:offset]
                raw = RawDataElement(tag, vr, UNDEFINED_LENGTH, value, position,
                                     self.implicit, True)
                return raw, offset + 8
            if item != _ITEM or length == UNDEFINED_LENGTH:
                break
            offset += 8 + length
        raise Unsupported("encapsulated Pixel Data without its delimiter")

    def _items(self, position: int, end: int, encoding: Any,
               undefined: bool) -> tuple[list[Dataset], int]:
        """Items of a sequence value in ``[position, end)``, or up to its delimiter."""
        data, implicit = self.data, self.implicit
        items = []
        while position < end:
            if position + 8 > end:
                raise Unsupported("truncated item")
            group, element, length = _IMPLICIT.unpack_from(data, position)
            tag = group << 16 | element
            item_start = position
            position += 8
            if tag == _SEQUENCE_DELIMITER and undefined:
                return items, position
            if tag != _ITEM:
                raise Unsupported("not an item")
            if length == UNDEFINED_LENGTH:
                elements, position, item_encoding = self.elements(position, end, encoding,
                                                                  None, True)
            else:
                item_end = position + length
                if item_end > end:
                    raise Unsupported("item cut short")
                elements, position, item_encoding = self.elements(position, item_end,
                                                                  encoding, None, False)
            items.append(sequence_item(elements, encoding, implicit, item_encoding,
                                       length == UNDEFINED_LENGTH, item_start))
        if undefined:
            raise Unsupported("sequence without delimiter")
        return items, position


def _sequence(tag: BaseTag, items: list[Dataset], value_tell: int,
              undefined: bool) -> DataElement:
    sequence = Sequence(items)
    sequence.is_undefined_length = undefined
    return DataElement(tag, "SQ", sequence, value_tell, is_undefined_length=undefined,
                       already_converted=True)


#: The state ``Dataset()`` starts with; the containers in it are copied per item.
_ITEM_STATE = vars(Dataset()).copy()
_ITEM_CONTAINERS = tuple(k for k, v in _ITEM_STATE.items() if isinstance(v, dict | list | set))


def sequence_item(elements: dict[BaseTag, Any], parent_encoding: Any, implicit: bool,
                  encoding: Any, undefined_length: bool, tell: int) -> Dataset:
    """The item ``read_sequence_item`` builds, without ``Dataset.__init__``'s dozen trips
    through ``Dataset.__setattr__`` (most of the cost of a small item).

    Equal, attribute by attribute, to::

        item = Dataset(elements, parent_encoding=parent_encoding)
        item.is_undefined_length_sequence_item = undefined_length
        item.seq_item_tell = tell
        item.set_original_encoding(implicit, True, encoding)

    (``tests/test_io.py`` checks this against the installed pydicom).
    """
    item = Dataset.__new__(Dataset)
    state = item.__dict__
    state.update(_ITEM_STATE)
    for name in _ITEM_CONTAINERS:
        state[name] = _ITEM_STATE[name].copy()
    state.update(_dict=elements, _parent_encoding=parent_encoding, _read_implicit=implicit,
                 _read_little=True, _read_charset=encoding,
                 is_undefined_length_sequence_item=undefined_length, seq_item_tell=tell)
    return item
