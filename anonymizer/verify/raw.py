"""The bytes of an output read as text: what a parser does not show.

Trailing data after the dataset, values whose VR hides text (OB, UN), elements a lenient
parser skipped: the whole file is read as runs of printable bytes, each decoded as
Latin-1 and (where it has bytes beyond ASCII) as UTF-8. Values that are pixels or other
bulk binary data of the standard (Pixel Data, LUTs, overlays, waveforms) are left out:
their bytes are numbers, and read as text they would match short names by chance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from anonymizer.elements import stored, undeclared_items
from anonymizer.tags import UNDEFINED_LENGTH, dictionary_vr

#: A run of bytes that can be text: anything but the C0 controls other than tab, line
#: feed, vertical tab, form feed and carriage return (ESC, NUL and the bytes of binary
#: lengths and tags split runs), at least two bytes long.
_TEXT_RUN = re.compile(rb"[^\x00-\x08\x0e-\x1f\x7f]{2,}")
_PRINTABLE = re.compile(rb"[^\x00-\x08\x0e-\x1f\x7f]")
#: Standard binary VRs whose values are numbers, not text.
_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
#: Standard binary values that can hold text: an encapsulated PDF or CDA document.
_TEXT_BEARING = frozenset({0x00420011})
#: A nested bulk value shorter than this is not looked for in the file (its bytes could
#: be anywhere); so few bytes cannot match a name by chance often enough to matter.
_LOCATE_MIN = 64
#: Bytes read at a time from a file not held in memory.
CHUNK = 1 << 20


def text_runs(data: bytes | memoryview, start: int = 0, end: int | None = None
              ) -> Iterator[str]:
    """The runs of printable bytes of ``data[start:end]``, each read as UTF-8 where it is
    valid UTF-8, else as Latin-1 (one reading a run: two would match different
    identifiers in the same bytes, Müller in one and a shorter place in the mojibake)."""
    for match in _TEXT_RUN.finditer(data, start, len(data) if end is None else end):
        yield _read(match.group())


def _read(run: bytes) -> str:
    try:
        return run.decode("utf-8")
    except UnicodeDecodeError:
        return run.decode("latin-1")


def file_text_runs(path: Path, data: bytes | None, skipped: list[tuple[int, int]]
                   ) -> Iterator[str]:
    """The text runs of a whole file outside the byte ranges ``skipped``.

    ``data`` is the file's content when it is held in memory; otherwise the file is read
    in chunks of :data:`CHUNK` bytes: a run that goes on into the next chunk is carried
    over to it, unless it is a chunk long already (text values are far shorter).
    """
    if data is not None:
        for start, end in _kept_ranges(skipped, len(data)):
            yield from text_runs(data, start, end)
        return
    size = path.stat().st_size
    with open(path, "rb") as handle:
        for start, end in _kept_ranges(skipped, size):
            handle.seek(start)
            remaining, carry = end - start, b""
            while remaining > 0:
                block = handle.read(min(CHUNK, remaining))
                if not block:
                    break  # the file shrank
                remaining -= len(block)
                chunk, carry, last_end = carry + block, b"", 0
                for match in _TEXT_RUN.finditer(chunk):
                    if remaining and match.end() == len(chunk) \
                            and match.end() - match.start() < CHUNK:
                        carry = match.group()  # it may go on in the next block
                    else:
                        yield _read(match.group())
                    last_end = match.end()
                if remaining and last_end < len(chunk) and _PRINTABLE.fullmatch(chunk[-1:]):
                    carry = chunk[-1:]  # one byte: a run only with the next block's
            if carry:
                yield from text_runs(carry)


def _kept_ranges(skipped: list[tuple[int, int]], size: int) -> Iterator[tuple[int, int]]:
    position = 0
    for start, end in sorted(skipped):
        if start > position:
            yield position, min(start, size)
        position = max(position, end)
    if position < size:
        yield position, size


def bulk_ranges(ds: Dataset, spans: dict[int, tuple[int, int]] | None,
                data: bytes | None) -> list[tuple[int, int]]:
    """Byte ranges of ``ds``'s file that hold bulk binary values of the standard.

    Top-level values are placed by where the reader found them (``spans`` from the splice
    map when there is one, else the value's offset and length); values inside sequences
    (an icon's pixels, a LUT) are looked for by their bytes, when the file is in memory.
    """
    ranges: list[tuple[int, int]] = []
    for tag, elem in stored(ds).items():
        tag = int(tag)
        if not _is_bulk(tag, elem):
            for item in sequence_items(ds, tag, elem, _vr(tag, elem)) or ():
                ranges.extend(_nested_bulk(item, data))
            continue
        span = spans.get(tag) if spans is not None else None
        if span is None:
            span = _value_range(elem)
        if span is not None:
            ranges.append(span)
    return ranges


def _nested_bulk(ds: Dataset, data: bytes | None) -> Iterator[tuple[int, int]]:
    for tag, elem in stored(ds).items():
        tag = int(tag)
        if _is_bulk(tag, elem):
            value = elem.value
            if data is not None and isinstance(value, bytes) and len(value) >= _LOCATE_MIN:
                at = data.find(value)
                while at >= 0:
                    yield at, at + len(value)
                    at = data.find(value, at + len(value))
        else:
            for item in sequence_items(ds, tag, elem, _vr(tag, elem)) or ():
                yield from _nested_bulk(item, data)


def _vr(tag: int, elem: DataElement | RawDataElement) -> str | None:
    return elem.VR if elem.VR not in (None, "UN") else dictionary_vr(tag)


def _is_bulk(tag: int, elem: DataElement | RawDataElement) -> bool:
    return not tag >> 16 & 1 and tag not in _TEXT_BEARING and _vr(tag, elem) in _BULK_VRS


def sequence_items(ds: Dataset, tag: int, elem: DataElement | RawDataElement,
                   vr: str | None) -> Iterable[Dataset] | None:
    """The items of an element of ``ds`` that is a sequence (``vr`` SQ, or a private
    sequence read without its VR), else None; none when pydicom cannot parse them (their
    bytes are still read as text)."""
    if vr in ("UN", "OB", None):
        return undeclared_items(elem) if tag >> 16 & 1 else None
    if vr != "SQ":
        return None
    try:
        return elem.value if isinstance(elem, DataElement) else ds[tag].value
    except Exception:  # noqa: BLE001 - unparsable: the raw bytes show what it holds
        return ()


def _value_range(elem: DataElement | RawDataElement) -> tuple[int, int] | None:
    tell = getattr(elem, "value_tell", None)
    if tell is None:
        return None
    length = getattr(elem, "length", None)
    if length is not None and length != UNDEFINED_LENGTH:
        return tell, tell + length
    value = elem.value
    return (tell, tell + len(value)) if isinstance(value, bytes) else None
