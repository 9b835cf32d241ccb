"""TLS with a certificate of a private CA, against a real Orthanc serving DICOM TLS and its
DICOMweb behind an HTTPS proxy: refused (one line, exit 2) unless ``--ca-file`` names that
CA, then the same runs work."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import SAMPLE_DATA, one_line_error
from net_helpers import SAMPLE_FILES, cli, summary
from orthanc_server import Orthanc, TlsProxy, make_certificates, orthanc_missing, remove


@pytest.fixture(scope="module")
def tls_orthanc(tmp_path_factory: pytest.TempPathFactory):
    missing = orthanc_missing() or (None if shutil.which("openssl") else
                                    "openssl is not installed: apt-get install openssl")
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("orthanc-tls")
    ca, certificate, key = make_certificates(root / "certificates")
    server = Orthanc(root / "server", "SECURE", modalities={"ANONYMIZER": 1},
                     tls=(ca, certificate, key))
    try:
        server.start()
        server.upload(SAMPLE_FILES)
        proxy = TlsProxy(server.http_port, certificate, key)
        try:
            yield server, f"dicomweb+https://127.0.0.1:{proxy.port}/dicom-web", ca
        finally:
            proxy.close()
    finally:
        remove(server)


@pytest.mark.parametrize("how", ["dicomweb", "dimse"])
def test_a_private_ca_is_refused_unless_given(tls_orthanc, netrc_file, tmp_path, how):
    server, https, ca = tls_orthanc
    url = https if how == "dicomweb" else server.dimse
    line = one_line_error(cli("run", "--query", "PatientID=*", url, tmp_path / "out"))
    assert "TLS certificate not trusted" in line and "--ca-file" in line
    proc = cli("run", "-p", "basic", "-j", "1", "--query", "PatientID=*",
               "--ca-file", ca, url, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert summary(proc).startswith(f"anonymizer: {len(SAMPLE_FILES)} written, 0 failed")


@pytest.mark.parametrize("how", ["dicomweb", "dimse"])
def test_storing_over_tls(tls_orthanc, netrc_file, tmp_path, how):
    server, https, ca = tls_orthanc
    server.wipe()
    try:
        proc = cli("run", "-p", "basic", "-j", "1", "--ca-file", ca, "--audit",
                   tmp_path / "a.jsonl", SAMPLE_DATA, https if how == "dicomweb" else server.dimse)
        assert proc.returncode == 0, proc.stderr
        assert len(server.instances()) == len(SAMPLE_FILES)
    finally:
        server.wipe()
        server.upload(SAMPLE_FILES)
