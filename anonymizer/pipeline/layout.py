"""Output paths built from de-identified values only (or the input's, with ``mirror``)."""

from __future__ import annotations

import re
import string
from pathlib import PurePosixPath

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from anonymizer.elements import text_values

DEFAULT_LAYOUT = "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"
MIRROR = "mirror"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_COMPONENT = 120


def check_layout(template: str) -> str:
    """Validate a layout template: keyword fields only, a relative path.

    Raises
    ------
    ValueError
        With what is wrong.
    """
    if template == MIRROR:
        return template
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad braces ({exc}): a field is {{Keyword}}, a literal brace "
                         "{{ or }}") from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        # not name: pydicom gives a tag even for the empty keyword
        if spec or conversion or not name or tag_for_keyword(name) is None:
            raise ValueError(f"layout field {{{name}}} is not a DICOM keyword")
    if template.startswith("/"):
        raise ValueError("layout must be a relative path, not an absolute one")
    # Split by hand: PurePosixPath would drop the empty and '.' components it normalises.
    if any(part in ("", ".", "..") for part in template.split("/")):
        raise ValueError("layout must not have empty, '.' or '..' path components")
    return template


def sanitize(component: str) -> str:
    """A safe path component: ``[A-Za-z0-9._-]`` only, no leading dot, bounded length."""
    cleaned = _UNSAFE.sub("_", component).lstrip(".")[:_MAX_COMPONENT]
    return cleaned or "_"


def output_path(template: str, ds: Dataset, relative_input: str, input_token: str) -> str:
    """The relative output path of one de-identified dataset.

    With ``mirror`` the input's relative path is kept (components sanitised of
    control characters and separators only). Otherwise each ``{Keyword}`` is filled
    from the *de-identified* dataset; a missing or empty value becomes
    ``no-Keyword`` in a folder and the input's keyed token in the file name.
    """
    if template == MIRROR:
        parts = [p for p in PurePosixPath(relative_input).parts if p not in ("", ".", "..")]
        return "/".join(re.sub(r"[\x00-\x1f\x7f\\]", "_", p).lstrip(".") or "_" for p in parts)
    components = template.split("/")
    out = []
    for index, component in enumerate(components):
        last = index == len(components) - 1
        pieces = []
        for literal, name, _, _ in string.Formatter().parse(component):
            pieces.append(literal)
            if name is None:
                continue
            text = "\\".join(text_values(ds, tag_for_keyword(name))).strip()
            pieces.append(text if text else (input_token if last else f"no-{name}"))
        out.append(sanitize("".join(pieces)))
    return "/".join(out)


def with_suffix_token(relative: str, token: str) -> str:
    """``a/b/name.dcm`` -> ``a/b/name~token.dcm``: the deterministic collision name."""
    path = PurePosixPath(relative)
    return str(path.with_name(f"{path.stem}~{token}{path.suffix}"))
