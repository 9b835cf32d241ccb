"""The gateway's spool: received instances on disk, in arrival order, until forwarded.

The spool folder is the queue. A received instance is complete and fsynced before it gets
its name (a hard link from the receiver's temporary file, then an fsync of the folder), so
a name in the spool is an instance the sender was told is stored. It keeps that name until
its outcome is in the audit log; then it is deleted (or moved to the quarantine); one that
could not be sent (a network destination that is down) is put back and waits. After a
crash or a restart the names still there are forwarded again: the audit log says which of
them were already forwarded (see :mod:`anonymizer.gateway.forward`).

Names are ``<time ns:20>-<counter:8>-<token:32>.dcm``: sorted by name is arrival order,
and the token (a keyed hash of the SOP Instance UID) keys the audit record; no PHI.

Memory stays bounded whatever the backlog: at most ``capacity`` names are held; when more
are waiting on disk the folder is scanned again (for the oldest ``capacity``) once those
are dispatched.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import os
import re
import shutil
import threading
import time
from pathlib import Path

from anonymizer.io.writer import TEMP_PREFIX, sync_file

#: Where the receiver writes an instance while it arrives (partial files only).
INCOMING = "incoming"
_READY = re.compile(r"^\d{20}-\d{8}-([0-9a-f]{32})\.dcm$")


def token_of(name: str) -> str:
    """The instance token in a spool file name."""
    match = _READY.match(name)
    if match is None:
        raise ValueError(f"not a spool file name: {name}")
    return match.group(1)


def sync_directory(folder: Path) -> None:
    """fsync a folder: the names created or removed in it survive a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A folder of received instances waiting to be forwarded (thread-safe).

    Parameters
    ----------
    folder : Path
        The spool folder (created if missing; held by one process, see
        :func:`anonymizer.pipeline.lock.exclusive_output`).
    capacity : int
        How many waiting names are held in memory at most.
    """

    def __init__(self, folder: Path, capacity: int = 4096):
        self.folder = folder
        self.incoming = folder / INCOMING
        self.capacity = capacity
        self._lock = threading.Lock()
        self._pending: dict[str, None] = {}  # oldest first (insertion order)
        self._overflow = False  # names on disk that are not in _pending
        self._taken: set[str] = set()  # dispatched, not yet released
        self._counter = itertools.count()
        #: set whenever an instance arrives (wakes the forwarder)
        self.arrived = threading.Event()
        #: instances on disk whose outcome is not recorded yet (the queue length)
        self.waiting = 0

    def open(self) -> int:
        """Create the folders, remove what a killed process left half-written, and
        load the waiting names; return how many are waiting."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        for folder in (self.folder, self.incoming):
            for entry in os.scandir(folder):
                if entry.is_file() and (folder == self.incoming
                                        or entry.name.startswith(TEMP_PREFIX)):
                    os.unlink(entry.path)
        with self._lock:
            self.waiting = sum(1 for _ in self._ready_names())
            self._rescan()
        return self.waiting

    def _ready_names(self):
        for entry in os.scandir(self.folder):
            if _READY.match(entry.name):
                yield entry.name

    def _rescan(self) -> None:
        """Refill the pending names with the oldest waiting ones (lock held)."""
        names = heapq.nsmallest(self.capacity + 1, (
            name for name in self._ready_names() if name not in self._taken))
        self._overflow = len(names) > self.capacity
        self._pending = dict.fromkeys(names[:self.capacity])

    def accept(self, received: Path, token: str) -> str:
        """Give a completely received instance its spool name, durably.

        ``received`` stays where it is (its writer removes it). When this returns, the
        instance is on disk under its name and the name is in the folder's entry on
        disk: it may be acknowledged. Called from the receiving threads.
        """
        sync_file(received)
        name = f"{time.time_ns():020d}-{next(self._counter) % 10**8:08d}-{token}.dcm"
        target = self.folder / name
        try:
            os.link(received, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self._copy_in(received, target)
        sync_directory(self.folder)
        with self._lock:
            self.waiting += 1
            if not self._overflow and len(self._pending) < self.capacity:
                self._pending[name] = None
            else:
                self._overflow = True
        self.arrived.set()
        return name

    def _copy_in(self, received: Path, target: Path) -> None:
        """For a receiver writing on another file system: copy, fsync, rename."""
        temporary = self.folder / f"{TEMP_PREFIX}{target.name}"
        try:
            shutil.copyfile(received, temporary)
            sync_file(temporary)
            os.rename(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def take(self, limit: int, busy: set[str]) -> list[str]:
        """Up to ``limit`` waiting names, oldest first, none whose token is in ``busy``
        or twice the same token (an instance sent again waits for its first copy)."""
        with self._lock:
            if not self._pending and self._overflow:
                self._rescan()
            chosen: list[str] = []
            tokens = set(busy)
            for name in self._pending:
                token = token_of(name)
                if token not in tokens:
                    chosen.append(name)
                    tokens.add(token)
                    if len(chosen) == limit:
                        break
            for name in chosen:
                del self._pending[name]
                self._taken.add(name)
            return chosen

    def release(self, name: str, quarantine: Path | None = None) -> None:
        """The outcome of ``name`` is recorded: delete it, or move it to ``quarantine``."""
        path = self.folder / name
        if quarantine is not None:
            shutil.move(path, quarantine / name)  # a rename on one file system
        else:
            path.unlink(missing_ok=True)
        with self._lock:
            self._taken.discard(name)
            self.waiting -= 1

    def put_back(self, names: list[str]) -> None:
        """Keep ``names`` waiting: they could not be forwarded now (the destination is
        down), and come first again, in arrival order, when forwarding resumes."""
        with self._lock:
            for name in names:
                self._taken.discard(name)
            self._pending = {**dict.fromkeys(sorted(names)), **self._pending}
            while len(self._pending) > self.capacity:  # the newest wait on disk
                self._pending.popitem()
                self._overflow = True

    def sweep_stale_incoming(self, older_than: float) -> int:
        """Remove partial files of associations that died (untouched for ``older_than``
        seconds: a live transfer writes every PDU); return how many."""
        removed, limit = 0, time.time() - older_than
        for entry in os.scandir(self.incoming):
            try:
                if entry.is_file() and entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
        return removed
