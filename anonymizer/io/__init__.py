"""Reading DICOM files by content, and writing de-identified ones atomically."""

from anonymizer.io.reader import (
    InputBytes,
    NotDicomError,
    ReadResult,
    TruncatedError,
    file_sha256,
    read_dataset,
    read_input,
    stat_identity,
)
from anonymizer.io.writer import write_temporary

__all__ = ["InputBytes", "NotDicomError", "ReadResult", "TruncatedError", "file_sha256",
           "read_dataset", "read_input", "stat_identity", "write_temporary"]
