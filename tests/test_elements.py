"""Reading values without decoding them into the dataset gives pydicom's values."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from anonymizer.elements import stored, strings, text_value, text_values
from anonymizer.io import read_dataset


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
