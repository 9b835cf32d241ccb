"""Where batches run: local worker processes (forked, or loky's) or a Dask cluster (joblib).

``run`` streams batches through :func:`process_batches` inside :func:`backend`; the
``listen`` gateway submits its batches one at a time to the shared pool
(:func:`~anonymizer.pipeline.parallel.worker_pool`) and runs the files of a batch whose
worker died alone (:func:`~anonymizer.pipeline.parallel.each_alone`). Either way a file
that kills its worker process fails on its own (:func:`died_outcome`) and the rest go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from anonymizer.errors import UsageError
from anonymizer.pipeline.parallel import (
    WORKER_DIED,
    ordered_results,
    pooled_results,
    stop_worker_pool,
)
from anonymizer.pipeline.worker import FileOutcome, WorkerConfig, WorkItem, process_batch

#: what runs one batch in a worker process
BatchFunction = Callable[[WorkerConfig, list[WorkItem]], list[FileOutcome]]

_worker_key: list[str] = []


def fresh_workers_if_key_changed(fingerprint: str) -> None:
    """Reusable worker processes keep the environment they started with: restart them
    when this process runs with another key (e.g. ANONYMIZER_KEY changed)."""
    if _worker_key and _worker_key[0] != fingerprint:
        stop_worker_pool()
    _worker_key[:] = [fingerprint]


@contextlib.contextmanager
def backend(name: str, scheduler: str | None
            ) -> Iterator[tuple[int | None, tuple[type[BaseException], ...]]]:
    """The joblib backend: ``local`` processes (loky), or ``dask`` (a distributed cluster
    at ``scheduler``).

    With Dask, the same batches run on the cluster's workers through joblib's Dask
    backend; IN, OUT and the key file must be on storage every worker can read.
    Yields the n_jobs to use (None: the --jobs value) and the exceptions that mean a
    worker process died.

    Raises
    ------
    UsageError
        Dask is not installed, or the scheduler cannot be reached (one line).
    """
    if name != "dask":
        yield None, WORKER_DIED
        return
    try:
        from dask.distributed import Client, KilledWorker
    except ImportError:
        raise UsageError("--backend dask needs dask.distributed: "
                         "pip install 'anonymizer[dask]'") from None
    from joblib import parallel_config
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    try:
        client = Client(scheduler, timeout=30)
    except OSError as exc:
        raise UsageError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    try:
        with parallel_config(backend="dask"):
            yield -1, (TerminatedWorkerError, KilledWorker)  # -1: every worker of the cluster
    finally:
        client.close()


def process_batches(pending: Iterator[list[WorkItem]], worker_config: WorkerConfig, jobs: int,
                    consume: Callable[[list[FileOutcome]], None], flush: Callable[[], object],
                    worker_died: tuple[type[BaseException], ...] = WORKER_DIED,
                    function: BatchFunction = process_batch, local: bool = True) -> None:
    """Run batches in worker processes, committing in order; survive dying workers.

    ``local``: a pool of local processes
    (:func:`~anonymizer.pipeline.parallel.pooled_results`), else joblib's current
    backend (Dask: :func:`~anonymizer.pipeline.parallel.ordered_results`). A file that
    kills its worker process is failed on its own and the run continues with a new pool.
    When ``consume`` stops the run, the results generator is closed at once: the workers
    are killed now, rather than finishing their batches into OUT after the run has swept
    its temporaries and written its last record. ``function`` runs a batch in a worker
    (:func:`~anonymizer.pipeline.worker.process_batch`).
    """
    ordered = pooled_results if local else ordered_results
    with contextlib.closing(ordered(function, worker_config, pending, jobs,
                                            died_outcome, worker_died)) as results:
        for outcomes in results:
            consume(outcomes)
            flush()


def died_outcome(item: WorkItem) -> FileOutcome:
    """The outcome of a file whose worker process died on it."""
    assert item.token is not None  # the committing process names every input
    return FileOutcome(item.relative, item.token, "failed",
                       reason="de-identify: the worker process died on this file")
