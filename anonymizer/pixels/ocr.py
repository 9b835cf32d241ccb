"""Finding text burned into decoded frames (ultrasound overlays, screenshots, secondary captures).

The engine is RapidOCR (``rapidocr`` 3.10, PP-OCRv6 small detection and recognition models run
by onnxruntime). Its models ship inside the ``rapidocr`` wheel and are loaded from explicit
paths, so nothing is downloaded at run time. Install it with ``pip install 'anonymizer[ocr]'``.

Measured on synthetic overlays (names, MRNs, dates drawn in DejaVu 8-24 px and PIL's bitmap
font on black, noise, gradients, speckled blobs and colour bars) and on pydicom's test images,
against rapidocr-onnxruntime 1.4.4 (PP-OCRv4) and Tesseract 5.3 ``--psm 11``: this engine with
a 2x upscale of frames under 1024 px found the most text; Tesseract found under a third of it
and nothing on noisy backgrounds.
"""

from __future__ import annotations

import importlib.util
import math
import os
import unicodedata
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from anonymizer.errors import MissingExtraError

if TYPE_CHECKING:
    import numpy

__all__ = ["RapidOcrDetector", "TextBox", "TextDetector", "default_detector",
           "normalise_ocr_text"]

_INSTALL_HINT = "install the 'ocr' extra: pip install 'anonymizer[ocr]'"

# The files the rapidocr 3.10 wheel ships in rapidocr/models/ (its default models). Naming them
# explicitly bypasses rapidocr's look-up-then-download path: a missing file is an error here,
# never a download.
_MODEL_FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}

# Frames whose longer side is under this are upscaled 2x before OCR: on 512x512 overlays this
# raised recall of 8-12 px text (MRN found 103/150 -> 122/150 images), at about 1.7x the time.
UPSCALE_BELOW = 1024

# The shorter side a frame is padded to (see _pad_to_aspect), well above rapidocr's own 30 px.
_MIN_SIDE = 32


@dataclass(frozen=True)
class TextBox:
    """A rectangle of text found in one frame: pixel coordinates, x1/y1 exclusive.

    Attributes
    ----------
    x0, y0 : int
        Top-left corner, inclusive.
    x1, y1 : int
        Bottom-right corner, exclusive; clipped to the frame.
    text : str
        The recognised text. PHI: never logged.
    score : float
        The recogniser's confidence, 0 to 1.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    score: float


class TextDetector(Protocol):
    """Finds text in one decoded frame.

    Attributes
    ----------
    name : str
        Engine and version, for the audit log (e.g. ``"rapidocr 3.10.0 ..."``).
    """

    name: str

    def detect(self, image: numpy.ndarray) -> list[TextBox]:
        """Return the text boxes of ``image`` (uint8, HxW grey or HxWx3 RGB)."""
        ...


_CONFUSIONS = str.maketrans({"o": "0", "i": "1", "l": "1", "s": "5"})


def normalise_ocr_text(text: str) -> str:
    """Reduce text to the form in which OCR output and known identifiers are compared.

    Apply it to both sides: the OCR text and the value looked for. It does, in order:

    1. Unicode NFKC (full-width and ligature forms become plain characters);
    2. case folding;
    3. keeps only letters and digits (``str.isalnum``): spaces, which OCR often drops or
       inserts, and punctuation (``^``, ``/``, ``-``, ``.``), which it often misreads, go;
    4. maps the letters OCR confuses with digits to those digits, everywhere: ``o`` -> ``0``,
       ``i`` and ``l`` -> ``1``, ``s`` -> ``5``.

    Step 4 applies to letters in names too (``DOE^JOHN`` -> ``d0ej0hn``), because the
    engine reads a name's O as 0 as readily as an MRN's 0 as O; as both sides are mapped
    alike, only words differing solely in those letters compare equal.

    Parameters
    ----------
    text : str
        OCR output or a value to look for.

    Returns
    -------
    str
        The normalised text.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in folded if c.isalnum()).translate(_CONFUSIONS)


class RapidOcrDetector:
    """RapidOCR (PP-OCRv6 small) on onnxruntime, single-threaded.

    Create one per worker process: loading the models takes about a second. Inference
    uses one thread, since the pipeline already runs one worker per core.

    Parameters
    ----------
    upscale_below : int
        Frames whose longer side is below this are upscaled 2x (bicubic) first; boxes are
        mapped back to the input's coordinates. 0 turns upscaling off.
    text_score : float
        Recognised lines with a lower confidence are dropped (rapidocr's default, 0.5).

    Raises
    ------
    MissingExtraError
        ``rapidocr``, ``onnxruntime`` or OpenCV cannot be imported, or a model file is missing.
    """

    def __init__(self, *, upscale_below: int = UPSCALE_BELOW, text_score: float = 0.5):
        engine_cls, models_dir = _import_engine()
        self._cv2 = _import("cv2")
        # OpenCV's resize and colour conversions would otherwise start a thread per core in
        # every worker process, oversubscribing the cores the pipeline already fills.
        self._cv2.setNumThreads(1)
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Global.text_score": text_score,
            # The angle classifier (0/180) costs little and is what makes text in frames
            # rotated by 90 or 180 degrees readable (measured: nothing read without it; with it,
            # name, MRN and date all read in 2-3 of 6 such frames, each field in 3-5).
            "Global.use_cls": True,
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        for stage, filename in _MODEL_FILES.items():
            path = models_dir / filename
            if not path.is_file():
                raise MissingExtraError(
                    f"OCR model {filename} is missing from the rapidocr package; "
                    f"reinstall it: {_INSTALL_HINT}")
            params[f"{stage}.model_path"] = str(path)
        self._engine = engine_cls(params=params)
        self._upscale_below = upscale_below
        self.name = (f"rapidocr {metadata.version('rapidocr')} PP-OCRv6 small "
                     f"(onnxruntime {metadata.version('onnxruntime')})")

    def detect(self, image: numpy.ndarray) -> list[TextBox]:
        """Find the lines of text in one frame.

        Parameters
        ----------
        image : numpy.ndarray
            uint8, HxW (grey) or HxWx3 (RGB).

        Returns
        -------
        list of TextBox
            One box per line of text, in ``image``'s pixel coordinates (axis-aligned hull of
            the engine's quadrilateral, clipped to the frame).

        Raises
        ------
        ValueError
            ``image`` is not uint8 HxW or HxWx3.
        """
        if image.dtype.name != "uint8" or not (
                image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(
                f"OCR needs a uint8 HxW or HxWx3 frame, not {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        if image.ndim == 3:
            # rapidocr takes a 3-channel array as OpenCV's BGR.
            image = image[:, :, ::-1]
        scale = 2 if max(height, width) < self._upscale_below else 1
        if scale != 1:
            image = self._cv2.resize(image, None, fx=scale, fy=scale,
                                     interpolation=self._cv2.INTER_CUBIC)
        result = self._engine(_pad_to_aspect(image))
        if result.boxes is None:
            return []
        boxes = []
        for quad, text, score in zip(result.boxes, result.txts, result.scores, strict=True):
            xs = [float(p[0]) / scale for p in quad]
            ys = [float(p[1]) / scale for p in quad]
            x0, y0 = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
            x1, y1 = min(width, math.ceil(max(xs)) + 1), min(height, math.ceil(max(ys)) + 1)
            if x1 > x0 and y1 > y0:
                boxes.append(TextBox(x0, y0, x1, y1, str(text), float(score)))
        return boxes


def _pad_to_aspect(image: numpy.ndarray) -> numpy.ndarray:
    """Pad ``image`` at the bottom and right with black until neither side is under half the other.

    rapidocr scales a frame until its shorter side is 736 px: a 1x600 strip became a
    736x441600 image and took two minutes. Padding below and to the right leaves the
    coordinates of the frame's own pixels unchanged.
    """
    import numpy as np

    height, width = image.shape[:2]
    target_h = max(height, (width + 1) // 2, _MIN_SIDE)
    target_w = max(width, (height + 1) // 2, _MIN_SIDE)
    if (target_h, target_w) == (height, width):
        return np.ascontiguousarray(image)
    padded = np.zeros((target_h, target_w) + image.shape[2:], dtype=image.dtype)
    padded[:height, :width] = image
    return padded


def default_detector() -> TextDetector:
    """Create the chosen OCR engine (once per worker process: it loads models).

    Returns
    -------
    TextDetector
        A :class:`RapidOcrDetector`.

    Raises
    ------
    MissingExtraError
        The ``ocr`` extra is not installed; the message names the pip command.
    """
    return RapidOcrDetector()


def _import(module: str) -> Any:
    """Import ``module`` or raise MissingExtraError naming the extra and why the import failed."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(module, exc) from None


def require_engine() -> None:
    """Raise :class:`MissingExtraError` unless the OCR engine and what it runs on are
    installed: checked once when a run starts, without importing them (that would cost
    the main process 60 MB and half a second; a broken install fails the searched files,
    each with the import error on its one line)."""
    for module in ("onnxruntime", "cv2", "rapidocr"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules
            found = False
        if not found:
            raise _missing(module, ModuleNotFoundError(f"No module named {module!r}"))


def _missing(module: str, exc: ImportError) -> MissingExtraError:
    # An installed opencv-python (not headless) fails to import on a machine without libGL;
    # the reason says so on the one line rather than only "not installed".
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return MissingExtraError(
        f"OCR engine unavailable: cannot import {module} ({reason}); {_INSTALL_HINT}")


def _import_engine() -> tuple[Any, Path]:
    """Import rapidocr and what it runs on, each failure named; return its class and models."""
    # onnxruntime (1.32 at least) starts Microsoft's 1DS telemetry when imported: it writes a
    # device ID and queued events (OS, container, executable) under ~/.cache/Microsoft and
    # uploads them over HTTPS when it can. A de-identification run must not reach out, so it
    # is turned off; only this variable, set before the import, prevents even the files.
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    onnxruntime = _import("onnxruntime")
    # Imported earlier by someone else, the variable came too late: stop the events at least.
    onnxruntime.disable_telemetry_events()
    # onnxruntime runs the models but is no dependency of rapidocr; cv2 is imported first so
    # that its failure is named as such, not as rapidocr's.
    _import("cv2")
    rapidocr = _import("rapidocr")
    try:
        # rapidocr imports its engine lazily, on first access to the attribute.
        engine_cls = rapidocr.RapidOCR
    except ImportError as exc:
        raise _missing("rapidocr", exc) from None
    return engine_cls, Path(rapidocr.__file__).parent / "models"
