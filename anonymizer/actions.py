"""One small frozen class per de-identification action (PS3.15 Table E.1-1a codes).

An action changes one element of a dataset in place, only through
:mod:`anonymizer.elements` (which records the change for the splice writer, whatever
code the action reports), and returns the code of what it did (``"X"``, ``"Z"``,
``"D"``, ``"U"``, ``"K"``, ...), which the engine records in the audit log. Actions
never see the original value unless they must transform it (UIDs, pseudonyms, dates),
and never put it anywhere but the new value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.valuerep import validate_value

from anonymizer import standard
from anonymizer.elements import remove, set_encoded, store, text_values

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from anonymizer.keyed import KeyedSource
    from anonymizer.settings import Settings

TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                      "TM", "UC", "UI", "UR", "UT"})

#: Dummy values valid for each VR, used by D (and by Z where the attribute is Type 1).
DUMMY_BY_VR: dict[str, Any] = {
    "AE": "ANONYMOUS", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101",
    "DS": "0", "DT": "19000101000000", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED",
    "PN": "ANONYMIZED", "SH": "ANONYMIZED", "ST": "ANONYMIZED", "TM": "000000",
    "UC": "ANONYMIZED", "UR": "http://anonymized.invalid", "UT": "ANONYMIZED",
    "FL": 0.0, "FD": 0.0, "SL": 0, "SS": 0, "UL": 0, "US": 0, "SV": 0, "UV": 0, "AT": 0,
    "OB": b"\x00\x00", "OD": b"\x00" * 8, "OF": b"\x00" * 4, "OL": b"\x00" * 4,
    "OV": b"\x00" * 8, "OW": b"\x00\x00", "UN": b"\x00\x00",
}


class ElementContext(Protocol):
    """What an action may know about where it acts (implemented by the engine's
    per-file context): the key, the SOP Class, the nesting path, the profile's
    settings, and the file's keyed values."""

    keyed: KeyedSource
    sop_class_uid: str
    path: tuple[int, ...]
    settings: Settings

    def element_vr(self, ds: Dataset, tag: int) -> str:
        """VR of ``tag`` in ``ds`` without converting its value."""
        ...

    def pseudonym(self, keyword: str, original: str, fmt: str | None) -> str:
        """Keyed pseudonym of a value (lookup table first)."""
        ...

    def date_offset_days(self) -> int:
        """The patient's keyed date offset."""
        ...

    def clean_text(self, text: str) -> str:
        """``text`` with every identifier found in it replaced (see :mod:`anonymizer.scrub`)."""
        ...

    def over_age_cap(self) -> bool:
        """Whether the file shows its patient older than the profile's age cap."""
        ...


class Action(Protocol):
    """A de-identification action on one element."""

    code: str

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        """Change ``ds[tag]`` in place; return the code of what was done."""
        ...

    def describe(self) -> str:
        """Short human-readable form for ``profiles show`` and the profile fingerprint."""
        ...


def set_value(ds: Dataset, tag: int, vr: str, value: Any) -> None:
    """Give ``ds[tag]`` a new value (a list of strings for several values).

    Plain ASCII text (no ESC) is encoded the same in every DICOM character set, so it
    is stored encoded at once; anything else becomes a DataElement pydicom encodes.
    """
    if vr in TEXT_VRS:
        text = "\\".join(value) if isinstance(value, list) else value
        if isinstance(text, str) and text.isascii() and "\x1b" not in text:
            set_encoded(ds, tag, vr, text.encode("ascii"))
            return
    store(ds, DataElement(tag, vr, value))


def set_empty(ds: Dataset, tag: int, vr: str) -> None:
    """Give ``ds[tag]`` a zero-length value (an empty Sequence for SQ)."""
    if vr == "SQ":
        set_value(ds, tag, vr, [])
    else:
        set_encoded(ds, tag, vr, b"")


def set_dummy(ds: Dataset, tag: int, vr: str, ctx: ElementContext) -> str:
    """Give ``ds[tag]`` a non-empty dummy value valid for its VR; return the code applied.

    A UID gets its keyed replacement (so references stay consistent), a Sequence
    is kept and cleaned recursively by the engine.
    """
    if vr == "SQ":
        return "K"
    if vr == "UI":
        return RemapUID().apply(ds, tag, ctx)
    set_value(ds, tag, vr, DUMMY_BY_VR.get(vr, b"\x00\x00"))
    return "D"


@dataclass(frozen=True)
class Remove:
    """X: remove the element."""

    code: str = "X"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        remove(ds, tag)
        return "X"

    def describe(self) -> str:
        return "remove"


@dataclass(frozen=True)
class Empty:
    """Z: zero-length value, or a dummy where the attribute is Type 1 in this IOD."""

    code: str = "Z"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        vr = ctx.element_vr(ds, tag)
        if standard.attribute_type(ctx.sop_class_uid, tag, ctx.path) == "1":
            return set_dummy(ds, tag, vr, ctx)
        set_empty(ds, tag, vr)
        return "Z"

    def describe(self) -> str:
        return "empty"


@dataclass(frozen=True)
class Keep:
    """K: keep the value (a Sequence is kept and its items cleaned recursively)."""

    code: str = "K"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        return "K"

    def describe(self) -> str:
        return "keep"


@dataclass(frozen=True)
class Dummy:
    """D: replace with a non-empty dummy value valid for the VR."""

    code: str = "D"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        return set_dummy(ds, tag, ctx.element_vr(ds, tag), ctx)

    def describe(self) -> str:
        return "dummy"


@dataclass(frozen=True)
class Replace:
    """D with a fixed value, checked against the VR when the profile is compiled."""

    value: Any
    vr: str
    code: str = "D"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        vr = ctx.element_vr(ds, tag)
        set_value(ds, tag, vr, self.value)
        return "D"

    def describe(self) -> str:
        return f"replace {self.value!r}"

    @staticmethod
    def checked(value: Any, vr: str) -> Replace:
        """Build a Replace after validating ``value`` for ``vr``.

        Raises
        ------
        ValueError
            When the value is not valid for the VR.
        """
        if vr == "SQ":
            raise ValueError("cannot replace a Sequence with a value")
        if vr in TEXT_VRS and not isinstance(value, str):
            value = str(value)
        validate_value(vr, value, validation_mode=config.RAISE)
        return Replace(value=value, vr=vr)


@dataclass(frozen=True)
class RemapUID:
    """U: replace every UID value with its keyed replacement (``2.25.<int>``)."""

    code: str = "U"

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        vr = ctx.element_vr(ds, tag)
        if vr == "SQ":
            return "K"  # U on a Sequence: keep it, remap the UIDs inside (engine recurses)
        if vr != "UI":
            return Dummy().apply(ds, tag, ctx)
        new = "\\".join(ctx.keyed.uid(v) for v in text_values(ds, tag))
        if new:
            set_value(ds, tag, vr, new)
        return "U"

    def describe(self) -> str:
        return "uid"


_BY_TYPE = {
    # code: (Type 1, Type 2, Type 3 or unknown) - PS3.15 E.1-1a; see standard/data/README.md
    "X/Z": ("Z", "Z", "X"),
    "X/D": ("D", "D", "X"),
    "Z/D": ("D", "Z", "Z"),
    "X/Z/D": ("D", "Z", "X"),
    "X/Z/U*": ("U", "Z", "X"),
}

_SIMPLE: dict[str, Action] = {"X": Remove(), "Z": Empty(), "D": Dummy(), "K": Keep(),
                              "U": RemapUID()}


@dataclass(frozen=True)
class ByType:
    """A combined code (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) resolved per file.

    The attribute's Type in the IOD of the file's SOP Class, at its nesting path,
    decides: Type 1/1C -> D (U for X/Z/U*), 2/2C -> Z, 3 -> X. An unknown SOP Class
    resolves as Type 3 where the code allows removal (the safer conformant choice).
    """

    combined: str
    code: str = "X/Z/D"

    def __post_init__(self) -> None:
        if self.combined not in _BY_TYPE:
            raise ValueError(f"unknown combined action {self.combined!r}")
        object.__setattr__(self, "code", self.combined)

    def resolve(self, attribute_type: str | None) -> Action:
        """The simple action for an attribute Type ("1", "2", "3" or None)."""
        type1, type2, other = _BY_TYPE[self.combined]
        chosen = {"1": type1, "2": type2}.get(attribute_type or "3", other)
        return _SIMPLE[chosen]

    def apply(self, ds: Dataset, tag: int, ctx: ElementContext) -> str:
        attribute_type = standard.attribute_type(ctx.sop_class_uid, tag, ctx.path)
        return self.resolve(attribute_type).apply(ds, tag, ctx)

    def describe(self) -> str:
        return f"{self.combined} by Type"


def simple_action(code: str) -> Action:
    """The action object for a plain or combined PS3.15 code."""
    if code in _SIMPLE:
        return _SIMPLE[code]
    return ByType(code)
