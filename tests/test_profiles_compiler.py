"""Compiled rules: tag patterns, which rule wins (children over parents, tags over
keywords, patterns over the table, ``by_vr``, ``default``), the HIPAA age cap, origins.

The pairwise ordering of every precedence level is in ``test_precedence.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from profile_helpers import (
    ACCESSION_NUMBER,
    EVALUATOR_NAME,
    MANUFACTURER,
    PATIENT_AGE,
    PATIENT_ID,
    PATIENT_NAME,
    PATIENT_SEX,
    ROWS,
    write,
)

from anonymizer.actions import ByType, Dummy, Empty, Keep, RemapUID, Remove
from anonymizer.profiles import load_profile
from anonymizer.rules import CompiledProfile
from anonymizer.transforms import CapAge, CleanBitmap, Pseudonym


@pytest.fixture(scope="module")
def builtins() -> dict[str, CompiledProfile]:
    return {name: load_profile(name) for name in ("basic", "default", "research")}


def test_overlay_pattern_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "overlay.yaml", """\
        name: overlay
        default: keep
        actions:
          "(60xx,3000)": remove
        """)
    profile = load_profile(str(path))
    assert isinstance(profile.rule_for(0x60003000, "OW").action, Remove)
    assert isinstance(profile.rule_for(0x601E3000, "OW").action, Remove)
    assert profile.rule_for(0x601E3000, "OW").origin == "profile overlay pattern (60XX,3000)"
    # the rest of an overlay group goes with its Overlay Data: no half overlay module
    rest = profile.rule_for(0x60003001, "OW")
    assert isinstance(rest.action, Remove)
    assert rest.origin == "profile overlay pattern (60XX,3000): the whole overlay group goes"
    assert isinstance(profile.rule_for(0x00283000, "SQ").action, Keep)


def test_curve_pattern_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "curve.yaml", """\
        name: curve
        default: keep
        actions:
          "(50xx,xxxx)": remove
        """)
    profile = load_profile(str(path))
    for tag in (0x50000000, 0x50000010, 0x501E3000, 0x50FEFFFF):
        assert isinstance(profile.rule_for(tag, "US").action, Remove), hex(tag)
    for tag in (0x51000010, 0x60003000, 0x00105000):
        assert isinstance(profile.rule_for(tag, "US").action, Keep), hex(tag)


def test_more_specific_pattern_wins_whatever_the_order(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", """\
        name: spec
        default: keep
        actions:
          "(xxxx,xxxx)": empty
          "(60xx,xxxx)": remove
          "(60xx,3000)": keep
          "(6000,30x0)": dummy
        """)
    profile = load_profile(str(path))
    assert isinstance(profile.rule_for(0x60003010, "OW").action, Dummy)
    assert isinstance(profile.rule_for(0x60003000, "OW").action, Dummy)
    assert isinstance(profile.rule_for(0x60023000, "OW").action, Keep)
    assert isinstance(profile.rule_for(0x60024000, "LT").action, Remove)
    assert isinstance(profile.rule_for(0x00280010, "US").action, Empty)
    specificity = [p.specificity for p, _ in profile.pattern_rules]
    assert specificity == sorted(specificity, reverse=True)


def test_explicit_tag_beats_pattern(tmp_path: Path) -> None:
    path = write(tmp_path, "expl.yaml", """\
        name: expl
        actions:
          "(0010,xxxx)": remove
          PatientSex: keep
        """)
    profile = load_profile(str(path))
    assert isinstance(profile.rule_for(PATIENT_SEX, "CS").action, Keep)
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Remove)


def test_basic_profile_overlay_and_curve_patterns(builtins: dict[str, CompiledProfile]) -> None:
    basic = builtins["basic"]
    texts = {p.text for p, _ in basic.pattern_rules}
    assert {"(50XX,XXXX)", "(60XX,3000)", "(60XX,4000)"} <= texts
    rule = basic.rule_for(0x601E3000, "OW")
    assert isinstance(rule.action, Remove)
    assert "PS3.15 Basic Profile" in rule.origin and "Overlay Data" in rule.origin
    assert "Curve Data" in basic.rule_for(0x50020010, "US").origin
    # an overlay element the table does not list (OverlayRows) goes with Overlay Data
    rows = basic.explicit_rule(0x60000010)
    assert rows is not None and isinstance(rows.action, Remove)
    assert rows.origin.endswith("the whole overlay group goes")


def test_clean_graphics_option_on_overlay_data(tmp_path: Path) -> None:
    path = write(tmp_path, "graphics.yaml", """\
        name: graphics
        extends: basic
        options: [clean_graphics]
        """)
    rule = load_profile(str(path)).rule_for(0x60023000, "OW")
    assert isinstance(rule.action, CleanBitmap)
    assert "option clean_graphics" in rule.origin


def test_child_overrides_parent_keyword_rule(tmp_path: Path) -> None:
    parent = write(tmp_path, "parent.yaml", """\
        name: parent
        actions:
          PatientName: remove
          PatientID: remove
        """)
    child = write(tmp_path, "child.yaml", """\
        name: child
        extends: parent.yaml
        actions:
          PatientName: keep
        """)
    profile = load_profile(str(child))
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Keep)
    assert profile.rule_for(PATIENT_NAME, "PN").origin == "profile child keyword PatientName"
    assert isinstance(profile.rule_for(PATIENT_ID, "LO").action, Remove)
    assert profile.rule_for(PATIENT_ID, "LO").origin == "profile parent keyword PatientID"
    assert profile.name == "child"
    assert profile.source == str(child)
    assert isinstance(load_profile(str(parent)).rule_for(PATIENT_NAME, "PN").action, Remove)


def test_child_keyword_overrides_parent_tag_key(tmp_path: Path) -> None:
    write(tmp_path, "parent.yaml", """\
        name: parent
        actions:
          "(0010,0010)": remove
        """)
    child = write(tmp_path, "child.yaml", """\
        name: child
        extends: parent.yaml
        actions:
          PatientName: keep
        """)
    assert isinstance(load_profile(str(child)).rule_for(PATIENT_NAME, "PN").action, Keep)


@pytest.mark.parametrize("tag_first", [True, False])
def test_tag_key_beats_keyword_key_in_the_same_profile(tmp_path: Path, tag_first: bool) -> None:
    entries = ['  "(0010,0010)": keep', "  PatientName: remove"]
    if not tag_first:
        entries.reverse()
    path = tmp_path / "both.yaml"
    path.write_text("name: both\nactions:\n" + "\n".join(entries) + "\n", encoding="utf-8")
    rule = load_profile(str(path)).rule_for(PATIENT_NAME, "PN")
    assert isinstance(rule.action, Keep)
    assert rule.origin == "profile both tag (0010,0010)"


def test_user_pattern_beats_table_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "acc.yaml", """\
        name: acc
        extends: basic
        actions:
          "(0008,00xx)": keep
        """)
    profile = load_profile(str(path))
    rule = profile.rule_for(ACCESSION_NUMBER, "SH")
    assert isinstance(rule.action, Keep)
    assert rule.origin == "profile acc pattern (0008,00XX)"
    # outside the pattern the table still rules
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Empty)
    assert isinstance(load_profile("basic").rule_for(ACCESSION_NUMBER, "SH").action, Empty)


def test_user_pattern_beats_table_overlay_pattern(tmp_path: Path) -> None:
    path = write(tmp_path, "ov.yaml", """\
        name: ov
        extends: basic
        actions:
          "(60xx,xxxx)": keep
        """)
    rule = load_profile(str(path)).rule_for(0x60023000, "OW")
    assert isinstance(rule.action, Keep)
    assert rule.origin == "profile ov pattern (60XX,XXXX)"


def test_by_vr_only_for_tags_not_otherwise_ruled(tmp_path: Path) -> None:
    path = write(tmp_path, "byvr.yaml", """\
        name: byvr
        default: keep
        by_vr:
          LO: remove
          PN: empty
        actions:
          PatientID: keep
          "(0010,10xx)": dummy
        """)
    profile = load_profile(str(path))
    assert isinstance(profile.rule_for(PATIENT_ID, "LO").action, Keep)  # keyword
    assert isinstance(profile.rule_for(0x00101040, "LO").action, Dummy)  # pattern
    other_lo = profile.rule_for(MANUFACTURER, "LO")
    # a removal by VR resolves by Type: the VR says nothing about the IOD
    assert other_lo.action == ByType("X/Z/D")
    assert other_lo.origin == "profile byvr by VR LO: remove; Type 1 -> dummy, Type 2 -> empty"
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Empty)
    assert isinstance(profile.rule_for(ROWS, "US").action, Keep)
    assert profile.rule_for(ROWS, "US").origin == "profile byvr default"
    # by_vr is a fallback: it is not an explicit rule
    assert profile.explicit_rule(MANUFACTURER) is None


def test_by_vr_in_basic_applies_to_unlisted_tags(builtins: dict[str, CompiledProfile]) -> None:
    basic = builtins["basic"]
    unlisted = basic.rule_for(EVALUATOR_NAME, "PN")
    assert unlisted.action == ByType("X/Z/D")
    assert unlisted.origin == "profile basic by VR PN: remove; Type 1 -> dummy, Type 2 -> empty"
    listed = basic.rule_for(PATIENT_NAME, "PN")
    assert isinstance(listed.action, Empty)
    assert "PS3.15 Basic Profile" in listed.origin
    assert isinstance(basic.rule_for(0x00209161, "UI").action, RemapUID)  # unlisted UID
    assert isinstance(basic.rule_for(0x00080016, "UI").action, Keep)  # SOPClassUID


@pytest.mark.parametrize(("default", "action"), [("keep", Keep), ("remove", Remove)])
def test_default(tmp_path: Path, default: str, action: type) -> None:
    path = write(tmp_path, "default.yaml", f"""\
        name: d
        default: {default}
        """)
    rule = load_profile(str(path)).rule_for(ROWS, "US")
    assert isinstance(rule.action, action)
    assert rule.origin == "profile d default"


def test_no_default_keeps(tmp_path: Path) -> None:
    path = write(tmp_path, "nodefault.yaml", "name: nd\n")
    rule = load_profile(str(path)).rule_for(ROWS, "US")
    assert isinstance(rule.action, Keep)
    assert rule.origin == "built-in default"


def test_child_default_overrides_parent(tmp_path: Path) -> None:
    path = write(tmp_path, "strict.yaml", """\
        name: strict
        extends: basic
        default: remove
        """)
    profile = load_profile(str(path))
    assert isinstance(profile.rule_for(ROWS, "US").action, Remove)
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Empty)  # table still rules


def test_kept_patient_age_gets_the_cap(tmp_path: Path) -> None:
    path = write(tmp_path, "age.yaml", """\
        name: age
        extends: basic
        actions:
          PatientAge: keep
        """)
    rule = load_profile(str(path)).rule_for(PATIENT_AGE, "AS")
    assert isinstance(rule.action, CapAge)
    assert rule.origin == "profile age keyword PatientAge, HIPAA age cap"


def test_origin_strings(builtins: dict[str, CompiledProfile]) -> None:
    default, research = builtins["default"], builtins["research"]
    assert default.rule_for(PATIENT_ID, "LO").origin == "profile default keyword PatientID"
    assert isinstance(default.rule_for(PATIENT_ID, "LO").action, Pseudonym)
    assert default.rule_for(MANUFACTURER, "LO").origin == "profile basic keyword Manufacturer"
    assert default.rule_for(ACCESSION_NUMBER, "SH").origin == \
        "PS3.15 Basic Profile (Accession Number)"
    assert research.rule_for(ACCESSION_NUMBER, "SH").origin == \
        "profile research keyword AccessionNumber"
    assert research.rule_for(ACCESSION_NUMBER, "SH").action == Pseudonym("ACC-{hash:12}")
