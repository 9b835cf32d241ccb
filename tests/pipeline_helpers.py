"""Helpers of the pipeline's end-to-end tests (test_pipeline, test_commit, test_backends):
the CLI as a subprocess, output trees, audit records, PHI tables, crafted inputs."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import KEY_A, SAMPLE_DATA, dcmread_quiet
from pydicom.dataset import FileMetaDataset

from anonymizer.keyed import KeyedSource
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

def env_without_key(key: bytes | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANONYMIZER_KEY"}
    if key is not None:
        env["ANONYMIZER_KEY"] = key.decode()
    return env


def cli(*args: object, key: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m anonymizer ARGS`` (ANONYMIZER_KEY set to ``key`` or unset)."""
    return subprocess.run([*ANONYMIZER, *map(str, args)], capture_output=True, text=True,
                          env=env_without_key(key), timeout=300, check=False)


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


def as_date(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%Y%m%d").date()


def module_key_file(folder: Path) -> Path:
    """A key file (KEY_A) in ``folder``: for a module's runs to share."""
    path = folder / "secret.key"
    path.write_bytes(KEY_A)
    return path
