"""What ``verify`` finds: one :class:`Finding` per identifier of an input seen in its output.

A finding names the output (its path relative to OUT), where in it the identifier was
seen and what kind of identifier it is; never the identifier itself unless the caller
asked for values (``show_values``), in which case the results are PHI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Where in an output a finding was seen (:attr:`Finding.where`).
ELEMENT = "element"  # a standard element at any depth of the dataset
PRIVATE = "private"  # a private element, or any element inside a private sequence
FILE_META = "file meta"  # group 0002
PATH = "path"  # the output's path relative to OUT
RAW_BYTES = "raw bytes"  # the file's bytes outside what the element walk decoded
PIXELS = "pixels"  # text that OCR read in the pixels
PLACES = (ELEMENT, PRIVATE, FILE_META, PATH, RAW_BYTES, PIXELS)


@dataclass(frozen=True)
class Finding:
    """An identifier of the input seen in its output.

    Attributes
    ----------
    output : str
        The output file, path relative to OUT (with any identifier found in the path
        itself replaced by ``[kind]`` unless values are shown).
    where : str
        One of :data:`PLACES`: ``element``, ``private``, ``file meta``, ``path``,
        ``raw bytes``, ``pixels``.
    tag_path : str
        The element, e.g. ``(0040,A730)[2].(0040,A160)``; ``""`` for path, raw bytes
        and pixels.
    kind : str
        What the identifier is, e.g. ``PatientName surname``, ``PatientID digits``,
        ``StudyDate``, ``UID``.
    value : str or None
        The text found (PHI): only when values were asked for.
    """

    output: str
    where: str
    tag_path: str
    kind: str
    value: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The finding as a JSON-able dict (``value`` left out when not shown)."""
        record = asdict(self)
        if self.value is None:
            del record["value"]
        return record

    def line(self) -> str:
        """One line for a terminal: ``OUTPUT: where TAG: kind`` (and ``= 'value'``)."""
        where = f"{self.where} {self.tag_path}" if self.tag_path else self.where
        shown = f" = {self.value!r}" if self.value is not None else ""
        return f"{self.output}: {where}: {self.kind}{shown}"


@dataclass(frozen=True)
class Pair:
    """An output and the input it was made from.

    Attributes
    ----------
    output : str
        The output's path relative to OUT, as reported in findings.
    output_path : Path
        Where the output is.
    input_path : Path or None
        Where the input is; None when it could not be found (see ``problem``).
    problem : str or None
        Why the pair cannot be checked (input not found, output missing...), or None.
        The reason never holds an input path (paths of inputs may be PHI).
    label : str
        What names the output where its path may not be shown (:func:`unchecked`): its
        input's keyed token from the audit log, or its line in the manifest.
    """

    output: str
    output_path: Path
    input_path: Path | None
    problem: str | None = None
    label: str = ""


@dataclass(frozen=True)
class PairResult:
    """What checking one pair gave.

    Attributes
    ----------
    output : str
        The output's path relative to OUT (redacted like :attr:`Finding.output`).
    findings : tuple of Finding
        The input's identifiers seen in the output.
    error : str or None
        Why the pair could not be (fully) checked: a one-line reason without values;
        findings made before the error still count.
    searched_frames : int
        Frames read by OCR (0 when the pixel policy does not search this image).
    kept : tuple of Finding
        Identifiers in elements the profile keeps on purpose (their rule is ``keep``,
        e.g. Station Name under Retain Device Identity): the profile's choice, listed
        apart from the residuals.
    """

    output: str
    findings: tuple[Finding, ...] = ()
    error: str | None = None
    searched_frames: int = 0
    kept: tuple[Finding, ...] = ()

    @property
    def clean(self) -> bool:
        """Checked completely and nothing found."""
        return not self.findings and self.error is None

    def as_record(self) -> dict[str, Any]:
        """The pair as a JSON-able dict (``type: pair``), for reports."""
        return {"type": "pair", "output": self.output, "findings": len(self.findings),
                "kept": len(self.kept), "error": self.error,
                "searched_frames": self.searched_frames}


def unchecked(pair: Pair, error: str, show_values: bool) -> PairResult:
    """The result of a pair whose output name was never searched for its input's
    identifiers (the input is missing or unreadable, or the check did not finish).

    Such a name cannot be redacted, and a name made with ``--layout mirror`` may hold
    what the input's path held: without ``show_values`` the output is named by its
    pair's label (``[output 1f2e...]``: the input's keyed token, as in the audit log, or
    ``[output line 12]`` of the manifest). Not a plain hash of the path: a guessed path
    (a name, an ID, a date) could be confirmed against it.
    """
    if show_values:
        return PairResult(pair.output, error=error)
    return PairResult(f"[output {pair.label or 'not named'}]", error=error)
