"""What ``run`` and the ``listen`` gateway set up the same way before the first file: the
profile, key and layout, the refusal of an OUT holding another run's settings, the
workers' configuration and the audit log's ``run_start`` record."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from anonymizer import __version__
from anonymizer.errors import UsageError
from anonymizer.keyed import KeyedSource, load_key
from anonymizer.pipeline.layout import DEFAULT_LAYOUT, check_layout
from anonymizer.pipeline.resume import PreviousRuns
from anonymizer.pipeline.worker import WorkerConfig
from anonymizer.pixels.stage import check_pixel_extras
from anonymizer.profiles import load_profile
from anonymizer.rules import CompiledProfile


def inside(child: Path, parent: Path) -> bool:
    """Whether ``child`` is ``parent`` or lies under it (both resolved by the caller)."""
    try:
        child.relative_to(parent)
    except ValueError:
        return False
    return True


def refuse_phi_inside(tables: dict[str, Path | None], target: Path, name: str) -> None:
    """Refuse a PHI table or folder (``--crosswalk``, ...) given inside ``target``.

    Parameters
    ----------
    tables : dict
        Option name -> the path given (None: not given).
    target : Path
        Where de-identified data goes (resolved): OUT or DEST.
    name : str
        What the message calls ``target``.

    Raises
    ------
    UsageError
        ``--crosswalk holds PHI and must be outside OUT``.
    """
    for what, path in tables.items():
        if path is not None and inside(path.resolve(), target):
            raise UsageError(f"{what} holds PHI and must be outside {name}")


@dataclass(frozen=True)
class Settings:
    """The profile, key and layout of one run or gateway session."""

    profile: CompiledProfile
    keyed: KeyedSource
    layout: str

    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """What the audit log records so that a later run with other settings is refused."""
        return {"profile_sha256": self.profile.fingerprint(),
                "key_fingerprint": self.keyed.fingerprint, "layout": self.layout}


def load_settings(profile: str, key_file: str | None, layout: str | None) -> Settings:
    """Load the profile (checking the extras its pixel rules need) and the key, and settle
    the layout (``layout``, else the profile's, else the default).

    Raises
    ------
    UsageError, ProfileError, SecretKeyError, MissingExtraError
        One line, before any file is touched.
    """
    compiled = load_profile(profile)
    check_pixel_extras(compiled.settings.pixels)  # one line before any file, not per file
    keyed = load_key(key_file)
    try:  # the profile's layout was checked when it was compiled; this is the caller's
        chosen = check_layout(layout or compiled.layout or DEFAULT_LAYOUT)
    except ValueError as exc:
        raise UsageError(f"layout: {exc}") from None
    return Settings(compiled, keyed, chosen)


def refuse_other_settings(previous: PreviousRuns, current: dict[str, str], output: Path,
                          force: bool) -> list[str]:
    """The settings (profile, key, layout) that differ from the earlier runs' in ``output``.

    Raises
    ------
    UsageError
        When some differ and ``force`` is not given.
    """
    changed = previous.mismatch(current)
    if changed and not force:
        raise UsageError(f"{output} holds a run with another "
                         f"{' and '.join(k.split('_')[0] for k in changed)}; use a new OUT, or "
                         "--force to reprocess everything")
    return changed


def make_worker_config(profile: str, key_file: str | None, input_dir: Path, output_dir: Path,
                       **options) -> WorkerConfig:
    """A :class:`WorkerConfig` with absolute paths (and a resolvable profile path):
    workers may run elsewhere (another working directory, a Dask worker)."""
    if Path(profile).is_file():
        profile = str(Path(profile).resolve())
    return WorkerConfig(
        profile=profile, key_file=str(Path(key_file).resolve()) if key_file else None,
        input_dir=str(input_dir.resolve()), output_dir=str(output_dir.resolve()), **options)


def start_record(settings: Settings, *, jobs: int, resumed: bool, forced: bool,
                 root: str, mode: str | None = None, **ends: object) -> dict[str, object]:
    """The audit log's ``run_start`` record (no PHI: ``root``, what the inputs came from,
    is keyed; ``ends`` say only what kind of input and output the run has)."""
    profile = settings.profile
    return {
        "type": "run_start", "tool": "anonymizer", "version": __version__,
        **({"mode": mode} if mode is not None else {}),
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile.name, "profile_version": profile.version,
        **settings.fingerprints, "options": list(profile.options), "jobs": jobs,
        "resumed": resumed, "forced": forced,
        "input": settings.keyed.hexdigest("input-root", root, 32),
        **ends,
    }
