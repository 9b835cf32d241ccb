"""Reading values without decoding them into the dataset gives pydicom's values."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from anonymizer import elements
from anonymizer.elements import (
    element_key,
    remove,
    set_encoded,
    stored,
    strings,
    text_value,
    text_values,
)
from anonymizer.io import read_dataset
from anonymizer.io.scan import Unsupported, scan


def _datasets(ds: Dataset):
    yield ds
    for elem in stored(ds).values():
        if not isinstance(elem, RawDataElement) and elem.VR == "SQ":
            for item in elem.value:
                yield from _datasets(item)


def test_text_values_are_pydicoms_values_and_leave_elements_raw(
        readable_testdata: list[Path]) -> None:
    compared = 0
    for path in readable_testdata:
        ds = read_dataset(path).dataset
        for item in _datasets(ds):
            reference = copy.deepcopy(item)
            for tag, elem in list(stored(item).items()):
                if not isinstance(elem, RawDataElement) or elem.VR in ("SQ", "OB", "OW", "UN") \
                        or elem.VR is None or elem.value is None:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    expected = strings(reference[tag].value)
                    assert text_values(item, tag) == expected, (path.name, hex(tag))
                assert stored(item)[tag] is elem  # nothing decoded into the dataset
                compared += 1
    assert compared > 10_000


def test_text_value_reads_without_storing(readable_testdata: list[Path]) -> None:
    ds = read_dataset(next(p for p in readable_testdata if p.name == "CT_small.dcm")).dataset
    raw = stored(ds)[0x00080016]
    assert text_value(ds, "SOPClassUID") == "1.2.840.10008.5.1.4.1.1.2"
    assert stored(ds)[0x00080016] is raw
    assert text_value(ds, "PatientComments") == ""


def test_the_reader_files_every_element_under_its_tags_one_key(
        readable_testdata: list[Path]) -> None:
    keys = 0
    for path in readable_testdata:
        try:
            scanned = scan(path.read_bytes())
        except Unsupported:  # not the plain case: pydicom reads it, under its own keys
            continue
        for item in _datasets(scanned.dataset):
            for key in stored(item):
                assert key is element_key(int(key)), (path.name, key)
                keys += 1
        # the splice map is filed under the same objects: checked and read by identity
        assert all(key is element_key(int(key)) for key in scanned.spans), path.name
    assert keys > 5_000
    assert element_key(0x00100010) is element_key(0x00100010) == 0x00100010
    tag = BaseTag(0x00100020)
    assert element_key(tag) is tag  # a key object is its own key


@pytest.fixture
def tag_comparisons(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often pydicom's ``BaseTag.__eq__`` (Python code) runs from here on."""
    calls = [0]
    compare = BaseTag.__eq__

    def counted(self: BaseTag, other: object) -> bool:
        calls[0] += 1
        return compare(self, other)

    monkeypatch.setattr(BaseTag, "__eq__", counted)
    return calls


def test_store_lookups_by_tag_compare_no_tag_objects(
        readable_testdata: list[Path], tag_comparisons: list[int]) -> None:
    ds = read_dataset(next(p for p in readable_testdata if p.name == "CT_small.dcm")).dataset
    tag_comparisons[0] = 0
    assert text_values(ds, 0x00100010) == ["CompressedSamples^CT1"]
    set_encoded(ds, 0x00100010, "PN", b"ANON")
    set_encoded(ds, 0x00100020, "LO", b"ID")
    remove(ds, 0x00080090)
    assert tag_comparisons[0] == 0
    assert text_values(ds, 0x00100010) == ["ANON"] and 0x00080090 not in stored(ds)


def test_tags_beyond_the_shared_keys_still_get_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elements, "_KEYS", dict.fromkeys(range(1 << 16)))
    key = element_key(0x00091001)
    assert isinstance(key, BaseTag) and key == 0x00091001
    assert 0x00091001 not in elements._KEYS
