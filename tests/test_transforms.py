"""Transforms (``anonymizer/transforms.py``): keyed pseudonyms, date and datetime shifts, the
HIPAA age cap on Patient's Age and free text cleaned of the file's identifiers, applied by the
real engine to generated datasets and sample_data.

The age cap across Patient's Birth Date and SR ages is in ``test_disclosure.py``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA
from pydicom.dataset import Dataset

from anonymizer.engine import Engine
from anonymizer.io import read_dataset
from anonymizer.transforms import as_years, render_format, shift_date, shift_datetime

CT = "1.2.840.10008.5.1.4.1.1.2"
DOE_CT = SAMPLE_DATA / "DOE^JOHN_12345678" / "20190101_CT_CHEST"
DOE_MR = SAMPLE_DATA / "DOE^JOHN_12345678" / "20200315_MR_BRAIN"


def _read(path: Path) -> Dataset:
    return read_dataset(path).dataset


def _patient(patient_id: str = "12345678", name: str = "DOE^JOHN", study_date: str = "20190101",
             age: str = "053Y", description: str = "CT CHEST") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1234.3.{study_date}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1234.1.{study_date}"
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19650412"
    ds.PatientAge = age
    ds.StudyDate = study_date
    ds.AcquisitionDateTime = f"{study_date}101819.000000+0100"
    ds.StudyDescription = description
    return ds


def test_research_patient_id_pseudonym_and_name(engines: dict[str, Engine]) -> None:
    ds = _patient()
    result = engines["research"].deidentify(ds)
    assert re.fullmatch(r"SUBJ-[0-9A-F]{8}", ds.PatientID)
    assert str(ds.PatientName) == f"{ds.PatientID}^"  # Family^Given, not the retired one-part form
    assert ("PatientID", "12345678", ds.PatientID, True) in result.pseudonyms


def test_research_same_patient_same_pseudonym_and_offset(engines: dict[str, Engine]) -> None:
    first, second = _patient(study_date="20190101"), _patient(study_date="20200315")
    other = _patient(patient_id="99887766", name="ROE^RICHARD")
    r1 = engines["research"].deidentify(first)
    r2 = engines["research"].deidentify(second)
    r3 = engines["research"].deidentify(other)
    assert first.PatientID == second.PatientID
    assert other.PatientID != first.PatientID
    assert r1.date_offset_days == r2.date_offset_days
    assert r1.date_offset_days is not None and -365 <= r1.date_offset_days <= -1
    assert r3.date_offset_days is not None and -365 <= r3.date_offset_days <= -1


def _day(value: str) -> dt.date:
    return dt.datetime.strptime(value, "%Y%m%d").date()


def test_research_interval_between_studies_of_one_patient_kept(
        engines: dict[str, Engine]) -> None:
    ct, mr = _read(DOE_CT / "IM0001.dcm"), _read(DOE_MR / "IM0001.dcm")
    interval = _day(mr.StudyDate) - _day(ct.StudyDate)
    assert interval.days == 439
    r_ct = engines["research"].deidentify(ct)
    r_mr = engines["research"].deidentify(mr)
    assert ct.StudyDate != "20190101" and mr.StudyDate != "20200315"
    assert _day(mr.StudyDate) - _day(ct.StudyDate) == interval
    assert r_ct.date_offset_days == r_mr.date_offset_days
    assert ct.PatientID == mr.PatientID
    assert _day(ct.StudyDate) - _day("20190101") == dt.timedelta(days=r_ct.date_offset_days)


def test_research_datetime_keeps_time_and_utc_offset(engines: dict[str, Engine]) -> None:
    ds = _read(DOE_CT / "IM0001.dcm")
    assert ds.AcquisitionDateTime == "20190101101819.000000+0100"
    result = engines["research"].deidentify(ds)
    assert result.date_offset_days is not None
    shifted = _day("20190101") + dt.timedelta(days=result.date_offset_days)
    assert ds.AcquisitionDateTime == shifted.strftime("%Y%m%d") + "101819.000000+0100"
    assert ds.AcquisitionDateTime.endswith("+0100")


@pytest.mark.parametrize(("age", "expected"), [("095Y", "090Y"), ("045Y", "045Y"),
                                                ("089Y", "089Y"), ("090Y", "090Y")])
def test_research_age_cap(engines: dict[str, Engine], age: str, expected: str) -> None:
    ds = _patient(age=age)
    engines["research"].deidentify(ds)
    assert ds.PatientAge == expected


def test_research_free_text_scrubbed_of_family_name(engines: dict[str, Engine]) -> None:
    ds = _patient(description="CT CHEST FOR DOE FOLLOW-UP")
    engines["research"].deidentify(ds)
    assert "DOE" not in ds.StudyDescription.upper()
    assert ds.StudyDescription == f"CT CHEST FOR {ds.PatientID} FOLLOW-UP"
    unrelated = _patient(description="CT CHEST FOLLOW-UP")
    engines["research"].deidentify(unrelated)
    assert unrelated.StudyDescription == "CT CHEST FOLLOW-UP"


# --------------------------------------------------------------------------- the pure pieces


@pytest.mark.parametrize(("value", "days", "expected"), [
    ("20190101", -1, "20181231"),
    ("20200301", -1, "20200229"),  # a leap day
    ("2019", -1, "2018"),  # a DT's year alone: shifted from 1 January, written as given
    ("201903", -60, "201812"),  # from 1 March
    (" 20190101 ", 0, "20190101"),
    ("20191301", -1, None),  # no 13th month
    ("2019-01-01", -1, None),
    ("00010101", -1, None),  # before year 1
])
def test_shift_date(value: str, days: int, expected: str | None) -> None:
    assert shift_date(value, days) == expected


@pytest.mark.parametrize(("value", "keep_time", "expected"), [
    ("20190101101819.000000+0100", True, "20181231101819.000000+0100"),
    ("20190101101819.000000+0100", False, "20181231+0100"),
    ("20190101", True, "20181231"),
    ("2019010110", True, "2018123110"),
    ("20190101T1018", True, None),
])
def test_shift_datetime_keeps_time_and_utc_offset(value: str, keep_time: bool,
                                                  expected: str | None) -> None:
    assert shift_datetime(value, -1, keep_time) == expected


def test_render_format() -> None:
    digest = "0123456789abcdef" * 4
    assert render_format("ANON-{hash:10}", digest, None) == "ANON-0123456789"
    assert render_format("{hash}", digest, None) == "0123456789ABCDEF"
    assert render_format("{patient_id}-{hash:4}", digest, "SUBJ-1") == "SUBJ-1-0123"
    assert render_format("{{literal}}", digest, None) == "{literal}"


@pytest.mark.parametrize(("value", "years"), [
    ("095Y", 95.0), ("012M", 1.0), ("522W", 10.0), ("000D", 0.0), ("95Y", None), ("095", None),
])
def test_as_years(value: str, years: float | None) -> None:
    result = as_years(value)
    assert result == (None if years is None else pytest.approx(years, abs=0.01))
