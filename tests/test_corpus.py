"""Every readable file of pydicom's and pydicom-data's test sets, through the engine and the
writer, with the default and research profiles: output readable, no private data (default),
no original PHI value left, pixel data untouched, deterministic per key."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from conftest import KEY_A, KEY_B, dcmread_quiet
from pydicom.dataset import Dataset

from anonymizer.engine import Engine
from anonymizer.errors import DeidentificationError, PixelDataError
from anonymizer.io import read_dataset, write_temporary
from anonymizer.keyed import KeyedSource
from anonymizer.profiles import load_profile

#: The test files are deliberately odd (bad VRs, over-long values): pydicom warns on reading.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PROFILES = ("default", "research")
PIXEL_DATA = 0x7FE00010
PHI_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientAddress",
                "OtherPatientIDs", "ReferringPhysicianName", "InstitutionName",
                "InstitutionAddress", "AccessionNumber", "OperatorsName",
                "PerformingPhysicianName", "StationName", "DeviceSerialNumber")
#: PS3.15 Table E.1-1: Retain Device Identity Option (research) keeps these (K).
DEVICE_IDENTITY = ("StationName", "DeviceSerialNumber")


def _keywords(profile: str) -> tuple[str, ...]:
    if profile == "default":
        return PHI_KEYWORDS
    return tuple(k for k in PHI_KEYWORDS if k not in DEVICE_IDENTITY)


def _values(ds: Dataset, keyword: str) -> set[str]:
    """Every non-empty value of ``keyword`` anywhere in ``ds`` (iterall), as text."""
    out: set[str] = set()
    for elem in ds.iterall():
        if elem.keyword != keyword:
            continue
        value = elem.value
        if value is None or value == "" or value == b"":
            continue
        items = value if isinstance(value, list | tuple | pydicom.multival.MultiValue) \
            else [value]
        for item in items:
            text = item.decode("latin-1") if isinstance(item, bytes) else str(item)
            text = text.strip(" \x00")
            if text:
                out.add(text)
    return out


def _private_tags(ds: Dataset) -> list[str]:
    return [str(elem.tag) for elem in ds.iterall() if elem.tag.is_private]


def _pixel_bytes(ds: Dataset) -> bytes | None:
    if PIXEL_DATA not in ds:
        return None
    return ds.get_item(PIXEL_DATA).value


def _burned_in(ds: Dataset) -> bool:
    return str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"


def _text_in_pixels(engine: Engine, original: Dataset, exc: Exception) -> bool:
    """A refusal because of pixels the profile searches: OCR found text in them, or
    they cannot be decoded to be searched (fail closed)."""
    return engine.profile.settings.pixels.scans(original) and (
        isinstance(exc, PixelDataError)
        or str(exc).startswith(("burned-in text detected", "identifier in pixels")))


def _deidentified(paths: list[Path], engine: Engine, out: Path
                  ) -> Iterator[tuple[Path, Dataset, Path | None, str]]:
    """(input, original dataset, written file or None, failure) for every input file."""
    for number, path in enumerate(paths):
        original = read_dataset(path).dataset
        ds = read_dataset(path).dataset
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                engine.deidentify(ds)
                written, _ = write_temporary(ds, out, f"{number:04d}")
        except DeidentificationError as exc:
            # only a file with burned-in annotation, or text in pixels the profile searches
            failure = "" if _burned_in(original) or _text_in_pixels(engine, original, exc) \
                else f"refused: {exc}"
            yield path, original, None, failure
            continue
        except Exception as exc:  # noqa: BLE001 - reported below with the file name
            yield path, original, None, f"{type(exc).__name__}: {exc}"
            continue
        yield path, original, written, ""


def test_corpus_is_large(readable_testdata: list[Path]) -> None:
    assert len(readable_testdata) > 200


@pytest.mark.parametrize("profile", PROFILES)
def test_corpus_roundtrip(readable_testdata: list[Path], engines: dict[str, Engine],
                          tmp_path: Path, profile: str) -> None:
    problems: list[str] = []
    checked_pixels = 0
    for path, original, written, failure in _deidentified(readable_testdata, engines[profile],
                                                          tmp_path):
        name = path.name
        if failure:
            problems.append(f"{name}: {failure}")
        if written is None:
            continue
        try:
            back = dcmread_quiet(written, force=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                list(back.iterall())  # every element decodes
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{name}: output unreadable: {type(exc).__name__}: {exc}")
            continue
        if len(back) == 0:
            problems.append(f"{name}: output has no elements")
        if profile == "default":
            private = _private_tags(back)
            if private:
                problems.append(f"{name}: private tags remain {private[:5]}")
        for keyword in _keywords(profile):
            leaked = _values(original, keyword) & _values(back, keyword)
            if leaked:
                problems.append(f"{name}: {keyword} keeps original value(s) {sorted(leaked)}")
        before = _pixel_bytes(original)
        if before is not None:
            after = _pixel_bytes(back)
            checked_pixels += 1
            if after != before:
                problems.append(f"{name}: Pixel Data changed ({len(before)} -> "
                                f"{None if after is None else len(after)} bytes)")
    assert not problems, "\n".join(problems)
    assert checked_pixels > 120  # default and research refuse ~35 images for their pixels


@pytest.mark.parametrize("profile", PROFILES)
def test_corpus_same_key_byte_identical(readable_testdata: list[Path], tmp_path: Path,
                                        profile: str) -> None:
    compiled = load_profile(profile)
    # two separate keyed sources: nothing may depend on a cache or on time
    first = {p: w for p, _, w, _ in _deidentified(
        readable_testdata, Engine(compiled, KeyedSource(KEY_A)), tmp_path / "1")}
    second = {p: w for p, _, w, _ in _deidentified(
        readable_testdata, Engine(compiled, KeyedSource(KEY_A)), tmp_path / "2")}
    differing = [p.name for p, w in first.items() if w is not None
                 and (second[p] is None or w.read_bytes() != second[p].read_bytes())]
    assert sum(w is not None for w in first.values()) > 180
    assert not differing


@pytest.mark.parametrize("profile", PROFILES)
def test_corpus_other_key_other_uids(readable_testdata: list[Path], tmp_path: Path,
                                     profile: str) -> None:
    compiled = load_profile(profile)
    engine_a, engine_b = Engine(compiled, KeyedSource(KEY_A)), Engine(compiled, KeyedSource(KEY_B))
    compared = 0
    same: list[str] = []
    for path in readable_testdata:
        original = read_dataset(path).dataset
        uid = str(original.get("SOPInstanceUID", "") or "")
        if not uid or uid.startswith("1.2.840.10008.") or _burned_in(original):
            continue
        with_a, with_b = read_dataset(path).dataset, read_dataset(path).dataset
        if engine_a.profile.settings.pixels.scans(original):
            continue  # its pixels may fail it (tested in test_pixel_stage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            engine_a.deidentify(with_a)
            engine_b.deidentify(with_b)
        compared += 1
        if with_a.SOPInstanceUID == with_b.SOPInstanceUID or with_a.SOPInstanceUID == uid:
            same.append(path.name)
    assert compared > 100  # images whose pixels are searched are left to test_pixel_stage
    assert not same
