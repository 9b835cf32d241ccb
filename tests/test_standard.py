"""Facts from the DICOM Standard carried as package data (anonymizer.standard)."""

from __future__ import annotations

import json
from collections import Counter
from importlib.resources import files

import pytest
from pydicom.datadict import tag_for_keyword

from anonymizer import standard
from anonymizer.standard import (
    OPTIONS,
    PIXEL_OPTIONS,
    ConfidentialityRow,
    MethodCode,
    SafePrivateAttribute,
    attribute_type,
    confidentiality_row,
    confidentiality_rows,
    known_sop_class,
    method_code,
    safe_private_attributes,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
CR = "1.2.840.10008.5.1.4.1.1.1"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"

PATIENT_ID = 0x00100020
SOURCE_PATIENT_GROUP_ID_SEQ = 0x00100026
DEVICE_SERIAL_NUMBER = 0x00181000
CONTENT_DATE = 0x00080023
ACQUISITION_DATETIME = 0x0008002A
SOURCE_IMAGE_SEQ = 0x00082112
PER_FRAME_FG_SEQ = 0x52009230
DERIVATION_IMAGE_SEQ = 0x00089124
RT_PLAN_DATE = 0x300A0006


def _data(name: str) -> dict:
    return json.loads(files("anonymizer.standard").joinpath("data").joinpath(name).read_text())


def _rows_by_tag() -> dict[str, ConfidentialityRow]:
    return {r.tag: r for r in confidentiality_rows()}


# --------------------------------------------------------------------------- Table E.1-1


def test_options_order_and_pixel_options() -> None:
    assert OPTIONS == (
        "retain_safe_private",
        "retain_uids",
        "retain_device_identity",
        "retain_institution_identity",
        "retain_patient_characteristics",
        "retain_longitudinal_full_dates",
        "retain_longitudinal_modified_dates",
        "clean_descriptors",
        "clean_structured_content",
        "clean_graphics",
    )
    assert PIXEL_OPTIONS == ("clean_pixel_data", "clean_recognizable_visual_features")


def test_edition_header_matches_constant() -> None:
    data = _data("confidentiality_profile.json")
    assert data["edition"]["table"] == "PS3.15 Table E.1-1"
    assert data["edition"]["edition"] == standard.TABLE_EDITION
    assert standard.TABLE_EDITION == "2024b (innolitics extract) + 2023b DocBook"


def test_row_count_and_unique_tags() -> None:
    rows = confidentiality_rows()
    assert len(rows) == 621
    assert len({r.tag for r in rows}) == 621
    assert confidentiality_rows() is rows  # loaded once


def test_basic_profile_code_counts() -> None:
    counts = Counter(r.basic for r in confidentiality_rows())
    assert counts == {
        "X": 384,
        "D": 92,
        "U": 54,
        "Z": 42,
        "X/D": 22,
        "X/Z": 11,
        "X/Z/D": 8,
        "Z/D": 6,
        "X/Z/U*": 2,
    }


def test_option_code_counts() -> None:
    counts = {
        o: Counter(r.options[o] for r in confidentiality_rows() if o in r.options) for o in OPTIONS
    }
    assert counts == {
        "retain_safe_private": {"C": 1},
        "retain_uids": {"K": 59},
        "retain_device_identity": {"K": 46, "C": 11},
        "retain_institution_identity": {"K": 10},
        "retain_patient_characteristics": {"K": 9, "C": 4},
        "retain_longitudinal_full_dates": {"K": 165},
        "retain_longitudinal_modified_dates": {"C": 165},
        "clean_descriptors": {"C": 125},
        "clean_structured_content": {"C": 3},
        "clean_graphics": {"C": 4},
    }
    assert Counter(r.in_std_comp_iod for r in confidentiality_rows()) == {True: 438, False: 183}


def test_options_only_hold_non_empty_codes_and_are_read_only() -> None:
    row = _rows_by_tag()["(0008,0022)"]  # Acquisition Date
    assert dict(row.options) == {
        "retain_longitudinal_full_dates": "K",
        "retain_longitudinal_modified_dates": "C",
    }
    with pytest.raises(TypeError):
        row.options["clean_descriptors"] = "C"  # type: ignore[index]
    assert all(set(r.options) <= set(OPTIONS) for r in confidentiality_rows())
    assert all(v in ("K", "C") for r in confidentiality_rows() for v in r.options.values())


def test_plain_row_fields() -> None:
    row = _rows_by_tag()["(0010,0020)"]
    assert row.name == "Patient ID"
    assert row.keyword == "PatientID"
    assert row.basic == "Z/D"  # 2024b; 2023b has Z
    assert not row.retired and row.in_std_comp_iod
    assert row.tag_int == PATIENT_ID
    assert not row.is_pattern and not row.is_private
    hash(row)  # frozen dataclass stays hashable despite the options mapping


def test_pattern_rows() -> None:
    rows = _rows_by_tag()
    curve, overlay_data, overlay_comments = (
        rows["(50XX,XXXX)"],
        rows["(60XX,3000)"],
        rows["(60XX,4000)"],
    )
    private = rows["(GGGG,EEEE) WHERE GGGG IS ODD"]
    assert (curve.name, overlay_data.name, overlay_comments.name) == (
        "Curve Data",
        "Overlay Data",
        "Overlay Comments",
    )
    for row in (curve, overlay_data, overlay_comments, private):
        assert row.is_pattern
        assert row.tag_int is None
        assert row.keyword == ""
        assert row.basic == "X"
    for row in (curve, overlay_data, overlay_comments):
        assert row.options == {"clean_graphics": "C"}
    assert curve.retired and overlay_comments.retired and not overlay_data.retired
    assert private.is_private and private.name == "Private Attributes"
    assert private.options == {"retain_safe_private": "C"}
    assert sum(r.is_pattern for r in confidentiality_rows()) == 4


def test_pattern_matching() -> None:
    rows = _rows_by_tag()
    assert rows["(60XX,3000)"].matches(0x60023000)
    assert not rows["(60XX,3000)"].matches(0x60033000)  # odd group: private
    assert not rows["(60XX,3000)"].matches(0x60024000)
    assert rows["(50XX,XXXX)"].matches(0x501E1234)
    assert rows["(GGGG,EEEE) WHERE GGGG IS ODD"].matches(0x00E11021)
    assert confidentiality_row(0x60223000) is rows["(60XX,3000)"]
    assert confidentiality_row(0x60004000) is rows["(60XX,4000)"]
    assert confidentiality_row(0x00091001) is rows["(GGGG,EEEE) WHERE GGGG IS ODD"]
    assert confidentiality_row(PATIENT_ID) is rows["(0010,0020)"]
    assert confidentiality_row(0x00280010) is None  # Rows: not in the table


def test_edition_reconciliation() -> None:
    rows = _rows_by_tag()
    # 2023b lists the three AE Titles twice (C and K); 2024b keeps C.
    for tag in ("(0040,0241)", "(0040,0001)", "(0032,1021)"):
        assert rows[tag].options == {"retain_device_identity": "C"}
    # Only in 2024b: Retired defaults to N.
    for tag in ("(0012,0022)", "(0012,0023)", "(0018,1204)", "(3006,002D)"):
        assert not rows[tag].retired
    # Retired comes from the 2023b table (pydicom disagrees for (0038,0004)).
    assert rows["(0032,1021)"].retired
    assert not rows["(0038,0004)"].retired
    assert sum(r.retired for r in confidentiality_rows()) == 99
    # Names are whitespace-normalized (2023b zero-width spaces, innolitics newlines).
    assert all(" ".join(r.name.split()) == r.name for r in confidentiality_rows())
    assert all("\u200b" not in r.name for r in confidentiality_rows())
    assert rows["(0088,0200)"].name == "Icon Image Sequence (see Note 11)"
    assert all(r.keyword for r in confidentiality_rows() if not r.is_pattern)


# --------------------------------------------------------------------------- Attribute types


@pytest.mark.parametrize(
    ("sop_class", "tag", "path", "expected"),
    [
        (CT, PATIENT_ID, (), "2"),
        (CT, PATIENT_ID, (SOURCE_PATIENT_GROUP_ID_SEQ,), "1"),
        (CT, DEVICE_SERIAL_NUMBER, (), "3"),
        (ENHANCED_CT, DEVICE_SERIAL_NUMBER, (), "1"),  # strictest of 3 and 1
        (CT, CONTENT_DATE, (), "2"),  # 2C -> 2
        (ENHANCED_CT, CONTENT_DATE, (), "1"),
        (ENHANCED_CT, ACQUISITION_DATETIME, (), "1"),  # 1C -> 1
        (CT, ACQUISITION_DATETIME, (), "3"),
        (ENHANCED_CT, SOURCE_IMAGE_SEQ, (PER_FRAME_FG_SEQ, DERIVATION_IMAGE_SEQ), "2"),
        (CT, SOURCE_IMAGE_SEQ, (), "3"),
        (RT_PLAN, RT_PLAN_DATE, (), "2"),
    ],
)
def test_worked_example(sop_class: str, tag: int, path: tuple[int, ...], expected: str) -> None:
    assert attribute_type(sop_class, tag, path) == expected


def test_unknown_and_known_sop_classes() -> None:
    assert attribute_type("1.2.3.4.5", PATIENT_ID, ()) is None
    assert not known_sop_class("1.2.3.4.5")
    assert known_sop_class(CT) and known_sop_class(ENHANCED_CT) and known_sop_class(RT_PLAN)
    # Known SOP Class, tag not in its IOD: Type 3.
    assert attribute_type(CT, RT_PLAN_DATE, ()) == "3"
    # Known SOP Class, tag at a place its IOD does not have: Type 3.
    assert attribute_type(CT, PATIENT_ID, (0x0040A730, 0x0040A730)) == "3"
    # Attributes Table E.1-1 does not list have their Types too (Rows: Type 1 in CT).
    assert attribute_type(CT, 0x00280010, ()) == "1"
    assert known_sop_class(MEDIA_STORAGE_DIRECTORY)
    assert attribute_type(MEDIA_STORAGE_DIRECTORY, PATIENT_ID, ()) == "3"
    # Padding of a raw UI value is ignored.
    assert attribute_type(CT + "\x00", PATIENT_ID) == "2"


@pytest.mark.parametrize(
    ("sop_class", "keyword", "path", "expected"),
    [
        # Not in Table E.1-1, but a by-VR removal must respect them.
        (SEGMENTATION, "SegmentLabel", ("SegmentSequence",), "1"),
        (SEGMENTATION, "ContentDescription", (), "2"),
        (ENHANCED_CT, "StackID", ("PerFrameFunctionalGroupsSequence", "FrameContentSequence"),
         "1"),
        (ENHANCED_SR, "TextValue", ("ContentSequence",), "1"),
        # the SR content tree is recursive: every level below the first is read as the first
        (ENHANCED_SR, "TextValue", ("ContentSequence",) * 4, "1"),
        (ENHANCED_SR, "ConceptNameCodeSequence", ("ContentSequence",) * 3, "1"),
        (CR, "ModalityLUTType", ("ModalityLUTSequence",), "1"),
    ],
)
def test_types_of_unlisted_attributes(sop_class: str, keyword: str, path: tuple[str, ...],
                                      expected: str) -> None:
    tags = tuple(tag_for_keyword(k) for k in path)
    assert attribute_type(sop_class, tag_for_keyword(keyword), tags) == expected


def test_attribute_types_data_shape() -> None:
    data = _data("attribute_types.json")
    assert len(data["sop_classes"]) == 180
    assert set(data["sop_class_modules"]) == set(data["sop_classes"])
    modules = {m for listed in data["sop_class_modules"].values() for m in listed}
    assert modules <= set(data["module_types"])
    values = {t for table in data["module_types"].values() for t in table.values()}
    assert values == {"1", "2"}  # Type 3 is what is not stored
    for table in data["module_types"].values():
        for key in table:
            tag, _, path = key.partition("|")
            assert len(tag) == 8 and tag == tag.upper()
            assert all(len(p) == 8 for p in path.split(">") if p)


def test_repeating_group_lookup() -> None:
    # Overlay Plane module: Overlay Rows (60xx,0010) Type 1 in every even 60xx group.
    assert attribute_type(CT, 0x60000010) == "1"
    assert attribute_type(CT, 0x60020010) == "1"
    assert attribute_type(CT, 0x60030010) == "3"  # odd group is private, no fallback


# --------------------------------------------------------------------------- Safe private


def test_safe_private_attributes() -> None:
    safe = safe_private_attributes()
    assert len(safe) == 479
    assert safe_private_attributes() is safe
    elscint = safe[(0x00E1, "ELSCINT1", 0x21)]
    assert elscint == SafePrivateAttribute("ELSCINT1", 0x00E1, 0x21, "DS", "DLP", "1")
    assert safe[(0x7053, "Philips PET Private Group", 0x00)].vr == "DS"
    assert safe[(0x7E01, "HOLOGIC, Inc.", 0x10)].name == "High Resolution Data Sequence"
    assert safe[(0x7E01, "HOLOGIC, Inc.", 0x10)].vr == "SQ"
    assert (0x7E01, "HOLOGIC, INC.", 0x10) not in safe  # creators are case-sensitive
    for key, attr in safe.items():
        assert key == (attr.group, attr.creator, attr.offset)
        assert attr.group % 2 == 1
        assert 0 <= attr.offset <= 0xFF
        assert attr.creator == attr.creator.strip()
    assert len({(a.creator, a.group) for a in safe.values()}) == 26
    empty_vr = sorted((a.group, a.offset) for a in safe.values() if not a.vr)
    assert empty_vr == [
        (0x0119, 0x11),
        (0x0119, 0x12),
        (0x0129, 0x03),
        (0x0129, 0x04),
        (0x0129, 0x05),
    ]
    assert {a.creator for a in safe.values() if not a.vr} == {"SIEMENS Ultrasound SC2000"}
    vrs = Counter(a.vr for a in safe.values())
    assert vrs["SQ"] == 55 and vrs["OB"] == 17 and vrs["OW/OB"] == 2
    by_creator = Counter(a.creator for a in safe.values())
    assert by_creator["Philips Imaging DD 001"] == 184
    assert by_creator["SIEMENS Ultrasound SC2000"] == 40


# --------------------------------------------------------------------------- CID 7050


def test_method_codes() -> None:
    assert method_code("basic") == MethodCode(
        "113100", "DCM", "Basic Application Confidentiality Profile"
    )
    assert method_code("clean_pixel_data").value == "113101"
    assert method_code("clean_recognizable_visual_features").value == "113102"
    expected = {
        "clean_graphics": "113103",
        "clean_structured_content": "113104",
        "clean_descriptors": "113105",
        "retain_longitudinal_full_dates": "113106",
        "retain_longitudinal_modified_dates": "113107",
        "retain_patient_characteristics": "113108",
        "retain_device_identity": "113109",
        "retain_uids": "113110",
        "retain_safe_private": "113111",
        "retain_institution_identity": "113112",
    }
    assert {o: method_code(o).value for o in OPTIONS} == expected
    codes = [method_code(o) for o in ("basic", *PIXEL_OPTIONS, *OPTIONS)]
    assert sorted(c.value for c in codes) == [str(v) for v in range(113100, 113113)]
    assert all(c.scheme == "DCM" for c in codes)
    assert method_code("retain_uids").meaning == "Retain UIDs Option"
    with pytest.raises(ValueError):
        method_code("retain_everything")
