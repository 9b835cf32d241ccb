"""Where ``verify`` puts what it found: lines on a terminal, or a JSON Lines report file.

Without values a report is not PHI: it names outputs (their identifiers in the path
redacted), elements and kinds. With values it is PHI: it is refused inside OUT and
created owner-only (mode 0600), written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from anonymizer.errors import UsageError
from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.pipeline.runner import inside
from anonymizer.verify.results import Finding, PairResult


@dataclass
class Totals:
    """Counts over every pair, for the summary line and the exit code."""

    pairs: int = 0
    with_findings: int = 0
    findings: int = 0
    kept: int = 0
    errors: int = 0
    frames: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)

    def add(self, result: PairResult, strict: bool) -> None:
        counted = result.findings + result.kept if strict else result.findings
        self.pairs += 1
        self.with_findings += bool(counted)
        self.findings += len(counted)
        self.kept += 0 if strict else len(result.kept)
        self.errors += result.error is not None
        self.frames += result.searched_frames
        self.by_kind.update(f"{f.where}: {f.kind}" for f in counted)

    @property
    def clean(self) -> bool:
        """Every pair checked, nothing found."""
        return not self.findings and not self.errors

    def line(self, elapsed: float) -> str:
        """The summary, as ``run`` prints its own."""
        kept = f", {self.kept} kept by the profile (--strict lists them)" if self.kept else ""
        ocr = f", {self.frames} frames read by OCR" if self.frames else ""
        return (f"anonymizer: {self.pairs} outputs verified: {self.with_findings} with "
                f"findings ({self.findings} findings), {self.errors} not checked{kept}{ocr} "
                f"in {elapsed:.1f}s")

    def as_record(self, elapsed: float) -> dict[str, Any]:
        return {"type": "summary", "pairs": self.pairs, "with_findings": self.with_findings,
                "findings": self.findings, "kept": self.kept, "not_checked": self.errors,
                "ocr_frames": self.frames, "elapsed_s": round(elapsed, 3),
                "by_kind": dict(self.by_kind.most_common())}


class Report:
    """Findings as lines on ``stream``, or as JSON Lines in ``path``.

    Parameters
    ----------
    stream : text stream
        Where lines go when there is no ``path`` (the terminal).
    path : Path, optional
        The JSON Lines report file.
    show_values : bool
        Findings carry values: the file is PHI (refused inside ``output_dir``, mode 0600).
    output_dir : Path
        OUT, which a PHI report must stay out of.
    strict : bool
        Findings the profile keeps count as findings (else they go to the file only,
        as ``kept`` records).

    Raises
    ------
    UsageError
        When a report with values would be written inside OUT, or cannot be created.
    """

    def __init__(self, stream: TextIO, path: Path | None, show_values: bool,
                 output_dir: Path, strict: bool):
        self.stream, self.path, self.strict = stream, path, strict
        self._file: TextIO | None = None
        self._temporary: Path | None = None
        if path is None:
            return
        if show_values and inside(path.resolve(), output_dir.resolve()):
            raise UsageError("--report holds values (PHI) with --show-values and must be "
                             "outside OUT")
        self._temporary = path.with_name(f"{TEMP_PREFIX}{path.name}")
        try:
            # a temporary left by a killed run keeps its mode: removed, so the mode is ours
            self._temporary.unlink(missing_ok=True)
            fd = os.open(self._temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         0o600 if show_values else 0o644)
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
        self._file = os.fdopen(fd, "w", encoding="utf-8")

    def lines(self, result: PairResult) -> list[str]:
        """What a terminal shows of one result (empty for a clean pair)."""
        shown = result.findings + result.kept if self.strict else result.findings
        lines = [f.line() for f in shown]
        if result.error is not None:
            lines.append(f"{result.output}: not checked: {result.error}")
        return lines

    def add(self, result: PairResult) -> list[str]:
        """Record one result; returns the lines to print (none when writing a file)."""
        if self._file is None:
            return self.lines(result)
        write = self._file.write
        for finding in result.findings:
            write(_json("finding", finding))
        for finding in result.kept:
            write(_json("finding" if self.strict else "kept", finding))
        if result.error is not None or result.findings or result.kept:
            write(json.dumps(result.as_record(), ensure_ascii=False) + "\n")
        return []

    def close(self, totals: Totals, elapsed: float) -> None:
        """Finish the file (summary record, flushed, renamed into place)."""
        if self._file is None or self._temporary is None or self.path is None:
            return
        self._file.write(json.dumps(totals.as_record(elapsed)) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temporary, self.path)
        self._file = None

    def abandon(self) -> None:
        """Remove an unfinished file (the command stopped before the end)."""
        if self._file is not None and self._temporary is not None:
            self._file.close()
            self._temporary.unlink(missing_ok=True)
            self._file = None


def _json(kind: str, finding: Finding) -> str:
    return json.dumps({"type": kind, **finding.as_record()}, ensure_ascii=False) + "\n"

