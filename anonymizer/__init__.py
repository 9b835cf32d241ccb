"""anonymizer: DICOM de-identification batch pipeline.

Profiles (YAML) compile into immutable rule tables, an engine applies them to pydicom
datasets, and a pipeline streams files through reader, engine and atomic writer while
writing a PHI-free audit log.

The public Python API is what ``__all__`` lists (README, "Python API")::

    import anonymizer

    deidentifier = anonymizer.Deidentifier("research", key_file="project.key")
    clean = deidentifier.deidentify(pydicom.dcmread("in.dcm"))
    summary = anonymizer.run("export/", "release/", profile="research",
                             key_file="project.key")

Everything else (modules, classes, functions not listed) is internal and may change.
The engine is imported on first use, so ``import anonymizer`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anonymizer.errors import (
    AnonymizerError,
    DeidentificationError,
    MissingExtraError,
    OutputInUseError,
    PixelDataError,
    ProfileError,
    SecretKeyError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "AnonymizerError",
    "DeidentificationError",
    "Deidentifier",
    "MissingExtraError",
    "OutputInUseError",
    "PixelDataError",
    "Profile",
    "ProfileError",
    "RunSummary",
    "SecretKeyError",
    "UsageError",
    "__version__",
    "load_profile",
    "run",
]

if TYPE_CHECKING:
    from anonymizer.api import Deidentifier, Profile, load_profile, run
    from anonymizer.pipeline import RunSummary

#: name -> module of what is imported on first use (they import pydicom and the engine)
_LAZY = {"Deidentifier": "anonymizer.api", "Profile": "anonymizer.api",
         "load_profile": "anonymizer.api", "run": "anonymizer.api",
         "RunSummary": "anonymizer.pipeline"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'anonymizer' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
