"""Batches of work through joblib, results in submission order, surviving dying workers.

``run`` and ``verify`` both stream their inputs in batches to worker processes and
take the results back in the order the batches were made, so their output does not
depend on the number of jobs.
"""

from __future__ import annotations

import itertools
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import TypeVar

from joblib import Parallel, delayed
from joblib.executor import get_memmapping_executor
from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import TerminatedWorkerError

Config = TypeVar("Config")
Item = TypeVar("Item")
Result = TypeVar("Result")


def worker_pool(jobs: int) -> Executor:
    """The pool of ``jobs`` local worker processes, reused between calls.

    It is the one joblib's ``Parallel`` uses too (loky's process-wide reusable executor,
    made by joblib, which gives it the temporary-folder manager its own calls expect):
    ``run`` and ``verify`` in one process (the Python API, the tests) share it.
    """
    return get_memmapping_executor(jobs)


def stop_worker_pool() -> None:
    """Kill the local worker processes now (what they were doing is abandoned)."""
    get_reusable_executor().shutdown(wait=True, kill_workers=True)


def batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """``items`` in lists of ``size`` (the last one shorter), read lazily."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def ordered_results(function: Callable[[Config, list[Item]], list[Result]], config: Config,
                    pending: Iterator[list[Item]], jobs: int,
                    died: Callable[[Item], Result],
                    worker_died: tuple[type[BaseException], ...] = (TerminatedWorkerError,),
                    ) -> Iterator[list[Result]]:
    """``function(config, batch)`` for every batch of ``pending``, results in order.

    Batches are taken from ``pending`` only as workers are ready for them (joblib's
    pre-dispatch), so memory does not grow with the number of items. When a worker
    process dies (killed, out of memory, a crash in a C extension), joblib stops the
    whole call: the batches dispatched but not yet yielded are then run one item at a
    time in a fresh single-process executor, so the item that kills its worker gets
    ``died(item)`` and the rest go on with a new pool.

    Closing the returned generator early (the caller stops) aborts the joblib call:
    its workers are stopped rather than left finishing their batches.
    """
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


def isolated(function: Callable[[Config, list[Item]], list[Result]], config: Config,
              item: Item, died: Callable[[Item], Result]) -> Result:
    """Run one item in its own worker process; a dead worker fails only this item."""
    executor = worker_pool(1)
    try:
        return executor.submit(function, config, [item]).result()[0]
    except TerminatedWorkerError:
        return died(item)
