"""What the network tests share: the CLI as a user runs it, the sample data as the PACS
holds it, and the tree of a folder run to compare network runs with."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import KEY_A, SAMPLE_DATA

from anonymizer.cli import main

ANONYMIZER = [sys.executable, "-m", "anonymizer"]
#: the sample data's DICOM files (notes.txt is not one)
SAMPLE_FILES = sorted(p for p in SAMPLE_DATA.rglob("*") if p.is_file() and p.name != "notes.txt")
#: identifiers of the sample patients that must never reach an output or the archive
ORIGINAL_IDS = ("12345678", "MRN-0042", "99887766", "DOE", "MÜLLER", "ROE^RICHARD")


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``anonymizer ...`` with the test key (and $NETRC as set), run in this process: the
    real command line, without a new interpreter and new worker processes per run."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = os.environ.get("ANONYMIZER_KEY")
    os.environ["ANONYMIZER_KEY"] = KEY_A.decode()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main([str(arg) for arg in args])
    finally:
        if saved is None:
            del os.environ["ANONYMIZER_KEY"]
        else:
            os.environ["ANONYMIZER_KEY"] = saved
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def tree(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every output (the audit log aside)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "audit.jsonl"}


def file_records(audit: Path) -> list[dict]:
    return [r for r in map(json.loads, audit.read_text().splitlines()) if r["type"] == "file"]


def summary(proc: subprocess.CompletedProcess[str]) -> str:
    """The run's summary line ('N written, N failed, ...')."""
    return next(line for line in proc.stderr.splitlines() if " written, " in line)


def dataset_bytes(data: bytes) -> bytes:
    """A Part 10 file's bytes after its preamble and file meta."""
    group_length = int.from_bytes(data[140:144], "little")  # (0002,0000), explicit VR LE
    return data[144 + group_length:]


def stored(archive) -> dict[str, bytes]:
    """SOP Instance UID -> bytes of every instance the archive holds."""
    files = {}
    for orthanc_id in archive.instances():
        data = archive.get(f"/instances/{orthanc_id}/file").content
        tags = archive.get(f"/instances/{orthanc_id}/simplified-tags").json()
        files[tags["SOPInstanceUID"]] = data
    return files


def qido_text(archive) -> str:
    """Every QIDO-RS answer of the archive, at every level, as one text."""
    texts = []
    for study in archive.qido("studies"):
        uid = study["0020000D"]["Value"][0]
        texts += [str(study), str(archive.qido(f"studies/{uid}/series")),
                  str(archive.qido(f"studies/{uid}/instances", includefield="all"))]
    return "\n".join(texts)


def no_identifiers_in(archive) -> None:
    text = qido_text(archive)
    for identifier in ORIGINAL_IDS:
        assert identifier not in text
    for key, value in (("PatientID", "MRN-0042"), ("PatientID", "12345678"),
                       ("PatientName", "DOE*"), ("PatientName", "ROE*")):
        assert archive.qido("studies", **{key: value}) == []
