"""The pixel stage of a worker: after the header rules, search, clean or fail.

For each file the :class:`~anonymizer.pixels.policy.PixelPolicy` of the profile says
whether its pixels are searched for text (OCR on sampled frames), which region rules
blank fixed rectangles, and whether text that no rule cleaned fails the file. Text is
compared with the file's identifiers (:mod:`anonymizer.scrub`, collected before the
header rules changed them) so the audit can say ``identifier in pixels`` or ``text in
pixels``; the text itself never leaves this module.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from anonymizer import scrub, standard
from anonymizer.elements import store
from anonymizer.errors import DeidentificationError
from anonymizer.pixels.policy import PixelPolicy, RegionRule, burned_in_annotation
from anonymizer.tags import PIXEL_DATA

if TYPE_CHECKING:
    from anonymizer.pixels.ocr import TextBox, TextDetector

DEIDENTIFICATION_METHOD_CODES = 0x00120064
#: Float and Double Float Pixel Data: no decoder here can show them for OCR
FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)


@dataclass
class PixelOutcome:
    """What the pixel stage did to one file: for the audit log (counts, rule names and
    the detector's name; never the text found)."""

    searched_frames: int = 0
    text_boxes: int = 0
    identifier_boxes: int = 0
    blanked: int = 0
    rules: list[str] = field(default_factory=list)
    detector: str | None = None

    def audit(self) -> dict[str, Any] | None:
        """The record for the audit log, or None when the stage did nothing."""
        if not (self.searched_frames or self.blanked or self.rules):
            return None
        record: dict[str, Any] = {"searched_frames": self.searched_frames,
                                  "text_boxes": self.text_boxes,
                                  "identifier_boxes": self.identifier_boxes,
                                  "blanked": self.blanked}
        if self.rules:
            record["rules"] = self.rules
        if self.detector:
            record["detector"] = self.detector
        return record


@dataclass(frozen=True)
class PixelPlan:
    """What the policy decided from the file as read, before the header rules."""

    search: bool = False
    regions: tuple[RegionRule, ...] = ()
    burned_in: bool = False
    identifiers: scrub.Identifiers | None = None

    @property
    def needed(self) -> bool:
        return self.search or bool(self.regions) or self.burned_in


#: OCR results by detector and frame digest, per process
_SEEN: dict[tuple[str, tuple[int, ...], bytes], list[TextBox]] = {}


class PixelStage:
    """Applies one :class:`PixelPolicy` to files.

    Parameters
    ----------
    policy : PixelPolicy
        The profile's compiled ``pixels:`` section.
    detector_factory : callable, optional
        Makes the OCR engine the first time a file is searched (loading its models is
        worth doing once per process). Default: :func:`anonymizer.pixels.ocr.default_detector`.
    """

    def __init__(self, policy: PixelPolicy,
                 detector_factory: Callable[[], TextDetector] | None = None):
        self.policy = policy
        self._factory = detector_factory
        self._detector: TextDetector | None = None

    def plan(self, ds: Dataset, identifiers: scrub.Identifiers) -> PixelPlan:
        """Decide from the file as read (Modality, Manufacturer... before the header
        rules remove or change them); ``identifiers`` are the file's, collected then."""
        if PIXEL_DATA not in ds:
            if any(tag in ds for tag in FLOAT_PIXEL_DATA) and self.policy.scans(ds):
                raise DeidentificationError(
                    "burned-in text: float pixel data of an image class that is searched "
                    "cannot be searched")
            return PixelPlan(burned_in=burned_in_annotation(ds))
        search = self.policy.scans(ds)
        return PixelPlan(search=search, regions=self.policy.regions_for(ds),
                         burned_in=burned_in_annotation(ds),
                         identifiers=identifiers if search else None)

    def apply(self, plan: PixelPlan, ds: Dataset,
              scratch_dir: str | os.PathLike[str] | None = None) -> PixelOutcome:
        """Search, clean or fail ``ds`` (after the header rules) as ``plan`` says.

        Cleaned Pixel Data too large to hold in memory is built in an anonymous file in
        ``scratch_dir`` (see :func:`anonymizer.pixels.frames.blank_regions`).

        Raises
        ------
        DeidentificationError
            When the pixels hold text that no rule cleaned and the policy does not
            accept it, or Burned In Annotation is YES and nothing cleaned them.
        """
        outcome = PixelOutcome()
        if not plan.needed:
            return outcome
        if not (plan.search or plan.regions):
            self._check_burned_in(plan, cleaned=False)
            return outcome  # Burned In Annotation YES, accepted by the profile
        from anonymizer.pixels import frames

        count = frames.frame_count(ds)
        boxes: dict[int, list[frames.Box]] = {}
        for rule in plan.regions:
            outcome.rules.append(rule.name)
            for index in range(count):
                boxes.setdefault(index, []).extend(frames.Box(*box) for box in rule.boxes)
        remaining: list[tuple[int, TextBox, bool]] = []
        if plan.search:
            remaining = self._search(ds, count, plan, boxes, outcome)
        if remaining and self.policy.ocr == "blank":
            # Text drawn into a cine loop or a multi-frame capture stays where it is from
            # frame to frame: a box found on a sampled frame is blanked in every frame.
            outcome.rules.append("ocr blank")
            for index in range(count):
                boxes.setdefault(index, []).extend(
                    frames.Box(text.x0, text.y0, text.x1, text.y1) for _, text, _ in remaining)
            remaining = []
        margin = self.policy.margin if "ocr blank" in outcome.rules else 0
        # a rule whose rectangles all miss the frame cleans nothing
        cleaned = frames.paints_anything(ds, boxes, margin)
        if remaining:
            identifiers = sum(1 for _, _, is_identifier in remaining if is_identifier)
            if identifiers and self.policy.text != "accept":
                raise DeidentificationError(
                    f"identifier in pixels: {identifiers} of {len(remaining)} text regions "
                    "hold an identifier of the file; no rule cleaned them")
            if self.policy.text == "fail":
                raise DeidentificationError(
                    f"burned-in text detected: {len(remaining)} text regions that no rule "
                    "cleaned")
        self._check_burned_in(plan, cleaned)
        if cleaned:
            outcome.blanked = frames.blank_regions(ds, boxes, margin=margin,
                                                   scratch_dir=scratch_dir)
            _add_clean_pixel_code(ds)
        return outcome

    def _check_burned_in(self, plan: PixelPlan, cleaned: bool) -> None:
        """A file that says its pixels hold annotation is written only once a rule
        cleaned them, or where the profile accepts it."""
        if plan.burned_in and not cleaned and not self.policy.accept_burned_in:
            raise DeidentificationError("burned-in annotation: pixel data not cleaned")

    def _search(self, ds: Dataset, count: int, plan: PixelPlan,
                boxes: dict[int, list[Any]], outcome: PixelOutcome
                ) -> list[tuple[int, TextBox, bool]]:
        """OCR the sampled frames: the text boxes no region rule covers, each with
        whether it holds an identifier of the file."""
        from anonymizer.pixels import frames
        from anonymizer.pixels.ocr import normalise_ocr_text

        detector = self.detector()
        outcome.detector = detector.name
        found: list[tuple[int, TextBox, bool]] = []
        indices = frames.sampled_frames(count, self.policy.every_nth)
        for index, image in frames.display_frames(ds, indices):
            outcome.searched_frames += 1
            for text in self._detect(detector, image):
                if _covered(text, boxes.get(index, ())):
                    continue
                is_identifier = bool(plan.identifiers is not None and
                                     plan.identifiers.in_ocr_text(text.text, normalise_ocr_text))
                if not is_identifier and sum(c.isalnum() for c in text.text) \
                        < self.policy.min_chars:
                    continue  # scale marks and single letters are not text to fail on
                outcome.text_boxes += 1
                outcome.identifier_boxes += is_identifier
                found.append((index, text, is_identifier))
        return found

    def _detect(self, detector: TextDetector, image: Any) -> list[TextBox]:
        """The detector's boxes, remembered for identical frames (a cine loop's still
        frames, the same image sent twice): OCR costs far more than a hash."""
        key = (detector.name, image.shape,
               hashlib.blake2b(image.tobytes(), digest_size=16).digest())
        found = _SEEN.get(key)
        if found is None:
            found = _SEEN[key] = detector.detect(image)
            if len(_SEEN) > 512:
                _SEEN.pop(next(iter(_SEEN)))
        return found

    def detector(self) -> TextDetector:
        """The OCR engine, made on first use."""
        if self._detector is None:
            if self._factory is None:
                from anonymizer.pixels.ocr import default_detector

                self._factory = default_detector
            self._detector = self._factory()
        return self._detector


def _covered(text: TextBox, boxes: Any) -> bool:
    """Whether a region rule's rectangle already covers the text box."""
    return any(b.x0 <= text.x0 and b.y0 <= text.y0 and text.x1 <= b.x1 and text.y1 <= b.y1
               for b in boxes)


def _add_clean_pixel_code(ds: Dataset) -> None:
    """Add the Clean Pixel Data Option (113101) to De-identification Method Code Sequence.

    The engine stamps one shared sequence into every file: a new one is built here.
    """
    code = standard.method_code("clean_pixel_data")
    existing = ds.get(DEIDENTIFICATION_METHOD_CODES)
    items = list(existing.value) if existing is not None else []
    if any(getattr(item, "CodeValue", None) == code.value for item in items):
        return
    store(ds, DataElement(DEIDENTIFICATION_METHOD_CODES, "SQ",
                          Sequence([*items, code.item()])))


def check_pixel_extras(policy: PixelPolicy) -> None:
    """Stop a run before its first file when the profile searches or cleans pixels and
    the packages that decode them (and read text in them) are not installed.

    Raises
    ------
    MissingExtraError
        One line naming the pip extra to install.
    """
    if policy.ocr != "off" or policy.regions:
        from anonymizer.pixels import frames

        frames.require_decoders()
    if policy.ocr != "off":
        from anonymizer.pixels.ocr import require_engine

        require_engine()
