"""Tag notation: (gggg,eeee) text, x-wildcard patterns, keywords and dictionary VRs."""

from __future__ import annotations

import pytest

from anonymizer.tags import TagPattern, dictionary_vr, format_tag, keyword_tag, parse_tag_text

PATIENT_NAME = 0x00100010
PIXEL_DATA = 0x7FE00010

# --------------------------------------------------------------------------- parse_tag_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(0010,0010)", PATIENT_NAME),
        ("0010,0010", PATIENT_NAME),
        ("  (0010,0010)  ", PATIENT_NAME),
        ("( 0010 , 0010 )", PATIENT_NAME),
        ("(7fe0,0010)", PIXEL_DATA),
        ("(7FE0,0010)", PIXEL_DATA),
        ("(7Fe0,0010)", PIXEL_DATA),
        ("(0000,0000)", 0),
        ("(FFFE,E000)", 0xFFFEE000),
    ],
)
def test_parse_single_tag(text: str, expected: int) -> None:
    parsed = parse_tag_text(text)
    assert isinstance(parsed, int)
    assert parsed == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PatientName",
        "(0010,001)",  # three digits
        "(00010,0010)",  # five digits
        "(00ZZ,0010)",  # not hex
        "(0010;0010)",
        "(00100010)",  # no comma
        "0x00100010",
        "0010,0010,0010",
        "(0010,0010)x",
        "(yy10,0010)",
    ],
)
def test_parse_invalid_text_is_none(text: str) -> None:
    assert parse_tag_text(text) is None


def test_overlay_pattern_compiles_to_mask() -> None:
    pattern = parse_tag_text("(60xx,3000)")
    assert isinstance(pattern, TagPattern)
    assert pattern.mask == 0xFF00FFFF
    assert pattern.value == 0x60003000
    assert pattern.text == "(60XX,3000)"
    assert pattern.specificity == 24


def test_overlay_pattern_matches_every_overlay_group_only_for_element_3000() -> None:
    pattern = parse_tag_text("(60xx,3000)")
    assert isinstance(pattern, TagPattern)
    assert pattern.matches(0x60003000)
    assert pattern.matches(0x601E3000)
    assert pattern.matches(0x60FE3000)
    assert not pattern.matches(0x60003001)
    assert not pattern.matches(0x60004000)
    assert not pattern.matches(0x61003000)
    assert not pattern.matches(0x50003000)


def test_curve_pattern_matches_any_element_of_groups_50xx() -> None:
    pattern = parse_tag_text("(50xx,xxxx)")
    assert isinstance(pattern, TagPattern)
    assert pattern.mask == 0xFF000000
    assert pattern.value == 0x50000000
    assert pattern.specificity == 8
    assert pattern.text == "(50XX,XXXX)"
    for tag in (0x50000000, 0x50000010, 0x501E3000, 0x50FEFFFF):
        assert pattern.matches(tag), hex(tag)
    for tag in (0x60003000, 0x51000010, 0x05000010, 0x00105000):
        assert not pattern.matches(tag), hex(tag)


def test_pattern_upper_and_lower_x_are_the_same() -> None:
    lower = parse_tag_text("(60xx,3000)")
    upper = parse_tag_text("(60XX,3000)")
    mixed = parse_tag_text("60xX,3000")
    assert lower == upper == mixed


def test_pattern_wildcards_inside_element() -> None:
    pattern = parse_tag_text("(0008,00xx)")
    assert isinstance(pattern, TagPattern)
    assert pattern.mask == 0xFFFFFF00
    assert pattern.value == 0x00080000
    assert pattern.matches(0x00080050)
    assert pattern.matches(0x000800FF)
    assert not pattern.matches(0x00080100)
    assert not pattern.matches(0x00090050)


def test_all_wildcards_match_everything_with_zero_specificity() -> None:
    pattern = parse_tag_text("(xxxx,xxxx)")
    assert isinstance(pattern, TagPattern)
    assert pattern.specificity == 0
    assert pattern.matches(0) and pattern.matches(0xFFFFFFFF) and pattern.matches(PATIENT_NAME)


def test_specificity_orders_patterns_from_narrow_to_loose() -> None:
    texts = ["(xxxx,xxxx)", "(60xx,3000)", "(60xx,xxxx)", "(6000,30x0)"]
    patterns = [parse_tag_text(t) for t in texts]
    assert all(isinstance(p, TagPattern) for p in patterns)
    ordered = sorted(patterns, key=lambda p: -p.specificity)  # type: ignore[union-attr]
    assert [p.text for p in ordered] == [  # type: ignore[union-attr]
        "(6000,30X0)", "(60XX,3000)", "(60XX,XXXX)", "(XXXX,XXXX)"]


# --------------------------------------------------------------------------- format_tag


@pytest.mark.parametrize(
    ("tag", "text"),
    [
        (PATIENT_NAME, "(0010,0010)"),
        (PIXEL_DATA, "(7FE0,0010)"),
        (0, "(0000,0000)"),
        (0xFFFEE000, "(FFFE,E000)"),
        (0x00091001, "(0009,1001)"),
        (0x601E3000, "(601E,3000)"),
    ],
)
def test_format_tag(tag: int, text: str) -> None:
    assert format_tag(tag) == text


@pytest.mark.parametrize("tag", [0, PATIENT_NAME, PIXEL_DATA, 0x00091001, 0xFFFEE0DD])
def test_format_then_parse_round_trips(tag: int) -> None:
    assert parse_tag_text(format_tag(tag)) == tag


# --------------------------------------------------------------------------- keyword_tag


@pytest.mark.parametrize(
    ("keyword", "tag"),
    [
        ("PatientName", PATIENT_NAME),
        ("PatientID", 0x00100020),
        ("AccessionNumber", 0x00080050),
        ("PixelData", PIXEL_DATA),
        ("DeviceSerialNumber", 0x00181000),
    ],
)
def test_keyword_tag(keyword: str, tag: int) -> None:
    assert keyword_tag(keyword) == tag


@pytest.mark.parametrize("keyword", ["PatientNme", "patientname", "PATIENTNAME", "Patient Name"])
def test_unknown_keyword_is_none(keyword: str) -> None:
    assert keyword_tag(keyword) is None


def test_empty_keyword_is_none() -> None:
    # pydicom's dictionary has retired entries whose keyword is "", so a plain
    # tag_for_keyword("") returns (300A,0782); an empty name must name no tag.
    assert keyword_tag("") is None


# --------------------------------------------------------------------------- dictionary_vr


@pytest.mark.parametrize(
    ("tag", "vr"),
    [
        (PATIENT_NAME, "PN"),
        (0x00100020, "LO"),
        (0x00080020, "DA"),
        (0x00080018, "UI"),
        (0x00280010, "US"),
        (0x0040A730, "SQ"),
    ],
)
def test_dictionary_vr(tag: int, vr: str) -> None:
    assert dictionary_vr(tag) == vr


@pytest.mark.parametrize(
    ("tag", "vr"),
    [
        (0x00280106, "US"),  # SmallestImagePixelValue: "US or SS"
        (0x00280107, "US"),  # LargestImagePixelValue: "US or SS"
        (PIXEL_DATA, "OB"),  # PixelData: "OB or OW"
    ],
)
def test_dictionary_vr_of_ambiguous_tag_is_the_first(tag: int, vr: str) -> None:
    assert dictionary_vr(tag) == vr


def test_dictionary_vr_of_repeating_group_tag() -> None:
    assert dictionary_vr(0x60003000) == "OB"  # OverlayData, "OB or OW"
    assert dictionary_vr(0x601E3000) == "OB"
    assert dictionary_vr(0x60004000) == "LT"  # OverlayComments


@pytest.mark.parametrize("tag", [0x00100011, 0x00091001, 0x00110010, 0xFFFFFFFF])
def test_dictionary_vr_of_unknown_or_private_tag_is_none(tag: int) -> None:
    assert dictionary_vr(tag) is None
