"""One run per output folder: an exclusive lock on OUT for the whole life of a run.

Two runs writing one OUT (a nightly job overlapping the previous night's) would sweep each
other's temporary files and interleave their audit logs. The lock is ``flock`` on the OUT
directory itself: the kernel drops it when the process ends however it ends, so a killed
run never blocks the next one, and no lock file can go stale or be swept. Who holds it is
written beside it (:data:`HOLDER_NAME`: process id and start time, nothing of the data)
so the refused run can say which run is in the way; that file is informative only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from anonymizer.errors import OutputInUseError

#: Written in OUT while a run holds it: {"pid": ..., "started": ...}.
HOLDER_NAME = ".anonymizer-run.json"
_POLL_SECONDS = 0.2


def _holder(output_dir: Path) -> str:
    """Which run holds ``output_dir``, as far as its holder file tells."""
    try:
        holder = json.loads((output_dir / HOLDER_NAME).read_text())
        return f"pid {int(holder['pid'])}, started {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its holder file is not written yet"


@contextlib.contextmanager
def exclusive_output(output_dir: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold ``output_dir`` (which must exist) for this process until the block ends.

    Parameters
    ----------
    output_dir : Path
        The run's OUT.
    wait : float
        Seconds to wait for another run to finish before giving up (0: do not wait).

    Raises
    ------
    OutputInUseError
        Another run holds ``output_dir`` (and did not finish within ``wait``).
    """
    fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY)  # not inherited by workers
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    waited = f" after waiting {wait:g} s" if wait > 0 else ""
                    raise OutputInUseError(
                        f"{output_dir} is in use by another anonymizer run "
                        f"({_holder(output_dir)}){waited}; wait for it to finish, or use "
                        "--wait-lock SECONDS") from None
                time.sleep(_POLL_SECONDS)
        holder = output_dir / HOLDER_NAME
        holder.write_text(json.dumps({
            "pid": os.getpid(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}) + "\n")
        try:
            yield
        finally:
            holder.unlink(missing_ok=True)  # before the lock is let go
    finally:
        os.close(fd)
