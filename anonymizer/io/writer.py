"""Atomic output: write to a temporary name in the target folder, flush, fsync.

The caller renames the temporary file to its final name (``os.link`` + unlink, so
an existing file is never overwritten); an interrupted run leaves only temporary
files, which start with :data:`TEMP_PREFIX` and are cleaned on the next run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydicom.dataset import Dataset

TEMP_PREFIX = ".anonymizer-tmp-"


class _HashingFile:
    """A write-only file wrapper that hashes what passes through it."""

    def __init__(self, handle):
        self._handle = handle
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self._handle.write(data)

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        # The hash is only right for a sequential write: refuse to move backwards.
        if (offset, whence) not in ((0, 1), (self._handle.tell(), 0)):
            raise OSError("non-sequential write: cannot hash the output on the fly")
        return self._handle.tell()

    def read(self, size: int = -1) -> bytes:
        raise OSError("write-only")

    def flush(self) -> None:
        self._handle.flush()


def write_temporary(ds: Dataset, directory: Path, token: str) -> tuple[Path, str]:
    """Write ``ds`` as a Part 10 file to a temporary name in ``directory``.

    Returns
    -------
    (Path, str)
        The temporary path and the sha256 of the bytes written.

    On any error the temporary file is removed before the exception propagates.
    """
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f"{TEMP_PREFIX}{token}"
    try:
        with open(temporary, "wb") as handle:
            hashing = _HashingFile(handle)
            ds.save_as(hashing, enforce_file_format=True)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary, hashing.digest.hexdigest()
