"""Write a de-identified dataset by copying the input's bytes for untouched elements.

pydicom keeps elements it has not decoded as :class:`~pydicom.dataelem.RawDataElement`
with their file offset. An element nothing changed (the de-identification's record,
:class:`~anonymizer.elements.Mutations`, says so) is written by copying its
encoded bytes from the input (runs of adjacent untouched elements in one copy, Pixel
Data streamed in chunks from a file); only changed elements are encoded anew
(:mod:`anonymizer.io.encoder`).
This is what makes writing cost little more than ``cp`` and keeps memory flat on huge
files. It is used only where the copy is exact: little endian, the input's own
transfer syntax, unchanged character set (otherwise :func:`splice_supported` says no),
and every element of the dataset as read was found in the input's bytes, one after the
other (otherwise :class:`SpliceMap` copies nothing: the bytes of an element not found
could lie inside a neighbour's span).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from anonymizer.elements import Mutations, held_in_file, stored, text_values
from anonymizer.errors import AnonymizerError
from anonymizer.io.encoder import encode_element, write_buffered_element
from anonymizer.tags import (
    ITEM_TAG,
    LONG_LENGTH_VRS,
    PIXEL_DATA,
    SEQUENCE_DELIMITER,
    UNDEFINED_LENGTH,
)

CHUNK = 1 << 20
_TAG = struct.Struct("<HH")


def stat_identity(info: os.stat_result) -> tuple[int, int, int, int, int]:
    """What shows that a file was changed or replaced (git's index and backup tools keep
    the same): size, modification and change times, inode, device."""
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev


class ChangedWhileReadError(AnonymizerError):
    """An input read from disk more than once (a large one: hashed, parsed, then its
    untouched bytes copied into the output) was not the same file every time: what its
    record says and what was de-identified would not be what is written. It is failed;
    the next run reads it again."""


class Source:
    """Random access to the input's bytes: an in-memory buffer or an open file.

    An open file is read again long after it was parsed (its untouched elements are copied
    into the output from it): :meth:`check_unchanged` tells whether it is still the file
    that was opened, as it was.
    """

    def __init__(self, data: bytes | None = None, path: Path | None = None):
        self.data = data
        self.path = path
        self.handle: BinaryIO | None = open(path, "rb") if data is None and path else None  # noqa: SIM115
        #: the open file's :func:`stat_identity` when it was opened
        self.identity = None if self.handle is None else \
            stat_identity(os.fstat(self.handle.fileno()))

    def check_unchanged(self) -> None:
        """Raise :class:`ChangedWhileReadError` if the open file was written to, or its
        path now names another file, since it was opened (a buffer cannot change)."""
        if self.handle is None or self.path is None:
            return
        try:
            current = stat_identity(os.stat(self.path))
        except OSError:
            current = None
        if current != self.identity or \
                stat_identity(os.fstat(self.handle.fileno())) != self.identity:
            raise ChangedWhileReadError("changed while it was read")

    def read(self, start: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[start:start + length]
        assert self.handle is not None
        self.handle.seek(start)
        return self.handle.read(length)

    def tag_at(self, offset: int) -> int | None:
        """The (little endian) tag whose encoding starts at ``offset``."""
        if self.data is not None:
            if offset + 4 > len(self.data):
                return None
            group, element = _TAG.unpack_from(self.data, offset)
        else:
            head = self.read(offset, 4)
            if len(head) < 4:
                return None
            group, element = _TAG.unpack(head)
        return group << 16 | element

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
        if header == SEQUENCE_DELIMITER:
            return offset + 8
        if header[:4] != ITEM_TAG:
            return None
        offset += 8 + struct.unpack("<I", header[4:])[0]


def _start(elem: object, implicit: bool, source: Source) -> int | None:
    """File offset of an element's tag, from its value offset, checked against the bytes."""
    tell = elem.value_tell if isinstance(elem, RawDataElement) \
        else getattr(elem, "file_tell", None)
    if tell is None:
        return None
    tag = elem.tag  # type: ignore[attr-defined]
    candidates = (8,) if implicit else ((12, 8) if elem.VR in LONG_LENGTH_VRS else (8, 12))
    for size in candidates:
        if tell >= size and source.tag_at(tell - size) == tag:
            return tell - size
    return None


def _end(elem: object, source: Source | None) -> int | None:
    """Offset after an element's value where its length tells (with ``source``, also
    after encapsulated Pixel Data); None where only its successor's start can."""
    if not isinstance(elem, RawDataElement) or elem.value_tell is None:
        return None
    if elem.length != UNDEFINED_LENGTH:
        return elem.value_tell + elem.length
    if elem.tag == PIXEL_DATA and source is not None:
        return _encapsulated_end(source, elem.value_tell)
    return None


def _one_after_another(ordered: list[tuple[int, tuple[int, int]]],
                       originals: dict[int, object]) -> bool:
    """Whether the spans, in this order, follow each other with nothing between them and
    each but the last ends where its element's own length says (:func:`_end`)."""
    following = [start for _, (start, _) in ordered[1:]]
    for (tag, (start, end)), next_start in zip(ordered, following, strict=False):
        if end != next_start or start >= end:
            return False
        elem = originals.get(tag)
        # _end inlined for the common case, a RawDataElement of defined length: this
        # runs for every element of every file
        if type(elem) is RawDataElement and elem.length != UNDEFINED_LENGTH:
            if elem.value_tell + elem.length != end:
                return False
        else:
            own_end = _end(elem, None)
            if own_end is not None and own_end != end:
                return False
    return True


@dataclass
class SpliceMap:
    """Where each top-level element of the input lies, to copy the untouched ones.

    ``originals`` holds the element objects as read: an element whose object was
    replaced (by an action, or by decoding) is encoded anew, never copied.

    A map copies only when it accounts for every byte it copies: each of ``originals``
    has a span, and the spans lie one after the other without gaps or overlaps. A map
    that does not (:meth:`exact` is False) has no spans: everything is encoded.
    """

    source: Source
    implicit: bool
    #: tag -> (offset of the element's tag, offset after its value), filed under the
    #: dataset store's own key objects (the scanner's and :meth:`build`'s): the writer looks
    #: them up by the very keys it iterates, comparing nothing. An int tag finds its entry
    #: too, through pydicom's ``BaseTag.__eq__``.
    spans: dict[int, tuple[int, int]]
    #: tag -> the element object as read (keys as ``spans``)
    originals: dict[int, object]

    def __post_init__(self) -> None:
        if not self.exact():
            self.spans = {}

    def exact(self) -> bool:
        """Whether every original element has a span, the spans follow each other with
        nothing between them, and each ends where its element's own length says."""
        spans, originals = self.spans, self.originals
        if not spans.keys() >= originals.keys():
            return False
        # Spans that pass in the order they were found pass sorted too (that order is then
        # the sorted one: their starts rise), so they are sorted only when they do not.
        listed = list(spans.items())
        return _one_after_another(listed, originals) or _one_after_another(
            sorted(listed, key=lambda item: item[1]), originals)

    @classmethod
    def build(cls, ds: Dataset, source: Source) -> SpliceMap | None:
        """The map of ``ds`` as just read, or None if nothing of it can be copied: its
        encoding differs, or an element was not found in the input's bytes (an element
        read leniently, or decoded while reading: its bytes would lie inside its
        neighbour's span).

        Only the last element may lack an end (its successor's start is not there to
        tell): it is then encoded, and nothing after it is copied.
        """
        if not splice_supported(ds):
            return None
        implicit = bool(ds.original_encoding[0])
        located = []
        for tag, elem in stored(ds).items():
            start = _start(elem, implicit, source)
            if start is None:
                return None
            located.append((start, tag, elem))  # the store's own key (see spans)
        located.sort(key=lambda entry: entry[0])
        spans = {tag: (start, following[0]) for (start, tag, _), following
                 in zip(located, located[1:], strict=False)}
        originals = {tag: elem for _, tag, elem in located}
        if located:
            start, tag, elem = located[-1]
            end = _end(elem, source)
            if end is None:
                del originals[tag]
            else:
                spans[tag] = (start, end)
        return cls(source, implicit, spans, originals)


class EncodedConstants:
    """Elements every output shares (the de-identification stamp), encoded once.

    Parameters
    ----------
    elements : dict
        tag -> the very DataElement object placed into every dataset.
    """

    def __init__(self, elements: dict[int, DataElement]):
        self.elements = elements
        self._bytes: dict[tuple[int, bool], bytes] = {}

    def encoded(self, tag: int, elem: object, implicit: bool) -> bytes | None:
        """The encoding of ``elem`` if it is the shared constant for ``tag``, else None."""
        if self.elements.get(tag) is not elem:
            return None
        key = (tag, implicit)
        if key not in self._bytes:
            self._bytes[key] = encode_element(elem, implicit, "iso8859")
        return self._bytes[key]


_META_TEXT = ((0x00020002, b"UI"), (0x00020003, b"UI"), (0x00020010, b"UI"),
              (0x00020012, b"UI"), (0x00020013, b"SH"))


def encode_file_meta(meta: Dataset) -> bytes:
    """Encode the File Meta Information the writer builds (PS3.10 7.1), group length first.

    Only the elements :func:`anonymizer.io.writer` puts there: Media Storage SOP Class
    and Instance UIDs, Transfer Syntax, Implementation Class UID and Version Name.
    """
    body = [struct.pack("<HH2sHI", 2, 1, b"OB", 0, 2), b"\x00\x01"]
    for tag, vr in _META_TEXT:
        values = text_values(meta, tag)
        if not values:
            continue
        text = "\\".join(values).encode("latin-1", "replace")
        if len(text) % 2:
            text += b"\x00" if vr == b"UI" else b" "
        body.append(struct.pack("<HH2sH", 2, tag & 0xFFFF, vr, len(text)) + text)
    data = b"".join(body)
    return struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(data)) + data


def write_spliced(ds: Dataset, splice: SpliceMap, changes: Mutations | None, out: BinaryIO,
                  constants: EncodedConstants | None = None) -> None:
    """Write ``ds`` as a Part 10 file, copying untouched top-level elements' bytes.

    An element is copied when it is the very object that was read and ``changes`` (the
    record of the de-identification) says nothing was changed in it at any depth; every
    other element is encoded. Without a record nothing is copied. The caller completes
    the file meta first.
    """
    implicit = splice.implicit
    out.write(b"\x00" * 128 + b"DICM")
    out.write(encode_file_meta(ds.file_meta))
    encoding = ds.get("SpecificCharacterSet", "iso8859")
    pending: tuple[int, int] | None = None
    encoded: list[bytes] = []

    def flush_encoded() -> None:
        if encoded:
            out.write(b"".join(encoded))
            encoded.clear()

    spans, originals, source = splice.spans, splice.originals, splice.source
    if changes is None:  # no record: nothing is copied
        spans = {}
    elements = stored(ds)
    # the store's own keys to read it and the map (see SpliceMap), plain ints elsewhere
    for key in sorted(elements, key=int):
        tag = int(key)
        if not tag & 0xFFFF and tag >> 16 > 6:
            continue  # group lengths are never written (PS3.5 7.2)
        span = spans.get(key)
        elem = elements[key]
        if span is not None and changes.untouched(tag) and elem is originals.get(key):
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
        if held_in_file(elem):  # cleaned Pixel Data built in a file: copied out in chunks
            flush_encoded()
            write_buffered_element(elem, implicit, out)
            continue
        constant = constants.encoded(tag, elem, implicit) if constants else None
        if constant is None:
            constant = encode_element(elem, implicit, encoding)
        encoded.append(constant)
    flush_encoded()
    if pending is not None:
        source.copy(*pending, out)
