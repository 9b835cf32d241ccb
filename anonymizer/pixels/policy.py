"""What happens to the pixels of a file: the profile's ``pixels:`` section, compiled.

The one place that decides which files' pixels are searched for burned-in text, which
region rules clean them, and when a file with text in its pixels may be written
(PS3.15 Clean Pixel Data Option, CID 7050 code 113101). Pure data and decisions: the
decoding, OCR and painting live in :mod:`anonymizer.pixels.stage` and its helpers.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from pydicom.dataset import Dataset

from anonymizer.elements import text_value

#: Modalities whose images commonly carry burned-in text whatever Burned In Annotation
#: says: ultrasound, secondary capture and other (OT), photographs and endoscopy, screen
#: and document captures, projection X-ray and fluoroscopy from older systems.
DEFAULT_SCAN_MODALITIES = ("US", "IVUS", "OT", "SC", "XC", "ES", "GM", "DOC", "OP", "XA",
                           "RF", "CR", "DX", "PX", "IO")
#: SOP Classes scanned whatever their Modality: secondary captures, ultrasound, visible
#: light photographs, endoscopy and video.
DEFAULT_SCAN_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.2",  # VL Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.1",  # Ophthalmic Photography 8 Bit
    "1.2.840.10008.5.1.4.1.1.77.1.5.2",  # Ophthalmic Photography 16 Bit
)
#: Attributes a region rule may match on (as in CTP's DicomPixelAnonymizer scripts).
MATCH_KEYWORDS = ("Modality", "Manufacturer", "ManufacturerModelName", "SOPClassUID",
                  "Rows", "Columns", "SoftwareVersions", "StationName", "ImageType",
                  "PhotometricInterpretation", "NumberOfFrames")
OCR_MODES = ("off", "detect", "blank")
TEXT_POLICIES = ("fail", "identifiers", "accept")


@dataclass(frozen=True)
class RegionRule:
    """Blank fixed rectangles ``(x0, y0, x1, y1)`` (x1/y1 exclusive) of every frame of
    the files whose attributes match (shell wildcards for text, equality for numbers)."""

    name: str
    match: tuple[tuple[str, str], ...]
    boxes: tuple[tuple[int, int, int, int], ...]

    def matches(self, ds: Dataset) -> bool:
        """Whether ``ds`` (read before any header rule changed it) is one this rule is for."""
        for keyword, pattern in self.match:
            value = text_value(ds, keyword).strip()
            if not fnmatch.fnmatchcase(value.upper(), pattern.upper()):
                return False
        return True

    def describe(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.match) or "every file"
        return f"region rule {self.name!r} ({where}): blank {list(self.boxes)}"


@dataclass(frozen=True)
class PixelPolicy:
    """The compiled ``pixels:`` section of a profile.

    ``ocr``: ``off`` (pixels are not searched), ``detect`` (decide only, never edit) or
    ``blank`` (blank every detected text box, grown by ``margin``). ``text``: what to do
    with text found that no rule cleaned: ``fail`` the file (any text), fail only when
    it holds an ``identifiers`` of the file, or ``accept`` it. Multi-frame files are
    searched on their first and last frame and every ``every_nth`` frame between.
    """

    ocr: str = "off"
    text: str = "fail"
    scan_modalities: tuple[str, ...] = DEFAULT_SCAN_MODALITIES
    scan_sop_classes: tuple[str, ...] = DEFAULT_SCAN_SOP_CLASSES
    every_nth: int = 10
    margin: int = 4
    #: a box counts as text when its text has this many letters or digits (scale marks
    #: such as "5" or "10" do not)
    min_chars: int = 3
    regions: tuple[RegionRule, ...] = ()
    accept_burned_in: bool = False

    def scans(self, ds: Dataset) -> bool:
        """Whether the pixels of ``ds`` are searched for text (before header rules)."""
        if self.ocr == "off":
            return False
        if burned_in_annotation(ds):
            return True
        return text_value(ds, "Modality").strip().upper() in self.scan_modalities \
            or text_value(ds, "SOPClassUID").strip() in self.scan_sop_classes

    def regions_for(self, ds: Dataset) -> tuple[RegionRule, ...]:
        """The region rules that apply to ``ds`` (read before header rules)."""
        return tuple(rule for rule in self.regions if rule.matches(ds))

    def describe(self) -> list[str]:
        """The policy as lines for ``profiles show`` and the profile fingerprint."""
        lines = [f"pixels.ocr: {self.ocr}", f"pixels.text: {self.text}",
                 f"pixels.scan.modalities: {', '.join(self.scan_modalities)}",
                 f"pixels.scan.sop_classes: {', '.join(self.scan_sop_classes)}",
                 f"pixels.frames.every: {self.every_nth}", f"pixels.margin: {self.margin}",
                 f"pixels.min_chars: {self.min_chars}",
                 "burned_in_annotation: " + ("accept" if self.accept_burned_in else "fail")]
        return lines + [rule.describe() for rule in self.regions]


def burned_in_annotation(ds: Dataset) -> bool:
    """Whether the file says its pixels hold burned-in annotation (BurnedInAnnotation YES)."""
    return text_value(ds, "BurnedInAnnotation").strip().upper() == "YES"
