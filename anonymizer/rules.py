"""Compiled, immutable rule tables: what the engine looks up per element.

A :class:`CompiledProfile` is the output of :mod:`anonymizer.profiles.compiler`.
Every rule carries its :class:`~anonymizer.precedence.Level`; which rule wins is decided by
:mod:`anonymizer.precedence` alone, at compile time and in every lookup. Per tag the table
keeps the action *and* what decided it, so ``anonymizer profiles show`` can answer "why was
this removed?".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from anonymizer.actions import Action
from anonymizer.precedence import Level, PrivateLevel, private_keeper, winner
from anonymizer.settings import Settings
from anonymizer.standard import MethodCode
from anonymizer.tags import TagPattern, format_tag


@dataclass(frozen=True)
class Rule:
    """An action, the origin that decided it (e.g. ``"profile default keyword PatientID"``)
    and the precedence level it competes at."""

    action: Action
    origin: str
    level: Level

    def describe(self) -> str:
        return f"{self.action.describe()}  [{self.origin}]"


#: the cache key of :meth:`CompiledProfile.explicit_rule` (never a VR)
_EXPLICIT = "explicit"


def pattern_winner(patterns: Iterable[tuple[TagPattern, Rule]], tag: int) -> Rule | None:
    """The rule that wins among the patterns matching ``tag`` (listed in tie-break order)."""
    return winner(rule for pattern, rule in patterns if pattern.matches(tag))


@dataclass(frozen=True)
class PrivateElementKey:
    """A private element addressed like pydicom's ``private_block``.

    ``group`` None matches the creator's block in any group; ``offset`` None
    matches every element of the block.
    """

    creator: str
    offset: int | None = None
    group: int | None = None

    def describe(self) -> str:
        group = "gggg" if self.group is None else f"{self.group:04X}"
        offset = "xx" if self.offset is None else f"{self.offset:02X}"
        return f"({group},xx{offset}) {self.creator!r}"


@dataclass(frozen=True)
class PrivatePolicy:
    """Which private elements survive: by creator (and element offset), never by raw tag.

    Orphan private elements (no creator) never survive; a creator element survives
    only if something in its block does.
    """

    keep_all: bool = False
    keep: tuple[tuple[PrivateElementKey, str], ...] = ()
    #: (group, creator, offset) -> VR of the PS3.15 Table E.3.10-1 entries, if the
    #: Retain Safe Private Option is on.
    safe: Mapping[tuple[int, str, int], str] = field(default_factory=dict)
    #: VR -> how a kept private value of that VR is de-identified (absent: kept as is)
    value_rules: Mapping[str, Rule] = field(default_factory=dict)
    _decided: dict[tuple[int, str, int, str | None], str | None] = field(
        default_factory=dict, compare=False, repr=False)

    def decide(self, group: int, creator: str, offset: int, vr: str | None) -> str | None:
        """Return the origin that keeps this element, or None when it must be removed."""
        key = (group, creator, offset, vr)
        if key in self._decided:
            return self._decided[key]
        decided = self._decide(group, creator, offset, vr)
        if len(self._decided) < 1 << 16:  # creators come from files: bounded
            self._decided[key] = decided
        return decided

    def _decide(self, group: int, creator: str, offset: int, vr: str | None) -> str | None:
        kept_by = next((origin for key, origin in self.keep
                        if key.creator == creator and (key.group is None or key.group == group)
                        and (key.offset is None or key.offset == offset)), None)
        safe_vr = self.safe.get((group, creator, offset))
        safe = safe_vr is not None and (not safe_vr or vr in (None, "UN", *safe_vr.split("/")))
        return private_keeper({
            PrivateLevel.KEEP: kept_by,
            PrivateLevel.SAFE_PRIVATE:
                "option retain_safe_private (PS3.15 Table E.3.10-1)" if safe else None,
            PrivateLevel.DEFAULT: "private default keep" if self.keep_all else None,
        })

    def describe(self) -> list[str]:
        lines = [f"private default: {'keep' if self.keep_all else 'remove'}",
                 "orphan private elements (no creator): remove"]
        lines += [f"keep private {key.describe()}  [{origin}]" for key, origin in self.keep]
        if self.safe:
            lines.append(f"keep {len(self.safe)} safe private attributes (PS3.15 Table E.3.10-1)")
        lines += [f"kept private {vr}: {rule.describe()}"
                  for vr, rule in sorted(self.value_rules.items())]
        return lines


@dataclass(frozen=True)
class Addition:
    """An element the profile adds to every file (top level), e.g. a project ID.

    ``creator`` set: a private element at ``offset`` in that creator's block of
    ``group`` (created with ``Dataset.private_block(..., create=True)``).
    """

    tag: int | None
    vr: str
    value: Any
    creator: str | None = None
    group: int | None = None
    offset: int | None = None

    def describe(self) -> str:
        if self.creator is not None:
            return f"add private ({self.group:04X},xx{self.offset:02X}) under {self.creator!r} " \
                   f"{self.vr} = {self.value!r}"
        assert self.tag is not None
        return f"add {format_tag(self.tag)} {self.vr} = {self.value!r}"


@dataclass(frozen=True)
class CompiledProfile:
    """An immutable, fully resolved de-identification profile.

    ``tag_rules`` holds, per tag, the rule that won among the tag-specific levels (profile
    tag, profile pattern, option column, Basic Profile); ``pattern_rules`` are in
    precedence order. A lookup asks :func:`anonymizer.precedence.winner` among the tag's
    rule, the matching patterns, the rule for its VR and the default.
    """

    name: str
    version: str
    description: str
    source: str
    tag_rules: Mapping[int, Rule]
    pattern_rules: tuple[tuple[TagPattern, Rule], ...]
    vr_rules: Mapping[str, Rule]
    default_rule: Rule
    private: PrivatePolicy
    additions: tuple[Addition, ...] = ()
    options: tuple[str, ...] = ()
    method_codes: tuple[MethodCode, ...] = ()
    layout: str | None = None
    settings: Settings = field(default_factory=Settings)
    #: lookups made: (tag, VR) -> rule_for's answer, (tag, EXPLICIT) -> explicit_rule's
    _cache: dict[tuple[int, str], Rule | None] = field(default_factory=dict, compare=False,
                                                       repr=False)

    def rule_for(self, tag: int, vr: str) -> Rule:
        """The rule that wins for a (non-private) element of this tag and VR."""
        key = (tag, vr)
        rule = self._cache.get(key)
        if rule is None:
            rule = winner((self.explicit_rule(tag), self.vr_rules.get(vr), self.default_rule))
            assert rule is not None  # the default always competes
            self._cache[key] = rule
        return rule

    def explicit_rule(self, tag: int) -> Rule | None:
        """The rule that wins for ``tag`` from the tag table or a pattern, ignoring VR and
        default (None: neither has one)."""
        key = (tag, _EXPLICIT)
        if key not in self._cache:  # patterns are matched once per tag, not per lookup
            self._cache[key] = winner((self.tag_rules.get(tag),
                                       pattern_winner(self.pattern_rules, tag)))
        return self._cache[key]

    def level_counts(self) -> dict[Level, int]:
        """How many of the profile's rules compete at each precedence level."""
        counts = dict.fromkeys(Level, 0)
        for rule in (*self.tag_rules.values(), *(r for _, r in self.pattern_rules),
                     *self.vr_rules.values(), self.default_rule):
            counts[rule.level] += 1
        return counts

    def describe(self) -> list[str]:
        """Every rule as one line: the ``profiles show`` listing and the fingerprint input."""
        return [*self.describe_header(), *self.describe_rules()]

    def describe_header(self) -> list[str]:
        """Name, version, options and method codes: the first lines of :meth:`describe`."""
        return [f"profile {self.name} {self.version}",
                f"options: {', '.join(self.options) or '(none)'}",
                "method codes: " + (", ".join(f"{c.value} {c.meaning}" for c in self.method_codes)
                                    or "(none)")]

    def describe_rules(self) -> list[str]:
        """Every rule and setting as one line: the rest of :meth:`describe`."""
        from pydicom.datadict import keyword_for_tag

        lines = []
        for tag in sorted(self.tag_rules):
            rule = self.tag_rules[tag]
            lines.append(f"{format_tag(tag)} {keyword_for_tag(tag) or '?':40} {rule.describe()}")
        lines += [f"{p.text} {'(pattern)':40} {r.describe()}" for p, r in self.pattern_rules]
        lines += [f"VR {vr:37} {r.describe()}" for vr, r in sorted(self.vr_rules.items())]
        lines.append(f"{'default':48} {self.default_rule.describe()}")
        lines += self.private.describe()
        lines += [a.describe() for a in self.additions]
        lines += [f"{k}: {v}" for k, v in sorted(self.settings.describe().items())]
        lines += self.settings.pixels.describe()
        if self.layout:
            lines.append(f"layout: {self.layout}")
        return lines

    def fingerprint(self) -> str:
        """sha256 of the compiled form: detects a profile change between runs."""
        text = json.dumps(self.describe(), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()
