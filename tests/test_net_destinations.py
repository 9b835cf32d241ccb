"""Network destinations against a real Orthanc as the research archive: ``anonymizer run``
sends each de-identified instance by STOW-RS or C-STORE, the archive ends up with the very
bytes of a folder run, none of the inputs' identifiers, and a rerun sends nothing twice."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import KEY_A, SAMPLE_DATA, one_line_error
from net_helpers import (
    ANONYMIZER,
    SAMPLE_FILES,
    cli,
    dataset_bytes,
    file_records,
    no_identifiers_in,
    stored,
    summary,
)
from orthanc_server import PASSWORD, USER


@pytest.mark.parametrize("how", ["dicomweb", "dimse"])
def test_folder_to_archive_holds_the_folder_runs_bytes(archive, folder_outputs, tmp_path, how):
    url = archive.dicomweb if how == "dicomweb" else archive.dimse
    audit = tmp_path / "sent.jsonl"
    proc = cli("run", "-p", "basic", "-j", "1", "--layout", "{SOPInstanceUID}",
               "--audit", audit, SAMPLE_DATA, url)
    assert proc.returncode == 0, proc.stderr
    assert summary(proc).startswith(f"anonymizer: {len(SAMPLE_FILES)} written, 0 failed")
    # the dataset of each: a C-STORE receiver writes file meta of its own
    assert {uid: dataset_bytes(data) for uid, data in stored(archive).items()} == {
        uid: dataset_bytes(data) for uid, data in folder_outputs.items()}
    no_identifiers_in(archive)
    assert not list(tmp_path.rglob(".anonymizer-tmp-*")), "nothing left behind"
    # a rerun sends nothing: every instance is already done
    changes = archive.new_instance_changes()
    proc = cli("run", "-p", "basic", "-j", "1", "--layout", "{SOPInstanceUID}",
               "--audit", audit, SAMPLE_DATA, url)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(SAMPLE_FILES)} already done" in summary(proc)
    assert archive.new_instance_changes() == changes


def test_archive_stopped_mid_run_fails_the_rest_and_a_rerun_sends_them_once(archive, tmp_path):
    audit = tmp_path / "sent.jsonl"
    args = ("run", "-p", "basic", "-j", "1", "--batch-size", "1", "--layout",
            "{SOPInstanceUID}", "--audit", audit, SAMPLE_DATA, archive.dicomweb)
    env = dict(os.environ, ANONYMIZER_KEY=KEY_A.decode())
    run = subprocess.Popen([*ANONYMIZER, *map(str, args)], env=env, text=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # the archive dies (SIGKILL: at once) as soon as it holds two instances
        deadline = time.monotonic() + 120
        while len(archive.instances()) < 2 and run.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        archive.process.kill()
        archive.process.wait()
        _, stderr = run.communicate(timeout=120)
    finally:
        archive.restart()
    assert run.returncode == 1, stderr
    first = [r for r in file_records(audit) if r["status"] != "skipped"]
    sent = {r["output"] for r in first if r["status"] == "written"}
    assert len(first) == len(SAMPLE_FILES) and 2 <= len(sent) < len(SAMPLE_FILES)
    assert "send: DICOMweb destination: connection refused" in stderr
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert summary(proc).startswith(f"anonymizer: {len(SAMPLE_FILES) - len(sent)} written, "
                                    f"0 failed, 1 skipped, {len(sent)} already done")
    holds = stored(archive)
    assert len(holds) == len(SAMPLE_FILES)
    # every instance the first run recorded as sent was stored exactly once; one in flight
    # when the archive died may have been stored without its answer reaching us (then the
    # first run failed it, and the rerun stored it again)
    stores = archive.new_instance_changes_by_sop()
    assert all(stores[uid] == 1 for uid in sent)
    assert sum(stores.values()) - len(SAMPLE_FILES) <= 1


def test_wrong_credentials_stop_before_anything_is_sent(archive, tmp_path, netrc_file):
    netrc_file.write_text(f"machine 127.0.0.1 login {USER} password not-{PASSWORD}\n")
    proc = cli("run", "-p", "basic", "--audit", tmp_path / "a.jsonl", SAMPLE_DATA,
               archive.dicomweb)
    assert "refused our credentials (HTTP 401" in one_line_error(proc)
    assert archive.instances() == []
    token = tmp_path / "token"
    token.write_text("not-a-token\n")
    token.chmod(0o600)
    proc = cli("run", "-p", "basic", "--audit", tmp_path / "a.jsonl", "--token-file", token,
               SAMPLE_DATA, archive.dicomweb)
    assert "refused our credentials" in one_line_error(proc)


def test_a_network_out_needs_an_audit_log(archive, tmp_path):
    assert "--audit" in one_line_error(cli("run", SAMPLE_DATA, archive.dicomweb))


def test_corrupt_input_is_failed_and_not_sent(archive, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    good, broken = SAMPLE_FILES[0], SAMPLE_FILES[1]
    shutil.copyfile(good, source / "good.dcm")
    (source / "truncated.dcm").write_bytes(broken.read_bytes()[:-1000])
    proc = cli("run", "-p", "basic", "-j", "1", "--audit", tmp_path / "a.jsonl", source,
               archive.dimse)
    assert proc.returncode == 1, proc.stderr
    assert summary(proc).startswith("anonymizer: 1 written, 1 failed")
    assert len(archive.instances()) == 1


def test_network_to_network(orthanc_pair, archive, tmp_path):
    pacs = orthanc_pair[0]
    pacs.wipe()
    pacs.upload(SAMPLE_FILES)
    try:
        proc = cli("run", "-p", "basic", "-j", "1", "--query", "PatientID=*",
                   "--audit", tmp_path / "a.jsonl", pacs.dimse, archive.dicomweb)
    finally:
        pacs.wipe()
    assert proc.returncode == 0, proc.stderr
    assert len(archive.instances()) == len(SAMPLE_FILES)
    no_identifiers_in(archive)
    assert not list(tmp_path.rglob(".anonymizer-tmp-*"))


def test_destination_path_is_not_a_folder(tmp_path: Path):
    # a URL-looking OUT with a typo is not silently made a folder
    line = one_line_error(cli("run", "--audit", tmp_path / "a.jsonl", SAMPLE_DATA,
                              "dimse://ARCHIVE@127.0.0.1"))
    assert "dimse://AET@host:port" in line
