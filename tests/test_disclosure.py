"""What a de-identified file must not give away by other routes: URLs and URIs, an age
above the cap (through the birth date or structured content), and the identity of
subjects that have no Patient ID. Files are generated with pydicom, written to disk and
run through the engine or the whole pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import dcmread_quiet
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from anonymizer.engine import Engine
from anonymizer.errors import DeidentificationError
from anonymizer.io import read_dataset
from anonymizer.keyed import KeyedSource
from anonymizer.pipeline import RunConfig, run
from anonymizer.profiles import load_profile

CT = "1.2.840.10008.5.1.4.1.1.2"
JPIP_REFERENCED = "1.2.840.10008.1.2.4.94"
HOST = "pacs.hospital-a.example"
ORIGINAL_STUDY = "1.2.826.0.1.3680043.10.1234.1.77"

#: Every UR attribute of the dictionary that names a location, with a value that holds
#: the host and an original UID.
URL_KEYWORDS = ("RetrieveURL", "RetrieveURI", "StorageURL", "FileAccessURI", "ContactURI",
                "PixelDataProviderURL", "StoredInstanceBaseURI", "FolderAccessURI",
                "FilenameInContainer", "RelativeURIReferenceWithinEncapsulatedDocument")


def _image(patient_id: str = "12345678", name: str = "DOE^JOHN") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1234.3.77.1"
    ds.StudyInstanceUID = ORIGINAL_STUDY
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1234.2.77"
    ds.Modality = "CT"
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19650412"
    ds.StudyDate = "20190101"
    return ds


def _save(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` as a Part 10 file and return its path."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    path.parent.mkdir(parents=True, exist_ok=True)
    implicit = transfer_syntax == ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return path


def _url(keyword: str) -> str:
    return f"https://{HOST}/wado/studies/{ORIGINAL_STUDY}?from={keyword.replace(' ', '-')}"


def _with_urls(ds: Dataset) -> Dataset:
    """URLs at the top level and two levels down (Referenced Series > Referenced SOP)."""
    for keyword in URL_KEYWORDS:
        setattr(ds, keyword, _url(keyword))
    instance = Dataset()
    instance.ReferencedSOPClassUID = CT
    instance.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.1234.3.77.2"
    instance.RetrieveURL = _url("nested RetrieveURL")
    instance.RetrieveURI = _url("nested RetrieveURI")
    series = Dataset()
    series.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1234.2.77"
    series.RetrieveURL = _url("series RetrieveURL")
    series.ReferencedSOPSequence = Sequence([instance])
    ds.ReferencedSeriesSequence = Sequence([series])
    # coded concepts with a URN code value and a coding scheme's URL stay codes
    code = Dataset()
    code.URNCodeValue = "urn:oid:2.16.840.1.113883.6.1"
    code.CodingSchemeDesignator = "LN"
    code.CodeMeaning = "LOINC"
    ds.ProcedureCodeSequence = Sequence([code])
    scheme = Dataset()
    scheme.CodingSchemeDesignator = "LN"
    scheme.CodingSchemeURL = "http://loinc.org"
    ds.CodingSchemeIdentificationSequence = Sequence([scheme])
    return ds


# --------------------------------------------------------------------------- URLs and URIs


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("profile", ["basic", "default", "research"])
def test_urls_are_removed_at_every_depth(tmp_path: Path, engines: dict[str, Engine],
                                         profile: str, transfer_syntax: str) -> None:
    path = _save(_with_urls(_image()), tmp_path / "url.dcm", transfer_syntax)
    assert path.read_bytes().count(HOST.encode()) == len(URL_KEYWORDS) + 3
    ds = read_dataset(path).dataset
    result = engines[profile].deidentify(ds)
    for keyword in URL_KEYWORDS:
        assert keyword not in ds, keyword
    series = ds.ReferencedSeriesSequence[0]
    assert "RetrieveURL" not in series
    assert "RetrieveURI" not in series.ReferencedSOPSequence[0]
    assert "RetrieveURL" not in series.ReferencedSOPSequence[0]
    acted = dict(result.acted)
    assert acted["(0008,1190)"] == "X"  # top level RetrieveURL
    assert acted["(0008,1115)>(0008,1199)>(0040,E010)"] == "X"  # nested RetrieveURI
    assert ds.ProcedureCodeSequence[0].URNCodeValue == "urn:oid:2.16.840.1.113883.6.1"
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeURL == "http://loinc.org"


def test_urls_never_reach_the_output_files(tmp_path: Path, key_file: Path) -> None:
    source = tmp_path / "in"
    _save(_with_urls(_image()), source / "a.dcm")
    for profile in ("basic", "default", "research"):
        out = tmp_path / f"out-{profile}"
        summary = run(RunConfig(input_dir=source, output_dir=out, profile=profile,
                                key_file=str(key_file), jobs=1, progress=False))
        assert summary.counts["written"] == 1, summary.failures
        written = list(out.rglob("*.dcm"))
        assert len(written) == 1
        data = written[0].read_bytes()
        assert HOST.encode() not in data
        assert ORIGINAL_STUDY.encode() not in data


def test_selector_ur_value_gets_the_table_dummy(engines: dict[str, Engine]) -> None:
    ds = _image()
    ds.SelectorURValue = _url("selector")
    engines["basic"].deidentify(ds)
    assert ds.SelectorURValue == "http://anonymized.invalid"


def test_pixels_behind_a_jpip_url_fail_the_file(tmp_path: Path, key_file: Path,
                                               engines: dict[str, Engine]) -> None:
    ds = _image()
    ds.PixelDataProviderURL = _url("jpip")
    source = tmp_path / "in"
    path = _save(ds, source / "jpip.dcm", JPIP_REFERENCED)
    with pytest.raises(DeidentificationError, match="JPIP"):
        engines["research"].deidentify(read_dataset(path).dataset)
    out = tmp_path / "out"
    summary = run(RunConfig(input_dir=source, output_dir=out, profile="basic",
                            key_file=str(key_file), jobs=1, progress=False))
    assert (summary.counts["written"], summary.counts["failed"]) == (0, 1)
    assert not list(out.rglob("*.dcm"))
    records = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    failed = [r for r in records if r.get("type") == "file"]
    assert failed[0]["status"] == "failed" and "JPIP" in failed[0]["reason"]
    assert HOST not in (out / "audit.jsonl").read_text()


def test_provider_url_without_jpip_is_just_removed(tmp_path: Path,
                                                   engines: dict[str, Engine]) -> None:
    ds = _image()
    ds.PixelDataProviderURL = _url("stale")
    path = _save(ds, tmp_path / "stale.dcm")
    back = read_dataset(path).dataset
    engines["default"].deidentify(back)
    assert "PixelDataProviderURL" not in back



# --------------------------------------------------------------------------- subjects


def _idless(tmp_path: Path, name: str, birth: str, study: str, number: int) -> Dataset:
    """A file without a Patient ID, written to disk and read back."""
    ds = _image(patient_id="", name=name)
    if not birth:
        del ds.PatientBirthDate
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1234.1.{study}"
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1234.3.{study}.{number}"
    return read_dataset(_save(ds, tmp_path / f"{number}.dcm")).dataset


def _subject(engine: Engine, ds: Dataset) -> tuple[str, int | None]:
    result = engine.deidentify(ds)
    return str(ds.PatientName).rstrip("^"), result.date_offset_days  # Family^ form


def test_idless_patients_with_different_names_stay_apart(tmp_path: Path,
                                                         engines: dict[str, Engine]) -> None:
    doe = _subject(engines["research"], _idless(tmp_path, "DOE^JOHN", "19650412", "1", 1))
    roe = _subject(engines["research"], _idless(tmp_path, "ROE^RICHARD", "19650412", "1", 2))
    assert doe[0].startswith("SUBJ-") and roe[0].startswith("SUBJ-")
    assert doe[0] != roe[0]
    assert doe[1] != roe[1]


def test_files_of_one_idless_patient_share_pseudonym_and_offset(
        tmp_path: Path, engines: dict[str, Engine]) -> None:
    first = _idless(tmp_path, "DOE^JOHN", "19650412", "1", 1)
    later = _idless(tmp_path, "DOE^JOHN", "19650412", "2", 2)
    later.StudyDate = "20200315"
    assert _subject(engines["research"], first) == _subject(engines["research"], later)
    assert _subject(engines["default"], _idless(tmp_path, "DOE^JOHN", "19650412", "1", 3))[0] \
        == _subject(engines["default"], _idless(tmp_path, "DOE^JOHN", "19650412", "2", 4))[0]


def test_without_birth_date_each_study_is_its_own_subject(tmp_path: Path,
                                                          engines: dict[str, Engine]) -> None:
    one = _subject(engines["research"], _idless(tmp_path, "DOE^JOHN", "", "1", 1))
    same_study = _subject(engines["research"], _idless(tmp_path, "DOE^JOHN", "", "1", 2))
    other_study = _subject(engines["research"], _idless(tmp_path, "DOE^JOHN", "", "2", 3))
    assert one == same_study
    assert one[0] != other_study[0] and one[1] != other_study[1]


def test_uid_only_files_are_one_subject_each_and_bare_ones_fail(
        tmp_path: Path, engines: dict[str, Engine]) -> None:
    ds = _image(patient_id="", name="")
    for keyword in ("PatientName", "PatientBirthDate", "StudyInstanceUID"):
        del ds[keyword]
    alone = read_dataset(_save(ds.copy(), tmp_path / "alone.dcm")).dataset
    other = ds.copy()
    other.SOPInstanceUID = "1.2.826.0.1.3680043.10.1234.3.77.2"
    other = read_dataset(_save(other, tmp_path / "other.dcm")).dataset
    # only a SOP Instance UID: each file is its own subject
    assert engines["research"].deidentify(alone).date_offset_days != \
        engines["research"].deidentify(other).date_offset_days
    del ds.SOPInstanceUID
    path = tmp_path / "bare.dcm"
    ds.save_as(path, implicit_vr=False, little_endian=True)  # a raw dataset: no file meta
    with pytest.raises(DeidentificationError, match="tell this file's patient apart"):
        engines["research"].deidentify(read_dataset(path).dataset)
    engines["basic"].deidentify(read_dataset(path).dataset)  # no pseudonym nor offset there


def test_patients_with_an_id_keep_their_pseudonyms_and_offsets(
        engines: dict[str, Engine]) -> None:
    # Values of sample_data's patients with KEY_A before subject keys were introduced:
    # a file with a Patient ID must keep them (releases already made link to them).
    for patient_id, subject, offset, anon in (
            ("12345678", "SUBJ-6DF0268B", -43, "ANON-6DF0268BDA"),
            ("MRN-0042", "SUBJ-B7521806", -221, "ANON-B7521806DB"),
            ("99887766", "SUBJ-F92C31FE", -220, "ANON-F92C31FE9B")):
        assert _subject(engines["research"], _image(patient_id=patient_id)) == (subject, offset)
        assert _subject(engines["default"], _image(patient_id=patient_id))[0] == anon

def test_idless_subjects_in_the_crosswalk(tmp_path: Path, key_file: Path) -> None:
    source = tmp_path / "in"
    for number, name in enumerate(("DOE^JOHN", "ROE^RICHARD")):
        _idless(source, name, "19650412", str(number), number)
    crosswalk = tmp_path / "crosswalk.csv"
    summary = run(RunConfig(input_dir=source, output_dir=tmp_path / "out", profile="research",
                            key_file=str(key_file), jobs=1, progress=False,
                            crosswalk_path=crosswalk))
    assert summary.counts["written"] == 2, summary.failures
    rows = [line.split(",") for line in crosswalk.read_text().splitlines()]
    subjects = {row[2]: (row[3], row[4]) for row in rows if row[1] == "PatientID"}
    assert set(subjects) == {"PatientName+PatientBirthDate\\DOE^JOHN\\19650412",
                             "PatientName+PatientBirthDate\\ROE^RICHARD\\19650412"}
    (doe, doe_days), (roe, roe_days) = subjects.values()
    assert doe != roe and doe_days != roe_days


# --------------------------------------------------------------------------- age cap

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def _aged(tmp_path: Path, age: str | None, birth: str | None,
          study: str | None = "20190101") -> Dataset:
    ds = _image()
    for keyword, value in (("PatientAge", age), ("PatientBirthDate", birth),
                           ("StudyDate", study)):
        if value is None:
            if keyword in ds:
                del ds[keyword]
        else:
            setattr(ds, keyword, value)
    return read_dataset(_save(ds, tmp_path / "aged.dcm")).dataset


@pytest.mark.parametrize(("age", "birth", "study", "capped"), [
    ("095Y", "19231105", "20190101", True),  # the age says it
    (None, "19250101", "20190101", True),  # no age: birth date + study date say 94
    ("045Y", "19250101", "20190101", True),  # the two disagree: the older one counts
    (None, "19290101", "20190101", True),  # 90 on the study day
    (None, "19290102", "20190101", False),  # 89 on the study day, 90 the day after
    ("089Y", "19290102", "20190101", False),
    (None, "19200101", None, True),  # no date to read it against: as of today
    ("053Y", "19650412", "20190101", False),
])
def test_birth_date_goes_when_the_file_shows_an_age_above_the_cap(
        tmp_path: Path, engines: dict[str, Engine], age: str | None, birth: str,
        study: str | None, capped: bool) -> None:
    ds = _aged(tmp_path, age, birth, study)
    result = engines["research"].deidentify(ds)
    acted = dict(result.acted)
    if capped:
        assert ds.PatientBirthDate == ""
        assert acted["(0010,0030)"] == "Z"
        if age is not None:
            assert ds.PatientAge == "090Y"
    else:
        assert acted["(0010,0030)"] == "S"  # shifted with the patient's offset as before
        assert ds.PatientBirthDate not in ("", birth)
        if age is not None:
            assert ds.PatientAge == age


def test_without_a_cap_ages_and_birth_dates_stay(tmp_path: Path, keyed: KeyedSource) -> None:
    path = tmp_path / "nocap.yaml"
    path.write_text("name: nocap\nextends: research\nage:\n  cap: null\n", encoding="utf-8")
    engine = Engine(load_profile(str(path)), keyed)
    ds = _aged(tmp_path, "095Y", "19231105")
    engine.deidentify(ds)
    assert ds.PatientAge == "095Y"
    assert ds.PatientBirthDate not in ("", "19231105")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def _num(concept: Dataset, value: str, unit: Dataset) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "NUM"
    item.ConceptNameCodeSequence = Sequence([concept])
    measured = Dataset()
    measured.NumericValue = value
    measured.MeasurementUnitsCodeSequence = Sequence([unit])
    item.MeasuredValueSequence = Sequence([measured])
    return item


YEARS = _code("a", "UCUM", "year")
MONTHS = _code("mo", "UCUM", "month")
MILLIMETRES = _code("mm", "UCUM", "millimeter")
SUBJECT_AGE = _code("121033", "DCM", "Subject Age")
LOINC_AGE = _code("30525-0", "LN", "Age")
DIAMETER = _code("81827009", "SCT", "Diameter")


def _report(tmp_path: Path, *items: Dataset, age: str | None = None,
            birth: str | None = None) -> Path:
    """A Basic Text SR with ``items`` one level down, in a container."""
    ds = _image()
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.Modality = "SR"
    del ds.PatientBirthDate
    if age is not None:
        ds.PatientAge = age
    if birth is not None:
        ds.PatientBirthDate = birth
    container = Dataset()
    container.RelationshipType = "CONTAINS"
    container.ValueType = "CONTAINER"
    container.ConceptNameCodeSequence = Sequence([_code("121070", "DCM", "Findings")])
    container.ContinuityOfContent = "SEPARATE"
    container.ContentSequence = Sequence(list(items))
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("126000", "DCM", "Imaging Measurement Report")])
    ds.ContentSequence = Sequence([container])
    return _save(ds, tmp_path / "sr.dcm")


def _numbers(ds: Dataset) -> list[str]:
    items = ds.ContentSequence[0].ContentSequence
    return [str(item.MeasuredValueSequence[0].NumericValue).strip() for item in items]


def test_sr_ages_above_the_cap_are_capped_in_their_unit(tmp_path: Path,
                                                       engines: dict[str, Engine]) -> None:
    path = _report(tmp_path, _num(SUBJECT_AGE, "93", YEARS), _num(LOINC_AGE, "1116", MONTHS),
                   _num(DIAMETER, "95", MILLIMETRES))
    ds = read_dataset(path).dataset
    result = engines["research"].deidentify(ds)
    assert _numbers(ds) == ["90", "1080", "95"]
    assert ("(0040,A730)>(0040,A730)>(0040,A300)", "D") in result.acted


def test_sr_ages_below_the_cap_stay(tmp_path: Path, engines: dict[str, Engine]) -> None:
    ds = read_dataset(_report(tmp_path, _num(SUBJECT_AGE, "45", YEARS),
                              _num(LOINC_AGE, "600", MONTHS))).dataset
    engines["research"].deidentify(ds)
    assert _numbers(ds) == ["45", "600"]


def test_sr_age_follows_a_capped_patients_age(tmp_path: Path,
                                              engines: dict[str, Engine]) -> None:
    # Patient's Age says 95, the report an (inconsistent) 88: that one would tell too.
    ds = read_dataset(_report(tmp_path, _num(SUBJECT_AGE, "88", YEARS), age="095Y")).dataset
    engines["research"].deidentify(ds)
    assert ds.PatientAge == "090Y"
    assert _numbers(ds) == ["90"]


def test_an_sr_age_above_the_cap_takes_the_birth_date(tmp_path: Path,
                                                      engines: dict[str, Engine]) -> None:
    ds = read_dataset(_report(tmp_path, _num(SUBJECT_AGE, "93", YEARS),
                              birth="19660101")).dataset
    engines["research"].deidentify(ds)
    assert ds.PatientBirthDate == ""


def test_capped_ages_in_the_written_files(tmp_path: Path, key_file: Path) -> None:
    source = tmp_path / "in"
    _save(_aged(tmp_path, None, "19250101"), source / "ct.dcm")
    _report(source, _num(SUBJECT_AGE, "93", YEARS), age="093Y", birth="19251003")
    out = tmp_path / "out"
    summary = run(RunConfig(input_dir=source, output_dir=out, profile="research",
                            key_file=str(key_file), jobs=1, progress=False))
    assert summary.counts["written"] == 2, summary.failures
    for path in out.rglob("*.dcm"):
        ds = dcmread_quiet(path)
        assert ds.PatientBirthDate == ""
        assert b"1925" not in path.read_bytes() and b"1924" not in path.read_bytes()
        if ds.Modality == "SR":
            assert ds.PatientAge == "090Y"
            assert _numbers(ds) == ["90"]
