"""The batch run: discovery streamed into joblib batches, ordered commit, audit log.

Workers write each output to a temporary name; the main process commits results in
discovery order (joblib returns them in submission order), so output names, collision
suffixes and the audit log are the same whatever the number of jobs.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from joblib import Parallel, delayed
from tqdm import tqdm

from anonymizer import __version__
from anonymizer.errors import UsageError
from anonymizer.keyed import load_key
from anonymizer.pipeline.audit import AuditLog
from anonymizer.pipeline.discovery import discover
from anonymizer.pipeline.layout import DEFAULT_LAYOUT, check_layout, with_suffix_token
from anonymizer.pipeline.worker import FileOutcome, WorkerConfig, process_batch
from anonymizer.profiles import load_profile

AUDIT_NAME = "audit.jsonl"


@dataclass(frozen=True)
class RunConfig:
    """Options of one ``anonymizer run``."""

    input_dir: Path
    output_dir: Path
    profile: str
    key_file: str | None = None
    jobs: int = 0  # 0: all cores
    batch_size: int = 32
    layout: str | None = None  # None: the profile's layout, else the default
    audit_path: Path | None = None
    manifest_path: Path | None = None
    crosswalk_path: Path | None = None
    progress: bool = True


@dataclass
class RunSummary:
    """Totals of a run, for the CLI's exit code and summary line."""

    counts: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    audit_path: Path | None = None
    elapsed: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.counts["failed"] else 0


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
    except ValueError:
        return False
    return True


def check_paths(config: RunConfig) -> None:
    """Refuse OUT == IN, OUT inside IN, IN inside OUT, PHI files written inside OUT.

    Raises
    ------
    UsageError
        One line saying which.
    """
    source = config.input_dir.resolve()
    target = config.output_dir.resolve()
    if not source.is_dir():
        raise UsageError(f"{config.input_dir}: input folder does not exist")
    if source == target:
        raise UsageError("OUT must differ from IN")
    if _inside(target, source):
        raise UsageError("OUT must not be inside IN")
    if _inside(source, target):
        raise UsageError("IN must not be inside OUT")
    for what, path in (("--manifest", config.manifest_path),
                       ("--crosswalk", config.crosswalk_path)):
        if path is not None and _inside(path.resolve(), target):
            raise UsageError(f"{what} holds PHI and must be outside OUT")
        if path is not None and _inside(path.resolve(), source):
            raise UsageError(f"{what} must not be inside IN")


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def run(config: RunConfig) -> RunSummary:
    """De-identify every DICOM file under ``config.input_dir`` into ``config.output_dir``."""
    check_paths(config)
    profile = load_profile(config.profile)
    keyed = load_key(config.key_file)
    layout = check_layout(config.layout or profile.layout or DEFAULT_LAYOUT)
    jobs = config.jobs or os.cpu_count() or 1
    config.output_dir.mkdir(parents=True, exist_ok=True)
    audit_path = config.audit_path or config.output_dir / AUDIT_NAME
    audit = AuditLog(audit_path)
    started = time.monotonic()
    audit.write({
        "type": "run_start", "tool": "anonymizer", "version": __version__,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile.name, "profile_version": profile.version,
        "profile_sha256": profile.fingerprint(), "options": list(profile.options),
        "key_fingerprint": keyed.fingerprint, "layout": layout, "jobs": jobs,
        "input": keyed.hexdigest("input-root", str(config.input_dir.resolve()), 32),
    })
    worker_config = WorkerConfig(
        profile=config.profile, key_file=config.key_file,
        input_dir=str(config.input_dir), output_dir=str(config.output_dir),
        layout=layout, want_crosswalk=config.crosswalk_path is not None)
    committer = _Committer(config, audit)
    summary = RunSummary(audit_path=audit_path)
    excluded = config.output_dir if _inside(config.output_dir.resolve(),
                                            config.input_dir.resolve()) else None
    paths = discover(config.input_dir, exclude=excluded)
    bar = tqdm(unit="file", disable=not config.progress, dynamic_ncols=True, file=sys.stderr)
    try:
        with Parallel(n_jobs=jobs, return_as="generator") as parallel:
            results = parallel(delayed(process_batch)(worker_config, batch)
                               for batch in _batches(paths, config.batch_size))
            for outcomes in results:
                for outcome in outcomes:
                    status = committer.commit(outcome)
                    summary.counts[status] += 1
                    if status == "failed" and outcome.reason:
                        summary.failures[outcome.reason] += 1
                    bar.update(1)
                bar.set_postfix(failed=summary.counts["failed"], refresh=False)
                audit.flush()
    finally:
        bar.close()
        committer.close()
        summary.elapsed = time.monotonic() - started
        audit.write({
            "type": "run_end", "version": __version__,
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(summary.elapsed, 3), "counts": dict(summary.counts),
        })
        audit.close()
    return summary


class _Committer:
    """Renames finished temporaries to final names in order; writes audit/manifest/crosswalk."""

    def __init__(self, config: RunConfig, audit: AuditLog):
        self.output_dir = config.output_dir
        self.audit = audit
        self.claimed: set[str] = set()
        self.pseudonyms: dict[tuple[str, str], str] = {}
        self.manifest = self._open_csv(config.manifest_path, ["input", "output", "status"])
        self.crosswalk = self._open_csv(config.crosswalk_path, [
            "kind", "attribute", "original", "replacement", "date_offset_days"])
        self.crosswalk_seen: set[tuple[str, str, str]] = set()

    @staticmethod
    def _open_csv(path: Path | None, header: list[str]):
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        os.chmod(path, 0o600)
        writer = csv.writer(handle)
        writer.writerow(header)
        return handle, writer

    def _collision(self, outcome: FileOutcome) -> str | None:
        """A pseudonym shared by two different originals: the later file fails."""
        for keyword, digest, new in outcome.pseudonym_checks:
            holder = self.pseudonyms.setdefault((keyword, new), digest)
            if holder != digest:
                return (f"de-identify: pseudonym collision on {keyword} (two different values "
                        "map to one pseudonym; use a longer {hash:N})")
        return None

    def _place(self, outcome: FileOutcome) -> str:
        """Move the temporary to its final name; never overwrite (collision -> suffix)."""
        assert outcome.target is not None and outcome.temporary is not None
        name = outcome.target
        if name in self.claimed:
            name = with_suffix_token(name, outcome.token[:12])
        temporary = Path(outcome.temporary)
        while True:
            final = self.output_dir / name
            try:
                os.link(temporary, final)
                break
            except FileExistsError:
                if name != outcome.target:
                    raise
                name = with_suffix_token(name, outcome.token[:12])
        temporary.unlink()
        self.claimed.add(name)
        return name

    def commit(self, outcome: FileOutcome) -> str:
        if outcome.status == "written":
            reason = self._collision(outcome)
            if reason is not None:
                Path(outcome.temporary or "").unlink(missing_ok=True)
                outcome.status, outcome.reason = "failed", reason
            else:
                try:
                    outcome.target = self._place(outcome)
                except OSError as exc:
                    Path(outcome.temporary or "").unlink(missing_ok=True)
                    outcome.status = "failed"
                    outcome.reason = f"write: {exc.strerror or type(exc).__name__}"
        record = {
            "type": "file", "input": outcome.token, "status": outcome.status,
            "reason": outcome.reason,
            "output": outcome.target if outcome.status == "written" else None,
            "input_sha256": outcome.input_sha256,
            "output_sha256": outcome.output_sha256 if outcome.status == "written" else None,
            "counts": outcome.counts, "tags": outcome.acted, "warnings": outcome.warnings,
        }
        self.audit.write(record)
        if self.manifest is not None:
            self.manifest[1].writerow([outcome.relative, record["output"] or "", outcome.status])
        if self.crosswalk is not None and outcome.crosswalk and outcome.status == "written":
            self._write_crosswalk(outcome.crosswalk)
        return outcome.status

    def _write_crosswalk(self, entry: dict[str, object]) -> None:
        assert self.crosswalk is not None
        writer = self.crosswalk[1]
        offset = entry.get("date_offset_days")
        rows: list[tuple[str, str, str, str]] = [
            ("pseudonym", kw, orig, new)
            for kw, orig, new, _ in entry["pseudonyms"]]  # type: ignore[union-attr]
        study = entry.get("study_uid")
        if study:
            rows.append(("uid", "StudyInstanceUID", study[0], study[1]))  # type: ignore[index]
        for kind, keyword, original, new in rows:
            if (kind, keyword, original) in self.crosswalk_seen:
                continue
            self.crosswalk_seen.add((kind, keyword, original))
            days = offset if keyword == "PatientID" and offset is not None else ""
            writer.writerow([kind, keyword, original, new, days])

    def close(self) -> None:
        for handle in (self.manifest, self.crosswalk):
            if handle is not None:
                handle[0].close()
