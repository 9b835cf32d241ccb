"""The one place that reaches into a pydicom Dataset's element store.

A de-identifier looks at every element several times (reader checks, rules, writer)
and changes a few. pydicom's own access decodes values and stores the decoded
elements back (which then have to be encoded again), and converts every tag it is
given. Here, elements are read as stored (:func:`stored`), values are read as strings
without storing anything back (:func:`text_values`, :func:`text_value`), and new values
are stored already encoded (:func:`set_encoded`), so what the engine did not change
stays the raw bytes the writer can copy.

Every change made to a dataset while it is de-identified goes through :func:`store`,
:func:`set_encoded`, :func:`remove` or :func:`add_private` (at any depth), and each is
recorded by the :class:`Mutations` recording then: the splice writer copies from the
input only the top-level elements that record says nothing changed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import PIXEL_KEYWORDS, Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.values import convert_SQ

from anonymizer.tags import ITEM_TAG

#: tag -> the one key object every element store of this process files that tag under
#: (bounded: tags come from files)
_KEYS: dict[int, BaseTag] = {}


def element_key(tag: int) -> BaseTag:
    """The key an element store files ``tag`` under: one object per tag in a process.

    The stores' keys are pydicom tags (``BaseTag``), whose ``__eq__`` runs in Python:
    a store lookup by a plain int, or by another tag object of the same value, calls it
    once more for every element looked up or replaced. A lookup by the very key object
    the store holds compares nothing. The reader files elements under these keys; give a
    store lookup ``element_key(tag)``, not ``tag``. A key object is returned as it is.
    """
    if type(tag) is not int:
        return tag  # type: ignore[return-value]
    key = _KEYS.get(tag)
    if key is None:
        key = BaseTag(tag)
        if len(_KEYS) < 1 << 16:
            _KEYS[tag] = key
    return key


def stored(ds: Dataset) -> Mapping[int, DataElement | RawDataElement]:
    """The elements of ``ds`` as stored: tag -> DataElement or RawDataElement.

    Equivalent to ``{t: ds.get_item(t, keep_deferred=True) for t in ds.keys()}``;
    never decodes a value nor reads a deferred one. Read only: change ``ds`` itself
    (through :func:`store`, :func:`set_encoded`, :func:`remove`).
    """
    return ds._dict  # pydicom keeps elements here; get_item(keep_deferred=True) reads it


#: Python codecs of the character sets decoded here directly (one codec, no escapes).
_SIMPLE_CODECS = {"iso8859": "latin_1", "latin_1": "latin_1", "UTF8": "utf_8"}
_MULTI_TEXT_VRS = frozenset({"LO", "SH", "UC"})
_SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT"})
_STRING_VRS = frozenset({"AS", "CS", "DA", "DT", "TM", "UI"})


def held_in_file(elem: DataElement | RawDataElement) -> bool:
    """Whether the element's value is an open file (pydicom's buffered value: Pixel Data
    cleaned on disk), to be copied out in chunks and never read whole."""
    return isinstance(elem, DataElement) and elem.is_buffered


def _codec(charset: str | list[str]) -> str | None:
    if isinstance(charset, str):
        return _SIMPLE_CODECS.get(charset)
    return _SIMPLE_CODECS.get(charset[0]) if len(charset) == 1 else None


def _fast_strings(raw: RawDataElement, ds: Dataset) -> list[str] | None:
    """What pydicom's value conversion gives, as strings, for the common cases."""
    vr, data = raw.VR, raw.value
    if not isinstance(data, bytes):
        return None
    try:
        if vr in _STRING_VRS:
            return data.decode("latin_1").rstrip(" \x00").split("\\")
        # ASCII without ESC reads the same in every character set (ISO 2022 switches
        # sets with ESC sequences): no need to look the dataset's one up
        codec = "ascii" if data.isascii() and b"\x1b" not in data else \
            _codec(ds._character_set)
        if codec is None:
            return None
        if vr == "PN":
            return data.rstrip(b"\x00 ").decode(codec).split("\\")
        if vr in _MULTI_TEXT_VRS:
            return [v.rstrip("\x00 ") for v in data.decode(codec).split("\\")]
        if vr in _SINGLE_TEXT_VRS:
            return [data.decode(codec).rstrip("\x00 ")]
    except UnicodeDecodeError:
        return None  # pydicom decides how to read it
    return None


def strings(value: Any) -> list[str]:
    """A decoded value as a list of strings ([] when empty)."""
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def element_strings(elem: DataElement | RawDataElement | None, ds: Dataset) -> list[str]:
    """The values of ``elem`` (an element of ``ds``, or one that was) as strings.

    Text is decoded directly for single-codec character sets, and by pydicom for
    everything else; either way nothing is stored back into ``ds``.
    """
    if elem is None:
        return []
    if isinstance(elem, RawDataElement):
        fast = _fast_strings(elem, ds)
        if fast is not None:
            return [] if fast == [""] else fast
        if elem.value is None and elem.length:
            return strings(ds[elem.tag].value)
        elem = convert_raw_data_element(elem, encoding=ds._character_set, ds=ds)
    return strings(elem.value)


def text_values(ds: Dataset, tag: int) -> list[str]:
    """The values of ``ds[tag]`` as strings, without storing a decoded element."""
    return element_strings(ds._dict.get(element_key(tag)), ds)


def text_value(ds: Dataset, keyword: str) -> str:
    """The value of an attribute of ``ds`` as one string ("" if absent), read like
    :func:`text_values`: a raw element stays raw, so the writer can still copy it."""
    return "\\".join(text_values(ds, tag_for_keyword(keyword)))  # type: ignore[arg-type]


def undeclared_items(elem: DataElement | RawDataElement) -> Sequence | None:
    """The items of a private sequence read without its VR (implicit VR, or UN), or None
    when the element is not one. Such sequences are always implicit VR little endian."""
    value = elem.value
    if elem.VR in (None, "UN") and isinstance(value, bytes) and value[:4] == ITEM_TAG:
        return convert_SQ(value, True, True)
    return None


class Mutations:
    """The record of every change made to one dataset while it is de-identified: the
    top-level elements a change was made in, at any depth.

    Created per de-identification and active (:meth:`recording`) while the dataset
    changes; :func:`store`, :func:`set_encoded`, :func:`remove` and :func:`changed`
    record into it. The splice writer copies an element's input bytes only when
    :meth:`untouched` says so: a change inside a sequence item is recorded against the
    sequence whatever code the action that made it reports.

    Parameters
    ----------
    root : Dataset
        The dataset being de-identified (its file meta is written anew anyway: changes
        there are not recorded).
    """

    def __init__(self, root: Dataset):
        self.root = root
        self.touched: set[int] = set()
        #: a change was made in a dataset that could not be placed in ``root``'s tree:
        #: nothing may be copied
        self.everything = False
        #: id(item) -> (item, the top-level tag it lies under), for items at any depth
        self._owners: dict[int, tuple[Dataset, int]] = {}

    @contextmanager
    def recording(self) -> Iterator[Mutations]:
        """Record every change made through this module's functions while active."""
        token = _RECORDING.set(self)
        try:
            yield self
        finally:
            _RECORDING.reset(token)

    def enter(self, items: Iterable[Dataset], top: int) -> None:
        """Note that ``items`` lie under the top-level element ``top`` (the engine tells
        as it walks; an item it did not walk is looked for in the tree)."""
        owners = self._owners
        for item in items:
            owners[id(item)] = (item, top)

    def note(self, ds: Dataset, tag: int) -> None:
        """Record a change of element ``tag`` of ``ds`` (``root`` or an item at any depth)."""
        if ds is self.root:
            self.touched.add(int(tag))
            return
        if ds is getattr(self.root, "file_meta", None):
            return  # written anew by the writer, never copied
        owner = self._owner(ds)
        if owner is None:
            self.everything = True  # cannot tell which element it is in: copy nothing
        else:
            self.touched.add(owner)

    def untouched(self, tag: int) -> bool:
        """Whether nothing was changed in (or of) top-level element ``tag``."""
        return not self.everything and tag not in self.touched

    def _owner(self, ds: Dataset) -> int | None:
        entry = self._owners.get(id(ds))
        if entry is None or entry[0] is not ds:
            self._index()
            entry = self._owners.get(id(ds))
        return entry[1] if entry is not None and entry[0] is ds else None

    def _index(self) -> None:
        """Place every item of the root's decoded sequences (raw ones hold no objects)."""
        for key, elem in stored(self.root).items():
            if isinstance(elem, DataElement) and elem.VR == "SQ":
                self._index_items(elem.value, int(key))

    def _index_items(self, items: Iterable[Dataset], top: int) -> None:
        for item in items:
            self._owners[id(item)] = (item, top)
            for elem in stored(item).values():
                if isinstance(elem, DataElement) and elem.VR == "SQ":
                    self._index_items(elem.value, top)


_RECORDING: ContextVar[Mutations | None] = ContextVar("anonymizer_mutations", default=None)


def _record(ds: Dataset, tag: int) -> None:
    recording = _RECORDING.get()
    if recording is not None:
        recording.note(ds, tag)


def store(ds: Dataset, elem: DataElement | RawDataElement) -> None:
    """``ds[elem.tag] = elem``, recorded."""
    ds[elem.tag] = elem
    _record(ds, elem.tag)


def remove(ds: Dataset, tag: int) -> None:
    """``del ds[tag]``, recorded, by the key on the element store.

    What :meth:`Dataset.__delitem__` does, without making a tag object nor comparing one
    (:func:`element_key`): forget the private blocks when a private creator goes, and the
    decoded pixels when pixel data goes.
    """
    del ds._dict[element_key(tag)]
    if tag >> 16 & 1 and 0x10 <= tag & 0xFFFF <= 0xFF and ds._private_blocks:
        ds._private_blocks = {}
    if tag in PIXEL_KEYWORDS:
        ds._pixel_array = None
        ds._pixel_id = {}
    _record(ds, tag)


def add_private(ds: Dataset, group: int, creator: str, offset: int, vr: str,
                value: Any) -> None:
    """Add a private element in ``creator``'s block of ``group`` (reserved if need be),
    recorded."""
    block = ds.private_block(group, creator, create=True)
    tag = block.get_tag(offset)
    _record(ds, group << 16 | tag >> 8 & 0xFF)  # the creator, if the block was made here
    block.add_new(offset, vr, value)
    _record(ds, tag)


def set_encoded(ds: Dataset, tag: int, vr: str, data: bytes) -> None:
    """Store an already encoded value (padded to even length as its VR says).

    The element stays raw bytes, like an element read from a file, so nothing decodes or
    re-validates it on the way to the writer. Recorded (:class:`Mutations`).
    """
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    raw = RawDataElement(element_key(tag), vr, len(data), data, None, False, True)
    if tag >> 16 & 1 or tag in PIXEL_KEYWORDS:
        ds[tag] = raw  # Dataset.__setitem__ also tracks private blocks and pixel arrays
    else:
        ds._dict[raw.tag] = raw  # all Dataset.__setitem__ does for any other raw element
    _record(ds, tag)
