"""The audit log: JSON Lines, one record per input file plus a run header and footer.

Nothing in it is PHI: inputs are named by a keyed hash of their relative path,
failure reasons come from a fixed vocabulary (:mod:`anonymizer.reasons`), tags are listed with
the action taken and never with a value.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class AuditLog:
    """Append-only JSON Lines writer that never leaves a torn record.

    Records are buffered and written as whole lines with ``os.write`` at every
    :meth:`flush`; if a write fails (disk full), the file is cut back to its last
    complete record before the error propagates.

    Parameters
    ----------
    path : Path
        The log file (created with its folder if missing).
    """

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._pending: list[str] = []

    def write(self, record: dict[str, Any]) -> None:
        self._pending.append(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        if not self._pending:
            return
        data = "".join(self._pending).encode("ascii")
        good = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, good)
            raise
        self._pending.clear()

    def flush_what_fits(self) -> int:
        """Write the pending records one by one until one does not fit (disk full).

        Returns how many were dropped. The log keeps only complete records; the
        outputs of dropped records are adopted by the next run (identical bytes).
        """
        try:
            self.flush()
            return 0
        except OSError:
            pending, self._pending = self._pending, []
        for number, line in enumerate(pending):
            self._pending = [line]
            try:
                self.flush()
            except OSError:
                self._pending = []
                return len(pending) - number
        return 0

    def close(self) -> None:
        try:
            self.flush()
        finally:
            os.close(self._fd)


def read_records(path: Path) -> list[dict[str, Any]]:
    """All complete records of a log (a torn last line from a crash is ignored)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
