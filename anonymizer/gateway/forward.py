"""``anonymizer listen``: receive, spool, de-identify in worker processes, forward.

The receiver (:mod:`anonymizer.gateway.receiver`) acknowledges an instance once it is in
the spool (:mod:`anonymizer.gateway.spool`). This module's loop, in the main thread, takes
the oldest waiting instances in small batches, runs them through the same worker code as
``anonymizer run`` (:func:`anonymizer.pipeline.worker.process_batch`, one engine per
worker process) in a pool of processes, and commits each finished batch as ``run`` does
(:class:`anonymizer.pipeline.commit.Committer` through a
:class:`~anonymizer.pipeline.destination.Destination`): place the outputs, make them
durable, flush the audit records, and only then delete the spooled inputs.

Exactly once: the audit log, keyed by a keyed hash of the SOP Instance UID, records what
was forwarded. After a crash anything still in the spool is processed again: an instance
whose record says it was forwarded from the same bytes is dropped unsent; one whose output
was placed but not yet recorded is adopted (identical bytes under its name). A failed
instance is never forwarded: it gets a ``failed`` record and is moved to ``--quarantine``
(or deleted).

A network DEST (DICOMweb STOW-RS, DIMSE C-STORE) is opened and probed before anything is
received. Each instance sent is recorded at once. A send the destination does not answer
(after the sender's own retries) does not fail the instance, whose spooled copy is the only
one: it is put back in the spool, sending pauses (1 s, doubling up to ``--retry-max``), and
then one instance is tried alone; once one gets through, forwarding resumes. A destination
that refuses our credentials stops the gateway (exit 2); what it did not take stays spooled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path

from anonymizer.errors import UsageError
from anonymizer.gateway.receiver import (
    NETWORK_TIMEOUT,
    Receiver,
    ReceiverConfig,
    require_pynetdicom,
)
from anonymizer.gateway.spool import Spool, sync_directory, token_of
from anonymizer.io import file_sha256
from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.net.options import NetOptions
from anonymizer.pipeline.audit import AuditLog
from anonymizer.pipeline.backends import died_outcome
from anonymizer.pipeline.commit import (
    AUDIT_NAME,
    EXIT_OUTPUT_UNWRITABLE,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    Committer,
    RunStopped,
    finish_audit,
    flush_audit,
    reserve_space,
)
from anonymizer.pipeline.destination import (
    Destination,
    DestinationSpec,
    FolderDestination,
    NetworkDestination,
    parse_destination,
)
from anonymizer.pipeline.layout import MIRROR
from anonymizer.pipeline.lock import exclusive_output
from anonymizer.pipeline.network import url_kind
from anonymizer.pipeline.parallel import WORKER_DIED, each_alone, stop_worker_pool, worker_pool
from anonymizer.pipeline.resume import Done, PreviousRuns, sweep_temporaries
from anonymizer.pipeline.settings import (
    Settings,
    inside,
    load_settings,
    make_worker_config,
    refuse_other_settings,
    refuse_phi_inside,
    start_record,
)
from anonymizer.pipeline.worker import FileOutcome, WorkItem, process_batch


@dataclass(frozen=True)
class ListenConfig:
    """Options of one ``anonymizer listen``."""

    destination: str
    profile: str
    receiver: ReceiverConfig
    key_file: str | None = None
    spool_dir: Path | None = None  # None: DEST's sibling DEST.spool
    jobs: int = 0  # 0: all cores
    batch_size: int = 8
    layout: str | None = None
    audit_path: Path | None = None
    crosswalk_path: Path | None = None
    quarantine_dir: Path | None = None
    force: bool = False
    wait_lock: float = 0.0
    timeout: float = 600.0
    metrics_path: Path | None = None
    status_interval: float = 60.0  # seconds between status lines on stderr (0: none)
    #: a network DEST's calling AE title and credentials
    net: NetOptions | None = None
    #: longest pause (seconds) between attempts to send to a network DEST that is down
    retry_max: float = 60.0


#: the first pause after a network DEST stopped answering (doubled up to retry_max)
RETRY_FIRST = 1.0
#: where workers write a network DEST's outputs on their way out (inside the spool)
OUTGOING = "outgoing"


@dataclass
class ListenSummary:
    """Totals of one gateway session, for the CLI's summary and exit code."""

    counts: Counter[str] = field(default_factory=Counter)
    received: int = 0
    waiting: int = 0  # left in the spool
    audit_path: Path | None = None
    elapsed: float = 0.0
    stopped: str | None = None
    exit_code: int = 0


def spool_folder(config: ListenConfig, destination: Path | None) -> Path:
    """``--spool``, else ``DEST.spool`` beside a folder DEST (a network DEST needs
    ``--spool``).

    Raises
    ------
    UsageError
        A network DEST without ``--spool``.
    """
    if config.spool_dir is not None:
        return config.spool_dir
    if destination is None:
        raise UsageError("a network DEST needs --spool DIR: where received instances wait "
                         "(PHI) until they are sent")
    return destination.parent / f"{destination.name}.spool"


def check_paths(config: ListenConfig, destination: Path | None, spool: Path) -> None:
    """Refuse a spool (PHI) inside a folder DEST or DEST inside the spool, PHI tables
    inside DEST, the quarantine inside the spool.

    Raises
    ------
    UsageError
        One line saying which.
    """
    queue = spool.resolve()
    if destination is not None:
        target = destination.resolve()
        if target == queue or inside(queue, target) or inside(target, queue):
            raise UsageError("the spool holds PHI: it must be outside DEST, and DEST outside "
                             "it")
        refuse_phi_inside({"--crosswalk": config.crosswalk_path,
                           "--quarantine": config.quarantine_dir}, target, "DEST")
    if config.quarantine_dir is not None and inside(config.quarantine_dir.resolve(), queue):
        raise UsageError("--quarantine must be outside the spool")


def listen(config: ListenConfig) -> ListenSummary:
    """Run the gateway until SIGTERM or SIGINT.

    Raises
    ------
    UsageError, ProfileError, SecretKeyError, MissingExtraError
        Before anything is received (one line).
    OutputInUseError
        Another process holds the spool or DEST.
    NetworkError
        A network DEST refuses us or cannot be reached (before anything is received).
    """
    spec = parse_destination(config.destination)
    destination = spec.folder
    spool_dir = spool_folder(config, destination)
    check_paths(config, destination, spool_dir)
    require_pynetdicom()
    settings = load_settings(config.profile, config.key_file, config.layout)
    if settings.layout == MIRROR:
        raise UsageError("--layout mirror keeps input paths, and received instances have "
                         "none: give a template")
    if destination is not None:
        destination.mkdir(parents=True, exist_ok=True)
    spool_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        held.enter_context(exclusive_output(spool_dir, config.wait_lock))
        sender = None
        if destination is not None:
            held.enter_context(exclusive_output(destination, config.wait_lock))
        else:  # no folder to hold: the spool's lock keeps a second gateway off its log
            from anonymizer.net.destinations import open_destination

            sender = open_destination(spec.text, config.net or NetOptions())
            held.callback(sender.close)
            sender.probe()  # refused or unreachable: one line now, nothing received
        gateway = _Gateway(config, settings, spec, spool_dir, sender)
        return gateway.serve()


class _Gateway:
    """One gateway session, holding the spool and DEST."""

    def __init__(self, config: ListenConfig, settings: Settings, spec: DestinationSpec,
                 spool_dir: Path, sender=None):
        self.config = config
        self.settings = settings
        self.keyed = settings.keyed
        self.jobs = config.jobs or os.cpu_count() or 1
        self.spec = spec
        #: the opened network destination (None: a folder DEST)
        self.sender = sender
        folder = spec.folder
        self.audit_path = config.audit_path or (folder or spool_dir) / AUDIT_NAME
        self.previous = PreviousRuns.load(self.audit_path)
        self.forced = bool(refuse_other_settings(self.previous, settings.fingerprints,
                                                 folder or self.audit_path, config.force))
        #: where workers write outputs: the folder DEST, or SPOOL/outgoing on their way out
        self.staging = folder if folder is not None else spool_dir / OUTGOING
        self.spool = Spool(spool_dir)
        self.worker_config = make_worker_config(
            config.profile, config.key_file, spool_dir, self.staging, layout=settings.layout,
            want_crosswalk=config.crosswalk_path is not None,
            timeout=config.timeout, key_fingerprint=self.keyed.fingerprint,
            profile_sha256=settings.fingerprints["profile_sha256"], delivered=sender is not None)
        self.counts: Counter[str] = Counter()
        self.in_flight: dict[Future, list[WorkItem]] = {}
        self.busy: set[str] = set()  # tokens in flight
        self.stop_signal: int | None = None
        self.started = time.monotonic()
        #: a network DEST stopped answering: sending pauses until retry_at, then one
        #: instance (the probe) is tried alone
        self.down = False
        self.retry_at = 0.0
        self.backoff = RETRY_FIRST
        self.probe: Future | None = None

    def _sweep_staging(self) -> None:
        """Remove what a killed or stopped session left on its way out."""
        if self.sender is None:
            sweep_temporaries(self.staging)
        else:  # nothing here is needed: the spool holds every input not yet recorded
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir()

    def _destination(self) -> Destination:
        if self.sender is None:
            assert self.spec.folder is not None
            return FolderDestination(self.spec.folder, self.previous.claims(),
                                     self.previous.latest)
        return NetworkDestination(self.sender, self.staging)

    # -- the session --------------------------------------------------------------------

    def serve(self) -> ListenSummary:
        summary = ListenSummary(audit_path=self.audit_path)
        self._sweep_staging()
        waiting = self.spool.open()
        audit = AuditLog(self.audit_path)
        reserve = reserve_space(self.audit_path)
        receiver_config = self.config.receiver
        audit.write(start_record(
            self.settings, mode="listen", jobs=self.jobs, resumed=bool(self.previous.latest),
            forced=self.forced,
            root=f"listen:{receiver_config.ae_title}:{receiver_config.port}",
            spooled_at_start=waiting,
            destination=url_kind(None if self.spec.is_folder else self.spec.text)))
        self.committer = Committer(
            self._destination(), audit, self.previous, crosswalk_path=self.config.crosswalk_path,
            quarantine_dir=self.config.quarantine_dir, defer_transient=True)
        self.audit = audit
        receiver = Receiver(receiver_config, self.spool, self.keyed)
        try:
            with self._signals():
                receiver.start()
                host, port = receiver.address
                print(f"anonymizer: listening as {receiver_config.ae_title} on {host}:{port}"
                      f"{' (TLS)' if receiver_config.tls_cert else ''}; forwarding to "
                      f"{self._dest_name()}; spool {self.spool.folder} "
                      f"({waiting} waiting)", file=sys.stderr, flush=True)
                self.receiver = receiver
                self._loop()
                # a stop was asked for: nothing new comes in, what is in flight finishes
                receiver.stop()
                self._drain()
            stop_signal = self.stop_signal or signal.SIGINT  # the loop ends on a signal
            summary.exit_code = EXIT_SIGTERM if stop_signal == signal.SIGTERM else EXIT_SIGINT
            summary.stopped = f"stopped by {signal.Signals(stop_signal).name}"
        except RunStopped as stop:
            summary.stopped, summary.exit_code = stop.reason, stop.exit_code
        finally:
            receiver.stop()
            self._abandon()
            self.committer.close()
            self._sweep_staging()
            summary.counts = self.counts
            summary.received = receiver.received
            summary.waiting = self.spool.waiting
            summary.elapsed = time.monotonic() - self.started
            self._write_metrics()
            finish_audit(audit, self.audit_path, reserve, {
                "elapsed_s": round(summary.elapsed, 3), "counts": dict(self.counts),
                "received": receiver.received, "stopped": summary.stopped,
                "left": self.spool.waiting})
            self.previous.close()  # its scratch index beside the log
        return summary

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT: stop receiving and finish what is in flight; a second one
        stops at once (the spool keeps everything not yet recorded)."""
        def handler(signum, frame):
            if self.stop_signal is not None:
                raise RunStopped(f"stopped by {signal.Signals(signum).name} (twice)",
                                 EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)
            self.stop_signal = signum
            self.spool.arrived.set()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _loop(self) -> None:
        next_status = time.monotonic() + (self.config.status_interval or math.inf)
        next_metrics = 0.0
        next_sweep = time.monotonic() + NETWORK_TIMEOUT
        while self.stop_signal is None:
            self.spool.arrived.clear()
            self._dispatch()
            if self.in_flight:
                done, _ = wait(self.in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    self._commit(future)
            else:
                self.spool.arrived.wait(1.0)
            now = time.monotonic()
            if now >= next_metrics:
                self._write_metrics()
                next_metrics = now + 1.0
            if now >= next_status:
                print(f"anonymizer: {self._status()}", file=sys.stderr, flush=True)
                next_status = now + self.config.status_interval
            if now >= next_sweep:
                self.spool.sweep_stale_incoming(3 * NETWORK_TIMEOUT)
                next_sweep = now + NETWORK_TIMEOUT

    # -- forwarding ---------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Fill the pool: up to two batches per worker, spread over the workers; while a
        network DEST is down, one instance alone once the pause is over."""
        while len(self.in_flight) < 2 * self.jobs:
            if self.down and (self.probe is not None or time.monotonic() < self.retry_at):
                return
            size = max(1, min(self.config.batch_size, math.ceil(self.spool.waiting / self.jobs)))
            names = self.spool.take(1 if self.down else size, self.busy)
            if not names:
                return
            items = [item for item in map(self._work_item, names) if item is not None]
            if items:
                future = worker_pool(self.jobs).submit(process_batch, self.worker_config, items)
                self.in_flight[future] = items
                if self.down:
                    self.probe = future

    def _work_item(self, name: str) -> WorkItem | None:
        """The work for one spooled instance; None for one forwarded already."""
        token = token_of(name)
        done = self.previous.latest.get(token)
        if done is not None and done.status == "written" and done.input_sha256 is not None:
            # Sent again (its sender never saw our answer), or still spooled when a
            # crash came after its record: the same bytes are not forwarded twice.
            try:
                same = file_sha256(self.spool.folder / name) == done.input_sha256
            except OSError:
                same = False
            if same:
                self.spool.release(name)
                self.counts["duplicate"] += 1
                return None
        self.busy.add(token)
        return WorkItem(name, token=token)

    def _commit(self, future: Future) -> None:
        """Record a finished batch; then, and only then, let go of its spooled inputs."""
        items = self.in_flight.pop(future)
        try:
            outcomes = future.result()
        except WORKER_DIED:
            # a worker died: every file of the batch alone, to find the one that kills it
            outcomes = each_alone(process_batch, self.worker_config, items, died_outcome)
        # a batch dispatched before the destination went down is not tried: it waits
        trying = not self.down or future is self.probe
        if future is self.probe:
            self.probe = None
        fatal: int | None = None
        for outcome in outcomes:
            if outcome.status == "skipped":  # a C-STORE said it was DICOM: a failure
                outcome.status = "failed"
        self.committer.make_durable(outcomes)
        recorded: list[FileOutcome] = []
        deferred: list[FileOutcome] = []
        tried_and_failed = False
        for outcome in outcomes:
            if outcome.status == "written" and not trying:
                Path(outcome.temporary or "").unlink(missing_ok=True)
                deferred.append(outcome)
                continue
            if outcome.fatal_errno is None:
                self.committer.commit(outcome)
            if outcome.status == "deferred":  # not sent (the destination did not answer)
                deferred.append(outcome)
                tried_and_failed = True
                trying = False  # the rest of the batch waits too
                continue
            if outcome.fatal_errno is not None:
                # DEST cannot be written: the spooled input stays for the next start
                Path(outcome.temporary or "").unlink(missing_ok=True)
                fatal = outcome.fatal_errno
                continue
            recorded.append(outcome)
        self.committer.destination.sync()
        flush_audit(self.audit)
        self.committer.flush()
        quarantine = self.config.quarantine_dir
        for item in items:
            self.busy.discard(item.token or "")
        for outcome in recorded:
            self.previous.latest[outcome.token] = Done(outcome.status, outcome.input_sha256,
                                                       outcome.target)
            failed = outcome.status == "failed"
            self.spool.release(outcome.relative, quarantine if failed else None)
            self.counts["written" if outcome.status == "written" else "failed"] += 1
        if recorded:
            sync_directory(self.spool.folder)
        if deferred:
            self.spool.put_back([outcome.relative for outcome in deferred])
            self.counts["deferred"] += len(deferred)
        if tried_and_failed:
            self._destination_down(next(o.reason for o in deferred if o.status == "deferred"))
        elif self.down and any(outcome.status == "written" for outcome in recorded):
            self.down, self.backoff = False, RETRY_FIRST
            print(f"anonymizer: {self._dest_name()} answers again; forwarding "
                  f"{self.spool.waiting} waiting", file=sys.stderr, flush=True)
        if fatal is not None:
            raise RunStopped(f"DEST not writable: {os.strerror(fatal)}", EXIT_OUTPUT_UNWRITABLE)

    def _destination_down(self, reason: str | None) -> None:
        """A send was not answered: pause sending, twice as long as last time (up to
        ``--retry-max``) if the instance tried after the last pause failed too."""
        if self.down:
            self.backoff = min(2 * self.backoff, max(self.config.retry_max, RETRY_FIRST))
        else:
            self.down, self.backoff = True, RETRY_FIRST
        self.retry_at = time.monotonic() + self.backoff
        print(f"anonymizer: {reason}; {self.spool.waiting} instance(s) stay spooled, next "
              f"attempt in {self.backoff:g} s", file=sys.stderr, flush=True)

    def _dest_name(self) -> str:
        """DEST as it may be printed: a folder, or a URL without its path (no PHI)."""
        if self.spec.folder is not None:
            return str(self.spec.folder)
        from anonymizer.net.urls import parse_endpoint

        return str(parse_endpoint(self.spec.text))

    def _drain(self) -> None:
        """Finish and record every batch in flight (a graceful stop)."""
        while self.in_flight:
            done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                self._commit(future)

    def _abandon(self) -> None:
        """After an abrupt stop: let the workers go; their inputs stay spooled (their
        temporaries are swept by :meth:`serve` once the committer is closed)."""
        if not self.in_flight:
            return
        self.in_flight.clear()
        stop_worker_pool()

    # -- reporting ----------------------------------------------------------------------

    def _metrics(self) -> dict[str, object]:
        receiver = getattr(self, "receiver", None)
        return {"received": receiver.received if receiver else 0,
                "forwarded": self.counts["written"], "failed": self.counts["failed"],
                "duplicates": self.counts["duplicate"], "deferred": self.counts["deferred"],
                "destination_down": self.down,
                "refused": receiver.refused if receiver else 0,
                "queue": self.spool.waiting, "in_flight": sum(map(len, self.in_flight.values())),
                "uptime_s": round(time.monotonic() - self.started, 1),
                "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}

    def _status(self) -> str:
        m = self._metrics()
        down = "; destination down" if self.down else ""
        return (f"received {m['received']}, forwarded {m['forwarded']}, failed {m['failed']}, "
                f"duplicates {m['duplicates']}, queue {m['queue']}{down}")

    def _write_metrics(self) -> None:
        """Rewrite ``--metrics`` atomically (counts only: no PHI)."""
        path = self.config.metrics_path
        if path is None:
            return
        temporary = path.with_name(f"{TEMP_PREFIX}{path.name}")
        try:
            temporary.write_text(json.dumps(self._metrics()) + "\n")
            os.replace(temporary, path)
        except OSError as exc:
            print(f"anonymizer: metrics not written: {exc.strerror}", file=sys.stderr)
