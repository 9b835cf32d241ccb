"""Which rule wins: the one ordering of rule levels that the compiler and every lookup ask.

A standard (even-group) element can be matched by rules of several levels: a tag or keyword
under ``actions``, a tag pattern, a PS3.15 Table E.1-1 row (its option columns and its Basic
Profile column), a rule by VR, the default. The rule of the highest :class:`Level` decides;
among rules of one level the tie-break of :data:`STEPS` does. Private elements have their own,
shorter ordering (:class:`PrivateLevel`): they are addressed by creator, never by raw tag.

``anonymizer profiles show`` prints both orderings (:func:`describe`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, TypeVar


class Level(IntEnum):
    """Who decides what happens to a standard element; the higher level wins."""

    DEFAULT = 1
    BY_VR = 2
    OVERLAY_GROUP = 3
    TABLE_PATTERN = 4
    BASIC_PROFILE = 5
    OPTION = 6
    PROFILE_PATTERN = 7
    PROFILE_TAG = 8


class PrivateLevel(IntEnum):
    """Who keeps a private element (with a creator); the higher level wins."""

    DEFAULT = 1
    SAFE_PRIVATE = 2
    KEEP = 3


@dataclass(frozen=True)
class Step:
    """One level of an ordering: its name, what puts a rule there, and how ties break."""

    level: int
    name: str
    what: str
    ties: str = ""


#: Standard elements, highest level first.
STEPS: tuple[Step, ...] = (
    Step(Level.PROFILE_TAG, "profile tag", "a tag or keyword under 'actions'",
         "a child profile over the one it extends; in one profile a tag number over a keyword"),
    Step(Level.PROFILE_PATTERN, "profile pattern", "a tag pattern under 'actions', e.g. "
         "(0008,00xx)", "a child profile's over the one it extends; in one profile the most "
         "specific first"),
    Step(Level.OPTION, "PS3.15 option", "the column of an option under 'options' for a tag "
         "of Table E.1-1", "C (clean) over any other code; otherwise the option listed last"),
    Step(Level.BASIC_PROFILE, "PS3.15 Basic Profile", "the Basic Profile column for a tag of "
         "Table E.1-1"),
    Step(Level.TABLE_PATTERN, "PS3.15 tag range", "a Table E.1-1 row for a tag range, e.g. "
         "(50xx,xxxx): its option column over its Basic Profile column", "table order"),
    Step(Level.OVERLAY_GROUP, "whole overlay group", "(60xx,xxxx) removed when the rule that "
         "wins for Overlay Data (60xx,3000) removes it"),
    Step(Level.BY_VR, "by_vr", "the profile's rule for the element's VR",
         "a child profile over the one it extends"),
    Step(Level.DEFAULT, "default", "the profile's 'default' (keep when no profile says)",
         "a child profile over the one it extends"),
)

#: Private elements, highest level first; an orphan (no creator) is removed whatever they say.
PRIVATE_STEPS: tuple[Step, ...] = (
    Step(PrivateLevel.KEEP, "private keep", "keep_creators and keep entries under 'private'",
         "profile order"),
    Step(PrivateLevel.SAFE_PRIVATE, "safe private", "option retain_safe_private: the entries "
         "of PS3.15 Table E.3.10-1, VR checked"),
    Step(PrivateLevel.DEFAULT, "private default", "'private: default' (remove when no profile "
         "says)"),
)


class Ranked(Protocol):
    """Anything with a level, e.g. :class:`anonymizer.rules.Rule`."""

    @property
    def level(self) -> Level: ...


RankedT = TypeVar("RankedT", bound=Ranked)


def winner(candidates: Iterable[RankedT | None]) -> RankedT | None:
    """The candidate of the highest level; among equals the first given (None: no candidate).

    Callers give the candidates of one level in their tie-break order (:data:`STEPS`).
    """
    best: RankedT | None = None
    for candidate in candidates:
        if candidate is not None and (best is None or candidate.level > best.level):
            best = candidate
    return best


def private_keeper(candidates: Mapping[PrivateLevel, str | None]) -> str | None:
    """The origin of the highest level that keeps a private element; None when none does
    (the element is removed)."""
    for level in sorted(candidates, reverse=True):
        origin = candidates[level]
        if origin is not None:
            return origin
    return None


def application_order(by_keyword: bool, line: int) -> tuple[bool, int]:
    """Sort key applying one profile's tag and keyword entries so that the entry that must
    win is applied last: keywords first, then tag numbers (each in line order)."""
    return (not by_keyword, line)


def pattern_order(specificity: int) -> int:
    """Sort key of one profile's tag patterns: the most specific first."""
    return -specificity


def deciding_option(columns: Mapping[str, str], options: Sequence[str]) -> str | None:
    """The option whose column decides a Table E.1-1 row, or None (the Basic Profile does).

    C (clean) beats any other code whatever the order: a calibration date is K under Device
    Identity but C under Modified Dates. Otherwise the option listed last decides.
    """
    deciding = None
    for option in sorted(options, key=lambda o: columns.get(o) == "C"):
        if option in columns:
            deciding = option
    return deciding


def describe(counts: Mapping[Level, int] | None = None) -> list[str]:
    """The orderings as ``profiles show`` prints them; ``counts``: rules per level."""
    lines = ["precedence (highest first; the highest level with a rule for an element decides):"]
    for number, step in enumerate(STEPS, start=1):
        count = "" if counts is None else counts.get(Level(step.level), 0)
        count = "" if count == "" else f" ({count} rule{'' if count == 1 else 's'})"
        lines += _step_lines(number, step, count)
    lines += ["  then the HIPAA age cap applies to whatever rule won for Patient's Age, "
              "Patient's Birth Date and Measured Value Sequence",
              "  File Meta Information (0002,xxxx): levels 1 to 6 only",
              "private precedence (by creator, never by raw tag; orphan private elements "
              "are removed):"]
    for number, step in enumerate(PRIVATE_STEPS, start=1):
        lines += _step_lines(number, step, "")
    return lines


def _step_lines(number: int, step: Step, count: str) -> list[str]:
    lines = [f"  {number}. {step.name}{count}: {step.what}"]
    if step.ties:
        lines.append(f"       ties: {step.ties}")
    return lines
