"""Atomic output: write to a temporary name in the target folder, flush, fsync.

The caller renames the temporary file to its final name (``os.link`` + unlink, so
an existing file is never overwritten); an interrupted run leaves only temporary
files, which start with :data:`TEMP_PREFIX` and are cleaned on the next run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from anonymizer import __version__
from anonymizer.elements import Mutations, held_in_file, set_encoded, stored, text_value
from anonymizer.io.splice import (
    EncodedConstants,
    Source,
    SpliceMap,
    splice_supported,
    write_spliced,
)
from anonymizer.memo import BoundedMemo
from anonymizer.tags import PIXEL_DATA

TEMP_PREFIX = ".anonymizer-tmp-"
#: This tool's Implementation Class UID (a fixed UUID-derived UID, PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = UID("2.25.119318287340528513945137926917226375571")
IMPLEMENTATION_VERSION_NAME = f"ANONYMIZER_{__version__}"[:16]


_IOV_MAX = 1024  # buffers per writev call (Linux UIO_MAXIOV)


class _HashingFile:
    """A write-only file wrapper that hashes what passes through it.

    With ``gather``, writes are kept (as given: views of the input need no copy), then
    hashed and written with one ``writev`` on :meth:`flush` instead of one system call
    per element run. For outputs whose input is held in memory anyway.
    """

    def __init__(self, handle, gather: bool = False):
        self._handle = handle
        self.digest = hashlib.sha256()
        self._parts: list[bytes | memoryview] | None = [] if gather else None
        self._pending = 0

    def write(self, data: bytes | memoryview) -> int:
        if self._parts is not None:
            self._parts.append(data)
            self._pending += len(data)
            return len(data)
        self.digest.update(data)
        return self._handle.write(data)

    def tell(self) -> int:
        return self._handle.tell() + self._pending

    def seek(self, offset: int, whence: int = 0) -> int:
        # The hash is only right for a sequential write: refuse to move backwards.
        if (offset, whence) not in ((0, 1), (self.tell(), 0)):
            raise OSError("non-sequential write: cannot hash the output on the fly")
        return self.tell()

    def read(self, size: int = -1) -> bytes:
        raise OSError("write-only")

    def flush(self) -> None:
        parts = self._parts
        while parts:
            batch = parts[:_IOV_MAX]
            del parts[:_IOV_MAX]
            for part in batch:
                self.digest.update(part)
            _write_all(self._handle.fileno(), batch)
        self._pending = 0
        self._handle.flush()


def _write_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """Write ``parts`` in one system call (a short write goes on where it stopped)."""
    written = os.writev(fd, parts)
    if written < sum(len(part) for part in parts):
        rest = memoryview(b"".join(parts))[written:]
        while rest:
            rest = rest[os.write(fd, rest):]


def prepare_file_meta(ds: Dataset) -> bool:
    """Give ``ds`` a new file meta; return whether the output can be a Part 10 file
    (it needs SOP Class and SOP Instance UIDs).

    The transfer syntax follows how the dataset was encoded in the input.
    """
    implicit, little = ds.original_encoding
    if getattr(ds, "preamble", None) is not None:
        ds.preamble = b"\x00" * 128  # free-form bytes of the sender's (may hold anything)
    original = getattr(ds, "file_meta", None) or FileMetaDataset()
    syntax = text_value(original, "TransferSyntaxUID")
    if not syntax:
        if implicit is None:
            implicit, little = True, True
        syntax = ImplicitVRLittleEndian if implicit else \
            ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    sop_class, sop_instance = text_value(ds, "SOPClassUID"), text_value(ds, "SOPInstanceUID")
    # Rebuilt from scratch: nothing of the input's meta but its transfer syntax survives,
    # and the meta names the software that wrote the file: this tool, not the sender's.
    meta = ds.file_meta = FileMetaDataset()
    for tag, vr, text in ((0x00020002, "UI", sop_class), (0x00020003, "UI", sop_instance),
                          (0x00020010, "UI", syntax),
                          (0x00020012, "UI", IMPLEMENTATION_CLASS_UID),
                          (0x00020013, "SH", IMPLEMENTATION_VERSION_NAME)):
        if text:
            set_encoded(meta, tag, vr, text.encode("latin-1", "replace"))
    first = next(iter(ds.keys()), None)
    body_implicit = first is not None and getattr(
        stored(ds)[first], "is_implicit_VR", False)
    if (implicit or body_implicit) and not UID(syntax).is_implicit_VR:
        # Read as implicit VR but labelled explicit: decode every element so each has a VR.
        for _ in ds.iterall():
            pass
    return bool(sop_class) and bool(sop_instance)


def write_temporary(ds: Dataset, directory: Path, token: str,
                    splice: SpliceMap | None = None,
                    changes: Mutations | None = None,
                    constants: EncodedConstants | None = None,
                    durable: bool = True, source: Source | None = None) -> tuple[Path, str]:
    """Write ``ds`` as a Part 10 file to a temporary name in ``directory``.

    With ``splice`` (where the input's elements lie), elements that ``changes`` (the
    record of the de-identification) says nothing changed in are copied from the
    input's bytes (:mod:`anonymizer.io.splice`) instead of being re-encoded; without
    a record nothing is copied. ``source`` is the input ``ds`` was read from (``splice``'s
    by default): a large input still on disk, from which untouched bytes are copied or
    values left unread (over 1 MiB) are read while writing, must then still be the file
    that was parsed (:meth:`~anonymizer.io.splice.Source.check_unchanged`), or nothing is
    written. With ``durable``
    the file is fsynced; a pipeline that renames in another process passes False and
    calls :func:`sync_file` there, so workers never wait on the disk.

    Returns
    -------
    (Path, str)
        The temporary path and the sha256 of the bytes written.

    On any error the temporary file is removed before the exception propagates.
    """
    if source is None and splice is not None:
        source = splice.source
    temporary = directory / f"{TEMP_PREFIX}{token}"
    handle = _create(temporary)
    try:
        with handle:  # gathered writes bypass its buffer
            part10 = prepare_file_meta(ds)
            if part10 and splice is not None and splice_supported(ds):
                # a value held in a file (only ever cleaned Pixel Data of a huge image)
                # must not be gathered into memory
                pixels = stored(ds).get(PIXEL_DATA)  # type: ignore[call-overload]
                gather = splice.source.data is not None and not (
                    pixels is not None and held_in_file(pixels))
                hashing = _HashingFile(handle, gather=gather)
                write_spliced(ds, splice, changes, hashing, constants)
            else:
                # Without SOP Class/Instance UIDs no Part 10 header can be made: the
                # dataset is written as it came (a raw dataset), readable with force=True.
                hashing = _HashingFile(handle)
                ds.save_as(hashing, enforce_file_format=part10)
            hashing.flush()
            if source is not None:  # what was read from a file on disk is what was parsed
                source.check_unchanged()
            if durable:
                os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary, hashing.digest.hexdigest()


#: folders this process made or found: an output's folder is made once, not checked with
#: two system calls (``mkdir``, then ``stat`` on "exists") for each of the thousands of
#: files a run writes into it: a few microseconds on a local disk, two round trips to the
#: server on a network file system
_known_folders: BoundedMemo[Path, None] = BoundedMemo(4096)


def _create(temporary: Path) -> BinaryIO:
    """``temporary`` opened for writing, its folder made first (again, if it went away)."""
    folder = temporary.parent
    if folder not in _known_folders:
        folder.mkdir(parents=True, exist_ok=True)
        _known_folders.remember(folder, None)
    try:
        return open(temporary, "wb")
    except FileNotFoundError:  # removed since this process saw it
        _known_folders.pop(folder, None)
        folder.mkdir(parents=True, exist_ok=True)
        return open(temporary, "wb")


def sync_file(path: Path) -> None:
    """fsync a finished file (written by any process) before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
