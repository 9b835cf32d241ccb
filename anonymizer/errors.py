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


class DeidentificationError(AnonymizerError):
    """One file could not be fully de-identified; the file is failed, never written."""


class MissingExtraError(AnonymizerError):
    """An optional feature needs a pip extra that is not installed; the message names it."""
