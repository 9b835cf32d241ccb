"""Failure reasons come from a fixed vocabulary: no text of a file, a path or a server.

Exceptions whose messages hold a name, an ID and a date are raised for real at every
stage (read, de-identify, pixels, write, send, listen) and none of those reach the audit
log or the terminal summary; ``safe_reason`` is checked on a table of exception objects;
and every message of ours that becomes a reason is checked, in the source, to interpolate
only parts that are not values of a file.
"""

from __future__ import annotations

import ast
import errno
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.errors import InvalidDicomError

import anonymizer
from anonymizer.errors import DeidentificationError, PixelDataError
from anonymizer.io.reader import NotDicomError, TruncatedError
from anonymizer.net.errors import PermanentError
from anonymizer.reasons import INTERNAL_ERROR, STAGES, exception_class, safe_reason, tag_label

#: What a file, a path or a server may hold; none of it may reach a reason.
PHI = ("DOE^JOHN", "Jane Smith", "PID-88421", "MRN 00123", "19700101", "1970-01-01")
#: ...nor any part of it (a name's components, an ID's digits).
PHI_PARTS = ("DOE", "JOHN", "Jane", "Smith", "88421", "00123", "19700101", "1970-01-01")
PHI_TEXT = "patient DOE^JOHN (Jane Smith), PID-88421, MRN 00123, born 19700101 / 1970-01-01"
CLI = [sys.executable, "-m", "anonymizer"]
_HEX_RUN = re.compile(r"[0-9a-f]{16,}")  # hashes and tokens: digits by chance, not values


def assert_no_phi(text: str) -> None:
    """``text`` (an audit log, a summary) holds no part of :data:`PHI`."""
    scrubbed = _HEX_RUN.sub("#", text)
    for part in PHI_PARTS:
        assert part.lower() not in scrubbed.lower(), f"{part!r} leaked into: {text}"


# ------------------------------------------------------------------ the unit table


class _Unknown(Exception):
    """An exception class from a module that is not known (this test module)."""


def _os_error(number: int, cls: type[OSError] = OSError) -> OSError:
    return cls(number, f"{PHI_TEXT}", f"/data/{PHI[0]}/{PHI[2]}/{PHI[4]}.dcm")


@pytest.mark.parametrize("exc, expected", [
    (ValueError(f"could not convert string to float: '{PHI[1]}'"), "ValueError"),
    (KeyError(PHI[0]), "KeyError"),
    (UnicodeDecodeError("ascii", PHI_TEXT.encode(), 3, 4, PHI_TEXT), "UnicodeDecodeError"),
    (InvalidDicomError(PHI_TEXT), "InvalidDicomError"),
    (NotImplementedError(f"Unknown Value Representation '{PHI[0]}'"), "NotImplementedError"),
    (_os_error(errno.EACCES), "Permission denied"),
    (_os_error(errno.ENOENT, FileNotFoundError), "No such file or directory"),
    (_os_error(errno.ENOSPC), "No space left on device"),
    (OSError(PHI_TEXT), "OSError"),  # no errno: its text is not ours to give
    (OSError(99999, PHI_TEXT), "OSError"),  # an errno the system does not know
    (ssl.SSLError(1, PHI_TEXT), "SSLError"),  # errno 1 here is not EPERM
    (socket.gaierror(-2, PHI_TEXT), "gaierror"),
    (_Unknown(PHI_TEXT), INTERNAL_ERROR),
    (type(PHI[0].replace("^", "_"), (Exception,), {})(PHI_TEXT), INTERNAL_ERROR),
    (TruncatedError("truncated: element (0008,1070) is cut short"),
     "truncated: element (0008,1070) is cut short"),
    (PixelDataError("Bits Allocated 32 is not supported (only 8 or 16)"),
     "Bits Allocated 32 is not supported (only 8 or 16)"),
    (NotDicomError("empty file"), "empty file"),
])
def test_safe_reason_says_only_what_the_vocabulary_allows(exc: BaseException,
                                                          expected: str) -> None:
    assert safe_reason("read", exc) == f"read: {expected}"


@pytest.mark.parametrize("tag, label", [
    (0x00100010, "(0010,0010)"), (0x60003000, "(6000,3000)"),  # a repeating group too
    (0x00044331, "(unknown tag)"),  # "1C" of a Patient ID read as an element number
    (0x4F441234, "(unknown tag)"), (0x00291010, "(private tag)")])
def test_a_tag_is_named_only_when_the_standard_defines_it(tag: int, label: str) -> None:
    assert tag_label(tag) == label


def test_a_class_name_only_from_a_known_module() -> None:
    import requests

    assert exception_class(requests.HTTPError(PHI_TEXT)) == "HTTPError"
    assert exception_class(_Unknown()) == INTERNAL_ERROR
    # requests' errors are OSErrors whose errno is not the system's
    assert safe_reason("send", requests.ConnectionError(PHI_TEXT)) == "send: ConnectionError"


# ------------------------------------------------ our messages, checked in the source

#: The exceptions whose messages become failure reasons as they are.
_REASON_CLASSES = {"DeidentificationError", "PixelDataError", "TruncatedError", "NotDicomError",
                   "NetworkError", "TransientError", "PermanentError", "RefusedError",
                   "DeliveryFailed", "DestinationRefused", "FileTimeout", "AnonymizerError"}
#: What such a message may interpolate: tags, keywords, VRs, standard names, counts,
#: status codes, our own labels; reviewed one by one. Anything else fails this test.
_ALLOWED_PARTS = {
    "tag_label(tag)", "keyword", "vr", "elem.length", "limit",
    "size - last_end", "'has an invalid VR' if elem.VR else 'lost its VR'",
    "exception_class(exc)", "_syntax_label(syntax)", "_photometric_label(photometric)",
    "arr.shape", "bits", "columns", "rows", "count", "index", "samples", "stored_bits",
    "identifiers", "len(remaining)", "seconds",
    # the network: our labels (source/destination), AE titles of our own configuration,
    # numeric statuses, a fixed table of connection failures
    "self.what", "what", "action", "name", "self.name()", "self.peer.name()",
    "self.ae_title", "self.peer.ae_title", "answer.status_code", "code", "final",
    "reason", "failed", "_connection_reason(exc)",
}
_ALLOWED_CALLS = {"safe_reason", "describe"}


def _reason_messages() -> Iterator[tuple[str, int, str]]:
    """(module, line, interpolated expression) of every message of a reason class."""
    root = Path(anonymizer.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in _REASON_CLASSES and node.args):
                continue
            where = str(path.relative_to(root))
            message = node.args[0]
            if isinstance(message, ast.Constant):
                continue
            if isinstance(message, ast.JoinedStr):
                for part in message.values:
                    if isinstance(part, ast.FormattedValue):
                        yield where, node.lineno, ast.unparse(part.value)
            elif not (isinstance(message, ast.Call) and isinstance(message.func, ast.Name)
                      and message.func.id in _ALLOWED_CALLS):
                yield where, node.lineno, ast.unparse(message)


def test_our_reason_messages_interpolate_only_allowed_parts() -> None:
    parts = list(_reason_messages())
    assert len(parts) > 30  # the walk finds them
    unreviewed = [f"{where}:{line}: {{{part}}}" for where, line, part in parts
                  if part not in _ALLOWED_PARTS]
    assert not unreviewed, "a reason interpolates what may be a value:\n" + "\n".join(unreviewed)


def test_every_stage_named_in_the_package_is_in_the_vocabulary() -> None:
    root = Path(anonymizer.__file__).parent
    stages = set()
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "safe_reason" and node.args:
                assert isinstance(node.args[0], ast.Constant), (path, node.lineno)
                stages.add(node.args[0].value)
    assert stages and stages <= STAGES, stages - STAGES


# ------------------------------------------------------- raised for real, end to end


def _with_phi(ds: pydicom.Dataset) -> pydicom.Dataset:
    ds.PatientName, ds.PatientID = PHI[0], PHI[2]
    ds.OtherPatientIDs = PHI[3]
    ds.PatientBirthDate, ds.StudyDate = PHI[4], PHI[4]
    ds.StudyDescription = PHI_TEXT[:64]
    return ds


def _ct() -> pydicom.Dataset:
    return _with_phi(pydicom.dcmread(get_testdata_file("CT_small.dcm")))


def _unknown_vr(folder: Path) -> Path:
    """The name's VR replaced by two letters of the name (pydicom raises naming them
    when the element is read; the engine's own check fails the file first)."""
    path = folder / f"{PHI[1]} {PHI[4]}" / f"{PHI[2]}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    _ct().save_as(path, enforce_file_format=True)
    data = bytearray(path.read_bytes())
    at = data.index(b"\x10\x00\x10\x00PN")
    data[at + 4:at + 6] = b"DO"  # the first letters of the name
    path.write_bytes(bytes(data))
    return path


_INVALID_VR = ("corrupt: element (0010,0010) has an invalid VR: the header cannot be "
               "parsed reliably from there on")
#: the guessed encoding reads four bytes of the name as a tag the standard does not
#: define: its digits are not given
_TRUNCATED = "read: truncated: element (unknown tag) is cut short"


def _unknown_transfer_syntax(folder: Path) -> Path:
    """A Transfer Syntax UID made of the patient's name and ID: pydicom reads the dataset
    in a guessed encoding and finds it cut short."""
    path = folder / f"{PHI[2]}.dcm"
    ds = _ct()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds.save_as(path, enforce_file_format=True)
    path.write_bytes(path.read_bytes().replace(b"1.2.840.10008.1.2.1.99",
                                               f"{PHI[0]} {PHI[2]} 197".encode()))
    return path


def _broken_jpeg(folder: Path) -> Path:
    """A secondary capture (searched for burned-in text) whose JPEG stream is garbage:
    the decoder raises, the file fails in the pixel stage."""
    ds = _with_phi(pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")))
    path = folder / f"{PHI[0]}_{PHI[5]}.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = bytearray(path.read_bytes())
    start = data.index(b"\xff\xd8\xff")  # the first fragment's JPEG stream
    data[start + 2:start + 600] = PHI_TEXT.encode().ljust(598, b"\xff")[:598]
    path.write_bytes(bytes(data))
    return path


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=300, check=False)


def _file_records(audit: Path) -> list[dict]:
    return [r for r in map(json.loads, audit.read_text().splitlines()) if r["type"] == "file"]


def test_read_pixel_and_write_failures_leak_nothing(tmp_path: Path, key_file: Path) -> None:
    """Each stage fails for real on files and paths full of PHI; the log, the report and
    the terminal summary say what failed in the vocabulary, and nothing else."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    _unknown_vr(source)  # de-identify: the engine's own check
    _unknown_transfer_syntax(source)  # read
    _broken_jpeg(source)  # pixels: the decoder's own error
    # write: the folder the output needs is a file in OUT (mkdir raises naming the path)
    blocked = source / f"{PHI[0]}^{PHI[4]}" / f"{PHI[3]}.dcm"
    blocked.parent.mkdir()
    _ct().save_as(blocked, enforce_file_format=True)
    out.mkdir()
    (out / blocked.parent.name).write_bytes(b"a file where a folder goes")
    proc = _run("run", "-p", "research", "--key-file", key_file, "--layout", "mirror",
                "--no-progress", "-j", "1", source, out)
    assert proc.returncode == 1, proc.stderr
    records = _file_records(out / "audit.jsonl")
    reasons = sorted(r["reason"] for r in records)
    assert reasons == [
        f"de-identify: {_INVALID_VR}",
        "de-identify: pixel data in JPEG Baseline (Process 1) cannot be decoded: RuntimeError",
        _TRUNCATED, "write: File exists"], reasons
    assert_no_phi((out / "audit.jsonl").read_text())
    assert_no_phi(proc.stderr + proc.stdout)
    report = _run("report", out / "audit.jsonl")
    assert_no_phi(report.stdout + report.stderr)


class _RefusingArchive(BaseHTTPRequestHandler):
    """A DICOMweb archive that answers queries and refuses every stored instance with
    a body, a status line and a header that echo the patient."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer(200, b"[]")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        body = json.dumps({"00081198": {"vr": "SQ", "Value": [{
            "00081197": {"vr": "US", "Value": [0xA700]},
            "00081155": {"vr": "UI", "Value": ["1.2.3"]}}]},
            "ErrorComment": PHI_TEXT}).encode()
        self._answer(409, body, reason=f"Conflict: {PHI[0]} {PHI[2]}")

    def _answer(self, status: int, body: bytes, reason: str | None = None) -> None:
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Warning", f'299 archive "{PHI_TEXT}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture()
def refusing_archive() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingArchive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"dicomweb+http://127.0.0.1:{server.server_address[1]}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()


def test_a_refusing_destination_leaks_nothing(tmp_path: Path, key_file: Path,
                                              refusing_archive: str) -> None:
    pytest.importorskip("requests")
    source = tmp_path / "in"
    source.mkdir()
    _ct().save_as(source / f"{PHI[0]}.dcm", enforce_file_format=True)
    audit = tmp_path / "audit.jsonl"
    proc = _run("run", "-p", "basic", "--key-file", key_file, "--audit", audit,
                "--no-progress", "-j", "1", source, refusing_archive)
    assert proc.returncode == 1, proc.stderr
    [record] = _file_records(audit)
    assert record["reason"] == ("send: DICOMweb destination refused the instance "
                                "(HTTP 409, failure reason 0xA700)")
    assert_no_phi(audit.read_text())
    assert_no_phi(proc.stderr + proc.stdout)


def test_a_failed_instance_at_the_gateway_leaks_nothing(tmp_path: Path,
                                                        key_file: Path) -> None:
    pytest.importorskip("pynetdicom")
    from tests.test_listen import file_records, send, start_gateway

    bad = _unknown_vr(tmp_path / "senders")
    gateway = start_gateway(tmp_path, key_file)
    try:
        assert send(gateway.port, [bad]) == [0]
        gateway.wait_idle(1)
    finally:
        assert gateway.stop() == 143
    [record] = file_records(gateway.dest)
    assert record["reason"] == f"de-identify: {_INVALID_VR}"
    assert_no_phi((gateway.dest / "audit.jsonl").read_text())
    assert_no_phi(gateway.stderr.read_text())


def test_a_profile_that_cannot_place_a_value_leaks_nothing(tmp_path: Path,
                                                           key_file: Path) -> None:
    """de-identify: a lookup table (its file name PHI too) without the patient, with
    ``on_missing: fail``."""
    table = tmp_path / f"{PHI[1]} {PHI[2]}.csv"
    table.write_text("original,replacement\nSOMEONE-ELSE,SUBJ-1\n")
    profile = tmp_path / "trial.yaml"
    profile.write_text(f"name: trial\nextends: basic\npseudonyms:\n  lookup: {table.name}\n"
                       "  on_missing: fail\nactions:\n  PatientID: pseudonym\n")
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    _ct().save_as(source / f"{PHI[4]}.dcm", enforce_file_format=True)
    proc = _run("run", "-p", profile, "--key-file", key_file, "--no-progress", "-j", "1",
                source, out)
    assert proc.returncode == 1, proc.stderr
    [record] = _file_records(out / "audit.jsonl")
    assert record["reason"] == "de-identify: PatientID: value not in the lookup table"
    assert_no_phi((out / "audit.jsonl").read_text())
    assert_no_phi(proc.stderr + proc.stdout)


def test_our_own_errors_keep_their_words() -> None:
    assert safe_reason("de-identify", DeidentificationError("burned-in annotation: pixel "
                       "data not cleaned")) == \
        "de-identify: burned-in annotation: pixel data not cleaned"
    assert safe_reason("send", PermanentError("DICOMweb destination refused the instance "
                       "(HTTP 409)")).startswith("send: DICOMweb")
