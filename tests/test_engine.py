"""The engine: recursion, UIDs, stamps, Type resolution, burned-in annotation, values that
swallowed other elements (sample_data, pydicom test files, generated datasets). Keyed
pseudonyms, date shifts and the age cap of single values: ``test_transforms.py``."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from conftest import KEY_A, KEY_B, SAMPLE_DATA, dcmread_quiet
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from anonymizer import keyed as keyed_module
from anonymizer import standard
from anonymizer.engine import Engine
from anonymizer.errors import DeidentificationError
from anonymizer.io import read_dataset, write_temporary
from anonymizer.keyed import KeyedSource
from anonymizer.profiles import load_profile

CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
UNKNOWN_SOP_CLASS = "1.2.826.0.1.3680043.10.1234.99.1"
SHARED_FG = 0x52009229  # Shared Functional Groups Sequence (not in Table E.1-1: kept)
FRAME_CONTENT = 0x00209111  # Frame Content Sequence (not in Table E.1-1: kept)

DOE_CT = SAMPLE_DATA / "DOE^JOHN_12345678" / "20190101_CT_CHEST"
DOE_MR = SAMPLE_DATA / "DOE^JOHN_12345678" / "20200315_MR_BRAIN"
MUELLER_MR = SAMPLE_DATA / "MÜLLER^ANNA MRN-0042" / "20210704_MR_KNEE"
ROE_CT = SAMPLE_DATA / "ROE^RICHARD_99887766" / "20180220_CT_ABDOMEN"


def _read(path: Path) -> Dataset:
    return read_dataset(path).dataset


def _sample_files() -> list[Path]:
    return sorted(p for p in SAMPLE_DATA.rglob("*") if p.is_file() and p.suffix != ".txt")


def _text_values(ds: Dataset, keyword: str) -> list[str]:
    """Every non-empty value of ``keyword`` anywhere in ``ds`` (as text)."""
    out = []
    for elem in ds.iterall():
        if elem.keyword != keyword or elem.value is None or elem.value == "":
            continue
        values = elem.value if elem.VM > 1 else [elem.value]
        out += [str(v).strip() for v in values if str(v).strip()]
    return out


def _depth(ds: Dataset, keyword: str, path: tuple[int, ...] = ()) -> list[int]:
    """Nesting depths at which ``keyword`` occurs in ``ds``."""
    found = []
    for tag in ds.keys():
        elem = ds[tag]
        if elem.keyword == keyword:
            found.append(len(path))
        if elem.VR == "SQ":
            for item in elem.value:
                found += _depth(item, keyword, (*path, tag))
    return found


def _profile(tmp_path: Path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return load_profile(str(path))


def _nested_phi() -> Dataset:
    """PHI at depth 2 (Shared FG > Frame Content > item) and depth 3."""
    deepest = Dataset()
    deepest.PatientName = "DOE^JOHN"
    deepest.PatientID = "12345678"
    deepest.StudyDate = "20190101"
    inner = Dataset()
    inner.PatientName = "DOE^JOHN"
    inner.PatientID = "12345678"
    inner.PatientBirthDate = "19650412"
    inner.StudyDate = "20190101"
    inner.FrameAcquisitionDateTime = "20190101101819.000000+0100"
    inner.FrameAcquisitionNumber = 1
    inner.add_new(SHARED_FG, "SQ", Sequence([deepest]))
    outer = Dataset()
    outer.add_new(FRAME_CONTENT, "SQ", Sequence([inner]))
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1234.3.9.9"
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "12345678"
    ds.StudyDate = "20190101"
    ds.add_new(SHARED_FG, "SQ", Sequence([outer]))
    return ds


# --------------------------------------------------------------------------- recursion


@pytest.mark.parametrize("profile", ["basic", "default", "research"])
def test_phi_at_depth_2_and_3_is_removed_or_replaced(engines: dict[str, Engine],
                                                     profile: str) -> None:
    ds = _nested_phi()
    assert set(_depth(ds, "PatientName")) == {0, 2, 3}
    engines[profile].deidentify(ds)
    inner = ds[SHARED_FG].value[0][FRAME_CONTENT].value[0]
    deepest = inner[SHARED_FG].value[0]
    assert inner.FrameAcquisitionNumber == 1  # the items themselves are kept
    for item in (inner, deepest):
        assert item.get("PatientName") in (None, "") or str(item.PatientName) == str(
            ds.PatientName)
        assert item.get("PatientID") in (None, "") or item.PatientID == ds.PatientID
    for keyword, original in (("PatientName", "DOE^JOHN"), ("PatientID", "12345678"),
                              ("PatientBirthDate", "19650412"), ("StudyDate", "20190101")):
        assert original not in _text_values(ds, keyword), keyword
    assert "20190101101819.000000+0100" not in _text_values(ds, "FrameAcquisitionDateTime")


def test_nested_pseudonyms_and_dates_follow_the_top_level(engines: dict[str, Engine]) -> None:
    ds = _nested_phi()
    result = engines["research"].deidentify(ds)
    inner = ds[SHARED_FG].value[0][FRAME_CONTENT].value[0]
    deepest = inner[SHARED_FG].value[0]
    for item in (inner, deepest):
        assert item.PatientID == ds.PatientID
        assert str(item.PatientName) == f"{ds.PatientID}^"
        assert item.StudyDate == ds.StudyDate
    assert result.date_offset_days is not None
    expected = dt.date(1965, 4, 12) + dt.timedelta(days=result.date_offset_days)
    assert inner.PatientBirthDate == expected.strftime("%Y%m%d")


@pytest.mark.parametrize("profile", ["default", "research"])
def test_sample_data_phi_removed_at_every_depth(engines: dict[str, Engine],
                                                profile: str) -> None:
    for path in _sample_files():
        original = _read(path)
        ds = _read(path)
        engines[profile].deidentify(ds)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                        "ReferringPhysicianName", "PersonName", "VerifyingObserverName",
                        "OtherPatientIDs", "PatientAddress", "InstitutionName"):
            before = set(_text_values(original, keyword))
            after = set(_text_values(ds, keyword))
            assert not before & after, (path.name, keyword, before & after)


def test_sr_content_at_depth_2_is_cleaned(engines: dict[str, Engine]) -> None:
    ds = _read(DOE_CT / "SR0001.dcm")
    assert 2 in _depth(ds, "TextValue") and 2 in _depth(ds, "PersonName")
    engines["research"].deidentify(ds)
    texts = _text_values(ds, "TextValue")
    assert texts
    for text in texts:
        for identifier in ("DOE", "JOHN", "12345678", "1965-04-12", "2019-01-01"):
            assert identifier.lower() not in text.lower(), text
    # the patient's name becomes the pseudonym, other people's names a placeholder
    assert any(ds.PatientID in text for text in texts)
    assert any("[NAME]" in text for text in texts)
    assert "HOUSE^GREGORY^^DR." not in _text_values(ds, "PersonName")
    assert "RIVIERA^NICK^^DR." not in _text_values(ds, "PersonName")


def test_enhanced_mr_per_frame_values_at_depth_2(engines: dict[str, Engine]) -> None:
    original = _read(MUELLER_MR / "IM0003.dcm")
    ds = _read(MUELLER_MR / "IM0003.dcm")
    result = engines["research"].deidentify(ds)
    offset = result.date_offset_days
    assert offset is not None and offset < 0
    frames = ds.PerFrameFunctionalGroupsSequence
    before = original.PerFrameFunctionalGroupsSequence
    assert len(frames) == len(before) == 4
    for new, old in zip(frames, before, strict=True):
        new_content, old_content = new.FrameContentSequence[0], old.FrameContentSequence[0]
        assert "MÜLLER" not in new_content.FrameComments.upper()
        assert "[NAME]" in new_content.FrameComments or ds.PatientID in new_content.FrameComments
        old_dt, new_dt = old_content.FrameAcquisitionDateTime, new_content.FrameAcquisitionDateTime
        shifted = dt.datetime.strptime(old_dt[:8], "%Y%m%d") + dt.timedelta(days=offset)
        assert new_dt == shifted.strftime("%Y%m%d") + old_dt[8:]


@pytest.mark.parametrize("profile", ["basic", "default", "research"])
def test_file_meta_cleaned_and_linked_to_new_sop_instance(engines: dict[str, Engine],
                                                          profile: str, tmp_path: Path) -> None:
    ds = _read(DOE_CT / "IM0001.dcm")
    original_uid = ds.SOPInstanceUID
    assert ds.file_meta.SourceApplicationEntityTitle == "PACS_HOSPITAL_A"
    engines[profile].deidentify(ds)
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    assert ds.SOPInstanceUID != original_uid
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == CT

    path, _ = write_temporary(ds, tmp_path, "x")
    back = dcmread_quiet(path)
    assert "SourceApplicationEntityTitle" not in back.file_meta
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID == ds.SOPInstanceUID
    assert b"PACS_HOSPITAL_A" not in path.read_bytes()


# --------------------------------------------------------------------------- UIDs


ORIGINAL_UIDS = ["1.2.826.0.1.3680043.10.1234.3.1.1.2.1", "1.2.3", "9" * 64,
                 "1.2.826.0.1.3680043.10.1234.3.1.1.2.1\x00"]


@pytest.mark.parametrize("original", ORIGINAL_UIDS)
def test_keyed_uid_form(original: str) -> None:
    new = KeyedSource(KEY_A).uid(original)
    assert re.fullmatch(r"2\.25\.(0|[1-9]\d*)", new)
    assert int(new[5:]) < 2**128
    assert len(new) <= 64
    assert UID(new).is_valid
    assert new != original


def test_keyed_uid_consistent_per_key() -> None:
    original = "1.2.826.0.1.3680043.10.1234.3.1.1.2.1"
    a1, a2, b = KeyedSource(KEY_A), KeyedSource(KEY_A), KeyedSource(KEY_B)
    assert a1.uid(original) == a2.uid(original) == a1.uid(original)
    assert a1.uid(original) == a1.uid(original + "\x00")  # padding is not part of the UID
    assert a1.uid(original) != b.uid(original)
    assert a1.uid(original) != a1.uid(original + ".1")


@pytest.mark.parametrize("domain", ["pseudonym", "date-shift", "collision", "input-path"])
def test_keyed_digests_do_not_depend_on_what_was_asked_before(domain: str) -> None:
    """A process keeps the digests of values that repeat from file to file: asked again,
    as text or as bytes, after other values and keys, each is what a fresh source gives."""
    used, fresh = KeyedSource(KEY_A), KeyedSource(KEY_A)
    values = ["DOE^JOHN", "PAT-001", "", "Ä", "DOE^JOHN "]
    pairs = [(d, v) for d in (domain, "pseudonym", "uid", domain) for v in values]
    asked = [used.digest(d, v) for d, v in pairs]
    as_bytes = [used.digest(domain, v.encode("utf-8")) for v in values]
    assert asked == [fresh.digest(d, v) for d, v in reversed(pairs)][::-1]
    expected = asked[:len(values)]
    assert as_bytes == expected
    assert len(set(expected)) == len(values)
    assert domain == "pseudonym" or not set(expected) & set(asked[len(values):-len(values)])
    assert KeyedSource(KEY_B).digest(domain, values[0]) != expected[0]
    assert used.hexdigest(domain, values[1], 16) == expected[1].hex()[:16]


def test_keyed_memos_stay_bounded_and_answer_the_same_when_full(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's memos of UIDs and repeated digests are emptied when full (a million
    SOP Instance UIDs kept 228 MiB in one worker), and a value asked again afterwards gets
    the same answer."""
    monkeypatch.setattr(keyed_module, "_MEMO_ENTRIES", 8)
    used, fresh = KeyedSource(KEY_A), KeyedSource(KEY_A)
    uids = [f"1.2.826.0.1.3680043.10.999.{i}" for i in range(50)]
    names = [f"DOE^{i}" for i in range(50)]
    for _ in range(2):
        assert [used.uid(u) for u in uids] == [fresh.uid(u) for u in uids]
        assert [used.digest("pseudonym", n) for n in names] \
            == [fresh.digest("pseudonym", n) for n in names]
        assert 0 < len(used._uid_cache) <= 8 and 0 < len(used._digests) <= 8


@pytest.mark.parametrize("uid", [CT, ENHANCED_CT, ExplicitVRLittleEndian, "1.2.840.10008.1.1",
                                 "1.2.840.10008.3.1.2.3.1"])
def test_standard_uids_unchanged(uid: str) -> None:
    assert KeyedSource(KEY_A).uid(uid) == uid


def test_references_resolve_to_the_referenced_files_new_uids(engines: dict[str, Engine]) -> None:
    engine = engines["default"]
    new_by_old: dict[str, str] = {}
    study_by_old: dict[str, str] = {}
    for path in sorted(DOE_CT.iterdir()):
        if path.name.startswith("SR"):
            continue
        ds = _read(path)
        old_uid, old_study = ds.SOPInstanceUID, ds.StudyInstanceUID
        engine.deidentify(ds)
        new_by_old[old_uid] = ds.SOPInstanceUID
        study_by_old[old_study] = ds.StudyInstanceUID
    assert len(new_by_old) == 3

    report = _read(DOE_CT / "SR0001.dcm")
    referenced = _text_values(report, "ReferencedSOPInstanceUID")
    image_refs = [uid for uid in referenced if uid in new_by_old]
    assert len(set(image_refs)) == 3  # the report references all three CT images
    engine.deidentify(report)
    after = _text_values(report, "ReferencedSOPInstanceUID")
    for old in image_refs:
        assert old not in after
        assert new_by_old[old] in after
    evidence = report.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == report.StudyInstanceUID
    assert set(study_by_old.values()) == {report.StudyInstanceUID}
    series = evidence.ReferencedSeriesSequence[0]
    assert sorted(r.ReferencedSOPInstanceUID for r in series.ReferencedSOPSequence) == sorted(
        new_by_old.values())
    assert {r.ReferencedSOPClassUID for r in series.ReferencedSOPSequence} == {CT}


def test_ct_images_reference_each_other_after_deidentification(engines: dict[str, Engine],
                                                                tmp_path: Path) -> None:
    profile = _profile(tmp_path, "name: t\nextends: basic\nactions:\n"
                                 "  ReferencedImageSequence: uid\n")
    engine = Engine(profile, engines["default"].keyed)
    first, second = _read(DOE_CT / "IM0001.dcm"), _read(DOE_CT / "IM0002.dcm")
    assert first.ReferencedImageSequence[0].ReferencedSOPInstanceUID == second.SOPInstanceUID
    engine.deidentify(first)
    engine.deidentify(second)
    assert first.ReferencedImageSequence[0].ReferencedSOPInstanceUID == second.SOPInstanceUID
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert first.ReferencedImageSequence[0].ReferencedSOPClassUID == CTImageStorage


@pytest.mark.parametrize("profile", ["basic", "default", "research"])
def test_study_uid_map_holds_the_two_uids(engines: dict[str, Engine], profile: str) -> None:
    """EngineResult.study_uid_map feeds the crosswalk: (original UID, new UID), plain UIDs."""
    ds = _read(DOE_CT / "IM0001.dcm")
    original = ds.StudyInstanceUID
    result = engines[profile].deidentify(ds)
    assert result.study_uid_map == (original, ds.StudyInstanceUID)


# --------------------------------------------------------------------------- stamps


@pytest.mark.parametrize("profile", ["basic", "default", "research"])
def test_stamps(engines: dict[str, Engine], profile: str) -> None:
    ds = _read(DOE_CT / "IM0001.dcm")
    engines[profile].deidentify(ds)
    assert ds.PatientIdentityRemoved == "YES"
    assert f"profile {profile} " in ds.DeidentificationMethod
    assert len(ds.DeidentificationMethod) <= 64
    codes = ds.DeidentificationMethodCodeSequence
    assert codes[0].CodeValue == "113100"
    assert all(item.CodingSchemeDesignator == "DCM" for item in codes)
    if profile == "research":
        options = engines[profile].profile.options
        assert len(options) == 6
        assert [item.CodeValue for item in codes] == ["113100", *(
            standard.method_code(o).value for o in options)]
        assert "113111" in [item.CodeValue for item in codes]  # Retain Safe Private
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    else:
        assert [item.CodeValue for item in codes] == ["113100"]
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"


# --------------------------------------------------------------------------- Type resolution


def _device(sop_class: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1234.3.9.1"
    ds.PatientID = "12345678"
    ds.DeviceSerialNumber = "GE-CT-0000123"
    return ds


def test_type_3_x_z_d_removed_in_ct(engines: dict[str, Engine]) -> None:
    assert standard.attribute_type(CT, 0x00181000) == "3"
    ds = _device(CT)
    result = engines["basic"].deidentify(ds)
    assert "DeviceSerialNumber" not in ds
    assert ("(0018,1000)", "X") in result.acted


def test_type_1_x_z_d_gets_dummy_in_enhanced_ct(engines: dict[str, Engine]) -> None:
    assert standard.attribute_type(ENHANCED_CT, 0x00181000) == "1"
    ds = _device(ENHANCED_CT)
    result = engines["basic"].deidentify(ds)
    assert ds.DeviceSerialNumber
    assert ds.DeviceSerialNumber != "GE-CT-0000123"
    assert ("(0018,1000)", "D") in result.acted
    assert not result.warnings


def test_type_2_z_d_is_empty_in_ct(engines: dict[str, Engine], tmp_path: Path) -> None:
    assert standard.attribute_type(CT, 0x00100020) == "2"
    ds = _device(CT)
    result = engines["basic"].deidentify(ds)
    assert "PatientID" in ds
    assert ds.PatientID in (None, "")
    assert ("(0010,0020)", "Z") in result.acted
    path, _ = write_temporary(ds, tmp_path, "x")
    back = dcmread_quiet(path)
    assert "PatientID" in back and back.PatientID == ""


def test_unknown_sop_class_removes_where_allowed(engines: dict[str, Engine]) -> None:
    assert not standard.known_sop_class(UNKNOWN_SOP_CLASS)
    ds = _device(UNKNOWN_SOP_CLASS)
    ds.ReferringPhysicianName = "RIVIERA^NICK"  # Z: cannot be X
    result = engines["basic"].deidentify(ds)
    assert "DeviceSerialNumber" not in ds  # X/Z/D -> X
    assert "PatientID" in ds and ds.PatientID in (None, "")  # Z/D -> Z (no X allowed)
    assert "ReferringPhysicianName" in ds and not ds.ReferringPhysicianName
    assert ("(0018,1000)", "X") in result.acted


# --------------------------------------------------------------------------- burned in


@pytest.mark.parametrize("profile", ["basic", "default", "research"])
def test_burned_in_annotation_fails(engines: dict[str, Engine], profile: str) -> None:
    ds = _device(CT)
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(DeidentificationError, match="burned-in annotation"):
        engines[profile].deidentify(ds)


def test_burned_in_annotation_fails_on_sample_file(engines: dict[str, Engine]) -> None:
    ds = _read(DOE_CT / "IM0001.dcm")
    assert ds.BurnedInAnnotation == "NO"
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(DeidentificationError, match="burned-in annotation"):
        engines["default"].deidentify(ds)


def test_burned_in_annotation_no_passes(engines: dict[str, Engine]) -> None:
    ds = _device(CT)
    ds.BurnedInAnnotation = "NO"
    engines["basic"].deidentify(ds)
    assert ds.PatientIdentityRemoved == "YES"


def test_burned_in_annotation_accepted_by_profile(tmp_path: Path, keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, "name: t\nextends: basic\nburned_in_annotation: accept\n")
    ds = _device(CT)
    ds.BurnedInAnnotation = "YES"
    Engine(profile, keyed).deidentify(ds)
    assert ds.PatientIdentityRemoved == "YES"
    assert "DeviceSerialNumber" not in ds


def _with_raw(ds: Dataset, tag: int, vr: str, value: bytes) -> Dataset:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import BaseTag

    ds[tag] = RawDataElement(BaseTag(tag), vr, len(value), value, 0, False, True)
    return ds


@pytest.mark.parametrize(("tag", "vr", "value"), [
    # Image Type (kept) whose length swallowed the next elements, Patient's Name included
    (0x00080008, "CS", b"ORIGINAL\\PRIMARY\x10\x00\x10\x00PN\x08\x00DOE^JOHN"),
    # Rows (kept, VM 1) that swallowed Requesting Physician
    (0x00280010, "US", b"\x00\x02\x32\x00\x32\x10PN\x08\x00DOE^JOHN"),
    # Acquisition Matrix (kept, VM 4) that swallowed Requesting Physician
    (0x00181310, "US", b"\x00\x00\x00\x02\x00\x02\x00\x00\x32\x00\x32\x10PN\x08\x00DOE^JOHN"),
    # an ICC profile (kept binary) that swallowed Requesting Physician
    (0x00282000, "OB", b"\x00\x00\x02\x0cADBE\x02\x10\x00\x00\x32\x00\x32\x10PN\x08\x00DOE^JOHN"),
])
def test_kept_value_that_swallowed_other_elements_fails_the_file(
        tag: int, vr: str, value: bytes, engines: dict[str, Engine]) -> None:
    ds = _read(DOE_CT / "IM0001.dcm")
    _with_raw(ds, tag, vr, value)
    with pytest.raises(DeidentificationError, match="corrupt"):
        engines["default"].deidentify(ds)


def test_kept_values_with_padding_or_several_numbers_pass(engines: dict[str, Engine]) -> None:
    ds = _read(DOE_CT / "IM0001.dcm")
    _with_raw(ds, 0x00080008, "CS", b"ORIGINAL\\PRIMARY\x00\x00")  # NUL padding at the end
    _with_raw(ds, 0x00280030, "DS", b"0.5\\0.5 ")
    _with_raw(ds, 0x00181310, "US", b"\x00\x00\x00\x02\x00\x02\x00\x00")  # VM 4
    engines["default"].deidentify(ds)


def test_transformed_value_that_swallowed_other_elements_fails_the_file(
        engines: dict[str, Engine]) -> None:
    """Study Description is cleaned under research, not kept: a clean sees identifiers it
    knows, not the Requesting Physician this value swallowed."""
    ds = _read(DOE_CT / "IM0001.dcm")
    _with_raw(ds, 0x00081030, "LO", b"CT CHEST\x32\x00\x32\x10PN\x0a\x00ROE^JANET ")
    with pytest.raises(DeidentificationError, match="corrupt"):
        engines["research"].deidentify(ds)


SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _segmentation() -> Dataset:
    ds = _device(SEGMENTATION)
    segment = Dataset()
    segment.SegmentNumber = 1
    segment.SegmentLabel = "Tumour of DOE^JOHN"
    segment.SegmentAlgorithmName = "JOHN's model"
    segment.SegmentDescription = "free text"  # Type 3: removed by VR
    ds.SegmentSequence = Sequence([segment])
    ds.ContentDescription = "Segmentation for DOE^JOHN"
    return ds


@pytest.mark.parametrize("profile", ["basic", "default"])
def test_removal_by_vr_keeps_type_1_and_2_attributes_valid(engines: dict[str, Engine],
                                                           profile: str) -> None:
    ds = _segmentation()
    result = engines[profile].deidentify(ds)
    segment = ds.SegmentSequence[0]
    assert segment.SegmentLabel == "ANONYMIZED"  # Type 1: a dummy
    assert segment.SegmentAlgorithmName == "ANONYMIZED"  # Type 1C: as Type 1
    assert "SegmentDescription" not in segment  # Type 3: removed
    assert ds.ContentDescription == ""  # Type 2: empty
    assert ("(0062,0002)>(0062,0005)", "D") in result.acted
    assert not result.warnings


def test_sr_text_items_keep_a_value_at_any_depth(engines: dict[str, Engine]) -> None:
    def text_item(value: str, children: list[Dataset]) -> Dataset:
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "TEXT"
        item.TextValue = value
        if children:
            item.ContentSequence = Sequence(children)
        return item

    ds = _device(COMPREHENSIVE_SR)
    ds.ContentSequence = Sequence([text_item("DOE^JOHN", [text_item("by DOE", [
        text_item("12345678", [])])])])
    engines["basic"].deidentify(ds)
    assert _text_values(ds, "TextValue") == ["ANONYMIZED"] * 3
    assert _depth(ds, "TextValue") == [1, 2, 3]


def _overlay(ds: Dataset, group: int) -> None:
    ds.add_new(group << 16 | 0x0010, "US", 2)
    ds.add_new(group << 16 | 0x0011, "US", 2)
    ds.add_new(group << 16 | 0x0022, "LO", "overlay of DOE")
    ds.add_new(group << 16 | 0x0040, "CS", "G")
    ds.add_new(group << 16 | 0x0050, "SS", [1, 1])
    ds.add_new(group << 16 | 0x0100, "US", 1)
    ds.add_new(group << 16 | 0x3000, "OW", b"\x00\x00")


@pytest.mark.parametrize("profile", ["basic", "default", "research"])
def test_overlay_group_goes_whole_with_its_data(engines: dict[str, Engine],
                                                profile: str) -> None:
    ds = _device(CT)
    _overlay(ds, 0x6000)
    _overlay(ds, 0x6002)
    result = engines[profile].deidentify(ds)
    assert not [tag for tag in ds.keys() if tag >> 24 == 0x60]
    assert ("(6002,0010)", "X") in result.acted
    assert not result.warnings  # the optional module is absent, not broken


def test_research_keeps_reference_sequences_with_remapped_uids(engines: dict[str, Engine],
                                                               keyed: KeyedSource) -> None:
    def referencing() -> Dataset:
        ds = _device(CT)
        for keyword in ("ReferencedImageSequence", "SourceImageSequence"):
            reference = Dataset()
            reference.ReferencedSOPClassUID = CT
            reference.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.1234.3.9.2"
            setattr(ds, keyword, Sequence([reference]))
        return ds

    ds, basic = referencing(), referencing()
    engines["research"].deidentify(ds)
    new = keyed.uid("1.2.826.0.1.3680043.10.1234.3.9.2")
    for keyword in ("ReferencedImageSequence", "SourceImageSequence"):
        item = ds[keyword][0]
        assert item.ReferencedSOPInstanceUID == new
        assert item.ReferencedSOPClassUID == CT
    engines["basic"].deidentify(basic)  # Type 3 in CT: the Basic Profile removes them
    assert "ReferencedImageSequence" not in basic and "SourceImageSequence" not in basic
