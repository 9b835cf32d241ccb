"""Compiled parameters of keyed transforms: pseudonyms, date shifting, age cap.

One frozen :class:`Settings` per compiled profile, shared by every action.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from anonymizer.pixels.policy import PixelPolicy

DEFAULT_PSEUDONYM_FORMAT = "ANON-{hash:10}"
_FORMAT_FIELDS = ("hash", "patient_id")


@dataclass(frozen=True)
class LookupTable:
    """Original -> replacement pairs (e.g. a trial's subject IDs), from a CSV file.

    Columns ``original,replacement`` map Patient IDs (other attributes follow through
    ``{patient_id}``); with a first column ``keyword`` each row maps a value of that
    attribute. The table is PHI: it is only held in memory.
    """

    source: str
    sha256: str
    by_keyword: Mapping[tuple[str, str], str]
    any_keyword: Mapping[str, str]

    def covers(self, keyword: str) -> bool:
        """Whether a value of ``keyword`` missing from the table is a miss (on_missing).

        A two-column table lists patients: it covers Patient ID. A table with a keyword
        column covers the keywords it has rows for.
        """
        if self.by_keyword:
            return any(k == keyword for k, _ in self.by_keyword)
        return keyword == "PatientID"

    def get(self, keyword: str, original: str) -> str | None:
        """The replacement of ``original`` as a value of ``keyword``, or None."""
        found = self.by_keyword.get((keyword, original))
        if found is None and keyword == "PatientID":
            found = self.any_keyword.get(original)
        return found


@dataclass(frozen=True)
class Settings:
    """Parameters of pseudonyms, date shifting and age capping for one profile."""

    pseudonym_format: str = DEFAULT_PSEUDONYM_FORMAT
    lookup: LookupTable | None = None
    on_missing: str = "hash"  # or "fail": an original not in the lookup table fails the file
    shift_days: tuple[int, int] = (-365, -1)
    times: str = "keep"  # or "remove" for TM values (and the time part of shifted DT)
    age_cap: int | None = 89  # ages above become "090Y" (HIPAA); None = keep as is
    #: what happens to the pixels: burned-in text searched for, cleaned, or failed
    pixels: PixelPolicy = PixelPolicy()
    #: LongitudinalTemporalInformationModified to stamp (None: the profile does not say)
    dates_modified: str | None = None

    def describe(self) -> dict[str, str]:
        # The table by content only: its path may be written relative or absolute.
        lookup = "none" if self.lookup is None else f"sha256:{self.lookup.sha256[:16]}"
        return {
            "pseudonyms.format": self.pseudonym_format, "pseudonyms.lookup": lookup,
            "pseudonyms.on_missing": self.on_missing,
            "dates.shift_days": f"{self.shift_days[0]}..{self.shift_days[1]}",
            "dates.times": self.times, "age.cap": str(self.age_cap),
        }


def check_format(fmt: str) -> str:
    """Validate a pseudonym format such as ``SUBJ-{hash:8}``.

    Raises
    ------
    ValueError
        With what is wrong.
    """
    for _, name, spec, _ in string.Formatter().parse(fmt):
        if name is None:
            continue
        if name not in _FORMAT_FIELDS:
            raise ValueError(f"unknown field {{{name}}} in pseudonym format (use "
                             "{hash:N} or {patient_id})")
        if name == "hash" and spec and not (spec.isdigit() and 4 <= int(spec) <= 64):
            raise ValueError("{hash:N} needs N between 4 and 64 hex digits")
    return fmt
