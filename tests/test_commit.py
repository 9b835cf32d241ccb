"""The committer: collision names, pseudonym collisions, the PHI tables (manifest,
crosswalk, quarantine list), resume's replacing and retiring of outputs, the audit log's
reserve and last record. Real files, a real folder destination and real runs."""

from __future__ import annotations

import csv
import json
import re
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import KEY_A, SAMPLE_DATA, dcmread_quiet
from pipeline_helpers import (
    AUDIT,
    ROE_HEAD,
    all_files,
    anonymize,
    as_date,
    check_audit_matches_outputs,
    cli,
    manifest_map,
    module_key_file,
    output_tree,
    read_csv,
    write_without_sop_instance_uid,
)

from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.keyed import KeyedSource
from anonymizer.pipeline import RunConfig, run
from anonymizer.pipeline.audit import AuditLog, read_records
from anonymizer.pipeline.commit import (
    AUDIT_RESERVE,
    Committer,
    PhiTables,
    finish_audit,
    reserve_space,
)
from anonymizer.pipeline.destination import FolderDestination
from anonymizer.pipeline.resume import PreviousRuns, sweep_temporaries
from anonymizer.pipeline.worker import FileOutcome, input_token


@pytest.fixture(scope="module")
def module_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return module_key_file(tmp_path_factory.mktemp("key"))


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
        assert (as_date(result.StudyDate) - as_date(original.StudyDate)).days == offset
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


# --------------------------------------------------------------------------- the committer alone

def _written(out: Path, name: str, token: str, target: str,
             checks: list[tuple[str, str, str]] | None = None) -> FileOutcome:
    """An outcome as a worker sends it back: its temporary written in OUT."""
    folder = (out / target).parent  # workers write beside the final name
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{TEMP_PREFIX}{name}.part"
    temporary.write_bytes(name.encode())
    return FileOutcome(name, token, "written", target=target, temporary=str(temporary),
                       input_sha256="i" * 64, output_sha256="o" * 64,
                       pseudonym_checks=checks or [])


def _committer(out: Path, **tables) -> Committer:
    previous = PreviousRuns()
    return Committer(FolderDestination(out, previous.claims(), previous.latest),
                     AuditLog(out / AUDIT), previous, **tables)


def test_pseudonym_collision_fails_the_later_file_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    committer = _committer(out, quarantine_dir=tmp_path / "q")
    first = _written(out, "a", "t" * 32, "x/a.dcm", [("PatientID", "digest-1", "P1")])
    second = _written(out, "b", "u" * 32, "x/b.dcm", [("PatientID", "digest-2", "P1")])
    same = _written(out, "c", "v" * 32, "x/c.dcm", [("PatientID", "digest-1", "P1")])
    outcomes = [first, second, same]
    committer.make_durable(outcomes)
    assert [committer.commit(o) for o in outcomes] == ["written", "failed", "written"]
    committer.audit.flush()
    committer.flush()
    assert "pseudonym collision on PatientID" in (second.reason or "")
    assert sorted(all_files(out)) == [AUDIT, "x/a.dcm", "x/c.dcm"]  # no temporary left
    records = [r for r in read_records(out / AUDIT) if r["type"] == "file"]
    assert [(r["status"], r["output"]) for r in records] == [
        ("written", "x/a.dcm"), ("failed", None), ("written", "x/c.dcm")]
    assert read_csv(tmp_path / "q" / "failed-inputs.csv")[1:] == [["b", second.reason]]
    committer.close()


def test_a_name_taken_by_another_input_gets_the_token_suffix(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    committer = _committer(out)
    outcomes = [_written(out, "a", "a" * 32, "s/one.dcm"),
                _written(out, "b", "b" * 32, "s/one.dcm")]
    committer.make_durable(outcomes)
    for outcome in outcomes:
        committer.commit(outcome)
    assert [o.target for o in outcomes] == ["s/one.dcm", f"s/one~{'b' * 12}.dcm"]
    assert (out / "s" / "one.dcm").read_bytes() == b"a"
    committer.close()


def test_phi_tables_are_private_appended_and_headed_once(tmp_path: Path) -> None:
    manifest, crosswalk = tmp_path / "m.csv", tmp_path / "side" / "x.csv"
    entry = {"pseudonyms": [("PatientID", "MRN-1", "P1", True)], "date_offset_days": -12,
             "study_uid": ("1.2.3", "2.25.9")}
    for _ in range(2):  # a resumed run opens the same tables again
        tables = PhiTables(manifest, crosswalk)
        outcome = FileOutcome("in/a.dcm", "t" * 32, "written", crosswalk=entry)
        tables.record(outcome, "P1/a.dcm")
        tables.record(outcome, "P1/a.dcm")  # the crosswalk keeps one row per original
        tables.close()
    assert read_csv(manifest) == [["input", "output", "status"], *[["in/a.dcm", "P1/a.dcm",
                                                                    "written"]] * 4]
    assert read_csv(crosswalk)[0] == ["kind", "attribute", "original", "replacement",
                                      "date_offset_days"]
    assert read_csv(crosswalk)[1:3] == [["pseudonym", "PatientID", "MRN-1", "P1", "-12"],
                                        ["uid", "StudyInstanceUID", "1.2.3", "2.25.9", ""]]
    for path in (manifest, crosswalk):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reserve_is_a_temporary_and_the_last_record_frees_it(tmp_path: Path) -> None:
    audit_path = tmp_path / AUDIT
    audit = AuditLog(audit_path)
    audit.write({"type": "run_start"})
    reserve = reserve_space(audit_path)
    assert reserve.stat().st_size == AUDIT_RESERVE and reserve.name.startswith(TEMP_PREFIX)
    finish_audit(audit, audit_path, reserve, {"counts": {"written": 0}})
    assert not reserve.exists()
    end = read_records(audit_path)[-1]
    assert end["type"] == "run_end" and end["counts"] == {"written": 0}
    assert end["unlogged"] == 0
    killed = reserve_space(audit_path)  # a killed run's reserve goes with its temporaries
    sweep_temporaries(tmp_path)
    assert not killed.exists()
