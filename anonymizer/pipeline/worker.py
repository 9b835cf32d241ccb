"""What runs in a worker process: one batch of files through reader -> engine -> writer."""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from anonymizer.engine import Engine
from anonymizer.errors import DeidentificationError
from anonymizer.io import NotDicomError, read_dataset, write_temporary
from anonymizer.keyed import KeyedSource, load_key
from anonymizer.pipeline.audit import safe_reason
from anonymizer.pipeline.layout import output_path
from anonymizer.profiles import load_profile


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs, picklable; the key itself is loaded by the worker."""

    profile: str
    key_file: str | None
    input_dir: str
    output_dir: str
    layout: str
    want_crosswalk: bool = False


@dataclass
class FileOutcome:
    """The result for one input, sent back to the main process (no PHI unless crosswalk)."""

    relative: str
    token: str
    status: str  # written | failed | skipped
    reason: str | None = None
    target: str | None = None
    temporary: str | None = None
    input_sha256: str | None = None
    output_sha256: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    acted: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: (keyword, keyed digest of the original, pseudonym): for the collision check
    pseudonym_checks: list[tuple[str, str, str]] = field(default_factory=list)
    #: PHI, filled only when a crosswalk was asked for
    crosswalk: dict[str, object] | None = None


def quiet_pydicom() -> None:
    """Silence pydicom's warnings and log records: their messages quote element values."""
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    warnings.filterwarnings("ignore", category=UserWarning, message=r".*(VR|value|Invalid)")
    logger = logging.getLogger("pydicom")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    logger.setLevel(logging.CRITICAL)


@functools.lru_cache(maxsize=4)
def _engine(profile: str, key_file: str | None) -> tuple[Engine, KeyedSource]:
    quiet_pydicom()
    keyed = load_key(key_file)
    return Engine(load_profile(profile), keyed), keyed


def input_token(keyed: KeyedSource, relative: str) -> str:
    """Keyed name of an input (its relative path may be PHI)."""
    return keyed.hexdigest("input-path", relative, 32)


def process_batch(config: WorkerConfig, relatives: list[str]) -> list[FileOutcome]:
    """De-identify a batch; every file gets an outcome, no exception escapes per file."""
    engine, keyed = _engine(config.profile, config.key_file)
    return [process_file(config, engine, keyed, relative) for relative in relatives]


def process_file(config: WorkerConfig, engine: Engine, keyed: KeyedSource,
                 relative: str) -> FileOutcome:
    """Read, de-identify and write one file to a temporary name (renamed by the caller)."""
    token = input_token(keyed, relative)
    outcome = FileOutcome(relative=relative, token=token, status="failed")
    source = Path(config.input_dir) / relative
    try:
        read = read_dataset(source)
    except NotDicomError as exc:
        outcome.status, outcome.reason = "skipped", str(exc)
        return outcome
    except Exception as exc:  # noqa: BLE001 - any parse failure fails this file only
        outcome.reason = safe_reason("read", exc)
        return outcome
    outcome.input_sha256 = read.sha256
    ds = read.dataset
    try:
        result = engine.deidentify(ds)
        target = output_path(config.layout, ds, relative, token[:16])
    except DeidentificationError as exc:
        outcome.reason = safe_reason("de-identify", exc)
        return outcome
    except Exception as exc:  # noqa: BLE001
        outcome.reason = safe_reason("de-identify", exc)
        return outcome
    outcome.counts = dict(result.counts)
    outcome.acted = result.acted
    outcome.warnings = read.notes + result.warnings
    outcome.pseudonym_checks = [(kw, keyed.hexdigest("collision", orig, 32), new)
                                for kw, orig, new, hashed in result.pseudonyms if hashed]
    if config.want_crosswalk:
        outcome.crosswalk = {
            "pseudonyms": result.pseudonyms, "date_offset_days": result.date_offset_days,
            "study_uid": result.study_uid_map,
        }
    try:
        directory = (Path(config.output_dir) / target).parent
        temporary, digest = write_temporary(ds, directory, f"{token}.part")
    except Exception as exc:  # noqa: BLE001
        outcome.reason = safe_reason("write", exc)
        return outcome
    outcome.status, outcome.target = "written", target
    outcome.temporary, outcome.output_sha256 = str(temporary), digest
    return outcome
