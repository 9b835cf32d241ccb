"""Actions that transform values with the run's key or the file's own identifiers.

``P`` keyed pseudonyms, ``S`` per-patient date shifting, ``C`` cleaning (free text
scrubbed of the identifiers the same header carries, AE titles pseudonymised, dates
shifted under the Modified Dates option), and the HIPAA age cap.
"""

from __future__ import annotations

import datetime as dt
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
from anonymizer.elements import set_encoded, text_values
from anonymizer.errors import DeidentificationError
from anonymizer.settings import check_format

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


@dataclass(frozen=True)
class CapAge:
    """K on Patient's Age with the HIPAA cap: ages above ``age.cap`` years become ``090Y``."""

    code: str = "K"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        cap = ctx.settings.age_cap
        value = "\\".join(text_values(ds, tag)).strip()
        match = re.fullmatch(r"(\d{3})([DWMY])", value)
        if cap is None or not value:
            return "K"
        if not match:
            return Empty().apply(ds, tag, ctx)
        years = int(match.group(1)) / {"D": 365.25, "W": 52.18, "M": 12, "Y": 1}[match.group(2)]
        if years > cap:
            set_encoded(ds, tag, "AS", f"{cap + 1:03d}Y".encode("ascii"))
            return "D"
        return "K"

    def describe(self) -> str:
        return "keep, ages above the cap become 090Y"


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
