"""The batch pipeline end to end: real CLI subprocesses and the Python API, no mocks.

Covers the output layout, non-DICOM and corrupt inputs, keys, PHI in paths and the audit
log, path refusals, exit codes and ``anonymizer report``. The committer's part (collision
names, the manifest and crosswalk, resume) is in test_commit, the backends' (job counts,
worker pools) in test_backends.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import struct
import subprocess
import termios
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import KEY_A, KEY_B, SAMPLE_DATA, dcmread_quiet, one_line_error
from pipeline_helpers import (
    ANONYMIZER,
    AUDIT,
    DEFAULT_LAYOUT,
    DOE_CT,
    MULLER_DIR,
    PATIENT_ADDRESS,
    PIXEL_DATA,
    ROE_HEAD,
    TMP_PREFIX,
    all_files,
    anonymize,
    audit_records,
    check_audit_matches_outputs,
    cli,
    dicom_values,
    env_without_key,
    file_records,
    garbage_after_dicm,
    input_state,
    module_key_file,
    output_tree,
    records_by_input,
    truncated_copy,
    write_without_sop_instance_uid,
)
from pydicom.multival import MultiValue

from anonymizer.pipeline import RunConfig, run


@pytest.fixture(scope="module")
def module_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return module_key_file(tmp_path_factory.mktemp("key"))


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


# --------------------------------------------------------------------------- progress

def test_progress_bar_shows_the_total_percentage_and_failures(tmp_path, sample_copy, key_file):
    """--progress forces the bar into a file: its last state says N/N, 100% and how many
    failed (the total came from the counting walk, ahead of the workers)."""
    truncated_copy(ROE_HEAD, sample_copy / "cut" / "a.dcm", PIXEL_DATA)
    truncated_copy(DOE_CT, sample_copy / "cut" / "b.dcm", PIXEL_DATA)
    inputs = len(all_files(sample_copy))
    proc = cli("run", "--key-file", key_file, "--progress", "--jobs", "2", "--batch-size", "2",
               sample_copy, tmp_path / "out")
    assert proc.returncode == 1, proc.stderr
    states = [s.strip() for s in re.split(r"[\r\n]", proc.stderr) if "files [" in s]
    final = states[-1]
    assert re.fullmatch(rf"100% {inputs}/{inputs} files \[\d\d:\d\d<00:00, (\d+|\?) files/s, "
                        r"2 failed\]", final), final
    quiet = anonymize(sample_copy, tmp_path / "quiet", key_file)  # --no-progress
    assert "files [" not in quiet.stderr


def _stderr_on_a_terminal(args: list[object], rows: int, columns: int) -> tuple[int, str]:
    """Run the CLI with stderr on a fresh pseudo-terminal of ``rows`` x ``columns`` (0 x 0:
    nobody sized it, as under ``script`` or some container and CI runners); its exit code
    and what the terminal showed."""
    master, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    shown: list[bytes] = []

    def read_all() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last holder closed it
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        proc = subprocess.run([*ANONYMIZER, *map(str, args)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=terminal,
                              env=env_without_key(), timeout=300, check=False)
    finally:
        os.close(terminal)
        reader.join(timeout=30)
        os.close(master)
    return proc.returncode, b"".join(shown).decode("utf-8", "replace")


@pytest.mark.parametrize(("rows", "columns"), [(0, 0), (24, 200)])
def test_progress_bar_on_a_terminal_with_or_without_a_size(tmp_path, sample_copy, key_file,
                                                            rows, columns):
    """On a terminal the bar is on by default, and it is drawn also when the terminal
    reports no size (tqdm alone drew nothing there)."""
    inputs = len(all_files(sample_copy))
    code, shown = _stderr_on_a_terminal(
        ["run", "--key-file", key_file, "--jobs", "2", "--batch-size", "2", sample_copy,
         tmp_path / "out"], rows, columns)
    assert code == 0, shown
    states = [s.strip() for s in re.split(r"[\r\n]", shown) if "files [" in s]
    assert states, shown
    assert re.fullmatch(rf"100% {inputs}/{inputs} files \[\d\d:\d\d<00:00, "
                        r"(\d+|\?) files/s\]", states[-1]), states


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_end_says_where_the_cpu_went_by_stage(tmp_path, sample_copy, key_file, jobs):
    """The run_end record's timings: CPU seconds by stage, workers' and the main process's
    (counts of seconds only); with one job the workers' stages are not counted twice."""
    out = tmp_path / "out"
    summary = run(RunConfig(input_dir=sample_copy, output_dir=out, profile="basic",
                            key_file=str(key_file), jobs=jobs, progress=False))
    assert summary.exit_code == 0
    timings = audit_records(out / AUDIT)[-1]["timings"]
    assert set(timings) == {"read", "parse", "deidentify", "write", "worker_other", "commit",
                            "audit", "progress", "dispatch", "sync"}
    assert all(isinstance(v, float) and v >= 0 for v in timings.values()), timings
    assert all(timings[stage] > 0 for stage in ("read", "parse", "deidentify", "write"))
