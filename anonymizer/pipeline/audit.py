"""The audit log: JSON Lines, one record per input file plus a run header and footer.

Nothing in it is PHI: inputs are named by a keyed hash of their relative path,
failure reasons are scrubbed of quoted values and digit runs, tags are listed with
the action taken and never with a value.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, TextIO

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|b'[^']*'")
_DIGITS = re.compile(r"\d{3,}")


def safe_reason(stage: str, exc: BaseException) -> str:
    """A one-line failure reason without values from the file (no PHI).

    OSError gives its strerror only (the path may be PHI); other messages lose
    quoted substrings and runs of 3+ digits, which is where values appear.
    """
    from anonymizer.errors import AnonymizerError

    if isinstance(exc, AnonymizerError):
        message = str(exc)  # ours: written without values
    elif isinstance(exc, OSError):
        message = exc.strerror or type(exc).__name__
    else:
        text = _DIGITS.sub("#", _QUOTED.sub("'…'", str(exc).splitlines()[0] if str(exc) else ""))
        message = f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
    return f"{stage}: {message}"


class AuditLog:
    """Append-only JSON Lines writer; flushed after every record.

    Parameters
    ----------
    path : Path
        The log file (created with its folder if missing).
    """

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self.flush()
        self._handle.close()


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
