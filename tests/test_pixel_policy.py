"""The profile's ``pixels:`` section: validated with FILE:LINE, compiled into a policy
that decides which files are searched for burned-in text and which region rules apply."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from anonymizer.errors import ProfileError
from anonymizer.pixels.policy import DEFAULT_SCAN_MODALITIES, PixelPolicy
from anonymizer.profiles import load_profile

US = "1.2.840.10008.5.1.4.1.1.6.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"


def _profile(tmp_path: Path, pixels: str) -> PixelPolicy:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\nextends: basic\n{pixels}", encoding="utf-8")
    return load_profile(str(path)).settings.pixels


def _image(sop_class: str, modality: str, **values: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(("sop_class", "modality", "burned_in", "searched"), [
    (US, "US", None, True), (SC, "OT", None, True), (SC, "CT", None, True),  # SC class
    (CT, "CT", None, False), (CT, "CT", "NO", False), (CT, "CT", "YES", True),
    ("1.2.840.10008.5.1.4.1.1.4", "MR", None, False), (CT, "XC", "NO", True),
    ("1.2.840.10008.5.1.4.1.1.77.1.1", "ES", None, True),
])
def test_which_files_are_searched_by_default(sop_class: str, modality: str,
                                             burned_in: str | None, searched: bool) -> None:
    ds = _image(sop_class, modality)
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    assert PixelPolicy(ocr="detect").scans(ds) is searched
    assert PixelPolicy(ocr="off").scans(ds) is False


def test_the_built_in_profiles_search_pixels_except_basic() -> None:
    assert load_profile("basic").settings.pixels.ocr == "off"
    for name in ("default", "research"):
        policy = load_profile(name).settings.pixels
        assert (policy.ocr, policy.text) == ("detect", "fail")
        assert policy.scan_modalities == DEFAULT_SCAN_MODALITIES
    assert load_profile("research-ocr-blank").settings.pixels.ocr == "blank"


def test_a_profile_widens_or_narrows_the_searched_set(tmp_path: Path) -> None:
    policy = _profile(tmp_path, "pixels:\n  ocr: detect\n  scan:\n    modalities: [mg, US]\n"
                      "    sop_classes: []\n  frames: {every: 3}\n  text: identifiers\n")
    assert policy.scan_modalities == ("MG", "US")
    assert policy.scans(_image(CT, "MG")) and not policy.scans(_image(SC, "OT"))
    assert (policy.every_nth, policy.text) == (3, "identifiers")


@pytest.mark.parametrize("written", ["off", "'off'", "false"])
def test_ocr_off_reads_as_off_quoted_or_not(tmp_path: Path, written: str) -> None:
    """YAML 1.1 reads an unquoted ``off`` as false: it still means off."""
    assert _profile(tmp_path, f"pixels:\n  ocr: {written}\n").ocr == "off"


def test_region_rules_match_on_attributes_with_wildcards(tmp_path: Path) -> None:
    policy = _profile(tmp_path, """\
pixels:
  regions:
    - name: LOGIQ header
      match: {Modality: US, Manufacturer: "GE*", ManufacturerModelName: LOGIQE9, Rows: 768}
      blank: [[0, 0, 1024, 60], [900, 700, 1024, 768]]
""")
    (rule,) = policy.regions
    assert rule.boxes == ((0, 0, 1024, 60), (900, 700, 1024, 768))
    logiq = _image(US, "US", Manufacturer="GE Healthcare", ManufacturerModelName="LOGIQE9",
                   Rows=768)
    assert policy.regions_for(logiq) == (rule,)
    logiq.Rows = 600
    assert policy.regions_for(logiq) == ()
    other = _image(US, "US", Manufacturer="Philips", ManufacturerModelName="LOGIQE9", Rows=768)
    assert policy.regions_for(other) == ()


@pytest.mark.parametrize(("section", "line", "message"), [
    ("pixels:\n  ocr: maybe\n", 4, "'ocr' must be one of off, detect, blank"),
    ("pixels:\n  text: sometimes\n", 4, "'text' must be one of fail, identifiers, accept"),
    ("pixels:\n  frames: 3\n", 4, "'frames' must be {every: N}"),
    ("pixels:\n  frames: {every: 0}\n", 4, "'frames' must be {every: N}"),
    ("pixels:\n  colour: red\n", 4, "unknown key 'colour' in 'pixels'"),
    ("pixels:\n  scan: [US]\n", 4, "'scan' must be a mapping"),
    ("pixels:\n  regions:\n    - name: x\n      match: {PatientName: X}\n"
     "      blank: [[0, 0, 1, 1]]\n", 6, "region rules match on"),
    ("pixels:\n  regions:\n    - name: x\n      match: {Modality: US}\n"
     "      blank: [[5, 0, 1, 1]]\n", 7, "'blank' must be a list of [x0, y0, x1, y1]"),
    ("pixels:\n  regions:\n    - {name: x}\n", 5, "a region rule is {name"),
])
def test_bad_pixel_sections_name_file_and_line(tmp_path: Path, section: str, line: int,
                                               message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        _profile(tmp_path, section)
    assert caught.value.line == line, str(caught.value)
    assert message in caught.value.message


def test_profiles_show_lists_the_pixel_policy() -> None:
    lines = load_profile("research-ocr-blank").describe()
    assert "pixels.ocr: blank" in lines
    assert any(line.startswith("region rule ") for line in lines)
