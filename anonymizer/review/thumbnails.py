"""Small PNG thumbnails of a frame, as ``data:`` URIs the page embeds.

A frame is decoded by :func:`anonymizer.pixels.frames.display_frames` (the 8-bit image
the OCR reads: MONOCHROME1 inverted, palettes applied, 16-bit scaled), windowed between
its 0.5th and 99.5th percentiles, so that a CT's few extreme pixels do not leave the
anatomy grey, and shrunk with Pillow. Burned-in text is drawn at or near the brightest
value: the window leaves it at full white.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from anonymizer.errors import MissingExtraError

if TYPE_CHECKING:
    import numpy

EXTRA = "review"
#: Percentiles of the window: the darkest and brightest 0.5% of pixels saturate.
_WINDOW = (0.5, 99.5)


def require_imaging() -> None:
    """Raise :class:`MissingExtraError` unless Pillow and the pixel decoders are installed."""
    from anonymizer.pixels.frames import require_decoders

    try:
        import PIL  # noqa: F401
    except ImportError:
        raise MissingExtraError(EXTRA, "the review page's thumbnails") from None
    try:
        require_decoders()
    except MissingExtraError:
        raise MissingExtraError(EXTRA, "the review page's thumbnails") from None


def windowed(image: numpy.ndarray) -> numpy.ndarray:
    """An 8-bit image stretched between its low and high percentiles (grey or RGB)."""
    import numpy as np

    # every 4th pixel of a large image says as much about its histogram, 16 times faster
    sample = image[::4, ::4] if image.shape[0] * image.shape[1] > 1 << 20 else image
    low, high = np.percentile(sample, _WINDOW)
    if high <= low:
        return image
    scaled = (image.astype(np.float32) - np.float32(low)) * np.float32(255 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def png_data_uri(image: numpy.ndarray, size: int) -> str:
    """``image`` (uint8 grey or RGB) shrunk to fit ``size`` x ``size`` (a tiny one enlarged
    by a whole factor), as a PNG data URI."""
    from PIL import Image

    picture = Image.fromarray(image)
    picture.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    factor = size // max(picture.size)
    if factor >= 2:  # a tiny image: shown enlarged, its pixels as squares
        picture = picture.resize((picture.width * factor, picture.height * factor),
                                 Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def first_frame(ds: Dataset) -> Any:
    """The first frame of ``ds`` as a windowed 8-bit image (numpy array).

    Raises
    ------
    PixelDataError
        When the pixel data cannot be decoded.
    """
    from anonymizer.pixels.frames import display_frames

    for _, image in display_frames(ds, [0]):
        return windowed(image)
    raise AssertionError("display_frames yields every frame asked for")
