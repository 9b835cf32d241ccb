"""Reading DICOM files by content, and writing de-identified ones atomically."""

from anonymizer.io.reader import NotDicomError, ReadResult, TruncatedError, read_dataset
from anonymizer.io.writer import write_temporary

__all__ = ["NotDicomError", "ReadResult", "TruncatedError", "read_dataset", "write_temporary"]
