"""Checking one pair: the input's identifiers looked for everywhere in its output.

The identifiers are what :func:`anonymizer.scrub.collect` finds in the input (the
collection the ``clean`` action works from), and they are looked for with
:meth:`~anonymizer.scrub.Identifiers.find`, the matching ``clean`` uses, in:

- every text value of the output at every depth, decoded with its character set:
  standard elements, private elements (and private values read without a VR), file meta;
- the output's path relative to OUT;
- the file's bytes read as text (:mod:`anonymizer.verify.raw`): what the element walk
  already found there is not reported twice, only what it did not see;
- the text OCR reads in the pixels, where the profile's pixel policy searches that
  class of image (decided from the input, as the run decides).

A date counts when it is one of the input's dates (a shifted date is another date); a
UID when it is one of the input's own (:func:`~anonymizer.scrub.collect` leaves the
standard's UIDs out). A shape that needs no header (e-mail address, URL, telephone
number, SSN, a name after a title) counts when the input has it too: else it is the
tool's own text, such as a pseudonym after ``Mr.``.

An identifier in an element the profile keeps on purpose (its rule is ``keep``: Station
Name under Retain Device Identity, dates under Retain Longitudinal Full Dates) is the
profile's choice, not a residual: it is listed apart (:attr:`PairResult.kept`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, NamedTuple

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from anonymizer import scrub
from anonymizer.elements import element_strings, stored
from anonymizer.engine import judged_vr
from anonymizer.io import ReadResult, read_dataset, read_input
from anonymizer.reasons import safe_reason
from anonymizer.tags import format_tag
from anonymizer.verify import raw
from anonymizer.verify.intent import ProfileIntent
from anonymizer.verify.results import (
    ELEMENT,
    FILE_META,
    PATH,
    PIXELS,
    PRIVATE,
    RAW_BYTES,
    Finding,
    Pair,
    PairResult,
    unchecked,
)

if TYPE_CHECKING:
    from anonymizer.pixels.ocr import TextDetector
    from anonymizer.rules import CompiledProfile

#: VRs whose values are text that can hold a name, an ID, a place or a date.
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_DATE_VRS = frozenset({"DA", "DT"})
#: Private values read as bytes: without a VR, or declared binary, they may still be text.
_OPAQUE_VRS = frozenset({"UN", "OB"})
#: The path is searched as written and with underscores read as spaces: layouts and
#: exports join a name's parts with them, and ``_`` is a word character to the matcher.
_PATH_JOINERS = str.maketrans("_", " ")
#: A decimal number: an ID's digits read in one are chance (Patient ID 6542 in a Pixel
#: Spacing of 0.6542 or 1.6542, bytes read as text).
_DECIMAL = re.compile(r"[+\-]?\d*\.\d+")
_NAME_PARTS = ("surname", "given name", "middle name", "name prefix", "name suffix")


class Value(NamedTuple):
    """One value of a dataset as text, and where it is."""

    where: str
    tag_path: str
    tag: int
    vr: str
    text: str


def values(ds: Dataset, prefix: str = "", where: str = ELEMENT) -> Iterator[Value]:
    """Every value of ``ds`` that can hold an identifier, at every depth, as text.

    Text, date and UID values are decoded with the dataset's character set; private
    values read without a VR (or as OB) as their runs of printable bytes, as
    :mod:`anonymizer.verify.raw` reads a file.
    """
    for key, elem in stored(ds).items():
        tag = int(key)
        place = PRIVATE if tag >> 16 & 1 and where == ELEMENT else where
        tag_path = f"{prefix}{format_tag(tag)}"
        vr = judged_vr(tag, elem.VR)
        items = raw.sequence_items(ds, tag, elem, vr)
        if items is not None:
            for number, item in enumerate(items):
                yield from values(item, f"{tag_path}[{number}].", place)
        elif vr in _OPAQUE_VRS and place == PRIVATE:
            if isinstance(elem.value, bytes):
                for text in raw.text_runs(elem.value):
                    yield Value(place, tag_path, tag, vr, text)
        elif vr in _TEXT_VRS or vr in _DATE_VRS or vr == "UI":
            try:
                texts = element_strings(elem, ds)
            except Exception:  # noqa: BLE001 - undecodable: the raw bytes are read instead
                continue
            for text in texts:
                yield Value(place, tag_path, tag, vr, text)


def header_free(finding: scrub.Finding) -> bool:
    """Whether a finding is a shape that needs no header (e-mail, URL, telephone number,
    SSN, titled name) rather than a value of the file."""
    return finding.identifier is None and finding.kind not in (scrub.DATE, scrub.UID)


def identity(finding: scrub.Finding, matched: str) -> tuple[str, str]:
    """What a finding is an occurrence of: one identifier seen twice has one identity."""
    if finding.identifier is not None:
        return finding.kind, finding.identifier.value
    if finding.date is not None:
        return scrub.DATE, finding.date.date.isoformat()
    return finding.kind, scrub.fold(matched)


def describe(finding: scrub.Finding, matched: str) -> str:
    """The kind of a finding without its value: ``PatientName surname``,
    ``PatientID digits``, ``InstitutionName``, ``date``, ``UID``, ``e-mail``..."""
    if finding.kind == scrub.NAME and finding.identifier is not None:
        return f"{finding.identifier.keyword} {_name_part(finding.identifier.value, matched)}"
    return finding.label


def _name_part(value: str, matched: str) -> str:
    """Which component of a person name ``matched`` is: ``surname``, ``given name``...,
    ``full name`` when it holds several, ``name`` when unsure (a spelling variant)."""
    written = _letters(matched)
    parts = [(position, _letters(component)) for group in value.split("=")
             for position, component in enumerate(group.split("^")[:5])]
    for position, letters in parts:
        if letters and letters == written:
            return _NAME_PARTS[position]
    if sum(1 for _, letters in parts if letters and letters in written) >= 2:
        return "full name"
    return "name"


def _letters(text: str) -> str:
    return "".join(c for c in scrub.fold(text) if c.isalnum())


def _inside_a_number(text: str, finding: scrub.Finding, matched: str) -> bool:
    """Whether an ID found in text read from bytes is part of a decimal number."""
    if finding.kind != scrub.ID:
        return False
    start, end = finding.start, finding.end
    return _DECIMAL.fullmatch(matched) is not None \
        or text[start - 2:start - 1].isdigit() and text[start - 1:start] == "." \
        or text[end:end + 1] in (".", "e", "E") and text[end + 1:end + 2].isdigit()


class _Seen:
    """The findings of one output, and how often the element walk saw each identifier.

    Parameters
    ----------
    output : str
        The output's path relative to OUT (redacted by :meth:`path`).
    identifiers : Identifiers
        The input's.
    source : Dataset
        The input, read again only when the output has a shape that needs no header.
    show_values : bool
        Whether findings carry the text found.
    intent : ProfileIntent or None
        What the profile keeps or writes on purpose (None: nothing is).
    """

    def __init__(self, output: str, identifiers: scrub.Identifiers, source: Dataset,
                 show_values: bool, intent: ProfileIntent | None):
        self.output = output
        self.identifiers = identifiers
        self.source = source
        self.show_values = show_values
        self.intent = intent
        self.findings: list[Finding] = []
        self.kept: list[Finding] = []
        #: identity of an identifier -> times the element walk saw it (what the raw
        #: bytes show beyond that is reported from them)
        self.walked: Counter[tuple[str, str]] = Counter()
        self._shapes: set[tuple[str, str]] | None = None
        self._source_values: dict[str, set[str]] | None = None

    def add(self, where: str, tag_path: str, kind: str, value: str, kept: bool = False) -> None:
        finding = Finding(self.output, where, tag_path, kind,
                          value if self.show_values else None)
        (self.kept if kept else self.findings).append(finding)

    def found(self, text: str) -> Iterator[tuple[scrub.Finding, str]]:
        """The findings in ``text`` that are identifiers of the input, with what they matched."""
        for finding in self.identifiers.find(text):
            matched = text[finding.start:finding.end]
            if self._residual(finding, matched):
                yield finding, matched

    def _residual(self, finding: scrub.Finding, matched: str) -> bool:
        if finding.kind == scrub.DATE:
            return finding.date is not None and finding.date.date in self.identifiers.dates
        if header_free(finding):
            return identity(finding, matched) in self._input_shapes()
        return True

    def _input_values(self) -> Iterator[Value]:
        meta = getattr(self.source, "file_meta", None)
        return chain(values(meta, "", FILE_META) if meta is not None else (),
                     values(self.source))

    def _input_shapes(self) -> set[tuple[str, str]]:
        """The identities of the header-free shapes in the input's own values."""
        if self._shapes is None:
            self._shapes = {identity(f, value.text[f.start:f.end])
                            for value in self._input_values()
                            if value.vr in _TEXT_VRS or value.vr in _OPAQUE_VRS
                            for f in self.identifiers.find(value.text) if header_free(f)}
        return self._shapes

    def _kept_as_is(self, value: Value) -> bool:
        """Whether the profile keeps this element and it holds the input's own value there."""
        if self.intent is None or value.where == PRIVATE \
                or not self.intent.keeps(value.tag, value.vr):
            return False
        if self._source_values is None:
            self._source_values = {}
            for source in self._input_values():
                self._source_values.setdefault(source.tag_path, set()).add(source.text)
        return value.text in self._source_values.get(value.tag_path, ())

    def _written(self, text: str, start: int, end: int) -> bool:
        return self.intent is not None and self.intent.wrote(text, start, end)

    def value(self, value: Value) -> None:
        """Every identifier of the input in one value of the output."""
        vr, text = value.vr, value.text
        if vr == "UI":
            uid = text.strip("\x00 ")
            if uid in self.identifiers.uids:
                self.add(value.where, value.tag_path, "UID", uid, self._kept(value, text))
                self.walked[(scrub.UID, scrub.fold(uid))] += 1
            return
        if vr in _DATE_VRS:
            written = text.strip()
            day = scrub.dicom_date(written[:8])
            if day is not None and day in self.identifiers.dates:
                kind = "PatientBirthDate" if day in self.identifiers.birth_dates \
                    else keyword_for_tag(value.tag) or "date"
                self.add(value.where, value.tag_path, kind, written, self._kept(value, text))
                if len(written) == 8:  # as the bytes read it (a DT has digits after its date)
                    self.walked[(scrub.DATE, day.isoformat())] += 1
            return
        for finding, matched in self.found(text):
            if vr in _OPAQUE_VRS and _inside_a_number(text, finding, matched):
                continue
            kept = self._written(text, finding.start, finding.end) or self._kept_as_is(value)
            self.add(value.where, value.tag_path, describe(finding, matched), matched, kept)
            self.walked[identity(finding, matched)] += 1

    def _kept(self, value: Value, text: str) -> bool:
        """A whole value kept by the profile, or the tool's own (a dummy date)."""
        stripped = text.strip("\x00 ")
        return self._kept_as_is(value) or self._written(stripped, 0, len(stripped))

    def path(self, relative: str) -> None:
        """Identifiers in the output's path; called first, as it names the output.

        The path is read with ``_`` as spaces, then as written for what that reading did
        not find (no span reported twice). Unless values are shown, each identifier that
        is not the tool's own text becomes ``[kind]`` in the name every finding of this
        output gives (naming the file would disclose it).
        """
        spans: list[tuple[int, int, str, bool]] = []
        for text in (relative.translate(_PATH_JOINERS), relative):
            for finding, matched in self.found(text):
                start, end = finding.start, finding.end
                if not any(start < other_end and other_start < end
                           for other_start, other_end, _, _ in spans):
                    spans.append((start, end, describe(finding, matched),
                                  self._written(text, start, end)))
        spans.sort()
        if not self.show_values:
            parts, position = [], 0
            for start, end, kind, written in spans:
                if not written:
                    parts += [relative[position:start], f"[{kind}]"]
                    position = end
            self.output = "".join(parts) + relative[position:]
        for start, end, kind, written in spans:
            self.add(PATH, "", kind, relative[start:end], written)

    def raw_bytes(self, runs: Iterable[str]) -> None:
        """Identifiers in the file's bytes beyond what the element walk saw: for each
        identifier, the occurrences past the number the walk counted."""
        occurrences: dict[tuple[str, str], list[tuple[str, str, bool]]] = {}
        for text in runs:
            for finding, matched in self.found(text):
                if _inside_a_number(text, finding, matched):
                    continue
                occurrences.setdefault(identity(finding, matched), []).append(
                    (describe(finding, matched), matched,
                     self._written(text, finding.start, finding.end)))
        for key, found in occurrences.items():
            for kind, matched, written in found[self.walked[key]:]:
                self.add(RAW_BYTES, "", kind, matched, written)

    def pixel_text(self, text: str, normalise: Callable[[str], str]) -> None:
        """Text OCR read in the pixels: reported when it holds an identifier of the
        input as the pixel stage judges it (:meth:`~anonymizer.scrub.Identifiers.in_ocr_text`)."""
        if not self.identifiers.in_ocr_text(text, normalise):
            return
        found = self.identifiers.find(text)
        kinds = [describe(f, m) for f, m in self.found(text)] \
            or [f.label for f in found] or ["identifier (as OCR reads it)"]
        for kind in dict.fromkeys(kinds):
            self.add(PIXELS, "", kind, text)


class Checker:
    """Checks pairs against one profile.

    Parameters
    ----------
    profile : CompiledProfile or None
        Its pixel policy decides which images have their pixels read by OCR, and its
        ``keep`` rules which elements keep identifiers on purpose. None: pixels are not
        read and every identifier counts.
    show_values : bool
        Findings carry the text found (PHI).
    detector : TextDetector, optional
        The OCR engine; made on first use (once per checker) when not given.
    """

    def __init__(self, profile: CompiledProfile | None = None, show_values: bool = False,
                 detector: TextDetector | None = None):
        self.profile = profile
        self.policy = profile.settings.pixels if profile is not None else None
        self.intent = ProfileIntent(profile) if profile is not None else None
        self.show_values = show_values
        self.detector = detector

    def check(self, pair: Pair) -> PairResult:
        """Every identifier of the pair's input in its output; never raises for a file."""
        if pair.input_path is None:
            return unchecked(pair, pair.problem or "input not found", self.show_values)
        try:
            source = read_dataset(pair.input_path)
        except Exception as exc:  # noqa: BLE001 - one line, without values
            return unchecked(pair, safe_reason("input", exc), self.show_values)
        try:
            identifiers = scrub.collect(source.dataset)
            if pair.problem is not None:  # the output is not there: its name is still read
                seen = _Seen(pair.output, identifiers, source.dataset, self.show_values,
                             self.intent)
                seen.path(pair.output)
                return _result(seen, pair.problem, 0)
            search = self.policy is not None and self.policy.scans(source.dataset)
            return self._check_output(pair, identifiers, source.dataset, search)
        finally:
            source.close()

    def _check_output(self, pair: Pair, identifiers: scrub.Identifiers, source: Dataset,
                      search: bool) -> PairResult:
        seen = _Seen(pair.output, identifiers, source, self.show_values, self.intent)
        seen.path(pair.output)
        error = None
        frames = 0
        try:
            content = read_input(pair.output_path)
        except OSError as exc:
            return _result(seen, safe_reason("output", exc), frames)
        read: ReadResult | None = None
        try:
            read = read_dataset(pair.output_path, content)
        except Exception as exc:  # noqa: BLE001 - its bytes are still read below
            error = safe_reason("output", exc)
        try:
            skipped: list[tuple[int, int]] = []
            if read is not None:
                ds = read.dataset
                meta = getattr(ds, "file_meta", None)
                for value in chain(values(meta, "", FILE_META) if meta is not None else (),
                                   values(ds)):
                    seen.value(value)
                skipped = raw.bulk_ranges(ds, read.splice.spans if read.splice else None,
                                          content.data)
            seen.raw_bytes(raw.file_text_runs(pair.output_path, content.data, skipped))
            if read is not None and search:
                try:
                    frames = self._check_pixels(read.dataset, seen)
                except Exception as exc:  # noqa: BLE001 - undecodable pixels: not checked
                    error = safe_reason("pixels", exc)
        finally:
            if read is not None:
                read.close()
        return _result(seen, error, frames)

    def _check_pixels(self, ds: Dataset, seen: _Seen) -> int:
        """OCR the frames the policy samples; returns how many were read."""
        from anonymizer.pixels import frames
        from anonymizer.pixels.ocr import default_detector, normalise_ocr_text

        assert self.policy is not None
        count = frames.frame_count(ds)
        if not count:
            return 0
        if self.detector is None:
            self.detector = default_detector()
        searched = 0
        for _, image in frames.display_frames(
                ds, frames.sampled_frames(count, self.policy.every_nth)):
            searched += 1
            for box in self.detector.detect(image):
                seen.pixel_text(box.text, normalise_ocr_text)
        return searched


def _result(seen: _Seen, error: str | None, frames: int) -> PairResult:
    return PairResult(seen.output, tuple(seen.findings), error, frames, tuple(seen.kept))
