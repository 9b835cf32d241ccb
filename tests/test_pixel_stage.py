"""Burned-in text through the engine and the pipeline: searched, cleaned or failed, with
real OCR on images whose text Pillow draws, and on pydicom-data's own US/SC images."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import KEY_A, dcmread_quiet
from pixel_images import MRN, blend, grey_dataset, ink, speckle
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from anonymizer.engine import Engine
from anonymizer.errors import DeidentificationError
from anonymizer.io import read_dataset
from anonymizer.keyed import KeyedSource
from anonymizer.pipeline import RunConfig, run
from anonymizer.pixels import frames
from anonymizer.pixels.ocr import default_detector, normalise_ocr_text
from anonymizer.profiles import load_profile

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _draw(image: np.ndarray, lines: list[tuple[int, int, str]], size: int = 18) -> np.ndarray:
    return blend(image, ink(image.shape, lines, size))


def _engine(profile: str) -> Engine:
    return Engine(load_profile(profile), KeyedSource(KEY_A))


def _roundtrip(ds: Dataset, tmp_path: Path) -> Dataset:
    """Written and read as a file, as the pipeline reads it."""
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return read_dataset(path).dataset


@pytest.fixture(scope="module")
def detector():
    return default_detector()


NAMED = _draw(speckle(480, 640), [(12, 8, "DOE JOHN"), (12, 34, f"MRN {MRN}"),
                                      (440, 8, "05/03/2019")])
LABELLED = _draw(speckle(480, 640), [(12, 8, "ADULT ECHO"), (500, 440, "GEN 3.5MHz")])


def test_the_detector_reads_drawn_identifiers(detector) -> None:
    texts = [normalise_ocr_text(box.text) for box in detector.detect(NAMED)]
    assert any(MRN in text for text in texts), texts
    assert any(normalise_ocr_text("DOE JOHN") in text for text in texts), texts


def test_default_fails_a_file_with_an_identifier_in_its_pixels(tmp_path: Path) -> None:
    ds = _roundtrip(grey_dataset(NAMED), tmp_path)
    with pytest.raises(DeidentificationError, match="identifier in pixels"):
        _engine("default").deidentify(ds)


def test_default_fails_text_that_is_not_an_identifier(tmp_path: Path) -> None:
    ds = _roundtrip(grey_dataset(LABELLED), tmp_path)
    with pytest.raises(DeidentificationError, match="burned-in text detected"):
        _engine("research").deidentify(ds)


def test_text_identifiers_policy_writes_text_without_identifiers(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\nextends: research\npixels:\n  text: identifiers\n")
    ds = _roundtrip(grey_dataset(LABELLED), tmp_path)
    result = Engine(load_profile(str(profile)), KeyedSource(KEY_A)).deidentify(ds)
    assert result.pixels.text_boxes >= 1 and result.pixels.identifier_boxes == 0
    named = _roundtrip(grey_dataset(NAMED), tmp_path)
    with pytest.raises(DeidentificationError, match="identifier in pixels"):
        Engine(load_profile(str(profile)), KeyedSource(KEY_A)).deidentify(named)


def test_ocr_blank_cleans_the_text_and_nothing_else(tmp_path: Path, detector) -> None:
    ds = _roundtrip(grey_dataset(NAMED), tmp_path)
    before = np.frombuffer(ds.PixelData, np.uint8).reshape(480, 640).copy()
    result = _engine("research-ocr-blank").deidentify(ds)
    assert result.pixels.blanked >= 2 and result.pixels.identifier_boxes >= 2
    assert ds.BurnedInAnnotation == "NO"
    assert "113101" in [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    after = np.frombuffer(ds.PixelData, np.uint8).reshape(480, 640)
    changed = before != after
    assert changed.any() and (after[changed] == 0).all()  # painted black
    rows, columns = np.nonzero(changed)
    assert rows.max() < 80  # only the text at the top; the image below is bit-exact
    assert not any(MRN in normalise_ocr_text(box.text) for box in detector.detect(after))


def test_ocr_blank_cleans_every_frame_of_a_cine_loop(tmp_path: Path) -> None:
    first = NAMED
    plain = speckle(480, 640, seed=9)
    stack = np.stack([first, plain, plain, plain])
    ds = _roundtrip(grey_dataset(stack), tmp_path)
    result = _engine("research-ocr-blank").deidentify(ds)
    assert result.pixels.searched_frames == 2  # first and last (every 10th: none between)
    after = np.frombuffer(ds.PixelData, np.uint8).reshape(4, 480, 640)
    for index in range(4):  # the boxes found on frame 0 are painted on every frame
        assert (after[index][:60, :200] == 0).mean() > 0.2


def test_burned_in_annotation_yes_fails_unless_a_rule_cleaned_it(tmp_path: Path) -> None:
    plain = speckle(256, 256)
    ct = grey_dataset(plain, SOPClassUID=CT_IMAGE, Modality="CT", BurnedInAnnotation="YES")
    with pytest.raises(DeidentificationError, match="burned-in annotation"):
        _engine("basic").deidentify(_roundtrip(ct, tmp_path))
    profile = tmp_path / "region.yaml"
    profile.write_text("name: region\nextends: basic\npixels:\n  regions:\n"
                       "    - name: top bar\n      match: {Manufacturer: ACME}\n"
                       "      blank: [[0, 0, 256, 20]]\n")
    ds = _roundtrip(ct, tmp_path)
    result = Engine(load_profile(str(profile)), KeyedSource(KEY_A)).deidentify(ds)
    assert result.pixels.rules == ["top bar"] and result.pixels.blanked == 1
    assert ds.BurnedInAnnotation == "NO"
    after = np.frombuffer(ds.PixelData, np.uint8).reshape(256, 256)
    assert (after[:20] == 0).all() and (after[20:] == plain[20:]).all()


def test_a_region_rule_that_misses_the_frame_cleans_nothing(tmp_path: Path) -> None:
    """Rectangles wholly outside the image paint nothing: Burned In Annotation YES still
    fails, and a file without it is written untouched, without claiming Clean Pixel Data."""
    plain = speckle(256, 256)
    profile = tmp_path / "outside.yaml"
    profile.write_text("name: outside\nextends: basic\npixels:\n  regions:\n"
                       "    - name: bar of a bigger screen\n      match: {Manufacturer: ACME}\n"
                       "      blank: [[600, 0, 700, 20]]\n")
    engine = Engine(load_profile(str(profile)), KeyedSource(KEY_A))
    marked = grey_dataset(plain, SOPClassUID=CT_IMAGE, Modality="CT", BurnedInAnnotation="YES")
    with pytest.raises(DeidentificationError, match="burned-in annotation"):
        engine.deidentify(_roundtrip(marked, tmp_path))
    ds = _roundtrip(grey_dataset(plain, SOPClassUID=CT_IMAGE, Modality="CT"), tmp_path)
    result = engine.deidentify(ds)
    assert result.pixels.blanked == 0
    assert "BurnedInAnnotation" not in ds
    assert "113101" not in {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    assert np.array_equal(np.frombuffer(ds.PixelData, np.uint8).reshape(256, 256), plain)


def test_float_pixel_data_of_a_searched_class_fails(tmp_path: Path) -> None:
    """Float Pixel Data cannot be shown to OCR: an ultrasound image holding it fails
    instead of being written unsearched."""
    ds = grey_dataset(speckle(64, 64))
    del ds.PixelData
    ds.BitsAllocated = 32
    ds.FloatPixelData = np.zeros((64, 64), np.float32).tobytes()
    with pytest.raises(DeidentificationError, match="float pixel data"):
        _engine("default").deidentify(ds)


def test_ct_and_mr_are_not_searched_by_default(tmp_path: Path) -> None:
    ct = grey_dataset(NAMED, SOPClassUID=CT_IMAGE, Modality="CT")
    result = _engine("default").deidentify(_roundtrip(ct, tmp_path))
    assert result.pixels.audit() is None


def test_a_compressed_input_is_cleaned_and_written_uncompressed(tmp_path: Path) -> None:
    ds = grey_dataset(NAMED)
    ds.compress(RLELossless)
    ds = _roundtrip(ds, tmp_path)
    _engine("research-ocr-blank").deidentify(ds)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    after = np.frombuffer(ds.PixelData, np.uint8).reshape(480, 640)
    assert (after[100:] == NAMED[100:]).all()


def test_the_pipeline_records_counts_never_text(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    grey_dataset(NAMED).save_as(source / "named.dcm", enforce_file_format=True)
    grey_dataset(LABELLED, SOPInstanceUID="1.2.3.4.5").save_as(source / "labelled.dcm",
                                                             enforce_file_format=True)
    key = tmp_path / "key"
    key.write_bytes(KEY_A)
    for profile, written in (("default", 0), ("research-ocr-blank", 2)):
        out = tmp_path / profile
        summary = run(RunConfig(input_dir=source, output_dir=out, profile=profile,
                                key_file=str(key), jobs=1, progress=False))
        assert summary.counts.get("written", 0) == written, summary.failures
        log = (out / "audit.jsonl").read_text()
        records = [json.loads(line) for line in log.splitlines()]
        files = [r for r in records if r["type"] == "file"]
        assert len(files) == 2
        if written:
            assert all(r["pixels"]["searched_frames"] == 1 for r in files)
            assert all(r["pixels"]["rules"] == ["ocr blank"] for r in files)
        else:
            reasons = sorted(r["reason"] for r in records if r["type"] == "file")
            assert reasons[0].startswith("de-identify: burned-in text detected: ")
            assert reasons[1].startswith("de-identify: identifier in pixels: ")
        for text in ("DOE", "JOHN", MRN, "ADULT", "ECHO", "05/03/2019"):
            assert text not in log
        for output in out.rglob("*.dcm"):
            assert dcmread_quiet(output).BurnedInAnnotation == "NO"


def test_a_missing_ocr_engine_stops_the_run_with_one_line(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    key = tmp_path / "key"
    key.write_bytes(KEY_A)
    code = ("import sys; sys.modules['rapidocr'] = None; "
            "from anonymizer.cli import main; sys.exit(main())")
    proc = subprocess.run([sys.executable, "-c", code, "run", "--profile", "default",
                           "--key-file", str(key), str(source), str(tmp_path / "out")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "[ocr]" in lines[0], proc.stderr


# ------------------------------------------------ pydicom's and pydicom-data's images
def _test_images(modalities: tuple[str, ...]) -> list[Path]:
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(get_testdata_files()):
            path = Path(name)
            if not path.is_file():
                continue
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - not DICOM
                continue
            if ds.get("Modality") in modalities and "PixelData" in pydicom.dcmread(path):
                found.append(path)
    return found


def _text_found(path: Path, detector) -> int | None:
    """How many text boxes of 3+ letters or digits the detector finds on the sampled
    frames (None: undecodable)."""
    try:
        ds = read_dataset(path).dataset
        indices = frames.sampled_frames(frames.frame_count(ds), 10)
        return sum(sum(sum(c.isalnum() for c in box.text) >= 3 for box in detector.detect(image))
                   for _, image in frames.display_frames(ds, indices))
    except Exception:  # noqa: BLE001 - counted apart: not decodable here
        return None


#: Measured on pydicom's and pydicom-data's images (2026-11-30): the files whose pixels
#: hold text (3+ letters or digits in a box), all ultrasound and test patterns, most with
#: an institution, a date or a time drawn into them.
TEXT_IN_PIXELS = {
    "JPGLosslessP14SV1_1s_1f_8b.dcm", "OBXXXX1A.dcm", "OBXXXX1A_2frame.dcm",
    "OBXXXX1A_expb.dcm", "OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_rle.dcm",
    "OBXXXX1A_rle_2frame.dcm", "US1_J2KI.dcm", "US1_J2KR.dcm", "US1_UNCI.dcm", "US1_UNCR.dcm",
    "color3d_jpeg_baseline.dcm", "gdcm-US-ALOKA-16.dcm", "gdcm-US-ALOKA-16_big.dcm",
    "mlut_18.dcm", "vlut_04.dcm", "GDCMJ2K_TextGBR.dcm", "examples_jpeg2k.dcm",
    "examples_palette.dcm", "examples_rgb_color.dcm", "examples_ybr_color.dcm",
}


def test_the_test_images_with_burned_in_text_are_refused_and_no_other(
        engines: dict[str, Engine]) -> None:
    refused: dict[str, str] = {}
    searched = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in _test_images(("US", "OT", "SC", "XC", "ES", "CR", "DX", "XA", "RF", None)):
            ds = read_dataset(path).dataset
            searched += engines["default"].pixels.policy.scans(ds)
            try:
                engines["default"].deidentify(ds)
            except DeidentificationError as exc:
                refused[path.name] = str(exc)
    text = {name for name, reason in refused.items() if "in pixels" in reason
            or reason.startswith("burned-in text")}
    assert searched > 80
    assert text == TEXT_IN_PIXELS
    # pixels that cannot be searched are not written either (fail closed)
    undecodable = {name: reason for name, reason in refused.items() if name not in text}
    assert undecodable == {name: "Bits Allocated 32 is not supported (only 8 or 16)"
                           for name in undecodable}
    assert sorted(undecodable) == sorted(f"SC_rgb{kind}_32bit{frames_}.dcm"
                                         for kind in ("", "_expb", "_rle")
                                         for frames_ in ("", "_2frame"))


def test_no_text_found_on_ct_and_mr_test_images(detector) -> None:
    """CT and MR are not searched by default; the detector reads no text on them either
    (a box of fewer than 3 letters or digits, a stray "9", is not text)."""
    false_alarms = []
    for path in _test_images(("CT", "MR")):
        found = _text_found(path, detector)
        if found:
            false_alarms.append(path.name)
    assert false_alarms == []


def test_ocr_blank_is_byte_identical_serial_and_parallel(tmp_path: Path) -> None:
    """OCR and blanking give the same boxes in every worker process: a nightly rerun or
    a run with more processes writes the same bytes."""
    source = tmp_path / "in"
    source.mkdir()
    for number in range(4):
        lines = [(8, 6, f"DOE JOHN {number}"), (8, 30, f"MRN {MRN}")]
        image = blend(speckle(120, 200, seed=number), ink((120, 200), lines))
        grey_dataset(image, SOPInstanceUID=f"1.2.826.0.1.3680043.10.1234.9.{number}") \
            .save_as(source / f"us{number}.dcm", enforce_file_format=True)
    key = tmp_path / "key"
    key.write_bytes(KEY_A)
    trees = []
    for jobs in (1, 2):
        out = tmp_path / f"out-j{jobs}"
        summary = run(RunConfig(input_dir=source, output_dir=out, profile="research-ocr-blank",
                                key_file=str(key), jobs=jobs, batch_size=1, progress=False))
        assert summary.counts.get("written", 0) == 4, summary.failures
        records = sorted((r["input"], json.dumps(r["pixels"], sort_keys=True))
                         for r in map(json.loads, (out / "audit.jsonl").read_text().splitlines())
                         if r["type"] == "file")
        assert all(json.loads(p)["blanked"] >= 2 for _, p in records)
        trees.append(({p.relative_to(out).as_posix(): p.read_bytes()
                       for p in out.rglob("*.dcm")}, records))
    assert trees[0] == trees[1]
