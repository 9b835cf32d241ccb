"""Generate the synthetic DICOM test data in ``sample_data/``.

Everything this script writes is SYNTHETIC.  The patients, physicians, institutions,
addresses, telephone numbers, identifiers and dates are invented and deliberately
obviously fake.  They exist so that the de-identification pipeline has realistic-looking
PHI to remove, planted in all the places a real PACS export hides it: folder names,
plain header attributes, nested sequences (depth >= 2), private blocks (well-known,
unknown, at an unusual slot, inside a sequence item, orphaned), overlay and curve
repeating groups, structured-report text and a non-DICOM notes file.

Usage::

    python scripts/make_sample_data.py sample_data

The output is deterministic: UIDs are built from a fixed root plus counters, all dates
and times are constants, and pixel data is computed from a formula, so two runs produce
byte-identical files.  Before writing, the script deletes every ``*.dcm`` file below the
target folder and the patient folders it creates (nothing else).

Files written (relative to the target folder)::

    DOE^JOHN_12345678/
        notes.txt                          non-DICOM clinical note with PHI; must be skipped
        20190101_CT_CHEST/
            IM0001.dcm                     CT; GEMS_IDEN_01 at (0009,0010); ACME block (0029)
            IM0002.dcm                     CT; private ACME block inside a sequence item
            IM0003                         CT; no file extension
            SR0001.dcm                     Basic Text SR; PN/TEXT content items with PHI
        20200315_MR_BRAIN/
            IM0001.dcm                     MR; overlay group 6000 with OverlayComments
            IM0002.dcm                     MR
    MÜLLER^ANNA MRN-0042/                  space and non-ASCII character in the folder name
        20210704_MR_KNEE/
            IM0001.dcm                     MR; ISO_IR 192 (UTF-8) names and address
            IM0002.dcm                     MR; ISO_IR 192
            IM0003.dcm                     Enhanced MR, 4 frames, functional groups
    ROE^RICHARD_99887766/
        20180220_CT_ABDOMEN/
            IM0001.dcm                     CT; GEMS_IDEN_01 at unusual slot (0009,0011)
            IM0002.dcm                     CT; Implicit VR Little Endian
        20220911_CT_HEAD/
            IM0001.dcm                     CT; orphan private (0019,1050); curve group 5000;
                                           ReferencedImageSequence points to the prior study
"""

from __future__ import annotations

import argparse
import shutil
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

UID_ROOT = "1.2.826.0.1.3680043.10.1234."
IMPLEMENTATION_CLASS_UID = UID_ROOT + "0.1"
IMPLEMENTATION_VERSION_NAME = "ANON_SAMPLE_1"
SOURCE_AE_TITLE = "PACS_HOSPITAL_A"

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
BASIC_TEXT_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
DETACHED_PATIENT_MANAGEMENT = "1.2.840.10008.3.1.2.1.1"

GEMS_CREATOR = "GEMS_IDEN_01"
ACME_CREATOR = "ACME HOSPITAL PHI 1.0"

NOTES_TEXT = (
    "SYNTHETIC TEST FILE - all names and numbers below are invented.\n"
    "Clinical note for DOE, JOHN (MRN 12345678, DOB 1965-04-12)\n"
    "Address: 123 Fake Street, Springfield. Phone 555-0100.\n"
    "Seen by Dr. Nick Riviera on 2019-01-01 at Springfield General Hospital.\n"
    "Wife Jane Doe (555-0101) to be called with the CT chest results.\n"
)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Patient:
    """A synthetic patient and the institution that holds their record.

    Attributes
    ----------
    number : int
        Counter used inside UIDs.
    name : str
        PatientName (PN).
    patient_id : str
        PatientID.
    birth_date, sex, size, weight : str
        Demographics (DA, CS, DS, DS).
    address, telephone, comments : str
        PatientAddress, PatientTelephoneNumbers, PatientComments.
    other_id, issuer : str
        OtherPatientIDs value and IssuerOfPatientID.
    charset : str or None
        SpecificCharacterSet, or None to omit it (default repertoire).
    folder : str
        Export folder name, which itself carries PHI.
    institution, institution_address, department : str
        InstitutionName, InstitutionAddress, InstitutionalDepartmentName.
    referring_physician : str
        ReferringPhysicianName (PN).
    """

    number: int
    name: str
    patient_id: str
    birth_date: str
    sex: str
    size: str
    weight: str
    address: str
    telephone: str
    comments: str
    other_id: str
    issuer: str
    charset: str | None
    folder: str
    institution: str
    institution_address: str
    department: str
    referring_physician: str

    @property
    def reference_uid(self) -> str:
        """Return the UID used in ReferencedPatientSequence for this patient."""
        return f"{UID_ROOT}5.{self.number}"


@dataclass(frozen=True)
class Study:
    """A synthetic study of one patient.

    Attributes
    ----------
    patient : Patient
        Owner of the study.
    number : int
        Counter used inside UIDs (unique per patient).
    date, time, tz : str
        StudyDate (DA), StudyTime (TM) and UTC offset such as ``"+0100"``.
    accession, study_id, requested_procedure_id : str
        AccessionNumber, StudyID, RequestedProcedureID.
    description, body_part : str
        StudyDescription and BodyPartExamined.
    requesting_physician : str
        RequestingPhysician (PN).
    folder : str
        Export folder name below the patient folder.
    """

    patient: Patient
    number: int
    date: str
    time: str
    tz: str
    accession: str
    study_id: str
    requested_procedure_id: str
    description: str
    body_part: str
    requesting_physician: str
    folder: str

    @property
    def uid(self) -> str:
        """Return the StudyInstanceUID."""
        return f"{UID_ROOT}1.{self.patient.number}.{self.number}"

    @property
    def frame_of_reference_uid(self) -> str:
        """Return the FrameOfReferenceUID shared by all images of the study."""
        return f"{UID_ROOT}4.{self.patient.number}.{self.number}"

    @property
    def path(self) -> Path:
        """Return the study folder relative to the target folder."""
        return Path(self.patient.folder, self.folder)


@dataclass(frozen=True)
class Series:
    """A synthetic series, including the equipment and staff that produced it.

    Attributes
    ----------
    study : Study
        Parent study.
    number : int
        SeriesNumber, also used inside UIDs.
    modality, description, time, protocol : str
        Modality, SeriesDescription, SeriesTime, ProtocolName.
    performing_physician, operator, reading_physician : str
        PerformingPhysicianName, OperatorsName, NameOfPhysiciansReadingStudy (PN).
    station, manufacturer, model, serial, software : str
        StationName, Manufacturer, ManufacturerModelName, DeviceSerialNumber,
        SoftwareVersions.
    """

    study: Study
    number: int
    modality: str
    description: str
    time: str
    protocol: str
    performing_physician: str
    operator: str
    reading_physician: str
    station: str
    manufacturer: str
    model: str
    serial: str
    software: str

    @property
    def uid(self) -> str:
        """Return the SeriesInstanceUID."""
        return f"{UID_ROOT}2.{self.study.patient.number}.{self.study.number}.{self.number}"

    def sop_uid(self, instance: int) -> str:
        """Return the SOPInstanceUID of instance number ``instance`` of this series.

        Parameters
        ----------
        instance : int
            InstanceNumber (1-based).

        Returns
        -------
        str
            The SOPInstanceUID.
        """
        study = self.study
        return f"{UID_ROOT}3.{study.patient.number}.{study.number}.{self.number}.{instance}"


DOE = Patient(
    number=1,
    name="DOE^JOHN",
    patient_id="12345678",
    birth_date="19650412",
    sex="M",
    size="1.80",
    weight="82",
    address="123 Fake Street, Springfield, ZZ 00000",
    telephone="555-0100",
    comments="Allergic to penicillin. Contact wife JANE DOE at 555-0101.",
    other_id="OLD-12345678",
    issuer="SPRINGFIELD GENERAL",
    charset="ISO_IR 100",
    folder="DOE^JOHN_12345678",
    institution="SPRINGFIELD GENERAL HOSPITAL",
    institution_address="1 Hospital Drive, Springfield, ZZ 00000",
    department="RADIOLOGY",
    referring_physician="RIVIERA^NICK^^DR.",
)
MULLER = Patient(
    number=2,
    name="MÜLLER^ANNA",
    patient_id="MRN-0042",
    birth_date="19881224",
    sex="F",
    size="1.68",
    weight="61",
    address="Musterstraße 1, 12345 Musterstadt",
    telephone="+49 30 1234567",
    comments="Patientin spricht Deutsch; Tochter Lena Müller informieren.",
    other_id="KMS-778899",
    issuer="KLINIKUM MUSTERSTADT",
    charset="ISO_IR 192",
    folder="MÜLLER^ANNA MRN-0042",
    institution="KLINIKUM MUSTERSTADT SÜD",
    institution_address="Krankenhausweg 7, 12345 Musterstadt",
    department="RADIOLOGIE",
    referring_physician="GRÜN^PETRA^^DR.",
)
ROE = Patient(
    number=3,
    name="ROE^RICHARD",
    patient_id="99887766",
    birth_date="19500606",
    sex="M",
    size="1.75",
    weight="90",
    address="42 Example Road, Anytown, ZZ 99999",
    telephone="555-0199",
    comments="Pacemaker implanted 2015. Wife: MARY ROE.",
    other_id="RR-1950-06",
    issuer="ANYTOWN MEDICAL CENTER",
    charset=None,
    folder="ROE^RICHARD_99887766",
    institution="ANYTOWN MEDICAL CENTER",
    institution_address="99 Main Street, Anytown, ZZ 99999",
    department="EMERGENCY RADIOLOGY",
    referring_physician="KILDARE^JAMES^^DR.",
)

DOE_CT_STUDY = Study(
    patient=DOE,
    number=1,
    date="20190101",
    time="101500",
    tz="+0100",
    accession="ACC2019000101",
    study_id="CT190101",
    requested_procedure_id="RP-DOE-0001",
    description="CT CHEST W/O CONTRAST",
    body_part="CHEST",
    requesting_physician="RIVIERA^NICK^^DR.",
    folder="20190101_CT_CHEST",
)
DOE_MR_STUDY = Study(
    patient=DOE,
    number=2,
    date="20200315",
    time="141000",
    tz="+0100",
    accession="ACC2020031501",
    study_id="MR200315",
    requested_procedure_id="RP-DOE-0002",
    description="MRI BRAIN WITH AND WITHOUT CONTRAST",
    body_part="HEAD",
    requesting_physician="HIBBERT^JULIUS^^DR.",
    folder="20200315_MR_BRAIN",
)
MULLER_MR_STUDY = Study(
    patient=MULLER,
    number=1,
    date="20210704",
    time="083000",
    tz="+0200",
    accession="KMS2107040042",
    study_id="MR0042A",
    requested_procedure_id="RP-MÜLLER-01",
    description="MRT KNIE RECHTS",
    body_part="KNEE",
    requesting_physician="GRÜN^PETRA^^DR.",
    folder="20210704_MR_KNEE",
)
ROE_CT_STUDY = Study(
    patient=ROE,
    number=1,
    date="20180220",
    time="161500",
    tz="-0500",
    accession="AMC18022001",
    study_id="CT180220",
    requested_procedure_id="RP-ROE-0001",
    description="CT ABDOMEN PELVIS WITH CONTRAST",
    body_part="ABDOMEN",
    requesting_physician="KILDARE^JAMES^^DR.",
    folder="20180220_CT_ABDOMEN",
)
ROE_HEAD_STUDY = Study(
    patient=ROE,
    number=2,
    date="20220911",
    time="220500",
    tz="-0400",
    accession="AMC22091101",
    study_id="CT220911",
    requested_procedure_id="RP-ROE-0002",
    description="CT HEAD TRAUMA",
    body_part="HEAD",
    requesting_physician="CASEY^BEN^^DR.",
    folder="20220911_CT_HEAD",
)

_GE_CT = {
    "manufacturer": "GE MEDICAL SYSTEMS",
    "model": "LightSpeed VCT",
    "software": "LightSpeedverrel",
}
_SIEMENS_MR = {
    "manufacturer": "SIEMENS",
    "model": "Skyra",
    "software": "syngo MR E11",
}

DOE_CT_SERIES = Series(
    study=DOE_CT_STUDY,
    number=2,
    modality="CT",
    description="CT CHEST JOHN DOE",
    time="101812",
    protocol="CHEST ROUTINE",
    performing_physician="STRANGELOVE^MERKWURDIG^^DR.",
    operator="TECH^TERRY",
    reading_physician="HOUSE^GREGORY^^DR.",
    station="SGH-CT01",
    serial="GE-CT-0000123",
    **_GE_CT,
)
DOE_SR_SERIES = Series(
    study=DOE_CT_STUDY,
    number=900,
    modality="SR",
    description="RADIOLOGY REPORT",
    time="150000",
    protocol="",
    performing_physician="HOUSE^GREGORY^^DR.",
    operator="TYPIST^TINA",
    reading_physician="HOUSE^GREGORY^^DR.",
    station="SGH-RIS01",
    serial="RIS-0001",
    manufacturer="FAKE RIS INC",
    model="ReportWriter",
    software="1.0",
)
DOE_MR_SERIES = Series(
    study=DOE_MR_STUDY,
    number=3,
    modality="MR",
    description="T1 SE AX",
    time="142230",
    protocol="BRAIN ROUTINE",
    performing_physician="QUINN^MICHAELA^^DR.",
    operator="TECH^TOBY",
    reading_physician="HOUSE^GREGORY^^DR.",
    station="SGH-MR01",
    serial="SIE-MR-45678",
    **_SIEMENS_MR,
)
MULLER_MR_SERIES = Series(
    study=MULLER_MR_STUDY,
    number=4,
    modality="MR",
    description="PD TSE SAG RE",
    time="083512",
    protocol="KNIE STANDARD",
    performing_physician="SCHWARZ^KLAUS^^DR.",
    operator="MTRA^JÖRG",
    reading_physician="WEIß^EVA^^DR.",
    station="KMS-MRT2",
    serial="SIE-MR-98765",
    **_SIEMENS_MR,
)
MULLER_ENH_SERIES = Series(
    study=MULLER_MR_STUDY,
    number=5,
    modality="MR",
    description="T1 3D SAG ENHANCED",
    time="084700",
    protocol="KNIE 3D",
    performing_physician="SCHWARZ^KLAUS^^DR.",
    operator="MTRA^JÖRG",
    reading_physician="WEIß^EVA^^DR.",
    station="KMS-MRT2",
    serial="SIE-MR-98765",
    **_SIEMENS_MR,
)
ROE_CT_SERIES = Series(
    study=ROE_CT_STUDY,
    number=3,
    modality="CT",
    description="ABD PELVIS PORTAL VENOUS",
    time="162010",
    protocol="ABD PELVIS IV",
    performing_physician="GILLESPIE^LEONARD^^DR.",
    operator="TECH^TANYA",
    reading_physician="KILDARE^JAMES^^DR.",
    station="AMC-CT-ER",
    serial="GE-CT-0000999",
    **_GE_CT,
)
ROE_HEAD_SERIES = Series(
    study=ROE_HEAD_STUDY,
    number=2,
    modality="CT",
    description="HEAD W/O 5MM",
    time="220730",
    protocol="HEAD TRAUMA",
    performing_physician="CASEY^BEN^^DR.",
    operator="TECH^TANYA",
    reading_physician="CASEY^BEN^^DR.",
    station="AMC-CT-ER",
    serial="GE-CT-0000999",
    **_GE_CT,
)

PATIENT_FOLDERS = (DOE.folder, MULLER.folder, ROE.folder)


# --------------------------------------------------------------------------- helpers


def _time_plus(hhmmss: str, seconds: int) -> str:
    """Add seconds to a ``HHMMSS`` time string.

    Parameters
    ----------
    hhmmss : str
        Time of day as ``HHMMSS``.
    seconds : int
        Seconds to add (wraps at midnight).

    Returns
    -------
    str
        The new time as ``HHMMSS``.
    """
    total = int(hhmmss[0:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:6]) + seconds
    total %= 24 * 3600
    return f"{total // 3600:02d}{total // 60 % 60:02d}{total % 60:02d}"


def _age(birth_date: str, on_date: str) -> str:
    """Return PatientAge (``nnnY``) of someone born on ``birth_date`` at ``on_date``.

    Parameters
    ----------
    birth_date, on_date : str
        Dates as ``YYYYMMDD``.

    Returns
    -------
    str
        Age string such as ``"053Y"``.
    """
    years = int(on_date[:4]) - int(birth_date[:4]) - int(on_date[4:] < birth_date[4:])
    return f"{years:03d}Y"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """Return a code sequence item.

    Parameters
    ----------
    value, scheme, meaning : str
        CodeValue, CodingSchemeDesignator and CodeMeaning.

    Returns
    -------
    Dataset
        The code item.
    """
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _sop_ref(sop_class: str, sop_instance: str) -> Dataset:
    """Return an item with ReferencedSOPClassUID and ReferencedSOPInstanceUID.

    Parameters
    ----------
    sop_class, sop_instance : str
        The referenced SOP class and instance UIDs.

    Returns
    -------
    Dataset
        The reference item.
    """
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def _pixel_bytes(rows: int, cols: int, frames: int, seed: int) -> bytes:
    """Return deterministic little-endian uint16 pixel data (12 bits used).

    The image is a bright disc on a gradient so it looks vaguely like anatomy.

    Parameters
    ----------
    rows, cols, frames : int
        Image geometry.
    seed : int
        Varies the pattern between files.

    Returns
    -------
    bytes
        ``rows * cols * frames * 2`` bytes.
    """
    values: list[int] = []
    cy, cx = rows / 2, cols / 2
    radius2 = (min(rows, cols) * 0.35) ** 2
    for frame in range(frames):
        for y in range(rows):
            for x in range(cols):
                base = (x * 37 + y * 23 + seed * 101 + frame * 59) % 400
                inside = (y - cy) ** 2 + (x - cx) ** 2 <= radius2 + frame * 4
                values.append(base + (1800 if inside else 600))
    return struct.pack(f"<{len(values)}H", *values)


def _overlay_bytes(rows: int, cols: int) -> bytes:
    """Return 1-bit overlay data drawing a rectangle outline, padded to even length.

    Parameters
    ----------
    rows, cols : int
        Overlay geometry.

    Returns
    -------
    bytes
        Packed bits, little-endian bit order (first pixel in bit 0).
    """
    bits = [
        int(y in (4, rows - 5) or x in (4, cols - 5))
        if 4 <= y < rows - 4 and 4 <= x < cols - 4
        else 0
        for y in range(rows)
        for x in range(cols)
    ]
    packed = bytearray()
    for start in range(0, len(bits), 8):
        byte = 0
        for offset, bit in enumerate(bits[start : start + 8]):
            byte |= bit << offset
        packed.append(byte)
    if len(packed) % 2:
        packed.append(0)
    return bytes(packed)


# --------------------------------------------------------------------------- builders


def _base_dataset(series: Series, instance: int, sop_class: str) -> Dataset:
    """Return a dataset with the patient, study, series and equipment modules filled in.

    Parameters
    ----------
    series : Series
        Series the instance belongs to.
    instance : int
        InstanceNumber.
    sop_class : str
        SOPClassUID.

    Returns
    -------
    Dataset
        Dataset with file meta prepared for Explicit VR Little Endian.
    """
    study = series.study
    patient = study.patient
    acq_time = _time_plus(series.time, instance * 7)
    content_time = _time_plus(acq_time, 2)

    ds = Dataset()
    if patient.charset is not None:
        ds.SpecificCharacterSet = patient.charset
    ds.InstanceCreationDate = study.date
    ds.InstanceCreationTime = content_time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = series.sop_uid(instance)
    ds.StudyDate = study.date
    ds.SeriesDate = study.date
    ds.AcquisitionDate = study.date
    ds.ContentDate = study.date
    ds.AcquisitionDateTime = f"{study.date}{acq_time}.000000{study.tz}"
    ds.StudyTime = study.time
    ds.SeriesTime = series.time
    ds.AcquisitionTime = acq_time
    ds.ContentTime = content_time
    ds.AccessionNumber = study.accession
    ds.Modality = series.modality
    ds.Manufacturer = series.manufacturer
    ds.InstitutionName = patient.institution
    ds.InstitutionAddress = patient.institution_address
    ds.ReferringPhysicianName = patient.referring_physician
    ds.ReferringPhysicianTelephoneNumbers = "555-0123"
    ds.TimezoneOffsetFromUTC = study.tz
    ds.StationName = series.station
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.InstitutionalDepartmentName = patient.department
    ds.PhysiciansOfRecord = patient.referring_physician
    ds.PerformingPhysicianName = series.performing_physician
    ds.NameOfPhysiciansReadingStudy = series.reading_physician
    ds.OperatorsName = series.operator
    ds.ManufacturerModelName = series.model

    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = patient.issuer
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    other = Dataset()
    other.PatientID = patient.other_id
    other.IssuerOfPatientID = patient.issuer + " OLD RIS"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.OtherPatientIDs = patient.other_id
    ds.PatientAge = _age(patient.birth_date, study.date)
    ds.PatientSize = patient.size
    ds.PatientWeight = patient.weight
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.telephone
    ds.PatientComments = patient.comments

    ds.DeviceSerialNumber = series.serial
    ds.SoftwareVersions = series.software
    if series.protocol:
        ds.ProtocolName = series.protocol
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series.uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series.number
    ds.InstanceNumber = instance

    ds.RequestingPhysician = study.requesting_physician
    ds.RequestedProcedureDescription = study.description
    request = Dataset()
    request.AccessionNumber = study.accession
    request.RequestedProcedureID = study.requested_procedure_id
    request.ScheduledProcedureStepID = f"SPS-{study.study_id}"
    request.RequestedProcedureDescription = study.description
    request.ReferencedStudySequence = Sequence([_sop_ref(DETACHED_STUDY_MANAGEMENT, study.uid)])
    ds.RequestAttributesSequence = Sequence([request])
    ds.PerformedProcedureStepStartDate = study.date
    ds.PerformedProcedureStepStartTime = study.time
    ds.PerformedProcedureStepID = f"PPS-{study.study_id}"
    ds.PerformedProcedureStepDescription = study.description

    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    meta.SourceApplicationEntityTitle = SOURCE_AE_TITLE
    ds.file_meta = meta
    return ds


def _add_image_modules(
    ds: Dataset, series: Series, instance: int, size: int, frames: int = 1
) -> None:
    """Add frame of reference, plane, pixel and referenced-image attributes.

    Parameters
    ----------
    ds : Dataset
        Dataset to extend in place.
    series : Series
        Series the instance belongs to.
    instance : int
        InstanceNumber; also selects the referenced neighbour image.
    size : int
        Rows and columns.
    frames : int, optional
        NumberOfFrames; the attribute is only written when greater than 1.
    """
    study = series.study
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = "XY"
    ds.BodyPartExamined = study.body_part
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    ds.ImageComments = f"Scanned for {study.patient.name} by {series.operator}"
    ds.BurnedInAnnotation = "NO"
    if frames == 1:
        z = f"{-50 + instance * 5:.1f}"
        ds.ImagePositionPatient = ["-120.0", "-120.0", z]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = z
        ds.PixelSpacing = ["0.75", "0.75"]
        # Reference another image of the same series so remapped UIDs can be checked.
        target = 2 if instance == 1 else 1
        ds.ReferencedImageSequence = Sequence([_sop_ref(ds.SOPClassUID, series.sop_uid(target))])
    else:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    seed = study.patient.number * 100 + series.number * 10 + instance
    ds.PixelData = _pixel_bytes(size, size, frames, seed)
    ds["PixelData"].VR = "OW"


def _add_private_tags(ds: Dataset, gems_slot_taken: bool = False) -> None:
    """Add the GE identification block (0009) and the unknown ACME block (0029).

    Parameters
    ----------
    ds : Dataset
        Dataset to extend in place.
    gems_slot_taken : bool, optional
        If True, first reserve (0009,0010) for another creator so that GEMS_IDEN_01
        lands at the unusual slot (0009,0011) and its elements at (0009,11xx).
    """
    if gems_slot_taken:
        other = ds.private_block(0x0009, "ACME SCANNER EXTRAS", create=True)
        other.add_new(0x01, "LO", "SCANNER ROOM 3 - ANYTOWN")
    gems = ds.private_block(0x0009, GEMS_CREATOR, create=True)
    gems.add_new(0x01, "LO", "GE_GENESIS_FF")
    gems.add_new(0x02, "SH", "CT01")
    acme = ds.private_block(0x0029, ACME_CREATOR, create=True)
    acme.add_new(0x01, "LO", str(ds.PatientName))
    acme.add_new(0x02, "LO", f"MRN {ds.PatientID} DOB {ds.PatientBirthDate}")


def _ct_image(
    series: Series, instance: int, gems_slot_taken: bool = False, contrast: str = ""
) -> Dataset:
    """Return a single-frame 32x32 CT Image Storage dataset.

    Parameters
    ----------
    series : Series
        CT series.
    instance : int
        InstanceNumber.
    gems_slot_taken : bool, optional
        Passed to :func:`_add_private_tags`.
    contrast : str, optional
        ContrastBolusAgent, omitted when empty.

    Returns
    -------
    Dataset
        The CT dataset.
    """
    ds = _base_dataset(series, instance, CT_IMAGE_STORAGE)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    if contrast:
        ds.ContrastBolusAgent = contrast
    ds.SliceThickness = "2.5"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = "360"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "600"
    ds.XRayTubeCurrent = "250"
    ds.ConvolutionKernel = "STANDARD"
    _add_image_modules(ds, series, instance, 32)
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    _add_private_tags(ds, gems_slot_taken=gems_slot_taken)
    return ds


def _mr_image(series: Series, instance: int) -> Dataset:
    """Return a single-frame 32x32 MR Image Storage dataset.

    Parameters
    ----------
    series : Series
        MR series.
    instance : int
        InstanceNumber.

    Returns
    -------
    Dataset
        The MR dataset.
    """
    ds = _base_dataset(series, instance, MR_IMAGE_STORAGE)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = "PFP"
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = "*tse2d1_3"
    ds.SliceThickness = "4"
    ds.RepetitionTime = "500"
    ds.EchoTime = "12"
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "123.2"
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = "3"
    ds.SpacingBetweenSlices = "4.4"
    ds.EchoTrainLength = 3
    ds.FlipAngle = "90"
    ds.ReceiveCoilName = "HeadNeck_20"
    ds.TransmitCoilName = "Body"
    ds.InPlanePhaseEncodingDirection = "ROW"
    _add_image_modules(ds, series, instance, 32)
    ds.WindowCenter = "900"
    ds.WindowWidth = "1600"
    return ds


def doe_ct(instance: int) -> Dataset:
    """Return CT image ``instance`` of John Doe's chest CT.

    Instance 2 also carries a private ACME block inside its RequestAttributesSequence item.

    Parameters
    ----------
    instance : int
        InstanceNumber (1 to 3).

    Returns
    -------
    Dataset
        The CT dataset.
    """
    ds = _ct_image(DOE_CT_SERIES, instance)
    if instance == 2:
        item = ds.RequestAttributesSequence[0]
        block = item.private_block(0x0029, ACME_CREATOR, create=True)
        block.add_new(0x01, "LO", "Requested for DOE^JOHN by RIVIERA^NICK")
        block.add_new(0x03, "SH", "555-0100")
    return ds


def doe_sr() -> Dataset:
    """Return the Basic Text SR report for John Doe's chest CT.

    Returns
    -------
    Dataset
        The SR dataset with observer PN, nested TEXT and IMAGE content items.
    """
    series = DOE_SR_SERIES
    study = series.study
    patient = study.patient
    ds = _base_dataset(series, 1, BASIC_TEXT_SR_STORAGE)
    ds.ReferencedPatientSequence = Sequence(
        [_sop_ref(DETACHED_PATIENT_MANAGEMENT, patient.reference_uid)]
    )
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    verifier = Dataset()
    verifier.VerifyingObserverName = "HOUSE^GREGORY^^DR."
    verifier.VerifyingOrganization = patient.institution
    verifier.VerificationDateTime = f"{study.date}151500.000000{study.tz}"
    verifier.VerifyingObserverIdentificationCodeSequence = Sequence(
        [_code("HG-0815", "L", "HOUSE, GREGORY")]
    )
    ds.VerifyingObserverSequence = Sequence([verifier])

    ct_uids = [DOE_CT_SERIES.sop_uid(i) for i in (1, 2, 3)]
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = DOE_CT_SERIES.uid
    ref_series.ReferencedSOPSequence = Sequence(
        [_sop_ref(CT_IMAGE_STORAGE, uid) for uid in ct_uids]
    )
    evidence = Dataset()
    evidence.StudyInstanceUID = study.uid
    evidence.ReferencedSeriesSequence = Sequence([ref_series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])

    observer = Dataset()
    observer.RelationshipType = "HAS OBS CONTEXT"
    observer.ValueType = "PN"
    observer.ConceptNameCodeSequence = Sequence([_code("121008", "DCM", "Person Observer Name")])
    observer.PersonName = "HOUSE^GREGORY^^DR."

    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    finding.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    finding.TextValue = (
        "John Doe (DOE^JOHN, MRN 12345678, born 1965-04-12) has a 6 mm nodule in the right "
        "upper lobe. Compared with outside CT of 2017-06-30 from Shelbyville Clinic."
    )
    image = Dataset()
    image.RelationshipType = "INFERRED FROM"
    image.ValueType = "IMAGE"
    image.ConceptNameCodeSequence = Sequence([_code("121112", "DCM", "Source of Measurement")])
    image.ReferencedSOPSequence = Sequence([_sop_ref(CT_IMAGE_STORAGE, ct_uids[1])])
    finding.ContentSequence = Sequence([image])
    # The findings container nests a second observer so a PN sits at depth 2.
    nested_observer = Dataset()
    nested_observer.RelationshipType = "HAS OBS CONTEXT"
    nested_observer.ValueType = "PN"
    nested_observer.ConceptNameCodeSequence = Sequence(
        [_code("121008", "DCM", "Person Observer Name")]
    )
    nested_observer.PersonName = "RIVIERA^NICK^^DR."
    findings = Dataset()
    findings.RelationshipType = "CONTAINS"
    findings.ValueType = "CONTAINER"
    findings.ConceptNameCodeSequence = Sequence([_code("121070", "DCM", "Findings")])
    findings.ContinuityOfContent = "SEPARATE"
    findings.ContentSequence = Sequence([nested_observer, finding])

    impression = Dataset()
    impression.RelationshipType = "CONTAINS"
    impression.ValueType = "TEXT"
    impression.ConceptNameCodeSequence = Sequence([_code("121073", "DCM", "Impression")])
    impression.TextValue = (
        "Follow-up CT in 3 months. Results phoned to Mr. Doe at 555-0100 and to his wife "
        "Jane Doe on 2019-01-01 by Dr. House."
    )
    ds.ContentSequence = Sequence([observer, findings, impression])
    return ds


def doe_mr(instance: int) -> Dataset:
    """Return MR image ``instance`` of John Doe's brain MR.

    Instance 1 carries an overlay plane in repeating group 6000 with PHI in
    OverlayComments/OverlayDescription/OverlayLabel.

    Parameters
    ----------
    instance : int
        InstanceNumber (1 or 2).

    Returns
    -------
    Dataset
        The MR dataset.
    """
    ds = _mr_image(DOE_MR_SERIES, instance)
    if instance == 1:
        ds.add_new(0x60000010, "US", 32)  # OverlayRows
        ds.add_new(0x60000011, "US", 32)  # OverlayColumns
        ds.add_new(0x60000022, "LO", "ROI drawn for DOE^JOHN")  # OverlayDescription
        ds.add_new(0x60000040, "CS", "G")  # OverlayType
        ds.add_new(0x60000050, "SS", [1, 1])  # OverlayOrigin
        ds.add_new(0x60000100, "US", 1)  # OverlayBitsAllocated
        ds.add_new(0x60000102, "US", 0)  # OverlayBitPosition
        ds.add_new(0x60001500, "LO", "JOHN DOE 12345678")  # OverlayLabel
        ds.add_new(0x60003000, "OW", _overlay_bytes(32, 32))  # OverlayData
        ds.add_new(0x60004000, "LT", "Marked by Dr. Quinn for patient John Doe, DOB 19650412")
    return ds


def muller_mr(instance: int) -> Dataset:
    """Return MR image ``instance`` of Anna Müller's knee MR (UTF-8 character set).

    Parameters
    ----------
    instance : int
        InstanceNumber (1 or 2).

    Returns
    -------
    Dataset
        The MR dataset, including the unknown ACME private block.
    """
    ds = _mr_image(MULLER_MR_SERIES, instance)
    ds.Laterality = "R"
    ds.ReceiveCoilName = "Knee_18"
    acme = ds.private_block(0x0029, ACME_CREATOR, create=True)
    acme.add_new(0x01, "LO", str(ds.PatientName))
    acme.add_new(0x02, "LO", f"MRN {ds.PatientID} DOB {ds.PatientBirthDate}")
    return ds


def muller_enhanced_mr() -> Dataset:
    """Return the 4-frame Enhanced MR Image Storage dataset of Anna Müller.

    Returns
    -------
    Dataset
        Dataset with Shared and Per-Frame Functional Groups Sequences; the per-frame items
        carry FrameAcquisitionDateTime values (PHI at depth 2).
    """
    series = MULLER_ENH_SERIES
    study = series.study
    frames = 4
    ds = _base_dataset(series, 1, ENHANCED_MR_IMAGE_STORAGE)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = "T1"
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.MagneticFieldStrength = "3"
    ds.KSpaceFiltering = "NONE"
    ds.AcquisitionDuration = 240.0
    ds.Laterality = "R"
    _add_image_modules(ds, series, 1, 32, frames=frames)

    dim_uid = f"{UID_ROOT}6.{study.patient.number}.{study.number}.{series.number}"
    ds.DimensionOrganizationSequence = Sequence([Dataset()])
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = dim_uid
    indices = []
    for pointer in (0x00209056, 0x00209057):  # StackID, InStackPositionNumber
        index = Dataset()
        index.DimensionOrganizationUID = dim_uid
        index.DimensionIndexPointer = pointer
        index.FunctionalGroupPointer = 0x00209111  # FrameContentSequence
        indices.append(index)
    ds.DimensionIndexSequence = Sequence(indices)

    measures = Dataset()
    measures.PixelSpacing = ["0.5", "0.5"]
    measures.SliceThickness = "1"
    orientation = Dataset()
    orientation.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
    timing = Dataset()
    timing.RepetitionTime = 8.5
    timing.FlipAngle = 10.0
    timing.EchoTrainLength = 1
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = Sequence([_code("T-15750", "SRT", "Knee joint")])
    anatomy.FrameLaterality = "R"
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    shared.FrameAnatomySequence = Sequence([anatomy])
    # Reference a single-frame image of the other series in the same study.
    shared.ReferencedImageSequence = Sequence(
        [_sop_ref(MR_IMAGE_STORAGE, MULLER_MR_SERIES.sop_uid(1))]
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    per_frame = []
    for frame in range(1, frames + 1):
        frame_time = _time_plus(series.time, frame * 60)
        content = Dataset()
        content.FrameAcquisitionNumber = frame
        content.FrameReferenceDateTime = f"{study.date}{frame_time}.000000{study.tz}"
        content.FrameAcquisitionDateTime = f"{study.date}{frame_time}.250000{study.tz}"
        content.FrameAcquisitionDuration = 60000.0
        content.StackID = "1"
        content.InStackPositionNumber = frame
        content.DimensionIndexValues = [1, frame]
        content.FrameComments = f"Frame {frame} of MÜLLER^ANNA"
        position = Dataset()
        position.ImagePositionPatient = [f"{-10 + frame:.1f}", "-80.0", "60.0"]
        voi = Dataset()
        voi.WindowCenter = "900"
        voi.WindowWidth = "1600"
        item = Dataset()
        item.FrameContentSequence = Sequence([content])
        item.PlanePositionSequence = Sequence([position])
        item.FrameVOILUTSequence = Sequence([voi])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    return ds


def roe_ct(instance: int) -> Dataset:
    """Return CT image ``instance`` of Richard Roe's abdominal CT.

    Instance 1 has GEMS_IDEN_01 at the unusual slot (0009,0011); instance 2 is meant to
    be written in Implicit VR Little Endian.

    Parameters
    ----------
    instance : int
        InstanceNumber (1 or 2).

    Returns
    -------
    Dataset
        The CT dataset.
    """
    ds = _ct_image(ROE_CT_SERIES, instance, gems_slot_taken=instance == 1, contrast="OMNIPAQUE 350")
    if instance == 2:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def roe_head_ct() -> Dataset:
    """Return Richard Roe's head CT with an orphan private element and a curve group.

    Returns
    -------
    Dataset
        The CT dataset; (0019,1050) has no (0019,0010) creator, and repeating group 5000
        holds a small curve whose description names the patient.
    """
    ds = _ct_image(ROE_HEAD_SERIES, 1)
    ds.SliceThickness = "5"
    # Single-image series: reference the prior abdominal CT of the same patient instead.
    ds.ReferencedImageSequence = Sequence([_sop_ref(CT_IMAGE_STORAGE, ROE_CT_SERIES.sop_uid(1))])
    ds.add_new(0x00191050, "LO", "ROE^RICHARD 99887766")  # orphan: no (0019,0010)
    ds.add_new(0x50000005, "US", 1)  # CurveDimensions
    ds.add_new(0x50000010, "US", 4)  # NumberOfPoints
    ds.add_new(0x50000020, "CS", "TAC")  # TypeOfData
    ds.add_new(0x50000022, "LO", "Dose curve ROE^RICHARD 1950-06-06")  # CurveDescription
    ds.add_new(0x50000103, "US", 0)  # DataValueRepresentation
    ds.add_new(0x50003000, "OW", struct.pack("<4H", 10, 20, 15, 5))  # CurveData
    return ds


def build_files() -> list[tuple[Path, Callable[[], Dataset]]]:
    """Return the DICOM files to write as (relative path, dataset factory) pairs.

    Returns
    -------
    list of tuple of (Path, callable)
        Paths are relative to the target folder.
    """
    doe_ct_dir = DOE_CT_STUDY.path
    return [
        (doe_ct_dir / "IM0001.dcm", lambda: doe_ct(1)),
        (doe_ct_dir / "IM0002.dcm", lambda: doe_ct(2)),
        (doe_ct_dir / "IM0003", lambda: doe_ct(3)),
        (doe_ct_dir / "SR0001.dcm", doe_sr),
        (DOE_MR_STUDY.path / "IM0001.dcm", lambda: doe_mr(1)),
        (DOE_MR_STUDY.path / "IM0002.dcm", lambda: doe_mr(2)),
        (MULLER_MR_STUDY.path / "IM0001.dcm", lambda: muller_mr(1)),
        (MULLER_MR_STUDY.path / "IM0002.dcm", lambda: muller_mr(2)),
        (MULLER_MR_STUDY.path / "IM0003.dcm", muller_enhanced_mr),
        (ROE_CT_STUDY.path / "IM0001.dcm", lambda: roe_ct(1)),
        (ROE_CT_STUDY.path / "IM0002.dcm", lambda: roe_ct(2)),
        (ROE_HEAD_STUDY.path / "IM0001.dcm", roe_head_ct),
    ]


# --------------------------------------------------------------------------- main


def clean(target: Path) -> None:
    """Delete stale output: every ``*.dcm`` below ``target`` and the patient folders.

    Parameters
    ----------
    target : Path
        Output folder.
    """
    for folder in PATIENT_FOLDERS:
        path = target / folder
        if path.is_dir():
            shutil.rmtree(path)
    for path in sorted(target.rglob("*.dcm")):
        if path.is_file():
            path.unlink()


def generate(target: Path) -> list[Path]:
    """Regenerate all sample files below ``target``.

    Parameters
    ----------
    target : Path
        Output folder; created if missing.

    Returns
    -------
    list of Path
        The files written, in a fixed order.
    """
    target.mkdir(parents=True, exist_ok=True)
    clean(target)
    written: list[Path] = []
    for relative, factory in build_files():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        factory().save_as(path, enforce_file_format=True)
        written.append(path)
    notes = target / DOE.folder / "notes.txt"
    notes.write_bytes(NOTES_TEXT.encode("utf-8"))
    written.append(notes)
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and generate the sample data.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments without the program name.

    Returns
    -------
    int
        Process exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="output folder, e.g. sample_data")
    args = parser.parse_args(argv)
    for path in generate(args.target):
        print(path.relative_to(args.target).as_posix())
    return 0


if __name__ == "__main__":
    sys.exit(main())
