"""The PS3.15 base layer and its options: which options exist and combine, and what an
option's column does to the Basic Profile's rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from profile_helpers import (
    DATE_OF_LAST_CALIBRATION,
    DEVICE_SERIAL_NUMBER,
    INSTITUTION_NAME,
    PATIENT_AGE,
    STUDY_DATE,
    assert_at,
    compile_error,
    write,
)

from anonymizer.actions import ByType, Keep, Remove
from anonymizer.profiles import load_profile
from anonymizer.rules import CompiledProfile
from anonymizer.transforms import CapAge, ShiftDate


@pytest.fixture(scope="module")
def builtins() -> dict[str, CompiledProfile]:
    return {name: load_profile(name) for name in ("basic", "default", "research")}


def test_unknown_option(tmp_path: Path) -> None:
    path = write(tmp_path, "opt.yaml", """\
        name: opt
        standard: ps3.15
        options:
          - retain_uids
          - retain_everything
        """)
    assert_at(compile_error(path), path, 5, "unknown option 'retain_everything'")


def test_pixel_option_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "pixel.yaml", """\
        name: pixel
        standard: ps3.15
        options:
          - clean_pixel_data
        """)
    assert_at(compile_error(path), path, 4, "clean_pixel_data", "pixel data")


def test_option_without_standard(tmp_path: Path) -> None:
    path = write(tmp_path, "nostd.yaml", """\
        name: nostd
        default: keep
        options:
          - retain_uids
        """)
    assert_at(compile_error(path), path, 4, "standard: ps3.15")


def test_option_inherits_standard_from_parent(tmp_path: Path) -> None:
    path = write(tmp_path, "child.yaml", """\
        name: child
        extends: basic
        options:
          - retain_uids
        """)
    assert load_profile(str(path)).options == ("retain_uids",)


def test_mutually_exclusive_date_options(tmp_path: Path) -> None:
    path = write(tmp_path, "dates.yaml", """\
        name: dates
        standard: ps3.15
        options:
          - retain_longitudinal_full_dates
          - retain_uids
          - retain_longitudinal_modified_dates
        """)
    assert_at(compile_error(path), path, 6, "retain_longitudinal_full_dates",
              "retain_longitudinal_modified_dates", "exclude")


def test_mutually_exclusive_date_options_line_is_the_conflicting_option(tmp_path: Path) -> None:
    # The error must point at the option that makes the conflict (line 5), not at
    # whatever option happens to be listed last (retain_uids, line 6).
    path = write(tmp_path, "dates2.yaml", """\
        name: dates2
        standard: ps3.15
        options:
          - retain_longitudinal_full_dates
          - retain_longitudinal_modified_dates
          - retain_uids
        """)
    assert_at(compile_error(path), path, 5, "exclude")


def test_mutually_exclusive_date_options_across_extends(tmp_path: Path) -> None:
    path = write(tmp_path, "full.yaml", """\
        name: full
        extends: research
        options:
          - retain_longitudinal_full_dates
        """)
    assert_at(compile_error(path), path, 4, "exclude")


def test_option_column_beats_basic_profile(builtins: dict[str, CompiledProfile]) -> None:
    basic, research = builtins["basic"], builtins["research"]
    # research has no retain_institution_identity: InstitutionName keeps its Basic rule
    institution = research.rule_for(INSTITUTION_NAME, "LO")
    assert not isinstance(institution.action, Keep)
    assert institution.action == ByType("X/Z/D")
    assert "PS3.15 Basic Profile" in institution.origin
    # retain_device_identity: K instead of X/Z/D
    assert basic.rule_for(DEVICE_SERIAL_NUMBER, "LO").action == ByType("X/Z/D")
    assert "PS3.15 Basic Profile" in basic.rule_for(DEVICE_SERIAL_NUMBER, "LO").origin
    device = research.rule_for(DEVICE_SERIAL_NUMBER, "LO")
    assert isinstance(device.action, Keep)
    assert "option retain_device_identity" in device.origin
    # retain_patient_characteristics: K, with the HIPAA age cap, instead of X
    assert isinstance(basic.rule_for(PATIENT_AGE, "AS").action, Remove)
    age = research.rule_for(PATIENT_AGE, "AS")
    assert isinstance(age.action, CapAge)
    assert "option retain_patient_characteristics" in age.origin
    assert "HIPAA age cap" in age.origin
    # retain_longitudinal_modified_dates: C on a DA is a shift
    study_date = research.rule_for(STUDY_DATE, "DA")
    assert isinstance(study_date.action, ShiftDate)
    assert "option retain_longitudinal_modified_dates" in study_date.origin


def test_institution_kept_with_retain_institution_identity(tmp_path: Path) -> None:
    path = write(tmp_path, "inst.yaml", """\
        name: inst
        extends: research
        options: [retain_institution_identity]
        """)
    rule = load_profile(str(path)).rule_for(INSTITUTION_NAME, "LO")
    assert isinstance(rule.action, Keep)
    assert "option retain_institution_identity" in rule.origin


def test_option_order_does_not_change_the_rules(tmp_path: Path) -> None:
    # Date of Last Calibration has K under retain_device_identity and C under
    # retain_longitudinal_modified_dates; the same set of options must give the same
    # rules whatever order the YAML lists them in.
    one = write(tmp_path, "one.yaml", """\
        name: order
        standard: ps3.15
        options: [retain_device_identity, retain_longitudinal_modified_dates]
        """)
    two = write(tmp_path, "two.yaml", """\
        name: order
        standard: ps3.15
        options: [retain_longitudinal_modified_dates, retain_device_identity]
        """)
    first, second = load_profile(str(one)), load_profile(str(two))
    assert first.tag_rules[DATE_OF_LAST_CALIBRATION].action == \
        second.tag_rules[DATE_OF_LAST_CALIBRATION].action
    actions_one = {t: r.action for t, r in first.tag_rules.items()}
    actions_two = {t: r.action for t, r in second.tag_rules.items()}
    differing = sorted(f"{t:08X}" for t in actions_one if actions_one[t] != actions_two[t])
    assert differing == []
