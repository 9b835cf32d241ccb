"""Actions that transform values with the run's key or the file's own identifiers.

``P`` keyed pseudonyms, ``S`` per-patient date shifting, ``C`` cleaning (free text
scrubbed of the identifiers the same header carries, AE titles pseudonymised, dates
shifted under the Modified Dates option), and the HIPAA age cap.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom.datadict import keyword_for_tag

from anonymizer.actions import (
    ElementContext,
    Empty,
    Keep,
    Remove,
    set_dummy,
    set_value,
)
from anonymizer.elements import remove, set_encoded, stored, text_values
from anonymizer.errors import DeidentificationError
from anonymizer.scrub import dicom_date
from anonymizer.settings import check_format
from anonymizer.tags import CONTENT_SEQUENCE, PATIENT_AGE, PATIENT_BIRTH_DATE

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from anonymizer.actions import Action
    from anonymizer.settings import Settings

MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "DA": 8, "TM": 14, "DT": 26,
              "ST": 1024, "LT": 10240, "UC": 0xFFFFFFFE, "UT": 0xFFFFFFFE}
_SCRUB_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS"})


def render_format(fmt: str, digest_hex: str, patient_id: str | None) -> str:
    """Fill ``{hash:N}`` (first N hex digits, upper case) and ``{patient_id}`` in ``fmt``."""
    out = []
    for literal, name, spec, _ in string.Formatter().parse(fmt):
        out.append(literal)
        if name == "hash":
            out.append(digest_hex[: int(spec) if spec else 16].upper())
        elif name == "patient_id":
            out.append(patient_id or "")
    return "".join(out)


def _store(ds: Dataset, tag: int, vr: str, values: list[str]) -> None:
    set_value(ds, tag, vr, values if len(values) > 1 else values[0])


@dataclass(frozen=True)
class Pseudonym:
    """P: keyed pseudonym (lookup table first), consistent across files and runs."""

    fmt: str | None = None
    code: str = "P"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        vr = ctx.element_vr(ds, tag)
        originals = text_values(ds, tag)
        if not originals:
            return "K"
        keyword = keyword_for_tag(tag) or f"{tag:08X}"
        new = [ctx.pseudonym(keyword, v.strip(), self.fmt) for v in originals]
        if vr == "PN":  # a pseudonym is a family name: Family^Given, not the retired one-part form
            new = [v if "^" in v else f"{v}^" for v in new]
        limit = MAX_LENGTH.get(vr)
        if limit is not None and any(len(v) > limit for v in new):
            raise DeidentificationError(f"{keyword}: pseudonym longer than {vr} allows ({limit})")
        _store(ds, tag, vr, new)
        return "P"

    def describe(self) -> str:
        return f"pseudonym {self.fmt!r}" if self.fmt else "pseudonym"


@functools.lru_cache(maxsize=4096)  # a study's files repeat its dates, and share an offset
def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value (``YYYYMMDD``, also ``YYYY`` / ``YYYYMM`` in DT); None if unparseable."""
    text = value.strip()
    if not re.fullmatch(r"\d{4}(\d{2}(\d{2})?)?", text):
        return None
    padded = text + "0101"[len(text) - 4:] if len(text) < 8 else text
    try:
        day = dt.date(int(padded[:4]), int(padded[4:6]), int(padded[6:8]))
    except ValueError:
        return None
    try:
        shifted = day + dt.timedelta(days=days)
    except OverflowError:
        return None
    return shifted.strftime("%Y%m%d")[: len(text)]


_DT_RE = re.compile(r"^(\d{4}(?:\d{2}(?:\d{2})?)?)(\d{0,6}(?:\.\d{1,6})?)([+-]\d{4})?$")


def shift_datetime(value: str, days: int, keep_time: bool) -> str | None:
    """Shift the date part of a DT value; the time and the UTC offset are kept as written."""
    match = _DT_RE.match(value.strip())
    if not match:
        return None
    date_part = shift_date(match.group(1), days)
    if date_part is None:
        return None
    time_part = match.group(2) if keep_time else ""
    return date_part + time_part + (match.group(3) or "")


@dataclass(frozen=True)
class ShiftDate:
    """S: shift DA/DT by the patient's keyed offset in whole days (intervals preserved).

    TM values are kept or emptied as ``dates.times`` says. A value that cannot be
    parsed is emptied (never kept as is).
    """

    code: str = "S"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        vr = ctx.element_vr(ds, tag)
        settings: Settings = ctx.settings
        if vr == "TM":
            return "K" if settings.times == "keep" else Empty().apply(ds, tag, ctx)
        if vr not in ("DA", "DT"):
            return "K"  # a Sequence (cleaned recursively) or e.g. Timezone Offset From UTC
        raw = text_values(ds, tag)
        if not raw or raw == [""]:
            return "K"
        days = ctx.date_offset_days()
        keep_time = settings.times == "keep"
        shifted = [shift_date(v, days) if vr == "DA" else shift_datetime(v, days, keep_time)
                   for v in raw]
        if any(s is None for s in shifted):
            return Empty().apply(ds, tag, ctx)
        _store(ds, tag, vr, [s for s in shifted if s is not None])
        return "S"

    def describe(self) -> str:
        return "shift date (per-patient keyed offset)"


@dataclass(frozen=True)
class CleanText:
    """C on free text: every identifier found in it is replaced (:mod:`anonymizer.scrub`).

    The file's own names, IDs, places, telephone numbers, dates and UIDs (from every
    depth of the dataset) in the forms people write them, and e-mail addresses, URLs,
    telephone numbers, SSNs, titled names and dates of any kind.
    """

    code: str = "C"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        vr = ctx.element_vr(ds, tag)
        if vr not in _SCRUB_VRS:
            return set_dummy(ds, tag, vr, ctx)
        values = text_values(ds, tag)
        if not values:
            return "K"
        cleaned = [ctx.clean_text(v) for v in values]
        if cleaned == values:
            return "K"
        limit = MAX_LENGTH.get(vr)
        if limit is not None:
            cleaned = [v[:limit] for v in cleaned]
        _store(ds, tag, vr, cleaned)
        return "C"

    def describe(self) -> str:
        return "clean text (scrub identifiers: the file's own and any e-mail, URL, date ...)"


@dataclass(frozen=True)
class CleanBitmap:
    """C on binary data (Overlay/Curve bitmaps, binary timestamps): it cannot be cleaned
    here, so it is removed."""

    code: str = "X"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        return Remove().apply(ds, tag, ctx)

    def describe(self) -> str:
        return "remove (binary data cannot be cleaned)"


_AS_UNIT_YEARS = {"D": 365.25, "W": 52.18, "M": 12, "Y": 1}
#: UCUM units of an SR age, per year; an age in an unknown unit is read as years.
_UCUM_PER_YEAR = {"a": 1.0, "mo": 12.0, "wk": 52.1775, "d": 365.25, "h": 8766.0,
                  "min": 525960.0}
#: Concepts of an SR NUM content item that hold the patient's age: DCM Subject Age,
#: LOINC Age, SNOMED CT Age (also under its old SRT designator).
AGE_CONCEPTS = frozenset({("121033", "DCM"), ("30525-0", "LN"), ("397669002", "SCT"),
                          ("397669002", "SRT")})
_CONCEPT_NAME_CODE_SEQUENCE = 0x0040A043
MEASURED_VALUE_SEQUENCE = 0x0040A300
_UNITS_CODE_SEQUENCE = 0x004008EA
_NUMERIC_VALUE = 0x0040A30A
_FLOATING_POINT_VALUE = 0x0040A161
_RATIONAL_VALUES = (0x0040A162, 0x0040A163)  # numerator, denominator
_CODE_VALUE = 0x00080100
_CODING_SCHEME = 0x00080102
#: The date a birth date is read against: Study, Series, Acquisition, Content Date.
_REFERENCE_DATES = (0x00080020, 0x00080021, 0x00080022, 0x00080023)


def as_years(value: str) -> float | None:
    """Years of an AS value (``095Y``, ``011M``...); None if it is not one."""
    match = re.fullmatch(r"(\d{3})([DWMY])", value.strip())
    return None if match is None else int(match.group(1)) / _AS_UNIT_YEARS[match.group(2)]


def _first_item(ds: Dataset, tag: int) -> Dataset | None:
    if tag not in ds:
        return None
    items = ds[tag].value
    return items[0] if items else None


def _is_age_concept(item: Dataset) -> bool:
    concept = _first_item(item, _CONCEPT_NAME_CODE_SEQUENCE)
    if concept is None:
        return False
    code = ("".join(text_values(concept, _CODE_VALUE)).strip(),
            "".join(text_values(concept, _CODING_SCHEME)).strip())
    return code in AGE_CONCEPTS


def _measured_age(measured: Dataset) -> tuple[float, float] | None:
    """(years, units per year) of one Measured Value Sequence item; None if no number."""
    values = text_values(measured, _NUMERIC_VALUE)
    try:
        number = float(values[0]) if len(values) == 1 else None
    except ValueError:
        number = None
    if number is None:
        return None
    units = _first_item(measured, _UNITS_CODE_SEQUENCE)
    unit = "".join(text_values(units, _CODE_VALUE)).strip() if units is not None else ""
    per_year = _UCUM_PER_YEAR.get(unit, 1.0)
    return number / per_year, per_year


def content_ages(items: list[Dataset]) -> list[float]:
    """Years of every age concept among SR content items, at any depth."""
    ages = []
    for item in items:
        if _is_age_concept(item):
            measured_values = item[MEASURED_VALUE_SEQUENCE].value \
                if MEASURED_VALUE_SEQUENCE in item else []
            for measured in measured_values:
                found = _measured_age(measured)
                if found is not None:
                    ages.append(found[0])
        if CONTENT_SEQUENCE in item:
            ages += content_ages(item[CONTENT_SEQUENCE].value)
    return ages


def _date(values: list[str]) -> dt.date | None:
    """The date of a DA element's values (one ``YYYYMMDD``), else None."""
    return dicom_date(values[0].strip()) if len(values) == 1 else None


def oldest_age(ds: Dataset) -> float | None:
    """The highest age in years the file tells, or None: Patient's Age, the Birth Date
    at the study (else series, acquisition, content date; else today: a birth date
    alone tells the age now), and the age concepts of its SR content."""
    ages = [as_years(v) for v in text_values(ds, PATIENT_AGE)]
    birth = _date(text_values(ds, PATIENT_BIRTH_DATE))
    if birth is not None:
        when = next((d for d in (_date(text_values(ds, tag)) for tag in _REFERENCE_DATES)
                     if d is not None), None) or dt.date.today()
        ages.append(when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day)))
    if CONTENT_SEQUENCE in stored(ds):
        ages += content_ages(ds[CONTENT_SEQUENCE].value)
    known = [age for age in ages if age is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class CapAge:
    """K on Patient's Age with the HIPAA cap: ages above ``age.cap`` years become ``090Y``,
    and so does any age of a patient the file shows to be older than the cap."""

    code: str = "K"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        cap = ctx.settings.age_cap
        value = "\\".join(text_values(ds, tag)).strip()
        if cap is None or not value:
            return "K"
        years = as_years(value)
        if years is None:
            return Empty().apply(ds, tag, ctx)
        if years > cap or ctx.over_age_cap():
            set_encoded(ds, tag, "AS", f"{cap + 1:03d}Y".encode("ascii"))
            return "D"
        return "K"

    def describe(self) -> str:
        return "keep, ages above the cap become 090Y"


@dataclass(frozen=True)
class CapBirthDate:
    """Patient's Birth Date under the age cap: emptied when the file shows the patient
    older than the cap (with a study date it tells the real age), else ``inner``."""

    inner: Action
    code: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", self.inner.code)

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        if ctx.over_age_cap():
            return Empty().apply(ds, tag, ctx)
        return self.inner.apply(ds, tag, ctx)

    def describe(self) -> str:
        return f"{self.inner.describe()}; emptied when the patient is older than the age cap"


@dataclass(frozen=True)
class CapMeasuredAge:
    """Measured Value Sequence of an SR NUM content item whose concept is an age: a value
    above the cap, or any age of a patient older than it, becomes the cap + 1 year in
    its own unit (``90`` years, ``1080`` months). The sequence is kept otherwise."""

    code: str = "K"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        cap = ctx.settings.age_cap
        if cap is None or not _is_age_concept(ds):
            return "K"
        code = "K"
        for measured in ds[tag].value:
            found = _measured_age(measured)
            if found is None or not (found[0] > cap or ctx.over_age_cap()):
                continue
            capped = (cap + 1) * found[1]
            set_value(measured, _NUMERIC_VALUE, "DS", f"{capped:.10g}")
            if _FLOATING_POINT_VALUE in measured:
                set_value(measured, _FLOATING_POINT_VALUE, "FD", capped)
            for rational in _RATIONAL_VALUES:  # the same number again, as a fraction
                if rational in measured:
                    remove(measured, rational)
            code = "D"
        return code

    def describe(self) -> str:
        return "keep, an SR age above the cap becomes the cap + 1 year"


def action_for(code: str, fmt: str | None, tag: int | None, vr: str | None,
               option: str | None) -> Action:
    """Action for ``P`` (pseudonym), ``S`` (date shift) or ``C`` (clean), given the VR.

    Raises
    ------
    ValueError
        If the parameters do not fit (e.g. a bad pseudonym format).
    """

    if code == "P":
        if vr is not None and vr not in ("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"):
            raise ValueError(f"pseudonym needs a text VR, not {vr}")
        return Pseudonym(check_format(str(fmt)) if fmt is not None else None)
    if code == "S":
        if vr is not None and vr not in ("DA", "DT", "TM"):
            raise ValueError(f"shift needs a DA, DT or TM attribute, not {vr}")
        return ShiftDate()
    if code != "C":
        raise ValueError(f"unknown transform code {code!r}")
    if vr in ("DA", "DT", "TM"):
        return ShiftDate()
    if option == "retain_longitudinal_modified_dates":
        # Not a date string: a binary timestamp cannot be shifted here, so it goes; text
        # such as Timezone Offset From UTC and Sequences (cleaned inside) are kept.
        return Keep() if vr in ("SH", "SQ", None) else CleanBitmap()
    if vr == "AE":
        return Pseudonym("AE-{hash:12}")
    if vr in _SCRUB_VRS:
        return CleanText()
    if vr in (None, "OB", "OW", "OB or OW"):
        return CleanBitmap()
    return Keep()  # a Sequence (cleaned recursively by the engine) or a coded value
