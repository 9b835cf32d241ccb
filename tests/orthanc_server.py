"""A real Orthanc for the network tests: started on loopback with its own config and storage.

Facts this relies on (Orthanc 1.10, DICOMweb plugin 1.7, Debian 12): both ports listen on
every interface but ``RemoteAccessAllowed: false`` refuses non-loopback HTTP clients; C-FIND,
C-GET and C-MOVE answer only calling AE titles listed in ``DicomModalities``; a C-MOVE
destination is looked up there too; storing a SOP Instance UID twice is ignored unless
``OverwriteInstances`` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
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
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root as our source/destination URL names it."""
        return f"dicomweb+http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dimse://{self.aet}@127.0.0.1:{self.dicom_port}"

    def config(self) -> dict:
        return {
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
        return requests.get(self.url + path, auth=(USER, PASSWORD), timeout=30, **kwargs)

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
