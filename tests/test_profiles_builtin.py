"""The built-in profiles: they compile, their fingerprints, what they say and keep."""

from __future__ import annotations

from pathlib import Path

import pytest
from profile_helpers import (
    DEVICE_SERIAL_NUMBER,
    write,
)

from anonymizer.actions import ByType, Dummy, Empty, Remove
from anonymizer.profiles import builtin_profile_names, load_profile
from anonymizer.rules import CompiledProfile
from anonymizer.standard import OPTIONS
from anonymizer.tags import TagPattern


@pytest.fixture(scope="module")
def builtins() -> dict[str, CompiledProfile]:
    return {name: load_profile(name) for name in ("basic", "default", "research")}


def test_builtin_names() -> None:
    names = builtin_profile_names()
    assert {"basic", "default", "research"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", ["basic", "default", "research"])
def test_builtin_compiles(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.source == f"{name} (built-in)"
    assert len(profile.tag_rules) > 500  # Table E.1-1 has ~600 single-tag rows
    assert profile.method_codes[0].value == "113100"


def test_every_builtin_name_compiles() -> None:
    for name in builtin_profile_names():
        assert load_profile(name).name == name


def test_fingerprints_differ_and_are_stable() -> None:
    first = {name: load_profile(name).fingerprint() for name in ("basic", "default", "research")}
    second = {name: load_profile(name).fingerprint() for name in ("basic", "default", "research")}
    assert first == second
    assert len(set(first.values())) == 3
    assert all(len(f) == 64 and int(f, 16) >= 0 for f in first.values())


def test_fingerprint_changes_with_one_rule(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "name: fp\nextends: basic\nactions:\n  PatientSex: keep\n")
    b = write(tmp_path, "b.yaml", "name: fp\nextends: basic\nactions:\n  PatientSex: remove\n")
    same = write(tmp_path, "c.yaml", "name: fp\nextends: basic\n\nactions: {PatientSex: keep}\n")
    assert load_profile(str(a)).fingerprint() != load_profile(str(b)).fingerprint()
    assert load_profile(str(a)).fingerprint() == load_profile(str(same)).fingerprint()


def test_research_describe_lists_every_option(builtins: dict[str, CompiledProfile]) -> None:
    research = builtins["research"]
    expected = ("retain_safe_private", "retain_longitudinal_modified_dates",
                "retain_patient_characteristics", "retain_device_identity",
                "clean_descriptors", "clean_structured_content")
    assert research.options == expected
    assert set(expected) <= set(OPTIONS)
    lines = research.describe()
    options_line = next(line for line in lines if line.startswith("options: "))
    for option in expected:
        assert option in options_line
    assert any("DeviceSerialNumber" in line and "retain_device_identity" in line
               for line in lines)
    assert "options: (none)" in builtins["basic"].describe()


def test_research_settings_and_private(builtins: dict[str, CompiledProfile]) -> None:
    research = builtins["research"]
    assert research.settings.pseudonym_format == "SUBJ-{hash:8}"
    assert research.settings.dates_modified == "MODIFIED"
    assert research.private.safe  # Table E.3.10-1 entries
    assert builtins["basic"].settings.dates_modified == "REMOVED"
    assert not builtins["basic"].private.safe
    assert builtins["default"].layout is not None


def test_bytype_resolution_of_device_serial_number(builtins: dict[str, CompiledProfile]) -> None:
    action = builtins["basic"].rule_for(DEVICE_SERIAL_NUMBER, "LO").action
    assert isinstance(action, ByType)
    assert isinstance(action.resolve("1"), Dummy)
    assert isinstance(action.resolve("2"), Empty)
    assert isinstance(action.resolve("3"), Remove)
    assert isinstance(action.resolve(None), Remove)


def test_compiled_profile_is_frozen(builtins: dict[str, CompiledProfile]) -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        builtins["basic"].name = "changed"  # type: ignore[misc]


def test_pattern_rules_hold_tag_patterns(builtins: dict[str, CompiledProfile]) -> None:
    assert all(isinstance(p, TagPattern) for p, _ in builtins["research"].pattern_rules)
