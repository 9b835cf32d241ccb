"""The clean action through the engine: what replaces an identifier found in text,
kept private values de-identified by VR, and UIDs of the file written into kept text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import KEY_A
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from anonymizer.engine import Engine
from anonymizer.keyed import KeyedSource
from anonymizer.profiles import load_profile

CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY_UID = "1.2.826.0.1.3680043.10.1234.1.77"


def _ct(**values: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1234.3.77"
    ds.StudyInstanceUID = STUDY_UID
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "12345678"
    ds.PatientBirthDate = "19650412"
    ds.StudyDate = "20190305"
    ds.AccessionNumber = "A-4711"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _engine(profile: str | Path) -> Engine:
    return Engine(load_profile(str(profile)), KeyedSource(KEY_A))


def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_research_writes_pseudonyms_shifted_dates_and_placeholders() -> None:
    ds = _ct(StudyDescription="CT John Doe 5-3-19 (A-4711) for Dr House")
    result = _engine("research").deidentify(ds)
    offset = result.date_offset_days
    assert offset is not None
    shifted = dt.date(2019, 3, 5) + dt.timedelta(days=offset)
    # the patient's name becomes the patient's pseudonym, the accession number its own
    # pseudonym, another person a placeholder, the date the patient's shifted date in
    # the form it was written in
    assert ds.StudyDescription == (
        f"CT {ds.PatientID} {shifted.day}-{shifted.month}-{shifted.year % 100:02d} "
        f"({ds.AccessionNumber}) for Dr [NAME]")
    assert ds.AccessionNumber.startswith("ACC-")


def test_clean_without_shifted_dates_writes_placeholders(tmp_path: Path) -> None:
    profile = _profile(tmp_path, "name: clean-only\nextends: basic\noptions: [clean_descriptors]\n")
    ds = _ct(StudyDescription="Doe 12345678 on 2019-03-05, prior 2017-01-02, j.doe@x.org")
    _engine(profile).deidentify(ds)
    assert ds.StudyDescription == "[NAME] [ID] on [DATE], prior [DATE], [EMAIL]"


def test_unmodified_dates_keep_dates_in_text_but_not_the_birth_date(tmp_path: Path) -> None:
    profile = _profile(tmp_path, "name: full-dates\nextends: basic\n"
                       "options: [clean_descriptors, retain_longitudinal_full_dates]\n")
    ds = _ct(StudyDescription="born 1965-04-12, seen 2019-03-05")
    _engine(profile).deidentify(ds)
    assert ds.StudyDescription == "born [DATE], seen 2019-03-05"


def test_nested_names_and_ids_are_scrubbed_from_top_level_text() -> None:
    ds = _ct(StudyDescription="Requested by CUDDY for OLD-777")
    request = Dataset()
    request.RequestingPhysician = "CUDDY^LISA"
    ds.RequestAttributesSequence = Sequence([request])
    other = Dataset()
    other.PatientID = "OLD-777"
    ds.OtherPatientIDsSequence = Sequence([other])
    _engine("research").deidentify(ds)
    # Other Patient IDs' Patient ID has the Patient ID pseudonym rule: its own pseudonym
    pseudonym = KeyedSource(KEY_A).hexdigest("pseudonym", "OLD-777", 8).upper()
    assert ds.StudyDescription == f"Requested by [NAME] for SUBJ-{pseudonym}"


def _with_private_block(ds: Dataset) -> Dataset:
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "UI", STUDY_UID)
    block.add_new(0x02, "DA", "20190305")
    block.add_new(0x03, "LO", "Study of DOE for Dr House")
    block.add_new(0x04, "DS", "1.5")
    block.add_new(0x05, "PN", "DOE^JOHN")
    return ds


def test_kept_private_values_are_deidentified_like_public_ones(tmp_path: Path) -> None:
    profile = _profile(tmp_path, "name: acme\nextends: research\n"
                       "private:\n  keep_creators: [ACME 1.0]\n")
    ds = _with_private_block(_ct())
    result = _engine(profile).deidentify(ds)
    block = ds.private_block(0x0009, "ACME 1.0")
    assert block[0x01].value == ds.StudyInstanceUID != STUDY_UID  # the same keyed UID
    assert result.date_offset_days is not None
    assert block[0x02].value == (dt.date(2019, 3, 5) + dt.timedelta(
        days=result.date_offset_days)).strftime("%Y%m%d")
    assert block[0x03].value == f"Study of {ds.PatientID} for Dr [NAME]"
    assert block[0x04].value == "1.5"
    assert "DOE" not in str(block[0x05].value)


def test_kept_private_dates_follow_the_profile_that_removes_dates(tmp_path: Path) -> None:
    profile = _profile(tmp_path, "name: acme-basic\nextends: basic\n"
                       "private:\n  keep_creators: [ACME 1.0]\n")
    ds = _with_private_block(_ct())
    _engine(profile).deidentify(ds)
    block = ds.private_block(0x0009, "ACME 1.0")
    assert 0x00091002 not in ds  # dates are removed by this profile, public or private
    assert block[0x01].value == ds.StudyInstanceUID
    assert block[0x03].value == "Study of [NAME] for Dr [NAME]"


@pytest.mark.parametrize("profile", ["basic", "default", "research"])
def test_a_uid_of_the_file_written_into_kept_text_is_remapped(profile: str) -> None:
    code = Dataset()
    code.CodeValue = "121018"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = f"Procedure Study Instance UID {STUDY_UID}"
    ds = _ct(ProcedureCodeSequence=Sequence([code]))
    result = _engine(profile).deidentify(ds)
    meaning = ds.ProcedureCodeSequence[0].CodeMeaning
    assert STUDY_UID not in meaning
    assert meaning == f"Procedure Study Instance UID {ds.StudyInstanceUID}"
    assert ("(0008,1032)>(0008,0104)", "U") in result.acted


def test_other_uid_shapes_in_kept_text_stay() -> None:
    code = Dataset()
    code.CodeValue = "1"
    code.CodingSchemeDesignator = "99X"
    code.CodeMeaning = "Software 1.2.3.4 build"
    ds = _ct(ProcedureCodeSequence=Sequence([code]))
    _engine("research").deidentify(ds)
    assert ds.ProcedureCodeSequence[0].CodeMeaning == "Software 1.2.3.4 build"
