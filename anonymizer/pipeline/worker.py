"""What runs in a worker process: one batch of files through reader -> engine -> writer."""

from __future__ import annotations

import errno
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from anonymizer.engine import Engine
from anonymizer.errors import ProfileError, SecretKeyError
from anonymizer.io import (
    NotDicomError,
    ReadResult,
    read_dataset,
    read_input,
    stat_identity,
    write_temporary,
)
from anonymizer.io.splice import EncodedConstants
from anonymizer.keyed import KeyedSource, load_key
from anonymizer.pipeline.audit import EncodedList, encode_list
from anonymizer.pipeline.layout import output_path
from anonymizer.pipeline.timings import WORKER_STAGES, BatchOutcomes, clock
from anonymizer.profiles import load_profile
from anonymizer.reasons import safe_reason


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs, picklable; the key itself is loaded by the worker."""

    profile: str
    key_file: str | None
    input_dir: str
    output_dir: str
    layout: str
    want_crosswalk: bool = False
    timeout: float = 600.0  # seconds per file; 0 = none
    #: what the main process loaded: a worker refuses to run with anything else
    key_fingerprint: str = ""
    profile_sha256: str = ""
    #: outputs go on to a network destination: a written record is trusted without
    #: its file in OUT (which holds them only until they are sent)
    delivered: bool = False
    #: the inputs are files a later run finds again (a folder IN): record each one's keyed
    #: stat digest, so that the rerun's quick check can trust it unchanged without reading
    record_stat: bool = False


@dataclass
class FileOutcome:
    """The result for one input, sent back to the main process (no PHI unless crosswalk)."""

    relative: str
    token: str
    status: str  # written | failed | skipped | unchanged (done by a previous run)
    reason: str | None = None
    target: str | None = None
    temporary: str | None = None
    input_sha256: str | None = None
    output_sha256: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    #: the per-tag actions and the warnings, encoded for the audit log where they are made
    #: (:func:`~anonymizer.pipeline.audit.encode_list`)
    acted: EncodedList | list[tuple[str, str]] = field(default_factory=list)
    warnings: EncodedList | list[str] = field(default_factory=list)
    #: (keyword, keyed digest of the original, pseudonym): for the collision check
    pseudonym_checks: list[tuple[str, str, str]] = field(default_factory=list)
    #: PHI, filled only when a crosswalk was asked for
    crosswalk: dict[str, object] | None = None
    #: errno of a write error that stops the run (disk full, read-only, no permission)
    fatal_errno: int | None = None
    #: what the pixel stage did (counts and rule names; never text)
    pixels: dict[str, object] | None = None
    #: keyed stat digest of the input as read (:func:`stat_digest`), to record: for a
    #: ``written`` input, or an ``unchanged`` one whose stat differs from its record's
    input_stat: str | None = None


#: Write errors that no other file can escape either: the run stops.
FATAL_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                errno.EPERM})


Result = TypeVar("Result")


class FileTimeout(BaseException):
    """A file took longer than the per-file time limit (BaseException: nothing swallows it)."""


class TimeLimit:
    """Per-item time limits over a batch: :class:`FileTimeout` is raised in the main thread
    when one item takes longer than ``seconds`` (0, or another thread: no limit).

    ``with TimeLimit(seconds) as limit:`` installs the alarm's handler once for the batch
    (the previous one is back on leaving); each item runs in :meth:`call`, which arms and
    disarms the alarm (a system call each, where a handler per item cost ~20 µs a file).
    """

    def __init__(self, seconds: float):
        main = threading.current_thread() is threading.main_thread()
        self.seconds = seconds if main and seconds > 0 else 0.0
        self._previous: object = None

    def __enter__(self) -> TimeLimit:
        if self.seconds:
            self._previous = signal.signal(signal.SIGALRM, self._expire)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)  # type: ignore[arg-type]

    def call(self, function: Callable[..., Result], *args: object) -> Result:
        """``function(*args)``, given ``seconds`` from now (:class:`FileTimeout` after)."""
        if not self.seconds:
            return function(*args)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        try:
            return function(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _expire(self, signum: int, frame: object) -> None:
        seconds = self.seconds  # a number of ours, the one part a reason may interpolate here
        raise FileTimeout(f"took longer than {seconds:g} s")


#: the process whose watch is running (a forked worker inherits the flag, not the thread)
_watching: list[int] = []


def exit_with_parent() -> None:
    """In a worker process: exit when the process that started it is gone.

    A killed main process would otherwise leave workers finishing queued batches into
    OUT for minutes. Not started in the main process itself (jobs=1); started once per
    process however often it is called.
    """
    if multiprocessing.parent_process() is None and not _is_loky_worker():
        return
    if _watching == [os.getpid()]:
        return
    _watching[:] = [os.getpid()]
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _is_loky_worker() -> bool:
    return any("LokyProcess" in arg for arg in sys.argv) or \
        multiprocessing.current_process().name.startswith("LokyProcess")


def quiet_pydicom() -> None:
    """Silence pydicom's warnings and log records: their messages quote element values.

    Value validation on reading only ever warns (and costs ~10% of the run), so it is off.
    """
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    warnings.filterwarnings("ignore", category=UserWarning, message=r".*(VR|value|Invalid)")
    logger = logging.getLogger("pydicom")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    logger.setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class _Loaded:
    engine: Engine
    keyed: KeyedSource
    constants: EncodedConstants


@functools.lru_cache(maxsize=4)
def _load(profile: str, key_file: str | None, key_fingerprint: str,
          profile_sha256: str) -> _Loaded:
    """Per process, once per (profile, key): compiled profile, key, pre-encoded stamp.

    The fingerprints are part of the cache key and checked, so a key or profile file
    changed between two runs in one process is never served from a stale cache.
    """
    quiet_pydicom()
    exit_with_parent()
    keyed = load_key(key_file)
    engine = Engine(load_profile(profile), keyed)
    if key_fingerprint and keyed.fingerprint != key_fingerprint:
        raise SecretKeyError("the worker's key differs from the main process's key")
    if profile_sha256 and engine.profile.fingerprint() != profile_sha256:
        raise ProfileError("the profile changed while the run was starting")
    return _Loaded(engine, keyed, EncodedConstants(engine.stamp))


def input_token(keyed: KeyedSource, relative: str) -> str:
    """Keyed name of an input (its relative path may be PHI)."""
    return keyed.hexdigest("input-path", relative, 32)


def instance_token(keyed: KeyedSource, sop_instance_uid: str) -> str:
    """Keyed name of an instance that came over the network (``run`` from a PACS,
    ``listen``): its audit log key, the same whichever way it came (its UID is PHI)."""
    return keyed.hexdigest("input-sop", sop_instance_uid.strip("\x00 "), 32)


#: A file modified less than this before it was read may be modified again within the same
#: timestamp tick, leaving its stat as it was (git's "racy" files): no stat digest is
#: recorded for it, and the next run reads and hashes it.
RACY_NS = 2_000_000_000


def stat_digest(keyed: KeyedSource, token: str, info: os.stat_result) -> str:
    """Keyed digest of an input's stat identity: size, mtime, ctime, inode, device (file
    times can be study dates: never recorded as they are), bound to its token."""
    identity = ":".join(map(str, (token, *stat_identity(info))))
    return keyed.hexdigest("input-stat", identity, 32)


def steady_stat_digest(keyed: KeyedSource, token: str, info: os.stat_result | None,
                       read_at_ns: int) -> str | None:
    """The stat digest to record for a file read by ``read_at_ns`` (``time.time_ns``):
    None if its stat changed while it was read (``info`` None) or it is racy
    (:data:`RACY_NS`)."""
    if info is None or max(info.st_mtime_ns, info.st_ctime_ns) > read_at_ns - RACY_NS:
        return None
    return stat_digest(keyed, token, info)


def output_present(config: WorkerConfig, output: str) -> bool:
    """The output an earlier run recorded is still there (or was sent on: a network
    destination)."""
    # plain concatenation: both are POSIX paths, OUT absolute (os.path.join costs more
    # than the stat on a rerun of a million inputs)
    return config.delivered or os.path.isfile(f"{config.output_dir}/{output}")


def unchanged_by_stat(config: WorkerConfig, keyed: KeyedSource, item: WorkItem) -> bool:
    """The resume's quick check, in the committing process: the input's stat digest is the
    one recorded when it was written and its output is present. One ``stat``, no read."""
    if item.done_stat is None or item.done_output is None or item.token is None:
        return False
    try:
        info = os.stat(f"{config.input_dir}/{item.relative}")
    except OSError:
        return False
    return (stat_digest(keyed, item.token, info) == item.done_stat
            and output_present(config, item.done_output))


@dataclass(frozen=True)
class WorkItem:
    """One input: its relative path, and what a previous run recorded for it (resume)."""

    relative: str
    done_sha256: str | None = None  # input hash of a previous 'written' record
    done_output: str | None = None  # that record's output path
    token: str | None = None  # the keyed name of ``relative``, if the caller has it
    #: an outcome the caller already knows (a network source: ``unchanged``, done by an
    #: earlier run and not fetched again; ``failed``, could not be fetched): not read
    outcome: str | None = None
    reason: str | None = None
    done_stat: str | None = None  # that record's stat digest (:func:`stat_digest`)

    def token_with(self, keyed: KeyedSource) -> str:
        return self.token or input_token(keyed, self.relative)


#: CPU seconds of this process by stage in the batch under way (one batch at a time)
_stage_seconds: dict[str, float] = dict.fromkeys(WORKER_STAGES, 0.0)


def process_batch(config: WorkerConfig, items: list[WorkItem]) -> list[FileOutcome]:
    """De-identify a batch; every file gets an outcome, no exception escapes per file.

    Returns a :class:`~anonymizer.pipeline.timings.BatchOutcomes`: the outcomes in order,
    with the CPU seconds spent on each stage.
    """
    started = clock()
    for stage in _stage_seconds:
        _stage_seconds[stage] = 0.0
    loaded = _load(config.profile, config.key_file, config.key_fingerprint,
                   config.profile_sha256)
    outcomes = BatchOutcomes(pid=os.getpid())
    with TimeLimit(config.timeout) as limit:
        for item in items:
            try:
                outcome = limit.call(process_file, config, loaded, item)
            except FileTimeout as exc:
                # write_temporary removes its partial file on any exception, this one too
                outcome = FileOutcome(item.relative, item.token_with(loaded.keyed), "failed",
                                      reason=f"timeout: {exc}")
            outcomes.append(outcome)
    outcomes.seconds = dict(_stage_seconds)
    outcomes.seconds["worker_other"] = max(0.0, clock() - started - sum(_stage_seconds.values()))
    return outcomes


def _unchanged(config: WorkerConfig, item: WorkItem, sha256: str) -> bool:
    return (item.done_sha256 == sha256 and item.done_output is not None
            and output_present(config, item.done_output))


def process_file(config: WorkerConfig, loaded: _Loaded, item: WorkItem) -> FileOutcome:
    """Read, de-identify and write one file to a temporary name (renamed by the caller).

    An input whose hash equals the one a previous run wrote (and whose output is still
    there) is not processed again: its outcome is ``unchanged``.
    """
    relative = item.relative
    outcome = FileOutcome(relative=relative, token=item.token_with(loaded.keyed),
                          status="failed")
    if item.outcome is not None:
        outcome.status, outcome.reason = item.outcome, item.reason
        outcome.input_sha256 = item.done_sha256
        return outcome
    source = Path(config.input_dir) / relative
    try:
        started = clock()
        raw = read_input(source)  # read once: hashed for resume, then parsed if changed
        if config.record_stat:
            outcome.input_stat = steady_stat_digest(loaded.keyed, outcome.token, raw.stat,
                                                    time.time_ns())
        _stage_seconds["read"] += (read_at := clock()) - started
        if item.done_sha256 is not None and _unchanged(config, item, raw.sha256):
            outcome.status, outcome.input_sha256 = "unchanged", raw.sha256
            if outcome.input_stat == item.done_stat:
                outcome.input_stat = None  # its record says so already
            return outcome
        read = read_dataset(source, raw)
        _stage_seconds["parse"] += clock() - read_at
    except NotDicomError as exc:
        outcome.status, outcome.reason = "skipped", str(exc)
        return outcome
    except Exception as exc:  # noqa: BLE001 - any parse failure fails this file only
        outcome.reason = safe_reason("read", exc)
        return outcome
    outcome.input_sha256 = read.sha256
    try:
        _deidentify_and_write(config, loaded, read, outcome)
    finally:
        read.close()
    return outcome


def _deidentify_and_write(config: WorkerConfig, loaded: _Loaded, read: ReadResult,
                          outcome: FileOutcome) -> None:
    ds, keyed = read.dataset, loaded.keyed
    started = clock()
    try:
        # cleaned pixels too large for memory are built on the output's file system
        result = loaded.engine.deidentify(ds, scratch_dir=config.output_dir)
        target = output_path(config.layout, ds, outcome.relative, outcome.token[:16])
    except Exception as exc:  # noqa: BLE001 - DeidentificationError or any other failure
        outcome.reason = safe_reason("de-identify", exc)
        return
    outcome.counts = dict(result.counts)
    outcome.pixels = result.pixels.audit()
    outcome.acted = encode_list(result.acted)
    outcome.warnings = encode_list(read.notes + result.warnings)
    outcome.pseudonym_checks = [(kw, keyed.hexdigest("collision", orig, 32), new)
                                for kw, orig, new, hashed in result.pseudonyms if hashed]
    if config.want_crosswalk:
        outcome.crosswalk = {
            "pseudonyms": result.pseudonyms, "date_offset_days": result.date_offset_days,
            "study_uid": result.study_uid_map,
        }
    written_at = clock()
    _stage_seconds["deidentify"] += written_at - started
    try:
        directory = (Path(config.output_dir) / target).parent
        temporary, digest = write_temporary(
            ds, directory, f"{outcome.token}.{os.getpid()}.part", read.splice, result.changes,
            loaded.constants, durable=False,  # the committer fsyncs before the rename
            source=read.source)
    except Exception as exc:  # noqa: BLE001
        outcome.reason = safe_reason("write", exc)
        if isinstance(exc, OSError) and exc.errno in FATAL_WRITE_ERRNOS:
            outcome.fatal_errno = exc.errno
        return
    _stage_seconds["write"] += clock() - written_at
    outcome.status, outcome.target = "written", target
    outcome.temporary, outcome.output_sha256 = str(temporary), digest
