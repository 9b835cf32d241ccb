"""Finding identifiers in text: what identifies this patient, and where does it occur?

The one place that decides which values of a dataset identify someone
(:func:`collect`) and that recognises them in free text in the forms people write
them (:meth:`Identifiers.find`). The ``clean`` action replaces what is found; a
verification of an output asks the same two questions of the input.

What is found, by recogniser (``Finding.kind``):

- ``name``: every component of every PN value of the dataset, at any depth (patient,
  physicians, observers, SR PNAME items, private PN), matched case-insensitively with
  diacritics folded both ways (Müller / Muller / Mueller), on Unicode word boundaries,
  components in any order, compound surnames whole, joined and by part, initials next
  to a surname taken along. Also any capitalised name led by a title or a relation
  (``Dr Smith``, ``Mrs. Jones``, ``wife Anna``), which needs no header.
- ``id``: the values of the ID attributes of PS3.15 Table E.1-1 at any depth
  (Patient ID, Other Patient IDs, Accession Number, Study ID, procedure step IDs,
  Admission ID, ...): as written, and their digits with separators ignored, leading
  zeros optional and any prefix glued on (``MRN 0012-345-678``).
- ``place``: institution names, addresses, departments, stations, locations, issuers.
- ``phone``: the header's telephone numbers (digits, any separators), and
  telephone-number shapes, e-mail addresses (``email``), URLs (``url``), US SSN shapes
  (``ssn``), which need no header.
- ``date``: any calendar date with a four-digit year (Y-M-D, D/M/Y, M/D/Y, compact
  YYYYMMDD, English month names and abbreviations), and the file's own dates also
  with two-digit years.
- ``uid``: a UID the file holds, written into text.

What cannot be found by matching: free text naming a person, place or date that no
header of the file names and that none of the shapes above describes (a surname
alone, a nickname, "the patient's brother"). A release reviewer must read such text.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from anonymizer import standard
from anonymizer.elements import element_strings, stored, undeclared_items
from anonymizer.tags import PATIENT_BIRTH_DATE, VALID_VRS, dictionary_vr

# --------------------------------------------------------------------------------------
# What counts as an identifier of a dataset
# --------------------------------------------------------------------------------------

NAME, ID, PLACE, PHONE, DATE, EMAIL, URL, SSN, UID = (
    "name", "id", "place", "phone", "date", "email", "url", "ssn", "uid")

_ID_KEYWORD = re.compile(r"(ID|IDs|Number|Numbers|Identifier|Locator)$")
_PHONE_KEYWORD = re.compile(r"(TelephoneNumbers|PhoneNumber|TelecomInformation)$")
_PLACE_KEYWORD = re.compile(r"(Address|Location|Residence|StationName|InstitutionName|"
                            r"DepartmentName|Organization)$|^IssuerOf")
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT"})


@functools.cache
def _table_tags() -> dict[int, tuple[str, str]]:
    """Tag -> (kind, keyword) for the Table E.1-1 attributes whose values identify."""
    found: dict[int, tuple[str, str]] = {}
    for row in standard.confidentiality_rows():
        tag = row.tag_int
        if tag is None or dictionary_vr(tag) not in _TEXT_VRS:
            continue
        keyword = row.keyword
        if _PHONE_KEYWORD.search(keyword):
            found[tag] = (PHONE, keyword)
        elif _PLACE_KEYWORD.search(keyword):
            found[tag] = (PLACE, keyword)
        elif _ID_KEYWORD.search(keyword):
            found[tag] = (ID, keyword)
    return found


class Identifier(NamedTuple):
    """One identifying value of a dataset (PHI: held in memory only, never logged).

    ``kind`` is ``name``, ``id``, ``place`` or ``phone``; ``keyword`` the attribute
    it came from (``"PatientName"``; ``"(0009,1010)"`` for a private one).
    """

    kind: str
    keyword: str
    value: str


class Identifiers:
    """Everything that identifies the subject of one dataset, from every depth.

    ``values`` holds names, IDs, places and telephone numbers; :attr:`dates` every date
    (DA, and the date of DT) of the file; :attr:`uids` every non-standard UID. Dates
    and UIDs are kept as the encoded values and read only when a text needs them.
    """

    __slots__ = ("values", "_dates_raw", "_birth_raw", "_uids_raw", "_matcher", "_read",
                 "_ocr")

    def __init__(self, values: frozenset[Identifier] = frozenset(),
                 dates: frozenset[bytes] = frozenset(), birth_dates: frozenset[bytes] = frozenset(),
                 uids: frozenset[bytes] = frozenset()):
        self.values = values
        self._dates_raw = dates
        self._birth_raw = birth_dates
        self._uids_raw = uids
        self._matcher: _Matcher | None = None
        self._read: tuple[frozenset[dt.date], frozenset[dt.date], frozenset[str]] | None = None
        self._ocr: tuple[Callable[[str], str], set[str], set[str]] | None = None

    @property
    def dates(self) -> frozenset[dt.date]:
        """Every valid date of the file."""
        return self._values_read()[0]

    @property
    def birth_dates(self) -> frozenset[dt.date]:
        """The patient's birth date(s)."""
        return self._values_read()[1]

    @property
    def uids(self) -> frozenset[str]:
        """Every UID of the file but the standard's own (``1.2.840.10008.*``)."""
        return self._values_read()[2]

    def _values_read(self) -> tuple[frozenset[dt.date], frozenset[dt.date], frozenset[str]]:
        if self._read is None:
            uids = {u for raw in self._uids_raw for u in _split(raw)
                    if u and not u.startswith("1.2.840.10008.")}
            self._read = (_parse_dates(self._dates_raw), _parse_dates(self._birth_raw),
                          frozenset(uids))
        return self._read

    def find(self, text: str) -> list[Finding]:
        """Every identifier in ``text``: non-overlapping findings, left to right."""
        matcher = self._matcher
        if matcher is None:
            matcher = self._matcher = _compiled(self.values)
        return matcher.find(text, self)

    def in_ocr_text(self, text: str, normalise: Callable[[str], str]) -> bool:
        """Whether text read by OCR from pixels holds an identifier of the file.

        Anything :meth:`find` finds counts, and also what OCR garbles spaces and
        separators out of: ``normalise`` (the OCR engine's folding of its own confusions,
        e.g. O read as 0, spaces dropped) applied to both sides, a name part of 3+
        letters, an ID of 4+ characters, or the digits of an ID, a telephone number or a
        date of the file (YYYYMMDD, DDMMYYYY, MMDDYYYY, two-digit years too) inside the
        text's digits.
        """
        if self.find(text):
            return True
        compact = normalise(text)
        digits = re.sub(r"\D", "", compact)
        if self._ocr is None or self._ocr[0] is not normalise:  # once per file, not per box
            self._ocr = (normalise, *self._ocr_forms(normalise))
        _, words, numbers = self._ocr
        return any(form in compact for form in words) \
            or bool(digits) and any(form in digits for form in numbers)

    def _ocr_forms(self, normalise: Callable[[str], str]) -> tuple[set[str], set[str]]:
        words: set[str] = set()
        numbers: set[str] = set()
        for value in self.values:
            if value.kind == NAME:
                words.update(normalise(t) for t in _person(value).tokens if len(t) >= 3)
            elif value.kind in (ID, PHONE):
                core = re.sub(r"\D", "", value.value).lstrip("0")
                if len(core) >= (7 if value.kind == PHONE else 4):
                    numbers.add(core)
                if len(value.value) >= 4:
                    words.add(normalise(value.value))
        for day in self.dates:
            numbers.update({day.strftime(f) for f in ("%Y%m%d", "%d%m%Y", "%m%d%Y", "%d%m%y",
                                                      "%m%d%y", "%y%m%d")})
        return {w for w in words if len(w) >= 3}, numbers


def _split(raw: bytes) -> list[str]:
    return [v.strip(" \x00") for v in raw.decode("latin-1").split("\\")]


def collect(ds: Dataset) -> Identifiers:
    """The identifiers of ``ds`` and of every sequence item in it, at any depth.

    Must be called before anything in ``ds`` changes (the engine calls it first).
    """
    values: set[Identifier] = set()
    dates: set[bytes] = set()
    birth: set[bytes] = set()
    uids: set[bytes] = set()
    _collect_into(ds, values, dates, birth, uids)
    return Identifiers(frozenset(values), frozenset(dates), frozenset(birth), frozenset(uids))


_SEQUENCE = ("SQ", "")
_DATE_VALUE = ("DA", "")
_UID_VALUE = ("UI", "")
_UNDECLARED = ("UN", "")  # a private element without its VR: perhaps a sequence
_UNSEEN = ("", "")
#: (tag, VR as stored) -> what the element holds for :func:`collect`, or None
_CATEGORIES: dict[tuple[int, str | None], tuple[str, str] | None] = {}


def _category(tag: int, stored_vr: str | None) -> tuple[str, str] | None:
    private = tag >> 16 & 1
    vr = stored_vr
    if vr not in VALID_VRS or vr == "UN":
        if private:
            return _UNDECLARED
        vr = dictionary_vr(tag)
    if vr == "SQ":
        return _SEQUENCE
    if vr == "PN":
        return (NAME, _keyword(tag))
    if vr in ("DA", "DT"):
        return _DATE_VALUE
    if vr == "UI":
        return _UID_VALUE
    return None if private else _table_tags().get(tag)


def _collect_into(ds: Dataset, values: set[Identifier], dates: set[bytes],
                  birth: set[bytes], uids: set[bytes]) -> None:
    categories = _CATEGORIES
    for key, elem in stored(ds).items():
        tag = int(key)
        category_key = (tag, elem.VR)
        category = categories.get(category_key, _UNSEEN)
        if category is _UNSEEN:
            category = _category(tag, elem.VR)
            if len(categories) < 1 << 16:
                categories[category_key] = category
        if category is None:
            continue
        if category is _SEQUENCE or category is _UNDECLARED:
            items = undeclared_items(elem) if category is _UNDECLARED else \
                elem.value if isinstance(elem, DataElement) else ds[tag].value
            for item in items or ():
                _collect_into(item, values, dates, birth, uids)
            continue
        if category is _UID_VALUE or category is _DATE_VALUE:
            # ASCII in every character set: kept as bytes, read only if a text needs them
            value = elem.value
            written = value if isinstance(value, bytes) else "\\".join(
                element_strings(elem, ds)).encode("ascii", "replace")
            if category is _UID_VALUE:
                uids.add(written)
            else:
                dates.add(written)
                if tag == PATIENT_BIRTH_DATE:
                    birth.add(written)
            continue
        try:
            texts = element_strings(elem, ds)
        except Exception:  # noqa: BLE001 - a value pydicom cannot decode identifies nothing here
            continue
        kind, keyword = category
        for text in texts:
            text = text.strip(" \x00")
            if text:
                values.add(Identifier(kind, keyword, text))


def _keyword(tag: int) -> str:
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _parse_dates(written: frozenset[bytes]) -> frozenset[dt.date]:
    days = (dicom_date(v[:8]) for raw in written for v in _split(raw))
    return frozenset(d for d in days if d is not None)


def dicom_date(text: str) -> dt.date | None:
    """The date a DA value ``YYYYMMDD`` names, or None when it names none."""
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------
# Findings and replacement
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DateParts:
    """Where the day, month and year of a date written in text are, to write another
    date in the same form: ``parts`` are (start, end, role) relative to the match, role
    ``d``, ``m`` (number), ``b`` (month name) or ``y``."""

    date: dt.date
    parts: tuple[tuple[int, int, str], ...]


@dataclass(frozen=True)
class Finding:
    """An identifier found in text: ``text[start:end]``.

    ``label`` says what it is without saying its value (``"PatientName"``,
    ``"PatientID digits"``, ``"date"``, ``"e-mail"``); ``identifier`` is the header value
    it matched (None for the recognisers that need no header).
    """

    start: int
    end: int
    kind: str
    label: str
    identifier: Identifier | None = None
    date: DateParts | None = None
    #: for a name: every PN value it may belong to (a token two people share)
    candidates: tuple[Identifier, ...] = field(default=(), compare=False, repr=False)


def replace_findings(text: str, findings: list[Finding],
                     replacement: Callable[[Finding, str], str]) -> str:
    """``text`` with every finding replaced by ``replacement(finding, matched_text)``."""
    out, position = [], 0
    for finding in findings:
        out.append(text[position:finding.start])
        out.append(replacement(finding, text[finding.start:finding.end]))
        position = finding.end
    out.append(text[position:])
    return "".join(out)


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")


def render_date(matched: str, parts: DateParts, new: dt.date) -> str:
    """Write ``new`` in the form of the date ``matched`` (same order, separators,
    padding, year width, month-name length and case)."""
    out, position = [], 0
    for start, end, role in parts.parts:
        out.append(matched[position:start])
        original = matched[start:end]
        if role == "y":
            out.append(f"{new.year:04d}" if len(original) == 4 else f"{new.year % 100:02d}")
        elif role == "b":
            name = _MONTHS[new.month - 1]
            if original.lower() not in _MONTHS:
                name = name[:3]  # an abbreviation stays one
            if original.isupper():
                name = name.upper()
            elif original[:1].isupper():
                name = name.capitalize()
            out.append(name)
        else:
            number = new.day if role == "d" else new.month
            out.append(f"{number:02d}" if len(original) == 2 else str(number))
        position = end
    out.append(matched[position:])
    return "".join(out)


# --------------------------------------------------------------------------------------
# Folding: case and diacritics, with a map back to the original positions
# --------------------------------------------------------------------------------------

_SPECIAL_FOLDS = {"ø": "o", "ł": "l", "đ": "d", "ð": "d", "æ": "ae", "œ": "oe", "þ": "th",
                  "ı": "i", "ß": "ss"}
_GERMAN = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"}


@functools.lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    lower = char.lower()
    if lower in _SPECIAL_FOLDS:
        return _SPECIAL_FOLDS[lower]
    decomposed = unicodedata.normalize("NFKD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def fold(text: str) -> str:
    """Lower case without diacritics (``Müller`` -> ``muller``, ``ß`` -> ``ss``)."""
    if text.isascii():
        return text.lower()
    return "".join(_fold_char(c) for c in text)


def _fold_with_positions(text: str) -> tuple[str, list[int] | None]:
    """The folded text and, unless it is ASCII (same positions), for each folded
    character the position of the original character it came from."""
    if text.isascii():
        return text.lower(), None
    out: list[str] = []
    positions: list[int] = []
    for index, char in enumerate(text):
        folded = _fold_char(char)
        out.append(folded)
        positions.extend([index] * len(folded))
    return "".join(out), positions


def _original_span(text: str, positions: list[int] | None, start: int,
                   end: int) -> tuple[int, int]:
    if positions is None:
        return start, end
    original_start = positions[start]
    original_end = positions[end - 1] + 1
    while original_end < len(text) and not _fold_char(text[original_end]):
        original_end += 1  # a combining mark after the last letter belongs to it
    return original_start, original_end


# --------------------------------------------------------------------------------------
# Recognisers compiled for one set of header identifiers
# --------------------------------------------------------------------------------------

#: Name particles and parts too short to stand alone: they are matched only inside the
#: whole compound name (``van der Berg``), never on their own.
_PARTICLES = frozenset({
    "al", "bin", "bint", "da", "das", "de", "del", "della", "der", "des", "di", "do", "dos",
    "du", "el", "ibn", "la", "le", "los", "mac", "mc", "st", "te", "ten", "ter", "van",
    "von", "y", "zu", "jr", "sr", "ii", "iii", "iv",
})
_MIN_PART = 3  # a part of a compound name (split at hyphens and spaces)
_MIN_COMPONENT = 2  # a whole name component (Li, Wu, Ng are surnames)
_NAME_SPLIT = re.compile(r"[\s\-'’.]+")
_NO_SPACE_SCRIPTS = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\u3040-\u30ff]")
_NAME_GLUE_CLASS = r"[\s\-'’]"  # what may stand between the parts of a name, or not
_NAME_GLUE = re.compile(_NAME_GLUE_CLASS + "+")


def _name_variants(token: str) -> set[str]:
    """Folded spellings of one name token: as written, with umlauts expanded
    (Müller -> mueller) and, for a spelling with ae/oe/ue, contracted (Mueller ->
    muller, which is how Müller folds)."""
    variants = {fold(token)}
    lowered = token.lower()
    if any(c in lowered for c in _GERMAN):
        variants.add(fold("".join(_GERMAN.get(c, c) for c in lowered)))
    plain = fold(token)
    contracted = re.sub(r"(?<=[a-z])([aou])e", r"\1", plain)
    if contracted != plain and len(contracted) >= 4:
        variants.add(contracted)
    return variants


def _flexible(folded: str) -> str:
    """A regex of a folded name in which hyphens, spaces and apostrophes are
    interchangeable or absent (Garcia-Lopez, Garcia Lopez, GarciaLopez)."""
    return (_NAME_GLUE_CLASS + "*").join(re.escape(p) for p in _name_parts(folded))


def _name_parts(folded: str) -> list[str]:
    return [p for p in _NAME_SPLIT.split(folded) if p]


@dataclass(frozen=True)
class _Person:
    """The matching forms of one PN value."""

    identifier: Identifier
    tokens: frozenset[str]  # folded forms that stand alone as names
    initials: frozenset[str]  # upper-case initials of given and middle names


def _person(identifier: Identifier) -> _Person:
    tokens: set[str] = set()
    initials: set[str] = set()
    for group in identifier.value.split("="):
        components = group.split("^")
        if len(components) == 1:  # not in DICOM form: "John Doe", "Doe, John"
            components = [c for c in re.split(r"[\s,]+", group) if c]
            named = components
        else:
            named = components[:3]  # family, given, middle: prefix and suffix are titles
        for position, component in enumerate(named):
            component = component.strip(" ,.")
            if not component:
                continue
            parts = _name_parts(component)
            if position > 0 or len(components) == 1:
                initials.update(p[0].upper() for p in parts if p[0].isalpha())
            if len(parts) == 1 and len(component.strip(".")) < _MIN_COMPONENT \
                    and not _NO_SPACE_SCRIPTS.search(component):
                continue  # an initial: only taken along next to a surname
            if fold(component) not in _PARTICLES:
                tokens.update(_name_variants(component))
            if len(parts) > 1:
                for part in parts:
                    if (len(part) >= _MIN_PART or _NO_SPACE_SCRIPTS.search(part)) \
                            and fold(part) not in _PARTICLES:
                        tokens.update(_name_variants(part))
    tokens = {t for t in tokens if any(c.isalpha() for c in t)}
    return _Person(identifier, frozenset(tokens), frozenset(initials))


_SEPARATORS = r"[\s\-./]?"  # between the digits of an ID
_PHONE_SEPARATORS = r"[\s\-./()]*"  # between the digits of a telephone number
_ID_DIGITS = re.compile(r"\D*?(\d[\d\s\-./()]*)")


@dataclass(frozen=True)
class _IdForm:
    """One written form of an ID or telephone number: ``pattern`` is its regex (on the
    original text); ``digits`` (the digits form: its digits, leading zeros dropped) or
    ``literal`` (the value as written, lower case) say the same without a regex."""

    identifier: Identifier
    pattern: str
    digits: str = ""
    literal: str = ""

    @property
    def label(self) -> str:
        """What a finding of this form says it is: ``PatientID`` or ``PatientID digits``."""
        keyword = self.identifier.keyword
        return f"{keyword} digits" if self.digits else keyword

    def ends(self, text: str, lowered: str, run_starts: list[int]) -> Iterator[tuple[int, int]]:
        """(start, end) of every position of ASCII ``text`` where ``pattern`` matches."""
        if self.digits:
            glue = _PHONE_GLUE if self.identifier.kind == PHONE else _ID_GLUE
            for start in run_starts:
                end = _digits_end(text, start, self.digits, glue, self.identifier.kind == PHONE)
                if end is not None:
                    yield start, end
            return
        literal, size, length = self.literal, len(self.literal), len(text)
        start = lowered.find(literal)
        while start >= 0:
            end = start + size
            if (start == 0 or text[start - 1] not in _ASCII_ALNUM) \
                    and (end == length or text[end] not in _ASCII_ALNUM):
                yield start, end
            start = lowered.find(literal, start + 1)


def _id_forms(identifier: Identifier) -> list[_IdForm]:
    """The forms of one ID or telephone number, the digits form first."""
    value = identifier.value
    forms = []
    digits_form = _ID_DIGITS.fullmatch(value)
    if digits_form is not None:
        core = re.sub(r"\D", "", digits_form.group(1)).lstrip("0")
        least = 7 if identifier.kind == PHONE else 4
        if len(core) >= least:
            glue = _PHONE_SEPARATORS if identifier.kind == PHONE else _SEPARATORS
            forms.append(_IdForm(
                identifier,
                r"(?<!\d)(?:0" + glue + r")*" + glue.join(core) + r"(?!\d)", digits=core))
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    if len(value) >= 4 or (len(value) >= 3 and has_digit and has_alpha):
        # case-insensitive only where there are letters: the flag makes compiling the
        # pattern (beyond ASCII) three times slower
        literal = f"(?i:{re.escape(value)})" if has_alpha else re.escape(value)
        forms.append(_IdForm(identifier,
                             r"(?<![0-9A-Za-z])" + literal + r"(?![0-9A-Za-z])",
                             literal=value.lower()))
    return forms


#: What the regexes' classes match among ASCII characters, taken from the regexes.
_ASCII = [chr(code) for code in range(128)]
_ASCII_ALNUM = frozenset(c for c in _ASCII if re.fullmatch(r"[0-9A-Za-z]", c))
_ASCII_DIGITS = frozenset(c for c in _ASCII if re.fullmatch(r"\d", c))
_ID_GLUE = frozenset(c for c in _ASCII if re.fullmatch(_SEPARATORS, c))
_PHONE_GLUE = frozenset(c for c in _ASCII if re.fullmatch(_PHONE_SEPARATORS, c))
_DIGIT_RUN_START = re.compile(r"(?<!\d)\d")


def _reads_as_ascii(text: str) -> bool:
    """Whether the forms of ASCII IDs match ``text`` as they would match it with every
    character beyond ASCII replaced by one none of them can match (``é``, ``ü``, ``٣``
    can not be part of an ID or its boundary digits; ``\u00a0`` and ``\u212a`` can)."""
    return text.isascii() or not any(_reaches_ascii(c) for c in set(text) if not c.isascii())


@functools.lru_cache(maxsize=4096)
def _reaches_ascii(char: str) -> bool:
    """Whether a regex reads ``char`` as a digit, a space, or (ignoring case) an ASCII
    letter, asked of the regex engine itself; or its lower case is longer (``\u0130``),
    which would shift the positions of a lowered text."""
    return len(char.lower()) != 1 or re.fullmatch(r"[\d\s]|(?i:[a-z])", char) is not None


def _digits_end(text: str, start: int, digits: str, glue: frozenset[str],
                any_glue: bool) -> int | None:
    r"""Where the digits form ``(?<!\d)(?:0G)*d1Gd2...dn(?!\d)`` matching at ``start``
    (a digit not after a digit) ends, or None; ``G`` is one optional ``glue`` character,
    or any run of them with ``any_glue``. The regex cannot backtrack into another match:
    ``d1`` is not ``0`` and glue is never a digit, so the greedy reading is the only one."""
    length = len(text)
    position = start
    while position < length and text[position] == "0":
        position = _after_glue(text, position + 1, glue, any_glue)
    for number, digit in enumerate(digits):
        if number:
            position = _after_glue(text, position, glue, any_glue)
        if position >= length or text[position] != digit:
            return None
        position += 1
    if position < length and text[position] in _ASCII_DIGITS:
        return None
    return position


def _after_glue(text: str, position: int, glue: frozenset[str], any_glue: bool) -> int:
    length = len(text)
    while position < length and text[position] in glue:
        position += 1
        if not any_glue:
            break
    return position


class _IdRecogniser:
    r"""The IDs and telephone numbers of one set of header values, found in text.

    The regex alternation of their forms costs Python's regex compiler milliseconds per
    set: more than de-identifying a file, and a radiography or mammography export brings
    a new set every one to four files. So ASCII text is searched without it: every
    position where each form matches, and from left to right the first form (in the
    alternation's order) at the leftmost such position, exactly what the regex finds.
    Values beyond ASCII, and text with a character beyond ASCII that ``\s``, ``\d`` or
    case folding reach (a non-ASCII space or digit, the Kelvin sign, the long s), are
    searched with each form's own regex, compiled when first needed.
    """

    def __init__(self, forms: tuple[_IdForm, ...]):
        self.forms = forms
        self._plain = all(f.identifier.value.isascii() for f in forms)

    def finditer(self, text: str) -> Iterator[tuple[int, int, _IdForm]]:
        """(start, end, form) of what the alternation of the forms finds in ``text``."""
        if self._plain and _reads_as_ascii(text):
            lowered = text.lower()
            run_starts = [m.start() for m in _DIGIT_RUN_START.finditer(text)]
            matches = [(start, order, end) for order, form in enumerate(self.forms)
                       for start, end in form.ends(text, lowered, run_starts)]
        else:
            matches = [(start, order, end) for order, form in enumerate(self.forms)
                       for start, end in _every_match(form.pattern, text)]
        for start, end, order in _leftmost_first(matches):
            yield start, end, self.forms[order]


@dataclass(frozen=True)
class _PlaceForm:
    """A place as written: ``pattern`` is its regex (on the folded text); it can match
    only a text holding each of ``words`` once its apostrophes are dropped."""

    identifier: Identifier
    pattern: str
    words: tuple[str, ...]


def _place_forms(identifier: Identifier) -> list[_PlaceForm]:
    """The forms of a place: whole, and each line of an address."""
    value = fold(identifier.value)
    pieces = {value}
    if "Address" in identifier.keyword or "^" in value or "\n" in value:
        pieces.update(p.strip() for p in re.split(r"[\^\r\n,;]+", value))
    forms = []
    for piece in pieces:
        words = [w for w in re.split(r"[\s^.,]+", piece) if w]
        if not words or len(piece) < 3:
            continue
        pattern = r"[\s,.^]*".join(re.escape(w).replace("'", "'?") for w in words)
        forms.append(_PlaceForm(identifier, r"(?<!\w)" + pattern + r"(?!\w)",
                                tuple(w.replace("'", "") for w in words)))
    return forms


class _PlaceRecogniser:
    """The places of one set of header values, found in folded text.

    Each patient brings a new set (an address), so no alternation of the set is compiled:
    each form's own regex is, the first time a text holds all its words, and is kept for
    the next patients of the same institution. What they find is combined as the
    alternation of the set would find it.
    """

    def __init__(self, forms: tuple[_PlaceForm, ...]):
        self.forms = forms

    def finditer(self, folded: str) -> Iterator[tuple[int, int, _PlaceForm]]:
        """(start, end, form) of what the alternation of the forms finds in ``folded``."""
        bare = folded.replace("'", "")
        matches = [(start, order, end) for order, form in enumerate(self.forms)
                   if all(word in bare for word in form.words)
                   for start, end in _every_match(form.pattern, folded)]
        for start, end, order in _leftmost_first(matches):
            yield start, end, self.forms[order]


@functools.lru_cache(maxsize=1024)
def _form_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _every_match(pattern: str, text: str) -> Iterator[tuple[int, int]]:
    """(start, end) at every position of ``text`` where ``pattern`` matches, overlapping."""
    regex = _form_regex(pattern)
    match = regex.search(text)
    while match is not None:
        yield match.start(), match.end()
        match = regex.search(text, match.start() + 1)


def _leftmost_first(matches: list[tuple[int, int, int]]) -> Iterator[tuple[int, int, int]]:
    """(start, end, order) of what an alternation of patterns finds, from the (start,
    order, end) of every position where each of them (``order`` in the alternation)
    matches: left to right, at the leftmost start the first pattern, then on from its end.
    """
    position = 0
    for start, order, end in sorted(matches):
        if start >= position:
            yield start, end, order
            position = end


class _Names:
    """The name recogniser for one set of PN values.

    The tokens are tried longest first, those of scripts written without spaces after the
    others, as one regex alternation of them would; no such alternation is compiled (a
    new one for every patient): each token's own pattern is, the first time a text holds
    it (separators aside), and is kept for the next patients of that name.
    """

    def __init__(self, values: tuple[Identifier, ...]):
        self.people = [_person(v) for v in values]
        by_token: dict[str, list[_Person]] = {}
        for person in self.people:
            for token in person.tokens:
                by_token.setdefault(token, []).append(person)
        self.by_token = by_token
        bounded = sorted((t for t in by_token if not _NO_SPACE_SCRIPTS.search(t)),
                         key=lambda t: (-len(t), t))
        unbounded = sorted((t for t in by_token if _NO_SPACE_SCRIPTS.search(t)),
                           key=lambda t: (-len(t), t))
        #: (pattern, what a text holds, its separators dropped, wherever the pattern matches)
        self.forms = tuple([(r"(?<!\w)" + _flexible(t) + r"(?!\w)", "".join(_name_parts(t)))
                            for t in bounded]
                           + [(re.escape(t), _NAME_GLUE.sub("", t)) for t in unbounded])

    def finditer(self, folded: str) -> Iterator[tuple[int, int]]:
        """(start, end) of every name in ``folded``, left to right, not overlapping."""
        bare = _NAME_GLUE.sub("", folded)
        matches = [(start, order, end) for order, (pattern, needle) in enumerate(self.forms)
                   if needle in bare for start, end in _every_match(pattern, folded)]
        for start, end, _ in _leftmost_first(matches):
            yield start, end


# Built per kind: the files of one study share their names and places while the IDs of
# procedure steps change from series to series.
@functools.lru_cache(maxsize=256)
def _names(values: frozenset[Identifier]) -> _Names:
    return _Names(tuple(sorted(values)))


@functools.lru_cache(maxsize=256)
def _ids(values: frozenset[Identifier]) -> _IdRecogniser | None:
    forms = [form for value in sorted(values) for form in _id_forms(value)]
    if not forms:
        return None
    return _IdRecogniser(tuple(sorted(forms, key=lambda f: _longest_first(f.pattern))))


@functools.lru_cache(maxsize=256)
def _places(values: frozenset[Identifier]) -> _PlaceRecogniser | None:
    forms = [form for value in sorted(values) for form in _place_forms(value)]
    if not forms:
        return None
    return _PlaceRecogniser(tuple(sorted(forms, key=lambda f: _longest_first(f.pattern))))


class _Matcher:
    """The recognisers for one set of header identifiers."""

    def __init__(self, values: frozenset[Identifier]):
        names = _names(frozenset(v for v in values if v.kind == NAME))
        self.people, self.by_token = names.people, names.by_token
        self.names = names if names.forms else None
        self.ids = _ids(frozenset(v for v in values if v.kind in (ID, PHONE)))
        self.places = _places(frozenset(v for v in values if v.kind == PLACE))
        self._cache: dict[tuple[str, frozenset[dt.date]], list[Finding]] = {}

    def find(self, text: str, identifiers: Identifiers) -> list[Finding]:
        if not text:
            return []
        if _UID_CANDIDATE.search(text) is not None:
            return self._find(text, identifiers)
        # The findings depend on the text, these identifiers and, for some dates, the
        # file's dates: the files of one series repeat their descriptions.
        key = (text, identifiers.dates)
        found = self._cache.get(key)
        if found is None:
            found = self._find(text, identifiers)
            if len(self._cache) < 4096:
                self._cache[key] = found
        return found

    def _find(self, text: str, identifiers: Identifiers) -> list[Finding]:
        found: list[Finding] = []
        has_digit = _ANY_DIGIT.search(text) is not None
        folded, positions = _fold_with_positions(text)
        if self.names is not None:
            for start, end in self.names.finditer(folded):
                matched = folded[start:end]
                start, end = _original_span(text, positions, start, end)
                people = self.by_token.get(matched) or self._person_for(matched)
                found.append(_name_finding(start, end, tuple(p.identifier for p in people)))
        if self.places is not None:
            for start, end, place in self.places.finditer(folded):
                start, end = _original_span(text, positions, start, end)
                found.append(Finding(start, end, PLACE, place.identifier.keyword,
                                     place.identifier))
        if self.ids is not None:
            for start, end, form in self.ids.finditer(text):
                value = form.identifier
                found.append(Finding(start, end, value.kind, form.label, value))
        found.extend(_find_patterns(text, has_digit, identifiers))
        chosen = _non_overlapping(found)
        return self._merge_names(text, chosen)

    def _person_for(self, matched: str) -> list[_Person]:
        """The people a flexible match (other separators than the token's) belongs to."""
        key = _NAME_GLUE.sub("", matched)
        return [p for p in self.people if any(_NAME_GLUE.sub("", t) == key for t in p.tokens)]

    def _merge_names(self, text: str, findings: list[Finding]) -> list[Finding]:
        """One finding for a whole written name: components next to each other
        (``Doe, John``, ``John A. Doe``) and the person's initials beside them."""
        if not any(f.kind == NAME for f in findings):
            return findings
        merged: list[Finding] = []
        for finding in findings:
            if finding.kind == NAME:
                finding = self._with_initials(text, finding)
                last = merged[-1] if merged else None
                if last is not None and last.kind == NAME \
                        and _NAME_GAP.fullmatch(text[last.end:finding.start]):
                    both = tuple(c for c in last.candidates if c in finding.candidates)
                    if both or not last.candidates or not finding.candidates:
                        merged.pop()  # one person's name written in several parts
                        finding = _name_finding(last.start, finding.end,
                                                both or last.candidates or finding.candidates)
            merged.append(finding)
        return merged

    def _with_initials(self, text: str, finding: Finding) -> Finding:
        """The finding widened to the initials written beside it (``J. Doe``,
        ``Doe, J.``) when they are the initials of a person it may belong to."""
        start, end = finding.start, finding.end
        people = finding.candidates
        before = _INITIALS_BEFORE.search(text, 0, start)
        if before is not None and before.end() == start:
            having = self._having_initials(people, before.group())
            if having:
                start, people = before.start(), having
        after = _INITIALS_AFTER.match(text, end)
        if after is not None:
            having = self._having_initials(people, after.group())
            if having:
                end, people = after.end(), having
        if (start, end) == (finding.start, finding.end):
            return finding
        return _name_finding(start, end, people)

    def _having_initials(self, people: tuple[Identifier, ...],
                         written: str) -> tuple[Identifier, ...]:
        letters = set(re.findall(r"[A-Z]", written))
        return tuple(p.identifier for p in self.people
                     if p.identifier in people and letters <= p.initials)


_ANY_DIGIT = re.compile(r"\d")
_NAME_GAP = re.compile(r"[\s,^]*|\s*[A-Z]\.\s*|\s+[A-Z]\s+")
_INITIALS_BEFORE = re.compile(r"(?<!\w)(?:[A-Z]\.?[\s\-]*){1,3}\s*$")
_INITIALS_AFTER = re.compile(r",?\s*(?:[A-Z]\.?){1,3}(?!\w)")


def _longest_first(pattern: str) -> tuple[int, str]:
    """The order of the patterns of an alternation, which tries them in turn."""
    return -len(pattern), pattern


def _name_finding(start: int, end: int, people: tuple[Identifier, ...]) -> Finding:
    first = people[0] if people else None
    return Finding(start, end, NAME, first.keyword if first else "name", first,
                   candidates=people)


@functools.lru_cache(maxsize=256)  # the files of one series share their identifiers
def _compiled(values: frozenset[Identifier]) -> _Matcher:
    return _Matcher(values)


def _non_overlapping(findings: list[Finding]) -> list[Finding]:
    """Leftmost-longest findings that do not overlap."""
    chosen: list[Finding] = []
    end = -1
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if finding.start >= end and finding.end > finding.start:
            chosen.append(finding)
            end = finding.end
    return chosen


# --------------------------------------------------------------------------------------
# Recognisers that need no header: dates, e-mail, URLs, phones, SSNs, titled names, UIDs
# --------------------------------------------------------------------------------------

_MONTH_NAME = (r"(?P<b>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|"
               r"aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DAY = r"(?P<d>0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?P<m>0?[1-9]|1[0-2])"
_YEAR4 = r"(?P<y>1[89]\d\d|20\d\d|21\d\d)"
_YEAR = r"'?(?P<y>1[89]\d\d|20\d\d|21\d\d|\d\d)"
#: The forms of dates written in text; day and month in either
#: order (05/03/2019) are ``p`` and ``q``, decided by :func:`_day_month`.
_DATE_FORMS: tuple[re.Pattern[str], ...] = tuple(re.compile(pattern, re.IGNORECASE) for pattern in (
    rf"(?<![\d.]){_YEAR4}(?P<s>[-/. ]){_MONTH}(?P=s){_DAY}(?!\d)",
    rf"(?<![\d.]){_YEAR4}(?P<m>0[1-9]|1[0-2])(?P<d>0[1-9]|[12]\d|3[01])(?!\d)",
    rf"(?<![\d.])(?P<p>\d\d?)(?P<s>[-/.])(?P<q>\d\d?)(?P=s){_YEAR}(?!\d|\.\d)",
    rf"(?<!\w){_DAY}(?:st|nd|rd|th)?[\s\-./]*{_MONTH_NAME}[\s\-./,]*{_YEAR}(?!\w)",
    rf"(?<!\w){_MONTH_NAME}[\s\-./]*{_DAY}(?:st|nd|rd|th)?,?[\s\-./]+{_YEAR}(?!\w)",
    rf"(?<!\w){_MONTH_NAME}[\s\-./,]*{_YEAR4}(?!\w)",
    rf"(?<![\d.]){_YEAR4}[\s\-./]*{_MONTH_NAME}[\s\-./]*{_DAY}(?!\d)",
))
_MONTH_LETTERS = re.compile(r"jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec", re.IGNORECASE)
_DAY_FIRST_SEPARATORS = frozenset(".-")  # 05.03.2019 and 05-03-2019 read day first

_PATTERNS: tuple[tuple[str, str, re.Pattern[str], bool], ...] = (
    # (kind, label, regex, needs a digit)
    (EMAIL, "e-mail", re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"), False),
    (URL, "URL", re.compile(r"\b(?:[a-z][a-z0-9+.\-]*://|www\.)[^\s<>\"'\\^]+",
                            re.IGNORECASE), False),
    (SSN, "SSN", re.compile(r"(?<![\d\-])\d{3}-\d{2}-\d{4}(?![\d\-])"), True),
    (PHONE, "telephone number", re.compile(
        r"(?<![\w+.])(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{2,4}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}"
        r"(?!\w|\.\d)"
        r"|(?<![\w+])\+[1-9]\d{0,2}(?:[\s.\-]\(?\d{1,4}\)?){2,5}(?!\w|\.\d)"
        r"|(?<!\w)(?:tel|phone|phoned|ph|fax|mobile|cell|call|called|contact|pager)\b"
        r"[^\d\n]{0,30}?(?P<v>\+?[\d(][\d()\s.\-]{5,}\d)(?!\w|\.\d)", re.IGNORECASE), True),
)
_TITLED_NAME = re.compile(
    r"(?:(?<![\w.])(?:Dr|Prof|Mr|Mrs|Ms|Mx|Miss|Sister|Nurse|Father|Rev)\.?"
    r"|(?<![\w.])(?:DR|PROF|MR|MRS|MS|MX)\."
    r"|(?<!\w)(?:wife|husband|mother|father|son|daughter|brother|sister|partner|widow)"
    r"(?: of)?)"
    r"\s+(?P<name>[A-ZÀ-ÖØ-Þ][^\W\d_]*(?:[\-'’][A-ZÀ-ÖØ-Þ][^\W\d_]+)?"
    r"(?:\s+[A-ZÀ-ÖØ-Þ][^\W\d_]+(?:[\-'’][A-ZÀ-ÖØ-Þ][^\W\d_]+)?)?)")
_NOT_NAMES = frozenset({"The", "And", "Of", "In", "On", "At", "To", "No", "With", "For"})
_UID_CANDIDATE = re.compile(r"(?<![\d.])[0-2](?:\.\d+){2,}(?![\d])")


_UID_CANDIDATE_BYTES = re.compile(rb"[0-2](?:\.\d+){2,}")


def uid_candidates(text: str) -> Iterator[re.Match[str]]:
    """Spans of ``text`` shaped like a UID (digits and dots, 3+ components)."""
    return _UID_CANDIDATE.finditer(text)


def may_hold_uid(data: bytes) -> bool:
    """Whether an encoded text value has something shaped like a UID (a quick test)."""
    return _UID_CANDIDATE_BYTES.search(data) is not None


def replace_uids(text: str, uids: frozenset[str], new_uid: Callable[[str], str]) -> str:
    """``text`` with each of ``uids`` written in it replaced by ``new_uid(uid)``."""
    return _UID_CANDIDATE.sub(lambda m: new_uid(m.group()) if m.group() in uids
                              else m.group(), text)


def _find_patterns(text: str, has_digit: bool, identifiers: Identifiers) -> list[Finding]:
    found: list[Finding] = []
    if has_digit or _MONTH_LETTERS.search(text):
        found.extend(_find_dates(text, identifiers))
    for kind, label, pattern, needs_digit in _PATTERNS:
        if needs_digit and not has_digit:
            continue
        for match in pattern.finditer(text):
            span = match.span("v") if match.groupdict().get("v") else match.span()
            found.append(Finding(*span, kind, label))
    for match in _TITLED_NAME.finditer(text):
        name = match.group("name")
        if name.split()[0] in _NOT_NAMES:
            continue
        found.append(Finding(match.start("name"), match.end("name"), NAME, "titled name"))
    if has_digit and identifiers.uids:
        found.extend(Finding(m.start(), m.end(), UID, "UID") for m in uid_candidates(text)
                     if m.group() in identifiers.uids)
    return found


def _two_digit_year(year: int, identifiers: Identifiers) -> int:
    """The century of a two-digit year: the one of a date of the file with that year,
    else POSIX's (69-99 in the 1900s, 00-68 in the 2000s). Not today's: the same text
    must read the same in every run, whatever the year it runs in."""
    years = {date.year for date in identifiers.dates}
    for century in (2000, 1900):
        if century + year in years:
            return century + year
    return 1900 + year if year >= 69 else 2000 + year


def _find_dates(text: str, identifiers: Identifiers) -> list[Finding]:
    found: list[Finding] = []
    for pattern in _DATE_FORMS:
        for match in pattern.finditer(text):
            finding = _date_finding(match, identifiers)
            if finding is not None:
                found.append(finding)
    return found


def _date_finding(match: re.Match[str], identifiers: Identifiers) -> Finding | None:
    """The date a match of :data:`_DATE_FORMS` means, or None if it is none."""
    groups = match.groupdict()
    year_text = groups["y"]
    year = int(year_text) if len(year_text) == 4 else _two_digit_year(int(year_text),
                                                                       identifiers)
    roles = {"d": "d", "m": "m", "b": "b", "y": "y"}
    if groups.get("p"):
        day_first = _day_month(year, int(groups["p"]), int(groups["q"]), groups["s"],
                               identifiers)
        if day_first is None:
            return None
        roles = {"p": "d", "q": "m", "y": "y"} if day_first else {"p": "m", "q": "d", "y": "y"}
        day, month = (int(groups["p"]), int(groups["q"]))[::1 if day_first else -1]
    else:
        month = _month_number(groups["b"]) if groups.get("b") else int(groups["m"])
        day = int(groups["d"]) if groups.get("d") else 15  # "March 2019": the month matters
    date = _valid_date(year, month, day)
    if date is None:
        return None
    if len(year_text) == 2 and not groups.get("b") and date not in identifiers.dates:
        return None  # 3/4/10 is a date only if the file has it
    base, parts = match.start(), []
    for group, role in roles.items():
        if groups.get(group):
            start, end = match.span(group)
            if role == "b" and match.group(group).endswith("."):
                end -= 1
            parts.append((start - base, end - base, role))
    return Finding(match.start(), match.end(), DATE, "date", None,
                   DateParts(date, tuple(sorted(parts))))


def _day_month(year: int, first: int, second: int, separator: str,
               identifiers: Identifiers) -> bool | None:
    """Whether ``first/second/year`` is day first (True), month first (False) or no
    date (None). Where both read as dates, a date of the file decides, else the
    separator's custom: dots and dashes day first (05.03.2019), slashes month first."""
    day_first = _valid_date(year, second, first)
    month_first = _valid_date(year, first, second)
    if day_first is None or month_first is None:
        return None if day_first is None and month_first is None else day_first is not None
    file_dates = identifiers.dates
    if (day_first in file_dates) != (month_first in file_dates):
        return day_first in file_dates
    return separator in _DAY_FIRST_SEPARATORS


def _month_number(name: str) -> int:
    prefix = name.lower().rstrip(".")[:3]
    return [m[:3] for m in _MONTHS].index(prefix) + 1


def _valid_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None
