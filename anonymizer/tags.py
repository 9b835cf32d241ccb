"""Tag notation: parsing ``(gggg,eeee)`` strings, keywords and ``x`` wildcard patterns."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from pydicom.datadict import dictionary_VM, dictionary_VR, tag_for_keyword

#: The value representations of PS3.5 Table 6.2-1.
VALID_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT",
                       "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST",
                       "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"})
#: VRs with a 4-byte length (and 2 reserved bytes) in explicit VR encoding (PS3.5 7.1.2).
LONG_LENGTH_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR",
                             "UT", "UV"})
#: The length of a value that ends at a delimitation item instead (PS3.5 7.1.3).
UNDEFINED_LENGTH = 0xFFFFFFFF
#: The encoded (FFFE,E000) Item tag, little endian: how a sequence or fragment item starts.
ITEM_TAG = b"\xfe\xff\x00\xe0"
#: Item and Sequence Delimitation Items, little endian, with their zero length.
ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
PIXEL_DATA = 0x7FE00010
#: Attributes more than one module decides on (age cap, identifiers, SR content).
PATIENT_AGE = 0x00101010
PATIENT_BIRTH_DATE = 0x00100030
CONTENT_SEQUENCE = 0x0040A730
#: Elements allowed after Pixel Data: Digital Signatures and Data Set Trailing Padding.
AFTER_PIXEL_DATA = frozenset({0xFFFAFFFA, 0xFFFCFFFC})

_TAG_RE = re.compile(r"^\(?\s*([0-9A-Fa-fxX]{4})\s*,\s*([0-9A-Fa-fxX]{4})\s*\)?$")


@functools.lru_cache(maxsize=1 << 16)
def format_tag(tag: int) -> str:
    """Return ``(GGGG,EEEE)`` for an integer tag."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@dataclass(frozen=True)
class TagPattern:
    """A tag with ``x`` wildcard nibbles, compiled to a mask once.

    ``(60xx,3000)`` matches every overlay group: ``tag & mask == value``.
    """

    mask: int
    value: int
    text: str

    def matches(self, tag: int) -> bool:
        """Whether ``tag`` is matched by this pattern."""
        return tag & self.mask == self.value

    @property
    def specificity(self) -> int:
        """Number of fixed bits: a more specific pattern wins over a looser one."""
        return bin(self.mask).count("1")


#: Overlay Data and its overlay group (every even group 6000-60FE; private odd groups never
#: reach the rules).
OVERLAY_DATA = 0x60003000
OVERLAY_GROUP = TagPattern(mask=0xFF000000, value=0x60000000, text="(60xx,xxxx)")


def parse_tag_text(text: str) -> int | TagPattern | None:
    """Parse ``(gggg,eeee)``/``gggg,eeee``, possibly with ``x`` wildcards.

    Returns
    -------
    int, TagPattern or None
        The tag, a pattern if any nibble is ``x``, or None if ``text`` is not tag notation.
    """
    match = _TAG_RE.match(text.strip())
    if not match:
        return None
    digits = match.group(1) + match.group(2)
    if "x" not in digits.lower():
        return int(digits, 16)
    mask = value = 0
    for char in digits:
        mask <<= 4
        value <<= 4
        if char not in "xX":
            mask |= 0xF
            value |= int(char, 16)
    return TagPattern(mask=mask, value=value, text=f"({digits[:4].upper()},{digits[4:].upper()})")


def keyword_tag(keyword: str) -> int | None:
    """The tag of a DICOM keyword from pydicom's dictionary, or None."""
    if not keyword:  # pydicom maps "" to a retired entry without a keyword
        return None
    return tag_for_keyword(keyword)


@functools.lru_cache(maxsize=65536)
def dictionary_vr(tag: int) -> str | None:
    """The VR of a standard tag from pydicom's dictionary (first of ``"US or SS"``), or None."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return vr.split(" or ")[0]


@functools.lru_cache(maxsize=1 << 16)
def dictionary_vm(tag: int) -> str | None:
    """The Value Multiplicity pydicom's dictionary gives a standard tag (``"1-n"``), or None."""
    try:
        return dictionary_VM(tag)
    except KeyError:
        return None
