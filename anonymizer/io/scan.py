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

It leans on pydicom's internals (``Dataset._dict``, the state ``read_dataset`` and
``read_sequence_item`` leave on a dataset, ``_pixel_rep``), so pydicom is pinned to the
minor version ``tests/test_scan.py`` checked it against: that test reads every test file
both ways and compares them element by element at every depth; rerun it on an upgrade.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import TAG_PIXREP, BaseTag

from anonymizer.elements import element_key
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
_US_VALUE = struct.Struct("<H")
_US = frozenset({"US", None})  # None: implicit VR, where the dictionary says US
_VR_NAMES = {vr.encode(): vr for vr in VALID_VRS}
_LONG = frozenset(vr.encode() for vr in LONG_LENGTH_VRS)
_EMPTY = {vr: empty_value_for_VR(vr, raw=True) for vr in (*VALID_VRS, None)}
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_CHARACTER_SET = 0x00080005
_PIXEL_REPRESENTATION = 0x00280103
#: Top-level values never copied out of the file's bytes (their value is None, like a
#: value pydicom defers): the pixel data, which nothing but the writer touches, and it
#: copies it from the input.
_LEFT_IN_PLACE = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_IMPLICIT_LITTLE = "1.2.840.10008.1.2"
#: Little endian transfer syntaxes that are not plain explicit VR (pydicom handles them).
_NOT_PLAIN = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})


#: ``_tuple_new(RawDataElement, fields)`` is ``RawDataElement(*fields)`` without the
#: namedtuple's Python ``__new__`` (one is made for nearly every element read); all nine
#: fields are given: is_raw True, is_buffered False.
_tuple_new = tuple.__new__
#: the field order those tuples are built in: another pydicom's layout would shift every
#: value into the wrong field without an error, so it is refused at import
_RAW_FIELDS = ("tag", "VR", "length", "value", "value_tell", "is_implicit_VR",
               "is_little_endian", "is_raw", "is_buffered")
if RawDataElement._fields != _RAW_FIELDS:
    raise ImportError(f"pydicom {pydicom.__version__}: RawDataElement has fields "
                      f"{RawDataElement._fields}, the scanner builds {_RAW_FIELDS}")


class Unsupported(Exception):
    """Not the plain case this scanner handles: parse the file with pydicom."""


@dataclass
class Scanned:
    """A parsed file: its dataset (with file meta), and where each top-level element lies."""

    dataset: Dataset
    implicit: bool
    #: tag -> (offset of the element's tag, offset after its value) in the file, filed
    #: under the dataset store's own key objects (:func:`~anonymizer.elements.element_key`)
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
    meta.set_original_encoding(False, True, default_encoding)
    syntax = meta.get("TransferSyntaxUID")
    if syntax is None:
        raise Unsupported("no transfer syntax")
    syntax = str(syntax).rstrip("\x00 ")
    if syntax in _NOT_PLAIN:
        raise Unsupported("big endian or deflated")
    implicit = syntax == _IMPLICIT_LITTLE
    if implicit and _looks_explicit(data[position + 4:position + 6]):
        raise Unsupported("explicit VR dataset in an implicit VR file")
    if data[position:position + 2] == b"\x00\x00":
        raise Unsupported("command elements")  # pydicom reads them apart, always implicit
    spans: dict[int, tuple[int, int]] = {}
    parser = _Parser(data, implicit)
    elements, end, encoding = parser.elements(position, len(data), default_encoding, spans,
                                              False)
    if end != len(data) or not elements:
        raise Unsupported("data after the dataset, or no dataset")
    # the buffer is where pydicom reads a value left in place (value None) if asked for it
    ds = FileDataset(io.BytesIO(data), elements, data[:128], meta, implicit, True)
    ds.set_original_encoding(implicit, True, encoding)
    if parser.pixel_representation_seen:
        _propagate_pixel_representation(ds, parser.sequences)
    return Scanned(ds, implicit, spans)


def _looks_explicit(vr: bytes) -> bool:
    """pydicom's test of a dataset's first element: two capital letters where an explicit
    VR dataset has its VR (and reads the dataset as explicit VR whatever the syntax says)."""
    return len(vr) == 2 and 0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B


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
            if start + 4 > size:
                raise Unsupported("file meta cut short")
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
        #: id of a dataset's elements -> the sequences among them (parsed here, as items)
        self.sequences: dict[int, list[DataElement]] = {}
        self.pixel_representation_seen = False

    def elements(self, position: int, end: int, encoding: Any,
                 spans: dict[int, tuple[int, int]] | None,
                 in_undefined_item: bool) -> tuple[dict[BaseTag, Any], int, Any]:
        """Elements from ``position`` up to ``end`` (or an Item Delimitation Item).

        Returns the elements, the offset after the last one (after the delimiter)
        and the character set in effect.
        """
        data, implicit = self.data, self.implicit
        elements: dict[BaseTag, Any] = {}
        sequences: list[DataElement] = []
        after_pixel_data = False
        # bound once: the loop below runs for every element of the file
        unpack_short, unpack_implicit = _SHORT.unpack_from, _IMPLICIT.unpack_from
        vr_name = _VR_NAMES.get
        while position < end:
            if position + 8 > end:
                raise Unsupported("truncated element header")
            start = position
            if implicit:
                group, element, length = unpack_implicit(data, position)
                vr = None
                position += 8
            else:
                group, element, vr_bytes, length = unpack_short(data, position)
                if group == 0xFFFE:
                    group, element, length = unpack_implicit(data, position)
                    vr = None
                    position += 8
                else:
                    vr = vr_name(vr_bytes)
                    if vr is None:
                        raise Unsupported("unknown VR")
                    position += 8
                    if vr_bytes in _LONG:
                        if position + 4 > end:
                            raise Unsupported("truncated element header")
                        (length,) = _UL.unpack_from(data, position)
                        position += 4
            tag = group << 16 | element
            if after_pixel_data and tag not in AFTER_PIXEL_DATA:
                raise Unsupported("data after the Pixel Data")
            if tag == _ITEM_DELIMITER:
                if not in_undefined_item or length:
                    raise Unsupported("misplaced item delimiter")
                if sequences:
                    self.sequences[id(elements)] = sequences
                return elements, position, encoding
            if group == 0xFFFE:
                raise Unsupported("item tag among elements")
            key = element_key(tag)
            if key in elements:
                raise Unsupported("duplicate element")
            if length == UNDEFINED_LENGTH:
                elem, position = self._undefined_length(key, vr, position, end, encoding)
                if elem.VR == "SQ":
                    sequences.append(elem)
            else:
                value_end = position + length
                if value_end > end:
                    raise Unsupported("value cut short")
                if vr == "SQ" or vr is None and dictionary_vr(tag) == "SQ":
                    # pydicom parses these when first asked for, with the encoding of the
                    # dataset as read, as a list (see the check of (0008,0005) below)
                    listed = [encoding] if isinstance(encoding, str) else encoding
                    items = self._items(position, value_end, listed, False)[0]
                    elem = _sequence(key, items, position, False, length)
                    sequences.append(elem)
                else:
                    value = _EMPTY[vr] if not length else None \
                        if tag in _LEFT_IN_PLACE and spans is not None else data[position:value_end]
                    elem = _tuple_new(RawDataElement, (key, vr, length, value, position,
                                                       implicit, True, True, False))
                    if tag == _CHARACTER_SET:
                        if any(not sequence.is_undefined_length for sequence in sequences):
                            raise Unsupported("Specific Character Set after a sequence")
                        encoding = _encodings(elem)
                    elif tag == _PIXEL_REPRESENTATION:
                        self.pixel_representation_seen = True
                position = value_end
            elements[key] = elem
            if spans is not None:
                spans[key] = (start, position)
                after_pixel_data = after_pixel_data or tag == PIXEL_DATA
        if in_undefined_item:
            raise Unsupported("item without delimiter")
        if sequences:
            self.sequences[id(elements)] = sequences
        return elements, position, encoding

    def _undefined_length(self, tag: BaseTag, vr: str | None, position: int, end: int,
                          encoding: Any) -> tuple[Any, int]:
        data = self.data
        if vr == "SQ" or vr is None and (dictionary_vr(tag) == "SQ" or tag >> 16 & 1
                                         and data[position:position + 4] == ITEM_TAG):
            items, after = self._items(position, end, encoding, True)
            return _sequence(tag, items, position, True, UNDEFINED_LENGTH), after
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


def _sequence(tag: BaseTag, items: list[Dataset], value_tell: int, undefined: bool,
              length: int) -> DataElement:
    sequence = Sequence(items)
    if length:  # pydicom makes an empty value an empty Sequence, without the flag
        sequence.is_undefined_length = undefined
    return DataElement(tag, "SQ", sequence, value_tell, is_undefined_length=undefined,
                       already_converted=True)


def _encodings(charset: RawDataElement) -> Any:
    """The Python codecs of a Specific Character Set (pydicom's, or it decides)."""
    try:
        return convert_encodings(convert_raw_data_element(charset).value)
    except Exception as exc:  # noqa: BLE001 - whatever pydicom makes of it, it decides
        raise Unsupported("Specific Character Set") from exc


def _propagate_pixel_representation(ds: Dataset,
                                     sequences: dict[int, list[DataElement]]) -> None:
    """Leave each item the ``_pixel_rep`` pydicom gives it when it parses the sequence.

    pydicom tells an ambiguous ``US or SS`` element in an item (implicit VR) which it is
    from the nearest Pixel Representation: when it first decodes a defined-length
    sequence (``Dataset._set_pixel_representation``), it passes the dataset's own (or the
    one it was passed) down to the items without one. The scanner parsed every sequence
    already, so it does the same here, top down, for the sequences pydicom would have
    parsed later (not for undefined-length ones: pydicom parses those while reading,
    and passes nothing down).
    """
    decided = False
    for elem in sequences.get(id(ds._dict), ()):
        if not elem.is_undefined_length:
            if not decided:  # the same for each sequence of the dataset
                decided = True
                own = ds._dict.get(TAG_PIXREP)
                representation = _decoded(ds, own) if own is not None \
                    else getattr(ds, "_pixel_rep", None)
                if representation is not None:
                    ds._pixel_rep = int(b"\x01" in representation) \
                        if isinstance(representation, bytes) else representation
            inherited = getattr(ds, "_pixel_rep", None)
            for item in elem.value:
                raw = item._dict.get(TAG_PIXREP)
                value = None if raw is None else raw.value
                state = vars(item)  # what Dataset.__setattr__ does for this name
                if value is not None:
                    state["_pixel_rep"] = int(b"\x01" in value) if isinstance(value, bytes) \
                        else value
                elif inherited is not None:
                    state["_pixel_rep"] = inherited
        for item in elem.value:
            _propagate_pixel_representation(item, sequences)


def _decoded(ds: Dataset, elem: RawDataElement | DataElement) -> Any:
    """An element's value as pydicom decodes it, without storing the decoded element."""
    if not isinstance(elem, RawDataElement):
        return elem.value
    if elem.VR in _US and elem.length == 2 and elem.value is not None:
        return _US_VALUE.unpack(elem.value)[0]  # what pydicom makes of one US value
    try:
        return convert_raw_data_element(elem, encoding=ds._read_charset, ds=ds).value
    except Exception as exc:  # noqa: BLE001 - pydicom decides what it makes of it
        raise Unsupported("Pixel Representation") from exc


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
        item.file_tell = tell  # read_sequence's

    (``tests/test_io.py`` checks this against the installed pydicom).
    """
    item = Dataset.__new__(Dataset)
    state = item.__dict__
    state.update(_ITEM_STATE)
    for name in _ITEM_CONTAINERS:
        state[name] = _ITEM_STATE[name].copy()
    state.update(_dict=elements, _parent_encoding=parent_encoding, _read_implicit=implicit,
                 _read_little=True, _read_charset=encoding,
                 is_undefined_length_sequence_item=undefined_length, seq_item_tell=tell,
                 file_tell=tell)
    return item
