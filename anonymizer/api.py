"""The Python API: what ``anonymizer/__init__.py`` exports (see its ``__all__``).

For people with their own pydicom pipelines and notebooks: load a profile, de-identify a
``pydicom.Dataset`` in memory with the same rules and keyed results as ``anonymizer
run``, or run a whole batch with the command's options. The engine (pydicom, numpy) is
imported when first used, so ``import anonymizer`` stays light.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anonymizer.errors import AnonymizerError, DeidentificationError, SecretKeyError

if TYPE_CHECKING:
    import pydicom

    from anonymizer.engine import Engine
    from anonymizer.pipeline import RunSummary
    from anonymizer.rules import CompiledProfile

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Profile:
    """A compiled profile: immutable rules, ready for :class:`Deidentifier` or :func:`run`.

    Attributes
    ----------
    name : str
        The profile's ``name``.
    version : str
        Its ``version`` (stamped into De-identification Method).
    source : str
        The built-in name or the YAML path it was loaded from.
    fingerprint : str
        sha256 of the compiled rules (the audit log's ``profile_sha256``).
    """

    name: str
    version: str
    source: str
    fingerprint: str
    _compiled: CompiledProfile = field(repr=False, compare=False)


def load_profile(name_or_path: PathLike) -> Profile:
    """Load and compile a profile.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A built-in profile name (``"basic"``, ``"default"``, ``"research"``...) or the
        path of a YAML profile.

    Returns
    -------
    Profile
        The compiled profile.

    Raises
    ------
    ProfileError
        When it cannot be found, read or compiled (the message names the file and line).
    """
    from anonymizer.profiles import load_profile as compile_profile

    source = os.fspath(name_or_path)
    compiled = compile_profile(source)
    return Profile(compiled.name, compiled.version, source, compiled.fingerprint(), compiled)


def _keyed_source(key: bytes | str | None, key_file: PathLike | None) -> Any:
    from anonymizer.keyed import KeyedSource, load_key

    if key is not None and key_file is not None:
        raise SecretKeyError("give the key or a key file, not both")
    if key is None:
        return load_key(key_file)  # the key file, else $ANONYMIZER_KEY, as the command
    material = key.encode() if isinstance(key, str) else bytes(key)
    return KeyedSource(material.strip())  # as a key file's content is read


class Deidentifier:
    """De-identifies pydicom datasets in memory, as ``anonymizer run`` does files.

    The same profile and key give the same results as ``anonymizer run``: the same
    pseudonyms, UIDs and date shifts, and a dataset that written out is the file ``run``
    writes for it (element for element).

    Parameters
    ----------
    profile : Profile or str or os.PathLike, default "default"
        A profile from :func:`load_profile`, or a built-in name or YAML path to load.
    key : bytes or str, optional
        The secret key itself (at least 16 bytes), as a key file holds it.
    key_file : str or os.PathLike, optional
        A key file (``anonymizer keygen``). With neither ``key`` nor ``key_file``, the
        ``ANONYMIZER_KEY`` environment variable, as for the command.

    Raises
    ------
    SecretKeyError
        No usable key (missing, too short, both ``key`` and ``key_file``).
    ProfileError
        The profile cannot be loaded.
    MissingExtraError
        The profile searches pixels for burned-in text and the ``ocr`` extra is missing.
    """

    def __init__(self, profile: Profile | PathLike = "default", *,
                 key: bytes | str | None = None, key_file: PathLike | None = None):
        from anonymizer.engine import Engine
        from anonymizer.pixels.stage import check_pixel_extras

        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        check_pixel_extras(self.profile._compiled.settings.pixels)
        self._engine: Engine = Engine(self.profile._compiled,
                                      _keyed_source(key, key_file))

    @property
    def key_fingerprint(self) -> str:
        """The key's fingerprint (a MAC of a constant), as the audit log records it."""
        return self._engine.keyed.fingerprint

    def deidentify(self, ds: pydicom.Dataset) -> pydicom.Dataset:
        """A de-identified copy of ``ds`` (``ds`` itself is left as it is).

        Parameters
        ----------
        ds : pydicom.Dataset
            A dataset, e.g. from ``pydicom.dcmread`` (its ``file_meta`` is de-identified
            too when it has one).

        Returns
        -------
        pydicom.Dataset
            The de-identified dataset, with Patient Identity Removed, De-identification
            Method and its code sequence stamped as in every output of ``run``, and the
            file meta ``run`` writes: ``save_as(path, enforce_file_format=True)`` writes
            the bytes ``run`` writes for the same input.

        Raises
        ------
        DeidentificationError
            When the dataset cannot be fully de-identified (burned-in text no rule
            cleaned, a corrupt element, pixel data that cannot be decoded, anything
            unexpected): nothing is returned. The message is one line from the audit
            log's vocabulary (:mod:`anonymizer.reasons`), never a value of the dataset.
        MissingExtraError
            The pixel data needs a decoder whose extra is not installed.

        Notes
        -----
        ``run`` also fails the later of two files whose different values map to one
        pseudonym; one dataset at a time cannot see that (use a longer ``{hash:N}``).
        """
        from anonymizer.io.writer import prepare_file_meta
        from anonymizer.reasons import describe

        copied = copy.deepcopy(ds)
        try:
            # values are read from their bytes, not through pydicom's validation: the
            # caller's pydicom settings do not change the result
            self._engine.deidentify(copied)
            # the file meta, preamble and encoding run's writer gives the output
            prepare_file_meta(copied)
        except AnonymizerError:
            raise  # ours: DeidentificationError, or MissingExtraError for a decoder
        except Exception as exc:  # noqa: BLE001 - fail closed, in the audit log's words
            raise DeidentificationError(describe(exc)) from None
        return copied


def run(input_dir: PathLike, output_dir: PathLike, *, profile: Profile | PathLike = "default",
        key_file: PathLike | None = None, jobs: int = 0, batch_size: int = 32,
        layout: str | None = None, audit: PathLike | None = None,
        manifest: PathLike | None = None, crosswalk: PathLike | None = None,
        quarantine: PathLike | None = None, force: bool = False, rehash: bool = False,
        timeout: float = 600.0, wait_lock: float = 0.0, backend: str = "local",
        scheduler: str | None = None,
        query: list[str] | tuple[str, ...] = (), studies: PathLike | None = None,
        ae_title: str | None = None, move_port: int | None = None,
        token_file: PathLike | None = None, ca_file: PathLike | None = None,
        progress: bool = False) -> RunSummary:
    """De-identify every DICOM file under ``input_dir`` into ``output_dir``: ``anonymizer
    run`` (the same checks, outputs, audit log, resume and lock).

    Parameters
    ----------
    input_dir, output_dir : str or os.PathLike
        IN and OUT: folders, or network URLs (``dicomweb+http(s)://...``,
        ``dimse://AET@HOST:PORT``) as for the command.
    profile : Profile or str or os.PathLike, default "default"
        A built-in name or a YAML path (a :class:`Profile` is run from its ``source``).
    key_file : str or os.PathLike, optional
        The key file; else the ``ANONYMIZER_KEY`` environment variable.
    jobs, batch_size, layout, audit, manifest, crosswalk, quarantine, force, rehash, \
timeout, wait_lock, backend, scheduler, query, studies, ae_title, move_port, token_file, ca_file
        The command's options of the same names (``--jobs``... ``--ca-file``), with its
        defaults; ``query`` is the list of ``KEY=VALUE`` of ``--query``.
    progress : bool, default False
        Show the progress bar (on a terminal only, as the command).

    Returns
    -------
    RunSummary
        ``counts`` (a Counter by status: ``written``, ``failed``, ``skipped``,
        ``unchanged``), ``failures`` (a Counter of failure reasons, in the audit log's
        vocabulary), ``audit_path``, ``elapsed`` (seconds), ``stopped`` (why the run
        stopped early, else None), ``left`` (inputs not reached) and ``exit_code`` (the
        command's: 0, 1 some failed, 3 OUT not writable, 130/143 a signal).

    Raises
    ------
    UsageError, ProfileError, SecretKeyError, MissingExtraError, OutputInUseError
        What the command reports with exit 2 or 4, before any file is processed.
    """
    from anonymizer import cli
    from anonymizer.pipeline import run as run_pipeline

    arguments = ["run", os.fspath(input_dir), os.fspath(output_dir)]
    args = cli.build_parser().parse_args(arguments)  # the command's defaults
    options: dict[str, Any] = {
        "profile": profile.source if isinstance(profile, Profile) else os.fspath(profile),
        "key_file": None if key_file is None else os.fspath(key_file),
        "jobs": jobs, "batch_size": batch_size, "layout": layout,
        "audit": _path(audit), "manifest": _path(manifest), "crosswalk": _path(crosswalk),
        "quarantine": _path(quarantine), "force": force, "rehash": rehash,
        "timeout": timeout,
        "wait_lock": wait_lock, "backend": backend, "scheduler": scheduler,
        "query": list(query), "studies": _path(studies), "move_port": move_port,
        "token_file": _path(token_file), "ca_file": _path(ca_file),
        "no_progress": not progress,
    }
    if ae_title is not None:
        options["ae_title"] = ae_title
    for name, value in options.items():
        setattr(args, name, value)
    return run_pipeline(cli.run_config(args))


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)
