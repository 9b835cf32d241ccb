"""One streaming pass over the DICOM files of a release: what stayed in them.

Each file is read, walked (every element at every depth, file meta included, private
blocks by creator) and closed before the next; what is kept is bounded whatever the
number of files:

- per attribute (its tag path), the most frequent values with their counts and number
  of files (:class:`TopValues`: at most ``2 * capacity`` values at any time);
- patients, studies and series as sets of 64-bit hashes (about 100 bytes each), so
  their counts are exact;
- the study dates of the first :data:`MAX_CHART_PATIENTS` patients;
- per series (the first :data:`MAX_SERIES`), the thumbnails of its first files, and a
  larger thumbnail of every file the pixel stage flagged (the first
  :data:`MAX_FLAGGED_IMAGES`).
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.datadict import get_private_entry, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from anonymizer.elements import element_strings, stored, text_value, undeclared_items
from anonymizer.errors import AnonymizerError
from anonymizer.io import NotDicomError, read_dataset
from anonymizer.pipeline.discovery import discover
from anonymizer.reasons import safe_reason
from anonymizer.review.thumbnails import first_frame, png_data_uri
from anonymizer.scrub import dicom_date
from anonymizer.tags import PIXEL_DATA, dictionary_vr, format_tag

#: VRs whose values are text a reviewer reads (binary and numeric VRs are not listed).
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                      "TM", "UC", "UI", "UR", "UT"})
#: A value longer than this is cut (and counted with others that start the same).
MAX_VALUE_CHARS = 4000
#: Attribute paths tabulated; a release with more (deep SR trees) counts the rest.
MAX_ATTRIBUTES = 4000
MAX_SERIES = 200
MAX_CHART_PATIENTS = 200
MAX_STUDIES_PER_PATIENT = 100
MAX_FLAGGED_IMAGES = 200
MAX_LISTED_PROBLEMS = 50
THUMBNAIL_SIZE = 160
FLAGGED_SIZE = 384
#: Numbers written as text: read here directly (pydicom would make objects of them).
_DECIMAL_VRS = frozenset({"DS", "IS"})
#: Binary numbers: a private one is shown as its numbers (public ones are not listed).
_NUMBER_VRS = frozenset({"AT", "FD", "FL", "SL", "SS", "SV", "UL", "US", "UV"})
#: Private elements that are not text are shown by size; shorter ones that decode to
#: printable text are shown as that text.
_PRINTABLE_EXTRA = frozenset("\t\n\r")


@dataclass(frozen=True)
class ValueCount:
    """One value of an attribute with how often it occurs and in how many files."""

    value: str
    count: int
    files: int


class TopValues:
    """The most frequent values of one attribute, in bounded memory.

    Every value is counted exactly until more than ``2 * capacity`` distinct values
    were seen; then the least frequent half is dropped (and :attr:`pruned_max` records
    the largest count dropped): a value seen again after that restarts from zero, so a
    count of a release with that many distinct values is a lower bound, low by at most
    :attr:`pruned_max`. The total number of occurrences stays exact.
    """

    __slots__ = ("capacity", "entries", "total", "pruned_max", "pruned")

    def __init__(self, capacity: int):
        self.capacity = capacity
        #: value -> [occurrences, files, serial of the last file it was seen in]
        self.entries: dict[str, list[int]] = {}
        self.total = 0
        self.pruned_max = 0
        self.pruned = False

    def add(self, value: str, file_serial: int) -> None:
        self.total += 1
        entry = self.entries.get(value)
        if entry is None:
            self.entries[value] = [1, 1, file_serial]
            if len(self.entries) > 2 * self.capacity:
                self._prune()
            return
        entry[0] += 1
        if entry[2] != file_serial:
            entry[1] += 1
            entry[2] = file_serial

    def _prune(self) -> None:
        ranked = sorted(self.entries.items(), key=lambda item: (-item[1][0], item[0]))
        for _, entry in ranked[self.capacity:]:
            self.pruned_max = max(self.pruned_max, entry[0])
        self.entries = dict(ranked[:self.capacity])
        self.pruned = True

    def top(self, number: int) -> list[ValueCount]:
        """The ``number`` most frequent values, most frequent first (ties by value)."""
        ranked = sorted(self.entries.items(), key=lambda item: (-item[1][0], item[0]))
        return [ValueCount(value, entry[0], entry[1]) for value, entry in ranked[:number]]

    @property
    def distinct(self) -> int | None:
        """The number of distinct values, or None once some were dropped (unknown)."""
        return None if self.pruned else len(self.entries)


@dataclass
class AttributeStats:
    """One attribute (a tag path: the same element in every file and every item)."""

    path: str  # "(0040,A730) > (0040,A160)"; private: "(0009,xx10)" in its creator's block
    label: str  # "ContentSequence > TextValue"
    vr: str
    creator: str | None  # the private creator whose block the path enters, if any
    values: TopValues
    files: int = 0
    last_file: int = -1


@dataclass
class Thumbnail:
    """A small image of one output file (or why there is none)."""

    output: str
    uri: str | None
    note: str
    frames: int
    pixels: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass
class Series:
    """A series of the release: who, what, how many files, and its thumbnails."""

    uid: str
    patient: str
    study: str
    modality: str
    sop_class: str
    description: str
    files: int = 0
    with_pixels: int = 0
    thumbnails: list[Thumbnail] = field(default_factory=list)


@dataclass
class ReleaseStats:
    """Everything the page shows about the files of OUT (see the module docstring)."""

    top: int
    thumbnails_per_series: int
    files: int = 0
    serial: int = 0  # files tried (the serial of the next): tells files apart when counting
    total_bytes: int = 0
    attributes: dict[tuple[str | None, str], AttributeStats] = field(default_factory=dict)
    untabulated_values: int = 0
    patients: set[int] = field(default_factory=set)
    studies: set[int] = field(default_factory=set)
    series_uids: set[int] = field(default_factory=set)
    modalities: Counter[str] = field(default_factory=Counter)
    sop_classes: Counter[str] = field(default_factory=Counter)
    transfer_syntaxes: Counter[str] = field(default_factory=Counter)
    #: patient pseudonym -> study UID -> study date (first patients only)
    study_dates: dict[str, dict[str, dt.date | None]] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)
    flagged_images: list[Thumbnail] = field(default_factory=list)
    flagged_not_shown: int = 0
    flagged_missing: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    unreadable_count: int = 0
    not_dicom: list[str] = field(default_factory=list)
    not_dicom_count: int = 0
    #: files in OUT that the audit log does not list as written, and the reverse
    unlogged: int = 0
    missing: int = 0

    @property
    def capacity(self) -> int:
        return max(4 * self.top, 100)


def scan_release(out_dir: Path, stats: ReleaseStats, exclude: frozenset[Path],
                 flagged: Mapping[str, Mapping[str, Any]],
                 logged: frozenset[str] | set[str] | None) -> ReleaseStats:
    """Stream every file under ``out_dir`` into ``stats`` (one file in memory at a time).

    Parameters
    ----------
    out_dir : Path
        The release (an ``anonymizer run`` OUT, or any folder of DICOM files).
    stats : ReleaseStats
        Filled in place (and returned).
    exclude : frozenset of Path
        Resolved paths not to read (the audit log, the page being written).
    flagged : mapping
        Output path (relative) -> the audit log's pixel record, for the files whose
        pixels held text or were cleaned: each gets a large thumbnail.
    logged : set of str, optional
        The outputs the audit log lists as written, to count files it does not list
        and listed files that are gone (None: no audit log).
    """
    seen_flagged = 0
    seen_logged = 0
    for relative in discover(out_dir):
        path = out_dir / relative
        if path.resolve() in exclude:
            continue
        record = flagged.get(relative)
        seen_flagged += record is not None
        listed = logged is not None and relative in logged
        seen_logged += listed
        if _scan_file(stats, path, relative, record) and logged is not None and not listed:
            stats.unlogged += 1
    stats.flagged_missing = len(flagged) - seen_flagged
    if logged is not None:
        stats.missing = len(logged) - seen_logged
    return stats


def _scan_file(stats: ReleaseStats, path: Path, relative: str,
               flagged: Mapping[str, Any] | None) -> bool:
    """Add one file; False when it is not a DICOM file that could be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = read_dataset(path)
    except NotDicomError:
        stats.not_dicom_count += 1
        if len(stats.not_dicom) < MAX_LISTED_PROBLEMS:
            stats.not_dicom.append(relative)
        return False
    except Exception as exc:  # noqa: BLE001 - any unreadable file is listed, not fatal
        _unreadable(stats, relative, safe_reason("read", exc))
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _add_dataset(stats, result.dataset, relative, result.size, flagged)
    except Exception as exc:  # noqa: BLE001 - a file that cannot be walked is listed
        _unreadable(stats, relative, safe_reason("review", exc))
        return False
    finally:
        result.close()
    return True


def _unreadable(stats: ReleaseStats, relative: str, reason: str) -> None:
    stats.unreadable_count += 1
    if len(stats.unreadable) < MAX_LISTED_PROBLEMS:
        stats.unreadable.append((relative, reason))


def _add_dataset(stats: ReleaseStats, ds: Dataset, relative: str, size: int,
                 flagged: Mapping[str, Any] | None) -> None:
    serial = stats.serial  # every attempt: a file that fails half-way leaves no count
    stats.serial += 1
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _walk(stats, meta, (), (), None, serial)
    _walk(stats, ds, (), (), None, serial)
    syntax = text_value(meta, "TransferSyntaxUID") if meta is not None else ""
    stats.transfer_syntaxes[_uid_name(syntax) if syntax else "(none)"] += 1

    patient = text_value(ds, "PatientID")
    study = text_value(ds, "StudyInstanceUID")
    series_uid = text_value(ds, "SeriesInstanceUID")
    modality = text_value(ds, "Modality") or "(none)"
    sop_class = text_value(ds, "SOPClassUID")
    stats.patients.add(hash(patient))
    stats.studies.add(hash(study))
    stats.series_uids.add(hash(series_uid))
    stats.modalities[modality] += 1
    stats.sop_classes[_uid_name(sop_class) if sop_class else "(none)"] += 1
    _add_study_date(stats, patient, study, text_value(ds, "StudyDate"))
    stats.files += 1
    stats.total_bytes += size

    series = stats.series.get(series_uid)
    if series is None and len(stats.series) < MAX_SERIES:
        series = stats.series[series_uid] = Series(
            series_uid, patient, study, modality, _uid_name(sop_class) if sop_class else "",
            text_value(ds, "SeriesDescription"))
    if series is not None:
        series.files += 1
    has_pixels = PIXEL_DATA in stored(ds)
    if not has_pixels:
        return
    if series is not None:
        series.with_pixels += 1
    wanted_in_series = series is not None and \
        len(series.thumbnails) < stats.thumbnails_per_series
    wanted_flagged = flagged is not None
    if wanted_flagged and len(stats.flagged_images) >= MAX_FLAGGED_IMAGES:
        stats.flagged_not_shown += 1
        wanted_flagged = False
    if not (wanted_in_series or wanted_flagged):
        return
    frames_text = text_value(ds, "NumberOfFrames").strip()
    frames = int(frames_text) if frames_text.isdigit() else 1
    image, error = None, None
    try:
        image = first_frame(ds)
    except AnonymizerError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a decoder's failure is shown, not fatal
        error = safe_reason("decode", exc)
    if wanted_in_series:
        assert series is not None
        uri = png_data_uri(image, THUMBNAIL_SIZE) if image is not None else None
        series.thumbnails.append(Thumbnail(relative, uri, _pixel_note(flagged), frames,
                                           flagged, error))
    if wanted_flagged:
        uri = png_data_uri(image, FLAGGED_SIZE) if image is not None else None
        stats.flagged_images.append(Thumbnail(relative, uri, _pixel_note(flagged), frames,
                                              flagged, error))


def _pixel_note(pixels: Mapping[str, Any] | None) -> str:
    """What the pixel stage did to a file, from its audit record."""
    if not pixels:
        return ""
    parts = []
    if pixels.get("searched_frames"):
        parts.append(f"{pixels['searched_frames']} frame(s) searched")
    if pixels.get("text_boxes"):
        parts.append(f"{pixels['text_boxes']} text region(s)")
    if pixels.get("identifier_boxes"):
        parts.append(f"{pixels['identifier_boxes']} with an identifier")
    if pixels.get("blanked"):
        parts.append(f"{pixels['blanked']} region(s) blanked")
    if pixels.get("rules"):
        parts.append("rules: " + ", ".join(str(r) for r in pixels["rules"]))
    return "; ".join(parts)


def _add_study_date(stats: ReleaseStats, patient: str, study: str, written: str) -> None:
    dates = stats.study_dates.get(patient)
    if dates is None:
        if len(stats.study_dates) >= MAX_CHART_PATIENTS:
            return
        dates = stats.study_dates[patient] = {}
    if study not in dates and len(dates) < MAX_STUDIES_PER_PATIENT:
        dates[study] = dicom_date(written.strip()[:8])


def _uid_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else uid


def _walk(stats: ReleaseStats, ds: Dataset, path: tuple[str, ...], label: tuple[str, ...],
          creator: str | None, serial: int) -> None:
    """Count every text value of ``ds`` (and of its items, at every depth)."""
    elements = stored(ds)
    for key, elem in list(elements.items()):
        tag = int(key)
        if tag == PIXEL_DATA or tag & 0xFFFF == 0:  # pixels; group lengths
            continue
        part, name, owner = _path_part(tag, elements, ds)
        if part is None:
            continue  # a private creator: the heading of its block, not a value
        inner_creator = creator if creator is not None else owner
        inner_path, inner_label = (*path, part), (*label, name)
        # implicit VR: a public element's VR is the dictionary's, a private one's unknown
        vr = elem.VR or "UN"
        if vr == "UN" and not tag >> 16 & 1:
            vr = dictionary_vr(tag) or "UN"
        items = _items(elem, ds, tag, vr)
        if items is not None:
            for item in items:
                _walk(stats, item, inner_path, inner_label, inner_creator, serial)
            continue
        value = _value(elem, ds, vr)
        if value is not None:
            _count(stats, inner_creator, " > ".join(inner_path), " > ".join(inner_label),
                   vr, value, serial)


def _path_part(tag: int, elements: Mapping[int, Any], ds: Dataset
               ) -> tuple[str | None, str, str | None]:
    """(path component, label, private creator) of an element; None for a creator."""
    group, element = tag >> 16, tag & 0xFFFF
    if not group & 1:
        return (*_public_part(tag), None)
    if 0x0010 <= element <= 0x00FF:
        return None, "", None
    creator_elem = elements.get((group << 16) | (element >> 8)) if element > 0x00FF else None
    creator = "(no private creator)"
    if creator_elem is not None:
        texts = element_strings(creator_elem, ds)
        creator = texts[0].strip() if texts and texts[0].strip() else "(empty private creator)"
    part = f"({group:04X},xx{element & 0xFF:02X})" if element > 0x00FF else format_tag(tag)
    return part, _private_name(tag, creator) or part, creator


@functools.lru_cache(maxsize=1 << 14)
def _public_part(tag: int) -> tuple[str, str]:
    """(tag, keyword) of a public element, looked up once per tag."""
    return format_tag(tag), keyword_for_tag(tag) or format_tag(tag)


@functools.lru_cache(maxsize=4096)
def _private_name(tag: int, creator: str) -> str | None:
    """What pydicom's private dictionary calls an element of a creator's block."""
    try:
        return get_private_entry(tag, creator)[2] or None
    except KeyError:
        return None


def _items(elem: DataElement | RawDataElement, ds: Dataset, tag: int,
           vr: str) -> list[Dataset] | None:
    """The items of a sequence (also a private one read without its VR), else None."""
    if vr == "SQ":
        value = elem.value if isinstance(elem, DataElement) else ds[tag].value
        return list(value or ())
    if tag >> 16 & 1:
        items = undeclared_items(elem)
        if items is not None:
            return list(items)
    return None


def _value(elem: DataElement | RawDataElement, ds: Dataset, vr: str) -> str | None:
    """The value of an element as the page shows it, or None when it is not listed.

    Text VRs give their text (values joined with a backslash, as stored), and so do the
    numbers of a private element; a private element of another VR (OB, UN...) is shown
    by size, or as text when its bytes are printable
    (a vendor's text stored as UN or OB is still text a reviewer must read).
    """
    private = elem.tag >> 16 & 1
    raw = elem.value
    if vr in _DECIMAL_VRS and isinstance(raw, bytes):  # ASCII digits: read as stored
        return _cut("\\".join(v.strip(" \x00") for v in raw.decode("latin-1").split("\\")))
    if vr in TEXT_VRS or private and vr in _NUMBER_VRS:
        try:
            value = "\\".join(element_strings(elem, ds))
        except Exception:  # noqa: BLE001 - shown as such, never fatal
            value = "[value that cannot be decoded]"
        return _cut(value)
    if not private:
        return None
    if not isinstance(raw, bytes | bytearray):
        return None  # numbers of a known VR: nothing a reader of text must see
    text = bytes(raw).rstrip(b"\x00 ").decode("latin-1")
    if text and len(text) <= MAX_VALUE_CHARS and all(
            c.isprintable() or c in _PRINTABLE_EXTRA for c in text):
        return text
    return f"[{len(raw)} bytes of {vr or 'UN'} data]"


def _cut(value: str) -> str:
    if len(value) <= MAX_VALUE_CHARS:
        return value
    return f"{value[:MAX_VALUE_CHARS]}… [{len(value) - MAX_VALUE_CHARS} more characters]"


def _count(stats: ReleaseStats, creator: str | None, path: str, label: str, vr: str,
           value: str, serial: int) -> None:
    key = (creator, path)
    attribute = stats.attributes.get(key)
    if attribute is None:
        if len(stats.attributes) >= MAX_ATTRIBUTES:
            stats.untabulated_values += 1  # occurrences, not attributes: no set kept
            return
        attribute = stats.attributes[key] = AttributeStats(
            path, label, vr, creator, TopValues(stats.capacity))
    if attribute.last_file != serial:
        attribute.files += 1
        attribute.last_file = serial
    attribute.values.add(value, serial)


def iter_public(stats: ReleaseStats) -> Iterator[AttributeStats]:
    """The public attributes (no private block on their path), in tag-path order."""
    return iter(sorted((a for a in stats.attributes.values() if a.creator is None),
                       key=lambda a: a.path))


def by_creator(stats: ReleaseStats) -> dict[str, list[AttributeStats]]:
    """Private attributes grouped by the creator of the block their path enters."""
    grouped: dict[str, list[AttributeStats]] = {}
    for attribute in sorted((a for a in stats.attributes.values() if a.creator is not None),
                            key=lambda a: (a.creator or "", a.path)):
        grouped.setdefault(attribute.creator or "", []).append(attribute)
    return grouped
