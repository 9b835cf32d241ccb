"""Private data: decided by creator and offset within the creator's block, like pydicom's
``Dataset.private_block`` (a creator at (gggg,00xx) reserves (gggg,xx00-xxFF))."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import dcmread_quiet
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from anonymizer.engine import Engine
from anonymizer.io import write_temporary
from anonymizer.keyed import KeyedSource
from anonymizer.profiles import load_profile
from anonymizer.rules import CompiledProfile

CT = "1.2.840.10008.5.1.4.1.1.2"
SHARED_FG = 0x52009229  # Shared Functional Groups Sequence: not in Table E.1-1, kept
FRAME_CONTENT = 0x00209111  # Frame Content Sequence: not in Table E.1-1, kept


def _profile(tmp_path: Path, text: str, name: str = "t.yaml") -> CompiledProfile:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_profile(str(path))


def _private_tags(ds: Dataset) -> set[int]:
    """Every private (odd group) tag anywhere in ``ds``, sequence items included."""
    return {int(elem.tag) for elem in ds.iterall() if elem.tag.is_private}


def _testfile(name: str) -> Dataset:
    return dcmread_quiet(get_testdata_file(name))


def _gems_block_tags(ds: Dataset) -> set[int]:
    """(0009,0010) and every (0009,10xx) of CT_small.dcm's GEMS_IDEN_01 block."""
    return {t for t in ds.keys() if t >> 16 == 0x0009 and (t & 0xFFFF) >> 8 == 0x10} | {
        0x00090010}


# --------------------------------------------------------------------------- CT_small.dcm


def test_ct_small_gems_iden_block_is_readable_with_pydicom() -> None:
    ds = _testfile("CT_small.dcm")
    block = ds.private_block(0x0009, "GEMS_IDEN_01")
    assert block.block_start == 0x1000
    assert 0x01 in block
    assert block.get_tag(0x01) == 0x00091001
    assert block[0x01].value == "GE_GENESIS_FF"
    # the file has other creators too, so "remove every other block" can fail
    assert {t >> 16 for t in _private_tags(ds)} - {0x0009}


def test_keep_creators_keeps_that_block_and_removes_every_other_private_element(
        tmp_path: Path, keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, "name: t\nprivate:\n  default: remove\n"
                                 "  keep_creators: [GEMS_IDEN_01]\n")
    ds = _testfile("CT_small.dcm")
    block_tags = _gems_block_tags(ds)
    original_1001 = ds[0x00091001].value
    assert _private_tags(ds) - block_tags  # other private elements exist before

    Engine(profile, keyed).deidentify(ds)

    assert ds[0x00090010].value == "GEMS_IDEN_01"
    assert ds[0x00091001].value == original_1001
    assert ds.private_block(0x0009, "GEMS_IDEN_01")[0x01].value == original_1001
    # nothing private survives outside the GEMS_IDEN_01 block, at any depth
    assert _private_tags(ds) == block_tags


def test_keep_one_element_by_creator_and_offset(tmp_path: Path, keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, "name: t\nprivate:\n"
                                 "  keep: [{creator: GEMS_IDEN_01, element: 0x01}]\n")
    ds = _testfile("CT_small.dcm")
    assert len(_gems_block_tags(ds)) > 2  # the block has more than (0009,1001)

    Engine(profile, keyed).deidentify(ds)

    assert _private_tags(ds) == {0x00090010, 0x00091001}
    assert ds[0x00091001].value == "GE_GENESIS_FF"


# --------------------------------------------------------------------------- block positions


def _two_creators_in_0009() -> Dataset:
    ds = Dataset()
    ds.PatientID = "PID-1"
    ds.add_new(0x00090010, "LO", "OTHER VENDOR")
    ds.add_new(0x00091001, "LO", "other vendor data")
    ds.add_new(0x00090011, "LO", "GEMS_IDEN_01")
    ds.add_new(0x00091101, "LO", "GE_GENESIS_FF")
    ds.add_new(0x00091102, "SH", "CT01")
    return ds


def test_block_at_unusual_position_is_found_by_creator(tmp_path: Path,
                                                       keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, "name: t\nprivate:\n"
                                 "  keep: [{creator: GEMS_IDEN_01, element: 0x01}]\n")
    ds = _two_creators_in_0009()
    assert ds.private_block(0x0009, "GEMS_IDEN_01").get_tag(0x01) == 0x00091101

    Engine(profile, keyed).deidentify(ds)

    # kept: the creator at (0009,0011) and its element 0x01 at (0009,1101) ...
    assert _private_tags(ds) == {0x00090011, 0x00091101}
    assert ds.private_block(0x0009, "GEMS_IDEN_01")[0x01].value == "GE_GENESIS_FF"
    # ... not the raw tag (0009,1001), which belongs to the other creator
    assert 0x00091001 not in ds
    assert 0x00090010 not in ds


def test_keep_creators_at_unusual_position(tmp_path: Path, keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, "name: t\nprivate:\n  keep_creators: [GEMS_IDEN_01]\n")
    ds = _two_creators_in_0009()
    Engine(profile, keyed).deidentify(ds)
    assert _private_tags(ds) == {0x00090011, 0x00091101, 0x00091102}


def _same_creator_in_two_groups() -> Dataset:
    ds = Dataset()
    ds.PatientID = "PID-1"
    ds.add_new(0x00090010, "LO", "GEMS_IDEN_01")
    ds.add_new(0x00091001, "LO", "in 0009")
    ds.add_new(0x00190010, "LO", "GEMS_IDEN_01")
    ds.add_new(0x00191001, "LO", "in 0019")
    return ds


def test_same_creator_in_two_groups_without_group_keeps_both(tmp_path: Path,
                                                             keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, "name: t\nprivate:\n"
                                 "  keep: [{creator: GEMS_IDEN_01, element: 0x01}]\n")
    ds = _same_creator_in_two_groups()
    Engine(profile, keyed).deidentify(ds)
    assert _private_tags(ds) == {0x00090010, 0x00091001, 0x00190010, 0x00191001}


def test_same_creator_in_two_groups_with_group_keeps_only_that_group(
        tmp_path: Path, keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, "name: t\nprivate:\n  keep:\n"
                                 "    - {creator: GEMS_IDEN_01, element: 0x01, group: 0x0009}\n")
    ds = _same_creator_in_two_groups()
    Engine(profile, keyed).deidentify(ds)
    assert _private_tags(ds) == {0x00090010, 0x00091001}
    assert ds[0x00091001].value == "in 0009"


# --------------------------------------------------------------------------- orphans, creators


def _with_orphans() -> Dataset:
    ds = Dataset()
    ds.PatientID = "PID-1"
    ds.add_new(0x00090010, "LO", "GEMS_IDEN_01")
    ds.add_new(0x00091001, "LO", "GE_GENESIS_FF")
    ds.add_new(0x00092001, "LO", "DOE^JOHN")  # block 0x20 has no creator: orphan
    ds.add_new(0x00111001, "LO", "12345678")  # no creator in the group at all: orphan
    ds.add_new(0x00131000, "LO", "ORPHAN")  # block 0x10, no (0013,0010)
    return ds


def test_orphan_private_elements_removed_even_under_default_keep(tmp_path: Path,
                                                                 keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, "name: t\nprivate:\n  default: keep\n")
    ds = _with_orphans()
    result = Engine(profile, keyed).deidentify(ds)
    assert _private_tags(ds) == {0x00090010, 0x00091001}
    removed = {where for where, code in result.acted if code == "X"}
    assert {"(0009,2001)", "(0011,1001)", "(0013,1000)"} <= removed


def test_creator_whose_block_loses_every_element_is_removed(tmp_path: Path,
                                                            keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, "name: t\nprivate:\n"
                                 "  keep: [{creator: GEMS_IDEN_01, element: 0x01}]\n")
    ds = Dataset()
    ds.PatientID = "PID-1"
    ds.add_new(0x00090010, "LO", "GEMS_IDEN_01")
    ds.add_new(0x00091002, "SH", "CT01")  # not the kept offset
    ds.add_new(0x00090011, "LO", "EMPTY BLOCK")  # a creator with no element at all
    ds.add_new(0x00290010, "LO", "GEMS_IDEN_01")
    ds.add_new(0x00291001, "LO", "kept")
    Engine(profile, keyed).deidentify(ds)
    assert _private_tags(ds) == {0x00290010, 0x00291001}


def _item_with_private() -> Dataset:
    item = Dataset()
    item.add_new(0x00090010, "LO", "GEMS_IDEN_01")
    item.add_new(0x00091001, "LO", "GE_GENESIS_FF")
    item.add_new(0x00091002, "SH", "CT01")
    item.add_new(0x00190010, "LO", "OTHER VENDOR")
    item.add_new(0x00191001, "LO", "DOE^JOHN")
    item.add_new(0x00211001, "LO", "orphan 12345678")
    return item


def _depth2_dataset() -> Dataset:
    """Private blocks at the top level, at depth 1 and at depth 2."""
    inner = Dataset()
    inner.FrameAcquisitionNumber = 1
    inner.update(_item_with_private())
    outer = Dataset()
    outer.add_new(FRAME_CONTENT, "SQ", Sequence([inner]))
    outer.update(_item_with_private())
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.PatientID = "PID-1"
    ds.add_new(SHARED_FG, "SQ", Sequence([outer]))
    ds.update(_item_with_private())
    return ds


@pytest.mark.parametrize("default", ["keep", "remove"])
def test_private_elements_in_sequence_items_at_depth_2(tmp_path: Path, keyed: KeyedSource,
                                                       default: str) -> None:
    profile = _profile(tmp_path, f"name: t\nprivate:\n  default: {default}\n"
                                 "  keep: [{creator: GEMS_IDEN_01, element: 0x01}]\n")
    ds = _depth2_dataset()
    Engine(profile, keyed).deidentify(ds)
    outer = ds[SHARED_FG].value[0]
    inner = outer[FRAME_CONTENT].value[0]
    expected = {0x00090010, 0x00091001}
    if default == "keep":
        expected |= {0x00091002, 0x00190010, 0x00191001}
    for where in (ds, outer, inner):
        private = {t for t in where.keys() if t >> 16 & 1}
        assert private == expected
    assert inner.FrameAcquisitionNumber == 1


def test_kept_private_sequence_is_cleaned_inside(tmp_path: Path, keyed: KeyedSource) -> None:
    """A kept private SQ is recursed: standard PHI and unlisted private data inside go."""
    profile = _profile(tmp_path, "name: t\nextends: basic\nprivate:\n"
                                 "  keep_creators: [MY SQ CREATOR]\n")
    item = _item_with_private()
    item.PatientName = "DOE^JOHN"
    item.ReferringPhysicianName = "RIVIERA^NICK"
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.add_new(0x00290010, "LO", "MY SQ CREATOR")
    ds.add_new(0x00291001, "SQ", Sequence([item]))
    Engine(profile, keyed).deidentify(ds)
    assert {0x00290010, 0x00291001} <= set(ds.keys())
    kept = ds[0x00291001].value[0]
    assert not {t for t in kept.keys() if t >> 16 & 1}
    assert not kept.get("PatientName")
    assert not kept.get("ReferringPhysicianName")


def test_default_profile_leaves_no_private_element_anywhere(engines: dict[str, Engine]) -> None:
    for name in ("CT_small.dcm", "nested_priv_SQ.dcm", "priv_SQ.dcm"):
        ds = _testfile(name)
        assert _private_tags(ds), name  # each file does carry private data
        engines["default"].deidentify(ds)
        assert _private_tags(ds) == set(), name


@pytest.mark.parametrize("name", ["nested_priv_SQ.dcm", "priv_SQ.dcm"])
def test_default_profile_private_sequences_gone_after_writing(tmp_path: Path, name: str,
                                                              engines: dict[str, Engine]) -> None:
    ds = _testfile(name)
    engines["default"].deidentify(ds)
    path, _ = write_temporary(ds, tmp_path, "out")
    back = dcmread_quiet(path, force=True)
    assert _private_tags(back) == set()
    raw = path.read_bytes()
    for text in (b"Nested SQ", b"111111111111111", b"Values updated from"):
        assert text not in raw


def test_kept_private_sequence_read_as_implicit_vr_is_cleaned_inside(
        tmp_path: Path, keyed: KeyedSource) -> None:
    """priv_SQ.dcm (implicit VR): (3F03,1001) is a private Sequence whose VR is unknown to
    the reader (UN). Its item holds a standard Referring Physician's Name (0008,0090)
    '111111111111111' and a block of another creator ('123456789 1234567 1234567').
    Keeping the outer creator's block must not keep these nested values unprocessed."""
    profile = _profile(tmp_path, "name: t\nextends: basic\nprivate:\n"
                                 "  keep_creators: [aaabbbccc MEDICAL SYSTEMS]\n")
    ds = _testfile("priv_SQ.dcm")
    assert ds[0x3F030010].value == "aaabbbccc MEDICAL SYSTEMS"
    Engine(profile, keyed).deidentify(ds)
    path, _ = write_temporary(ds, tmp_path, "out")
    raw = path.read_bytes()
    assert b"111111111111111" not in raw  # Referring Physician's Name: Z in the Basic Profile
    assert b"Values updated from" not in raw  # element of a creator the profile does not keep


# --------------------------------------------------------------------------- safe private


def _elscint_dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.PatientID = "PID-1"
    ds.add_new(0x00E10010, "LO", "SOMEONE ELSE")
    ds.add_new(0x00E11021, "DS", "99")  # offset 0x21 but not ELSCINT1's block
    ds.add_new(0x00E10012, "LO", "ELSCINT1")
    ds.add_new(0x00E11221, "DS", "12.5")  # DLP, DS in Table E.3.10-1: safe
    ds.add_new(0x00E11250, "LO", "240")  # Acquisition Duration is DS in the table: VR mismatch
    ds.add_new(0x00E11201, "LO", "DOE^JOHN")  # offset not in the table
    ds.add_new(0x00E30010, "LO", "ELSCINT1")
    ds.add_new(0x00E31021, "DS", "12.5")  # right creator and offset, wrong group
    return ds


def test_retain_safe_private_by_creator_offset_group_and_vr(engines: dict[str, Engine]) -> None:
    ds = _elscint_dataset()
    engines["research"].deidentify(ds)
    assert _private_tags(ds) == {0x00E10012, 0x00E11221}
    assert ds[0x00E11221].value == "12.5"
    assert ds.private_block(0x00E1, "ELSCINT1")[0x21].value == "12.5"


def test_safe_private_removed_without_the_option(engines: dict[str, Engine]) -> None:
    ds = _elscint_dataset()
    engines["default"].deidentify(ds)
    assert _private_tags(ds) == set()


# --------------------------------------------------------------------------- add


ADD_PROFILE = """\
name: t
extends: basic
add:
  - {creator: "My company 001", group: 0x000b, element: 0x01, vr: SH, value: "PROJ1"}
"""


def test_add_private_element_as_in_pydicom_docs(tmp_path: Path, keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, ADD_PROFILE)
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.PatientID = "PID-1"
    Engine(profile, keyed).deidentify(ds)
    assert ds[0x000B0010].VR == "LO"
    assert ds[0x000B0010].value == "My company 001"
    assert ds[0x000B1001].VR == "SH"
    assert ds[0x000B1001].value == "PROJ1"
    assert ds.private_block(0x000B, "My company 001")[0x01].value == "PROJ1"

    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # keep the VRs in the file
    path, _ = write_temporary(ds, tmp_path / "out", "x")
    back = dcmread_quiet(path)
    assert back[0x000B1001].VR == "SH"
    assert back.private_block(0x000B, "My company 001")[0x01].value == "PROJ1"


def test_add_private_replaces_existing_and_survives_default_remove(tmp_path: Path,
                                                                   keyed: KeyedSource) -> None:
    profile = _profile(tmp_path, ADD_PROFILE)
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.add_new(0x000B0010, "LO", "My company 001")
    ds.add_new(0x000B1001, "SH", "OLDPROJ")
    ds.add_new(0x000B1002, "LO", "DOE^JOHN")
    Engine(profile, keyed).deidentify(ds)
    assert _private_tags(ds) == {0x000B0010, 0x000B1001}
    assert ds[0x000B1001].value == "PROJ1"


# ------------------------------------------------------------- kept values without a VR


ACME = "ACME HOSPITAL PHI 1.0"
ROE_IMPLICIT = "ROE^RICHARD_99887766/20180220_CT_ABDOMEN/IM0002.dcm"


def test_kept_private_text_read_without_its_vr_is_cleaned(tmp_path: Path,
                                                          keyed: KeyedSource) -> None:
    """The sample's Implicit VR file keeps ACME's block by profile: its values have no
    VR (pydicom's dictionary does not know the creator), and the text in them held the
    patient's name, MRN and birth date as written (found by the review page)."""
    from conftest import SAMPLE_DATA

    source = SAMPLE_DATA / ROE_IMPLICIT
    original = dcmread_quiet(source)
    assert original.is_implicit_VR
    block = original.private_block(0x0029, ACME)
    assert b"ROE^RICHARD" in block[0x01].value and b"99887766" in block[0x02].value
    profile = _profile(tmp_path, f"name: t\nversion: '1'\nextends: research\nprivate:\n"
                                 f"  keep_creators: ['{ACME}']\n")
    ds = dcmread_quiet(source)
    Engine(profile, keyed).deidentify(ds)
    written, _ = write_temporary(ds, tmp_path / "out", "t")
    out = dcmread_quiet(written)
    block = out.private_block(0x0029, ACME)
    raw = Path(written).read_bytes()
    for value in (b"ROE", b"RICHARD", b"99887766", b"19500606"):
        assert value not in raw
    assert b"MRN" in bytes(block[0x02].value)  # cleaned, not emptied


def _with_private(value: bytes, vr: str = "UN", implicit: bool = True) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2" if implicit else ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CT, "1.2.826.0.1.3680043.10.1234.77"
    ds.PatientName, ds.PatientID = "ROE^RICHARD", "99887766"
    ds.private_block(0x0029, ACME, create=True).add_new(0x02, vr, value)
    ds.set_original_encoding(implicit, True, None)
    return ds


@pytest.mark.parametrize(("vr", "implicit"), [("UN", True), ("OB", False), ("UN", False)])
@pytest.mark.parametrize(("value", "kept"), [
    (b"\x01\x00\x02\x00ROE^RICHARD\x00\x07\x00", False),  # the name inside binary data
    (b"\x01\x00\x02\x0099887766\x00\x07\x00", False),  # ... or the MRN's digits
    (b"\x01\x00\x02\x00\x03\x00\x04\x00", True),  # plain binary: kept byte for byte
])
def test_kept_private_binary_goes_only_when_it_holds_an_identifier(
        tmp_path: Path, keyed: KeyedSource, value: bytes, kept: bool, vr: str,
        implicit: bool) -> None:
    """Whether the VR was read (OB, UN) or not (implicit VR): a binary value cannot be
    cleaned, so one holding the file's name or ID goes."""
    profile = _profile(tmp_path, f"name: t\nversion: '1'\nextends: research\nprivate:\n"
                                 f"  keep_creators: ['{ACME}']\n")
    ds = _with_private(value, vr, implicit)
    Engine(profile, keyed).deidentify(ds)
    assert (0x00291002 in ds) == kept
    if kept:
        assert bytes(ds[0x00291002].value) == value
