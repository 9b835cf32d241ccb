"""What a previous run in the same OUT left: its settings and the latest record per input."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.pipeline.audit import read_records


@dataclass
class PreviousRuns:
    """The audit log's state before this run starts."""

    settings: dict[str, Any] | None = None  # profile_sha256, key_fingerprint, layout
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> file record
    headers: list[dict[str, Any]] = field(default_factory=list)  # run_start/run_end records

    @classmethod
    def load(cls, audit_path: Path) -> PreviousRuns:
        state = cls()
        if not audit_path.is_file():
            return state
        for record in read_records(audit_path):
            kind = record.get("type")
            if kind == "file" and "input" in record:
                state.latest[record["input"]] = record
            elif kind in ("run_start", "run_end"):
                state.headers.append(record)
                if kind == "run_start":
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
        return {r["output"]: token for token, r in self.latest.items()
                if r.get("status") == "written" and r.get("output")}


def sweep_temporaries(root: Path) -> int:
    """Remove temporary files an interrupted run left under ``root``; return how many."""
    removed = 0
    for folder, _, files in os.walk(root):
        for name in files:
            if name.startswith(TEMP_PREFIX):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except OSError:
                    pass
    return removed


def compact(audit_path: Path, headers: list[dict[str, Any]],
            latest: dict[str, dict[str, Any]]) -> None:
    """Rewrite the log with every run header/footer and only the latest record per input.

    Written to a temporary name and renamed, so a crash leaves the old log intact.
    """
    temporary = audit_path.with_name(f"{TEMP_PREFIX}{audit_path.name}")
    with open(temporary, "w", encoding="utf-8") as handle:
        for record in [*headers[:-1], *latest.values(), *headers[-1:]]:
            handle.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, audit_path)
