"""OCR of burned-in text: the real engine on frames with text drawn by Pillow, and without text."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error
from pixel_images import blend, gradient, ink, noise

from anonymizer.pixels.ocr import TextBox, TextDetector, default_detector, normalise_ocr_text

LINES = ("DOE^JOHN", "MRN 12345678", "1965-04-12")


@pytest.fixture(scope="session")
def detector() -> TextDetector:
    """One engine for the session: loading the models is the slow part."""
    return default_detector()


def _draw(background: np.ndarray, size: int | None, origin: tuple[int, int],
          fill: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Draw LINES on ``background``; return the frame and a mask of the text's own pixels."""
    step = (size or 11) + 8
    lines = [(origin[0], origin[1] + i * step, line) for i, line in enumerate(LINES)]
    coverage = ink(background.shape[:2], lines, size)
    # the mask counts the pixels at least a quarter covered (fainter fringes can lie
    # outside an engine's box)
    return blend(background, coverage, fill), coverage >= 64


def _uncovered(mask: np.ndarray, boxes: list[TextBox]) -> int:
    """How many text pixels lie in no box."""
    covered = np.zeros_like(mask)
    for box in boxes:
        covered[box.y0:box.y1, box.x0:box.x1] = True
    return int((mask & ~covered).sum())


@pytest.mark.parametrize(("size", "background", "shape"), [
    (11, "black", (384, 512)),      # small text on a small frame: upscaled before OCR
    (16, "gradient", (384, 512)),
    (None, "black", (480, 640)),    # PIL's bitmap font, as on old screenshots
    (12, "noise", (768, 1024)),     # large frame: not upscaled
])
def test_drawn_text_is_found_and_read(detector: TextDetector, size: int | None, background: str,
                                      shape: tuple[int, int]) -> None:
    make = {"black": lambda h, w: np.zeros((h, w), np.uint8), "gradient": gradient,
            "noise": noise}[background]
    frame, mask = _draw(make(*shape), size, origin=(shape[1] // 8, shape[0] // 6))
    boxes = detector.detect(frame)
    assert _uncovered(mask, boxes) == 0
    text = normalise_ocr_text("".join(box.text for box in boxes))
    assert normalise_ocr_text("12345678") in text
    assert normalise_ocr_text("1965-04-12") in text
    assert all(0 <= b.x0 < b.x1 <= shape[1] and 0 <= b.y0 < b.y1 <= shape[0] for b in boxes)
    assert all(0.5 <= b.score <= 1 for b in boxes)


def test_rgb_frame_with_grey_text(detector: TextDetector) -> None:
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, :320] = (40, 0, 90)  # two flat colour fields, text across their edge
    frame, mask = _draw(rgb, 14, origin=(280, 60), fill=180)
    boxes = detector.detect(frame)
    assert _uncovered(mask, boxes) == 0
    assert normalise_ocr_text("MRN 12345678") in normalise_ocr_text("".join(b.text for b in boxes))


@pytest.mark.parametrize("turns", [1, 2])
def test_text_in_rotated_frames_is_read(detector: TextDetector, turns: int) -> None:
    frame, mask = _draw(np.zeros((384, 512), np.uint8), 16, origin=(60, 60))
    frame, mask = np.rot90(frame, turns), np.rot90(mask, turns)
    boxes = detector.detect(np.ascontiguousarray(frame))
    assert _uncovered(mask, boxes) == 0
    assert normalise_ocr_text("12345678") in normalise_ocr_text("".join(b.text for b in boxes))


@pytest.mark.parametrize("frame", [
    np.zeros((512, 512), np.uint8),
    gradient(480, 640),
    noise(512, 512, seed=7),
    np.dstack([gradient(300, 400), noise(300, 400), gradient(300, 400)[:, ::-1]]),
], ids=["black", "gradient", "noise", "rgb"])
def test_frames_without_text_give_no_boxes(detector: TextDetector, frame: np.ndarray) -> None:
    assert detector.detect(frame) == []


def test_thin_strips_are_quick(detector: TextDetector) -> None:
    # Unpadded, rapidocr scaled a 1x600 strip to 736x441600 and took two minutes.
    start = time.perf_counter()
    assert detector.detect(np.zeros((1, 600), np.uint8)) == []
    assert detector.detect(np.zeros((3000, 2, 3), np.uint8)) == []
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize("frame", [np.zeros((8, 8), np.uint16), np.zeros((8, 8, 4), np.uint8),
                                   np.zeros(8, np.uint8)])
def test_frames_of_other_layouts_are_refused(detector: TextDetector, frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 HxW or HxWx3"):
        detector.detect(frame)


def test_detector_names_engine_and_version(detector: TextDetector) -> None:
    assert detector.name.startswith("rapidocr 3.10.")
    assert "onnxruntime" in detector.name


@pytest.mark.parametrize(("raw", "normalised"), [
    ("DOE^JOHN", "d0ej0hn"),
    ("D0E JOHN", "d0ej0hn"),          # O read as 0, space inserted
    ("MRN 1234S678", "mrn12345678"),  # 5 read as S
    ("MRNl2345678", "mrn12345678"),   # 1 read as l, space dropped
    ("12/O4/1965", "12041965"),
    ("1965-04-12", "19650412"),
    ("ＭＲＮ　１２", "mrn12"),           # full-width forms and an ideographic space
    ("Straße", "5tra55e"),            # case folding expands ß
    ("", ""),
])
def test_normalise_ocr_text(raw: str, normalised: str) -> None:
    assert normalise_ocr_text(raw) == normalised


@pytest.mark.parametrize("module", ["rapidocr", "onnxruntime", "cv2"])
def test_missing_engine_is_one_line_naming_the_extra(module: str) -> None:
    # The CLI reports an AnonymizerError as one line; the same here, with the module's import
    # blocked for real (a None entry in sys.modules makes `import` raise ImportError).
    script = textwrap.dedent(f"""
        import sys
        sys.modules[{module!r}] = None
        from anonymizer.errors import AnonymizerError
        from anonymizer.pixels.ocr import default_detector
        try:
            default_detector()
        except AnonymizerError as exc:
            print(f"anonymizer: error: {{exc}}", file=sys.stderr)
            sys.exit(2)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    line = one_line_error(proc)
    assert f"cannot import {module}" in line
    assert "pip install 'anonymizer[ocr]'" in line


def test_ocr_writes_nothing_to_the_home_directory(tmp_path: Path) -> None:
    # onnxruntime's telemetry would leave a device ID and queued events in ~/.cache/Microsoft.
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    script = textwrap.dedent("""
        import numpy as np
        from anonymizer.pixels.ocr import default_detector
        assert default_detector().detect(np.zeros((64, 64), np.uint8)) == []
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(home.rglob("*")) == []
