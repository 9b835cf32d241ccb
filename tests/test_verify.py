"""``anonymizer verify``: a deliberately weak de-identification is found in every place an
identifier can stay; the built-in profiles' outputs verify clean."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import KEY_A, SAMPLE_DATA, dcmread_quiet, one_line_error
from pixel_images import MRN, NAME
from pixel_images import grey_dataset as _ultrasound
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from test_pixel_stage import NAMED

from anonymizer.cli import main
from anonymizer.keyed import KeyedSource, load_key
from anonymizer.pipeline.worker import input_token
from anonymizer.profiles import load_profile
from anonymizer.verify import AuditPairs, Finding, Pair, manifest_pairs, raw, verify_pairs
from anonymizer.verify.check import Checker

BIRTH, STUDY_DATE = "19650412", "20190305"
SOP_UID = "1.2.826.0.1.3680043.10.1234.3.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SR_DOCUMENT = "1.2.840.10008.5.1.4.1.1.88.11"
#: what must never be printed without --show-values
VALUES = ("DOE", "JOHN", MRN, STUDY_DATE, SOP_UID, "MÜLLER", "99887766", "ROE")


def _ct() -> Dataset:
    """A small CT with a patient, dates and UIDs of its own (those of the ultrasound
    images of test_pixel_stage: the same patient)."""
    return _ultrasound(np.zeros((8, 8), np.uint8), SOPClassUID=CT_IMAGE, Modality="CT",
                       SOPInstanceUID=SOP_UID, StudyDescription="CT CHEST")


def _weakly(ds: Dataset) -> Dataset:
    """What a de-identifier that got the header right would leave (nothing to find)."""
    out = copy.deepcopy(ds)
    out.PatientName, out.PatientID, out.PatientBirthDate = "SUBJECT 1", "S1", ""
    out.StudyDate = "20000101"
    out.SOPInstanceUID = out.file_meta.MediaStorageSOPInstanceUID = "2.25.1001"
    out.StudyInstanceUID, out.SeriesInstanceUID = "2.25.1002", "2.25.1003"
    return out


def _private_name(out: Dataset) -> None:
    out.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", "seen: Doe")


def _private_without_vr(out: Dataset) -> None:
    block = out.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x02, "UN", f"{NAME}\x00".encode())


def _sr_text(out: Dataset) -> None:
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
    item.TextValue = "Results phoned to Mr. Doe."
    out.ContentSequence = Sequence([Dataset(), item])


def _file_meta(out: Dataset) -> None:
    out.file_meta.ImplementationVersionName = f"MRN{MRN}"


def _kept_dates(out: Dataset) -> None:
    out.StudyDate, out.PatientBirthDate = STUDY_DATE, BIRTH


def _kept_uid(out: Dataset) -> None:
    out.SOPInstanceUID = out.file_meta.MediaStorageSOPInstanceUID = SOP_UID


def _date_in_text(out: Dataset) -> None:
    out.StudyDescription = "CT CHEST 05/03/2019"


#: (change to the weak output, output name, expected findings (where, tag path, kind))
LEAKS = {
    "private element": (_private_name, "out.dcm",
                        [("private", "(0009,1001)", "PatientName surname")]),
    "private value without a VR": (_private_without_vr, "out.dcm",
                                   [("private", "(0009,1002)", "PatientName full name")]),
    "SR content item": (_sr_text, "out.dcm",
                        [("element", "(0040,A730)[1].(0040,A160)", "PatientName surname")]),
    "file meta": (_file_meta, "out.dcm", [("file meta", "(0002,0013)", "PatientID digits")]),
    "output path": (None, "DOE_JOHN/out.dcm", [("path", "", "PatientName full name")]),
    "dates kept": (_kept_dates, "out.dcm", [("element", "(0008,0020)", "StudyDate"),
                                            ("element", "(0010,0030)", "PatientBirthDate")]),
    "UID kept": (_kept_uid, "out.dcm", [("file meta", "(0002,0003)", "UID"),
                                        ("element", "(0008,0018)", "UID")]),
    "date in text": (_date_in_text, "out.dcm", [("element", "(0008,1030)", "date")]),
}


def _release(tmp_path: Path, source: Dataset, output: Dataset, name: str) -> tuple[Path, Path,
                                                                                    Path]:
    """IN with one input, OUT with its output at ``name``, and a manifest pairing them."""
    source_dir, output_dir = tmp_path / "in", tmp_path / "out"
    source_dir.mkdir(parents=True)
    source.save_as(source_dir / "in.dcm", enforce_file_format=True)
    target = output_dir / name
    target.parent.mkdir(parents=True)
    output.save_as(target, enforce_file_format=True)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"input,output\nin.dcm,{name}\n")
    return source_dir, output_dir, manifest


def _verify(*args: object) -> tuple[int, list[str], str]:
    """``anonymizer verify`` in this process: exit code, stdout lines, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", "--no-progress", "-j", "1", *map(str, args)])
    return code, out.getvalue().splitlines(), err.getvalue()


def _triples(findings: list[Finding]) -> list[tuple[str, str, str]]:
    return sorted((f.where, f.tag_path, f.kind) for f in findings)


def test_a_decent_output_has_nothing_to_find(tmp_path: Path) -> None:
    source = _ct()
    paths = _release(tmp_path, source, _weakly(source), "out.dcm")
    code, lines, err = _verify("--manifest", paths[2], paths[0], paths[1])
    assert (code, lines) == (0, []), err
    assert err.startswith("anonymizer: 1 outputs verified: 0 with findings (0 findings), "
                          "0 not checked in ")


@pytest.mark.parametrize("leak", LEAKS)
def test_each_leak_is_found_where_it_is(tmp_path: Path, leak: str) -> None:
    change, name, expected = LEAKS[leak]
    source = _ct()
    output = _weakly(source)
    if change is not None:
        change(output)
    source_dir, output_dir, manifest = _release(tmp_path, source, output, name)
    results = list(verify_pairs(manifest_pairs(manifest, source_dir, output_dir)))
    assert len(results) == 1 and results[0].error is None
    assert _triples(list(results[0].findings)) == sorted(expected)  # each once, no more
    assert all(f.value is None for f in results[0].findings)
    code, lines, _ = _verify("--manifest", manifest, source_dir, output_dir)
    assert code == 1 and len(lines) == len(expected)
    assert not any(value.lower() in "\n".join(lines).lower() for value in VALUES), lines


def test_trailing_bytes_after_the_dataset_are_read(tmp_path: Path) -> None:
    source = _ct()
    source_dir, output_dir, manifest = _release(tmp_path, source, _weakly(source), "out.dcm")
    with open(output_dir / "out.dcm", "ab") as handle:
        handle.write(b"\x00\x00" + NAME.encode() + b" " + MRN.encode())
    [result] = verify_pairs(manifest_pairs(manifest, source_dir, output_dir))
    assert _triples(list(result.findings)) == [("raw bytes", "", "PatientID digits"),
                                               ("raw bytes", "", "PatientName full name")]


def test_pixel_bytes_are_not_read_as_text(tmp_path: Path) -> None:
    """The bytes of an image are numbers: ``DOE`` spelled by pixel values is no finding."""
    source = _ct()
    output = _weakly(source)
    output.PixelData = b" DOE 12345678 ".ljust(64, b"\x00")
    paths = _release(tmp_path, source, output, "out.dcm")
    [result] = verify_pairs(manifest_pairs(paths[2], paths[0], paths[1]))
    assert result.clean, result


def test_values_are_shown_only_when_asked(tmp_path: Path) -> None:
    source = _ct()
    output = _weakly(source)
    _sr_text(output)
    paths = _release(tmp_path, source, output, "DOE_JOHN/out.dcm")
    code, lines, _ = _verify("--manifest", paths[2], paths[0], paths[1])
    assert code == 1
    assert lines == ["[PatientName full name]/out.dcm: path: PatientName full name",
                     "[PatientName full name]/out.dcm: element (0040,A730)[1].(0040,A160): "
                     "PatientName surname"]
    code, lines, _ = _verify("--manifest", paths[2], "--show-values", paths[0], paths[1])
    assert lines == ["DOE_JOHN/out.dcm: path: PatientName full name = 'DOE_JOHN'",
                     "DOE_JOHN/out.dcm: element (0040,A730)[1].(0040,A160): "
                     "PatientName surname = 'Doe'"]


def test_a_name_burned_into_the_pixels_is_read(tmp_path: Path) -> None:
    """An ultrasound image (drawn with Pillow) whose header was blanked: OCR reads the
    name and MRN where the profile's pixel policy searches ultrasound."""
    source = _ultrasound(NAMED)
    output = _weakly(source)
    paths = _release(tmp_path, source, output, "out.dcm")
    [result] = verify_pairs(manifest_pairs(paths[2], paths[0], paths[1]), "default")
    assert result.searched_frames == 1 and result.error is None
    pixels = {f.kind for f in result.findings if f.where == "pixels"}
    assert {"PatientID digits", "date"} <= pixels and any("PatientName" in k for k in pixels)
    assert {f.where for f in result.findings} == {"pixels"}
    # CT is not searched by the policy: the same pixels in a CT are not read
    ct = _ultrasound(NAMED, SOPClassUID=CT_IMAGE, Modality="CT")
    paths = _release(tmp_path / "ct", ct, _weakly(ct), "out.dcm")
    [result] = verify_pairs(manifest_pairs(paths[2], paths[0], paths[1]), "default")
    assert result.clean and result.searched_frames == 0


# --------------------------------------------------------- whole releases, the CLI
def _weak_copy(source: Path, target: Path) -> Path:
    """Every DICOM file of ``source`` copied with only PatientName and PatientID blanked,
    at the same relative path; returns the manifest."""
    rows = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        try:
            ds = dcmread_quiet(path)
        except Exception:  # noqa: BLE001 - not DICOM: not copied
            continue
        ds.PatientName, ds.PatientID = "", ""
        relative = path.relative_to(source).as_posix()
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target / relative)
        rows.append((relative, relative))
    manifest = target.parent / "weak.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("input", "output"), *rows])
    return manifest


def test_blanking_only_name_and_id_of_sample_data_is_found(tmp_path: Path) -> None:
    manifest = _weak_copy(SAMPLE_DATA, tmp_path / "weak")
    report = tmp_path / "report.jsonl"
    code, lines, err = _verify("--manifest", manifest, "--report", report, SAMPLE_DATA,
                               tmp_path / "weak")
    assert code == 1 and lines == []
    assert err.startswith("anonymizer: 12 outputs verified: 12 with findings (621 findings), "
                          "0 not checked in ")
    records = [json.loads(line) for line in report.read_text().splitlines()]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["findings"] == 621
    places = {kind.split(":")[0] for kind in summary["by_kind"]}
    assert places == {"element", "private", "file meta", "path"}
    for kind in ("element: PatientName surname", "element: PhysiciansOfRecord full name",
                 "element: StudyDate", "element: UID", "element: AccessionNumber",
                 "private: PatientName full name", "path: PatientName full name",
                 "element: titled name", "element: telephone number"):
        assert summary["by_kind"].get(kind), (kind, summary["by_kind"])
    text = report.read_text().lower()
    assert not any(value.lower() in text for value in VALUES)
    assert stat.S_IMODE(report.stat().st_mode) == 0o644


@pytest.fixture(scope="module")
def pydicom_selection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pydicom's and pydicom-data's files that exercise verify: SR, waveform, RT, private
    tags, big endian and implicit VR, character sets (ISO 2022 Japanese, UTF-8, German,
    Russian, a character set inside a sequence), an icon image in a sequence, a
    secondary capture the pixel policy reads, and values of the input that read as a
    name (a test file named ``Name^Text``; ``ANON`` as an ID, the prefix of pseudonyms)."""
    root = tmp_path_factory.mktemp("selection")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                     "rtplan.dcm", "reportsi.dcm", "test-SR.dcm", "waveform_ecg.dcm",
                     "693_J2KR.dcm", "eCT_Supplemental.dcm", "SC_rgb_small_odd.dcm",
                     "examples_overlay.dcm", "liver_1frame.dcm", "emri_small_RLE.dcm"):
            shutil.copyfile(get_testdata_file(name), root / name)
        for name in ("chrH31.dcm", "chrX1.dcm", "chrGerm.dcm", "chrRuss.dcm",
                     "chrSQEncoding.dcm"):
            [path] = get_charset_files(name)
            shutil.copyfile(path, root / name)
    return root


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory, pydicom_selection: Path
             ) -> dict[tuple[str, str], Path]:
    """OUT of ``anonymizer run`` with default and research on sample_data and the selection."""
    root = tmp_path_factory.mktemp("releases")
    key = root / "key"
    key.write_bytes(KEY_A)
    made = {}
    for data, source in (("sample", SAMPLE_DATA), ("pydicom", pydicom_selection)):
        for profile in ("default", "research"):
            out = root / f"{data}-{profile}"
            assert main(["run", "--no-progress", "-j", "1", "-p", profile, "--key-file",
                         str(key), str(source), str(out)]) == 0
            made[(data, profile)] = out
    return made


#: (data, profile) -> (outputs, kept by the profile, frames read by OCR)
CLEAN = {
    ("sample", "default"): (12, 0, 0),
    ("sample", "research"): (12, 24, 0),
    ("pydicom", "default"): (18, 109, 5),
    ("pydicom", "research"): (18, 120, 5),
}


@pytest.mark.parametrize("release", CLEAN, ids="-".join)
def test_the_built_in_profiles_outputs_verify_clean(release: tuple[str, str],
                                                    releases: dict[tuple[str, str], Path],
                                                    pydicom_selection: Path,
                                                    tmp_path: Path) -> None:
    data, _ = release
    source = SAMPLE_DATA if data == "sample" else pydicom_selection
    key = tmp_path / "key"
    key.write_bytes(KEY_A)
    code, lines, err = _verify("--key-file", key, source, releases[release])
    assert (code, lines) == (0, []), err
    outputs, kept, frames = CLEAN[release]
    expected = f"anonymizer: {outputs} outputs verified: 0 with findings (0 findings), " \
        "0 not checked"
    if kept:
        expected += f", {kept} kept by the profile (--strict lists them)"
    if frames:
        expected += f", {frames} frames read by OCR"
    assert err.startswith(expected + " in "), err


def test_strict_counts_what_the_profile_keeps(releases: dict[tuple[str, str], Path],
                                              tmp_path: Path) -> None:
    """research keeps Station Name and Device Serial Number (Retain Device Identity):
    the profile's choice, counted only with --strict."""
    key = tmp_path / "key"
    key.write_bytes(KEY_A)
    code, lines, _ = _verify("--strict", "--key-file", key, SAMPLE_DATA,
                             releases[("sample", "research")])
    assert code == 1 and len(lines) == 24
    assert {line.rsplit(": ", 1)[1] for line in lines} == {"StationName", "DeviceSerialNumber"}


# ------------------------------------------------------------------------- pairing
def _run_sample(tmp_path: Path, profile: str = "default") -> tuple[Path, Path, Path]:
    source = tmp_path / "in"
    shutil.copytree(SAMPLE_DATA, source)
    key = tmp_path / "key"
    key.write_bytes(KEY_A)
    out = tmp_path / "out"
    assert main(["run", "--no-progress", "-j", "1", "-p", profile, "--key-file", str(key),
                 str(source), str(out)]) == 0
    return source, out, key


def test_an_output_that_could_not_be_checked_is_not_named_by_its_path(tmp_path: Path) -> None:
    """With --layout mirror an output's path is the input's (PHI): when the input is gone
    the name cannot be searched, so the report names it by a digest unless asked."""
    source = tmp_path / "in"
    shutil.copytree(SAMPLE_DATA, source)
    key = tmp_path / "key"
    key.write_bytes(KEY_A)
    out = tmp_path / "out"
    assert main(["run", "--no-progress", "-j", "1", "--layout", "mirror", "--key-file",
                 str(key), str(source), str(out)]) == 0
    gone = source / "ROE^RICHARD_99887766" / "20220911_CT_HEAD" / "IM0001.dcm"
    gone.unlink()
    code, lines, err = _verify("--key-file", key, source, out)
    unchecked = [line for line in lines if "input not found" in line]
    assert code == 1 and len(unchecked) == 1
    assert unchecked[0].startswith("[output ") and "RICHARD" not in "\n".join(lines) + err
    assert "99887766" not in "\n".join(lines) + err
    # named by its input's keyed token (as in the audit log), not by a hash of its path,
    # which a guessed path could be checked against
    token = input_token(KeyedSource(KEY_A), gone.relative_to(source).as_posix())
    assert unchecked[0].startswith(f"[output {token[:16]}]"), unchecked[0]
    code, lines, _ = _verify("--show-values", "--key-file", key, source, out)
    assert any(line.startswith("ROE^RICHARD_99887766/") and "input not found" in line
               for line in lines)


def test_a_missing_input_or_output_is_reported_not_checked(tmp_path: Path) -> None:
    source, out, key = _run_sample(tmp_path)
    (source / "ROE^RICHARD_99887766" / "20220911_CT_HEAD" / "IM0001.dcm").unlink()
    gone = next(p for p in sorted(out.rglob("*.dcm")))
    gone.unlink()
    code, lines, err = _verify("--key-file", key, source, out)
    assert code == 1
    assert sorted(line.split(": ", 1)[1] for line in lines) == [
        "not checked: input not found under IN", "not checked: output missing"]
    assert f"{gone.relative_to(out).as_posix()}: not checked: output missing" in lines
    assert "12 outputs verified: 0 with findings (0 findings), 2 not checked" in err


def test_a_missing_output_with_an_identifier_in_its_name_is_not_named(tmp_path: Path) -> None:
    """--layout mirror keeps the input's path (here the patient's name and ID): an output
    that is missing is still reported by its name read for identifiers, never as it is."""
    source = tmp_path / "in"
    shutil.copytree(SAMPLE_DATA, source)
    key = tmp_path / "key"
    key.write_bytes(KEY_A)
    out = tmp_path / "out"
    assert main(["run", "--no-progress", "-j", "1", "-p", "default", "--layout", "mirror",
                 "--key-file", str(key), str(source), str(out)]) == 0
    gone = next(p for p in sorted(out.rglob("*.dcm")) if "ROE" in p.as_posix())
    gone.unlink()
    code, lines, _ = _verify("--key-file", key, "--strict", source, out)
    assert code == 1
    missing = [line for line in lines if "output missing" in line]
    assert len(missing) == 1
    assert "ROE" not in missing[0] and "99887766" not in missing[0]


def test_the_audit_log_pairs_only_with_the_runs_key(tmp_path: Path) -> None:
    source, out, _ = _run_sample(tmp_path)
    other = tmp_path / "other.key"
    other.write_bytes(KEY_A[::-1])
    proc = subprocess.run([sys.executable, "-m", "anonymizer", "verify", "--key-file",
                           str(other), str(source), str(out)], capture_output=True, text=True,
                          check=False, env={k: v for k, v in os.environ.items()
                                            if k != "ANONYMIZER_KEY"})
    assert "used another key" in one_line_error(proc)
    proc = subprocess.run([sys.executable, "-m", "anonymizer", "verify", str(source),
                           str(out)], capture_output=True, text=True, check=False,
                          env={k: v for k, v in os.environ.items() if k != "ANONYMIZER_KEY"})
    assert "no secret key" in one_line_error(proc)


def test_a_profile_that_is_not_built_in_must_be_named(tmp_path: Path) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text("name: mine\nextends: default\n")
    source, out, key = _run_sample(tmp_path, str(profile))
    code, _, err = _verify("--key-file", key, source, out)
    assert code == 2 and "profile 'mine' is not a built-in profile" in err
    assert _verify("--key-file", key, "--profile", profile, source, out)[0] == 0


@pytest.mark.parametrize(("text", "message"), [
    ("", "needs 'input' and 'output' columns"),
    ("in,out\na,b\n", "needs 'input' and 'output' columns"),
])
def test_a_manifest_without_its_columns_is_a_usage_error(tmp_path: Path, text: str,
                                                         message: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    code, lines, err = _verify("--manifest", manifest, SAMPLE_DATA, tmp_path)
    assert (code, lines) == (2, []) and err.strip() == f"anonymizer: error: {manifest}: {message}"


def test_the_runs_own_manifest_pairs_too(tmp_path: Path) -> None:
    """``run --manifest`` writes input,output,status: verify takes it as it is."""
    source = tmp_path / "in"
    shutil.copytree(SAMPLE_DATA, source)
    key = tmp_path / "key"
    key.write_bytes(KEY_A)
    manifest = tmp_path / "manifest.csv"
    assert main(["run", "--no-progress", "-j", "1", "--key-file", str(key), "--manifest",
                 str(manifest), str(source), str(tmp_path / "out")]) == 0
    pairs = list(manifest_pairs(manifest, source, tmp_path / "out"))
    assert len(pairs) == 12 and all(p.problem is None for p in pairs)  # notes.txt skipped
    code, _, err = _verify("--manifest", manifest, "--profile", "default", source,
                           tmp_path / "out")
    assert code == 0, err


def test_results_come_in_pair_order_whatever_the_jobs(tmp_path: Path) -> None:
    source, out, key = _run_sample(tmp_path)
    pairs = list(AuditPairs(source, out, load_key(key)))
    sequential = list(verify_pairs(pairs, "default", show_values=True))
    parallel = list(verify_pairs(pairs, "default", show_values=True, n_jobs=2, batch_size=3))
    assert parallel == sequential
    assert [r.output for r in sequential] == [p.output for p in pairs]


# ------------------------------------------------------------------------- reports
def test_a_report_with_values_is_phi(tmp_path: Path) -> None:
    source = _ct()
    output = _weakly(source)
    _sr_text(output)
    source_dir, output_dir, manifest = _release(tmp_path, source, output, "out.dcm")
    inside = output_dir / "report.jsonl"
    code, _, err = _verify("--manifest", manifest, "--show-values", "--report", inside,
                           source_dir, output_dir)
    assert code == 2 and "must be outside OUT" in err and not inside.exists()
    report = tmp_path / "report.jsonl"
    code, lines, err = _verify("--manifest", manifest, "--show-values", "--report", report,
                               source_dir, output_dir)
    assert code == 1 and lines == [] and err.rstrip().endswith(f"; report: {report}")
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert records[0] == {"type": "finding", "output": "out.dcm", "where": "element",
                          "tag_path": "(0040,A730)[1].(0040,A160)",
                          "kind": "PatientName surname", "value": "Doe"}
    assert [r["type"] for r in records] == ["finding", "pair", "summary"]
    assert not list(tmp_path.glob(".anonymizer-tmp-*"))


def test_verify_help_lists_its_options() -> None:
    proc = subprocess.run([sys.executable, "-m", "anonymizer", "verify", "--help"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    for option in ("--key-file", "--audit", "--manifest", "--profile", "--show-values",
                   "--report", "--strict", "--jobs", "--batch-size", "--timeout",
                   "--no-progress", "IN", "OUT"):
        assert option in proc.stdout


# --------------------------------------------------------------------- raw bytes
def test_a_file_read_in_chunks_gives_the_runs_of_one_read_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 32, 300, dtype=np.uint8).tobytes()  # control bytes only
    data = noise[:37] + b"Dr. Doe 12345678" + noise[37:] + b"x" + noise[:5] + "Müller".encode()
    path = tmp_path / "f"
    path.write_bytes(data)
    skipped = [(100, 140)]
    whole = list(raw.file_text_runs(path, data, skipped))
    assert "Dr. Doe 12345678" in whole and "Müller" in whole
    for chunk in (17, 20, 33, 64):  # longer than the runs: a longer run is cut
        monkeypatch.setattr(raw, "CHUNK", chunk)
        assert list(raw.file_text_runs(path, None, skipped)) == whole, chunk


def test_a_checker_without_a_profile_reads_no_pixels(tmp_path: Path) -> None:
    source = _ultrasound(NAMED)
    paths = _release(tmp_path, source, _weakly(source), "out.dcm")
    pair = Pair("out.dcm", paths[1] / "out.dcm", paths[0] / "in.dcm")
    assert Checker().check(pair).clean
    assert not Checker(load_profile("default")).check(pair).clean


def test_an_ids_digits_inside_a_number_are_chance(tmp_path: Path) -> None:
    """Patient ID 6542 and a Pixel Spacing of 0.6542: numbers are not read for IDs, in
    the elements or in the bytes; a private value without a VR that is the ID is."""
    source = _ct()
    source.PatientID = "6542"
    output = _weakly(source)
    output.PixelSpacing = ["0.6542", "1.6542"]
    output.SliceThickness = "6542.5"
    paths = _release(tmp_path, source, output, "out.dcm")
    [result] = verify_pairs(manifest_pairs(paths[2], paths[0], paths[1]))
    assert result.clean, result
    output.private_block(0x0009, "ACME 1.0", create=True).add_new(0x02, "UN", b"6542")
    paths = _release(tmp_path / "id", source, output, "out.dcm")
    [result] = verify_pairs(manifest_pairs(paths[2], paths[0], paths[1]))
    assert _triples(list(result.findings)) == [("private", "(0009,1002)", "PatientID digits")]


def test_pixels_blanked_by_the_profile_verify_clean(tmp_path: Path) -> None:
    """research-ocr-blank paints over the text OCR finds: OCR finds none in its output."""
    source = tmp_path / "in"
    source.mkdir()
    _ultrasound(NAMED).save_as(source / "named.dcm", enforce_file_format=True)
    key = tmp_path / "key"
    key.write_bytes(KEY_A)
    out = tmp_path / "out"
    assert main(["run", "--no-progress", "-j", "1", "-p", "research-ocr-blank", "--key-file",
                 str(key), str(source), str(out)]) == 0
    code, lines, err = _verify("--key-file", key, source, out)
    assert (code, lines) == (0, []), err
    assert "1 frames read by OCR" in err
