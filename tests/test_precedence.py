"""Rule precedence: for every pair of levels, an element both match gets the higher one's rule.

Every profile is a real YAML file compiled by the real compiler; ``profiles show`` prints the
ordering that :mod:`anonymizer.precedence` holds.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from profile_helpers import cli

from anonymizer import precedence
from anonymizer.actions import Keep, Remove, simple_action
from anonymizer.precedence import Level, PrivateLevel
from anonymizer.profiles import load_profile
from anonymizer.rules import CompiledProfile, PrivateElementKey, PrivatePolicy, Rule
from anonymizer.show import show_profile
from anonymizer.tags import parse_tag_text

DEVICE_SERIAL_NUMBER = (0x00181000, "LO")  # Basic Profile X/Z/D, retain_device_identity K
CURVE_DIMENSIONS = (0x50000005, "US")  # in the Table E.1-1 row (50xx,xxxx), X
OVERLAY_ROWS = (0x60000010, "US")  # in the whole overlay group when Overlay Data goes
OVERLAY_COMMENTS = (0x60004000, "LT")  # row (60xx,4000): X, clean_graphics C
STANDARD: dict[str, Any] = {"standard": "ps3.15"}

#: (higher level, its fragment, lower level, its fragment or None when the lower level only
#: comes with the higher one, element): each fragment alone puts a rule of its level on the
#: element, and the two rules do different things.
PAIRS: list[tuple[Level, dict[str, Any], Level, dict[str, Any] | None, tuple[int, str]]] = [
    (Level.PROFILE_TAG, {"actions": {"(0018,1000)": "keep"}},
     Level.PROFILE_PATTERN, {"actions": {"(0018,10xx)": "remove"}}, DEVICE_SERIAL_NUMBER),
    (Level.PROFILE_TAG, {"actions": {"DeviceSerialNumber": "remove"}},
     Level.OPTION, {**STANDARD, "options": ["retain_device_identity"]}, DEVICE_SERIAL_NUMBER),
    (Level.PROFILE_TAG, {"actions": {"(0018,1000)": "keep"}},
     Level.BASIC_PROFILE, STANDARD, DEVICE_SERIAL_NUMBER),
    (Level.PROFILE_TAG, {"actions": {"(5000,0005)": "keep"}},
     Level.TABLE_PATTERN, STANDARD, CURVE_DIMENSIONS),
    (Level.PROFILE_TAG, {"actions": {"(6000,0010)": "keep"}},
     Level.OVERLAY_GROUP, STANDARD, OVERLAY_ROWS),
    (Level.PROFILE_TAG, {"actions": {"(0018,1000)": "keep"}},
     Level.BY_VR, {"by_vr": {"LO": "remove"}}, DEVICE_SERIAL_NUMBER),
    (Level.PROFILE_TAG, {"actions": {"(0018,1000)": "keep"}},
     Level.DEFAULT, {"default": "remove"}, DEVICE_SERIAL_NUMBER),
    (Level.PROFILE_PATTERN, {"actions": {"(0018,10xx)": "remove"}},
     Level.OPTION, {**STANDARD, "options": ["retain_device_identity"]}, DEVICE_SERIAL_NUMBER),
    (Level.PROFILE_PATTERN, {"actions": {"(0018,10xx)": "keep"}},
     Level.BASIC_PROFILE, STANDARD, DEVICE_SERIAL_NUMBER),
    (Level.PROFILE_PATTERN, {"actions": {"(50xx,0005)": "keep"}},
     Level.TABLE_PATTERN, STANDARD, CURVE_DIMENSIONS),
    (Level.PROFILE_PATTERN, {"actions": {"(60xx,0010)": "keep"}},
     Level.OVERLAY_GROUP, STANDARD, OVERLAY_ROWS),
    (Level.PROFILE_PATTERN, {"actions": {"(0018,10xx)": "keep"}},
     Level.BY_VR, {"by_vr": {"LO": "remove"}}, DEVICE_SERIAL_NUMBER),
    (Level.PROFILE_PATTERN, {"actions": {"(0018,10xx)": "keep"}},
     Level.DEFAULT, {"default": "remove"}, DEVICE_SERIAL_NUMBER),
    (Level.OPTION, {**STANDARD, "options": ["retain_device_identity"]},
     Level.BASIC_PROFILE, STANDARD, DEVICE_SERIAL_NUMBER),
    (Level.OPTION, {**STANDARD, "options": ["retain_device_identity"]},
     Level.BY_VR, {"by_vr": {"LO": "remove"}}, DEVICE_SERIAL_NUMBER),
    (Level.OPTION, {**STANDARD, "options": ["retain_device_identity"]},
     Level.DEFAULT, {"default": "remove"}, DEVICE_SERIAL_NUMBER),
    (Level.BASIC_PROFILE, STANDARD, Level.BY_VR, {"by_vr": {"LO": "keep"}},
     DEVICE_SERIAL_NUMBER),
    (Level.BASIC_PROFILE, STANDARD, Level.DEFAULT, {"default": "keep"}, DEVICE_SERIAL_NUMBER),
    # Overlay Data removed by the profile, Overlay Comments cleaned by the option's column:
    # the group rule exists only alongside the table's rows, so it has no fragment of its own.
    (Level.TABLE_PATTERN, {**STANDARD, "options": ["clean_graphics"],
                           "actions": {"(60xx,3000)": "remove"}},
     Level.OVERLAY_GROUP, None, OVERLAY_COMMENTS),
    (Level.TABLE_PATTERN, STANDARD, Level.BY_VR, {"by_vr": {"US": "keep"}}, CURVE_DIMENSIONS),
    (Level.TABLE_PATTERN, STANDARD, Level.DEFAULT, {"default": "keep"}, CURVE_DIMENSIONS),
    (Level.OVERLAY_GROUP, STANDARD, Level.BY_VR, {"by_vr": {"US": "keep"}}, OVERLAY_ROWS),
    (Level.OVERLAY_GROUP, STANDARD, Level.DEFAULT, {"default": "keep"}, OVERLAY_ROWS),
    (Level.BY_VR, {"by_vr": {"LO": "keep"}}, Level.DEFAULT, {"default": "remove"},
     DEVICE_SERIAL_NUMBER),
]

#: No Table E.1-1 tag row lies in one of its tag ranges, so these levels never meet in a real
#: profile; the lookup still orders them (checked on a hand-built compiled profile).
APART = [(high, low) for high in (Level.OPTION, Level.BASIC_PROFILE)
         for low in (Level.TABLE_PATTERN, Level.OVERLAY_GROUP)]


def _merged(*fragments: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {"name": "pair"}
    for fragment in fragments:
        for key, value in fragment.items():
            if isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            elif isinstance(value, list):
                merged[key] = [*merged.get(key, []), *value]
            else:
                merged[key] = value
    return merged


def _rule(tmp_path: Path, name: str, element: tuple[int, str], *fragments: dict[str, Any]
          ) -> Rule:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(_merged(*fragments)), encoding="utf-8")
    return load_profile(str(path)).rule_for(*element)


def _weighed_levels(tmp_path: Path, element: tuple[int, str], *fragments: dict[str, Any]
                    ) -> set[Level]:
    """Levels of the pattern, VR and default rules a lookup of ``element`` weighs."""
    path = tmp_path / "weighed.yaml"
    path.write_text(yaml.safe_dump(_merged(*fragments)), encoding="utf-8")
    profile = load_profile(str(path))
    tag, vr = element
    rules = [rule for pattern, rule in profile.pattern_rules if pattern.matches(tag)]
    rules += [profile.vr_rules[vr]] if vr in profile.vr_rules else []
    return {rule.level for rule in (*rules, profile.default_rule)}


@pytest.mark.parametrize(("high", "high_fragment", "low", "low_fragment", "element"), PAIRS,
                         ids=[f"{p[0].name}>{p[2].name}" for p in PAIRS])
def test_the_higher_level_wins_for_an_element_both_match(
        tmp_path: Path, high: Level, high_fragment: dict[str, Any], low: Level,
        low_fragment: dict[str, Any] | None, element: tuple[int, str]) -> None:
    alone = _rule(tmp_path, "high", element, high_fragment)
    assert alone.level == high, alone
    if low_fragment is None:
        assert low in _weighed_levels(tmp_path, element, high_fragment)
        beaten_action = Remove()
    else:
        beaten = _rule(tmp_path, "low", element, low_fragment)
        assert beaten.level == low, beaten
        beaten_action = beaten.action
    assert alone.action.describe() != beaten_action.describe()  # the winner changes something
    for order in ((high_fragment, low_fragment), (low_fragment, high_fragment)):
        both = _rule(tmp_path, "both", element, *(f for f in order if f is not None))
        assert (both.level, both.origin, both.action.describe()) == \
            (high, alone.origin, alone.action.describe())


@pytest.mark.parametrize(("high", "low"), APART, ids=[f"{h.name}>{lo.name}" for h, lo in APART])
def test_levels_the_table_never_combines_are_ordered_too(high: Level, low: Level) -> None:
    tag = 0x60004000
    row = Rule(Keep(), f"a {high.name} row", high)
    ranged = Rule(Remove(), f"a {low.name} range", low)
    profile = CompiledProfile(
        name="apart", version="1", description="", source="", tag_rules={tag: row},
        pattern_rules=((parse_tag_text("(60xx,xxxx)"), ranged),), vr_rules={},
        default_rule=Rule(simple_action("K"), "built-in default", Level.DEFAULT),
        private=PrivatePolicy())
    assert profile.rule_for(tag, "LT") is row
    assert profile.explicit_rule(tag) is row


def test_every_pair_of_levels_is_checked() -> None:
    checked = {(p[0], p[2]) for p in PAIRS} | set(APART)
    every = {(high, low) for high, low in itertools.combinations(sorted(Level, reverse=True), 2)}
    assert checked == every


def test_steps_list_every_level_once_highest_first() -> None:
    assert [step.level for step in precedence.STEPS] == sorted(Level, reverse=True)
    assert [step.level for step in precedence.PRIVATE_STEPS] == \
        sorted(PrivateLevel, reverse=True)


def test_winner_prefers_the_first_given_among_equals() -> None:
    first = Rule(Keep(), "first", Level.BY_VR)
    second = Rule(Remove(), "second", Level.BY_VR)
    assert precedence.winner([None, first, second]) is first
    assert precedence.winner([second, Rule(Keep(), "low", Level.DEFAULT)]) is second
    assert precedence.winner([None, None]) is None


@pytest.mark.parametrize(("keep", "safe", "keep_all", "expected"), [
    (True, True, True, "profile p keep_creators"),
    (False, True, True, "option retain_safe_private (PS3.15 Table E.3.10-1)"),
    (False, False, True, "private default keep"),
    (False, False, False, None),
])
def test_private_levels_decide_in_order(keep: bool, safe: bool, keep_all: bool,
                                        expected: str | None) -> None:
    policy = PrivatePolicy(
        keep_all=keep_all,
        keep=((PrivateElementKey("ACME"), "profile p keep_creators"),) if keep else (),
        safe={(0x0009, "ACME", 0x01): "LO"} if safe else {})
    assert policy.decide(0x0009, "ACME", 0x01, "LO") == expected


def test_the_option_column_with_c_decides_whatever_the_order() -> None:
    columns = {"retain_device_identity": "K", "retain_longitudinal_modified_dates": "C"}
    for options in itertools.permutations([*columns, "clean_graphics"]):
        assert precedence.deciding_option(columns, options) == \
            "retain_longitudinal_modified_dates"
    assert precedence.deciding_option({"a": "K", "b": "K"}, ["b", "a"]) == "a"
    assert precedence.deciding_option({"a": "K"}, ["b"]) is None


def test_profiles_show_prints_the_ordering_with_rule_counts() -> None:
    research = load_profile("research")
    lines = show_profile(research)
    assert lines[0] == "profile research 1"
    start = lines.index(next(line for line in lines if line.startswith("precedence (")))
    ordering = precedence.describe(research.level_counts())
    assert lines[start:start + len(ordering)] == ordering
    numbered = [line.split(":")[0].strip() for line in ordering if line[2:3].isdigit()]
    assert numbered[:len(precedence.STEPS)] == [
        f"{n}. {step.name} ({research.level_counts()[Level(step.level)]} rule"
        f"{'' if research.level_counts()[Level(step.level)] == 1 else 's'})"
        for n, step in enumerate(precedence.STEPS, start=1)]
    assert lines[start + len(ordering):] == research.describe_rules()
    assert [*lines[:start], *lines[start + len(ordering):]] == research.describe()


def test_profiles_show_on_the_command_line_prints_the_ordering() -> None:
    plain = cli("profiles", "show", "basic")
    resolved = cli("profiles", "show", "basic", "--sop-class", "CT")
    for result in (plain, resolved):
        assert result.returncode == 0, result.stderr
        names = [step.name for step in (*precedence.STEPS, *precedence.PRIVATE_STEPS)]
        at = [result.stdout.index(f". {name}") for name in names]
        assert at == sorted(at), names


def test_level_counts_cover_every_rule() -> None:
    basic = load_profile("basic")
    counts = basic.level_counts()
    assert sum(counts.values()) == len(basic.tag_rules) + len(basic.pattern_rules) \
        + len(basic.vr_rules) + 1
    assert counts[Level.OPTION] == 0 and counts[Level.PROFILE_PATTERN] == 0
