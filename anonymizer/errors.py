"""Exceptions that reach the user as one clear line (no traceback)."""

from __future__ import annotations


class AnonymizerError(Exception):
    """Base class of errors reported to the user as a single line."""


class ProfileError(AnonymizerError):
    """A profile could not be loaded: names the file and line and what is wrong.

    Parameters
    ----------
    message : str
        What is wrong.
    source : str, optional
        The profile file (or built-in name).
    line : int, optional
        1-based line number in ``source``.
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None):
        self.message = message
        self.source = source
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source or "<profile>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"


class SecretKeyError(AnonymizerError):
    """The secret key is missing, unreadable or too weak."""


class UsageError(AnonymizerError):
    """The command line asks for something the tool refuses (e.g. OUT inside IN)."""


class OutputInUseError(AnonymizerError):
    """Another run holds the output folder (one run per OUT at a time)."""


class DeidentificationError(AnonymizerError):
    """One file could not be fully de-identified; the file is failed, never written."""


class MissingExtraError(AnonymizerError):
    """An optional feature's packages are not installed; the one line names the pip extra.

    Parameters
    ----------
    extra : str
        The extra of ``pyproject.toml`` that installs them (e.g. ``"pixels"``), or, with
        no ``feature``, the whole message (which then names the extra itself).
    feature : str, optional
        What needs them, as the start of the message (e.g. ``"pixel processing"``).
    """

    def __init__(self, extra: str, feature: str | None = None):
        self.extra = extra if feature is not None else None
        super().__init__(extra if feature is None else
                         f"{feature} needs the optional '{extra}' extra: "
                         f"pip install 'anonymizer[{extra}]'")


class PixelDataError(DeidentificationError):
    """Pixel data could not be decoded or rewritten: the file is failed, never written."""
