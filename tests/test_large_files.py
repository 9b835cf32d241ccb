"""Files above the in-memory limit: parsed with values left on disk, Pixel Data streamed."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
from conftest import SAMPLE_DATA, dcmread_quiet
from pydicom.pixels import pixel_array

from anonymizer.io import reader

FRAMES = 300  # 300 x 512 x 512 x 2 bytes = 150 MiB of Pixel Data, above reader.LARGE_FILE
FRAME = bytes(range(256)) * 2048  # one 512 x 512 16-bit frame


def _write_multiframe(path: Path) -> None:
    """A multi-frame CT with the sample data's PHI, its Pixel Data written in chunks."""
    ds = dcmread_quiet(SAMPLE_DATA / "ROE^RICHARD_99887766/20180220_CT_ABDOMEN/IM0001.dcm")
    del ds.PixelData
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = FRAMES
    ds.save_as(path, enforce_file_format=True)
    with open(path, "ab") as handle:
        handle.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, FRAMES * len(FRAME)))
        for _ in range(FRAMES):
            handle.write(FRAME)


def _pixel_sha256(path: Path) -> str:
    ds = pydicom.dcmread(path, defer_size=1024)
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(raw.value_tell)
        left = raw.length
        while left:
            chunk = handle.read(min(left, 1 << 20))
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def test_large_file_is_streamed_bit_exact_and_deidentified(tmp_path: Path,
                                                           key_file: Path) -> None:
    source = tmp_path / "in" / "ROE^RICHARD" / "big.dcm"
    source.parent.mkdir(parents=True)
    _write_multiframe(source)
    assert source.stat().st_size > reader.LARGE_FILE
    result = subprocess.run(
        [sys.executable, "-m", "anonymizer", "run", "--profile", "research", "--key-file",
         str(key_file), "--no-progress", str(tmp_path / "in"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    outputs = list((tmp_path / "out").rglob("*.dcm"))
    assert len(outputs) == 1
    assert _pixel_sha256(outputs[0]) == _pixel_sha256(source)
    header = dcmread_quiet(outputs[0], stop_before_pixels=True)
    original = dcmread_quiet(source, stop_before_pixels=True)
    assert header.PatientID != original.PatientID
    assert header.SOPInstanceUID != original.SOPInstanceUID
    assert header.StudyDate != original.StudyDate
    with open(outputs[0], "rb") as handle:
        head = handle.read(64 << 10)
    assert b"ROE" not in head and b"99887766" not in head


def test_large_file_cleaned_by_a_region_rule_frame_by_frame(tmp_path: Path,
                                                            key_file: Path) -> None:
    """A region rule on a file above the in-memory limit: every frame painted, every other
    pixel kept, the new Pixel Data built in a scratch file that leaves nothing behind."""
    source = tmp_path / "in" / "ROE^RICHARD" / "big.dcm"
    source.parent.mkdir(parents=True)
    _write_multiframe(source)
    profile = tmp_path / "bar.yaml"
    profile.write_text(
        "name: bar\nversion: '1'\nextends: research\npixels:\n  ocr: off\n  regions:\n"
        "    - name: top bar\n      match: {Modality: CT}\n      blank: [[0, 0, 512, 16]]\n")
    result = subprocess.run(
        [sys.executable, "-m", "anonymizer", "run", "--profile", str(profile), "--key-file",
         str(key_file), "--no-progress", str(tmp_path / "in"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    outputs = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    written = [p for p in outputs if p.suffix == ".dcm"]
    assert len(written) == 1
    assert {p.name for p in outputs} - {written[0].name} <= {"audit.jsonl", "summary.json"}
    header = dcmread_quiet(written[0], stop_before_pixels=True)
    assert header.BurnedInAnnotation == "NO"
    assert "113101" in {item.CodeValue for item in header.DeidentificationMethodCodeSequence}
    low = -(1 << header.BitsStored - 1) if header.PixelRepresentation else 0
    for index in (0, FRAMES // 2, FRAMES - 1):
        frame = pixel_array(written[0], index=index)
        assert (frame[:16] == low).all()
        assert np.array_equal(frame[16:], pixel_array(source, index=index)[16:])
