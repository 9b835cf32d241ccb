"""What OUT's audit log says, for the review page: runs, outcomes, pixel-stage flags.

The log is read line by line (it can be large: every record lists the tags acted on);
only the run headers and footers, and per input its latest outcome, are kept. Nothing
in the log is PHI, so everything kept here may be shown.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from anonymizer.errors import UsageError
from anonymizer.pipeline.audit import SHARED_LISTS, resolve_lists

#: Pixel-stage counts that mean the file's pixels held text, or were painted over.
_FLAG_COUNTS = ("text_boxes", "identifier_boxes", "blanked")


def pixels_flagged(pixels: Mapping[str, Any] | None) -> bool:
    """Whether an audit ``pixels`` record says text was found or pixels were cleaned."""
    if not pixels:
        return False
    return any(pixels.get(name) for name in _FLAG_COUNTS) or bool(pixels.get("rules"))


class _Outcome(NamedTuple):
    """The latest record of one input, as much as the page needs."""

    status: str
    reason: str | None
    output: str | None
    pixels: dict[str, Any] | None
    warnings: tuple[str, ...]


@dataclass
class Run:
    """One ``anonymizer run``: its header, and its footer when the run got that far."""

    start: dict[str, Any]
    end: dict[str, Any] | None = None

    @property
    def options(self) -> str:
        return ", ".join(self.start.get("options") or []) or "none"


@dataclass
class AuditSummary:
    """The runs of a log and the totals of its latest record per input."""

    path: Path
    found: bool = False
    runs: list[Run] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    skips: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    #: output path -> the pixel-stage record of every written file that has one
    pixels: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: output paths of every written file
    outputs: set[str] = field(default_factory=set)
    torn_lines: int = 0
    #: (name, id) -> a shared list (tags, warnings) the log defined
    _lists: dict[tuple[str, str], list] = field(default_factory=dict, repr=False)

    @property
    def flagged(self) -> dict[str, dict[str, Any]]:
        """Output path -> pixel record, for the files whose pixels held text or were cleaned."""
        return {output: record for output, record in self.pixels.items()
                if pixels_flagged(record)}

    @property
    def searched(self) -> int:
        """How many written files had their pixels searched for text."""
        return sum(1 for record in self.pixels.values() if record.get("searched_frames"))

    @classmethod
    def load(cls, path: Path, required: bool) -> AuditSummary:
        """Read the log at ``path``; a missing log gives an empty summary unless ``required``.

        Raises
        ------
        UsageError
            When the log cannot be read (or is missing and ``required``).
        """
        summary = cls(path)
        if not path.is_file() and not required:
            return summary
        latest: dict[str, _Outcome] = {}
        try:
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    summary._read_line(line, latest)
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not an audit log (not UTF-8 text)") from None
        if not summary.runs and not latest:
            raise UsageError(f"{path}: not an audit log (no run or file record)")
        summary.found = True
        summary._tally(latest)
        return summary

    def _read_line(self, line: str, latest: dict[str, _Outcome]) -> None:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            self.torn_lines += 1  # the last line of a run that was killed mid-write
            return
        if not isinstance(record, dict):
            self.torn_lines += 1
            return
        kind = record.get("type")
        if kind in SHARED_LISTS:  # a list file records refer to (see pipeline.audit)
            self._lists.setdefault((kind, str(record.get("id"))), record.get(kind) or [])
        elif kind == "run_start":
            self.runs.append(Run(record))
        elif kind == "run_end":
            # a footer follows its own header (a compacted log keeps them in order); a
            # run killed before its footer has none
            if self.runs and self.runs[-1].end is None:
                self.runs[-1].end = record
        elif kind == "file" and "input" in record:
            resolve_lists(record, self._lists)
            latest[record["input"]] = _Outcome(
                str(record.get("status", "")), record.get("reason"), record.get("output"),
                record.get("pixels") if record.get("status") == "written" else None,
                tuple(str(w) for w in record.get("warnings") or ()))

    def _tally(self, latest: dict[str, _Outcome]) -> None:
        for outcome in latest.values():
            self.statuses[outcome.status] += 1
            self.warnings.update(outcome.warnings)
            if outcome.status == "failed":
                self.failures[outcome.reason or "(no reason recorded)"] += 1
            elif outcome.status == "skipped":
                self.skips[outcome.reason or "(no reason recorded)"] += 1
            elif outcome.status == "written" and outcome.output:
                self.outputs.add(outcome.output)
                if outcome.pixels:
                    self.pixels[outcome.output] = outcome.pixels
