"""Pixel frames: decoding for display and blanking boxes, on real files of every syntax."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pixel_images import darkest, decoded_frames, encode, grey_dataset, ink, speckle, stored_values
from pixel_images import dataset as image_dataset
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import convert_color_space, pixel_array
from pydicom.uid import (
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from anonymizer.elements import Mutations, held_in_file
from anonymizer.errors import DeidentificationError, PixelDataError
from anonymizer.io import read_dataset, write_temporary
from anonymizer.io.reader import LARGE_FILE
from anonymizer.pixels import frames as frames_module
from anonymizer.pixels.frames import (
    Box,
    blank_regions,
    display_frames,
    frame_count,
    sampled_frames,
)


def _path(name: str) -> str:
    # never download: a file missing from pydicom and pydicom-data fails the test
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not installed"
    return str(path)


#: name -> (transfer syntax, photometric interpretation of the input)
FILES = {
    "CT_small.dcm": "explicit LE, MONOCHROME2 16-bit signed",
    "MR_small_implicit.dcm": "implicit LE, MONOCHROME2 16-bit signed",
    "MR_small_bigendian.dcm": "explicit BE, MONOCHROME2 16-bit signed",
    "emri_small_big_endian.dcm": "explicit BE, 10 frames, 12 of 16 bits",
    "image_dfl.dcm": "deflated, MONOCHROME2 8-bit",
    "MR_small_RLE.dcm": "RLE, MONOCHROME2 16-bit signed",
    "emri_small_RLE.dcm": "RLE, 10 frames",
    "JPEG-LL.dcm": "JPEG lossless, 16-bit signed",
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "JPEG lossless, 8-bit",
    "JPGExtended.dcm": "JPEG extended (lossy), 12 of 16 bits",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS lossless",
    "emri_small_jpeg_ls_lossless.dcm": "JPEG-LS lossless, 10 frames",
    "JPEGLSNearLossless_16.dcm": "JPEG-LS near-lossless",
    "SC_rgb_jls_lossy_sample.dcm": "JPEG-LS near-lossless, RGB",
    "MR_small_jp2klossless.dcm": "JPEG 2000 lossless",
    "emri_small_jpeg_2k_lossless.dcm": "JPEG 2000 lossless, 10 frames",
    "693_J2KI.dcm": "JPEG 2000, 14 of 16 bits signed",
    "J2K_pixelrep_mismatch.dcm": "JPEG 2000 whose sign differs from the dataset's",
    "US1_J2KR.dcm": "JPEG 2000 lossless, YBR_RCT",
    "US1_J2KI.dcm": "JPEG 2000, YBR_ICT",
    "RG3_UNCR.dcm": "explicit LE, MONOCHROME1 10 of 16 bits",
    "RG3_J2KI.dcm": "JPEG 2000, MONOCHROME1",
    "SC_rgb.dcm": "explicit LE, RGB 8-bit",
    "SC_rgb_16bit_2frame.dcm": "explicit LE, RGB 16-bit, 2 frames",
    "SC_rgb_expb_2frame.dcm": "explicit BE, RGB 8-bit, 2 frames",
    "SC_rgb_rle_16bit_2frame.dcm": "RLE, RGB 16-bit, 2 frames",
    "SC_rgb_jpeg_gdcm.dcm": "JPEG lossless, RGB",
    "SC_rgb_dcmtk_+eb+cy+np.dcm": "JPEG baseline, YBR_FULL_422",
    "SC_rgb_dcmtk_+eb+cy+n1.dcm": "JPEG baseline, YBR_FULL",
    "examples_ybr_color.dcm": "JPEG baseline, YBR_FULL_422, 30 frames",
    "SC_ybr_full_uncompressed.dcm": "explicit LE, YBR_FULL",
    "SC_ybr_full_422_uncompressed.dcm": "explicit LE, YBR_FULL_422",
    "color-pl.dcm": "explicit LE, RGB planar configuration 1",
    "OBXXXX1A.dcm": "explicit LE, PALETTE COLOR 8-bit",
    "OBXXXX1A_expb_2frame.dcm": "explicit BE, PALETTE COLOR as OW, 2 frames",
    "OBXXXX1A_rle_2frame.dcm": "RLE, PALETTE COLOR, 2 frames",
    "gdcm-US-ALOKA-16.dcm": "implicit LE, PALETTE COLOR 16-bit (segmented)",
}
LOSSY = {"JPGExtended.dcm", "JPEGLSNearLossless_16.dcm", "SC_rgb_jls_lossy_sample.dcm",
         "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm", "examples_ybr_color.dcm"}


def _saved(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize("name", sorted(FILES))
def test_blank_paints_exactly_the_boxes(name: str) -> None:
    """Outside the boxes every decoded value is kept; inside, the darkest; all frames
    kept; the output reads back with pydicom in a native syntax."""
    ds = pydicom.dcmread(_path(name))
    before = decoded_frames(pydicom.dcmread(_path(name)))
    count = len(before)
    last = count - 1
    rows, columns = before[0].shape[:2]
    boxes = {last: [Box(1, 2, 5, 6), Box(columns - 3, rows - 2, columns + 10, rows + 10)]}
    encoded, had_ratio = len(ds.PixelData), "LossyImageCompressionRatio" in ds
    assert blank_regions(ds, boxes, margin=1) == 2
    out = _saved(ds)
    assert not out.file_meta.TransferSyntaxUID.is_encapsulated
    assert out.BurnedInAnnotation == "NO"
    assert frame_count(out) == count
    after = decoded_frames(out)
    inside = np.zeros((rows, columns), bool)
    inside[1:7, 0:6] = True  # grown by the margin
    inside[rows - 3:, columns - 4:] = True  # clipped to the frame
    dark = np.asarray(darkest(out))
    for index, (old, new) in enumerate(zip(before, after, strict=True)):
        assert new.shape == old.shape
        if index != last:
            assert np.array_equal(new, old), f"frame {index} changed"
            continue
        assert np.array_equal(new[~inside], old[~inside])
        assert (new[inside] == dark).all()
    if name in LOSSY:
        assert out.LossyImageCompression == "01"
        assert out.LossyImageCompressionMethod
        assert float(out.LossyImageCompressionRatio) > 1
        if not had_ratio:  # computed: decoded size over the encoded value's
            size = out.Rows * out.Columns * out.SamplesPerPixel * out.BitsAllocated // 8
            assert out.LossyImageCompressionRatio == f"{size * count / encoded:.2f}"


@pytest.mark.parametrize("name", sorted(FILES))
def test_display_frames_are_8bit_images(name: str) -> None:
    ds = pydicom.dcmread(_path(name))
    count = frame_count(ds)
    images = list(display_frames(ds, sampled_frames(count, 4)))
    assert [i for i, _ in images] == sampled_frames(count, 4)
    for _, image in images:
        assert image.dtype == np.uint8
        assert image.shape[:2] == (ds.Rows, ds.Columns)
        assert image.ndim == 2 or image.shape[2] == 3
        assert image.max() > image.min()  # an image, not a blank


def test_display_frames_does_not_change_the_dataset() -> None:
    """The writer copies elements still as read: decoding must not replace them."""
    ds = pydicom.dcmread(_path("OBXXXX1A.dcm"))
    before = dict(ds._dict)
    list(display_frames(ds, [0]))
    assert all(ds._dict[tag] is elem for tag, elem in before.items())


def _drawn(photometric: str, bits: int, signed: bool, frames: int = 3) -> Dataset:
    """A generated image: a noisy background with a bright text-like block in frame 1."""
    rng = np.random.default_rng(7)
    kind = (np.int16 if signed else np.uint16) if bits > 8 else np.uint8
    top = (1 << bits - 1) - 1 if signed else (1 << bits) - 1
    samples = 3 if photometric == "RGB" else 1
    shape = (frames, 40, 60, 3) if samples == 3 else (frames, 40, 60)
    arr = rng.integers(0, top // 4, size=shape).astype(kind)
    arr[1, 10:20, 5:45] = top
    arr[1, 12:18, 8:42:4] = top // 8  # strokes of "letters"
    if photometric == "MONOCHROME1":
        arr = (top - arr).astype(kind)  # low values show bright: the text is at the minimum
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = 40, 60, frames
    ds.SamplesPerPixel = samples
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit = bits, bits - 1
    ds.PixelRepresentation = int(signed)
    ds.BurnedInAnnotation = "YES"
    ds.PixelData = arr.astype(f"<{arr.dtype.str[1:]}").tobytes()
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    return ds


@pytest.mark.parametrize(("photometric", "bits", "signed"), [
    ("MONOCHROME2", 8, False), ("MONOCHROME2", 12, False), ("MONOCHROME2", 12, True),
    ("MONOCHROME2", 16, True), ("MONOCHROME1", 12, False), ("RGB", 8, False),
])
def test_generated_text_shows_bright_and_is_blanked(photometric: str, bits: int,
                                                    signed: bool) -> None:
    ds = _drawn(photometric, bits, signed)
    (index, image), = display_frames(ds, [1])
    assert index == 1
    grey = image if image.ndim == 2 else image.mean(axis=2)
    assert grey[10:20, 5:45].mean() > 200  # the text block is bright (MONOCHROME1 inverted)
    assert grey[25:, :].mean() < 80
    before = decoded_frames(_drawn(photometric, bits, signed))
    assert blank_regions(ds, {1: [Box(5, 10, 45, 20)]}) == 1
    after = decoded_frames(_saved(ds))
    assert np.array_equal(after[0], before[0]) and np.array_equal(after[2], before[2])
    keep = np.ones((40, 60), bool)
    keep[10:20, 5:45] = False
    assert np.array_equal(after[1][keep], before[1][keep])
    assert (after[1][~keep] == np.asarray(darkest(ds))).all()
    (_, shown), = display_frames(ds, [1])
    grey = shown if shown.ndim == 2 else shown.mean(axis=2)
    assert grey[10:20, 5:45].max() == 0  # no text left to read


@pytest.mark.parametrize(("name", "left_in_place"), [
    ("emri_small.dcm", True), ("emri_small_jpeg_2k_lossless.dcm", False),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", False), ("MR_small_bigendian.dcm", False),
    ("OBXXXX1A_rle_2frame.dcm", False),
])
@pytest.mark.parametrize("spill", [False, True], ids=["in-memory", "scratch-file"])
def test_blank_through_the_projects_reader_and_writer(tmp_path: Path, name: str,
                                                      left_in_place: bool, spill: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Read as the pipeline reads (the scanner leaves native Pixel Data in the file's
    bytes), blank, write with the project's writer (splice where it can); the painted
    value built in memory or, as for huge images, in a scratch file."""
    if spill:
        monkeypatch.setattr(frames_module, "SPILL_ABOVE", 0)
    source = tmp_path / "in.dcm"
    source.write_bytes(Path(_path(name)).read_bytes())
    read = read_dataset(source)
    try:
        assert (read.dataset._dict[0x7FE00010].value is None) == left_in_place
        expected = decoded_frames(pydicom.dcmread(source))
        last = len(expected) - 1
        changes = Mutations(read.dataset)
        with changes.recording():  # as the engine records its pixel stage
            assert blank_regions(read.dataset, {last: [Box(0, 0, 8, 8)]},
                                 scratch_dir=tmp_path) == 1
        assert held_in_file(read.dataset._dict[0x7FE00010]) == spill
        written, _ = write_temporary(read.dataset, tmp_path / "out", "t", read.splice,
                                     changes)
    finally:
        read.close()
    out = pydicom.dcmread(written)
    assert not out.file_meta.TransferSyntaxUID.is_encapsulated
    assert out.BurnedInAnnotation == "NO"
    frames = decoded_frames(out)
    assert (frames[last][:8, :8] == np.asarray(darkest(out))).all()
    frames[last][:8, :8] = expected[last][:8, :8]
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected, strict=True))


def test_blank_a_large_file_read_from_disk(tmp_path: Path) -> None:
    """Over LARGE_FILE the reader leaves Pixel Data on disk: frames are read from there."""
    frames, rows, columns = 9, 1024, 4000  # 72 MiB of 16-bit pixels
    ds = _drawn("MONOCHROME2", 16, False)  # its elements; the pixels are replaced
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ramp = (np.arange(rows * columns, dtype=np.uint32) % 65521).astype("<u2")
    ds.PixelData = b"".join((ramp + i).tobytes() for i in range(frames))
    source = tmp_path / "large.dcm"
    ds.save_as(source, enforce_file_format=True)
    assert source.stat().st_size > LARGE_FILE
    read = read_dataset(source)
    try:
        assert read.dataset._dict[0x7FE00010].value is None  # deferred, on disk
        (_, image), = display_frames(read.dataset, [3])
        assert image.shape == (rows, columns)
        changes = Mutations(read.dataset)
        with changes.recording():
            assert blank_regions(read.dataset, {3: [Box(10, 20, 30, 40)]}) == 1
        # built frame by frame in a scratch file, copied out of it by the writer
        assert held_in_file(read.dataset._dict[0x7FE00010])
        written, _ = write_temporary(read.dataset, tmp_path / "out", "t", read.splice,
                                     changes)
    finally:
        read.close()
    out = pydicom.dcmread(written)
    for index in (0, 3, 8):
        frame = pixel_array(out, index=index)
        expected = (ramp + index).reshape(rows, columns)
        if index == 3:
            assert (frame[20:40, 10:30] == 0).all()
            frame[20:40, 10:30] = expected[20:40, 10:30]
        assert np.array_equal(frame, expected)


def test_undecodable_pixels_fail_with_the_projects_error() -> None:
    """JPEG-lossy.dcm has a JPEG stream pylibjpeg refuses: one line, not a traceback."""
    ds = pydicom.dcmread(_path("JPEG-lossy.dcm"))
    with pytest.raises(PixelDataError, match="cannot be decoded") as caught:
        blank_regions(ds, {0: [Box(0, 0, 4, 4)]})
    assert isinstance(caught.value, DeidentificationError)
    assert "\n" not in str(caught.value)
    # the decoder's own words reach the audit log as ours: no quoted text, no digit runs
    # (libjpeg says "error code '-1038'")
    assert "'-1038'" not in str(caught.value) and not re.search(r"\d{3}", str(caught.value))
    assert "PixelData" in ds and ds.file_meta.TransferSyntaxUID.is_encapsulated  # unchanged


def test_truncated_native_pixels_fail() -> None:
    ds = pydicom.dcmread(_path("MR_small.dcm"))
    ds.PixelData = ds.PixelData[:-100]
    with pytest.raises(PixelDataError):
        list(display_frames(ds, [0]))


def test_unsupported_and_bad_requests_fail() -> None:
    ds = pydicom.dcmread(_path("liver_1frame.dcm"))  # 1-bit
    with pytest.raises(PixelDataError, match="Bits Allocated 1"):
        blank_regions(ds, {})
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    with pytest.raises(PixelDataError, match="frame 1 does not exist"):
        blank_regions(ds, {1: [Box(0, 0, 1, 1)]})
    with pytest.raises(ValueError):
        Box(5, 0, 4, 1)
    ds.NumberOfFrames = "0"
    with pytest.raises(PixelDataError, match="Number of Frames"):
        frame_count(ds)


def test_box_outside_the_frame_is_not_counted() -> None:
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    before = decoded_frames(pydicom.dcmread(_path("CT_small.dcm")))
    assert blank_regions(ds, {0: [Box(500, 500, 600, 600)]}) == 0
    assert np.array_equal(decoded_frames(_saved(ds))[0], before[0])


def test_sampled_frames() -> None:
    assert sampled_frames(10, 4) == [0, 4, 8, 9]
    assert sampled_frames(1, 5) == [0]
    assert sampled_frames(0, 5) == []
    assert sampled_frames(5, 1) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        sampled_frames(5, 0)


def test_missing_extra_is_one_line() -> None:
    """Without numpy (an import that fails, as when the extra is not installed) the error
    names the extra to install."""
    code = ("import sys; sys.modules['numpy'] = None\n"
            "import pydicom\n"
            "from anonymizer.errors import MissingExtraError\n"
            "from anonymizer.pixels.frames import display_frames\n"
            f"ds = pydicom.dcmread({_path('CT_small.dcm')!r})\n"
            "try:\n    list(display_frames(ds, [0]))\n"
            "except MissingExtraError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ("pixel processing needs the optional 'pixels' extra: "
                                     "pip install 'anonymizer[pixels]'")


@pytest.mark.parametrize("name", [
    "SC_rgb_dcmtk_+eb+cy+np.dcm", "examples_ybr_color.dcm", "US1_J2KI.dcm", "JPEG-LL.dcm",
    "OBXXXX1A_rle_2frame.dcm", "JPEGLSNearLossless_16.dcm", "SC_ybr_full_422_uncompressed.dcm",
    "MR_small_bigendian.dcm", "RG3_J2KI.dcm",
])
def test_blanked_outputs_stay_valid(tmp_path: Path, name: str) -> None:
    """dciodvfy finds no error in a blanked file that the input did not have (the Image
    Pixel module rewritten for native data, the lossy history)."""
    from test_dciodvfy import _dciodvfy, errors

    dciodvfy = _dciodvfy()
    ds = pydicom.dcmread(_path(name))
    blank_regions(ds, {0: [Box(0, 0, 4, 4)]})
    out = tmp_path / name
    ds.save_as(out, enforce_file_format=True)
    assert errors(dciodvfy, out) - errors(dciodvfy, Path(_path(name))) == set()


def _generated(photometric: str, bits: int, frames: int, syntax: str = "explicit",
               ) -> tuple[Dataset, np.ndarray]:
    """An image with text drawn by Pillow, frames over different backgrounds, as written
    and read back; and the text's coverage."""
    coverage = ink((48, 64), [(2, 2, "MRN 1234")], size=12)
    grey = np.stack([speckle(48, 64, seed=seed) for seed in range(frames)])
    pixels = stored_values(grey, np.repeat(coverage[None], frames, axis=0), photometric, bits)
    return _saved(encode(image_dataset(pixels), pixels, syntax)), coverage


@pytest.mark.parametrize("syntax", ["explicit", "bigendian"])
def test_native_ybr_full_422_frames_are_read_from_their_own_place(tmp_path: Path,
                                                                 syntax: str) -> None:
    """pydicom's decoder takes the frames after the first it expands from YBR_FULL_422
    as YBR_FULL (3 samples a pixel, not 2) and reads them from the wrong offset. Read as
    the pipeline reads (little endian native data stays in the file's bytes, decoded
    from a stream)."""
    ds, _ = _generated("YBR_FULL_422", 8, 3, syntax)
    expected = decoded_frames(ds)
    assert not np.array_equal(expected[1], expected[2])
    ds.save_as(tmp_path / "in.dcm", enforce_file_format=True)
    read = read_dataset(tmp_path / "in.dcm")
    try:
        assert (read.dataset._dict[0x7FE00010].value is None) == (syntax == "explicit")
        shown = dict(display_frames(read.dataset, [0, 1, 2]))
        for index in range(3):
            rgb = convert_color_space(expected[index], "YBR_FULL", "RGB")
            assert np.array_equal(shown[index], rgb), index
        assert blank_regions(read.dataset, {2: [Box(0, 0, 4, 4)]}) == 1
        after = decoded_frames(_saved(read.dataset))
    finally:
        read.close()
    assert np.array_equal(after[0], expected[0]) and np.array_equal(after[1], expected[1])
    assert (after[2][:4, :4] == [0, 128, 128]).all()
    assert np.array_equal(after[2][4:], expected[2][4:])


@pytest.mark.parametrize("photometric", ["YBR_FULL", "YBR_FULL_422"])
def test_16bit_ybr_is_shown_as_rgb(photometric: str) -> None:
    """pydicom converts YBR to RGB for 8-bit samples only (PS3.5 allows YBR_FULL at 16
    bits in JPEG lossless and JPEG 2000, and native data at any depth)."""
    ds, coverage = _generated(photometric, 16, 2)
    (_, image), = display_frames(ds, [1])
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
    text = coverage >= 255
    assert (image[text] >= 250).all()  # white text
    assert image[~text].mean() < 120  # over a dark background
    reference = convert_color_space((decoded_frames(ds)[1] >> 8).astype(np.uint8),
                                    "YBR_FULL", "RGB")
    assert np.array_equal(image, reference)


def test_an_unknown_transfer_syntax_is_not_echoed_in_the_reason() -> None:
    """A failure reason reaches the audit log as the project's own text: the file's
    transfer syntax UID is named only when it is the standard's."""
    ds = grey_dataset(speckle(32, 32))
    ds.file_meta.TransferSyntaxUID = "1.2.3.99887766"
    with pytest.raises(PixelDataError) as caught:
        list(display_frames(ds, [0]))
    assert "99887766" not in str(caught.value)
    assert "unknown transfer syntax" in str(caught.value)
