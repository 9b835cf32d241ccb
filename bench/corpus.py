"""Deterministic synthetic PACS export for the benchmark, built once and cached.

Everything written here is SYNTHETIC: names, identifiers, addresses and dates are invented.
They exist so that the benchmark de-identifies headers that look like a real export: patient,
study, series and equipment modules (~130 elements), nested sequences (Referenced Image,
Request Attributes with a code sequence and a private block inside the item, Procedure Code,
Other Patient IDs ...), GE private blocks (GEMS_IDEN_01, GEMS_ACQU_01, GEMS_RELA_01,
GEMS_SERS_01, GEMS_PARM_01) on CT, Siemens blocks with CSA-like OB blobs of a few KB on MR,
and an unknown vendor's block everywhere; PHI in the folder names too.

Layout (``bench/corpus/`` is git-ignored)::

    bench/corpus/sf-<N>/            N single-frame files (CT 512x512, MR 256x256, 16 bit)
    bench/corpus/sf-<N>-<K>pp/      the same with about K files per patient (K = 5: 1 a series)
        .stamp.json                 generator version + parameters + totals; written last
        tree/DOE^JOHN_12345678/20190101_CT_CHEST/S002_AX_5.0_SOFT_TISSUE/IM00001.dcm
    bench/corpus/mf-<F>f/           one Enhanced CT, F frames of 512x512x16 bit (F=2048: 1 GiB)
        .stamp.json                 also the Pixel Data offset, length and sha256
        tree/<patient>/<study>/<series>/IM00001.dcm

A corpus is reused while its stamp matches the generator (version and sha256 of this file)
and the parameters; otherwise it is deleted and rebuilt. The output is deterministic: UIDs
come from a fixed root plus counters, names and dates from seeded ``random.Random`` instances,
and pixel data are slices of a fixed integer pattern (cheap to make, nothing random).

``python -m bench.corpus [--files N] [--frames F]`` builds (or reuses) a corpus on its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import re
import shutil
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

GENERATOR_VERSION = "1"
CORPUS_ROOT = Path(__file__).resolve().parent / "corpus"
UID_ROOT = "1.2.826.0.1.3680043.10.999."
IMPLEMENTATION_CLASS_UID = UID_ROOT + "0.1"
SEED = "anonymizer-bench"

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
MODALITY_PPS = "1.2.840.10008.3.1.2.3.3"
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"

FILES_PER_PATIENT = 100  # ~50 patients for 5,000 files
PATTERN_ROWS = 64  # vertical offsets of the pixel pattern: 64 distinct images per size
FRAME = 512  # multi-frame rows = columns

LAST_NAMES = ["DOE", "ROE", "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA",
              "MILLER", "DAVIS", "MÜLLER", "O'BRIEN", "NGUYEN", "KOWALSKI", "SCHMIDT",
              "ROSSI", "DUBOIS", "TANAKA", "SILVA", "IVANOV", "JANSEN", "LARSEN"]
FIRST_NAMES = ["JOHN", "JANE", "RICHARD", "MARY", "ANNA", "PETER", "LUCIA", "AHMED", "CHEN",
               "OLGA", "PIERRE", "SOFIA", "MARTA", "KENJI", "FATIMA", "LARS", "ELENA"]
STREETS = ["Fake Street", "Elm Road", "Main Street", "Harbour Lane", "Mill Way"]
CITIES = ["Springfield", "Shelbyville", "Anytown", "Rivertown", "Lakeside"]
PHYSICIANS = ["RIVIERA^NICK^^DR", "HIBBERT^JULIUS^^DR", "WHO^JOHN^^DR", "HOUSE^GREGORY^^DR",
              "QUINN^MICHAELA^^DR", "GREY^MEREDITH^^DR"]
OPERATORS = ["TECH^ALICE", "TECH^BOB", "RADIOGRAPHER^CAROL", "SMITHERS^WAYLON"]
INSTITUTIONS = [("Springfield General Hospital", "1 Hospital Drive, Springfield"),
                ("Shelbyville Imaging Center", "22 Scan Avenue, Shelbyville"),
                ("Anytown University Clinic", "5 Campus Road, Anytown")]

STUDY_KINDS = {
    "CT": [("CHEST", "CT CHEST W CONTRAST", "T-D3000", "Chest"),
           ("ABDOMEN", "CT ABDOMEN PELVIS W", "T-D4000", "Abdomen"),
           ("HEAD", "CT HEAD WO CONTRAST", "T-D1100", "Head")],
    "MR": [("BRAIN", "MR BRAIN W WO CONTRAST", "T-A0100", "Brain"),
           ("KNEE", "MR KNEE LEFT", "T-15720", "Knee joint"),
           ("LSPINE", "MR LUMBAR SPINE", "T-11503", "Lumbar spine")],
}
SERIES_KINDS = {
    "CT": ["AX 5.0 SOFT TISSUE", "AX 1.25 LUNG", "COR 3.0 MPR", "SAG 3.0 MPR", "AX 2.5 BONE"],
    "MR": ["T1_SE_TRA", "T2_TSE_SAG", "T2_FLAIR_TRA", "EP2D_DIFF_B1000", "PD_TSE_FS_COR"],
}
SIZES = {"CT": 512, "MR": 256}

UNKNOWN_CREATOR = "ACME PACS EXPORT 2.1"


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Patient:
    index: int
    name: str
    patient_id: str
    birth_date: dt.date
    sex: str
    size: str
    weight: str
    address: str
    telephone: str
    other_id: str
    institution: str
    institution_address: str
    referring: str

    @property
    def folder(self) -> str:
        return f"{self.name}_{self.patient_id}"


@dataclass(frozen=True)
class Study:
    patient: Patient
    index: int
    modality: str
    body_part: str
    description: str
    region_code: tuple[str, str]
    date: dt.date
    time: str
    accession: str
    uid: str

    @property
    def folder(self) -> str:
        return f"{self.date:%Y%m%d}_{self.modality}_{self.body_part}"

    @property
    def age(self) -> str:
        years = self.date.year - self.patient.birth_date.year - (
            (self.date.month, self.date.day)
            < (self.patient.birth_date.month, self.patient.birth_date.day))
        return f"{years:03d}Y"


@dataclass(frozen=True)
class Series:
    study: Study
    number: int
    description: str
    count: int
    uid: str
    key: str  # "p.s.r": the counters inside every UID of this series

    @property
    def folder(self) -> str:
        return f"S{self.number:03d}_{self.description.replace(' ', '_')}"

    def instance_uid(self, instance: int) -> str:
        return f"{UID_ROOT}3.{self.key}.{instance}"


def _patient(index: int) -> Patient:
    rng = random.Random(f"{SEED}-patient-{index}")
    institution, address = rng.choice(INSTITUTIONS)
    birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(70 * 365))
    return Patient(
        index=index,
        name=f"{rng.choice(LAST_NAMES)}^{rng.choice(FIRST_NAMES)}",
        patient_id=f"{rng.randrange(10**7, 10**8)}",
        birth_date=birth,
        sex=rng.choice("MF"),
        size=f"{rng.uniform(1.5, 1.95):.2f}",
        weight=f"{rng.uniform(45, 120):.1f}",
        address=f"{rng.randrange(1, 300)} {rng.choice(STREETS)}^^{rng.choice(CITIES)}",
        telephone=f"555-{rng.randrange(10000):04d}",
        other_id=f"OLD-{rng.randrange(10**6):06d}",
        institution=institution,
        institution_address=address,
        referring=rng.choice(PHYSICIANS),
    )


def plan(n_files: int, files_per_patient: int = FILES_PER_PATIENT) -> list[Series]:
    """Every series of an ``n_files`` corpus that has instances, with its instance count
    (summing to n_files); each patient has 2 studies of 2-3 series."""
    patients = max(1, round(n_files / files_per_patient))
    series: list[Series] = []
    for p in range(patients):
        patient = _patient(p)
        rng = random.Random(f"{SEED}-studies-{p}")
        modalities = rng.choice([("CT", "MR"), ("CT", "CT"), ("MR", "MR"), ("MR", "CT")])
        date = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(2500))
        for s, modality in enumerate(modalities):
            date += dt.timedelta(days=rng.randrange(30, 400) if s else 0)
            body_part, description, code, meaning = rng.choice(STUDY_KINDS[modality])
            clock = f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
            study = Study(patient, s, modality, body_part, description, (code, meaning), date,
                          clock, f"A{rng.randrange(10**9, 10**10)}", f"{UID_ROOT}1.{p}.{s}")
            kinds = rng.sample(SERIES_KINDS[modality], rng.choice((2, 3)))
            for r, kind in enumerate(kinds):
                key = f"{p}.{s}.{r + 1}"
                series.append(Series(study, r + 2, kind, 0, f"{UID_ROOT}2.{key}", key))
    base, extra = divmod(n_files, len(series))
    return [Series(x.study, x.number, x.description, base + (i < extra), x.uid, x.key)
            for i, x in enumerate(series) if base + (i < extra)]


# --------------------------------------------------------------------------- pixels


def _pattern(size: int, extra_rows: int = PATTERN_ROWS) -> bytes:
    """A smooth 12-bit test pattern of ``size`` columns and ``size + extra_rows`` rows."""
    rows = []
    half = size // 2
    for y in range(size + extra_rows):
        dy = (y % size - half) ** 2
        rows.append(struct.pack(f"<{size}H", *[
            (((x - half) ** 2 + dy) // 64 + (x ^ y) % 32) & 0x0FFF for x in range(size)]))
    return b"".join(rows)


class _Pixels:
    """Slices of one fixed pattern per image size: instance ``i`` starts ``i*7 % 64`` rows in."""

    def __init__(self) -> None:
        self._patterns: dict[int, bytes] = {}

    def image(self, size: int, index: int) -> bytes:
        pattern = self._patterns.get(size)
        if pattern is None:
            pattern = self._patterns[size] = _pattern(size)
        start = (index * 7 % PATTERN_ROWS) * size * 2
        return pattern[start:start + size * size * 2]


# --------------------------------------------------------------------------- headers


def _item(**attributes: object) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _csa(entries: list[tuple[str, str, list[str]]]) -> bytes:
    """A Siemens CSA2 ("SV10") header: named entries with VR, VM and string items."""
    out = [b"SV10\x04\x03\x02\x01", struct.pack("<II", len(entries), 77)]
    for name, vr, values in entries:
        out.append(struct.pack("<64si4siii", name.encode(), len(values), vr.encode(), 0,
                               len(values), 77))
        for value in values:
            data = value.encode() + b"\x00"
            data += b"\x00" * (-len(data) % 4)
            out.append(struct.pack("<4i", len(value) + 1, len(value) + 1, 77, len(value) + 1))
            out.append(data)
    blob = b"".join(out)
    return blob + b"\x00" * (len(blob) % 2)


def _csa_image_header(series: Series) -> bytes:
    rng = random.Random(f"{SEED}-csa-image-{series.key}")
    entries = [("EchoLinePosition", "IS", ["128"]), ("EchoColumnPosition", "IS", ["128"]),
               ("EchoPartitionPosition", "IS", ["32"]), ("UsedChannelMask", "UL", ["255"]),
               ("ImaCoilString", "LO", ["HE1-4"]), ("SequenceMask", "UL", ["134217728"]),
               ("B_value", "IS", ["1000" if "DIFF" in series.description else "0"]),
               ("SliceNormalVector", "FD", ["0.0", "0.0", "1.0"]),
               ("BandwidthPerPixelPhaseEncode", "FD", [f"{rng.uniform(10, 40):.4f}"]),
               ("ImaAbsTablePosition", "SL", ["0", "0", f"{-rng.randrange(1000, 2000)}"]),
               ("ImaRelTablePosition", "IS", ["0", "0", "0"]),
               ("RealDwellTime", "IS", [f"{rng.randrange(2000, 9000)}"]),
               ("ICE_Dims", "LO", ["X_1_1_1_1_1_1_1_1_1_1_1_45"]),
               ("MosaicRefAcqTimes", "FD", [f"{k * 62.5:.4f}" for k in range(48)]),
               ("SliceMeasurementDuration", "DS", [f"{rng.uniform(1e5, 3e5):.5f}"])]
    entries += [(f"CsaImageReserved{k:02d}", "LO", [f"{rng.random():.12f}"] * 6)
                for k in range(24)]
    return _csa(entries)


def _csa_series_header(series: Series) -> bytes:
    rng = random.Random(f"{SEED}-csa-series-{series.key}")
    patient = series.study.patient
    lines = ["### ASCCONV BEGIN object=MrProtDataImpl@MrProtocolData version=51130001 ###",
             'ulVersion = 0x14b44b6',
             f'tProtocolName = "{series.description.lower()}"',
             f'tReferenceImage0 = "{UID_ROOT}9.{series.key}"',
             'sProtConsistencyInfo.tBaselineString = "N4_VE11C_LATEST_20160120"',
             f'sPatientName = "{patient.name}"  // should never be here',
             f'sSliceArray.lSize = {series.count}']
    for k in range(60):
        lines.append(f"sSliceArray.asSlice[{k}].dThickness = {rng.choice((3.0, 4.0, 5.0))}")
        lines.append(f"sSliceArray.asSlice[{k}].sPosition.dTra = {rng.uniform(-90, 90):.6f}")
    lines.append("### ASCCONV END ###")
    entries = [("UsedPatientWeight", "IS", [patient.weight.split(".")[0]]),
               ("NumberOfPrescans", "IS", ["0"]), ("TransmitterCalibration", "DS", ["247.9"]),
               ("PhaseGradientAmplitude", "DS", ["0.0"]), ("CoilForGradient", "SH", ["void"]),
               ("TablePositionOrigin", "SL", ["0", "0", "-1318"]),
               ("MrPhoenixProtocol", "UN", ["\n".join(lines)]),
               ("GradientMode", "ST", ["Fast"]), ("FlowCompensation", "ST", ["No"])]
    return _csa(entries)


def _common(ds: Dataset, series: Series, sop_class: str, sop_uid: str) -> None:
    """Patient, study, series, equipment, request and SOP Common modules."""
    study, patient = series.study, series.study.patient
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = "PACS_EXPORT_7"
    meta.SourceApplicationEntityTitle = "PACS_MAIN_A"
    ds.file_meta = meta
    date = f"{study.date:%Y%m%d}"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = study.time
    ds.InstanceCreatorUID = UID_ROOT + "0.2"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = study.time
    ds.AccessionNumber = study.accession
    ds.Modality = study.modality
    ds.Manufacturer = "GE MEDICAL SYSTEMS" if study.modality == "CT" else "SIEMENS"
    ds.InstitutionName = patient.institution
    ds.InstitutionAddress = patient.institution_address
    ds.ReferringPhysicianName = patient.referring
    ds.ReferringPhysicianAddress = patient.institution_address
    ds.ReferringPhysicianTelephoneNumbers = "555-0199"
    ds.StationName = f"{study.modality}{patient.index % 3 + 1}_{patient.institution[:8].upper()}"
    ds.StudyDescription = study.description
    ds.ProcedureCodeSequence = Sequence([_code(f"IMG{study.index}{patient.index:03d}",
                                               "99HOSP", study.description)])
    ds.SeriesDescription = series.description
    ds.InstitutionalDepartmentName = "Radiology"
    ds.PhysiciansOfRecord = patient.referring
    ds.PerformingPhysicianName = PHYSICIANS[(patient.index + 1) % len(PHYSICIANS)]
    ds.NameOfPhysiciansReadingStudy = PHYSICIANS[(patient.index + 2) % len(PHYSICIANS)]
    ds.OperatorsName = OPERATORS[patient.index % len(OPERATORS)]
    ds.AdmittingDiagnosesDescription = f"Follow-up {study.body_part.lower()}, see {patient.name}"
    ds.ManufacturerModelName = "LightSpeed VCT" if study.modality == "CT" else "Skyra"
    ds.ReferencedStudySequence = Sequence([_item(
        ReferencedSOPClassUID=DETACHED_STUDY_MANAGEMENT, ReferencedSOPInstanceUID=study.uid)])
    ds.ReferencedPerformedProcedureStepSequence = Sequence([_item(
        ReferencedSOPClassUID=MODALITY_PPS,
        ReferencedSOPInstanceUID=f"{UID_ROOT}6.{series.key}")])
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "SPRINGFIELD_MRN"
    ds.PatientBirthDate = f"{patient.birth_date:%Y%m%d}"
    ds.PatientSex = patient.sex
    ds.OtherPatientIDsSequence = Sequence([_item(
        PatientID=patient.other_id, IssuerOfPatientID="LEGACY_RIS", TypeOfPatientID="TEXT")])
    ds.OtherPatientNames = patient.name.replace("^", " ")
    ds.PatientAge = study.age
    ds.PatientSize = patient.size
    ds.PatientWeight = patient.weight
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.telephone
    ds.EthnicGroup = "UNKNOWN"
    ds.Occupation = "Teacher"
    ds.AdditionalPatientHistory = f"Pt {patient.name} reports pain since {date}"
    ds.PatientComments = f"Contact wife at {patient.telephone}"
    ds.DeviceSerialNumber = f"SN{patient.index % 3:02d}4711"
    ds.SoftwareVersions = "LightSpeedverrel" if study.modality == "CT" else "syngo MR E11"
    ds.ProtocolName = f"{study.body_part} ROUTINE"
    ds.DateOfLastCalibration = date
    ds.TimeOfLastCalibration = "063000"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series.uid
    ds.StudyID = f"{study.accession[-5:]}"
    ds.SeriesNumber = series.number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = f"{UID_ROOT}4.{patient.index}.{study.index}"
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = study.body_part
    ds.AnatomicRegionSequence = Sequence([_code(*study.region_code[:1], "SRT",
                                                study.region_code[1])])
    ds.RequestingPhysician = patient.referring
    ds.RequestingService = "EMERGENCY"
    ds.RequestedProcedureDescription = study.description
    ds.PerformedStationAETitle = f"{study.modality}_SCANNER_{patient.index % 3 + 1}"
    ds.PerformedProcedureStepStartDate = date
    ds.PerformedProcedureStepStartTime = study.time
    ds.PerformedProcedureStepID = f"PPS{patient.index:04d}{study.index}"
    ds.PerformedProcedureStepDescription = study.description
    request = _item(
        RequestedProcedureID=f"RP{patient.index:04d}{study.index}",
        ScheduledProcedureStepID=f"SPS{patient.index:04d}{study.index}",
        ScheduledProcedureStepDescription=f"{study.description} for {patient.name}",
        AccessionNumber=study.accession,
        RequestedProcedureDescription=study.description,
        ScheduledProtocolCodeSequence=Sequence([_code(f"P{study.body_part[:4]}", "99HOSP",
                                                      f"{study.body_part} protocol")]))
    block = request.private_block(0x0041, UNKNOWN_CREATOR, create=True)
    block.add_new(0x01, "LO", f"ordered by {patient.referring}")
    block.add_new(0x02, "SH", patient.patient_id)
    ds.RequestAttributesSequence = Sequence([request])
    ds.ImageComments = f"{patient.name} {patient.patient_id}"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    # An unknown vendor's block: PHI copies, a note and an opaque blob.
    block = ds.private_block(0x0041, UNKNOWN_CREATOR, create=True)
    block.add_new(0x01, "LO", patient.name)
    block.add_new(0x02, "SH", patient.patient_id)
    block.add_new(0x03, "DA", f"{patient.birth_date:%Y%m%d}")
    block.add_new(0x10, "LT", f"Exported by {OPERATORS[0]} on {date} from PACS_MAIN_A; "
                  f"patient {patient.name} ({patient.patient_id}), {patient.address}")
    rng = random.Random(f"{SEED}-acme-{series.key}")
    block.add_new(0x20, "OB", bytes(rng.getrandbits(8) for _ in range(512)))


def _image_pixel(ds: Dataset, size: int, frames: int = 1) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def _gems(ds: Dataset, series: Series) -> None:
    """GE CT private blocks, with safe (PS3.15 E.3.10-1) and unsafe elements."""
    patient = series.study.patient
    iden = ds.private_block(0x0009, "GEMS_IDEN_01", create=True)
    iden.add_new(0x01, "LO", "CT_LIGHTSPEED")
    iden.add_new(0x02, "SH", f"CT0{patient.index % 3 + 1}")
    iden.add_new(0x04, "SH", "LightSpeed VCT")
    iden.add_new(0x27, "SL", 1262304000 + patient.index * 86400)
    iden.add_new(0xE3, "UI", f"{UID_ROOT}7.{patient.index % 3}")
    iden.add_new(0xE6, "SH", "06MW03.5")
    acqu = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    acqu.add_new(0x02, "SL", 888)
    acqu.add_new(0x03, "DS", "1.0")
    acqu.add_new(0x04, "DS", "1.0239")
    acqu.add_new(0x0F, "DS", "-1318.5")
    acqu.add_new(0x11, "SS", 2)
    acqu.add_new(0x18, "LO", "S")
    acqu.add_new(0x1A, "LO", "I")
    acqu.add_new(0x23, "DS", "39.375")
    acqu.add_new(0x24, "DS", "0.0")
    acqu.add_new(0x27, "DS", "0.5")
    acqu.add_new(0x9E, "LO", "HELICAL")
    rela = ds.private_block(0x0021, "GEMS_RELA_01", create=True)
    rela.add_new(0x03, "SS", 1)
    rela.add_new(0x35, "SS", 1)
    rela.add_new(0x91, "SS", 0)
    sers = ds.private_block(0x0025, "GEMS_SERS_01", create=True)
    sers.add_new(0x06, "SS", 1)
    sers.add_new(0x07, "SL", series.count)
    sers.add_new(0x1A, "SH", f"PACS_NODE_{patient.index % 3}")
    parm = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    parm.add_new(0x27, "SH", "/1.375:1")
    parm.add_new(0x4D, "FL", [0.0, 0.0, 0.0])
    parm.add_new(0x6F, "DS", ["0.0", "0.0", "0.0", "0.0"])


def _siemens(ds: Dataset, series: Series) -> None:
    """Siemens MR private blocks, including CSA image and series headers (OB, a few KB)."""
    header = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    header.add_new(0x08, "CS", "IMAGE NUM 4")
    header.add_new(0x09, "LO", "1.0")
    header.add_new(0x0B, "DS", "40")
    header.add_new(0x0C, "IS", "1000" if "DIFF" in series.description else "0")
    header.add_new(0x0D, "CS", "DIRECTIONAL" if "DIFF" in series.description else "NONE")
    header.add_new(0x0E, "FD", [0.0, 0.0, 1.0])
    header.add_new(0x0F, "SH", "Fast")
    header.add_new(0x11, "SH", "No")
    header.add_new(0x12, "SL", [0, 0, -1318])
    header.add_new(0x13, "SL", [0, 0, -1318])
    header.add_new(0x14, "IS", ["0", "0", "0"])
    header.add_new(0x15, "FD", [-120.0, -120.0, 0.0])
    csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    csa.add_new(0x08, "CS", "IMAGE NUM 4")
    csa.add_new(0x09, "LO", "20160120")
    csa.add_new(0x10, "OB", _csa_image_header(series))
    csa.add_new(0x18, "CS", "MR")
    csa.add_new(0x19, "LO", "20160120")
    csa.add_new(0x20, "OB", _csa_series_header(series))


def _ct_modules(ds: Dataset, series: Series) -> None:
    rng = random.Random(f"{SEED}-ct-{series.key}")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = series.description.split()[1]
    ds.KVP = rng.choice(("100", "120", "140"))
    ds.DataCollectionDiameter = "500.0"
    ds.ReconstructionDiameter = f"{rng.uniform(320, 420):.1f}"
    ds.DistanceSourceToDetector = "946.746"
    ds.DistanceSourceToPatient = "538.52"
    ds.GantryDetectorTilt = "0.0"
    ds.TableHeight = f"{rng.uniform(120, 180):.1f}"
    ds.RotationDirection = "CW"
    ds.ExposureTime = 500
    ds.XRayTubeCurrent = rng.randrange(100, 500)
    ds.Exposure = rng.randrange(50, 250)
    ds.FilterType = "BODY FILTER"
    ds.GeneratorPower = 48000
    ds.FocalSpots = "0.7"
    ds.ConvolutionKernel = series.description.split()[-1]
    ds.RevolutionTime = 0.5
    ds.SingleCollimationWidth = 0.625
    ds.TotalCollimationWidth = 40.0
    ds.TableSpeed = 78.75
    ds.TableFeedPerRotation = 39.375
    ds.SpiralPitchFactor = 0.984375
    ds.CTDIvol = round(rng.uniform(5, 20), 2)
    ds.CTDIPhantomTypeCodeSequence = Sequence([
        _code("113691", "DCM", "IEC Body Dosimetry Phantom")])
    ds.ContrastBolusAgent = "OMNIPAQUE 350"
    ds.ContrastBolusRoute = "IV"
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["0.703125", "0.703125"]
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    _gems(ds, series)


def _mr_modules(ds: Dataset, series: Series) -> None:
    rng = random.Random(f"{SEED}-mr-{series.key}")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"]
    ds.ScanningSequence = "EP" if "DIFF" in series.description else "SE"
    ds.SequenceVariant = ["SK", "SP"]
    ds.ScanOptions = "PFP"
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = f"*{series.description[:4].lower()}2d1_{rng.randrange(10, 99)}"
    ds.AngioFlag = "N"
    ds.SliceThickness = "4.0"
    ds.RepetitionTime = f"{rng.uniform(400, 9000):.1f}"
    ds.EchoTime = f"{rng.uniform(8, 120):.2f}"
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "123.251"
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = "3"
    ds.SpacingBetweenSlices = "4.4"
    ds.NumberOfPhaseEncodingSteps = "205"
    ds.EchoTrainLength = "1"
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "81.25"
    ds.PixelBandwidth = "220"
    ds.TransmitCoilName = "Body"
    ds.ReceiveCoilName = "HeadNeck_20"
    ds.AcquisitionMatrix = [0, 256, 205, 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = "90"
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = f"{rng.uniform(0.1, 2.5):.4f}"
    ds.dBdt = "0"
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["0.9375", "0.9375"]
    ds.WindowCenter = "600"
    ds.WindowWidth = "1200"
    _siemens(ds, series)


def _series_dataset(series: Series) -> Dataset:
    """The dataset of a series; :func:`_set_instance` fills the per-instance elements."""
    modality = series.study.modality
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    ds = Dataset()
    _common(ds, series, sop_class, series.instance_uid(1))
    (_ct_modules if modality == "CT" else _mr_modules)(ds, series)
    _image_pixel(ds, SIZES[modality])
    return ds


def _set_instance(ds: Dataset, series: Series, instance: int, pixels: bytes) -> None:
    uid = series.instance_uid(instance)
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPInstanceUID = uid
    ds.InstanceNumber = instance
    clock = dt.datetime.combine(series.study.date, dt.time.fromisoformat(
        f"{series.study.time[:2]}:{series.study.time[2:4]}:{series.study.time[4:]}"))
    ds.ContentTime = ds.AcquisitionTime = f"{clock + dt.timedelta(seconds=instance):%H%M%S}"
    z = f"{-200 + instance * 2.5:.2f}"
    ds.ImagePositionPatient = ["-180.0", "-180.0", z]
    ds.SliceLocation = z
    neighbour = instance - 1 if instance > 1 else min(2, series.count)
    ds.ReferencedImageSequence = Sequence([
        _item(ReferencedSOPClassUID=ds.SOPClassUID,
              ReferencedSOPInstanceUID=f"{UID_ROOT}9.{series.key}"),
        _item(ReferencedSOPClassUID=ds.SOPClassUID,
              ReferencedSOPInstanceUID=series.instance_uid(neighbour))])
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW"


# --------------------------------------------------------------------------- cache


def _source_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


@dataclass
class Corpus:
    """A built corpus: its folder, the tree to feed the commands, and its stamp."""

    path: Path
    stamp: dict = field(default_factory=dict)
    built: bool = False  # True when this call (re)built it

    @property
    def tree(self) -> Path:
        return self.path / "tree"


def _tree_files(tree: Path) -> list[Path]:
    """Every regular file under ``tree``, in sorted order."""
    files = []
    for folder, dirs, names in os.walk(tree):
        dirs.sort()
        files.extend(Path(folder) / name for name in sorted(names))
    return files


def _cached(path: Path, params: dict, check: Callable[[dict], bool]) -> dict | None:
    try:
        stamp = json.loads((path / ".stamp.json").read_text())
    except (OSError, ValueError):
        return None
    if (stamp.get("generator") != GENERATOR_VERSION or stamp.get("source") != _source_digest()
            or stamp.get("params") != params):
        return None
    return stamp if check(stamp) else None


def _build(path: Path, params: dict, check: Callable[[dict], bool],
           generate: Callable[[Path], dict], log: Callable[[str], None]) -> Corpus:
    stamp = _cached(path, params, check)
    if stamp is not None:
        return Corpus(path, stamp)
    if path.exists():
        log(f"corpus {path.name}: stale or incomplete, rebuilding")
        shutil.rmtree(path)
    (path / "tree").mkdir(parents=True)
    started = time.perf_counter()
    stamp = generate(path / "tree")
    stamp.update(generator=GENERATOR_VERSION, source=_source_digest(), params=params,
                 build_seconds=round(time.perf_counter() - started, 2),
                 built=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    (path / ".stamp.json").write_text(json.dumps(stamp, indent=1) + "\n")
    log(f"corpus {path.name}: built in {stamp['build_seconds']:.1f} s "
        f"({stamp['files']} files, {stamp['bytes'] / 1e6:.0f} MB)")
    # written back now, not by the kernel's flusher while the first commands are measured
    flushing = time.perf_counter()
    os.sync()
    log(f"corpus {path.name}: on disk after {time.perf_counter() - flushing:.1f} s more")
    return Corpus(path, stamp, built=True)


def single_frame(n_files: int, root: Path = CORPUS_ROOT, log: Callable[[str], None] = print,
                 files_per_patient: int = FILES_PER_PATIENT) -> Corpus:
    """The cached corpus of ``n_files`` single-frame CT/MR files (built when missing/stale),
    about ``files_per_patient`` per patient (5: one a series, as a radiography export)."""
    few = files_per_patient != FILES_PER_PATIENT
    path = root / _single_frame_name(n_files, files_per_patient)

    def check(stamp: dict) -> bool:
        return len(_tree_files(path / "tree")) == stamp.get("files")

    def generate(tree: Path) -> dict:
        series_list = plan(n_files, files_per_patient)
        pixels = _Pixels()
        total = 0
        log(f"corpus {path.name}: generating {n_files} files in {len(series_list)} series ...")
        for series in series_list:
            folder = (tree / series.study.patient.folder / series.study.folder / series.folder)
            folder.mkdir(parents=True, exist_ok=True)
            ds = _series_dataset(series)
            size = SIZES[series.study.modality]
            for instance in range(1, series.count + 1):
                _set_instance(ds, series, instance, pixels.image(size, instance))
                target = folder / f"IM{instance:05d}.dcm"
                ds.save_as(target, enforce_file_format=True)
                total += target.stat().st_size
        modalities = [s.study.modality for s in series_list for _ in range(s.count)]
        return {"kind": "single-frame", "files": n_files, "bytes": total,
                "patients": len({s.study.patient.index for s in series_list}),
                "studies": len({s.study.uid for s in series_list}),
                "series": len(series_list),
                "ct_files": modalities.count("CT"), "mr_files": modalities.count("MR"),
                "top_level_elements": _count_elements(series_list[0])}

    params = {"files": n_files, **({"files_per_patient": files_per_patient} if few else {})}
    return _build(path, params, check, generate, log)


def _single_frame_name(n_files: int, files_per_patient: int) -> str:
    if files_per_patient == FILES_PER_PATIENT:
        return f"sf-{n_files}"
    return f"sf-{n_files}-{files_per_patient}pp"


_SINGLE_FRAME_NAME = re.compile(r"sf-(\d+)(?:-(\d+)pp)?")


def single_frame_named(name: str, root: Path = CORPUS_ROOT,
                       log: Callable[[str], None] = print) -> Corpus | None:
    """The single-frame corpus of folder ``name`` (``sf-200``, ``sf-200-5pp``), built when
    missing or stale; None for a name that is not one."""
    named = _SINGLE_FRAME_NAME.fullmatch(name)
    if named is None:
        return None
    return single_frame(int(named[1]), root, log,
                        int(named[2]) if named[2] else FILES_PER_PATIENT)


def _count_elements(series: Series) -> dict:
    ds = _series_dataset(series)
    _set_instance(ds, series, 1, b"\x00\x00")
    return {"top_level": len(ds), "all": sum(1 for _ in ds.iterall()),
            "private": sum(1 for e in ds.iterall() if e.tag.is_private)}


# --------------------------------------------------------------------------- multi-frame


def _enhanced_ct(frames: int) -> tuple[Dataset, Series]:
    """An Enhanced CT header (no Pixel Data) with per-frame functional groups."""
    patient = _patient(9000)
    study = Study(patient, 0, "CT", "CHEST", "CT CHEST PERFUSION", ("T-D3000", "Chest"),
                  dt.date(2021, 3, 14), "101500", "A7000000001", f"{UID_ROOT}1.9000.0")
    series = Series(study, 2, "PERFUSION 4D", frames, f"{UID_ROOT}2.9000.0.1", "9000.0.1")
    ds = Dataset()
    _common(ds, series, ENHANCED_CT_IMAGE_STORAGE, series.instance_uid(1))
    _ct_modules(ds, Series(study, 2, "AX 0.625 STANDARD", frames, series.uid, series.key))
    for keyword in ("ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                    "WindowCenter", "WindowWidth", "RescaleIntercept", "RescaleSlope",
                    "RescaleType", "ScanOptions", "FilterType", "ConvolutionKernel",
                    "ExposureTime", "XRayTubeCurrent", "Exposure", "RevolutionTime",
                    "SingleCollimationWidth", "TotalCollimationWidth", "TableSpeed",
                    "TableFeedPerRotation", "SpiralPitchFactor", "CTDIvol", "KVP",
                    "DataCollectionDiameter", "ReconstructionDiameter",
                    "DistanceSourceToDetector", "DistanceSourceToPatient", "GantryDetectorTilt",
                    "TableHeight", "RotationDirection", "GeneratorPower", "FocalSpots",
                    "CTDIPhantomTypeCodeSequence"):
        delattr(ds, keyword)  # functional groups carry these in an enhanced IOD
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.SeriesDescription = series.description
    ds.InstanceNumber = 1
    ds.ContentQualification = "PRODUCT"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionContextSequence = Sequence()
    ds.DimensionOrganizationType = "3D_TEMPORAL"
    organization = f"{UID_ROOT}8.9000"
    ds.DimensionOrganizationSequence = Sequence([_item(DimensionOrganizationUID=organization)])
    ds.DimensionIndexSequence = Sequence([
        _item(DimensionOrganizationUID=organization, DimensionIndexPointer=0x00209056,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
        _item(DimensionOrganizationUID=organization, DimensionIndexPointer=0x00209057,
              FunctionalGroupPointer=0x00209111,
              DimensionDescriptionLabel="In-Stack Position Number"),
        _item(DimensionOrganizationUID=organization, DimensionIndexPointer=0x00209128,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Temporal Position")])
    ds.SharedFunctionalGroupsSequence = Sequence([_item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=["0.703125", "0.703125"],
                                              SliceThickness="0.625")]),
        PlaneOrientationSequence=Sequence([_item(
            ImageOrientationPatient=["1", "0", "0", "0", "1", "0"])]),
        CTAcquisitionTypeSequence=Sequence([_item(AcquisitionType="SPIRAL")]),
        CTExposureSequence=Sequence([_item(ExposureTimeInms=500.0, XRayTubeCurrentInmA=300.0,
                                           ExposureInmAs=150.0, CTDIvol=12.5)]),
        CTXRayDetailsSequence=Sequence([_item(KVP="120", FocalSpots="0.7",
                                              FilterType="BODY FILTER")]),
        PixelValueTransformationSequence=Sequence([_item(
            RescaleIntercept="-1024", RescaleSlope="1", RescaleType="HU")]),
        FrameVOILUTSequence=Sequence([_item(WindowCenter="40", WindowWidth="400")]))])
    stack = 64
    per_frame = []
    for frame in range(frames):
        position, temporal = frame % stack + 1, frame // stack + 1
        per_frame.append(_item(
            FrameContentSequence=Sequence([_item(
                FrameAcquisitionNumber=temporal, TemporalPositionIndex=temporal,
                StackID="1", InStackPositionNumber=position,
                DimensionIndexValues=[1, position, temporal],
                FrameAcquisitionDateTime=f"2021031410{15 + temporal // 60:02d}"
                                         f"{temporal % 60:02d}.000000")]),
            PlanePositionSequence=Sequence([_item(
                ImagePositionPatient=["-180.0", "-180.0", f"{-40 + position * 0.625:.3f}"])])))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    _image_pixel(ds, FRAME, frames)
    return ds, series


def write_multiframe(path: Path, frames: int) -> dict:
    """Write the multi-frame file by streaming: pydicom writes the header, then the
    (7FE0,0010) OW element header and the frames are appended chunk by chunk, so the
    pixel data are never held in memory. Returns the Pixel Data offset, length and sha256.
    """
    ds, _ = _enhanced_ct(frames)
    frame_bytes = FRAME * FRAME * 2
    length = frames * frame_bytes
    if length > 0xFFFFFFFE:
        raise ValueError(f"{frames} frames do not fit a 32-bit element length")
    pattern = _pattern(FRAME)
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        ds.save_as(handle, enforce_file_format=True)
        handle.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        offset = handle.tell()
        chunk: list[bytes] = []
        for frame in range(frames):
            start = (frame * 7 % PATTERN_ROWS) * FRAME * 2
            chunk.append(pattern[start:start + frame_bytes])
            if len(chunk) == 32 or frame == frames - 1:  # 16 MiB writes
                data = b"".join(chunk)
                digest.update(data)
                handle.write(data)
                chunk = []
    header = pydicom.dcmread(path, stop_before_pixels=True)
    if int(header.NumberOfFrames) != frames or header.Rows != FRAME:
        raise RuntimeError(f"{path}: header does not read back")
    region = pixel_data_region(path)
    if region != (offset, length):
        raise RuntimeError(f"{path}: Pixel Data found at {region}, written at {offset}")
    return {"pixel_offset": offset, "pixel_length": length, "pixel_sha256": digest.hexdigest(),
            "header_bytes": offset}


def multi_frame(frames: int, root: Path = CORPUS_ROOT,
                log: Callable[[str], None] = print) -> Corpus:
    """The cached corpus holding one Enhanced CT of ``frames`` 512x512 16-bit frames."""
    path = root / f"mf-{frames}f"

    def check(stamp: dict) -> bool:
        target = path / "tree" / stamp.get("file", "-")
        return target.is_file() and target.stat().st_size == stamp.get("bytes")

    def generate(tree: Path) -> dict:
        ds, series = _enhanced_ct(1)
        relative = Path(series.study.patient.folder, series.study.folder, series.folder,
                        "IM00001.dcm")
        (tree / relative.parent).mkdir(parents=True)
        log(f"corpus {path.name}: streaming {frames} frames "
            f"({frames * FRAME * FRAME * 2 / 2**20:.0f} MiB of pixel data) ...")
        info = write_multiframe(tree / relative, frames)
        return {"kind": "multi-frame", "files": 1, "frames": frames,
                "bytes": (tree / relative).stat().st_size, "file": relative.as_posix(), **info}

    return _build(path, {"frames": frames, "rows": FRAME, "columns": FRAME}, check, generate,
                  log)


# --------------------------------------------------------------------------- pixel check


def pixel_data_region(path: Path) -> tuple[int, int]:
    """(file offset, length) of the native Pixel Data value, without loading it.

    pydicom parses the header and, with ``defer_size``, skips over large values keeping
    their offset (``value_tell``) and length.
    """
    ds = pydicom.dcmread(path, defer_size=4096)
    raw = ds.get_item(0x7FE00010, keep_deferred=True)  # without it the value is read
    if raw is None or raw.value_tell is None or raw.length in (None, 0xFFFFFFFF):
        raise ValueError(f"{path}: no native Pixel Data")
    return raw.value_tell, raw.length


def sha256_region(path: Path, offset: int, length: int, chunk: int = 8 << 20) -> str:
    """sha256 of ``length`` bytes at ``offset``, streamed in ``chunk``-sized reads."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(offset)
        left = length
        while left:
            data = handle.read(min(chunk, left))
            if not data:
                raise ValueError(f"{path}: ends {left} bytes inside the region")
            digest.update(data)
            left -= len(data)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--files", type=int, default=5000, help="single-frame files")
    parser.add_argument("--frames", type=int, default=2048,
                        help="frames of the multi-frame file (0: none); 2048 = 1 GiB")
    args = parser.parse_args(argv)
    corpus = single_frame(args.files)
    print(json.dumps(corpus.stamp, indent=1))
    if args.frames:
        print(json.dumps(multi_frame(args.frames).stamp, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --------------------------------------------------------------------------- burned-in text
def ultrasound(n_files: int, root: Path = CORPUS_ROOT,
               log: Callable[[str], None] = print) -> Corpus:
    """The cached corpus of ``n_files`` 640x480 8-bit ultrasound images, every other one
    with a name, an MRN and a date drawn into its top corner (Pillow's own font), the rest
    speckle only: what the pixel stage searches (needs the ``ocr`` extra's numpy, Pillow)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    path = root / f"us-{n_files}"

    def check(stamp: dict) -> bool:
        return len(_tree_files(path / "tree")) == stamp.get("files")

    def generate(tree: Path) -> dict:
        rng = np.random.default_rng(int(hashlib.sha256(SEED.encode()).hexdigest()[:8], 16))
        font = ImageFont.load_default(size=18)
        total = with_text = 0
        for number in range(n_files):
            y, x = np.mgrid[0:480, 0:640]
            blob = 90 * np.exp(-(((x - 320) / 160) ** 2 + ((y - 260) / 120) ** 2))
            image = np.clip(blob + rng.normal(0, 12, (480, 640)) + 20, 0, 200).astype(np.uint8)
            patient = f"{LAST_NAMES[number % len(LAST_NAMES)]}^{FIRST_NAMES[number % 7]}"
            mrn = f"{10000000 + number * 7919:08d}"
            if number % 2 == 0:
                canvas = Image.fromarray(image)
                draw = ImageDraw.Draw(canvas)
                draw.text((12, 8), patient.replace("^", " "), fill=255, font=font)
                draw.text((12, 34), f"MRN {mrn}", fill=255, font=font)
                image = np.asarray(canvas)
                with_text += 1
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
            ds.file_meta.MediaStorageSOPInstanceUID = f"{UID_ROOT}9.{number + 1}"
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
            ds.SOPInstanceUID = f"{UID_ROOT}9.{number + 1}"
            ds.StudyInstanceUID = f"{UID_ROOT}8.{number // 10 + 1}"
            ds.SeriesInstanceUID = f"{UID_ROOT}7.{number // 10 + 1}"
            ds.Modality = "US"
            ds.PatientName, ds.PatientID = patient, mrn
            ds.StudyDate = "20240105"
            ds.Rows, ds.Columns = image.shape
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit, ds.PixelRepresentation = 7, 0
            ds.PixelData = image.tobytes()
            target = tree / f"US{number + 1:05d}.dcm"
            ds.save_as(target, enforce_file_format=True)
            total += target.stat().st_size
        return {"kind": "ultrasound", "files": n_files, "bytes": total, "with_text": with_text}

    return _build(path, {"files": n_files}, check, generate, log)
