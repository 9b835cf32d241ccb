"""Feeding a network source into the batch runner: list, skip what is done, fetch the rest
to spool files ahead of the workers, and remove each spool file once its outcome is
committed.

A thread lists and fetches while the workers de-identify; a bounded queue keeps the spool
(and the memory) to a few batches however large the query. Every instance the listing
names gets one work item: fetched (the workers read its spool file like any input), done
by an earlier run (``unchanged``, not fetched again) or failed to fetch (``failed``).
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from anonymizer.keyed import KeyedSource
from anonymizer.net.errors import NetworkError, RefusedError
from anonymizer.net.sources import Instance, Selection, Source, list_instances
from anonymizer.pipeline.resume import Done
from anonymizer.pipeline.worker import WorkItem, instance_token
from anonymizer.reasons import describe, safe_reason

#: what the runner's exit code is when a source refuses us / stops answering mid-run
EXIT_REFUSED, EXIT_SOURCE_LOST = 2, 3


class NetworkFeed:
    """The work items of one network run, fetched by a background thread.

    Parameters
    ----------
    source : Source
        Probed already.
    selection : Selection
        What to pull.
    spool_dir : Path
        Where fetched instances wait for the workers (removed by :meth:`close`).
    keyed : KeyedSource
        Names the instances in the audit log.
    depth : int
        How many work items may wait fetched ahead of the workers.
    """

    _END = object()

    def __init__(self, source: Source, selection: Selection, spool_dir: Path,
                 keyed: KeyedSource, depth: int):
        self.source = source
        self.selection = selection
        self.spool_dir = spool_dir
        self.keyed = keyed
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(depth, 1))
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        #: why the listing stopped early, and the exit code that says so
        self.stopped: str | None = None
        self.exit_code: int | None = None

    def items(self, done: Callable[[str], Done | None]) -> Iterator[WorkItem]:
        """Every listed instance as a work item, in listing order.

        ``done(token)`` gives the record of an instance an earlier run finished (it is not
        fetched again), or None.
        """
        # a killed run's spool holds instances as the source sent them: never reused
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        self.spool_dir.mkdir(mode=0o700, parents=True)
        self._thread = threading.Thread(target=self._produce, args=(done,),
                                        name="network-fetch", daemon=True)
        self._thread.start()
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._cancel.is_set():
                    return
                continue
            if item is self._END:
                return
            assert isinstance(item, WorkItem)
            yield item

    def cancel(self) -> None:
        """Stop listing and fetching: :meth:`items` ends with what is already fetched."""
        self._cancel.set()

    def _put(self, item: object) -> bool:
        while not self._cancel.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.2)
                return True
        return False

    def _produce(self, done: Callable[[str], Done | None]) -> None:
        try:
            for instance in list_instances(self.source, self.selection):
                if self._cancel.is_set():
                    return
                token = instance_token(self.keyed, instance.sop)
                finished = done(token)
                if finished is not None:
                    item = WorkItem(instance.sop, finished.input_sha256, finished.output, token,
                                    outcome="unchanged")
                else:
                    item = self._fetch(instance, token)
                if not self._put(item):
                    return
        except RefusedError as exc:
            self.stopped, self.exit_code = describe(exc), EXIT_REFUSED
        except NetworkError as exc:
            self.stopped, self.exit_code = safe_reason("source", exc), EXIT_SOURCE_LOST
        except Exception as exc:  # noqa: BLE001 - never leave the runner waiting
            self.stopped = safe_reason("source", exc)
            self.exit_code = EXIT_SOURCE_LOST
        finally:
            self._put(self._END)

    def _fetch(self, instance: Instance, token: str) -> WorkItem:
        relative = instance.sop  # a UID: a safe file name; PHI, like any input path
        try:
            self.source.fetch(instance, self.spool_dir / relative)
        except RefusedError:
            raise
        except (NetworkError, OSError) as exc:
            return WorkItem(relative, token=token, outcome="failed",
                            reason=safe_reason("fetch", exc))
        return WorkItem(relative, token=token)

    def release(self, relative: str) -> None:
        """The outcome of ``relative`` is committed: its spool file goes."""
        (self.spool_dir / relative).unlink(missing_ok=True)

    def close(self) -> None:
        """Stop fetching, close the source, remove the spool."""
        self._cancel.set()
        if self._thread is not None:
            with contextlib.suppress(queue.Empty):
                while True:  # unblock a producer waiting for room
                    self._queue.get_nowait()
            self._thread.join()
        self.source.close()
        shutil.rmtree(self.spool_dir, ignore_errors=True)
