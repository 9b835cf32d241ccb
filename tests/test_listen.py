"""``anonymizer listen``: a real gateway process on a loopback port, real pynetdicom senders.

Each test starts ``anonymizer listen`` as a subprocess on a free port (``--port 0``; the
port is read from its start line), sends with a pynetdicom SCU and checks what reached
DEST, the spool, the quarantine and the audit log.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from tests.conftest import KEY_A, SAMPLE_DATA, dcmread_quiet, one_line_error

pynetdicom = pytest.importorskip("pynetdicom")
from pynetdicom import AE, _config  # noqa: E402
from pynetdicom.dimse_messages import C_STORE_RQ  # noqa: E402
from pynetdicom.dimse_primitives import C_STORE  # noqa: E402
from pynetdicom.sop_class import Verification  # noqa: E402

from anonymizer.keyed import KeyedSource  # noqa: E402

PYDICOM_FILES = ["CT_small.dcm", "MR_small_bigendian.dcm",  # (its SOP Instance UID once)
                 "JPEG2000.dcm", "rtplan.dcm", "SC_rgb_rle.dcm"]
STARTUP_TIMEOUT = 60.0
WAIT_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _send_raw_bytes() -> Iterator[None]:
    """Senders send each file's dataset bytes as they are (no decode and re-encode)."""
    before = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    yield
    _config.STORE_SEND_CHUNKED_DATASET = before


@dataclass
class Gateway:
    """A running ``anonymizer listen``."""

    process: subprocess.Popen
    port: int
    dest: Path | str  # a folder, or a network destination's URL
    spool: Path
    metrics: Path
    stderr: Path

    def counts(self) -> dict:
        try:
            return json.loads(self.metrics.read_text())
        except (OSError, ValueError):
            return {}

    def wait_idle(self, received: int) -> dict:
        """Until ``received`` instances arrived and none waits or is in flight."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        while time.monotonic() < deadline:
            counts = self.counts()
            if counts.get("received", -1) >= received and counts.get("queue") == 0 \
                    and counts.get("in_flight") == 0:
                return counts
            assert self.process.poll() is None, self.stderr.read_text()
            time.sleep(0.1)
        raise AssertionError(f"not idle: {self.counts()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=WAIT_TIMEOUT)


def start_gateway(tmp_path: Path, key_file: Path, *options: str,
                  dest: Path | str | None = None, name: str = "gw",
                  spool: Path | None = None) -> Gateway:
    """``anonymizer listen`` to ``dest`` (default: the folder tmp_path/dest), its spool
    ``spool`` (default: DEST.spool beside a folder DEST)."""
    dest = dest or tmp_path / "dest"
    if spool is not None:
        options = (*options, "--spool", str(spool))
    else:
        assert isinstance(dest, Path)
        spool = dest.parent / f"{dest.name}.spool"
    stderr = tmp_path / f"{name}.stderr"
    metrics = tmp_path / f"{name}.metrics.json"
    metrics.unlink(missing_ok=True)
    with open(stderr, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "anonymizer", "listen", "--profile", "basic", "--key-file",
             str(key_file), "--port", "0", "--ae-title", "GATEWAY", "--bind", "127.0.0.1",
             "--jobs", "1", "--metrics", str(metrics), *options, str(dest)],
            stdout=subprocess.DEVNULL, stderr=handle)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        text = stderr.read_text()
        if " on 127.0.0.1:" in text:
            port = int(text.split(" on 127.0.0.1:")[1].split(";")[0].split()[0])
            return Gateway(process, port, dest, spool, metrics, stderr)
        if process.poll() is not None:
            raise AssertionError(f"listen exited {process.returncode}: {text}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("listen did not start")


def _meta(path: Path) -> tuple[str, str, str]:
    meta = read_file_meta_info(path)
    return (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID),
            str(meta.MediaStorageSOPInstanceUID))


def associate(port: int, files: list[Path], calling: str = "SENDER", tls_args=None):
    ae = AE(ae_title=calling)
    # an answer that never comes (the gateway was killed) costs this, not pynetdicom's 30 s
    ae.dimse_timeout = ae.acse_timeout = 10
    for sop_class, syntax in sorted({_meta(path)[:2] for path in files}):
        ae.add_requested_context(sop_class, syntax)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="GATEWAY", tls_args=tls_args)


def send(port: int, files: list[Path], acknowledged: list[Path] | None = None,
         **kwargs) -> list[int | None]:
    """C-STORE every file; the statuses (None: no answer). ``acknowledged`` gets each file
    answered with Success as the answer comes in.

    Like a real sender, an instance left unanswered by an association that died is sent
    again on a new one (pynetdicom's SCU can lose an answer to its own reactor thread on
    a loaded machine, time out and abort); when no new association can be made (the
    gateway is gone), the rest are left unanswered.
    """
    statuses: list[int | None] = []
    assoc = None
    for path in files:
        status = None
        for _ in range(3):
            if assoc is None or not assoc.is_established:
                assoc = associate(port, files, **kwargs)
                if not assoc.is_established:
                    break
            try:
                answer = assoc.send_c_store(path)
            except RuntimeError:  # the association is gone
                continue
            if "Status" in answer:
                status = int(answer.Status)
                break
        statuses.append(status)
        if status == 0 and acknowledged is not None:
            acknowledged.append(path)
        if status is None and (assoc is None or not assoc.is_established):
            statuses += [None] * (len(files) - len(statuses))
            break
    if assoc is not None and assoc.is_established:
        assoc.release()
    return statuses


def outputs(dest: Path) -> dict[str, bytes]:
    return {str(path.relative_to(dest)): path.read_bytes() for path in sorted(dest.rglob("*"))
            if path.is_file() and path.suffix == ".dcm"}


def audit_records(dest: Path) -> list[dict]:
    return [json.loads(line) for line in (dest / "audit.jsonl").read_text().splitlines()]


def file_records(dest: Path) -> list[dict]:
    return [record for record in audit_records(dest) if record["type"] == "file"]


def instances(tmp_path: Path, count: int) -> list[Path]:
    """``count`` distinct CT instances (CT_small with its own SOP Instance UID each)."""
    source = dcmread_quiet(Path(get_testdata_file("CT_small.dcm")))
    folder = tmp_path / "instances"
    folder.mkdir()
    paths = []
    for number in range(count):
        uid = f"1.2.826.0.1.3680043.10.999.7.{number + 1}"
        source.SOPInstanceUID = uid
        source.file_meta.MediaStorageSOPInstanceUID = uid
        path = folder / f"ct{number:04d}.dcm"
        source.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def expected_output_name(path: Path) -> str:
    """The file name the basic profile gives an instance: its keyed SOP Instance UID."""
    return KeyedSource(KEY_A).uid(_meta(path)[2]) + ".dcm"


def test_forwards_what_run_writes_byte_for_byte(tmp_path: Path, key_file: Path) -> None:
    """Sample data and pydicom test files, sent over two concurrent associations, give the
    same files, bytes and names as ``anonymizer run`` on them; a resend is not forwarded
    again; other calling AE titles are refused; a second gateway on the same DEST is
    refused."""
    inputs = tmp_path / "in"
    shutil.copytree(SAMPLE_DATA, inputs / "sample", ignore=shutil.ignore_patterns("*.txt"))
    for name in PYDICOM_FILES:
        shutil.copyfile(get_testdata_file(name), inputs / name)
    files = sorted(p for p in inputs.rglob("*") if p.is_file())
    gateway = start_gateway(tmp_path, key_file, "--allow-ae", "SENDER", "--allow-ae", "OTHER")
    try:
        refused = associate(gateway.port, files[:1], calling="INTRUDER")
        assert refused.is_rejected
        # two associations at once, each with half of the files
        other_half: list[int | None] = []
        concurrent = threading.Thread(
            target=lambda: other_half.extend(send(gateway.port, files[1::2], calling="OTHER")))
        concurrent.start()
        assert send(gateway.port, files[::2]) == [0] * len(files[::2])
        concurrent.join(timeout=WAIT_TIMEOUT)
        assert other_half == [0] * len(files[1::2])
        counts = gateway.wait_idle(len(files))
        assert (counts["forwarded"], counts["failed"]) == (len(files), 0)
        forwarded = outputs(gateway.dest)
        records = file_records(gateway.dest)
        # the same instances again (a sender that never saw our answers): not forwarded
        assert send(gateway.port, files[:3], calling="OTHER") == [0] * 3
        counts = gateway.wait_idle(len(files) + 3)
        # (more duplicates if a sender had to send an instance again)
        assert counts["duplicates"] >= 3 and counts["forwarded"] == len(files), counts
        assert file_records(gateway.dest) == records
        second = subprocess.run(
            [sys.executable, "-m", "anonymizer", "listen", "--key-file", str(key_file),
             "--profile", "basic", "--port", "0", "--spool", str(tmp_path / "other-spool"),
             str(gateway.dest)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 4, second.stderr
        assert "in use by another anonymizer run" in second.stderr
    finally:
        assert gateway.stop() == 143
    run = subprocess.run(
        [sys.executable, "-m", "anonymizer", "run", "--profile", "basic", "--key-file",
         str(key_file), "--jobs", "1", str(inputs), str(tmp_path / "run-out")],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert forwarded == outputs(tmp_path / "run-out")
    assert len(forwarded) == len(files)
    assert outputs(gateway.dest) == forwarded
    # one record per instance, keyed by a hash: no names, IDs or UIDs of the inputs
    assert len({r["input"] for r in file_records(gateway.dest)}) == len(files)
    audit = (gateway.dest / "audit.jsonl").read_text()
    for secret in ("DOE", "JOHN", "12345678", "MÜLLER", "ROE", "RICHARD", "CompressedSamples",
                   *(_meta(path)[2] for path in files)):
        assert secret not in audit
    assert audit_records(gateway.dest)[-1]["stopped"] == "stopped by SIGTERM"
    assert sorted(os.listdir(gateway.spool)) == ["incoming"]


def _part10(path: Path, sop_instance: str, dataset: bytes) -> Path:
    """A Part 10 file: a CT image's file meta naming ``sop_instance``, then ``dataset``
    as its dataset bytes (sent as they are)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    encoded = DicomBytesIO()
    write_file_meta_info(encoded, meta, enforce_standard=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + encoded.getvalue() + dataset)
    return path


def _dataset_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return data[132 + 12 + int.from_bytes(data[140:144], "little"):]


def test_failed_instances_are_quarantined_never_forwarded(tmp_path: Path,
                                                          key_file: Path) -> None:
    """Non-DICOM bytes, a truncated dataset and one with a corrupted VR: acknowledged
    (they are safely spooled), then failed with a one-line reason, moved to the
    quarantine, never in DEST; a good instance beside them is forwarded."""
    good = Path(get_testdata_file("CT_small.dcm"))
    body = _dataset_bytes(good)
    bad = [_part10(tmp_path / "text.dcm", "1.2.826.0.1.3680043.10.999.8.1",
                   b"Patient DOE^JOHN, MRN 12345678\n" * 20),
           _part10(tmp_path / "truncated.dcm", "1.2.826.0.1.3680043.10.999.8.2",
                   body[:-2000]),
           # the first Person Name loses its VR
           _part10(tmp_path / "flipped.dcm", "1.2.826.0.1.3680043.10.999.8.3",
                   body.replace(b"PN", b"Q@", 1))]
    quarantine = tmp_path / "quarantine"
    gateway = start_gateway(tmp_path, key_file, "--quarantine", str(quarantine))
    try:
        assert send(gateway.port, [*bad, good]) == [0, 0, 0, 0]
        counts = gateway.wait_idle(4)
    finally:
        assert gateway.stop() == 143
    assert (counts["forwarded"], counts["failed"]) == (1, 3)
    assert [Path(name).name for name in outputs(gateway.dest)] == [expected_output_name(good)]
    records = file_records(gateway.dest)
    assert sorted(r["status"] for r in records) == ["failed"] * 3 + ["written"]
    reasons = [r["reason"] for r in records if r["status"] == "failed"]
    for reason in reasons:
        assert "\n" not in reason and "DOE" not in reason and "12345678" not in reason
    assert any("truncated" in reason for reason in reasons), reasons
    assert any("invalid VR" in reason for reason in reasons), reasons
    quarantined = sorted(p.name for p in quarantine.iterdir() if p.suffix == ".dcm")
    assert len(quarantined) == 3
    table = (quarantine / "failed-inputs.csv").read_text().splitlines()
    assert table[0] == "input,reason" and len(table) == 4
    assert sorted(row.split(",")[0] for row in table[1:]) == quarantined


def test_dropped_association_forwards_nothing(tmp_path: Path, key_file: Path) -> None:
    """A sender that aborts half-way through an instance's dataset: nothing is spooled
    or forwarded; its partial file is removed at the next start."""
    source = Path(get_testdata_file("CT_small.dcm"))
    sop_class, _, sop_instance = _meta(source)
    gateway = start_gateway(tmp_path, key_file)
    try:
        assoc = associate(gateway.port, [source])
        assert assoc.is_established
        context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == sop_class)
        request = C_STORE()
        request.MessageID, request.Priority = 1, 2
        request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = sop_class, sop_instance
        request.DataSet = io.BytesIO(_dataset_bytes(source))
        message = C_STORE_RQ()
        message.primitive_to_message(request)
        fragments = list(message.encode_msg(context.context_id, 4096))
        assert len(fragments) > 4
        for fragment in fragments[:len(fragments) // 2]:  # the command, half the dataset
            assoc.dul.send_pdu(fragment)
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not any(gateway.spool.joinpath("incoming").iterdir()):
            assert time.monotonic() < deadline, "the partial dataset never arrived"
            time.sleep(0.05)
        assoc.abort()
        # the gateway goes on: a complete instance after the dropped one is forwarded
        other = instances(tmp_path, 1)
        assert send(gateway.port, other) == [0]
        counts = gateway.wait_idle(1)
    finally:
        assert gateway.stop() == 143
    # the dropped instance was never received (a resent one counts as a duplicate)
    assert counts["forwarded"] == 1 and counts["received"] == 1 + counts["duplicates"]
    assert list(outputs(gateway.dest)) and all(
        name.endswith(expected_output_name(other[0])) for name in outputs(gateway.dest))
    assert len(file_records(gateway.dest)) == 1
    partial = list((gateway.spool / "incoming").iterdir())
    assert len(partial) == 1  # pynetdicom's file of the aborted transfer
    restarted = start_gateway(tmp_path, key_file, name="gw2")
    try:
        assert not any((gateway.spool / "incoming").iterdir())
    finally:
        assert restarted.stop() == 143
    assert len(file_records(gateway.dest)) == 1


def _sustained_send(port: int, files: list[Path], acknowledged: list[Path]) -> threading.Thread:
    thread = threading.Thread(target=send, args=(port, files, acknowledged), daemon=True)
    thread.start()
    return thread


def _wait_acknowledged(acknowledged: list[Path], count: int) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while len(acknowledged) < count:
        assert time.monotonic() < deadline, f"only {len(acknowledged)} acknowledged"
        time.sleep(0.01)


def _check_exactly_once(dest: Path, acknowledged: list[Path]) -> None:
    """Every acknowledged instance has its output and one record; nothing twice."""
    records = file_records(dest)  # the log before compaction: every record ever written
    per_input = Counter(r["input"] for r in records)
    assert max(per_input.values()) == 1, "an instance was recorded twice"
    assert {r["status"] for r in records} == {"written"}
    names = {Path(name).name for name in outputs(dest)}
    assert {expected_output_name(path) for path in acknowledged} <= names
    assert len(names) == len(records)


def test_kill_9_then_restart_forwards_every_acknowledged_instance_once(
        tmp_path: Path, key_file: Path) -> None:
    """kill -9 while a sender streams; restart; the sender sends again what it was not
    told is stored, plus a few it was: every acknowledged instance is forwarded, and
    none twice."""
    files = instances(tmp_path, 60)
    gateway = start_gateway(tmp_path, key_file)
    acknowledged: list[Path] = []
    _sustained_send(gateway.port, files, acknowledged)
    _wait_acknowledged(acknowledged, 10)
    gateway.process.kill()
    gateway.process.wait(timeout=30)
    before_restart = list(acknowledged)  # no answer comes after the kill
    assert 10 <= len(before_restart) < len(files)
    restarted = start_gateway(tmp_path, key_file, name="gw2")
    try:
        again = [p for p in files if p not in before_restart] + before_restart[-3:]
        assert send(restarted.port, again, acknowledged) == [0] * len(again)
        # what was spooled before the kill counts as received by the first process
        restarted.wait_idle(len(again))
        _check_exactly_once(restarted.dest, before_restart)
        _check_exactly_once(restarted.dest, files)
    finally:
        assert restarted.stop() == 143
    # a killed gateway's worker may finish its file after the restart swept: swept at exit
    assert not list(restarted.dest.rglob(".anonymizer-tmp-*"))


def test_sigterm_finishes_in_flight_and_exits_143(tmp_path: Path, key_file: Path) -> None:
    """SIGTERM during a sustained send: exit 143, nothing half-written in DEST, every
    acknowledged instance either forwarded or still spooled; the next start forwards
    the rest."""
    files = instances(tmp_path, 40)
    gateway = start_gateway(tmp_path, key_file)
    acknowledged: list[Path] = []
    _sustained_send(gateway.port, files, acknowledged)
    _wait_acknowledged(acknowledged, 10)
    assert gateway.stop() == 143  # no answer comes after this: acknowledged is final
    stderr = gateway.stderr.read_text()
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    footer = audit_records(gateway.dest)[-1]
    assert footer["type"] == "run_end" and footer["stopped"] == "stopped by SIGTERM"
    waiting = [p for p in gateway.spool.iterdir() if p.suffix == ".dcm"]
    assert footer["left"] == len(waiting)
    # the answer to the last instance spooled may not have reached the sender
    assert len(acknowledged) <= len(file_records(gateway.dest)) + len(waiting) \
        <= len(acknowledged) + 1
    assert not list(gateway.dest.rglob(".anonymizer-tmp-*"))
    restarted = start_gateway(tmp_path, key_file, name="gw2")
    try:
        restarted.wait_idle(0)
        _check_exactly_once(restarted.dest, acknowledged)
    finally:
        assert restarted.stop() == 143


def test_tls(tmp_path: Path, key_file: Path) -> None:
    """--tls-cert/--tls-key: a TLS sender's instance is forwarded; a plain one cannot
    associate."""
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    gateway = start_gateway(tmp_path, key_file, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        files = instances(tmp_path, 1)
        assert send(gateway.port, files, tls_args=(client, "127.0.0.1")) == [0]
        gateway.wait_idle(1)
        assert not associate(gateway.port, files).is_established
    finally:
        assert gateway.stop() == 143
    assert [Path(n).name for n in outputs(gateway.dest)] == [expected_output_name(files[0])]


@pytest.mark.parametrize("arguments, message", [
    (["dimse://PACS@127.0.0.1:11112"], "a network DEST needs --spool"),
    (["--layout", "mirror", "{dest}"], "--layout mirror"),
    (["--spool", "{dest}/spool", "{dest}"], "spool holds PHI"),
    (["--quarantine", "{dest}/q", "{dest}"], "--quarantine holds PHI"),
])
def test_usage_errors(tmp_path: Path, key_file: Path, arguments: list[str],
                      message: str) -> None:
    dest = tmp_path / "dest"
    done = subprocess.run(
        [sys.executable, "-m", "anonymizer", "listen", "--profile", "basic", "--key-file",
         str(key_file), "--port", "0", *[a.replace("{dest}", str(dest)) for a in arguments]],
        capture_output=True, text=True, timeout=60)
    assert message in one_line_error(done)


def test_missing_net_extra_is_one_line(tmp_path: Path, key_file: Path) -> None:
    """Without pynetdicom: the one line naming the extra, exit 2."""
    code = ("import sys; sys.modules['pynetdicom'] = None; from anonymizer.cli import main; "
            f"sys.exit(main(['listen', '--profile', 'basic', '--key-file', {str(key_file)!r}, "
            f"'--port', '0', {str(tmp_path / 'dest')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert "pip install 'anonymizer[net]'" in one_line_error(done)


def test_spool_hands_out_every_instance_once_in_arrival_order(tmp_path: Path) -> None:
    """With more instances waiting than names held in memory, every one still comes out
    once, oldest first; an instance sent twice waits until its first copy is released;
    a restart finds what was not released."""
    from anonymizer.gateway.spool import Spool, token_of

    spool = Spool(tmp_path / "spool", capacity=3)
    assert spool.open() == 0
    tokens = [f"{n:032x}" for n in range(8)] + [f"{2:032x}"]  # the third sent again
    names = []
    for token in tokens:
        received = spool.incoming / "tmp-arriving.dcm"
        received.write_bytes(token.encode())
        names.append(spool.accept(received, token))
        received.unlink()
    assert names == sorted(names) and spool.waiting == 9
    handed: list[str] = []
    busy: set[str] = set()
    while batch := spool.take(2, busy):
        assert not busy & {token_of(name) for name in batch}
        handed += batch
        busy |= {token_of(name) for name in batch}
        if token_of(batch[0]) != f"{2:032x}" or len(handed) > 8:
            for name in batch:  # released, except the first copy of the third, for now
                spool.release(name)
                busy.discard(token_of(name))
        if len(handed) == 8:  # only the second copy of the third waits: blocked
            assert spool.take(2, busy) == []
            first = names[2]
            spool.release(first)
            busy.discard(token_of(first))
    assert handed == names and spool.waiting == 0
    again = Spool(tmp_path / "spool", capacity=3)
    assert again.open() == 0
