"""A real Orthanc for the network tests: started on loopback with its own config and storage.

Facts this relies on (Orthanc 1.10, DICOMweb plugin 1.7, Debian 12): both ports listen on
every interface but ``RemoteAccessAllowed: false`` refuses non-loopback HTTP clients; C-FIND,
C-GET and C-MOVE answer only calling AE titles listed in ``DicomModalities``; a C-MOVE
destination is looked up there too; storing a SOP Instance UID twice is ignored unless
``OverwriteInstances`` is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "alice", "orthanc-test-password"


def orthanc_missing() -> str | None:
    """Why Orthanc cannot run here (None: it can)."""
    if not os.access(ORTHANC, os.X_OK):
        return f"{ORTHANC} is not installed: apt-get install orthanc orthanc-dicomweb"
    if not os.path.isfile(DICOMWEB_PLUGIN):
        return f"{DICOMWEB_PLUGIN} is not installed: apt-get install orthanc-dicomweb"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Orthanc:
    """One Orthanc process; ``modalities`` maps AE title -> port of a peer on loopback."""

    folder: Path
    aet: str
    modalities: dict[str, int] = field(default_factory=dict)
    overwrite: bool = False
    #: (CA certificate, server certificate, its key): DICOM TLS with them (Orthanc 1.10's
    #: own HTTPS crashes on the first request here: HTTPS goes through :class:`TlsProxy`)
    tls: tuple[Path, Path, Path] | None = None
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root as our source/destination URL names it."""
        return f"dicomweb+{self.url}/dicom-web"

    @property
    def dimse(self) -> str:
        scheme = "dimse+tls" if self.tls else "dimse"
        return f"{scheme}://{self.aet}@127.0.0.1:{self.dicom_port}"

    def config(self) -> dict:
        tls = {}
        if self.tls is not None:
            ca, certificate, key = self.tls
            tls = {"DicomTlsEnabled": True, "DicomTlsCertificate": str(certificate),
                   "DicomTlsPrivateKey": str(key), "DicomTlsTrustedCertificates": str(ca),
                   "DicomTlsRemoteCertificateRequired": False}
        return {
            **tls,
            "Name": self.aet, "DicomAet": self.aet,
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {aet: [aet, "127.0.0.1", port]
                                for aet, port in self.modalities.items()},
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
            "SaveJobs": False, "DicomAssociationCloseDelay": 0,
            "OverwriteInstances": self.overwrite, "StableAge": 1,
        }

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps(self.config(), indent=1))
        self.process = subprocess.Popen(
            [ORTHANC, "--no-jobs", f"--logfile={self.folder / 'orthanc.log'}", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # DCMTK (Orthanc's DICOM side) leaves Nagle's algorithm on unless TCP_NODELAY
            # is set: every DIMSE answer then waits for our delayed ACK (45 ms a C-ECHO
            # instead of 4 ms)
            env=dict(os.environ, TCP_NODELAY="1"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: see {self.folder / 'orthanc.log'}")
            try:
                if self.get("/system").ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("Orthanc did not answer within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, auth=(USER, PASSWORD), timeout=30,
                            **kwargs)

    def upload(self, files: list[Path]) -> None:
        """Store files as they are (REST upload keeps their bytes)."""
        with requests.Session() as session:
            session.auth = (USER, PASSWORD)
            for path in files:
                answer = session.post(self.url + "/instances", data=path.read_bytes(),
                                      timeout=30)
                answer.raise_for_status()

    def wipe(self) -> None:
        for patient in self.get("/patients").json():
            requests.delete(f"{self.url}/patients/{patient}", auth=(USER, PASSWORD),
                            timeout=30).raise_for_status()

    def instances(self) -> list[str]:
        """Orthanc IDs of every stored instance."""
        return self.get("/instances").json()

    def qido(self, level: str, **query: str) -> list[dict]:
        answer = self.get(f"/dicom-web/{level}", params=query)
        answer.raise_for_status()
        return answer.json() if answer.content else []

    def new_instance_changes(self) -> int:
        """How many times an instance was stored (overwrites included)."""
        return sum(self.new_instance_changes_by_sop().values())

    def new_instance_changes_by_sop(self) -> dict[str, int]:
        """SOP Instance UID -> how many times it was stored (overwrites included)."""
        counts: dict[str, int] = {}
        since = 0
        while True:
            page = self.get("/changes", params={"since": since, "limit": 1000}).json()
            for change in page["Changes"]:
                if change["ChangeType"] == "NewInstance":
                    counts[change["ID"]] = counts.get(change["ID"], 0) + 1
            if page["Done"]:
                break
            since = page["Last"]
        sops = {}
        for orthanc_id, count in counts.items():
            tags = self.get(f"/instances/{orthanc_id}/simplified-tags")
            if tags.ok:
                sops[tags.json()["SOPInstanceUID"]] = count
        return sops


def remove(*servers: Orthanc) -> None:
    """Stop the servers (together: each takes about 3 s) and delete their storage."""
    for orthanc in servers:
        if orthanc.process is not None and orthanc.process.poll() is None:
            orthanc.process.send_signal(signal.SIGTERM)
    for orthanc in servers:
        orthanc.stop()
        shutil.rmtree(orthanc.folder, ignore_errors=True)


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it signs for 127.0.0.1: (CA, certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    certificate, key, request = folder / "server.crt", folder / "server.key", folder / "server.csr"
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                          "keyUsage=digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=serverAuth,clientAuth\n")
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2", "-subj", "/CN=anonymizer test CA",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", certificate, "-days", "2", "-extfile", extensions],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return ca, certificate, key


class TlsProxy:
    """HTTPS in front of a loopback HTTP port: Python's TLS server, bytes passed through."""

    def __init__(self, target_port: int, certificate: Path, key: Path):
        self.target_port = target_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificate, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            client.settimeout(30)
            secure = self.context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError):  # the client refused our certificate
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)

        def pump(source: socket.socket, target: socket.socket) -> None:
            try:
                while data := source.recv(65536):
                    target.sendall(data)
            except OSError:
                pass
            finally:
                for end in (source, target):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pump, args=(upstream, secure), daemon=True)
        back.start()
        pump(secure, upstream)
        back.join()
        secure.close()
        upstream.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.listener.close()
