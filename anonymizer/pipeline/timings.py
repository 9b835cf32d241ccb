"""Where a run's CPU goes, by stage: collected as the run goes (a clock read per stage, a
sum per batch), written into the audit log's ``run_end`` record as ``timings`` and printed
per file by ``make bench``. Counts of seconds only: no PHI.

In the worker: ``read`` (read and hash the input), ``parse``, ``deidentify``, ``write``
(the temporary output, hashed) and ``worker_other`` (the rest of a batch: loading the
engine once, resume checks, failures). In the committing process: ``commit`` (placing the
outputs, the PHI tables), ``sync`` (the outputs made durable before they are renamed:
fsync, mostly the kernel writing them out), ``audit`` (the audit records and their
flush), ``progress``
and ``dispatch``: everything else the committing process spends, i.e. discovery, sending
batches and taking their results back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

#: per-process CPU time: what the stages cost, not how long they waited
clock = time.process_time

WORKER_STAGES = ("read", "parse", "deidentify", "write")
PARENT_STAGES = ("sync", "commit", "audit", "progress")


class BatchOutcomes(list):
    """A batch's outcomes (a list, as before) with the CPU seconds its worker spent on them
    by stage (``seconds``) and that worker's pid (a batch run in the committing process
    itself, as with one job, is not counted twice)."""

    def __init__(self, outcomes: Iterable[object] = (), seconds: dict[str, float] | None = None,
                 pid: int = 0):
        super().__init__(outcomes)
        self.seconds = seconds or {}
        self.pid = pid


class RunTimings:
    """The totals of one run, by stage (seconds of CPU)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = dict.fromkeys(
            (*WORKER_STAGES, "worker_other", *PARENT_STAGES), 0.0)
        self._in_process = 0.0  # worker CPU spent inside the committing process
        self._started = clock()

    def add_batch(self, outcomes: list) -> None:
        """A batch back from a worker: add its stages (a plain list has none)."""
        seconds = getattr(outcomes, "seconds", None)
        if not seconds:
            return
        for stage, value in seconds.items():
            self.totals[stage] = self.totals.get(stage, 0.0) + value
        if getattr(outcomes, "pid", 0) == os.getpid():
            self._in_process += sum(seconds.values())

    def record(self) -> dict[str, float]:
        """The ``timings`` of the ``run_end`` record: the committing process's CPU not in a
        stage of its own nor in a worker's is ``dispatch``."""
        parent = clock() - self._started - self._in_process
        self.totals["dispatch"] = max(0.0, parent - sum(self.totals[s] for s in PARENT_STAGES))
        return {stage: round(value, 4) for stage, value in self.totals.items()}
