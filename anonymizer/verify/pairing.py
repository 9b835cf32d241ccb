"""Which output was made from which input: through OUT's audit log, or a manifest CSV.

The audit log never names an input: its records hold a keyed token of the input's path
relative to IN (:func:`anonymizer.pipeline.worker.input_token`). With the run's key the
tokens of the files under IN are computed again and matched to the records. A manifest
(``input,output`` columns, paths relative to IN and OUT or absolute; the CSV ``anonymizer
run --manifest`` writes is one) pairs outputs of any tool.

Both stream: inputs are discovered and pairs yielded one at a time. The audit log's
``written`` records are held as token -> output path (about 150 bytes an input, as the
run itself holds them to resume), never the records themselves.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from anonymizer.errors import UsageError
from anonymizer.keyed import KeyedSource
from anonymizer.pipeline.discovery import discover
from anonymizer.pipeline.worker import input_token
from anonymizer.verify.results import Pair

INPUT_NOT_FOUND = "input not found under IN"
OUTPUT_MISSING = "output missing"


@dataclass(frozen=True)
class RecordedRun:
    """What the audit log's latest ``run_start`` record says about the run (no PHI)."""

    profile: str | None = None
    profile_sha256: str | None = None
    key_fingerprint: str | None = None

    def builtin_profile(self) -> str:
        """The built-in profile the run used, to verify its outputs with.

        Raises
        ------
        UsageError
            When the profile the log names is not a built-in one, or not the built-in
            of that name as it is now (a custom profile named alike, another version):
            the caller must then say which profile with ``--profile``.
        """
        from anonymizer.profiles import builtin_profile_names, load_profile

        name = self.profile or ""
        if name not in builtin_profile_names():
            raise UsageError(f"the audit log's profile {name!r} is not a built-in profile: "
                             "give it with --profile")
        if self.profile_sha256 and load_profile(name).fingerprint() != self.profile_sha256:
            raise UsageError(f"the audit log's profile {name!r} differs from the built-in "
                             "profile of that name (a custom profile, or another version): "
                             "give it with --profile")
        return name


class AuditPairs:
    """The pairs of a release through its audit log (the latest record of each input).

    Parameters
    ----------
    input_dir, output_dir : Path
        IN and OUT of the run.
    keyed : KeyedSource
        The run's key: it names the inputs in the log.
    audit_path : Path, optional
        The audit log (default ``OUT/audit.jsonl``).

    Raises
    ------
    UsageError
        When the log cannot be read, records no run, or was written with another key.
    """

    def __init__(self, input_dir: Path, output_dir: Path, keyed: KeyedSource,
                 audit_path: Path | None = None):
        self.input_dir, self.output_dir, self.keyed = input_dir, output_dir, keyed
        path = audit_path or output_dir / "audit.jsonl"
        self.run, self._outputs = _read_audit(path)
        if self.run.key_fingerprint and self.run.key_fingerprint != keyed.fingerprint:
            raise UsageError(f"{path}: the run that wrote it used another key "
                             "(give the run's --key-file)")

    def __iter__(self) -> Iterator[Pair]:
        """The pairs in discovery order, then the records whose input was not found.

        Consumed once: each record is paired at most one time.
        """
        outputs = self._outputs
        for relative in discover(self.input_dir, exclude=self.output_dir):
            token = input_token(self.keyed, relative)
            output = outputs.pop(token, None)
            if output is not None:
                yield _pair(output, self.output_dir / output, self.input_dir / relative,
                            token[:16])
        while outputs:
            token, output = outputs.popitem()
            yield Pair(output, self.output_dir / output, None, INPUT_NOT_FOUND, token[:16])


def _read_audit(path: Path) -> tuple[RecordedRun, dict[str, str]]:
    """The latest run header and input token -> output of every input last written."""
    run = RecordedRun()
    outputs: dict[str, str] = {}
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    with handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a crash
            if not isinstance(record, dict):
                continue
            kind = record.get("type")
            if kind == "file" and isinstance(record.get("input"), str):
                output = record.get("output")
                if record.get("status") == "written" and isinstance(output, str) and output:
                    outputs[record["input"]] = output
                else:
                    outputs.pop(record["input"], None)
            elif kind == "run_start":
                run = RecordedRun(record.get("profile"), record.get("profile_sha256"),
                                  record.get("key_fingerprint"))
    if run == RecordedRun():
        raise UsageError(f"{path}: not an audit log of anonymizer run (no run_start record)")
    return run, outputs


def manifest_pairs(manifest: Path, input_dir: Path, output_dir: Path) -> Iterator[Pair]:
    """The pairs a CSV names: ``input`` and ``output`` columns (a ``status`` column, as
    ``anonymizer run --manifest`` writes, keeps the ``written`` rows only).

    Relative paths are taken relative to ``input_dir`` and ``output_dir``; an output
    outside ``output_dir`` cannot be named relative to it and is reported as a problem.

    Raises
    ------
    UsageError
        At once (before any pair), when the file cannot be read or lacks the columns.
    """
    try:
        handle = open(manifest, newline="", encoding="utf-8")  # noqa: SIM115 - closed by the generator
    except OSError as exc:
        raise UsageError(f"{manifest}: {exc.strerror}") from None
    try:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower(): name for name in reader.fieldnames or ()}
    except (csv.Error, UnicodeDecodeError) as exc:
        handle.close()
        raise UsageError(f"{manifest}: not a CSV file ({type(exc).__name__})") from None
    if "input" not in columns or "output" not in columns:
        handle.close()
        raise UsageError(f"{manifest}: needs 'input' and 'output' columns")
    return _manifest_rows(handle, reader, columns, manifest, input_dir, output_dir)


def _manifest_rows(handle: TextIO, reader: csv.DictReader, columns: dict[str, str],
                   manifest: Path, input_dir: Path, output_dir: Path) -> Iterator[Pair]:
    root = output_dir.resolve()
    with handle:
        try:
            for row in reader:
                status = (row.get(columns["status"]) or "").strip() if "status" in columns \
                    else "written"
                source = (row.get(columns["input"]) or "").strip()
                target = (row.get(columns["output"]) or "").strip()
                if status != "written" or not target:
                    continue
                output_path = output_dir / target
                line = f"line {reader.line_num}"
                try:
                    output = output_path.resolve().relative_to(root).as_posix()
                except ValueError:
                    yield Pair(target, output_path, None, "output outside OUT", line)
                    continue
                if not source:
                    yield Pair(output, output_path, None, "no input in the manifest", line)
                    continue
                yield _pair(output, output_path, input_dir / source, line)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{manifest}: unreadable at line {reader.line_num} "
                             f"({type(exc).__name__})") from None


def _pair(output: str, output_path: Path, input_path: Path, label: str) -> Pair:
    if not input_path.is_file():
        return Pair(output, output_path, None, INPUT_NOT_FOUND, label)
    if not output_path.is_file():
        return Pair(output, output_path, input_path, OUTPUT_MISSING, label)
    return Pair(output, output_path, input_path, label=label)
