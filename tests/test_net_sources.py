"""Network sources against a real Orthanc: ``anonymizer run`` pulls over DIMSE (C-FIND,
C-GET or C-MOVE) and DICOMweb (QIDO-RS, WADO-RS) into a folder, and the outputs are the
very bytes a folder run of the same instances gives."""

from __future__ import annotations

import os
import subprocess
import time
import warnings

import pytest
from conftest import KEY_A, SAMPLE_DATA, dcmread_quiet, one_line_error
from net_helpers import ANONYMIZER, ORIGINAL_IDS, SAMPLE_FILES, cli, file_records, summary, tree
from orthanc_server import free_port
from pydicom.dataelem import DataElement

from anonymizer.keyed import KeyedSource


@pytest.fixture(scope="session")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The outputs of a folder run of the sample data (profile basic, the test key)."""
    root = tmp_path_factory.mktemp("folder-run")
    proc = cli("run", "-p", "basic", "-j", "1", SAMPLE_DATA, root / "out")
    assert proc.returncode == 0, proc.stderr
    outputs = tree(root / "out")
    assert len(outputs) == len(SAMPLE_FILES)
    return outputs


@pytest.fixture()
def pacs(orthanc_pair, netrc_file):
    """The PACS holding the sample data (as uploaded: the same bytes)."""
    pacs, _, move_port = orthanc_pair
    pacs.wipe()
    pacs.upload(SAMPLE_FILES)
    pacs.move_port = move_port
    yield pacs
    pacs.wipe()


@pytest.mark.parametrize("how", ["dimse-get", "dimse-move", "dicomweb"])
def test_round_trip_into_a_folder_gives_the_folder_runs_bytes(pacs, folder_run, tmp_path, how):
    url = pacs.dicomweb if how == "dicomweb" else pacs.dimse
    move = ["--move-port", pacs.move_port] if how == "dimse-move" else []
    out = tmp_path / "out"
    proc = cli("run", "-p", "basic", "-j", "1", "--query", "PatientID=*", *move, url, out)
    assert proc.returncode == 0, proc.stderr
    assert summary(proc).startswith(f"anonymizer: {len(SAMPLE_FILES)} written, 0 failed")
    assert tree(out) == folder_run
    assert not list(out.rglob(".anonymizer-tmp-*")), "the spool is gone"
    # the audit log names instances by a keyed hash of their SOP Instance UID, and holds
    # neither the query nor any identifier
    log = (out / "audit.jsonl").read_text()
    for secret in (*ORIGINAL_IDS, "PatientID=", pacs.url.split("//")[1]):
        assert secret not in log
    keyed = KeyedSource(b"test-key-A-0123456789abcdef0123456789")
    sops = {r["00080018"]["Value"][0] for r in pacs.qido("instances")}
    assert {r["input"] for r in file_records(out / "audit.jsonl")} == {
        keyed.hexdigest("input-sop", sop, 32) for sop in sops}
    assert not any(sop in log for sop in sops)


def test_rerun_fetches_only_what_is_missing(pacs, tmp_path):
    out = tmp_path / "out"
    args = ("run", "-p", "basic", "-j", "1", "--query", "PatientID=*", pacs.dimse, out)
    assert cli(*args).returncode == 0
    removed = sorted(out.rglob("*.dcm"))[:2]
    for path in removed:
        path.unlink()
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert summary(proc).startswith(f"anonymizer: 2 written, 0 failed, 0 skipped, "
                                    f"{len(SAMPLE_FILES) - 2} already done")
    assert all(path.is_file() for path in removed)
    assert len(file_records(out / "audit.jsonl")) == len(SAMPLE_FILES)


@pytest.mark.parametrize(("query", "expected"), [
    (["PatientID=MRN-0042"], 3),  # one patient, one study
    (["PatientID=MRN*"], 3),  # wildcard
    (["StudyDate=20190101-20201231"], 6),  # date range: two studies of one patient
    (["StudyDate=20180101-20221231", "Modality=MR"], 5),  # series-level key
])
def test_query_keys_select_instances(pacs, tmp_path, query, expected):
    for url in (pacs.dimse, pacs.dicomweb):
        out = tmp_path / url.split(":")[0]
        keys = [arg for key in query for arg in ("--query", key)]
        proc = cli("run", "-p", "basic", "-j", "1", *keys, url, out)
        assert proc.returncode == 0, proc.stderr
        assert len(list(out.rglob("*.dcm"))) == expected, (url, proc.stderr)


def test_studies_file_selects_studies(pacs, tmp_path):
    studies = sorted({r["0020000D"]["Value"][0] for r in pacs.qido("studies")})[:2]
    listing = tmp_path / "studies.txt"
    listing.write_text("# two of them\n" + "\n".join(studies) + "\n\n")
    out = tmp_path / "out"
    proc = cli("run", "-p", "basic", "-j", "1", "--studies", listing, pacs.dicomweb, out)
    assert proc.returncode == 0, proc.stderr
    expected = sum(len(pacs.qido(f"studies/{uid}/instances")) for uid in studies)
    assert len(list(out.rglob("*.dcm"))) == expected > 0


def test_a_network_source_needs_a_selection(pacs, tmp_path):
    line = one_line_error(cli("run", pacs.dimse, tmp_path / "out"))
    assert "--query" in line and "--studies" in line
    assert not (tmp_path / "out").exists()


def test_bad_query_key_and_bad_studies_file(pacs, tmp_path):
    assert "not a DICOM keyword" in one_line_error(
        cli("run", "--query", "PatientNom=X", pacs.dimse, tmp_path / "out"))
    listing = tmp_path / "studies.txt"
    listing.write_text("DOE^JOHN\n")
    line = one_line_error(cli("run", "--studies", listing, pacs.dimse, tmp_path / "out"))
    assert "studies.txt:1" in line and "DOE" not in line


def test_wrong_credentials_stop_with_one_line(pacs, tmp_path, netrc_file):
    netrc_file.write_text("machine 127.0.0.1 login alice password wrong\n")
    line = one_line_error(cli("run", "--query", "PatientID=*", pacs.dicomweb, tmp_path / "out"))
    assert "refused our credentials" in line and "wrong" not in line
    netrc_file.chmod(0o644)
    line = one_line_error(cli("run", "--query", "PatientID=*", pacs.dicomweb, tmp_path / "out"))
    assert "group or others" in line


def test_unknown_calling_ae_title_stops_with_one_line(pacs, tmp_path):
    line = one_line_error(cli("run", "--ae-title", "STRANGER", "--query", "PatientID=*",
                              pacs.dimse, tmp_path / "out"))
    assert "STRANGER" in line


def test_corrupt_instance_in_the_source_fails_and_is_not_written(pacs, tmp_path):
    # a NUL inside a text value the profile keeps (Modality): Orthanc stores it as it is,
    # the engine refuses to pass on what cannot be what its VR says
    corrupt = tmp_path / "corrupt.dcm"
    ds = dcmread_quiet(SAMPLE_FILES[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".99"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds["Modality"] = DataElement(0x00080060, "CS", b"C\x00T")
    ds.save_as(corrupt)
    pacs.upload([corrupt])
    out = tmp_path / "out"
    proc = cli("run", "-p", "basic", "-j", "1", "--query", "PatientID=*", pacs.dicomweb, out)
    assert proc.returncode == 1, proc.stderr
    assert summary(proc).startswith(f"anonymizer: {len(SAMPLE_FILES)} written, 1 failed")
    assert len(list(out.rglob("*.dcm"))) == len(SAMPLE_FILES)
    failed = [r for r in file_records(out / "audit.jsonl") if r["status"] == "failed"]
    assert len(failed) == 1 and "corrupt" in failed[0]["reason"]


def test_killed_run_resumes_and_gives_the_same_bytes(pacs, folder_run, tmp_path):
    out = tmp_path / "out"
    args = ["run", "-p", "basic", "-j", "1", "--batch-size", "1", "--query", "PatientID=*",
            pacs.dimse, str(out)]
    env = dict(os.environ, ANONYMIZER_KEY=KEY_A.decode())
    run = subprocess.Popen([*ANONYMIZER, *args], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.rglob("*.dcm"))) < 3 and run.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        run.kill()  # SIGKILL: no cleanup at all
        run.wait()
    done = len(list(out.rglob("*.dcm")))
    assert 3 <= done < len(SAMPLE_FILES), "killed mid-run"
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    written = int(summary(proc).split()[1])
    assert written <= len(SAMPLE_FILES) - done + 1  # at most one committed but unrecorded
    assert tree(out) == folder_run
    assert not list(out.rglob(".anonymizer-tmp-*")), "the killed run's spool is gone"


def test_unreachable_source_stops_before_anything(pacs, tmp_path):
    url = f"dimse://PACS@127.0.0.1:{free_port()}"
    line = one_line_error(cli("run", "--query", "PatientID=*", url, tmp_path / "out"))
    assert "cannot connect" in line
