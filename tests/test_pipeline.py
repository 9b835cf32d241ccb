"""The batch pipeline end to end: real CLI subprocesses and the Python API, no mocks.

Covers the output layout, collision names, non-DICOM and corrupt inputs, determinism
across job counts and runs, PHI in paths and the audit log, path refusals, the
manifest and crosswalk, exit codes and ``anonymizer report``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import KEY_A, KEY_B, SAMPLE_DATA, dcmread_quiet, one_line_error
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue

from anonymizer.keyed import KeyedSource
from anonymizer.pipeline import RunConfig, run
from anonymizer.pipeline.worker import input_token

ANONYMIZER = [sys.executable, "-m", "anonymizer"]
AUDIT = "audit.jsonl"
TMP_PREFIX = ".anonymizer-tmp-"
DEFAULT_LAYOUT = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
ROE_HEAD = SAMPLE_DATA / "ROE^RICHARD_99887766" / "20220911_CT_HEAD" / "IM0001.dcm"
DOE_CT = SAMPLE_DATA / "DOE^JOHN_12345678" / "20190101_CT_CHEST" / "IM0001.dcm"
MULLER_DIR = "MÜLLER^ANNA MRN-0042"
PIXEL_DATA = 0x7FE00010
PATIENT_ADDRESS = 0x00101040


# --------------------------------------------------------------------------- helpers

def _env(key: bytes | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANONYMIZER_KEY"}
    if key is not None:
        env["ANONYMIZER_KEY"] = key.decode()
    return env


def cli(*args: object, key: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m anonymizer ARGS`` (ANONYMIZER_KEY set to ``key`` or unset)."""
    return subprocess.run([*ANONYMIZER, *map(str, args)], capture_output=True, text=True,
                          env=_env(key), timeout=300, check=False)


def anonymize(source: Path, out: Path, key_file: Path | None, *options: object,
              key: bytes | None = None) -> subprocess.CompletedProcess[str]:
    key_option = ["--key-file", key_file] if key_file is not None else []
    return cli("run", *key_option, "--no-progress", *options, source, out, key=key)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def all_files(root: Path) -> list[str]:
    """Relative POSIX paths of every file under ``root``, hidden ones included."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def output_tree(out: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file in OUT except the audit log."""
    return {rel: sha256(out / rel) for rel in all_files(out) if rel != AUDIT}


def input_state(root: Path) -> dict[str, tuple[str, int, int]]:
    """Content hash, mtime and mode of every file under ``root``."""
    state = {}
    for rel in all_files(root):
        info = (root / rel).stat()
        state[rel] = (sha256(root / rel), info.st_mtime_ns, info.st_mode)
    return state


def audit_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def file_records(out: Path) -> list[dict]:
    return [r for r in audit_records(out / AUDIT) if r["type"] == "file"]


def records_by_input(out: Path, source: Path, key: bytes = KEY_A) -> dict[str, dict]:
    """The audit's file records keyed by input relative path (the log only has tokens)."""
    keyed = KeyedSource(key)
    tokens = {input_token(keyed, rel): rel for rel in all_files(source)}
    records = file_records(out)
    by_input = {tokens[r["input"]]: r for r in records}
    assert len(by_input) == len(records), "two audit records for one input"
    return by_input


def check_audit_matches_outputs(out: Path) -> list[dict]:
    """Every written record names an existing output with its hash; no other output exists."""
    records = file_records(out)
    written = {}
    for record in records:
        assert record["status"] in ("written", "failed", "skipped"), record
        if record["status"] == "written":
            assert record["output"] not in written, "two inputs claim one output"
            written[record["output"]] = record["output_sha256"]
        else:
            assert record["output"] is None and record["reason"], record
    assert output_tree(out) == written
    return records


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def manifest_map(path: Path) -> dict[str, tuple[str, str]]:
    rows = read_csv(path)
    assert rows[0] == ["input", "output", "status"]
    return {row[0]: (row[1], row[2]) for row in rows[1:]}


def truncated_copy(source: Path, target: Path, tag: int) -> None:
    """Copy ``source`` cut off in the middle of the value of element ``tag``."""
    raw = dcmread_quiet(source).get_item(tag)
    assert raw.length > 8
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes()[: raw.value_tell + raw.length // 2])


def garbage_after_dicm(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)


def write_without_sop_instance_uid(source: Path, target: Path, raw: bool,
                                   instance_number: int) -> None:
    """A DICOM file without SOP Instance UID: Part 10 (with meta) or a raw dataset."""
    ds = dcmread_quiet(source)
    del ds.SOPInstanceUID
    ds.InstanceNumber = instance_number
    target.parent.mkdir(parents=True, exist_ok=True)
    if raw:
        ds.file_meta = FileMetaDataset()
        ds.preamble = None
        ds.save_as(target, enforce_file_format=False, implicit_vr=True, little_endian=True)
    else:
        ds.save_as(target, enforce_file_format=False)
    assert "SOPInstanceUID" not in dcmread_quiet(target, force=True)


def dicom_values(out: Path) -> dict[str, set[str]]:
    """PatientID and UIDs found in the outputs."""
    values: dict[str, set[str]] = {k: set() for k in DEFAULT_LAYOUT}
    for rel in output_tree(out):
        ds = dcmread_quiet(out / rel, force=True)
        for keyword in DEFAULT_LAYOUT:
            if ds.get(keyword):
                values[keyword].add(str(ds.get(keyword)))
    return values


def _date(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%Y%m%d").date()


@pytest.fixture(scope="module")
def module_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "secret.key"
    path.write_bytes(KEY_A)
    return path


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory, module_key: Path) -> SimpleNamespace:
    """sample_data/ through the default profile and layout, two jobs, small batches."""
    base = tmp_path_factory.mktemp("sample_run")
    source = base / "in"
    shutil.copytree(SAMPLE_DATA, source)
    out = base / "out"
    proc = anonymize(source, out, module_key, "--jobs", "2", "--batch-size", "2",
                     "--manifest", base / "manifest.csv")
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(source=source, out=out, proc=proc, manifest=base / "manifest.csv")


@pytest.fixture(scope="module")
def research_run(tmp_path_factory: pytest.TempPathFactory, module_key: Path) -> SimpleNamespace:
    """sample_data/ through the research profile, with manifest and crosswalk."""
    base = tmp_path_factory.mktemp("research_run")
    source = base / "in"
    shutil.copytree(SAMPLE_DATA, source)
    out = base / "out"
    side = base / "phi"  # outside OUT
    proc = anonymize(source, out, module_key, "--profile", "research",
                     "--manifest", side / "manifest.csv", "--crosswalk", side / "crosswalk.csv")
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(source=source, out=out, proc=proc,
                           manifest=side / "manifest.csv", crosswalk=side / "crosswalk.csv")


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory, module_key: Path) -> SimpleNamespace:
    """One good file, three non-DICOM files and three corrupt ones."""
    base = tmp_path_factory.mktemp("mixed_run")
    source = base / "in"
    source.mkdir()
    shutil.copyfile(ROE_HEAD, source / "good.dcm")
    shutil.copyfile(SAMPLE_DATA / "DOE^JOHN_12345678" / "notes.txt", source / "notes.txt")
    (source / "text.dcm").write_text("This is a text file with a .dcm name\n")
    (source / "empty.dcm").write_bytes(b"")
    truncated_copy(ROE_HEAD, source / "cut" / "in_pixel_data.dcm", PIXEL_DATA)
    truncated_copy(ROE_HEAD, source / "cut" / "in_header.dcm", PATIENT_ADDRESS)
    garbage_after_dicm(source / "garbage.dcm")
    before = input_state(source)
    out = base / "out"
    proc = anonymize(source, out, module_key, "--jobs", "2", "--batch-size", "1")
    return SimpleNamespace(base=base, source=source, out=out, proc=proc, before=before)


# --------------------------------------------------------------------------- layout

def test_default_layout_is_filled_from_the_deidentified_output(sample_run):
    outputs = output_tree(sample_run.out)
    dicom_inputs = [rel for rel in all_files(sample_run.source) if not rel.endswith(".txt")]
    assert len(outputs) == len(dicom_inputs) == 12
    originals = {str(dcmread_quiet(sample_run.source / rel).SOPInstanceUID)
                 for rel in dicom_inputs}
    for rel in outputs:
        ds = dcmread_quiet(sample_run.out / rel)
        expected = [str(ds.get(keyword)) for keyword in DEFAULT_LAYOUT]
        expected[-1] += ".dcm"
        assert rel.split("/") == expected
        assert str(ds.SOPInstanceUID) not in originals  # the de-identified value, not the input's
        assert str(ds.StudyInstanceUID).startswith("2.25.")
    assert {r["output"] for r in file_records(sample_run.out) if r["output"]} == set(outputs)


def test_mirror_layout_keeps_input_relative_paths(tmp_path, sample_copy, key_file):
    out = tmp_path / "out"
    proc = anonymize(sample_copy, out, key_file, "--layout", "mirror")
    assert proc.returncode == 0, proc.stderr
    dicom_inputs = [rel for rel in all_files(sample_copy) if not rel.endswith(".txt")]
    assert sorted(output_tree(out)) == dicom_inputs  # incl. 'MÜLLER^ANNA MRN-0042/...', 'IM0003'
    check_audit_matches_outputs(out)
    for rel in dicom_inputs:  # the content is still de-identified
        assert dcmread_quiet(out / rel).PatientID != dcmread_quiet(sample_copy / rel).PatientID


def test_custom_layout_template_from_cli(tmp_path, sample_copy, key_file):
    out = tmp_path / "out"
    layout = "{PatientID}/{Modality}/{StudyDate}/img-{SOPInstanceUID}.dcm"
    proc = anonymize(sample_copy, out, key_file, "--layout", layout)
    assert proc.returncode == 0, proc.stderr
    outputs = output_tree(out)
    assert len(outputs) == 12
    for rel in outputs:
        ds = dcmread_quiet(out / rel)
        study_date = str(ds.get("StudyDate") or "") or "no-StudyDate"  # empty -> no-Keyword
        assert rel.split("/") == [str(ds.PatientID), str(ds.Modality), study_date,
                                  f"img-{ds.SOPInstanceUID}.dcm"]
    start = audit_records(out / AUDIT)[0]
    assert start["type"] == "run_start" and start["layout"] == layout


def test_layout_through_the_python_api(tmp_path, sample_copy, key_file):
    out = tmp_path / "out"
    summary = run(RunConfig(input_dir=sample_copy, output_dir=out, profile="default",
                            key_file=str(key_file), jobs=1,
                            layout="{Modality}/{SOPInstanceUID}.dcm", progress=False))
    assert summary.exit_code == 0
    assert (summary.counts["written"], summary.counts["skipped"]) == (12, 1)
    for rel in output_tree(out):
        ds = dcmread_quiet(out / rel)
        assert rel == f"{ds.Modality}/{ds.SOPInstanceUID}.dcm"


# --------------------------------------------------------------------------- collisions

def test_collisions_get_distinct_deterministic_names(tmp_path, key_file):
    source = tmp_path / "in"
    copies = ["a/x.dcm", "b/y.dcm", "z.dcm"]  # one file, three names, one SOP Instance UID
    for rel in copies:
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROE_HEAD, source / rel)
    write_without_sop_instance_uid(ROE_HEAD, source / "nosop" / "part10.dcm", False, 101)
    write_without_sop_instance_uid(ROE_HEAD, source / "nosop" / "raw.dcm", True, 102)
    runs = []
    for name, options in (("one", ["--jobs", "2", "--batch-size", "1"]),
                          ("two", ["--jobs", "2", "--batch-size", "1"]),
                          ("serial", ["--jobs", "1"])):
        out, manifest = tmp_path / f"out-{name}", tmp_path / f"manifest-{name}.csv"
        proc = anonymize(source, out, key_file, *options, "--manifest", manifest)
        assert proc.returncode == 0, proc.stderr
        check_audit_matches_outputs(out)
        runs.append((output_tree(out), manifest_map(manifest)))
    (tree, names), *others = runs
    for other_tree, other_names in others:  # same names and bytes every time
        assert other_names == names
        assert other_tree == tree
    assert len(tree) == 5 and all(status == "written" for _, status in names.values())

    copy_outputs = [names[rel][0] for rel in copies]
    assert len(set(copy_outputs)) == 3
    folders = {o.rsplit("/", 1)[0] for o in copy_outputs}
    assert len(folders) == 1
    plain = [o for o in copy_outputs if "~" not in o]
    assert len(plain) == 1
    stem = plain[0][: -len(".dcm")]
    suffixed = [o for o in copy_outputs if o != plain[0]]
    assert all(re.fullmatch(re.escape(stem) + r"~[0-9a-f]{12}\.dcm", o) for o in suffixed)
    out = tmp_path / "out-one"
    sop = {str(dcmread_quiet(out / o).SOPInstanceUID) for o in copy_outputs}
    assert sop == {stem.rsplit("/", 1)[1]}

    fallback = [names[rel][0] for rel in ("nosop/part10.dcm", "nosop/raw.dcm")]
    assert len(set(fallback)) == 2 and not set(fallback) & set(copy_outputs)
    numbers = set()
    for rel in fallback:
        assert rel.endswith(".dcm") and rel.rsplit("/", 1)[1] != ".dcm"
        ds = dcmread_quiet(out / rel, force=True)
        assert "SOPInstanceUID" not in ds
        numbers.add(int(ds.InstanceNumber))
    assert numbers == {101, 102}  # both inputs survived: neither overwrote the other


# --------------------------------------------------------------------------- bad inputs

def test_non_dicom_inputs_are_skipped_and_not_written(mixed_run):
    records = records_by_input(mixed_run.out, mixed_run.source)
    assert set(records) == set(all_files(mixed_run.source))
    for rel in ("notes.txt", "text.dcm", "empty.dcm"):
        assert records[rel]["status"] == "skipped", records[rel]
        assert records[rel]["reason"] and records[rel]["output"] is None
    assert records["good.dcm"]["status"] == "written"


def test_corrupt_inputs_are_recorded_and_not_written(mixed_run):
    records = records_by_input(mixed_run.out, mixed_run.source)
    corrupt = ["cut/in_pixel_data.dcm", "cut/in_header.dcm", "garbage.dcm"]
    for rel in corrupt:
        assert records[rel]["status"] in ("failed", "skipped"), records[rel]
        assert records[rel]["reason"] and records[rel]["output"] is None
        assert records[rel]["output_sha256"] is None
    failed = any(records[rel]["status"] == "failed" for rel in corrupt)
    assert mixed_run.proc.returncode == (1 if failed else 0), mixed_run.proc.stderr
    check_audit_matches_outputs(mixed_run.out)


def test_out_holds_only_the_audit_log_and_outputs(mixed_run):
    files = all_files(mixed_run.out)
    assert AUDIT in files
    outputs = [f for f in files if f != AUDIT]
    assert len(outputs) == 1 and outputs[0].endswith(".dcm")
    assert not [f for f in all_files(mixed_run.base) if TMP_PREFIX in f]
    assert input_state(mixed_run.source) == mixed_run.before


# --------------------------------------------------------------------------- determinism

def test_parallel_and_serial_runs_are_byte_identical(tmp_path, testdata_tree, key_file):
    source = tmp_path / "in"
    shutil.copytree(SAMPLE_DATA, source / "sample")
    shutil.copytree(testdata_tree, source / "testdata")
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    # basic: the same walk without OCR of the test images' pixels, which would make this
    # the slowest test by far (the pixel stage's own pipeline runs are in test_pixel_stage)
    first = anonymize(source, serial, key_file, "--jobs", "1", "--profile", "basic")
    second = anonymize(source, parallel, key_file, "--jobs", "2", "--batch-size", "3",
                       "--profile", "basic")
    assert first.returncode == second.returncode
    assert first.returncode in (0, 1), first.stderr
    tree = output_tree(serial)
    assert len(tree) > 100
    assert sorted(tree) == sorted(output_tree(parallel))  # same relative paths
    assert tree == output_tree(parallel)  # and the same bytes
    assert file_records(serial) == file_records(parallel)  # same records, same order
    check_audit_matches_outputs(serial)


def test_same_key_same_outputs_other_key_other_pseudonyms(tmp_path, sample_copy, key_file):
    key_b = tmp_path / "b.key"
    key_b.write_bytes(KEY_B)
    runs = {}
    for name, key_path, env_key in (("a", key_file, None), ("a-env", None, KEY_A),
                                    ("b", key_b, None)):
        out = tmp_path / f"out-{name}"
        proc = anonymize(sample_copy, out, key_path, "--jobs", "2", key=env_key)
        assert proc.returncode == 0, proc.stderr
        runs[name] = out
    assert output_tree(runs["a"]) == output_tree(runs["a-env"])
    fingerprints = {n: audit_records(o / AUDIT)[0]["key_fingerprint"] for n, o in runs.items()}
    assert fingerprints["a"] == fingerprints["a-env"] != fingerprints["b"]
    values_a, values_b = dicom_values(runs["a"]), dicom_values(runs["b"])
    for keyword in DEFAULT_LAYOUT:
        assert values_a[keyword] and values_b[keyword]
        assert values_a[keyword].isdisjoint(values_b[keyword]), keyword
    assert set(output_tree(runs["a"])).isdisjoint(output_tree(runs["b"]))


_TWO_API_RUNS = """
import os, sys
from pathlib import Path
from anonymizer.pipeline import RunConfig, run
source, base, mode, jobs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
key_path = base / "rotated.key"
for name, key in (("a", sys.argv[5]), ("b", sys.argv[6])):
    if mode == "env":
        os.environ["ANONYMIZER_KEY"] = key
    else:
        key_path.write_text(key)
    summary = run(RunConfig(input_dir=source, output_dir=base / ("out-" + name),
                            profile="default", key_file=str(key_path) if mode != "env" else None,
                            jobs=jobs, batch_size=1, progress=False))
    assert summary.counts["written"] == 12, summary.counts
"""


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("source", ["env", "key-file"])
def test_python_api_runs_use_the_key_they_are_given(tmp_path, sample_copy, source, jobs):
    """One process, two API runs, the key changed in between: the second uses the new key.

    The key comes from ANONYMIZER_KEY, or from one key file rewritten between the runs.
    (In a subprocess, so that the test process and its worker pool stay clean.)
    """
    proc = subprocess.run([sys.executable, "-c", _TWO_API_RUNS, sample_copy, tmp_path, source,
                           str(jobs), KEY_A.decode(), KEY_B.decode()],
                          capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    outs = [tmp_path / "out-a", tmp_path / "out-b"]
    fingerprints = [audit_records(out / AUDIT)[0]["key_fingerprint"] for out in outs]
    assert fingerprints == [KeyedSource(KEY_A).fingerprint, KeyedSource(KEY_B).fingerprint]
    values_a, values_b = dicom_values(outs[0]), dicom_values(outs[1])
    assert values_a["PatientID"].isdisjoint(values_b["PatientID"])
    assert values_a["SOPInstanceUID"].isdisjoint(values_b["SOPInstanceUID"])


# --------------------------------------------------------------------------- PHI

def _phi_strings(source: Path) -> set[str]:
    """Identifying values read from the input headers (names split into components)."""
    found: set[str] = set()
    for rel in all_files(source):
        try:
            ds = dcmread_quiet(source / rel, force=True)
        except Exception:  # noqa: BLE001 - not DICOM
            continue
        for keyword in ("PatientName", "ReferringPhysicianName"):
            value = str(ds.get(keyword) or "")
            found |= {part for part in value.split("^") if len(part) >= 3 and "." not in part}
        for keyword in ("PatientID", "PatientBirthDate", "AccessionNumber", "OtherPatientIDs",
                        "InstitutionName"):
            value = ds.get(keyword)
            values = list(value) if isinstance(value, MultiValue) else [value]
            found |= {str(v) for v in values if v and len(str(v)) >= 3}
    return found


@pytest.mark.parametrize("profile", ["default", "research"])
def test_no_phi_in_audit_log_or_output_paths(tmp_path, sample_copy, key_file, profile):
    phi_dir = sample_copy / "DOE^JOHN" / "19650412_CT"
    phi_dir.mkdir(parents=True)
    shutil.copyfile(DOE_CT, phi_dir / "MRN12345678.dcm")
    (phi_dir / "DOE JOHN 12345678.txt").write_text("DOE JOHN MRN 12345678\n")
    (phi_dir / "ROE^RICHARD_99887766.dcm").write_bytes(b"")
    truncated_copy(DOE_CT, sample_copy / MULLER_DIR / "KMS2107040042_19881224.dcm", PIXEL_DATA)
    phi = _phi_strings(sample_copy)
    assert {"DOE", "JOHN", "MÜLLER", "ANNA", "ROE", "RICHARD", "12345678", "MRN-0042",
            "99887766", "19650412", "OLD-12345678", "SPRINGFIELD GENERAL HOSPITAL",
            "RIVIERA"} <= phi
    out, side = tmp_path / "out", tmp_path / "phi"
    proc = anonymize(sample_copy, out, key_file, "--profile", profile, "--jobs", "2",
                     "--manifest", side / "manifest.csv", "--crosswalk", side / "crosswalk.csv")
    assert proc.returncode == 1, proc.stderr  # the truncated file
    audit_text = (out / AUDIT).read_text(encoding="utf-8")
    decoded = json.dumps(audit_records(out / AUDIT), ensure_ascii=False)  # \u00dc -> Ü
    paths = "\n".join(all_files(out))
    texts = {"audit": audit_text.lower(), "audit (decoded)": decoded.lower(),
             "output paths": paths.lower(), "stderr": proc.stderr.lower(),
             "stdout": proc.stdout.lower()}
    for value in sorted(phi):
        for where, text in texts.items():
            assert value.lower() not in text, f"{value!r} in {where}"
    # the detector works: the manifest (outside OUT) does hold the PHI paths
    assert "doe^john" in (side / "manifest.csv").read_text(encoding="utf-8").lower()
    for secret in (KEY_A.decode(), KEY_A.hex()):
        assert secret.lower() not in audit_text.lower()
        assert secret.lower() not in decoded.lower()
    for rel in output_tree(out):
        data = (out / rel).read_bytes()
        assert KEY_A not in data and KEY_A.hex().encode() not in data
        if profile == "default":
            for value in ("DOE^JOHN", "MÜLLER^ANNA", "ROE^RICHARD", "12345678", "MRN-0042",
                          "99887766", "19650412", "19881224", "19500606"):
                for encoded in {value.encode("latin-1"), value.encode("utf-8")}:
                    assert encoded not in data, f"{value!r} in {rel}"


# --------------------------------------------------------------------------- refusals

def _refusal_case(case: str, tmp_path: Path, source: Path) -> tuple[list[object], Path, Path]:
    """(run arguments, the input folder, a path that must not be created)."""
    out = tmp_path / "out"
    if case == "out-equals-in":
        return [source, source], source, out
    if case == "out-inside-in":
        return [source, source / "out"], source, source / "out"
    if case == "in-inside-out":
        inner = out / "in"
        shutil.copytree(source, inner)
        return [inner, out], inner, out / "out"
    if case == "out-is-symlink-to-in":
        link = tmp_path / "link"
        link.symlink_to(source, target_is_directory=True)
        return [source, link], source, out
    if case == "manifest-inside-out":
        return ["--manifest", out / "manifest.csv", source, out], source, out
    if case == "manifest-inside-out-via-dotdot":
        return ["--manifest", tmp_path / "x" / ".." / "out" / "m.csv", source, out], source, out
    if case == "crosswalk-inside-out":
        return ["--crosswalk", out / "sub" / "crosswalk.csv", source, out], source, out
    if case == "manifest-inside-in":
        return ["--manifest", source / "manifest.csv", source, out], source, out
    if case == "nonexistent-in":
        return [tmp_path / "missing", out], source, out
    if case == "in-is-a-file":
        return [source / "DOE^JOHN_12345678" / "notes.txt", out], source, out
    raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "out-equals-in", "out-inside-in", "in-inside-out", "out-is-symlink-to-in",
    "manifest-inside-out", "manifest-inside-out-via-dotdot", "crosswalk-inside-out",
    "manifest-inside-in", "nonexistent-in", "in-is-a-file",
])
def test_refusals_exit_2_with_one_line(tmp_path, sample_copy, key_file, case):
    args, source, not_created = _refusal_case(case, tmp_path, sample_copy)
    before = input_state(source)
    proc = cli("run", "--key-file", key_file, "--no-progress", *args)
    one_line_error(proc)
    assert proc.stdout == ""
    assert not not_created.exists()
    assert not list(tmp_path.rglob("*.csv"))
    assert input_state(source) == before


def test_missing_key_is_refused_and_mentions_keygen(tmp_path, sample_copy):
    out = tmp_path / "out"
    proc = anonymize(sample_copy, out, None)  # ANONYMIZER_KEY unset
    line = one_line_error(proc)
    assert "keygen" in line and "ANONYMIZER_KEY" in line
    assert not out.exists()


def test_missing_key_file_is_refused(tmp_path, sample_copy):
    proc = anonymize(sample_copy, tmp_path / "out", tmp_path / "no-such.key")
    one_line_error(proc)
    assert not (tmp_path / "out").exists()


def test_audit_log_inside_in_is_refused(tmp_path, sample_copy, key_file):
    """--audit may not write into the input tree (it would also be read as an input)."""
    before = input_state(sample_copy)
    proc = anonymize(sample_copy, tmp_path / "out", key_file, "--audit", sample_copy / "a.jsonl")
    one_line_error(proc)
    assert input_state(sample_copy) == before


def test_out_next_to_in_with_a_common_name_prefix_is_accepted(tmp_path, sample_copy, key_file):
    out = tmp_path / "in-out"  # 'in-out' starts with 'in' but is not inside it
    summary = run(RunConfig(input_dir=sample_copy, output_dir=out, profile="default",
                            key_file=str(key_file), jobs=1, progress=False,
                            manifest_path=tmp_path / "in-manifest.csv"))
    assert summary.exit_code == 0 and summary.counts["written"] == 12


def test_symlink_from_in_to_out_does_not_feed_outputs_back(tmp_path, sample_copy, key_file):
    """OUT reached through a symbolic link inside IN: its files are never inputs."""
    out = tmp_path / "out"
    out.mkdir()
    (sample_copy / "zz-link").symlink_to(out, target_is_directory=True)
    proc = anonymize(sample_copy, out, key_file, "--jobs", "1", "--batch-size", "1")
    if proc.returncode == 2:  # refusing is fine too
        one_line_error(proc)
        return
    assert proc.returncode == 0, proc.stderr
    records = file_records(out)
    assert len(records) == 13  # the 13 files of sample_data, nothing from OUT
    assert sum(r["status"] == "written" for r in records) == 12
    assert len(output_tree(out)) == 12


def test_input_files_are_never_modified(tmp_path, sample_copy, key_file):
    extra = sample_copy / "extra"
    truncated_copy(ROE_HEAD, extra / "cut.dcm", PIXEL_DATA)
    shutil.copyfile(ROE_HEAD, extra / "copy.dcm")
    write_without_sop_instance_uid(ROE_HEAD, extra / "raw.dcm", True, 7)
    before = input_state(sample_copy)
    for name, options in (("a", ["--jobs", "2"]), ("b", ["--layout", "mirror", "--jobs", "1"]),
                          ("c", ["--profile", "research", "--crosswalk", tmp_path / "c.csv",
                                 "--manifest", tmp_path / "m.csv"])):
        proc = anonymize(sample_copy, tmp_path / f"out-{name}", key_file, *options)
        assert proc.returncode == 1, proc.stderr  # cut.dcm
        assert input_state(sample_copy) == before


# --------------------------------------------------------------------------- manifest, crosswalk

def test_manifest_lists_every_input_outside_out(research_run):
    rows = manifest_map(research_run.manifest)
    assert sorted(rows) == all_files(research_run.source)
    for rel, (output, status) in rows.items():
        if rel.endswith(".txt"):
            assert (output, status) == ("", "skipped")
        else:
            assert status == "written" and (research_run.out / output).is_file()
    assert stat.S_IMODE(research_run.manifest.stat().st_mode) == 0o600
    assert stat.S_IMODE(research_run.crosswalk.stat().st_mode) == 0o600
    assert all_files(research_run.out) == sorted([AUDIT, *(o for o, s in rows.values() if o)])


def test_crosswalk_maps_patient_ids_with_date_offsets(research_run):
    rows = read_csv(research_run.crosswalk)
    assert rows[0] == ["kind", "attribute", "original", "replacement", "date_offset_days"]
    patient_rows = {r[2]: r for r in rows[1:] if r[:2] == ["pseudonym", "PatientID"]}
    manifest = manifest_map(research_run.manifest)
    checked = set()
    for rel, (output, status) in manifest.items():
        if status != "written":
            continue
        original = dcmread_quiet(research_run.source / rel)
        result = dcmread_quiet(research_run.out / output)
        row = patient_rows[str(original.PatientID)]
        assert row[3] == str(result.PatientID) != str(original.PatientID)
        offset = int(row[4])
        assert offset != 0
        assert (_date(result.StudyDate) - _date(original.StudyDate)).days == offset
        checked.add(str(original.PatientID))
    assert checked == {"12345678", "MRN-0042", "99887766"} == set(patient_rows)


def test_crosswalk_study_uid_rows_hold_plain_uids(research_run):
    uid_rows = [r for r in read_csv(research_run.crosswalk)[1:] if r[0] == "uid"]
    manifest = manifest_map(research_run.manifest)
    expected = set()
    for rel, (output, status) in manifest.items():
        if status == "written":
            expected.add((str(dcmread_quiet(research_run.source / rel).StudyInstanceUID),
                          str(dcmread_quiet(research_run.out / output).StudyInstanceUID)))
    assert len(expected) == 5
    assert {(r[2], r[3]) for r in uid_rows if r[1] == "StudyInstanceUID"} == expected


def test_manifest_and_crosswalk_only_when_asked(tmp_path, sample_copy, key_file):
    out = tmp_path / "out"
    summary = run(RunConfig(input_dir=sample_copy, output_dir=out, profile="research",
                            key_file=str(key_file), jobs=1, progress=False))
    assert summary.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "secret.key"]
    assert not [f for f in all_files(out) if f != AUDIT and not f.endswith(".dcm")]


# --------------------------------------------------------------------------- exit codes, report

def test_failed_file_gives_exit_1_and_one_record_per_input(tmp_path, sample_copy, key_file):
    ds = dcmread_quiet(ROE_HEAD)
    ds.BurnedInAnnotation = "YES"
    ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.99"
    ds.save_as(sample_copy / "burned.dcm")
    out = tmp_path / "out"
    proc = anonymize(sample_copy, out, key_file)
    records = records_by_input(out, sample_copy)
    assert set(records) == set(all_files(sample_copy))  # 14 inputs, 14 records
    burned = records["burned.dcm"]
    assert burned["status"] == "failed", burned
    assert "burned-in annotation" in burned["reason"]
    assert burned["output"] is None
    assert proc.returncode == 1, proc.stderr
    assert "1 failed" in proc.stderr and "burned-in annotation" in proc.stderr
    kinds = [r["type"] for r in audit_records(out / AUDIT)]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert kinds.count("file") == 14
    assert audit_records(out / AUDIT)[-1]["counts"] == {"written": 12, "failed": 1, "skipped": 1}
    assert len(output_tree(out)) == 12


def test_report_prints_totals_and_reasons(mixed_run):
    proc = cli("report", mixed_run.out / AUDIT)
    records = file_records(mixed_run.out)
    totals = {s: sum(r["status"] == s for r in records) for s in ("written", "failed", "skipped")}
    assert totals["failed"] >= 1 and totals["skipped"] >= 3
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (f"{len(records)} inputs in 1 run(s): {totals['written']} written, "
                        f"{totals['failed']} failed, {totals['skipped']} skipped")
    reasons: dict[str, int] = {}
    for record in records:
        if record["status"] != "written":
            reasons[record["reason"]] = reasons.get(record["reason"], 0) + 1
    assert max(reasons.values()) >= 2  # notes.txt and text.dcm share a reason
    assert len(lines) == 1 + len(reasons)
    for reason, number in reasons.items():
        assert any(re.fullmatch(rf"\s*{number}\s+{re.escape(reason)}", line) for line in lines)


def test_report_of_a_clean_run_exits_0(sample_run):
    proc = cli("report", sample_run.out / AUDIT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "13 inputs in 1 run(s): 12 written, 0 failed, 1 skipped"


def test_resumed_run_appends_to_manifest_and_crosswalk(sample_copy: Path, key_file: Path,
                                                       tmp_path: Path) -> None:
    """A second run on the same OUT adds its rows: the tables cover every input."""
    held_back = tmp_path / "held-back"
    held_back.mkdir()
    roe = next(p for p in sample_copy.iterdir() if p.name.startswith("ROE"))
    shutil.move(str(roe), held_back / roe.name)
    out, manifest, crosswalk = tmp_path / "out", tmp_path / "m.csv", tmp_path / "x.csv"
    args = ["--key-file", str(key_file), "--manifest", str(manifest),
            "--crosswalk", str(crosswalk), str(sample_copy), str(out)]
    assert cli("run", "--no-progress", *args).returncode == 0
    shutil.move(str(held_back / roe.name), sample_copy / roe.name)
    assert cli("run", "--no-progress", *args).returncode == 0
    rows = list(csv.DictReader(manifest.open(encoding="utf-8")))
    inputs = {str(p.relative_to(sample_copy)) for p in sample_copy.rglob("*") if p.is_file()}
    assert {r["input"] for r in rows} == inputs
    assert manifest.read_text(encoding="utf-8").count("input,output,status") == 1
    originals = {r["original"] for r in csv.DictReader(crosswalk.open(encoding="utf-8"))
                 if r["attribute"] == "PatientID"}
    assert {"12345678", "99887766"} <= originals
    assert oct(manifest.stat().st_mode & 0o777) == "0o600"


def test_input_that_now_fails_loses_its_earlier_output(sample_copy: Path, key_file: Path,
                                                      tmp_path: Path) -> None:
    """OUT holds exactly what the latest audit records say, also after a rerun."""
    out = tmp_path / "out"
    assert anonymize(sample_copy, out, key_file).returncode == 0
    source = next(p for p in sorted(sample_copy.rglob("*.dcm")))
    token = input_token(KeyedSource(KEY_A), source.relative_to(sample_copy).as_posix())
    records = {r["input"]: r for r in map(json.loads, (out / AUDIT).open())
               if r["type"] == "file"}
    earlier = out / records[token]["output"]
    assert earlier.is_file()
    ds = dcmread_quiet(source)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(source)
    assert anonymize(sample_copy, out, key_file).returncode == 1
    records = {r["input"]: r for r in map(json.loads, (out / AUDIT).open())
               if r["type"] == "file"}
    assert records[token]["status"] == "failed" and records[token]["output"] is None
    assert not earlier.exists()
    written = {r["output"] for r in records.values() if r["status"] == "written"}
    assert written == {p.relative_to(out).as_posix() for p in out.rglob("*.dcm")}
