"""The run's progress bar: ``45% 449/1000 files [00:01<00:01, 388 files/s, 2 failed]``.

The total comes from a second walk of IN in a thread that only counts (no hashing, no
reading: cheap next to de-identification), so it is known early, grows until that walk is
done and holds no list of inputs (memory stays flat on any tree). Failures show as they
happen.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

#: with a total (IN is a folder)
COUNTED = ("{percentage:3.0f}% {n_fmt}/{total_fmt} files "
           "[{elapsed}<{remaining}, {files_per_s} files/s{postfix}]")
#: without one (a network source tells no total in advance)
UNCOUNTED = "{n_fmt} files [{elapsed}, {files_per_s} files/s{postfix}]"
#: how many inputs the counting walk finds between two updates of the total
COUNT_STEP = 256
#: the width a bar is trimmed to on a terminal that reports no size: wider than any bar
UNSIZED_WIDTH = 1000


class FileBar(tqdm):
    """tqdm with the rate in whole files per second (``files_per_s``), and without tqdm's
    monitor thread (it tunes how often a bar redraws; ours are advanced once a batch):
    a process running no other thread can fork its workers
    (:func:`~anonymizer.pipeline.parallel.forked_workers`)."""

    monitor_interval = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A terminal nobody gave a size (a pseudo-terminal under `script`, some container
        # runtimes and CI runners) reports 0 rows and columns: tqdm takes that for -1 rows
        # and draws nothing at all. Such a bar is drawn untrimmed (tqdm's ncols=0 would
        # drop our format for its own).
        if kwargs.get("dynamic_ncols") and not _has_size(kwargs.get("file") or sys.stderr):
            kwargs.update(dynamic_ncols=False, ncols=UNSIZED_WIDTH, nrows=0)
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self):  # type: ignore[override]
        values = super().format_dict
        rate = values["rate"] or (values["n"] / values["elapsed"] if values["elapsed"] else 0)
        values["files_per_s"] = f"{rate:.0f}" if rate else "?"
        return values


def _has_size(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal of known rows and columns, or no terminal."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):  # not a terminal, closed, no descriptor
        return True
    return size.columns > 0 and size.lines > 0


class Progress:
    """The bar of one run (a no-op when ``enabled`` is false).

    Parameters
    ----------
    enabled : bool
        Show the bar (on stderr).
    inputs : Iterable, optional
        What to count for the total (a second :func:`discover` of IN), walked in a thread;
        None: no total.
    """

    def __init__(self, enabled: bool, inputs: Iterable[object] | None = None):
        self.enabled = enabled
        self.found = 0  # inputs counted so far
        self.final = False  # the count is complete
        self.failed = 0
        self.counting = inputs is not None
        self._stop = threading.Event()
        self.bar = FileBar(total=None, unit="file",  # "0/?" until the first count
                        bar_format=COUNTED if inputs is not None else UNCOUNTED,
                        disable=not enabled, dynamic_ncols=True, file=sys.stderr)
        if enabled and inputs is not None:
            threading.Thread(target=self._count, args=(inputs,), name="count-inputs",
                             daemon=True).start()

    def _count(self, inputs: Iterable[object]) -> None:
        found = 0
        for _ in inputs:
            found += 1
            if found % COUNT_STEP == 0:
                self.found = found
                if self._stop.is_set():
                    return
        self.found, self.final = found, True

    def advance(self, done: int, failed: int) -> None:
        """``done`` more inputs committed, ``failed`` of them failed."""
        if not self.enabled:
            return
        bar = self.bar
        if self.counting:  # never below what is done: IN may change meanwhile
            total = max(self.found, bar.n + done)
            if total != bar.total:
                bar.total = total
        if failed:
            self.failed += failed
            bar.set_postfix_str(f"{self.failed} failed", refresh=False)
        bar.update(done)

    def close(self) -> None:
        self._stop.set()
        if self.enabled and self.final and self.counting:
            self.bar.total = max(self.found, self.bar.n)
        self.bar.close()
