"""What a previous run in the same OUT left: its settings and the latest record per input."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.pipeline.audit import read_records


class Done(NamedTuple):
    """What the latest record of one input says (kept small: one per input in memory)."""

    status: str
    input_sha256: str | None
    output: str | None


@dataclass
class PreviousRuns:
    """The audit log's state before this run starts."""

    settings: dict[str, Any] | None = None  # profile_sha256, key_fingerprint, layout
    latest: dict[str, Done] = field(default_factory=dict)  # input token -> latest outcome

    @classmethod
    def load(cls, audit_path: Path) -> PreviousRuns:
        state = cls()
        if not audit_path.is_file():
            return state
        for record in read_records(audit_path):
            kind = record.get("type")
            if kind == "file" and "input" in record:
                state.latest[record["input"]] = Done(record.get("status", ""),
                                                     record.get("input_sha256"),
                                                     record.get("output"))
            elif kind == "run_start":
                state.settings = {k: record.get(k) for k in
                                  ("profile_sha256", "key_fingerprint", "layout")}
        return state

    def mismatch(self, current: dict[str, Any]) -> list[str]:
        """Names of the settings that differ from the previous run's."""
        if self.settings is None:
            return []
        return [key for key, value in current.items() if self.settings.get(key) != value]

    def claims(self) -> dict[str, str]:
        """Output path -> input token of every file a previous run wrote."""
        return {done.output: token for token, done in self.latest.items()
                if done.status == "written" and done.output}


def sweep_temporaries(root: Path) -> int:
    """Remove temporary files (and folders: a network source's spool) an interrupted run
    left under ``root``; return how many."""
    removed = 0
    for folder, folders, files in os.walk(root):
        for name in [name for name in folders if name.startswith(TEMP_PREFIX)]:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            folders.remove(name)
            removed += 1
        for name in files:
            if name.startswith(TEMP_PREFIX):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except OSError:
                    pass
    return removed


def compact(audit_path: Path) -> None:
    """Rewrite the log with every run header/footer and only the latest record per input.

    Two streaming passes over the file (memory: one index per input, not the records).
    Written to a temporary name and renamed, so a crash leaves the old log intact.
    """
    latest: dict[str, int] = {}
    headers: list[int] = []
    with open(audit_path, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line from a crash
            if record.get("type") == "file" and "input" in record:
                latest[record["input"]] = number
            elif record.get("type") in ("run_start", "run_end"):
                headers.append(number)
    keep = set(latest.values())
    final = headers[-1] if headers else -1
    temporary = audit_path.with_name(f"{TEMP_PREFIX}{audit_path.name}")
    try:
        with open(audit_path, encoding="utf-8") as source, \
                open(temporary, "w", encoding="utf-8") as target:
            # every run's header and footer first, then one record per input, then the
            # footer of the last run
            earlier = set(headers) - {final}
            for number, line in enumerate(source):
                if number in earlier:
                    target.write(line)
            source.seek(0)
            tail = ""
            for number, line in enumerate(source):
                if number in keep:
                    target.write(line)
                elif number == final:
                    tail = line
            target.write(tail)
            target.flush()
            os.fsync(target.fileno())
        os.replace(temporary, audit_path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
