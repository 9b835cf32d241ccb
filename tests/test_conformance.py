"""PS3.15 conformance of the built-in profiles, checked on written files.

For each built-in profile, every attribute of Table E.1-1 present in an input ends, in the
file the real writer produced, in the state its resolved action requires: removed, empty
(a dummy where the attribute is Type 1 in the file's IOD), dummy, kept byte for byte, UIDs
remapped to ``2.25.``, pseudonymised, dates shifted, ages capped, text cleaned. Checked on
every readable pydicom / pydicom-data file and the sample data (top level and the items of
top-level sequences), on a spot table of tricky attributes, on the safe private attributes
(PS3.15 Table E.3.10-1) and on the De-identification Method codes.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY_A, SAMPLE_DATA, dcmread_quiet
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from anonymizer import standard
from anonymizer.actions import ByType, Dummy, Empty, Keep, RemapUID, Remove, Replace
from anonymizer.engine import Engine
from anonymizer.errors import DeidentificationError
from anonymizer.io import read_dataset, write_temporary
from anonymizer.keyed import KeyedSource
from anonymizer.profiles import load_profile
from anonymizer.rules import CompiledProfile
from anonymizer.tags import dictionary_vr, format_tag
from anonymizer.transforms import (
    CapAge,
    CapBirthDate,
    CleanBitmap,
    CleanText,
    Pseudonym,
    ShiftDate,
    oldest_age,
)

#: The test files are deliberately odd (bad VRs, over-long values): pydicom warns on reading.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PROFILES = ("basic", "default", "research")
CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
STANDARD_ROOT = "1.2.840.10008."
SCRUB_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS"})
PATIENT_NAME = 0x00100010
INSTITUTION_NAME = 0x00080080
DEVICE_SERIAL_NUMBER = 0x00181000
PATIENT_AGE = 0x00101010
PATIENT_SEX = 0x00100040
STUDY_DATE = 0x00080020
STUDY_INSTANCE_UID = 0x0020000D
ACCESSION_NUMBER = 0x00080050


# --------------------------------------------------------------------------- helpers


@dataclass
class Processed:
    """An input as read, the same file de-identified and written, read back."""

    source: str
    before: Dataset
    after: Dataset


def _process(engine: Engine, path: Path, out: Path, token: str) -> Processed | None:
    """Reader -> engine -> splice writer -> dcmread; None when the engine refuses the file."""
    before = read_dataset(path).dataset
    read = read_dataset(path)
    try:
        try:
            result = engine.deidentify(read.dataset)
        except DeidentificationError:
            return None
        written, _ = write_temporary(read.dataset, out, token, read.splice, result.changes)
    finally:
        read.close()
    after = dcmread_quiet(written, force=True)
    written.unlink()
    return Processed(str(path), before, after)


def _vr(ds: Dataset, tag: int) -> str:
    """The VR the engine works with: the element's own, or the dictionary's for UN."""
    vr = ds.get_item(tag, keep_deferred=True).VR
    if vr is None or vr == "UN":
        vr = dictionary_vr(tag) or "UN"
    return vr


def _texts(elem: DataElement) -> list[str]:
    """The element's values as stripped strings (bytes as latin-1); [] when empty."""
    value = elem.value
    if value is None:
        return []
    if isinstance(value, bytes):
        text = value.decode("latin-1").strip(" \x00")
        return [text] if text else []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v).strip(" \x00") for v in value]
    text = str(value).strip(" \x00")
    return [text] if text else []


def _empty(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return len(elem.value) == 0
    return not any(_texts(elem))


def _raw(ds: Dataset, tag: int) -> bytes | None:
    """The encoded value as read from the file, if the element was not decoded yet."""
    elem = ds.get_item(tag, keep_deferred=True)
    return elem.value if isinstance(elem, RawDataElement) else None


def _same(before: DataElement, after: DataElement, raw_before: bytes | None,
          raw_after: bytes | None) -> bool:
    """Whether an element kept its value: the encoded bytes where both sides still have
    them, else the decoded values (a sequence: its number of items)."""
    if before.VR == "SQ" or after.VR == "SQ":
        return after.VR == "SQ" and len(before.value) == len(after.value)
    if raw_before is not None and raw_after is not None:
        return raw_before == raw_after
    if isinstance(before.value, bytes) or isinstance(after.value, bytes):
        return before.value == after.value
    return _texts(before) == _texts(after)


def _family_name(ds: Dataset) -> str | None:
    if PATIENT_NAME not in ds:
        return None
    names = _texts(ds[PATIENT_NAME])
    family = re.split(r"[\^=\s,]+", names[0])[0] if names else ""
    return family if len(family) >= 2 else None


def _date(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def _resolved(action: Any, sop: str, tag: int, path: tuple[int, ...]) -> Any:
    if isinstance(action, ByType):
        return action.resolve(standard.attribute_type(sop, tag, path))
    return action


def _check_dummy(vr: str, before: DataElement, after: DataElement | None) -> str | None:
    if after is None:
        return "removed, expected a dummy"
    if vr == "SQ":
        return None  # a sequence is kept and cleaned inside
    if vr == "UI":
        return _check_uids(before, after)
    if _empty(after):
        return "empty, expected a dummy"
    return None


def _check_uids(before: DataElement, after: DataElement | None) -> str | None:
    if after is None:
        return "removed, expected remapped UIDs"
    old, new = _texts(before), _texts(after)
    if len(old) != len(new):
        return f"{len(old)} UIDs became {len(new)}"
    for original, value in zip(old, new, strict=True):
        if original.startswith(STANDARD_ROOT):
            if value != original:
                return f"standard UID {original} changed"
        elif not original:
            if value:
                return "empty UID filled"
        elif not value.startswith("2.25.") or value == original:
            return f"UID not remapped to 2.25. ({value[:12]}...)"
    return None


def _check_shift(vr: str, before: DataElement, after: DataElement | None, type1: bool,
                 profile: CompiledProfile) -> str | None:
    if after is None:
        return "removed, expected a shifted date"
    old, new = _texts(before), _texts(after)
    if vr == "TM":
        if profile.settings.times == "keep":
            return None if old == new else "time changed though dates.times is keep"
        return None if (type1 and new) or not new else "time kept though dates.times is remove"
    if vr not in ("DA", "DT"):
        if vr in ("OB", "OW", "UN") and old and before.value == after.value:
            return "a binary timestamp kept unchanged under Modified Dates"
        return None
    if not old:
        return None if not new else "empty date filled"
    if not new:
        # an unparseable value is emptied, never kept
        return None if all(_date(v[:8]) is None for v in old) else "date emptied"
    if len(old) != len(new):
        return f"{len(old)} dates became {len(new)}"
    for original, value in zip(old, new, strict=True):
        if value == original:
            return "date not shifted"
        if len(value) >= 8 and _date(value[:8]) is None:
            return "shifted value is not a valid date"
        if vr == "DT":
            zone = re.search(r"[+-]\d{4}$", original)
            if zone and not value.endswith(zone.group()):
                return "DT lost its UTC offset"
    return None


def _violation(action: Any, before_ds: Dataset, after_ds: Dataset, tag: int,
               path: tuple[int, ...], sop: str, profile: CompiledProfile,
               family: str | None) -> str | None:
    """What is wrong with ``tag`` in ``after_ds`` under ``action``; None when conformant."""
    raw_before = _raw(before_ds, tag)
    raw_after = _raw(after_ds, tag) if tag in after_ds else None
    before = before_ds[tag]
    after = after_ds.get(tag)
    vr = _vr(before_ds, tag)
    type1 = standard.attribute_type(sop, tag, path) == "1"
    action = _resolved(action, sop, tag, path)
    cap = profile.settings.age_cap
    oldest = oldest_age(before_ds) if cap is not None and not path else None
    over_cap = oldest is not None and cap is not None and oldest > cap
    if isinstance(action, CapBirthDate):
        if over_cap:
            return None if after is None or _empty(after) else "birth date of a patient " \
                "older than the age cap kept"
        action = action.inner
    if isinstance(action, Remove | CleanBitmap):
        return None if after is None else "present, expected removed"
    if after is None:
        return f"removed, expected {action.describe()}"
    if isinstance(action, Empty):
        if type1:
            return _check_dummy(vr, before, after)
        return None if _empty(after) else "not empty"
    if isinstance(action, Dummy):
        return _check_dummy(vr, before, after)
    if isinstance(action, Replace):
        return None if _texts(after) == _texts(DataElement(tag, vr, action.value)) \
            else "not the replacement value"
    if isinstance(action, Keep):
        return None if _same(before, after, raw_before, raw_after) \
            else "value changed, expected kept"
    if isinstance(action, RemapUID):
        if vr == "SQ":
            return None
        return _check_uids(before, after) if vr == "UI" else _check_dummy(vr, before, after)
    if isinstance(action, Pseudonym):
        old, new = _texts(before), _texts(after)
        if not old:
            return None if not new else "empty value got a pseudonym"
        if not new or any(n == o for n, o in zip(new, old, strict=False)):
            return "pseudonym empty or equal to the original"
        if action.fmt and action.fmt.split("{")[0] and \
                not all(n.startswith(action.fmt.split("{")[0]) for n in new):
            return f"pseudonym does not follow {action.fmt!r}"
        return None
    if isinstance(action, ShiftDate):
        return _check_shift(vr, before, after, type1, profile)
    if isinstance(action, CapAge):
        old, new = _texts(before), _texts(after)
        if not old or cap is None:
            return None if old == new else "age changed"
        match = re.fullmatch(r"(\d{3})([DWMY])", old[0])
        if match is None:
            return None if not new or type1 else "malformed age kept"
        years = int(match.group(1)) / {"D": 365.25, "W": 52.18, "M": 12, "Y": 1}[match.group(2)]
        expected = [f"{cap + 1:03d}Y"] if years > cap or over_cap else old
        return None if new == expected else f"age {new} expected {expected}"
    if isinstance(action, CleanText):
        if vr not in SCRUB_VRS:
            return _check_dummy(vr, before, after)
        if family is None:
            return None
        text = " ".join(_texts(after)).upper()
        return f"still holds the family name {family!r}" if family.upper() in text else None
    return f"unexpected action {action!r}"


def _exact_row(tag: int) -> bool:
    row = standard.confidentiality_row(tag)
    return row is not None and not row.is_pattern


def conformance_violations(item: Processed, engine: Engine, nested: bool = False
                           ) -> list[str]:
    """Every Table E.1-1 attribute of ``item`` not in the state its action requires."""
    profile = engine.profile
    before, after = item.before, item.after
    sop = str(before.get("SOPClassUID", "") or "")
    family = _family_name(before)
    stamped = set(engine.stamp)
    problems = []

    def check(before_ds: Dataset, after_ds: Dataset, path: tuple[int, ...]) -> None:
        for tag in before_ds.keys():
            if tag >> 16 & 1 or not _exact_row(tag) or (not path and tag in stamped):
                continue
            rule = profile.tag_rules[tag]
            problem = _violation(rule.action, before_ds, after_ds, tag, path, sop, profile,
                                 family)
            if problem is not None:
                where = ">".join(format_tag(t) for t in (*path, tag))
                problems.append(f"{Path(item.source).name} {profile.name} {where} "
                                f"[{rule.describe()}]: {problem}")

    check(before, after, ())
    if nested:
        for tag in before.keys():
            if tag >> 16 & 1 or _vr(before, tag) != "SQ" or tag not in after:
                continue
            items_before, items_after = before[tag].value, after[tag].value
            if len(items_after) == 0:
                continue
            assert len(items_before) == len(items_after), f"{format_tag(tag)} lost items"
            for item_before, item_after in zip(items_before, items_after, strict=True):
                check(item_before, item_after, (tag,))
    return problems


# --------------------------------------------------------------------------- every real file


@pytest.mark.parametrize("name", PROFILES)
def test_every_table_attribute_of_the_test_files_ends_as_its_action_requires(
        name: str, engines: dict[str, Engine], readable_testdata: list[Path],
        tmp_path: Path) -> None:
    engine = engines[name]
    problems: list[str] = []
    checked = 0
    for number, path in enumerate(readable_testdata):
        item = _process(engine, path, tmp_path, f"{number:04d}")
        if item is None:
            continue
        checked += 1
        problems += conformance_violations(item, engine)
    assert checked > 180  # default and research refuse images with text in their pixels
    assert not problems, f"{len(problems)} violations:\n" + "\n".join(problems[:40])


SAMPLE_FILES = sorted(p for p in SAMPLE_DATA.rglob("*") if p.is_file() and p.suffix != ".txt")


@pytest.mark.parametrize("name", PROFILES)
def test_sample_data_top_level_and_depth_1_items_end_as_their_actions_require(
        name: str, engines: dict[str, Engine], tmp_path: Path) -> None:
    engine = engines[name]
    problems: list[str] = []
    for number, path in enumerate(SAMPLE_FILES):
        item = _process(engine, path, tmp_path, f"{number:04d}")
        assert item is not None, path
        problems += conformance_violations(item, engine, nested=True)
    assert not problems, "\n".join(problems)


def test_nested_items_are_checked_where_the_sequence_survives(engines: dict[str, Engine],
                                                               tmp_path: Path) -> None:
    """Research keeps Request Attributes Sequence (Clean Descriptors): its items are cleaned
    by the same table (Accession Number pseudonymised, Requested Procedure ID removed)."""
    path = SAMPLE_DATA / "DOE^JOHN_12345678" / "20190101_CT_CHEST" / "IM0001.dcm"
    item = _process(engines["research"], path, tmp_path, "n")
    assert item is not None
    before = item.before.RequestAttributesSequence[0]
    after = item.after.RequestAttributesSequence[0]
    assert before.AccessionNumber == "ACC2019000101"
    assert after.AccessionNumber.startswith("ACC-")
    assert "RequestedProcedureID" in before and "RequestedProcedureID" not in after
    assert "OtherPatientIDsSequence" not in item.after  # X in every profile
    basic = _process(engines["basic"], path, tmp_path, "b")
    assert basic is not None and "RequestAttributesSequence" not in basic.after


# --------------------------------------------------------------------------- spot table


def _write(ds: Dataset, directory: Path, name: str) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    ds.save_as(path, enforce_file_format=True)
    return path


def _ct(sop: str = CT, **extra: Any) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.999.3.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.999.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.999.2"
    ds.Modality = "CT"
    ds.PatientName = "SPOT^PATIENT"
    ds.PatientID = "SPOT-0001"
    ds.InstitutionName = "SPOT HOSPITAL"
    ds.DeviceSerialNumber = "SN-12345"
    ds.PatientAge = "045Y"
    ds.PatientSex = "F"
    ds.StudyDate = "20200601"
    ds.AccessionNumber = "ACC-SPOT-1"
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def _engine(reference: str, tmp_path: Path, engines: dict[str, Engine]) -> Engine:
    if reference in engines:
        return engines[reference]
    if reference == "institution":
        path = tmp_path / "institution.yaml"
        path.write_text("name: institution\nextends: basic\n"
                        "options: [retain_institution_identity]\n", encoding="utf-8")
        return Engine(load_profile(str(path)), KeyedSource(KEY_A))
    raise AssertionError(reference)


def _spot(engine: Engine, ds: Dataset, tmp_path: Path) -> Processed:
    path = _write(ds, tmp_path / "in", "spot.dcm")
    item = _process(engine, path, tmp_path / "out", "spot")
    assert item is not None
    return item


ABSENT, EMPTY = object(), ""
SPOT_CASES = [
    # (profile, tag, extra attributes, expected value / ABSENT / callable)
    ("basic", INSTITUTION_NAME, {}, ABSENT),  # X/Z/D, Type 3 in CT -> X
    ("research", INSTITUTION_NAME, {}, ABSENT),
    ("default", INSTITUTION_NAME, {}, ABSENT),
    ("institution", INSTITUTION_NAME, {}, "SPOT HOSPITAL"),  # Retain Institution Identity
    ("basic", DEVICE_SERIAL_NUMBER, {}, ABSENT),
    ("research", DEVICE_SERIAL_NUMBER, {}, "SN-12345"),  # Retain Device Identity
    ("basic", PATIENT_AGE, {}, ABSENT),
    ("research", PATIENT_AGE, {}, "045Y"),  # Retain Patient Characteristics
    ("research", PATIENT_AGE, {"PatientAge": "095Y"}, "090Y"),  # HIPAA cap
    ("research", PATIENT_AGE, {"PatientAge": "089Y"}, "089Y"),
    ("basic", PATIENT_SEX, {}, EMPTY),  # Z, Type 2
    ("research", PATIENT_SEX, {}, "F"),
    ("basic", STUDY_DATE, {}, EMPTY),  # Z, Type 2
    ("default", STUDY_DATE, {}, EMPTY),
    ("research", STUDY_DATE, {}, lambda v: v != "20200601" and _date(v) is not None
     and -365 <= (_date(v) - dt.date(2020, 6, 1)).days <= -1),
    ("basic", STUDY_INSTANCE_UID, {}, lambda v: v.startswith("2.25.")),
    ("default", STUDY_INSTANCE_UID, {}, lambda v: v.startswith("2.25.")),
    ("research", STUDY_INSTANCE_UID, {}, lambda v: v.startswith("2.25.")),
    ("basic", ACCESSION_NUMBER, {}, EMPTY),
    ("default", ACCESSION_NUMBER, {}, EMPTY),
    ("research", ACCESSION_NUMBER, {}, lambda v: re.fullmatch(r"ACC-[0-9A-F]{12}", v)),
    # Device Serial Number is Type 1 in the Enhanced CT IOD: X/Z/D -> D
    ("basic", DEVICE_SERIAL_NUMBER, {"SOPClassUID": ENHANCED_CT}, "ANONYMIZED"),
]


@pytest.mark.parametrize(("profile", "tag", "extra", "expected"), SPOT_CASES,
                         ids=[f"{c[0]}-{format_tag(c[1])}-{i}" for i, c in enumerate(SPOT_CASES)])
def test_spot_table(profile: str, tag: int, extra: dict[str, Any], expected: Any,
                    engines: dict[str, Engine], tmp_path: Path) -> None:
    engine = _engine(profile, tmp_path, engines)
    item = _spot(engine, _ct(**extra), tmp_path)
    assert not conformance_violations(item, engine)
    if expected is ABSENT:
        assert tag not in item.after
        return
    assert tag in item.after
    value = item.after[tag].value
    text = "" if value is None else str(value)
    if callable(expected):
        assert expected(text), text
    else:
        assert text == expected


@pytest.mark.parametrize("keyword", ["FrameOriginTimestamp", "CertifiedTimestamp"])
@pytest.mark.parametrize("name", ["basic", "research"])
def test_binary_timestamps_are_not_kept_under_modified_dates(
        keyword: str, name: str, engines: dict[str, Engine], tmp_path: Path) -> None:
    """(0034,0007) Frame Origin Timestamp and (0400,0310) Certified Timestamp (OB) are C under
    the Modified Dates Option (D and X in the Basic Profile). A binary timestamp cannot be
    shifted like a DA, so it must be removed or replaced: keeping it keeps the original time,
    and next to the shifted dates it gives away the patient's offset."""
    stamp = bytes.fromhex("0000000065a1b2c3")  # an absolute time, 8 bytes
    ds = _ct(**{keyword: stamp})
    ds[keyword].VR = "OB"
    engine = engines[name]
    item = _spot(engine, ds, tmp_path)
    after = item.after.get(ds[keyword].tag)
    assert after is None or after.value != stamp, f"{name}: original {keyword} kept " \
        f"[{engine.profile.tag_rules[ds[keyword].tag].describe()}]"


# --------------------------------------------------------------------------- safe private


def _private_dataset(blocks: list[tuple[int, int, str, list[tuple[int, str, Any]]]]) -> Dataset:
    """A CT dataset with (group, block, creator, [(offset, VR, value)]) private blocks."""
    ds = _ct()
    ds.SOPInstanceUID = generate_uid()
    for group, block, creator, elements in blocks:
        ds.add_new(group << 16 | block, "LO", creator)
        for offset, vr, value in elements:
            ds.add_new(group << 16 | block << 8 | offset, vr, value)
    return ds


def _private_tags(ds: Dataset) -> set[int]:
    return {int(t) for t in ds.keys() if t >> 16 & 1}


def test_safe_private_list_keeps_exactly_its_entries(engines: dict[str, Engine],
                                                     tmp_path: Path) -> None:
    philips = "Philips PET Private Group"
    assert (0x7053, philips, 0x00) in standard.safe_private_attributes()
    assert (0x7053, philips, 0x09) in standard.safe_private_attributes()
    assert (0x7053, philips, 0x05) not in standard.safe_private_attributes()
    assert (0x7055, philips, 0x00) not in standard.safe_private_attributes()
    assert (0x00E1, "ELSCINT1", 0x21) in standard.safe_private_attributes()
    ds = _private_dataset([
        (0x7053, 0x10, philips, [(0x00, "DS", "1.5"), (0x09, "DS", "2.5"),
                                 (0x05, "DS", "3.5")]),
        (0x7055, 0x10, philips, [(0x00, "DS", "4.5")]),
        (0x00E1, 0x30, "ELSCINT1", [(0x21, "DS", "12.5")]),
        (0x0029, 0x10, "ACME PHI", [(0x01, "LO", "SPOT^PATIENT")]),
    ])
    research = _spot(engines["research"], ds, tmp_path / "research").after
    assert _private_tags(research) == {0x70530010, 0x70531000, 0x70531009, 0x00E10030,
                                       0x00E13021}
    assert research[0x70530010].value == philips
    assert research[0x00E10030].value == "ELSCINT1"
    assert str(research[0x70531000].value) == "1.5"
    assert str(research[0x00E13021].value) == "12.5"
    for name in ("basic", "default"):
        assert not _private_tags(_spot(engines[name], ds, tmp_path / name).after), name


_VALUE_BY_VR: dict[str, Any] = {
    "FL": 1.5, "FD": 2.5, "US": 7, "SS": -7, "UL": 70000, "SL": -70000, "IS": "1", "DS": "1",
    "AT": 0x00100010, "OB": b"\x00\x00", "OW": b"\x00\x00", "OW/OB": b"\x00\x00", "UI": "1.2.3",
    "DA": "20000101", "TM": "120000", "DT": "20000101120000",
}


def test_every_safe_private_attribute_survives_under_research(engines: dict[str, Engine],
                                                              tmp_path: Path) -> None:
    """Each row of Table E.3.10-1 with a VR (not SQ), in a block of its creator in its group,
    with a valid value for its VR, is kept (with its creator) by the research profile."""
    by_block: dict[tuple[int, str], list[tuple[int, str, Any]]] = defaultdict(list)
    for (group, creator, offset), attr in standard.safe_private_attributes().items():
        if not attr.vr or attr.vr == "SQ":
            continue
        vr = "OB" if attr.vr == "OW/OB" else attr.vr
        by_block[(group, creator)].append((offset, vr, _VALUE_BY_VR.get(attr.vr, "A")))
    assert len(by_block) > 20
    lost: list[str] = []
    for number, ((group, creator), elements) in enumerate(sorted(by_block.items())):
        ds = _private_dataset([(group, 0x10, creator, elements)])
        after = _spot(engines["research"], ds, tmp_path / f"{number}").after
        expected = {group << 16 | 0x10} | {group << 16 | 0x1000 | o for o, _, _ in elements}
        missing = expected - _private_tags(after)
        lost += [f"{creator!r} {format_tag(t)}" for t in sorted(missing)]
        assert _private_tags(after) <= expected
    assert not lost, f"{len(lost)} safe private attributes removed: {lost}"


# --------------------------------------------------------------------------- method codes


def _sample_output(engine: Engine, tmp_path: Path) -> Dataset:
    path = SAMPLE_DATA / "DOE^JOHN_12345678" / "20190101_CT_CHEST" / "IM0001.dcm"
    item = _process(engine, path, tmp_path / engine.profile.name, "m")
    assert item is not None
    return item.after


@pytest.mark.parametrize(("name", "codes", "modified"), [
    ("basic", ["113100"], "REMOVED"),
    ("default", ["113100"], "REMOVED"),
    ("research", ["113100", "113111", "113107", "113108", "113109", "113105", "113104"],
     "MODIFIED"),
])
def test_deidentification_method_codes_and_temporal_information(
        name: str, codes: list[str], modified: str, engines: dict[str, Engine],
        tmp_path: Path) -> None:
    after = _sample_output(engines[name], tmp_path)
    sequence = after.DeidentificationMethodCodeSequence
    assert [item.CodeValue for item in sequence] == codes
    assert all(item.CodingSchemeDesignator == "DCM" and item.CodeMeaning for item in sequence)
    assert after.LongitudinalTemporalInformationModified == modified
    assert after.PatientIdentityRemoved == "YES"


def test_profiles_show_research_names_the_deciding_options() -> None:
    shown = subprocess.run([sys.executable, "-m", "anonymizer", "profiles", "show", "research"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("(")}
    expected = {
        "(0018,1000)": "option retain_device_identity",
        "(0010,0040)": "option retain_patient_characteristics",
        "(0010,1010)": "option retain_patient_characteristics",
        "(0008,0020)": "option retain_longitudinal_modified_dates",
        "(0008,1030)": "option clean_descriptors",
        "(0040,A730)": "option clean_structured_content",
        "(0008,0080)": "PS3.15 Basic Profile",
        "(0010,0020)": "profile research",
    }
    for tag, origin in expected.items():
        assert origin in lines[tag], lines[tag]
    assert "options: retain_safe_private, retain_longitudinal_modified_dates" in shown.stdout
    assert "safe private attributes" in shown.stdout
