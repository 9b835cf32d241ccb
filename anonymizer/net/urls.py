"""The URL forms of network sources and destinations.

- ``dicomweb+http://host:port/path`` and ``dicomweb+https://...``: a DICOMweb root (the
  path under which ``studies`` answers);
- ``dimse://AET@host:port``: a DICOM application entity; ``dimse+tls://AET@host:port`` over
  TLS (the peer's certificate verified, against ``--ca-file`` when given).

Credentials are never part of a URL (they come from netrc or ``--token-file``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from anonymizer.errors import UsageError

_SCHEMES = ("dicomweb+http://", "dicomweb+https://", "dimse://", "dimse+tls://")
#: PS3.5 AE title: 1-16 characters of the default repertoire, no backslash or control.
_AE_TITLE = re.compile(r"^[ -\[\]-~]{1,16}$")


@dataclass(frozen=True)
class Endpoint:
    """A parsed source or destination URL."""

    kind: Literal["dicomweb", "dimse"]
    host: str
    port: int
    #: DICOMweb: the http(s) root without a trailing slash; DIMSE: ``""``
    base_url: str = ""
    #: DIMSE: the peer's AE title
    aet: str = ""
    #: DIMSE over TLS
    tls: bool = False

    def __str__(self) -> str:
        if self.kind == "dimse":
            scheme = "dimse+tls" if self.tls else "dimse"
            return f"{scheme}://{self.aet}@{self.host}:{self.port}"
        return f"dicomweb+{self.base_url}"


def is_network_url(text: str) -> bool:
    """True when ``text`` names a network source or destination, not a folder."""
    return text.lower().startswith(_SCHEMES)


def check_ae_title(title: str, what: str = "--ae-title") -> str:
    """An AE title as PS3.5 allows it (1-16 characters, no backslash, not only spaces)."""
    if not _AE_TITLE.match(title) or not title.strip():
        raise UsageError(f"{what}: an AE title is 1 to 16 characters, no backslash")
    return title


def parse_endpoint(text: str) -> Endpoint:
    """Parse a ``dicomweb+http(s)://`` or ``dimse://`` URL.

    Raises
    ------
    UsageError
        One line saying what is wrong with it.
    """
    if not is_network_url(text):
        raise UsageError("not a network URL (dicomweb+http://, dicomweb+https://, dimse://, "
                         f"dimse+tls://): {text}")
    for scheme in ("dimse://", "dimse+tls://"):
        if text.lower().startswith(scheme):
            return _parse_dimse(text[len(scheme):], tls=scheme == "dimse+tls://")
    parts = urlsplit(text[len("dicomweb+"):])
    if parts.username is not None or parts.password is not None:
        raise UsageError("credentials do not belong in a URL: put them in a netrc file "
                         "($NETRC or ~/.netrc) or use --token-file")
    if parts.query or parts.fragment:
        raise UsageError("a DICOMweb URL is the service root, without ?query or #fragment")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"bad port in {text}") from None
    if not parts.hostname:
        raise UsageError(f"no host in {text}")
    scheme = parts.scheme.lower()
    port = port or (443 if scheme == "https" else 80)
    netloc = parts.netloc
    base = f"{scheme}://{netloc}{parts.path.rstrip('/')}"
    return Endpoint("dicomweb", parts.hostname, port, base_url=base)


def _parse_dimse(rest: str, tls: bool) -> Endpoint:
    usage = "a DIMSE URL is dimse://AET@host:port"
    aet, at, address = rest.rpartition("@")
    if not at or not aet:
        raise UsageError(f"{usage} (the peer's AE title is missing)")
    check_ae_title(aet, "the peer's AE title")
    address = address.rstrip("/")
    host, colon, port_text = address.rpartition(":")
    if not colon or not port_text.isdigit() or not host:
        raise UsageError(f"{usage} (host and port are needed)")
    port = int(port_text)
    if not 0 < port < 65536:
        raise UsageError(f"{usage} (port out of range)")
    return Endpoint("dimse", host.strip("[]"), port, aet=aet, tls=tls)
