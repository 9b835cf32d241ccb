"""``anonymizer listen`` to a network DEST: a real gateway process forwarding by STOW-RS and
C-STORE into a real Orthanc as the research archive.

The archive ends up with the very datasets ``anonymizer run`` writes for the same files with
the same key and none of their identifiers; an archive that stops mid-send leaves the rest
spooled (never failed: the spool holds the only copy) until it is back, and then each is
stored once; credentials the archive refuses stop the gateway before anything is received.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import one_line_error
from net_helpers import SAMPLE_FILES, cli, dataset_bytes, file_records, no_identifiers_in, stored
from orthanc_server import PASSWORD, USER, free_port

pytest.importorskip("pynetdicom")

from test_listen import WAIT_TIMEOUT, Gateway, send, start_gateway  # noqa: E402

from anonymizer.gateway.spool import Spool  # noqa: E402


def start_to(archive_url: str, tmp_path: Path, key_file: Path, *options: str,
             name: str = "gw") -> Gateway:
    """A gateway forwarding to ``archive_url``: the basic profile, outputs named by their
    SOP Instance UID as the folder run of ``folder_outputs``; its spool and audit log in
    tmp_path/spool."""
    return start_gateway(tmp_path, key_file, "--layout", "{SOPInstanceUID}", *options,
                         dest=archive_url, spool=tmp_path / "spool", name=name)


def spooled(gateway: Gateway) -> list[Path]:
    return sorted(p for p in gateway.spool.iterdir() if p.suffix == ".dcm")


@pytest.mark.parametrize("how", ["dicomweb", "dimse"])
def test_listen_to_archive_holds_the_run_bytes(archive, folder_outputs, tmp_path, key_file,
                                               how):
    url = archive.dicomweb if how == "dicomweb" else archive.dimse
    gateway = start_to(url, tmp_path, key_file, "--dest-ae-title", "RESEARCHGW")
    try:
        assert send(gateway.port, SAMPLE_FILES) == [0] * len(SAMPLE_FILES)
        counts = gateway.wait_idle(len(SAMPLE_FILES))
    finally:
        assert gateway.stop() == 143
    assert (counts["forwarded"], counts["failed"], counts["deferred"]) == (
        len(SAMPLE_FILES), 0, 0)
    # the dataset of each: a C-STORE receiver writes file meta of its own
    assert {uid: dataset_bytes(data) for uid, data in stored(archive).items()} == {
        uid: dataset_bytes(data) for uid, data in folder_outputs.items()}
    no_identifiers_in(archive)
    # the audit log (in the spool by default) records each once; nothing is left behind
    audit = gateway.spool / "audit.jsonl"
    records = file_records(audit)
    assert Counter(r["status"] for r in records) == {"written": len(SAMPLE_FILES)}
    assert len({r["input"] for r in records}) == len(SAMPLE_FILES)
    header = json.loads(audit.read_text().splitlines()[0])
    assert header["destination"] == how and archive.url.split("//")[1] not in audit.read_text()
    assert spooled(gateway) == []
    assert not any((gateway.spool / "outgoing").rglob("*"))
    if how == "dimse":  # our calling AE title is the --dest-ae-title one
        answer = archive.get(f"/instances/{archive.instances()[0]}/metadata?expand").json()
        assert answer["RemoteAET"] == "RESEARCHGW"


def test_archive_stopped_mid_send_keeps_instances_spooled_then_sends_each_once(
        archive, tmp_path, key_file):
    gateway = start_to(archive.dicomweb, tmp_path, key_file, "--batch-size", "1",
                       "--retry-max", "1")
    sender = threading.Thread(target=send, args=(gateway.port, SAMPLE_FILES))
    try:
        sender.start()
        # the archive dies (SIGKILL: at once) as soon as it holds two instances
        deadline = time.monotonic() + WAIT_TIMEOUT
        while len(archive.instances()) < 2:
            assert time.monotonic() < deadline, gateway.counts()
            time.sleep(0.01)
        archive.process.kill()
        archive.process.wait()
        sender.join(WAIT_TIMEOUT)  # the gateway spools and acknowledges all the same
        while not (gateway.counts().get("destination_down")
                   and gateway.counts().get("received") == len(SAMPLE_FILES)):
            assert time.monotonic() < deadline, gateway.counts()
            time.sleep(0.05)
        while_down = gateway.counts()
        sent_before = {r["output"] for r in file_records(gateway.spool / "audit.jsonl")}
        # nothing failed: what was not sent waits in the spool
        assert while_down["failed"] == 0 and while_down["deferred"] >= 1
        assert len(spooled(gateway)) == while_down["queue"] == len(SAMPLE_FILES) - len(
            sent_before) > 0
        archive.start()
        counts = gateway.wait_idle(len(SAMPLE_FILES))
    finally:
        if archive.process is None or archive.process.poll() is not None:
            archive.start()
        assert gateway.stop() == 143
    assert (counts["forwarded"], counts["failed"]) == (len(SAMPLE_FILES), 0)
    assert not counts["destination_down"] and spooled(gateway) == []
    stderr = gateway.stderr.read_text()
    assert "send: DICOMweb destination: " in stderr and "stay spooled" in stderr
    assert "answers again" in stderr and "Traceback" not in stderr
    records = file_records(gateway.spool / "audit.jsonl")
    assert Counter(r["status"] for r in records) == {"written": len(SAMPLE_FILES)}
    assert len({r["input"] for r in records}) == len(SAMPLE_FILES)
    # every instance recorded as sent before the kill was stored exactly once; one in
    # flight when the archive died may have been stored without its answer reaching us
    # (then it stayed spooled and was stored again)
    stores = archive.new_instance_changes_by_sop()
    assert len(stored(archive)) == len(SAMPLE_FILES)
    assert all(stores[uid] == 1 for uid in sent_before)
    assert sum(stores.values()) - len(SAMPLE_FILES) <= 1


def test_a_restarted_gateway_sends_nothing_twice(archive, tmp_path, key_file):
    """What was sent is recorded at once: a new gateway on the same spool drops a resent
    instance unsent (a duplicate), and the archive stores nothing again."""
    files = SAMPLE_FILES[:4]
    gateway = start_to(archive.dimse, tmp_path, key_file)
    try:
        assert send(gateway.port, files) == [0] * len(files)
        gateway.wait_idle(len(files))
    finally:
        assert gateway.stop() == 143
    changes = archive.new_instance_changes()
    assert changes == len(files)
    restarted = start_to(archive.dimse, tmp_path, key_file, name="gw2")
    try:
        assert send(restarted.port, files) == [0] * len(files)
        counts = restarted.wait_idle(len(files))
    finally:
        assert restarted.stop() == 143
    # (more duplicates if the sender had to send an instance again)
    assert counts["duplicates"] >= len(files) and counts["forwarded"] == 0, counts
    assert archive.new_instance_changes() == changes


def test_refused_or_unreachable_destination_stops_before_anything_is_received(
        archive, tmp_path, key_file, netrc_file):
    base = ("listen", "-p", "basic", "--key-file", key_file, "--port", "0",
            "--bind", "127.0.0.1", "--spool", tmp_path / "spool")
    netrc_file.write_text(f"machine 127.0.0.1 login {USER} password not-{PASSWORD}\n")
    line = one_line_error(cli(*base, archive.dicomweb))
    assert "refused our credentials (HTTP 401" in line
    assert PASSWORD not in line and USER not in line
    line = one_line_error(cli(*base, f"dimse://ARCHIVE@127.0.0.1:{free_port()}"))
    assert "cannot connect" in line
    assert [p.name for p in (tmp_path / "spool").iterdir() if p.suffix == ".dcm"] == []
    assert archive.instances() == []


def test_network_dest_needs_a_spool_and_its_own_calling_ae_title(tmp_path, key_file):
    base = ("listen", "-p", "basic", "--key-file", key_file, "--port", "0")
    assert "needs --spool" in one_line_error(cli(*base, "dimse://ARCHIVE@127.0.0.1:104"))
    assert "--dest-ae-title" in one_line_error(cli(
        *base, "--spool", tmp_path / "spool", "--dest-ae-title", "A\\B",
        "dimse://ARCHIVE@127.0.0.1:104"))
    assert "host and port" in one_line_error(cli(
        *base, "--spool", tmp_path / "spool", "dimse://ARCHIVE@127.0.0.1"))


def test_spool_puts_back_in_arrival_order_within_its_capacity(tmp_path):
    """Names put back come first again, oldest first; those beyond the capacity wait on
    disk and come out after a rescan; each exactly once."""
    spool = Spool(tmp_path / "spool", capacity=3)
    spool.open()
    names = []
    for number in range(5):
        received = spool.incoming / "arriving.dcm"
        received.write_bytes(b"x")
        names.append(spool.accept(received, f"{number:032x}"))
        received.unlink()
    taken = spool.take(2, set()) + spool.take(1, set()) + spool.take(1, set())
    assert taken == names[:4]  # the last take rescanned the folder: the 4th and the 5th
    spool.release(names[3])
    spool.put_back(list(reversed(taken[:3])))  # the 5th no longer fits: back on disk
    handed = []
    while batch := spool.take(2, set()):
        handed += batch
        for name in batch:
            spool.release(name)
    assert handed == [*names[:3], names[4]] and spool.waiting == 0
