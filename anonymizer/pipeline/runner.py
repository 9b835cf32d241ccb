"""The batch run: discovery streamed into joblib batches, ordered commit, audit log.

Workers write each output to a temporary name; the main process commits results in
discovery order (joblib returns them in submission order), so output names, collision
suffixes and the audit log are the same whatever the number of jobs.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from joblib import parallel_config
from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import TerminatedWorkerError
from tqdm import tqdm

from anonymizer import __version__
from anonymizer.errors import AnonymizerError, UsageError
from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.keyed import KeyedSource, load_key
from anonymizer.net.options import NetOptions
from anonymizer.pipeline.audit import AuditLog
from anonymizer.pipeline.destination import (
    DeliveryFailed,
    Destination,
    DestinationRefused,
    FolderDestination,
    NetworkDestination,
)
from anonymizer.pipeline.discovery import discover
from anonymizer.pipeline.layout import DEFAULT_LAYOUT, check_layout
from anonymizer.pipeline.lock import exclusive_output
from anonymizer.pipeline.network import NetworkEnds
from anonymizer.pipeline.parallel import batches, ordered_results
from anonymizer.pipeline.resume import PreviousRuns, compact, sweep_temporaries
from anonymizer.pipeline.worker import (
    FATAL_WRITE_ERRNOS,
    FileOutcome,
    WorkerConfig,
    WorkItem,
    input_token,
    process_batch,
)
from anonymizer.pixels.stage import check_pixel_extras
from anonymizer.profiles import load_profile
from anonymizer.rules import CompiledProfile

AUDIT_NAME = "audit.jsonl"





@dataclass(frozen=True)
class RunConfig:
    """Options of one ``anonymizer run``."""

    input_dir: Path
    output_dir: Path
    profile: str
    key_file: str | None = None
    jobs: int = 0  # 0: all cores
    batch_size: int = 32
    layout: str | None = None  # None: the profile's layout, else the default
    audit_path: Path | None = None
    manifest_path: Path | None = None
    crosswalk_path: Path | None = None
    quarantine_dir: Path | None = None
    force: bool = False
    #: seconds to wait for another run holding OUT to finish (0: refuse at once)
    wait_lock: float = 0.0
    timeout: float = 600.0
    progress: bool = True
    backend: str = "local"  # or "dask"
    scheduler: str | None = None  # dask scheduler address, e.g. tcp://10.0.0.5:8786
    #: network source / destination URLs (anonymizer.net); then input_dir is unused, and
    #: with a destination output_dir is a working folder the outputs pass through
    source_url: str | None = None
    destination_url: str | None = None
    net: NetOptions | None = None


@dataclass
class RunSummary:
    """Totals of a run, for the CLI's exit code and summary line."""

    counts: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    audit_path: Path | None = None
    elapsed: float = 0.0
    stopped: str | None = None  # why the run stopped early (signal, disk full)
    left: int = 0  # inputs not reached when the run stopped (in-flight ones not counted)
    exit_code_override: int | None = None

    @property
    def exit_code(self) -> int:
        if self.exit_code_override is not None:
            return self.exit_code_override
        return 1 if self.counts["failed"] else 0


class RunStopped(Exception):
    """The run cannot go on (a signal, or the output cannot be written)."""

    def __init__(self, reason: str, exit_code: int):
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


EXIT_USAGE = 2
EXIT_OUTPUT_UNWRITABLE = 3
EXIT_SIGTERM = 143
EXIT_SIGINT = 130


_worker_key: list[str] = []


def _fresh_workers_if_key_changed(fingerprint: str) -> None:
    """Reusable worker processes keep the environment they started with: restart them
    when this process runs with another key (e.g. ANONYMIZER_KEY changed)."""
    if _worker_key and _worker_key[0] != fingerprint:
        get_reusable_executor().shutdown(kill_workers=True)
    _worker_key[:] = [fingerprint]


def inside(child: Path, parent: Path) -> bool:
    """Whether ``child`` is ``parent`` or lies under it (both resolved by the caller)."""
    try:
        child.relative_to(parent)
    except ValueError:
        return False
    return True


def check_paths(config: RunConfig) -> None:
    """Refuse OUT == IN, OUT inside IN, IN inside OUT, PHI files written inside OUT.

    Raises
    ------
    UsageError
        One line saying which.
    """
    target = config.output_dir.resolve()
    if config.source_url is not None:
        for what, path in (("--manifest", config.manifest_path),
                           ("--crosswalk", config.crosswalk_path),
                           ("--quarantine", config.quarantine_dir)):
            if path is not None and inside(path.resolve(), target):
                raise UsageError(f"{what} holds PHI and must be outside OUT")
        return
    source = config.input_dir.resolve()
    if not source.is_dir():
        raise UsageError(f"{config.input_dir}: input folder does not exist")
    if source == target:
        raise UsageError("OUT must differ from IN")
    if inside(target, source):
        raise UsageError("OUT must not be inside IN")
    if inside(source, target):
        raise UsageError("IN must not be inside OUT")
    if config.audit_path is not None and inside(config.audit_path.resolve(), source):
        raise UsageError("--audit must not be inside IN")
    for what, path in (("--manifest", config.manifest_path),
                       ("--crosswalk", config.crosswalk_path),
                       ("--quarantine", config.quarantine_dir)):
        if path is not None and inside(path.resolve(), target):
            raise UsageError(f"{what} holds PHI and must be outside OUT")
        if path is not None and inside(path.resolve(), source):
            raise UsageError(f"{what} must not be inside IN")


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`RunStopped` in the main thread."""
    def handler(signum, frame):
        name = signal.Signals(signum).name
        raise RunStopped(f"stopped by {name}",
                         EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run(config: RunConfig) -> RunSummary:
    """De-identify every DICOM file under ``config.input_dir`` into ``config.output_dir``.

    A run in an OUT that holds an earlier run's audit log resumes it: inputs already
    written (same input hash, output present) are not processed again, changed inputs
    are, and the log is compacted to one record per input at the end. A different
    profile, key or layout is refused unless ``force``.
    """
    check_paths(config)
    profile = load_profile(config.profile)
    check_pixel_extras(profile.settings.pixels)  # one line before any file, not per file
    keyed = load_key(config.key_file)
    try:  # the profile's layout was checked when it was compiled; this is the caller's
        layout = check_layout(config.layout or profile.layout or DEFAULT_LAYOUT)
    except ValueError as exc:
        raise UsageError(f"layout: {exc}") from None
    if config.backend == "dask" and (config.key_file is None or not config.scheduler):
        raise UsageError("--backend dask needs --scheduler ADDRESS and --key-file on storage "
                         "the workers can read (the key is never sent in task arguments)")
    created = not config.output_dir.exists()
    config.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_output(config.output_dir, config.wait_lock):
            return _run_holding_output(config, profile, keyed, layout)
    except AnonymizerError:
        if created:  # refused before anything was written: leave no empty OUT behind
            with contextlib.suppress(OSError):
                config.output_dir.rmdir()
        raise


def refuse_other_settings(previous: PreviousRuns, current: dict[str, str], output: Path,
                          force: bool) -> list[str]:
    """The settings (profile, key, layout) that differ from the earlier runs' in ``output``.

    Raises
    ------
    UsageError
        When some differ and ``force`` is not given.
    """
    changed = previous.mismatch(current)
    if changed and not force:
        raise UsageError(f"{output} holds a run with another "
                         f"{' and '.join(k.split('_')[0] for k in changed)}; use a new OUT, or "
                         "--force to reprocess everything")
    return changed


def make_worker_config(profile: str, key_file: str | None, input_dir: Path, output_dir: Path,
                       **options) -> WorkerConfig:
    """A :class:`WorkerConfig` with absolute paths (and a resolvable profile path):
    workers may run elsewhere (another working directory, a Dask worker)."""
    if Path(profile).is_file():
        profile = str(Path(profile).resolve())
    return WorkerConfig(
        profile=profile, key_file=str(Path(key_file).resolve()) if key_file else None,
        input_dir=str(input_dir.resolve()), output_dir=str(output_dir.resolve()), **options)


def _run_holding_output(config: RunConfig, profile: CompiledProfile, keyed: KeyedSource,
                        layout: str) -> RunSummary:
    """The run itself, once this process holds OUT (no other run reads or writes it)."""
    jobs = config.jobs or os.cpu_count() or 1
    audit_path = config.audit_path or config.output_dir / AUDIT_NAME
    previous = PreviousRuns.load(audit_path)
    current = {"profile_sha256": profile.fingerprint(), "key_fingerprint": keyed.fingerprint,
               "layout": layout}
    # a network OUT's record of what was sent is the audit log, named by the user
    changed = refuse_other_settings(
        previous, current, audit_path if config.destination_url else config.output_dir,
        config.force)
    network = NetworkEnds.open(config, keyed, layout, jobs)  # probed: refusals show now
    try:
        return _run(config, profile, keyed, layout, jobs, audit_path, previous, current,
                    changed, network)
    finally:
        network.close()
        previous.close()  # its scratch index beside the log


def _run(config: RunConfig, profile: CompiledProfile, keyed: KeyedSource, layout: str,
         jobs: int, audit_path: Path,
         previous: PreviousRuns, current: dict, changed: list[str],
         network: NetworkEnds) -> RunSummary:
    sweep_temporaries(config.output_dir)
    audit = AuditLog(audit_path)
    reserve = _reserve_space(audit_path)
    started = time.monotonic()
    header = {
        "type": "run_start", "tool": "anonymizer", "version": __version__,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile.name, "profile_version": profile.version,
        **current, "options": list(profile.options), "jobs": jobs,
        "resumed": bool(previous.latest), "forced": bool(config.force and changed),
        "input": keyed.hexdigest("input-root", config.source_url
                                 or str(config.input_dir.resolve()), 32),
        **network.describe(),
    }
    audit.write(header)
    worker_config = make_worker_config(
        config.profile, config.key_file, network.spool_dir or config.input_dir,
        config.output_dir,
        layout=layout, want_crosswalk=config.crosswalk_path is not None,
        timeout=config.timeout, key_fingerprint=keyed.fingerprint,
        profile_sha256=current["profile_sha256"],
        delivered=network.destination is not None)
    _fresh_workers_if_key_changed(keyed.fingerprint)
    destination: Destination = (
        FolderDestination(config.output_dir, previous.claims(), previous.latest)
        if network.destination is None
        else NetworkDestination(network.destination, config.output_dir))
    committer = Committer(destination, audit, previous, config.manifest_path,
                          config.crosswalk_path, config.quarantine_dir)
    summary = RunSummary(audit_path=audit_path)
    excluded = config.output_dir  # also when a symlink inside IN leads to it

    def work_items() -> Iterator[WorkItem]:
        if network.feed is not None:
            yield from network.feed.items(lambda token: network.done(token, previous, config))
            return
        for relative in discover(config.input_dir, exclude=excluded):
            token = input_token(keyed, relative)  # once per input; workers reuse it
            done = None if config.force else previous.latest.get(token)
            if done is not None and done.status == "written":
                yield WorkItem(relative, done.input_sha256, done.output, token)
            else:
                yield WorkItem(relative, token=token)

    bar = tqdm(unit="file", disable=not config.progress, dynamic_ncols=True, file=sys.stderr)

    def consume(outcomes: list[FileOutcome]) -> None:
        committer.make_durable(outcomes)
        for outcome in outcomes:
            status = committer.commit(outcome)
            summary.counts[status] += 1
            if status == "failed" and outcome.reason:
                summary.failures[outcome.reason] += 1
            if network.feed is not None:
                network.feed.release(outcome.relative)
            bar.update(1)
            if outcome.fatal_errno is not None:
                raise RunStopped(f"output not writable: {os.strerror(outcome.fatal_errno)}",
                                 EXIT_OUTPUT_UNWRITABLE)

    pending = batches(work_items(), config.batch_size)
    try:
        with _stop_on_signals(), _backend(config) as (backend_jobs, worker_died):
            _process(pending, worker_config, backend_jobs or jobs, consume,
                     lambda: (committer.flush(), _flush(audit)), worker_died)
        if network.feed is not None and network.feed.stopped:
            raise RunStopped(network.feed.stopped, network.feed.exit_code or 3)
    except RunStopped as stop:
        summary.stopped, summary.exit_code_override = stop.reason, stop.exit_code
        network.cancel()  # a network source fetches no more: only what it has is counted
        summary.left = sum(len(batch) for batch in pending)  # discovery only, no reading
    finally:
        bar.close()
        committer.close()
        network.close()  # before the sweep: the spool of a network source goes too
        sweep_temporaries(config.output_dir)
        summary.elapsed = time.monotonic() - started
        finish_audit(audit, audit_path, reserve, {
            "elapsed_s": round(summary.elapsed, 3), "counts": dict(summary.counts),
            "stopped": summary.stopped, "left": summary.left})
    return summary


def finish_audit(audit: AuditLog, audit_path: Path, reserve: Path,
                 footer: dict[str, object]) -> None:
    """Write the ``run_end`` record (``footer`` plus time, version and ``unlogged``) and
    compact the log; a full disk leaves the append-only log valid, with one line said."""
    reserve.unlink(missing_ok=True)  # room for the footer, also on a full disk
    # records that no longer fit are dropped, so that the footer still does
    unlogged = audit.flush_what_fits()
    record = {"type": "run_end", "version": __version__,
              "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              **footer, "unlogged": unlogged}
    try:
        audit.write(record)
        audit.close()
        compact(audit_path)
    except OSError as exc:  # e.g. the disk is full: the append-only log stays valid
        print(f"anonymizer: audit log not compacted: {exc.strerror}", file=sys.stderr)


@contextlib.contextmanager
def _backend(config: RunConfig
             ) -> Iterator[tuple[int | None, tuple[type[BaseException], ...]]]:
    """The joblib backend: local processes (loky), or a Dask distributed cluster.

    With Dask, the same batches run on the cluster's workers through joblib's Dask
    backend; IN, OUT and the key file must be on storage every worker can read.
    Yields the n_jobs to use (None: the --jobs value) and the exceptions that mean a
    worker process died.
    """
    if config.backend != "dask":
        yield None, (TerminatedWorkerError,)
        return
    try:
        from dask.distributed import Client, KilledWorker
    except ImportError:
        raise UsageError("--backend dask needs dask.distributed: "
                         "pip install 'anonymizer[dask]'") from None
    try:
        client = Client(config.scheduler, timeout=30)
    except OSError as exc:
        raise UsageError(f"cannot reach the Dask scheduler {config.scheduler}: {exc}") from None
    try:
        with parallel_config(backend="dask"):
            yield -1, (TerminatedWorkerError, KilledWorker)  # -1: every worker of the cluster
    finally:
        client.close()


def _process(pending: Iterator[list[WorkItem]], worker_config: WorkerConfig, jobs: int,
             consume: Callable[[list[FileOutcome]], None], flush: Callable[[], object],
             worker_died: tuple[type[BaseException], ...] = (TerminatedWorkerError,)) -> None:
    """Run batches through joblib, committing in order; survive dying worker processes.

    A file that kills its worker process is failed on its own
    (:func:`~anonymizer.pipeline.parallel.ordered_results`) and the run continues with a
    new pool. When ``consume`` stops the run, the results generator is closed at once:
    joblib aborts and the workers are killed now, rather than finishing their batches
    into OUT after the run has swept its temporaries and written its last record.
    """
    with contextlib.closing(ordered_results(process_batch, worker_config, pending, jobs,
                                            died_outcome, worker_died)) as results:
        for outcomes in results:
            consume(outcomes)
            flush()


#: Disk space held back next to the audit log for its last record: one block.
AUDIT_RESERVE = 4096


def _reserve_space(audit_path: Path) -> Path:
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


def _flush(audit: AuditLog) -> None:
    """Flush the audit log; a disk that cannot take it stops the run (exit 3)."""
    try:
        audit.flush()
    except OSError as exc:
        if exc.errno in FATAL_WRITE_ERRNOS:
            raise RunStopped(f"audit log not writable: {exc.strerror}",
                             EXIT_OUTPUT_UNWRITABLE) from None
        raise


def died_outcome(item: WorkItem) -> FileOutcome:
    """The outcome of a file whose worker process died on it."""
    assert item.token is not None  # the runner names every input
    return FileOutcome(item.relative, item.token, "failed",
                       reason="de-identify: the worker process died on this file")


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
        self.manifest = self._open_csv(manifest_path, ["input", "output", "status"])
        self.crosswalk = self._open_csv(crosswalk_path, [
            "kind", "attribute", "original", "replacement", "date_offset_days"])
        self.crosswalk_seen: set[tuple[str, str, str]] = set()
        self.quarantine = None
        if quarantine_dir is not None:
            quarantine_dir.mkdir(parents=True, exist_ok=True)
            self.quarantine = self._open_csv(quarantine_dir / "failed-inputs.csv",
                                             ["input", "reason"])

    @staticmethod
    def _open_csv(path: Path | None, header: list[str]):
        """Open a PHI table (owner-only) for appending: a resumed run adds to it."""
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        handle = os.fdopen(fd, "a", newline="", encoding="utf-8")
        writer = csv.writer(handle)
        if os.fstat(fd).st_size == 0:
            writer.writerow(header)
        return handle, writer

    def flush(self) -> None:
        """Push manifest/crosswalk/quarantine rows out with every audit flush, so every
        input the audit log records has its rows there too."""
        for table in (self.manifest, self.crosswalk, self.quarantine):
            if table is not None:
                table[0].flush()

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
        if outcome.status == "unchanged":
            return "unchanged"  # written by an earlier run; its record stands
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
                    outcome.reason = f"write: {exc.strerror or type(exc).__name__}"
                    if exc.errno in FATAL_WRITE_ERRNOS:
                        outcome.fatal_errno = exc.errno
        if outcome.status != "written":
            self.destination.retire(outcome)
        record = {
            "type": "file", "input": outcome.token, "status": outcome.status,
            "reason": outcome.reason,
            "output": outcome.target if outcome.status == "written" else None,
            "input_sha256": outcome.input_sha256,
            "output_sha256": outcome.output_sha256 if outcome.status == "written" else None,
            "counts": outcome.counts, "tags": outcome.acted, "warnings": outcome.warnings,
        }
        if outcome.pixels is not None:
            record["pixels"] = outcome.pixels
        self.audit.write(record)
        if self.quarantine is not None and outcome.status == "failed":
            self.quarantine[1].writerow([outcome.relative, outcome.reason or ""])
        if self.manifest is not None:
            self.manifest[1].writerow([outcome.relative, record["output"] or "", outcome.status])
        if self.crosswalk is not None and outcome.crosswalk and outcome.status == "written":
            self._write_crosswalk(outcome.crosswalk)
        if self.destination.records_each and outcome.status == "written":
            # sent: on disk at once (its table rows first, as flush promises), so that a
            # rerun never sends it again
            self.flush()
            _flush(self.audit)
        return outcome.status

    def _write_crosswalk(self, entry: dict[str, object]) -> None:
        assert self.crosswalk is not None
        writer = self.crosswalk[1]
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
            writer.writerow([kind, keyword, original, new, days])

    def close(self) -> None:
        self.destination.close()
        for handle in (self.manifest, self.crosswalk, self.quarantine):
            if handle is not None:
                handle[0].close()
