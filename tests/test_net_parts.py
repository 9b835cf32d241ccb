"""The network package's parts that need no server: URLs, credentials, query keys, the
streamed multipart reading and writing, retries."""

from __future__ import annotations

import io
import socket
import sys
import threading
from pathlib import Path

import pytest

from anonymizer.errors import UsageError
from anonymizer.net.credentials import http_settings
from anonymizer.net.dicomweb import DicomWebClient, _MultipartFile, write_single_part
from anonymizer.net.errors import PermanentError, TransientError
from anonymizer.net.retry import Retry
from anonymizer.net.sources import Instance, list_instances, parse_selection
from anonymizer.net.urls import is_network_url, parse_endpoint


@pytest.mark.parametrize(("url", "kind", "host", "port", "base", "aet"), [
    ("dicomweb+http://pacs:8042/dicom-web/", "dicomweb", "pacs", 8042,
     "http://pacs:8042/dicom-web", ""),
    ("dicomweb+https://cloud.example/v1/dicomWeb", "dicomweb", "cloud.example", 443,
     "https://cloud.example/v1/dicomWeb", ""),
    ("dimse://PACS@10.1.2.3:104", "dimse", "10.1.2.3", 104, "", "PACS"),
    ("dimse://MY AE@host:11112", "dimse", "host", 11112, "", "MY AE"),
])
def test_url_forms(url, kind, host, port, base, aet):
    endpoint = parse_endpoint(url)
    assert (endpoint.kind, endpoint.host, endpoint.port, endpoint.base_url, endpoint.aet) == (
        kind, host, port, base, aet)
    assert is_network_url(url)
    assert not endpoint.tls


def test_dimse_over_tls():
    endpoint = parse_endpoint("dimse+tls://PACS@pacs.hospital:2762")
    assert (endpoint.kind, endpoint.tls, endpoint.aet, endpoint.port) == ("dimse", True, "PACS",
                                                                          2762)
    assert str(endpoint) == "dimse+tls://PACS@pacs.hospital:2762"


@pytest.mark.parametrize(("url", "says"), [
    ("dicomweb+https://alice:secret@pacs/dicom-web", "netrc"),
    ("dicomweb+http://pacs/dicom-web?x=1", "service root"),
    ("dimse://pacs:104", "AE title"),
    ("dimse://PACS@pacs", "host and port"),
    ("dimse://WAY-TOO-LONG-AE-TITLE@pacs:104", "1 to 16"),
    ("dimse://PACS@pacs:99999", "port"),
])
def test_bad_urls_are_one_line_usage_errors(url, says):
    with pytest.raises(UsageError, match=says) as caught:
        parse_endpoint(url)
    assert "secret" not in str(caught.value)


def test_folders_are_not_urls():
    assert not is_network_url("/data/export")
    assert not is_network_url("dicomweb/folder")


def _private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_netrc_gives_basic_credentials_per_host(tmp_path, monkeypatch):
    monkeypatch.setenv("NETRC", str(_private(
        tmp_path / "netrc", "machine pacs login alice password s3cret\n")))
    assert http_settings("pacs").authorization == "Basic YWxpY2U6czNjcmV0"
    assert http_settings("other").authorization is None
    assert "s3cret" not in repr(http_settings("pacs"))


def test_netrc_readable_by_others_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("NETRC", str(_private(
        tmp_path / "netrc", "machine pacs login alice password s3cret\n", 0o640)))
    with pytest.raises(UsageError, match="group or others: chmod 600"):
        http_settings("pacs")


def test_token_file_wins_and_must_be_private(tmp_path, monkeypatch):
    monkeypatch.setenv("NETRC", str(_private(
        tmp_path / "netrc", "machine pacs login alice password s3cret\n")))
    token = _private(tmp_path / "token", "abc.def.ghi\n")
    assert http_settings("pacs", token).authorization == "Bearer abc.def.ghi"
    token.chmod(0o644)
    with pytest.raises(UsageError, match="token file is readable"):
        http_settings("pacs", token)
    with pytest.raises(UsageError, match="--ca-file"):
        http_settings("pacs", ca_file=tmp_path / "no-such-ca.pem")


def test_query_keys_go_to_their_level():
    selection = parse_selection(["StudyDate=20240101-20240131", "Modality=CT",
                                 "PatientName=DOE*"], None)
    assert selection.study_keys == {"StudyDate": "20240101-20240131", "PatientName": "DOE*"}
    assert selection.series_keys == {"Modality": "CT"}
    assert selection.studies is None
    assert "DOE" not in repr(selection.series_keys)


@pytest.mark.parametrize(("queries", "says"), [
    ([], "--query KEY=VALUE or --studies FILE"),
    (["PatientID"], "KEY=VALUE"),
    (["Nonsense=1"], "not a DICOM keyword"),
    (["ReferencedSeriesSequence=1"], "sequence"),
    (["Modality=CT", "Modality=MR"], "given twice"),
])
def test_bad_selections(queries, says):
    with pytest.raises(UsageError, match=says):
        parse_selection(queries, None)


def test_studies_file(tmp_path):
    listing = tmp_path / "studies.txt"
    listing.write_text("# cohort\n1.2.3\n\n 1.2.4 \n1.2.3\n")
    assert parse_selection([], listing).studies == ("1.2.3", "1.2.4", "1.2.3")


BODY = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n"


def _multipart(boundary: str, parts: list[bytes], preamble: bytes = b"") -> bytes:
    out = preamble
    for part in parts:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1000, 1 << 20])
def test_single_part_is_written_whatever_the_chunking(chunk):
    stream = _multipart("XyZ", [BODY], preamble=b"ignored preamble\r\n")
    chunks = (stream[i:i + chunk] for i in range(0, len(stream), chunk))
    out = io.BytesIO()
    write_single_part('multipart/related; type="application/dicom"; boundary="XyZ"', chunks,
                      out, "source")
    assert out.getvalue() == BODY


def test_two_parts_or_a_cut_answer_are_errors():
    with pytest.raises(PermanentError, match="more than one instance"):
        write_single_part("multipart/related; boundary=b", iter([_multipart("b", [b"1", b"2"])]),
                          io.BytesIO(), "source")
    cut = _multipart("b", [BODY])[:-200]
    with pytest.raises(TransientError, match="cut short"):
        write_single_part("multipart/related; boundary=b", iter([cut]), io.BytesIO(), "source")


def test_stow_body_is_read_in_chunks(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(BODY)
    with _MultipartFile(path, "B0") as body:
        pieces = []
        while piece := body.read(100):
            assert len(piece) <= 100
            pieces.append(piece)
        assert b"".join(pieces) == _multipart("B0", [BODY])
        assert len(body) == len(b"".join(pieces))


def test_retry_backs_off_then_gives_up_at_once_while_the_peer_is_down():
    calls = []

    def failing():
        calls.append(1)
        raise TransientError("down")

    retry = Retry(attempts=3, first_delay=0)
    with pytest.raises(TransientError):
        retry(failing)
    assert len(calls) == 3 and retry.down
    with pytest.raises(TransientError):
        retry(failing)
    assert len(calls) == 4  # one attempt while down
    assert retry(lambda: "ok") == "ok" and not retry.down
    outcomes = iter([TransientError("blip"), "done"])

    def flaky():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry(flaky) == "done"


@pytest.mark.parametrize(("args", "says"), [
    (["--query", "PatientID=1", "IN", "OUT"], "IN is a folder"),
    (["--move-port", "11112", "IN", "OUT"], "--move-port is for a dimse:// source"),
    (["--move-port", "0", "IN", "OUT"], "port number"),
    (["--ae-title", "A\\B", "IN", "OUT"], "AE title"),
    (["--query", "PatientID=1", "--move-port", "11112", "dimse+tls://PACS@127.0.0.1:1", "OUT"],
     "not supported"),
    (["--query", "PatientID=1", "--layout", "mirror", "dimse://PACS@127.0.0.1:1", "OUT"],
     "mirror"),
    (["--query", "PatientID=1", "--move-port", "11112",
      "dicomweb+http://127.0.0.1:1/dicom-web", "OUT"], "--move-port is for a dimse:// source"),
])
def test_network_options_that_do_not_fit_are_one_line_errors(tmp_path, args, says):
    from conftest import SAMPLE_DATA, one_line_error
    from net_helpers import cli

    paths = {"IN": SAMPLE_DATA, "OUT": tmp_path / "out"}
    line = one_line_error(cli("run", "-p", "basic", *[paths.get(a, a) for a in args]))
    assert says in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("module", "url"), [
    ("requests", "dicomweb+http://127.0.0.1:1/dicom-web"),
    ("pynetdicom", "dimse://PACS@127.0.0.1:1"),
])
def test_a_missing_net_extra_is_one_line_naming_it(monkeypatch, module, url):
    from anonymizer.errors import MissingExtraError
    from anonymizer.net.destinations import open_destination
    from anonymizer.net.options import NetOptions

    monkeypatch.setitem(sys.modules, module, None)  # its import fails
    with pytest.raises(MissingExtraError, match=r"pip install 'anonymizer\[net\]'"):
        open_destination(url, NetOptions())


class _Answers:
    """A server's C-FIND/QIDO answers as given (what list_instances must not trust)."""

    def find_studies(self, keys: dict[str, str]):
        yield from ("1.2.3", "../../etc", "")

    def find_series(self, study: str, keys: dict[str, str]):
        yield from ("1.2.3.4", "/abs/series")

    def find_instances(self, study: str, series: str):
        yield from (Instance(study, series, "1.2.3.4.5"), Instance(study, series, "../x"),
                    Instance(study, series, "1.2.3.4.5"), Instance(study, series, "1.2/3"))


def test_list_instances_keeps_only_uids_whatever_the_server_answers() -> None:
    """A listed SOP Instance UID becomes the spool file's name and the study and series
    UIDs parts of URLs: anything but a UID from a server is skipped (``../x`` would
    write, then delete, a file outside the spool)."""
    listed = list(list_instances(_Answers(), parse_selection(["StudyDate=20240101"], None)))
    assert listed == [Instance("1.2.3", "1.2.3.4", "1.2.3.4.5")]


def _server_stopped_mid_answer(answers: int) -> tuple[str, threading.Thread]:
    """A real HTTP server on loopback that reads each request, starts a chunked 200 answer
    and closes the connection in the middle of it, as an archive killed while answering."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            for _ in range(answers):
                connection, _ = listener.accept()
                with connection:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        request += connection.recv(65536)
                    head, _, body = request.partition(b"\r\n\r\n")
                    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                      if line.lower().startswith(b"content-length")))
                    while len(body) < length:
                        body += connection.recv(65536)
                    connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                       b"Content-Type: application/dicom+json\r\n\r\n"
                                       b"40\r\n[{\"00081199\": ")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread


def test_an_archive_stopped_while_answering_a_store_is_down_not_refusing(tmp_path):
    """A STOW-RS answer cut off by the archive's death is a transient error (the instance
    waits for the next try), never a refusal of the instance: seen as a failed instance in
    the gateway's test when Orthanc was killed mid-send."""
    path = tmp_path / "x.dcm"
    path.write_bytes(BODY)
    url, server = _server_stopped_mid_answer(answers=2)
    client = DicomWebClient(url, http_settings("127.0.0.1"), "destination",
                            Retry(attempts=2, first_delay=0.01))
    try:
        with pytest.raises(TransientError, match="destination: answer cut short"):
            client.store(path)
    finally:
        client.close()
    server.join(5)
    assert not server.is_alive()  # both attempts were made

