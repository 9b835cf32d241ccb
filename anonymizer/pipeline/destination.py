"""Where de-identified outputs go: one small interface, a folder implementation.

Workers write every output to a temporary file under the destination's ``staging_dir``
(:func:`anonymizer.pipeline.worker.process_batch`, never fsynced there); the committing
process then, for each finished batch, calls :meth:`Destination.prepare` once,
:meth:`Destination.place` (or :meth:`Destination.retire`) for each outcome in order, and
:meth:`Destination.sync` before the batch's audit records are flushed, so that the audit
log never names an output that a crash could still lose.

``anonymizer listen`` takes its DEST through :func:`parse_destination`: a folder
(:class:`FolderDestination`) or a network URL (``dicomweb+http(s)://``,
``dimse[+tls]://AET@host:port``: :class:`NetworkDestination`), as ``anonymizer run``'s OUT.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from anonymizer.errors import UsageError
from anonymizer.io import file_sha256
from anonymizer.io.writer import sync_file
from anonymizer.net import is_network_url, parse_endpoint
from anonymizer.pipeline.layout import with_suffix_token
from anonymizer.pipeline.worker import FileOutcome
from anonymizer.reasons import describe, safe_reason


class Destination(Protocol):
    """What a committer needs from a destination (folder, DICOMweb, DIMSE)."""

    #: where workers write their temporaries (for a folder: the folder itself, so that
    #: placing an output is a rename on one file system)
    staging_dir: Path
    #: an output placed cannot be taken back (it was sent): its audit record must reach
    #: the disk at once, so that a rerun never sends it again
    records_each: bool

    def prepare(self, outcomes: list[FileOutcome]) -> None:
        """Before a batch is placed (a folder fsyncs its new files together)."""

    def place(self, outcome: FileOutcome) -> str:
        """Deliver one written temporary; return the name the audit log records.

        Raises OSError (the outcome fails; a full or read-only disk stops the run).
        """

    def retire(self, outcome: FileOutcome) -> None:
        """An input an earlier run delivered now fails or is skipped: withdraw its output
        where the destination can."""

    def sync(self) -> None:
        """Make every :meth:`place` so far durable (before the audit records say so)."""

    def close(self) -> None:
        """Release what the destination holds."""


@dataclass(frozen=True)
class DestinationSpec:
    """A parsed DEST argument: a folder, or a network URL."""

    text: str
    folder: Path | None  # None: a network destination

    @property
    def is_folder(self) -> bool:
        return self.folder is not None


def parse_destination(text: str) -> DestinationSpec:
    """Recognise DEST: a network URL by its scheme, anything else a folder.

    Raises
    ------
    UsageError
        A network URL that does not parse, or an unknown scheme (one line).
    """
    if is_network_url(text):
        parse_endpoint(text)  # a malformed URL is one line now, not at the first send
        return DestinationSpec(text, None)
    if "://" in text:
        raise UsageError(f"DEST: unknown URL scheme {text.split('://')[0]!r} (a folder)")
    return DestinationSpec(text, Path(text))


def _sync_errors(paths: list[str]) -> list[OSError | None]:
    """fsync each file; the error each raised (None: it is on disk)."""
    errors: list[OSError | None] = []
    for path in paths:
        try:
            sync_file(Path(path))
        except OSError as exc:
            errors.append(exc)
        else:
            errors.append(None)
    return errors


class FolderDestination:
    """Outputs renamed into a folder: never overwriting another input's output.

    Parameters
    ----------
    folder : Path
        The output folder (OUT).
    claimed : dict
        Output path -> input token of every file earlier runs wrote (from the audit log);
        kept up to date as outputs are placed.
    previous : dict
        Input token -> the latest record of earlier runs (``Done``), to replace or remove
        an input's earlier output.
    """

    records_each = False
    #: threads that fsync a batch's files together
    SYNC_THREADS = 8

    def __init__(self, folder: Path, claimed: dict[str, str], previous: dict):
        self.staging_dir = folder
        self._folder = str(folder)  # names joined as strings: no Path per output
        self.claimed = claimed
        self.previous = previous
        #: temporary path -> the error making it durable raised (None: it is on disk)
        self._durable: dict[str, OSError | None] = {}
        self._syncer = ThreadPoolExecutor(max_workers=self.SYNC_THREADS,
                                          thread_name_prefix="fsync")
        #: folders that got a new name since the last :meth:`sync`
        self._touched: set[str] = set()

    def prepare(self, outcomes: list[FileOutcome]) -> None:
        """fsync a batch's new files together before any of them is renamed.

        Concurrent fsyncs let the file system commit them in fewer journal
        transactions: about 2.5x less waiting than one after the other. An error is
        kept and raised when that file is placed. Each thread takes a share of the batch
        (one task per thread, not per file: less work for this process).
        """
        temporaries = [o.temporary for o in outcomes if o.status == "written" and o.temporary]
        shares = [temporaries[i::self.SYNC_THREADS] for i in range(self.SYNC_THREADS)]
        shares = [share for share in shares if share]
        for share, errors in zip(shares, self._syncer.map(_sync_errors, shares), strict=True):
            self._durable.update(zip(share, errors, strict=True))

    def place(self, outcome: FileOutcome) -> str:
        """Move the temporary to its final name; never overwrite another input's output.

        A name held by another input gets the ``~token`` suffix. A name this input
        already had (an earlier run, a changed input) is replaced. An unrecorded file
        with identical bytes is the commit a killed run did not log: it is adopted.
        """
        assert outcome.target is not None and outcome.temporary is not None
        name = outcome.target
        holder = self.claimed.get(name)
        if holder is not None and holder != outcome.token:
            name = with_suffix_token(name, outcome.token[:12])
        temporary = outcome.temporary
        # complete and on disk before it gets its final name
        if temporary not in self._durable:
            sync_file(Path(temporary))
        elif (error := self._durable.pop(outcome.temporary)) is not None:
            raise error
        if not self._move(temporary, name, outcome):
            name = with_suffix_token(outcome.target, outcome.token[:12])
            if not self._move(temporary, name, outcome):
                raise FileExistsError(f"output name taken twice: {name}")
        done = self.previous.get(outcome.token)
        old = done.output if done is not None else None
        if old and old != name and self.claimed.get(old) == outcome.token:
            (self.staging_dir / old).unlink(missing_ok=True)
            del self.claimed[old]
        self.claimed[name] = outcome.token
        return name

    def _move(self, temporary: str, name: str, outcome: FileOutcome) -> bool:
        """Rename ``temporary`` to ``name`` unless another file holds it; False if one does."""
        final = os.path.join(self._folder, name)
        self._touched.add(os.path.dirname(final))
        if self.claimed.get(name) == outcome.token:
            os.replace(temporary, final)
            return True
        try:
            os.link(temporary, final)  # fails if the name exists: never overwrites
        except FileExistsError:
            if file_sha256(Path(final)) != outcome.output_sha256:
                return False
        os.unlink(temporary)
        return True

    def retire(self, outcome: FileOutcome) -> None:
        """OUT holds exactly what the latest records say: a failed input loses the output
        an earlier run wrote for it."""
        done = self.previous.get(outcome.token)
        if done is not None and done.output and self.claimed.get(done.output) == outcome.token:
            (self.staging_dir / done.output).unlink(missing_ok=True)
            del self.claimed[done.output]

    def sync(self) -> None:
        """fsync the folders outputs were renamed into: the names survive a power loss.

        Not needed for a process that is killed (the kernel keeps what was renamed), so
        ``run`` does not call it; the gateway does before it deletes spooled inputs.
        """
        folders, self._touched = self._touched, set()
        for folder in folders:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        self._syncer.shutdown()


class DeliveryFailed(Exception):
    """One output could not be delivered: that input fails, the run goes on, and the next
    run delivers it. The message is the one-line reason.

    ``transient``: the peer did not answer after retries (down, unreachable, 5xx), as
    opposed to refusing this instance; the gateway then keeps the input spooled and
    tries again later instead of failing it.
    """

    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.transient = transient


class DestinationRefused(Exception):
    """The destination refuses us (credentials, AE title, certificate): no output can get
    through, so the run stops."""


class NetworkDestination:
    """A network destination (DICOMweb STOW-RS, DIMSE C-STORE) behind the committer's
    interface: each output is sent as it is placed, and its temporary goes.

    Parameters
    ----------
    sender : anonymizer.net.destinations.Destination
        The opened and probed destination (``store(path)``, ``close()``).
    staging_dir : Path
        Where workers write the outputs on their way out (the run's working folder, the
        gateway's SPOOL/outgoing).
    """

    records_each = True

    def __init__(self, sender: Any, staging_dir: Path):
        self.sender = sender
        self.staging_dir = staging_dir

    def prepare(self, outcomes: list[FileOutcome]) -> None:
        """Nothing to make durable: an output is sent, not kept."""

    def place(self, outcome: FileOutcome) -> str:
        from anonymizer.net.errors import NetworkError, RefusedError, TransientError

        assert outcome.target is not None and outcome.temporary is not None
        temporary = Path(outcome.temporary)
        try:
            self.sender.store(temporary)
        except RefusedError as exc:
            raise DestinationRefused(describe(exc)) from None
        except NetworkError as exc:
            raise DeliveryFailed(safe_reason("send", exc),
                                 transient=isinstance(exc, TransientError)) from None
        finally:
            temporary.unlink(missing_ok=True)
        return outcome.target

    def retire(self, outcome: FileOutcome) -> None:
        """What an archive holds is not withdrawn from here."""

    def sync(self) -> None:
        """The archive answered: nothing of ours to sync."""

    def close(self) -> None:
        """The run closes the sender it opened."""
