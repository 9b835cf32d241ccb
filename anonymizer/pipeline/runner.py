"""The batch run: discovery streamed into joblib batches, ordered commit, audit log.

Workers write each output to a temporary name; the main process commits results in
discovery order (joblib returns them in submission order), so output names, collision
suffixes and the audit log are the same whatever the number of jobs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from anonymizer.errors import AnonymizerError, UsageError
from anonymizer.net.options import NetOptions
from anonymizer.pipeline.audit import AuditLog
from anonymizer.pipeline.backends import backend, fresh_workers_if_key_changed, process_batches
from anonymizer.pipeline.commit import (
    AUDIT_NAME,
    EXIT_OUTPUT_UNWRITABLE,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    Committer,
    RunStopped,
    finish_audit,
    flush_audit,
    reserve_space,
)
from anonymizer.pipeline.destination import Destination, FolderDestination, NetworkDestination
from anonymizer.pipeline.discovery import discover
from anonymizer.pipeline.lock import exclusive_output
from anonymizer.pipeline.network import NetworkEnds
from anonymizer.pipeline.parallel import batches, forked_workers
from anonymizer.pipeline.progress import Progress
from anonymizer.pipeline.resume import PreviousRuns, sweep_temporaries
from anonymizer.pipeline.settings import (
    Settings,
    inside,
    load_settings,
    make_worker_config,
    refuse_other_settings,
    refuse_phi_inside,
    start_record,
)
from anonymizer.pipeline.timings import RunTimings, clock
from anonymizer.pipeline.worker import (
    FileOutcome,
    WorkItem,
    exit_with_parent,
    input_token,
    unchanged_by_stat,
)

#: what other modules and the README's tests take from here
__all__ = ["AUDIT_NAME", "EXIT_OUTPUT_UNWRITABLE", "EXIT_SIGINT", "EXIT_SIGTERM", "EXIT_USAGE",
           "RunConfig", "RunStopped", "RunSummary", "check_paths", "inside", "run"]


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
    #: read and hash every input a previous run wrote, rather than trusting an unchanged
    #: stat (the resume's quick check)
    rehash: bool = False
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
    """Totals of a run, for the CLI's exit code and summary line (and ``anonymizer.run``).

    Attributes
    ----------
    counts : Counter[str]
        Inputs by outcome: ``written``, ``failed``, ``skipped``, ``unchanged`` (done by an
        earlier run).
    failures : Counter[str]
        Failed inputs by reason (the audit log's words: no values, see README).
    audit_path : Path
        The audit log.
    elapsed : float
        Seconds the run took.
    stopped : str or None
        Why the run stopped early (a signal, OUT not writable), else None.
    left : int
        Inputs not reached when it stopped.
    exit_code : int
        The command's exit code (0, 1 some failed, 3, 130, 143...).
    """

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


def check_paths(config: RunConfig) -> None:
    """Refuse OUT == IN, OUT inside IN, IN inside OUT, PHI files written inside OUT.

    Raises
    ------
    UsageError
        One line saying which.
    """
    target = config.output_dir.resolve()
    tables = {"--manifest": config.manifest_path, "--crosswalk": config.crosswalk_path,
              "--quarantine": config.quarantine_dir}
    refuse_phi_inside(tables, target, "OUT")
    if config.source_url is not None:
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
    for what, path in tables.items():
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
    written (output present, and the same stat digest or, with ``rehash`` or when the stat
    changed, the same input hash) are not processed again, changed inputs are, and the
    log is compacted to one record per input at the end. A different profile, key or
    layout is refused unless ``force``.
    """
    check_paths(config)
    settings = load_settings(config.profile, config.key_file, config.layout)
    if config.backend == "dask" and (config.key_file is None or not config.scheduler):
        raise UsageError("--backend dask needs --scheduler ADDRESS and --key-file on storage "
                         "the workers can read (the key is never sent in task arguments)")
    created = not config.output_dir.exists()
    config.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_output(config.output_dir, config.wait_lock):
            return _run_holding_output(config, settings)
    except AnonymizerError:
        if created:  # refused before anything was written: leave no empty OUT behind
            with contextlib.suppress(OSError):
                config.output_dir.rmdir()
        raise


def _run_holding_output(config: RunConfig, settings: Settings) -> RunSummary:
    """The run itself, once this process holds OUT (no other run reads or writes it)."""
    jobs = config.jobs or os.cpu_count() or 1
    audit_path = config.audit_path or config.output_dir / AUDIT_NAME
    previous = PreviousRuns.load(audit_path)
    # a network OUT's record of what was sent is the audit log, named by the user
    changed = refuse_other_settings(
        previous, settings.fingerprints,
        audit_path if config.destination_url else config.output_dir, config.force)
    network = NetworkEnds.open(config, settings.keyed, settings.layout)  # probed now
    fresh_workers_if_key_changed(settings.keyed.fingerprint)
    try:
        # before the progress and fsync threads start: workers fork from a one-thread process
        with forked_workers(jobs if config.backend == "local" else 0, exit_with_parent):
            return _run(config, settings, jobs, audit_path, previous, changed, network)
    finally:
        network.close()
        previous.close()  # its scratch index beside the log


def _run(config: RunConfig, settings: Settings, jobs: int, audit_path: Path,
         previous: PreviousRuns, changed: list[str], network: NetworkEnds) -> RunSummary:
    sweep_temporaries(config.output_dir)
    audit = AuditLog(audit_path)
    reserve = reserve_space(audit_path)
    started = time.monotonic()
    keyed = settings.keyed
    audit.write(start_record(
        settings, jobs=jobs, resumed=bool(previous.latest),
        forced=bool(config.force and changed),
        root=config.source_url or str(config.input_dir.resolve()), **network.describe(),
        **({} if network.feed is not None else
           {"resume_check": "sha256" if config.rehash else "stat"})))
    worker_config = make_worker_config(
        config.profile, config.key_file, network.spool_dir or config.input_dir,
        config.output_dir,
        layout=settings.layout, want_crosswalk=config.crosswalk_path is not None,
        timeout=config.timeout, key_fingerprint=keyed.fingerprint,
        profile_sha256=settings.fingerprints["profile_sha256"],
        delivered=network.destination is not None, record_stat=network.feed is None)
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
                item = WorkItem(relative, done.input_sha256, done.output, token,
                                done_stat=done.input_stat)
                if not config.rehash and unchanged_by_stat(worker_config, keyed, item):
                    # its stat says so: not read, and no worker needed (an unchanged
                    # input's earlier record stands; nothing is placed or recorded)
                    summary.counts["unchanged"] += 1
                    progress.advance(1, 0)
                    continue
                yield item
            else:
                yield WorkItem(relative, token=token)

    progress = Progress(config.progress, None if network.feed is not None
                        else discover(config.input_dir, exclude=excluded))
    timings = RunTimings()

    def consume(outcomes: list[FileOutcome]) -> None:
        began = clock()
        timings.add_batch(outcomes)
        committer.make_durable(outcomes)
        placing = clock()
        timings.totals["sync"] += placing - began
        counts, failures = summary.counts, summary.failures
        failed = counts["failed"]
        try:
            for outcome in outcomes:
                status = committer.commit(outcome)
                counts[status] += 1
                if status == "failed" and outcome.reason:
                    failures[outcome.reason] += 1
                if network.feed is not None:
                    network.feed.release(outcome.relative)
                if outcome.fatal_errno is not None:
                    raise RunStopped(
                        f"output not writable: {os.strerror(outcome.fatal_errno)}",
                        EXIT_OUTPUT_UNWRITABLE)
        finally:
            committed = clock()
            progress.advance(len(outcomes), counts["failed"] - failed)
            timings.totals["progress"] += clock() - committed
            timings.totals["commit"] += committed - placing

    def flush() -> None:
        began = clock()
        committer.flush()
        flush_audit(audit)
        timings.totals["audit"] += clock() - began

    pending = batches(work_items(), config.batch_size)
    try:
        with _stop_on_signals(), backend(config.backend, config.scheduler) as (
                backend_jobs, worker_died):
            process_batches(pending, worker_config, backend_jobs or jobs, consume, flush,
                            worker_died, local=config.backend != "dask")
        if network.feed is not None and network.feed.stopped:
            raise RunStopped(network.feed.stopped, network.feed.exit_code or 3)
    except RunStopped as stop:
        summary.stopped, summary.exit_code_override = stop.reason, stop.exit_code
        network.cancel()  # a network source fetches no more: only what it has is counted
        summary.left = sum(len(batch) for batch in pending)  # discovery only, no reading
    finally:
        progress.close()
        committer.close()
        network.close()  # before the sweep: the spool of a network source goes too
        sweep_temporaries(config.output_dir)
        summary.elapsed = time.monotonic() - started
        # the audit records' share of the commit is the audit log's
        timings.totals["commit"] -= committer.audit_seconds
        timings.totals["audit"] += committer.audit_seconds
        # the run's index is done with: its memory is free before compaction builds its own
        previous.close()
        finish_audit(audit, audit_path, reserve, {
            "elapsed_s": round(summary.elapsed, 3), "counts": dict(summary.counts),
            "stopped": summary.stopped, "left": summary.left, "timings": timings.record()},
            compacted_before=previous.compacted)
    return summary
