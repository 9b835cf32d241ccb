"""The splice writer copies an input's bytes only where nothing changed: what the record of
the de-identification (elements.Mutations) says, never what an action reports, and only
from a map that accounts for every element (real engine, writer, files written by pydicom)."""

from __future__ import annotations

import ast
import dataclasses
import io
from pathlib import Path

import pydicom
import pytest
from conftest import KEY_A
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from anonymizer.actions import ElementContext, set_value
from anonymizer.elements import Mutations, remove, stored
from anonymizer.engine import Engine
from anonymizer.io import read_dataset, write_temporary
from anonymizer.io.scan import scan
from anonymizer.io.splice import Source, SpliceMap
from anonymizer.keyed import KeyedSource
from anonymizer.precedence import Level
from anonymizer.profiles import load_profile
from anonymizer.rules import Rule

ANATOMIC_REGION_SEQUENCE = 0x00082218  # not in PS3.15 Table E.1-1: kept, items cleaned
CODE_MEANING = 0x00080104
MEASURED_VALUE_SEQUENCE = 0x0040A300
NUMERIC_VALUE = 0x0040A30A
NAME = "SECRET^PATIENT"


def _written(tmp_path: Path, name: str, implicit: bool = False) -> Path:
    """A CT header written by pydicom: a kept sequence whose item holds a sequence, and
    the patient's name right after an element every profile keeps (Pixel Presentation)."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientName = NAME
    ds.PatientID = "ID-0042"
    ds.StudyInstanceUID = generate_uid()
    measured = Dataset()
    measured.NumericValue = "12"
    region = Dataset()
    region.CodeValue = "T-D3000"
    region.CodingSchemeDesignator = "SRT"
    region.CodeMeaning = "Chest"
    region.MeasuredValueSequence = Sequence([measured])
    ds.AnatomicRegionSequence = Sequence([region])
    ds.PixelPresentation = "MONOCHROME"  # (0008,9205): just before the name
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit \
        else ExplicitVRLittleEndian
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclasses.dataclass(frozen=True)
class _EditItemsReportKeep:
    """An action that edits inside its sequence's items and says it kept the sequence."""

    deep: bool = False
    code: str = "K"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        item = ds[tag].value[0]
        if self.deep:  # an item the engine has not walked yet
            set_value(item[MEASURED_VALUE_SEQUENCE].value[0], NUMERIC_VALUE, "DS", "99")
        else:
            set_value(item, CODE_MEANING, "LO", "EDITED")
        return "K"

    def describe(self) -> str:
        return "edit items, report keep"


def _engine(action: object) -> Engine:
    profile = load_profile("basic")
    rules = {**profile.tag_rules, ANATOMIC_REGION_SEQUENCE: Rule(action, "test", Level.PROFILE_TAG)}  # type: ignore[arg-type]
    return Engine(dataclasses.replace(profile, tag_rules=rules, _cache={}), KeyedSource(KEY_A))


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("deep", [False, True])
def test_an_item_edited_by_an_action_reporting_keep_is_never_copied_from_the_input(
        tmp_path: Path, deep: bool, implicit: bool) -> None:
    path = _written(tmp_path, "in.dcm", implicit)
    read = read_dataset(path)
    assert read.splice is not None and read.splice.spans  # the copying path
    try:
        result = _engine(_EditItemsReportKeep(deep)).deidentify(read.dataset)
        written, _ = write_temporary(read.dataset, tmp_path / "out", "t", read.splice,
                                     result.changes)
    finally:
        read.close()
    out = pydicom.dcmread(written)
    region = out.AnatomicRegionSequence[0]
    if deep:
        assert region.MeasuredValueSequence[0].NumericValue == 99
    else:
        assert region.CodeMeaning == "EDITED"
        assert b"Chest" not in written.read_bytes()
    assert result.changes is not None and not result.changes.untouched(ANATOMIC_REGION_SEQUENCE)
    assert out.Modality == "CT"  # untouched elements are still copied


def test_an_element_the_map_cannot_locate_is_never_copied_inside_its_neighbours_span(
        tmp_path: Path) -> None:
    """The name's element is made anew before the map is built (no file offset, as for
    an element a reader made up or fixed): the map cannot place it, and Pixel
    Presentation's span (up to the next element found) would hold the name's bytes."""
    data = _written(tmp_path, "in.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    ds[0x00100010] = DataElement(0x00100010, "PN", NAME)
    splice = SpliceMap.build(ds, Source(data=data))
    result = Engine(load_profile("basic"), KeyedSource(KEY_A)).deidentify(ds)
    written, _ = write_temporary(ds, tmp_path / "out", "t", splice, result.changes)
    assert NAME.encode() not in written.read_bytes()
    assert pydicom.dcmread(written).PixelPresentation == "MONOCHROME"
    assert splice is None  # nothing of this input is copied


def test_a_map_built_from_pydicoms_dataset_is_filed_under_its_store_keys(
        tmp_path: Path) -> None:
    """The files pydicom parses itself: the writer looks the map up by the keys it
    iterates, so the map holds those very objects (not equal ints, each lookup of which
    would run BaseTag.__eq__ in Python)."""
    data = _written(tmp_path, "in.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    splice = SpliceMap.build(ds, Source(data=data))
    assert splice is not None and splice.spans
    keys = {id(key) for key in stored(ds)}
    assert all(id(key) in keys for key in [*splice.spans, *splice.originals])

def test_a_map_with_a_gap_or_a_missing_element_copies_nothing(tmp_path: Path) -> None:
    data = _written(tmp_path, "in.dcm").read_bytes()
    scanned = scan(data)
    ds = scanned.dataset
    whole = SpliceMap(Source(data=data), scanned.implicit, dict(scanned.spans),
                      dict(stored(ds)))
    assert whole.exact() and whole.spans
    name = 0x00100010
    missing = {tag: span for tag, span in scanned.spans.items() if tag != name}
    assert not SpliceMap(Source(data=data), scanned.implicit, missing,
                         dict(stored(ds))).spans
    before = 0x00089205  # Pixel Presentation
    start, _ = scanned.spans[before]
    missing[before] = (start, scanned.spans[name][1])  # its span swallows the name
    originals = {tag: elem for tag, elem in stored(ds).items() if tag != name}
    assert not SpliceMap(Source(data=data), scanned.implicit, missing, originals).spans


def test_a_map_checks_its_spans_in_file_order_whatever_order_they_came_in(
        tmp_path: Path) -> None:
    data = _written(tmp_path, "in.dcm").read_bytes()
    scanned = scan(data)
    originals = dict(stored(scanned.dataset))
    backwards = dict(reversed(scanned.spans.items()))
    assert SpliceMap(Source(data=data), scanned.implicit, backwards, originals).spans \
        == scanned.spans
    name = 0x00100010
    start, end = scanned.spans[name]
    gap = {**backwards, name: (start + 2, end)}  # two bytes before the name in no span
    assert not SpliceMap(Source(data=data), scanned.implicit, gap, originals).spans
    in_order_with_gap = {**scanned.spans, name: (start + 2, end)}
    assert not SpliceMap(Source(data=data), scanned.implicit, in_order_with_gap,
                         originals).spans


def test_a_change_the_record_cannot_place_lets_nothing_be_copied(tmp_path: Path) -> None:
    read = read_dataset(_written(tmp_path, "in.dcm"))
    ds = read.dataset
    changes = Mutations(ds)
    detached = Dataset()
    detached.CodeMeaning = "elsewhere"
    with changes.recording():
        remove(ds, 0x00100020)
        set_value(ds.AnatomicRegionSequence[0], CODE_MEANING, "LO", "x")  # found by search
        assert changes.touched == {0x00100020, ANATOMIC_REGION_SEQUENCE}
        assert changes.untouched(0x00080060)
        set_value(ds.file_meta, 0x00020013, "SH", "X")  # the file meta is written anew
        assert not changes.everything
        set_value(detached, CODE_MEANING, "LO", "y")
    set_value(ds, 0x00080060, "CS", "MR")  # not recording: nothing is noted
    assert 0x00080060 not in changes.touched
    assert changes.everything and not changes.untouched(0x00080060)
    read.close()


#: The modules that change a dataset being de-identified: only through anonymizer.elements.
_CHANGING_MODULES = ("engine.py", "actions.py", "transforms.py", "pixels/stage.py",
                     "pixels/frames.py")
_DATASET_NAMES = frozenset({"ds", "item", "items", "measured", "dataset", "meta"})
_CHANGING_CALLS = frozenset({"add_new", "private_block", "remove_private_tags", "walk",
                             "__setitem__", "__delitem__", "add", "pop"})


def _unrecorded_changes(source: str) -> list[str]:
    """Statements that change a dataset behind the record's back: ``del ds[...]``,
    ``ds[...] = ...``, ``x.value = ...``, ``x._dict...`` writes, pydicom's own mutators."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            targets = [t for t in targets if isinstance(t, ast.Subscript | ast.Attribute)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in _CHANGING_CALLS \
                and isinstance(node.func.value, ast.Name) \
                and node.func.value.id in _DATASET_NAMES:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        for target in targets:
            base = target.value if isinstance(target, ast.Subscript | ast.Attribute) else None
            if isinstance(target, ast.Subscript) and isinstance(base, ast.Name) \
                    and base.id in _DATASET_NAMES \
                    or isinstance(target, ast.Attribute) and target.attr in ("value", "_dict") \
                    or "_dict" in ast.unparse(target):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_engine_changes_datasets_only_through_the_recorded_api() -> None:
    root = Path(__file__).resolve().parents[1] / "anonymizer"
    for name in _CHANGING_MODULES:
        assert _unrecorded_changes((root / name).read_text(encoding="utf-8")) == [], name
    # the check finds what it is there for
    assert len(_unrecorded_changes(
        "del ds[tag]\nds[tag] = elem\nitem[0x10].value = 'x'\nds._dict[tag] = raw\n"
        "ds.private_block(9, 'X', create=True).add_new(1, 'LO', 'v')\n")) == 5
