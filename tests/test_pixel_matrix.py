"""Burned-in text through the whole pipeline, in every encoding issue 10 names.

Images with the patient's name and MRN drawn by Pillow (its Aileron font, 16 px) are
stored in every photometric interpretation, Bits Allocated and transfer syntax
combination an encoder here can write, single- and 3-frame, with Burned In Annotation
YES, NO and absent, and run through ``anonymizer.pipeline.run`` with three profiles:

- ``detect`` (``ocr: detect``): every file fails with ``identifier in pixels`` and
  nothing is written;
- ``blank`` (``ocr: blank``): every file is written, the text painted over in every frame,
  every other pixel bit-exact with the input's decoded pixels (for lossy input: equal to
  its decoding), lossy history kept, Burned In Annotation NO, 113101 recorded;
- ``region`` (a region rule over the text, ``ocr: detect``): written, exactly the rule's
  rectangle painted, the text OCR finds inside it not counted.

The same encodings without text (a smooth gradient, anatomy-like speckle) are written
unchanged by all three.

Combinations that cannot exist (x: in the matrix; letters: why not):

=============  ====  ========  ========  =========  ===  ====  ====  ===  ===  ===  ===
photometric    bits  explicit  implicit  bigendian  rle  jpgb  jpgl  jls  jln  j2k  j2l
=============  ====  ========  ========  =========  ===  ====  ====  ===  ===  ===  ===
MONOCHROME2    8     x         x         x          x    x     x     x    x    x    x
MONOCHROME2    16    x         x         x          x    B     x     x    x    x    x
MONOCHROME1    8     x         x         x          x    x     x     x    x    x    x
MONOCHROME1    16    x         x         x          x    B     x     x    x    x    x
RGB            8     x         x         x          x    x     x     x    x    x    x
RGB            16    x         x         x          x    B     x     x    x    x    x
YBR_FULL       8     x         x         x          x    x     x     x    x    x    x
YBR_FULL       16    x         x         x          E    B     x     E    E    x    x
YBR_FULL_422   8     x         x         x          S    x     S     S    S    S    S
YBR_FULL_422   16    x         x         x          S    B     S     S    S    S    S
PALETTE COLOR  8     x         x         x          x    L     x     x    L    x    L
PALETTE COLOR  16    x         x         x          x    L     x     x    L    x    L
YBR_RCT        8/16  J         J         J          J    J     J     J    J    x    J
YBR_ICT        8/16  J         J         J          J    J     J     J    J    J    x
=============  ====  ========  ========  =========  ===  ====  ====  ===  ===  ===  ===

jpgb JPEG baseline (lossy), jpgl JPEG lossless SV1, jls JPEG-LS lossless, jln JPEG-LS
near-lossless (lossy), j2k JPEG 2000 lossless, j2l JPEG 2000 lossy.
B: JPEG baseline is 8-bit (12-bit extended JPEG would be the 16-bit form: no encoder for
it is installed). E: PS3.5 allows YBR_FULL in RLE and JPEG-LS at 8 bits only.
S: PS3.5 allows YBR_FULL_422 in JPEG lossy only (other syntaxes store YBR_FULL).
L: palette indices are never compressed lossy (PS3.5 8.2). J: YBR_RCT / YBR_ICT are
the JPEG 2000 lossless / lossy colour transforms of RGB, nothing else. JPEG baseline
YBR_FULL is JPEG's 4:4:4 YCbCr (as dcmtk writes it), YBR_FULL_422 its 4:2:2.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import KEY_A
from pixel_images import (
    SYNTAXES,
    darkest,
    decoded_frames,
    encode,
    gradient,
    ink,
    speckle,
    stored_values,
)
from pixel_images import dataset as image_dataset
from pydicom.pixels.encoders.base import ENCODING_PROFILES

from anonymizer.keyed import KeyedSource
from anonymizer.pipeline import RunConfig, run
from anonymizer.pipeline.worker import input_token

ROWS, COLUMNS = 128, 160
FRAMES = (1, 3)
BURNED_IN = {"yes": "YES", "no": "NO", "absent": None}
PHOTOMETRICS = {"mono2": "MONOCHROME2", "mono1": "MONOCHROME1", "rgb": "RGB",
                "ybr_full": "YBR_FULL", "ybr_full_422": "YBR_FULL_422",
                "palette": "PALETTE COLOR", "ybr_rct": "YBR_RCT", "ybr_ict": "YBR_ICT"}
_NATIVE = ("explicit", "implicit", "bigendian")
#: Why a combination cannot exist (the letters of the table above).
WHY_NOT = {
    "B": "JPEG baseline is 8-bit; no 12-bit extended JPEG encoder",
    "E": "PS3.5: YBR_FULL in RLE and JPEG-LS is 8-bit only",
    "S": "PS3.5: YBR_FULL_422 only in JPEG lossy (or native)",
    "L": "PS3.5: palette indices are never compressed lossy",
    "J": "YBR_RCT / YBR_ICT exist only in JPEG 2000 lossless / lossy",
}


def _why_not(photometric: str, bits: int, syntax: str) -> str | None:
    """The letter of the table above for a combination that cannot exist, else None."""
    if photometric in ("YBR_RCT", "YBR_ICT"):
        return None if syntax == {"YBR_RCT": "j2k", "YBR_ICT": "j2k_lossy"}[photometric] \
            else "J"
    if syntax in _NATIVE:
        return None
    if photometric == "PALETTE COLOR" and SYNTAXES[syntax][1]:
        return "L"
    if syntax == "jpegbaseline" and bits == 16:
        return "B"
    if photometric == "YBR_FULL_422":
        return None if syntax == "jpegbaseline" else "S"
    if photometric == "YBR_FULL" and bits == 16 and syntax in ("rle", "jpegls", "jpegls_near"):
        return "E"
    return None


@dataclass(frozen=True)
class Encoding:
    photometric: str  # a key of PHOTOMETRICS
    bits: int
    syntax: str  # a key of SYNTAXES

    @property
    def id(self) -> str:
        return f"{self.photometric}-{self.bits}-{self.syntax}"

    @property
    def lossy(self) -> bool:
        return SYNTAXES[self.syntax][1]


ALL_ENCODINGS = [Encoding(p, b, s) for p in PHOTOMETRICS for b in (8, 16) for s in SYNTAXES]
ENCODINGS = [e for e in ALL_ENCODINGS if _why_not(PHOTOMETRICS[e.photometric], e.bits,
                                                    e.syntax) is None]


@dataclass(frozen=True)
class Case:
    """One input file: an encoding, its frame count, Burned In Annotation, and its
    picture (``text``, or a background without text: ``gradient``, ``speckle``)."""

    encoding: Encoding
    frames: int = 1
    burned_in: str = "absent"
    picture: str = "text"

    @property
    def id(self) -> str:
        if self.picture != "text":
            return f"{self.encoding.id}-{self.picture}"
        return f"{self.encoding.id}-{self.frames}f-bia_{self.burned_in}"


TEXT_CASES = [Case(e, frames, bia) for e in ENCODINGS for frames in FRAMES for bia in BURNED_IN]
PLAIN_CASES = [Case(e, picture=p) for e in ENCODINGS for p in ("gradient", "speckle")]
#: The text: the patient's name and MRN (the identifiers of every generated file).
LINES = [(4, 4, "DOE JOHN"), (4, 24, "MRN 12345678")]
#: The region rule's rectangle: the band the text is drawn in, on every frame.
REGION = (0, 0, COLUMNS, 56)
#: Margin of ``ocr: blank`` (the profile's), and how far past it a detector's box may
#: reach beyond the drawn glyphs.
MARGIN, SLACK = 4, 8
PROFILES = {
    "detect": "pixels:\n  ocr: detect\n",
    "blank": f"pixels:\n  ocr: blank\n  margin: {MARGIN}\n",
    "region": ("pixels:\n  ocr: detect\n  regions:\n    - name: matrix top bar\n"
               f"      match: {{Manufacturer: ACME, Rows: {ROWS}, Columns: {COLUMNS}}}\n"
               f"      blank: [{list(REGION)}]\n"),
}


@functools.cache
def _picture(frames: int, picture: str) -> tuple[np.ndarray, np.ndarray]:
    """8-bit grey frames and the text's coverage in each.

    A cine loop is frames A, B, A: OCR reads the first and the last (the same picture as
    the single frame, so each display image is read once per process); B, never read,
    has the text in the same place over another background, and shows that every frame
    is decoded from its own place and blanked with the boxes found on the others.
    """
    shape = (ROWS, COLUMNS)
    if picture == "gradient":
        return gradient(*shape)[None], np.zeros((1, *shape), np.uint8)
    if picture == "speckle":
        return speckle(*shape, seed=3)[None], np.zeros((1, *shape), np.uint8)
    seeds = [7] if frames == 1 else [7, 8, 7]
    grey = np.stack([speckle(*shape, seed=seed) for seed in seeds])
    coverage = np.repeat(ink(shape, LINES, size=16)[None], frames, axis=0)
    return grey, coverage


@functools.cache
def _encoded(encoding: Encoding, frames: int, picture: str) -> pydicom.Dataset:
    """The file of one encoding, frame count and picture (Burned In Annotation absent)."""
    grey, coverage = _picture(frames, picture)
    pixels = stored_values(grey, coverage, PHOTOMETRICS[encoding.photometric], encoding.bits)
    # the region rule is for the device that draws the text, not for the plain images
    ds = image_dataset(pixels, Manufacturer="ACME" if picture == "text" else "PLAIN")
    return encode(ds, pixels, encoding.syntax)


def _build(case: Case) -> pydicom.Dataset:
    ds = _encoded(case.encoding, case.frames, case.picture)
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[case.id])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if BURNED_IN[case.burned_in] is None:
        ds.pop("BurnedInAnnotation", None)
    else:
        ds.BurnedInAnnotation = BURNED_IN[case.burned_in]
    return ds


@dataclass
class Matrix:
    """The inputs, and each profile's output folder and audit records by case id."""

    inputs: Path
    outputs: dict[str, Path]
    records: dict[str, dict[str, dict]]

    def input(self, case: Case) -> pydicom.Dataset:
        return pydicom.dcmread(self.inputs / f"{case.id}.dcm")

    def output(self, profile: str, case: Case) -> pydicom.Dataset:
        record = self.records[profile][case.id]
        assert record["status"] == "written", record
        return pydicom.dcmread(self.outputs[profile] / record["output"])


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    """Every case written as a file and run through the pipeline with each profile, in
    this process (one OCR engine and its cache for all three runs)."""
    root = tmp_path_factory.mktemp("matrix")
    inputs = root / "in"
    inputs.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in TEXT_CASES + PLAIN_CASES:
            _build(case).save_as(inputs / f"{case.id}.dcm", enforce_file_format=True)
    key = root / "key"
    key.write_bytes(KEY_A)
    keyed = KeyedSource(KEY_A)
    names = {input_token(keyed, path.name): path.stem for path in inputs.iterdir()}
    outputs, records = {}, {}
    for name, pixels in PROFILES.items():
        profile = root / f"{name}.yaml"
        profile.write_text(f"name: matrix-{name}\nextends: default\n{pixels}")
        outputs[name] = root / name
        run(RunConfig(input_dir=inputs, output_dir=outputs[name], profile=str(profile),
                      key_file=str(key), jobs=1, progress=False))
        lines = (outputs[name] / "audit.jsonl").read_text().splitlines()
        records[name] = {names[r["input"]]: r for r in map(json.loads, lines)
                         if r["type"] == "file"}
    return Matrix(inputs, outputs, records)


def _ids(cases: list[Case]) -> list[str]:
    return [case.id for case in cases]


# ------------------------------------------------------------------ text: detected
@pytest.mark.parametrize("case", TEXT_CASES, ids=_ids(TEXT_CASES))
def test_detect_fails_the_file_and_writes_nothing(matrix: Matrix, case: Case) -> None:
    record = matrix.records["detect"][case.id]
    assert record["status"] == "failed", record
    assert record["reason"].startswith("de-identify: identifier in pixels: "), record
    assert record.get("output") is None


def test_failed_files_leave_no_output(matrix: Matrix) -> None:
    for profile, records in matrix.records.items():
        written = {r["output"] for r in records.values() if r["status"] == "written"}
        found = {str(p.relative_to(matrix.outputs[profile]))
                 for p in matrix.outputs[profile].rglob("*.dcm")}
        assert found == written, profile


# ------------------------------------------------------------------ text: cleaned
def _check_cleaned(matrix: Matrix, profile: str, case: Case) -> tuple[list, list, object]:
    """The checks every cleaned output passes; returns the input's and the output's
    decoded frames and the output's darkest value."""
    source = matrix.input(case)
    out = matrix.output(profile, case)
    syntax = out.file_meta.TransferSyntaxUID
    assert not syntax.is_encapsulated
    if not source.file_meta.TransferSyntaxUID.is_encapsulated:
        assert syntax == source.file_meta.TransferSyntaxUID  # native stays as it was
    assert out.BurnedInAnnotation == "NO"
    assert "113101" in [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    if case.encoding.lossy:
        for keyword in ("LossyImageCompression", "LossyImageCompressionMethod",
                        "LossyImageCompressionRatio"):
            assert out[keyword].value == source[keyword].value, keyword
    else:
        assert out.get("LossyImageCompression") is None
    before, after = decoded_frames(source), decoded_frames(out)
    assert len(after) == len(before) == case.frames
    assert all(a.shape == b.shape for a, b in zip(after, before, strict=True))
    return before, after, np.asarray(darkest(out))


def _pixels_equal(frame: np.ndarray, value: object) -> np.ndarray:
    """Per pixel: every sample equals ``value`` (a scalar or a sample tuple)."""
    same = frame == np.asarray(value, dtype=frame.dtype)
    return same.all(axis=-1) if frame.ndim == 3 else same


@pytest.mark.parametrize("case", TEXT_CASES, ids=_ids(TEXT_CASES))
def test_ocr_blank_paints_the_text_and_nothing_else(matrix: Matrix, case: Case) -> None:
    pixels = matrix.records["blank"][case.id].get("pixels")
    assert pixels is not None and pixels["rules"] == ["ocr blank"], pixels
    assert pixels["identifier_boxes"] >= 1 and pixels["blanked"] >= case.frames, pixels
    before, after, dark = _check_cleaned(matrix, "blank", case)
    coverage = _picture(case.frames, "text")[1]
    rows, columns = np.nonzero(coverage[0])
    zone = np.zeros((ROWS, COLUMNS), bool)
    grow = MARGIN + SLACK
    zone[max(rows.min() - grow, 0):rows.max() + 1 + grow,
         max(columns.min() - grow, 0):columns.max() + 1 + grow] = True
    for index, (old, new) in enumerate(zip(before, after, strict=True)):
        painted = _pixels_equal(new, dark)
        changed = ~_pixels_equal(new, old) if new.ndim == 2 else (new != old).any(axis=-1)
        assert (painted | ~changed).all(), f"frame {index}: changed to something not dark"
        assert not (changed & ~zone).any(), f"frame {index}: changed outside the text"
        text = coverage[index] >= 64
        assert painted[text].all(), f"frame {index}: {(~painted[text]).sum()} text pixels left"


@pytest.mark.parametrize("case", TEXT_CASES, ids=_ids(TEXT_CASES))
def test_region_rule_paints_its_rectangle_exactly(matrix: Matrix, case: Case) -> None:
    pixels = matrix.records["region"][case.id].get("pixels")
    assert pixels is not None and pixels["rules"] == ["matrix top bar"], pixels
    assert pixels["text_boxes"] == 0 and pixels["blanked"] == case.frames, pixels
    before, after, dark = _check_cleaned(matrix, "region", case)
    x0, y0, x1, y1 = REGION
    for index, (old, new) in enumerate(zip(before, after, strict=True)):
        assert _pixels_equal(new[y0:y1, x0:x1], dark).all(), f"frame {index}"
        assert np.array_equal(new[y1:], old[y1:]), f"frame {index}"


# ------------------------------------------------------------------ no text
@pytest.mark.parametrize("case", PLAIN_CASES, ids=_ids(PLAIN_CASES))
def test_images_without_text_are_written_unchanged(matrix: Matrix, case: Case) -> None:
    source = matrix.input(case)
    for profile in PROFILES:
        record = matrix.records[profile][case.id]
        assert record["status"] == "written", (profile, record)
        pixels = record["pixels"]
        assert pixels["searched_frames"] == 1 and pixels["text_boxes"] == 0, (profile, pixels)
        assert pixels["blanked"] == 0 and "rules" not in pixels, (profile, pixels)
        out = matrix.output(profile, case)
        assert out.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
        assert out.PixelData == source.PixelData
        assert "BurnedInAnnotation" not in out
        codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
        assert "113101" not in codes


# ------------------------------------------------------------------ the table
def _table() -> dict[tuple[str, int, str], str]:
    """The cells of the table in this module's docstring."""
    lines = __doc__.split("=============  ====")[2].strip().splitlines()[1:]
    columns = ["explicit", "implicit", "bigendian", "rle", "jpegbaseline", "jpeglossless",
               "jpegls", "jpegls_near", "j2k", "j2k_lossy"]
    cells = {}
    for line in lines:
        words = line.replace("PALETTE COLOR", "PALETTE_COLOR").split()
        photometric, bits, marks = words[0].replace("_COLOR", " COLOR"), words[1], words[2:]
        for depth in map(int, bits.split("/")):
            for syntax, mark in zip(columns, marks, strict=True):
                cells[(photometric, depth, syntax)] = mark
    return cells


def test_the_table_of_combinations_is_the_matrix() -> None:
    """The table above says what the matrix runs, and why the rest cannot exist."""
    expected = {(PHOTOMETRICS[e.photometric], e.bits, e.syntax):
                _why_not(PHOTOMETRICS[e.photometric], e.bits, e.syntax) or "x"
                for e in ALL_ENCODINGS}
    assert _table() == expected
    assert set(expected.values()) - {"x"} == set(WHY_NOT)


def test_what_is_impossible_is_what_the_standard_excludes() -> None:
    """Checked against pydicom's transcription of PS3.5's tables (Photometric
    Interpretation and Bits Allocated per compressed transfer syntax): every combination
    called impossible is absent from it, every compressed one in the matrix is in it,
    but JPEG baseline YBR_FULL (JPEG's 4:4:4 YCbCr, as dcmtk writes it)."""
    def allowed(photometric: str, bits: int, syntax: str) -> bool:
        profiles = ENCODING_PROFILES[SYNTAXES[syntax][0]]
        return any(p == photometric and bits in allocated
                   for p, _, _, allocated, _ in profiles)

    for encoding in ALL_ENCODINGS:
        photometric = PHOTOMETRICS[encoding.photometric]
        if encoding.syntax in _NATIVE:
            continue
        possible = encoding in ENCODINGS
        if (photometric, encoding.bits, encoding.syntax) == ("YBR_FULL", 8, "jpegbaseline"):
            assert possible and not allowed(photometric, encoding.bits, encoding.syntax)
            continue
        assert allowed(photometric, encoding.bits, encoding.syntax) == possible, encoding
