"""Batches of work in worker processes, results in submission order, surviving dying workers.

``run`` and ``verify`` both stream their inputs in batches to worker processes and
take the results back in the order the batches were made, so their output does not
depend on the number of jobs.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import signal
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

# joblib (loky) is imported where it is used, not here: a run whose workers are forked
# never needs it, and importing it (with psutil and cloudpickle) costs ~60 ms of start-up

Config = TypeVar("Config")
Item = TypeVar("Item")
Result = TypeVar("Result")


#: what a local pool raises when one of its worker processes died (loky's
#: ``TerminatedWorkerError`` is one)
WORKER_DIED: tuple[type[BaseException], ...] = (BrokenProcessPool,)

#: pools of worker processes forked from this process (:func:`forked_workers`), by size
_forked: dict[int, ProcessPoolExecutor] = {}


def worker_pool(jobs: int) -> Executor:
    """The pool of ``jobs`` local worker processes, reused between calls.

    Inside :func:`forked_workers` it is the pool forked there. Otherwise it is the one
    joblib's ``Parallel`` uses too (loky's process-wide reusable executor, made by joblib,
    which gives it the temporary-folder manager its own calls expect): ``run`` and
    ``verify`` in one process (the Python API, the tests) share it.
    """
    forked = _forked.get(jobs)
    if forked is not None:
        return forked
    from joblib.executor import get_memmapping_executor

    return get_memmapping_executor(jobs)


def discard_pool(executor: Executor) -> None:
    """Never hand out ``executor`` again: one of its workers died, so it is broken (loky's
    reusable pool replaces itself; a forked pool is killed and forgotten)."""
    for jobs, forked in list(_forked.items()):
        if forked is executor:
            del _forked[jobs]
            _kill(forked)


def stop_worker_pool() -> None:
    """Kill the local worker processes now (what they were doing is abandoned)."""
    for forked in list(_forked.values()):
        discard_pool(forked)
    if "joblib.externals.loky" in sys.modules:  # else loky's pool was never made
        from joblib.externals.loky import get_reusable_executor

        _kill(get_reusable_executor())


def _kill(executor: Executor) -> None:
    """Kill the pool's worker processes, then shut it down: it finds them dead, fails what
    was waiting and stops its threads.

    Not loky's ``shutdown(kill_workers=True)``: its manager thread then races with its own
    bookkeeping (a ``KeyError`` on a work item it just dropped, an ``InvalidStateError`` on
    a cancelled future), dies, and leaves the workers alive and the caller waiting.
    """
    # loky's executor keeps its processes by pid, as the standard library's does (which
    # drops the table, None, once the pool broke or shut down)
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError):
            process.kill()
    executor.shutdown(wait=True)


@contextlib.contextmanager
def forked_workers(jobs: int, started: Callable[[], None] | None = None) -> Iterator[bool]:
    """Inside, :func:`worker_pool` of ``jobs`` is ``jobs`` processes forked from this one
    on entry, if it can fork safely; yields whether it did.

    A forked worker starts in milliseconds with this process's modules already imported; a
    fresh (loky) worker spends about 0.45 s of CPU importing pydicom, numpy and the package
    again, a tenth of a 2,000-file run on two cores. Forking is safe only while this process
    runs no other thread (a lock another thread holds at the fork stays locked in the child
    for ever), so nothing is forked when one runs, when a library with thread pools of its
    own is loaded, when ``jobs`` < 2, or where fork does not exist or is not safe (only
    Linux: on macOS system libraries numpy may use break in a forked child):
    ``worker_pool`` then gives loky's pool as before. The pool is gone on leaving, so
    no forked worker outlives the block (they hold copies of this process's open files, the
    output folder's lock among them). ``started`` runs in each worker as it starts. The
    forked pool is the standard library's: loky's would import joblib, about 60 ms of a
    run's start-up, for nothing a forked worker needs.
    """
    if jobs < 2 or jobs in _forked or not _fork_safe():
        yield False
        return
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                               initializer=_forked_worker_started, initargs=(started,))
    try:
        # every worker is forked on the first submit, before the pool starts its own thread
        pool.submit(int).result()
    except BrokenProcessPool:
        _kill(pool)
        yield False
        return
    _forked[jobs] = pool
    try:
        yield True
    finally:
        if _forked.get(jobs) is pool:
            del _forked[jobs]
        _kill(pool)


#: libraries whose own thread pools (invisible to :mod:`threading`) a forked child would
#: inherit dead, so that a child using them may wait for ever: the OCR engine and OpenCV,
#: loaded in this process by an earlier run with one job
_NOT_FORK_SAFE = ("onnxruntime", "cv2")


def _fork_safe() -> bool:
    """Whether a child forked now could run safely: Linux, no other Python thread, no
    library with a thread pool of its own loaded. (numpy's OpenBLAS thread is safe: it
    stops and restarts around a fork.)"""
    return (sys.platform == "linux" and threading.active_count() == 1
            and not any(name in sys.modules for name in _NOT_FORK_SAFE))


def _forked_worker_started(started: Callable[[], None] | None) -> None:
    """In a forked worker: what the parent loaded is frozen out of the garbage collector
    (its full passes would walk those objects for every few files, and copy the pages they
    touch); the signal handlers a fresh interpreter has (the parent's may turn a signal
    into its own exception); then the caller's start-up."""
    gc.freeze()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if started is not None:
        started()


def pooled_results(function: Callable[[Config, list[Item]], list[Result]], config: Config,
                   pending: Iterator[list[Item]], jobs: int, died: Callable[[Item], Result],
                   worker_died: tuple[type[BaseException], ...] = WORKER_DIED,
                   ) -> Iterator[list[Result]]:
    """``function(config, batch)`` for every batch, in :func:`worker_pool` of ``jobs``
    local processes (forked ones inside :func:`forked_workers`), results in submission order.

    Up to two batches per worker are in flight (taken from ``pending`` only then, so
    memory does not grow with the number of items); the next ones are sent before a
    result is handed on, so the workers keep busy while it is used. The caller blocks on
    the oldest batch's future (no polling: joblib's loop cost the calling process CPU in
    proportion to the run's duration). When a worker process dies, the pool is broken:
    every batch in flight is run again one item at a time (:func:`each_alone`: the item
    that kills its worker gets ``died(item)``), and a new pool takes the rest. Closing the
    generator early kills the workers. One job runs in this process, as joblib does.
    """
    if jobs == 1:
        for batch in pending:
            yield function(config, batch)
        return
    window = 2 * jobs
    #: a None future: the pool was found broken when that batch was sent
    in_flight: deque[tuple[Future | None, list[Item]]] = deque()
    executor = worker_pool(jobs)

    def fill() -> None:
        while len(in_flight) < window:
            batch = next(pending, None)
            if batch is None:
                return
            try:
                in_flight.append((executor.submit(function, config, batch), batch))
            except worker_died:
                in_flight.append((None, batch))
                return

    try:
        fill()
        while in_flight:
            future = in_flight[0][0]
            outcomes = None
            if future is not None:
                with contextlib.suppress(*worker_died):
                    outcomes = future.result()
            if outcomes is None:  # a worker died: its pool is broken
                suspects = [batch for _, batch in in_flight]
                in_flight.clear()
                discard_pool(executor)
                for batch in suspects:
                    yield each_alone(function, config, batch, died)
                executor = worker_pool(jobs)  # a new pool for the rest
                fill()
                continue
            in_flight.popleft()
            fill()
            yield outcomes
    finally:
        if in_flight:  # stopped early: what is in flight must not go on
            # killed, never cancelled first: loky's shutdown sets an exception on every
            # waiting future, and one already cancelled kills its manager thread there,
            # leaving the workers alive and this call waiting for ever
            stop_worker_pool()


def batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """``items`` in lists of ``size`` (the last one shorter), read lazily."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def ordered_results(function: Callable[[Config, list[Item]], list[Result]], config: Config,
                    pending: Iterator[list[Item]], jobs: int,
                    died: Callable[[Item], Result],
                    worker_died: tuple[type[BaseException], ...],
                    ) -> Iterator[list[Result]]:
    """``function(config, batch)`` for every batch of ``pending``, results in order.

    Batches are taken from ``pending`` only as workers are ready for them (joblib's
    pre-dispatch), so memory does not grow with the number of items. When a worker
    process dies (killed, out of memory, a crash in a C extension), joblib stops the
    whole call: the batches dispatched but not yet yielded are then run one item at a
    time in a fresh single-process executor, so the item that kills its worker gets
    ``died(item)`` and the rest go on with a new pool.

    Closing the returned generator early (the caller stops) aborts the joblib call:
    its workers are stopped rather than left finishing their batches. ``worker_died``:
    what the backend raises when a worker died (:func:`~anonymizer.pipeline.backends.backend`
    gives it).
    """
    from joblib import Parallel, delayed

    # joblib warns about cancelled tasks when a caller stops early; that is the point.
    warnings.filterwarnings("ignore", message=".*tasks have been successfully executed")
    while True:
        #: batches dispatched and not yet yielded (a yielded one is dropped: memory stays
        #: flat however many batches a run has)
        dispatched: deque[list[Item]] = deque()

        def tasks(dispatched: deque[list[Item]] = dispatched):
            for batch in pending:
                dispatched.append(batch)
                yield delayed(function)(config, batch)

        try:
            with Parallel(n_jobs=jobs, return_as="generator") as parallel:
                results = parallel(tasks())
                try:
                    for outcomes in results:
                        dispatched.popleft()
                        yield outcomes
                finally:
                    results.close()
            return
        except worker_died:
            suspects = [item for batch in dispatched for item in batch]
            for item in suspects:
                yield [isolated(function, config, item, died)]


def each_alone(function: Callable[[Config, list[Item]], list[Result]], config: Config,
               items: list[Item], died: Callable[[Item], Result]) -> list[Result]:
    """A batch whose worker died, one item at a time in its own process: only the item
    that kills its worker gets ``died(item)``."""
    return [isolated(function, config, item, died) for item in items]


def isolated(function: Callable[[Config, list[Item]], list[Result]], config: Config,
              item: Item, died: Callable[[Item], Result]) -> Result:
    """Run one item in its own worker process; a dead worker fails only this item."""
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    executor = worker_pool(1)
    try:
        return executor.submit(function, config, [item]).result()[0]
    except TerminatedWorkerError:
        return died(item)
