"""Committing finished outputs in order: place them, record them, keep the PHI tables.

The committing process (``run``'s main process, the ``listen`` gateway's loop) takes each
finished batch from the workers and, for each outcome in order, places the output through
a :class:`~anonymizer.pipeline.destination.Destination` (collision names, replacing an
earlier output), writes its audit record and its manifest, crosswalk and quarantine rows.
Also here: what makes a run stop (:class:`RunStopped` and its exit codes), the disk space
held back for the audit log's last record and that last record itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import sys
from pathlib import Path
from typing import IO, Any

from anonymizer import __version__
from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.pipeline.audit import AuditLog
from anonymizer.pipeline.destination import DeliveryFailed, Destination, DestinationRefused
from anonymizer.pipeline.resume import COMPACTED, PreviousRuns, compact
from anonymizer.pipeline.timings import clock
from anonymizer.pipeline.worker import FATAL_WRITE_ERRNOS, FileOutcome
from anonymizer.reasons import safe_reason

#: the audit log's name in OUT (or in a gateway's DEST or spool) unless ``--audit`` says
AUDIT_NAME = "audit.jsonl"

EXIT_USAGE = 2
EXIT_OUTPUT_UNWRITABLE = 3
EXIT_SIGTERM = 143
EXIT_SIGINT = 130

#: Disk space held back next to the audit log for its last record: one block.
AUDIT_RESERVE = 4096


class RunStopped(Exception):
    """The run cannot go on (a signal, or the output cannot be written)."""

    def __init__(self, reason: str, exit_code: int):
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


def reserve_space(audit_path: Path) -> Path:
    """Hold :data:`AUDIT_RESERVE` bytes on the audit log's file system until the end.

    A run stopped by a full disk frees them just before it writes the ``run_end``
    record, which would otherwise need a block the outputs took (real zeros: a sparse
    file would hold nothing). Best effort: if even this does not fit, the run stops at
    its first write as usual. Named as a temporary, so a killed run's reserve is swept.
    """
    reserve = audit_path.with_name(f"{TEMP_PREFIX}reserve-{audit_path.name}")
    try:
        with open(reserve, "wb") as handle:
            handle.write(b"\x00" * AUDIT_RESERVE)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        reserve.unlink(missing_ok=True)
    return reserve


def flush_audit(audit: AuditLog) -> None:
    """Flush the audit log; a disk that cannot take it stops the run (exit 3).

    Raises
    ------
    RunStopped
        The disk is full, read-only or refuses us.
    """
    try:
        audit.flush()
    except OSError as exc:
        if exc.errno in FATAL_WRITE_ERRNOS:
            raise RunStopped(f"audit log not writable: {exc.strerror}",
                             EXIT_OUTPUT_UNWRITABLE) from None
        raise


def finish_audit(audit: AuditLog, audit_path: Path, reserve: Path,
                 footer: dict[str, object], compacted_before: bool = False) -> None:
    """Write the ``run_end`` record (``footer`` plus time, version and ``unlogged``) and
    compact the log; a full disk leaves the append-only log valid, with one line said.

    ``compacted_before``: the log was compacted when the run began
    (:func:`~anonymizer.pipeline.resume.ends_compacted`). If the run then appended nothing
    but its header, it still is: the footer says so and the log is not rewritten.
    """
    reserve.unlink(missing_ok=True)  # room for the footer, also on a full disk
    # records that no longer fit are dropped, so that the footer still does
    unlogged = audit.flush_what_fits()
    record = {"type": "run_end", "version": __version__,
              "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              **footer, "unlogged": unlogged}
    still_compact = compacted_before and audit.entries == 0
    if still_compact:
        record[COMPACTED] = True
    try:
        audit.write(record)
        audit.close()
        if not still_compact:
            compact(audit_path)
    except OSError as exc:  # e.g. the disk is full: the append-only log stays valid
        print(f"anonymizer: audit log not compacted: {exc.strerror}", file=sys.stderr)


class PhiTable:
    """One PHI table (manifest, crosswalk, quarantine list): CSV, owner-only, appended to
    (a resumed run adds its rows), its header written once."""

    def __init__(self, path: Path, header: list[str]):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.handle: IO[str] = os.fdopen(fd, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        if os.fstat(fd).st_size == 0:
            self.writer.writerow(header)

    def row(self, values: list[Any]) -> None:
        self.writer.writerow(values)

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class PhiTables:
    """The manifest, crosswalk and quarantine list a run was asked for (each optional).

    Parameters
    ----------
    manifest_path, crosswalk_path : Path, optional
        The input -> output table, the original -> pseudonym table.
    quarantine_dir : Path, optional
        Its ``failed-inputs.csv`` lists the inputs that failed, with the reason.
    """

    def __init__(self, manifest_path: Path | None = None, crosswalk_path: Path | None = None,
                 quarantine_dir: Path | None = None):
        self.manifest = (PhiTable(manifest_path, ["input", "output", "status"])
                         if manifest_path is not None else None)
        self.crosswalk = (PhiTable(crosswalk_path, ["kind", "attribute", "original",
                                                    "replacement", "date_offset_days"])
                          if crosswalk_path is not None else None)
        self.crosswalk_seen: set[tuple[str, str, str]] = set()
        self.quarantine = None
        if quarantine_dir is not None:
            quarantine_dir.mkdir(parents=True, exist_ok=True)
            self.quarantine = PhiTable(quarantine_dir / "failed-inputs.csv",
                                       ["input", "reason"])

    def _tables(self) -> list[PhiTable]:
        return [t for t in (self.manifest, self.crosswalk, self.quarantine) if t is not None]

    def record(self, outcome: FileOutcome, output: str | None) -> None:
        """The rows of one committed outcome (``output``: the name it was placed under)."""
        if self.quarantine is not None and outcome.status == "failed":
            self.quarantine.row([outcome.relative, outcome.reason or ""])
        if self.manifest is not None:
            self.manifest.row([outcome.relative, output or "", outcome.status])
        if self.crosswalk is not None and outcome.crosswalk and outcome.status == "written":
            self._write_crosswalk(outcome.crosswalk)

    def _write_crosswalk(self, entry: dict[str, object]) -> None:
        assert self.crosswalk is not None
        offset = entry.get("date_offset_days")
        rows: list[tuple[str, str, str, str]] = [
            ("pseudonym", kw, orig, new)
            for kw, orig, new, _ in entry["pseudonyms"]]  # type: ignore[union-attr]
        study = entry.get("study_uid")
        if study:
            rows.append(("uid", "StudyInstanceUID", study[0], study[1]))  # type: ignore[index]
        for kind, keyword, original, new in rows:
            if (kind, keyword, original) in self.crosswalk_seen:
                continue
            self.crosswalk_seen.add((kind, keyword, original))
            days = offset if keyword == "PatientID" and offset is not None else ""
            self.crosswalk.row([kind, keyword, original, new, days])

    def flush(self) -> None:
        for table in self._tables():
            table.flush()

    def close(self) -> None:
        for table in self._tables():
            table.close()


class Committer:
    """Places finished temporaries through a destination in order; writes the audit log and
    the manifest, crosswalk and quarantine tables.

    Parameters
    ----------
    destination : Destination
        Where outputs go (:class:`FolderDestination` for a folder OUT).
    audit : AuditLog
        The log every outcome is recorded in.
    previous : PreviousRuns
        What earlier runs recorded (for the destination's replacing and retiring).
    manifest_path, crosswalk_path, quarantine_dir : Path, optional
        The PHI tables asked for (appended to, mode 0600).
    defer_transient : bool
        An output whose destination did not answer (:class:`DeliveryFailed` with
        ``transient``) is not recorded: its outcome becomes ``deferred``, for a caller that
        keeps the input and tries again (the gateway). Else it fails, as in ``run``.
    """

    def __init__(self, destination: Destination, audit: AuditLog, previous: PreviousRuns,
                 manifest_path: Path | None = None, crosswalk_path: Path | None = None,
                 quarantine_dir: Path | None = None, defer_transient: bool = False):
        self.destination = destination
        self.defer_transient = defer_transient
        self.audit = audit
        self.pseudonyms: dict[tuple[str, str], str] = {}
        self.tables = PhiTables(manifest_path, crosswalk_path, quarantine_dir)
        #: CPU seconds spent building and queueing audit records (the rest of a commit:
        #: placing outputs, the PHI tables)
        self.audit_seconds = 0.0

    def flush(self) -> None:
        """Push manifest/crosswalk/quarantine rows out with every audit flush, so every
        input the audit log records has its rows there too."""
        self.tables.flush()

    def make_durable(self, outcomes: list[FileOutcome]) -> None:
        """Before a batch is placed (a folder fsyncs its new files together)."""
        self.destination.prepare(outcomes)

    def _collision(self, outcome: FileOutcome) -> str | None:
        """A pseudonym shared by two different originals: the later file fails."""
        for keyword, digest, new in outcome.pseudonym_checks:
            holder = self.pseudonyms.setdefault((keyword, new), digest)
            if holder != digest:
                return (f"de-identify: pseudonym collision on {keyword} (two different values "
                        "map to one pseudonym; use a longer {hash:N})")
        return None

    def commit(self, outcome: FileOutcome) -> str:
        """Place (or retire) one outcome and record it; return its final status.

        Raises
        ------
        RunStopped
            The destination refuses us (exit 2), or the audit log of a sent output cannot
            be written.
        """
        if outcome.status == "unchanged":  # written by an earlier run; its record stands
            if outcome.input_stat is not None:  # re-hashed: the same bytes, a new stat
                self.audit.write({"type": "stat", "input": outcome.token,
                                  "input_stat": outcome.input_stat})
            return "unchanged"
        if outcome.status == "written":
            reason = self._collision(outcome)
            if reason is not None:
                Path(outcome.temporary or "").unlink(missing_ok=True)
                outcome.status, outcome.reason = "failed", reason
            else:
                try:
                    outcome.target = self.destination.place(outcome)
                except DestinationRefused as exc:  # our credentials: nothing gets through
                    raise RunStopped(str(exc), EXIT_USAGE) from None
                except DeliveryFailed as exc:  # this instance only; a rerun sends it again
                    outcome.status, outcome.reason = "failed", str(exc)
                    if exc.transient and self.defer_transient:
                        outcome.status = "deferred"  # not recorded: it is sent later
                        return outcome.status
                except OSError as exc:
                    Path(outcome.temporary or "").unlink(missing_ok=True)
                    outcome.status = "failed"
                    outcome.reason = safe_reason("write", exc)
                    if exc.errno in FATAL_WRITE_ERRNOS:
                        outcome.fatal_errno = exc.errno
        if outcome.status != "written":
            self.destination.retire(outcome)
        written = outcome.status == "written"
        recording = clock()
        record = {
            "type": "file", "input": outcome.token, "status": outcome.status,
            "reason": outcome.reason,
            "output": outcome.target if written else None,
            "input_sha256": outcome.input_sha256,
            "output_sha256": outcome.output_sha256 if written else None,
            "counts": outcome.counts, "tags": outcome.acted, "warnings": outcome.warnings,
        }
        if outcome.pixels is not None:
            record["pixels"] = outcome.pixels
        if written and outcome.input_stat is not None:
            record["input_stat"] = outcome.input_stat
        self.audit.write(record)
        self.audit_seconds += clock() - recording
        self.tables.record(outcome, outcome.target if written else None)
        if self.destination.records_each and written:
            # sent: on disk at once (its table rows first, as flush promises), so that a
            # rerun never sends it again
            self.flush()
            flush_audit(self.audit)
        return outcome.status

    def close(self) -> None:
        self.destination.close()
        self.tables.close()
