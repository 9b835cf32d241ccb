"""HTTP credentials and TLS settings, never from the command line.

Basic credentials come per host from a netrc file (``$NETRC``, else ``~/.netrc``, as curl
and requests read it), a bearer token from ``--token-file``. Either file must be readable
by its owner only. TLS certificates are verified, against ``--ca-file`` when given.
"""

from __future__ import annotations

import netrc
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from anonymizer.errors import UsageError
from anonymizer.reasons import os_error_phrase


@dataclass(frozen=True)
class HttpSettings:
    """What an HTTP session of one host needs: its authorization header and TLS trust."""

    #: ``Authorization`` header value, or None
    authorization: str | None = None
    #: True (system CAs), or a CA bundle file
    verify: bool | str = True

    def __repr__(self) -> str:  # never print the secret, e.g. in a traceback
        return f"HttpSettings(authorization={'set' if self.authorization else None}, " \
               f"verify={self.verify!r})"


def _private_file(path: Path, what: str) -> None:
    """Refuse a secrets file that other users can read or write."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise UsageError(f"{path}: {what}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"{path}: {what}: not a regular file")
    if mode & 0o077:
        raise UsageError(f"{path}: {what} is readable or writable by group or others: "
                         f"chmod 600 it")


def netrc_path() -> Path:
    """Where the netrc file is: ``$NETRC``, else ``~/.netrc``."""
    return Path(os.environ.get("NETRC") or Path.home() / ".netrc")


def netrc_basic(host: str) -> tuple[str, str] | None:
    """The login and password netrc gives for ``host`` (or its ``default``), if any."""
    path = netrc_path()
    if not path.exists():
        return None
    _private_file(path, "netrc file")
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        # a parse error quotes the token it stopped at, which may be part of a password
        reason = (f"cannot parse line {exc.lineno}" if isinstance(exc, netrc.NetrcParseError)
                  else os_error_phrase(exc))
        raise UsageError(f"{path}: netrc file: {reason}") from None
    if entry is None:
        return None
    login, _, password = entry
    return login, password or ""


def read_token(path: Path) -> str:
    """The bearer token in ``path`` (one line; owner-only file)."""
    _private_file(path, "token file")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: token file: "
                         f"{getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    if not token or any(c.isspace() for c in token):
        raise UsageError(f"{path}: token file must hold one token on one line")
    return token


def http_settings(host: str, token_file: Path | None = None,
                  ca_file: Path | None = None) -> HttpSettings:
    """The authorization and TLS trust for one DICOMweb host.

    A token file wins over netrc; with neither, requests go without credentials.
    """
    import base64

    verify: bool | str = True
    if ca_file is not None:
        if not ca_file.is_file():
            raise UsageError(f"{ca_file}: --ca-file: no such file")
        verify = str(ca_file.resolve())
    if token_file is not None:
        return HttpSettings(f"Bearer {read_token(token_file)}", verify)
    basic = netrc_basic(host)
    if basic is None:
        return HttpSettings(None, verify)
    pair = f"{basic[0]}:{basic[1]}".encode()
    return HttpSettings(f"Basic {base64.b64encode(pair).decode('ascii')}", verify)
