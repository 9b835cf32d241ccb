"""Recognise and parse DICOM files by content (preamble + ``DICM``, or a raw dataset)."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_RAW_DATASET_STARTS = (b"\x08\x00", b"\x02\x00", b"\x00\x08", b"\x00\x02")


class NotDicomError(Exception):
    """The file is not DICOM (or is a DICOMDIR): skipped, with this reason."""


@dataclass
class ReadResult:
    """A parsed dataset and the sha256 of the bytes it came from."""

    dataset: Dataset
    sha256: str
    size: int


def _looks_like_raw_dataset(head: bytes) -> bool:
    """A dataset without preamble starts with a group 0002 or 0008 tag and a sane VR/length."""
    if len(head) < 8 or head[:2] not in _RAW_DATASET_STARTS:
        return False
    vr = head[4:6]
    return vr.isalpha() and vr.isupper() or int.from_bytes(head[4:8], "little") < 0x10000


def read_dataset(path: str | os.PathLike[str]) -> ReadResult:
    """Read one file completely and parse it.

    Raises
    ------
    NotDicomError
        For an empty file, a file that is neither Part 10 nor a raw dataset, or a DICOMDIR.
    Exception
        Any parse error from pydicom (the caller records the file as failed).
    """
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:
        raise NotDicomError("empty file")
    is_part10 = data[128:132] == b"DICM"
    if not is_part10 and not _looks_like_raw_dataset(data[:8]):
        raise NotDicomError("not DICOM (no DICM marker and not a raw dataset)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lenient parse; real damage raises below
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=not is_part10)
        except InvalidDicomError as exc:
            raise NotDicomError(f"not DICOM ({exc})") from None
    if not is_part10 and len(ds) == 0:
        raise NotDicomError("not DICOM (no elements)")
    sop_class = ds.get("SOPClassUID") or getattr(ds, "file_meta", Dataset()).get(
        "MediaStorageSOPClassUID")
    if sop_class == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise NotDicomError("DICOMDIR: an index of paths that can hold PHI; not de-identified")
    return ReadResult(ds, hashlib.sha256(data).hexdigest(), len(data))
