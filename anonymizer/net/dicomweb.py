"""DICOMweb over requests: QIDO-RS to list, WADO-RS to fetch, STOW-RS to store.

Instances are streamed: a WADO-RS answer is parsed as it arrives and its one part written
straight to the target file, a STOW-RS request body is read from the file in chunks. No
instance is ever held whole in memory, whatever its size.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from anonymizer.net.credentials import HttpSettings
from anonymizer.net.errors import PermanentError, RefusedError, TransientError
from anonymizer.net.retry import Retry
from anonymizer.net.sources import Instance

#: HTTP answers worth trying again.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: (connect, read) seconds
TIMEOUT = (10.0, 120.0)
CHUNK = 1 << 20
PAGE = 500
#: the whole stored file, whatever its transfer syntax: no transcoding by the server
_ACCEPT_INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def _requests():
    try:
        import requests
    except ImportError:
        from anonymizer.errors import MissingExtraError

        raise MissingExtraError("net", "a DICOMweb source or destination") from None
    return requests


def _tag_value(record: dict[str, Any], tag: str) -> str | None:
    """The first value of ``tag`` (8 hex digits) in a DICOM JSON record."""
    element = record.get(tag) or record.get(tag.lower())
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    if not values:
        return None
    return str(values[0])


class DicomWebClient:
    """One DICOMweb service root, with retries; ``what`` names it in messages.

    Parameters
    ----------
    base_url : str
        The http(s) root (``https://pacs/dicom-web``).
    settings : HttpSettings
        Authorization header and TLS trust.
    what : str
        ``"source"`` or ``"destination"``: how messages name this peer.
    """

    def __init__(self, base_url: str, settings: HttpSettings, what: str,
                 retry: Retry | None = None):
        requests = _requests()
        self.base_url = base_url
        self.what = what
        self.retry = retry or Retry()
        self.session = requests.Session()
        self.session.verify = settings.verify
        if settings.authorization:
            self.session.headers["Authorization"] = settings.authorization
        else:
            self.session.trust_env = False  # no netrc lookup behind our back
        self.session.headers["User-Agent"] = "anonymizer"

    def close(self) -> None:
        self.session.close()

    # -- one request -----------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any):
        """One HTTP request, errors mapped to ours (no retry here)."""
        requests = _requests()
        try:
            # verify given with each request: requests lets $REQUESTS_CA_BUNDLE override a
            # session's CA file, and --ca-file must win
            answer = self.session.request(method, f"{self.base_url}/{path}",
                                          timeout=TIMEOUT, verify=self.session.verify, **kwargs)
        except requests.exceptions.SSLError:
            raise RefusedError(f"DICOMweb {self.what}: TLS certificate not trusted "
                               "(--ca-file for a private CA)") from None
        except _peer_gone(requests) as exc:
            raise TransientError(f"DICOMweb {self.what}: {_connection_reason(exc)}") from None
        if answer.status_code in (401, 403):
            answer.close()
            raise RefusedError(f"DICOMweb {self.what} refused our credentials "
                               f"(HTTP {answer.status_code}; netrc or --token-file)")
        if answer.status_code in _TRANSIENT_STATUS:
            answer.close()
            raise TransientError(f"DICOMweb {self.what}: HTTP {answer.status_code}")
        return answer

    def _permanent(self, answer, action: str) -> PermanentError:
        answer.close()
        return PermanentError(f"DICOMweb {self.what}: {action}: HTTP {answer.status_code}")

    # -- QIDO-RS ------------------------------------------------------------------------

    def probe(self) -> None:
        """One small query, so that wrong credentials or an unreachable server show
        before anything else is done (a server without QIDO answers 4xx: that is fine)."""
        answer = self.retry(lambda: self._request("GET", "studies",
                                                  params={"limit": "1"}))
        answer.close()

    def search(self, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Every record a QIDO-RS query answers, page by page."""
        offset = 0
        seen: set[str] = set()
        while True:
            query = _query_string({**params, "limit": str(PAGE), "offset": str(offset)})
            answer = self.retry(lambda query=query: self._request(
                "GET", path, params=query, headers={"Accept": "application/dicom+json"}))
            if answer.status_code == 204:
                return
            if answer.status_code != 200:  # an error with an empty body too: never "no match"
                raise self._permanent(answer, "query")
            if not answer.content:
                return
            try:
                records = answer.json()
            except ValueError:
                raise PermanentError(f"DICOMweb {self.what}: query answer is not "
                                     "DICOM JSON") from None
            fresh = 0
            for record in records:
                key = json.dumps(record, sort_keys=True)
                if key not in seen:  # a server ignoring offset sends page 1 again
                    seen.add(key)
                    fresh += 1
                    yield record
            if len(records) < PAGE or not fresh:
                return
            offset += len(records)

    def find_studies(self, keys: dict[str, str]) -> Iterator[str]:
        for record in self.search("studies", {**keys, "includefield": "0020000D"}):
            uid = _tag_value(record, "0020000D")
            if uid:
                yield uid

    def find_series(self, study: str, keys: dict[str, str]) -> Iterator[str]:
        for record in self.search(f"studies/{quote(study)}/series",
                                  {**keys, "includefield": "0020000E"}):
            uid = _tag_value(record, "0020000E")
            if uid:
                yield uid

    def find_instances(self, study: str, series: str) -> Iterator[Instance]:
        path = f"studies/{quote(study)}/series/{quote(series)}/instances"
        for record in self.search(path, {"includefield": "00080016"}):
            sop = _tag_value(record, "00080018")
            if sop:
                yield Instance(study, series, sop, _tag_value(record, "00080016") or "")

    # -- WADO-RS ------------------------------------------------------------------------

    def fetch(self, instance: Instance, target: Path) -> None:
        """Retrieve one instance, as stored, into ``target`` (retried when transient)."""
        self.retry(lambda: self._fetch_once(instance, target))

    def _fetch_once(self, instance: Instance, target: Path) -> None:
        requests = _requests()
        path = (f"studies/{quote(instance.study)}/series/{quote(instance.series)}"
                f"/instances/{quote(instance.sop)}")
        answer = self._request("GET", path, headers={"Accept": _ACCEPT_INSTANCE}, stream=True)
        try:
            if answer.status_code != 200:
                raise self._permanent(answer, "retrieve")
            chunks = answer.iter_content(CHUNK)
            with open(target, "wb") as handle:
                content_type = answer.headers.get("Content-Type", "")
                if content_type.lower().startswith("application/dicom"):
                    for chunk in chunks:
                        handle.write(chunk)
                else:
                    write_single_part(content_type, chunks, handle, self.what)
            with open(target, "rb") as handle:  # application/dicom is a Part 10 file
                handle.seek(128)
                if handle.read(4) != b"DICM":
                    raise PermanentError(f"DICOMweb {self.what}: retrieve: the answer is not "
                                         "a DICOM file")
        except _peer_gone(requests) as exc:
            target.unlink(missing_ok=True)
            raise TransientError(f"DICOMweb {self.what}: retrieve: "
                                 f"{_connection_reason(exc)}") from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        finally:
            answer.close()

    # -- STOW-RS ------------------------------------------------------------------------

    def store(self, path: Path) -> None:
        """Store one Part 10 file (retried when transient)."""
        self.retry(lambda: self._store_once(path))

    def _store_once(self, path: Path) -> None:
        boundary = secrets.token_hex(16)
        with _MultipartFile(path, boundary) as body:
            answer = self._request(
                "POST", "studies", data=body,
                headers={"Content-Type": f'multipart/related; type="application/dicom"; '
                                         f'boundary={boundary}',
                         "Content-Length": str(len(body)),
                         "Accept": "application/dicom+json"})
        try:
            failed = _stow_failed(answer)
            if answer.status_code not in (200, 202) or failed:
                reason = f"HTTP {answer.status_code}"
                if failed:
                    reason += f", failure reason {failed}"
                raise PermanentError(f"DICOMweb {self.what} refused the instance ({reason})")
        finally:
            answer.close()


def _query_string(params: dict[str, str]) -> str:
    """A QIDO-RS query string with the matching characters left as they are: some servers
    (Orthanc 1.10) match ``%2A`` literally instead of as the ``*`` wildcard."""
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='*?^,-._~:')}"
                    for key, value in params.items())


def _stow_failed(answer) -> str | None:
    """The Failure Reason code of a STOW-RS answer's Failed SOP Sequence, if it has one."""
    try:
        record = answer.json()
    except ValueError:
        return None
    if isinstance(record, list):
        record = record[0] if record else {}
    failed = record.get("00081198", {}).get("Value") if isinstance(record, dict) else None
    if not failed:
        return None
    code = _tag_value(failed[0], "00081197") if isinstance(failed[0], dict) else None
    try:
        return f"0x{int(code or ''):04X}"
    except ValueError:
        return "unknown"


def _peer_gone(requests: Any) -> tuple[type[Exception], ...]:
    """What requests raises when the peer went away or did not answer in time: before the
    answer, or (``ChunkedEncodingError``) in the middle of it, as a server stopped while
    answering leaves it. Transient: the request is tried again later."""
    return (requests.ConnectionError, requests.Timeout,
            requests.exceptions.ChunkedEncodingError)


def _connection_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    for needle, reason in (("refused", "connection refused"), ("reset", "connection reset"),
                           ("timed out", "timed out"), ("timeout", "timed out"),
                           ("name or service", "host name not found"),
                           ("incompleteread", "answer cut short"),
                           ("connection broken", "answer cut short"),
                           ("prematurely", "answer cut short")):
        if needle in text:
            return reason
    return "connection failed"


class _MultipartFile:
    """A one-part ``multipart/related`` body read from a file: header, file, trailer.

    requests sends a file-like body with a known length in chunks, never whole.
    """

    def __init__(self, path: Path, boundary: str):
        self._head = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n"
                      ).encode("ascii")
        self._tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        self._file: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by __exit__
        self._size = path.stat().st_size
        self._parts = [self._head, None, self._tail]
        self._index = 0
        self._offset = 0

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while self._index < 3 and (size < 0 or len(out) < size):
            want = -1 if size < 0 else size - len(out)
            part = self._parts[self._index]
            if part is None:
                chunk = self._file.read(want if want >= 0 else -1)
                if not chunk:
                    self._index += 1
                    continue
                out += chunk
            else:
                end = len(part) if want < 0 else min(len(part), self._offset + want)
                out += part[self._offset:end]
                self._offset = end
                if self._offset == len(part):
                    self._index, self._offset = self._index + 1, 0
        return bytes(out)

    def __enter__(self) -> _MultipartFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def _boundary(content_type: str) -> bytes | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"').encode("ascii", "replace")
    return None


#: the most a part's header may take before its body starts
_MAX_HEAD = 64 * 1024


def write_single_part(content_type: str, chunks: Iterator[bytes], handle: IO[bytes],
                      what: str) -> None:
    """Write the body of the one part of a ``multipart/related`` stream to ``handle``.

    The stream is read chunk by chunk; only a boundary's length is held back between
    chunks. An answer with more than one part, or cut short, is an error.
    """
    boundary = _boundary(content_type)
    if not boundary:
        raise PermanentError(f"DICOMweb {what}: retrieve: answer is not multipart")
    opening, delimiter = b"--" + boundary, b"\r\n--" + boundary
    buffer = bytearray()
    chunks = iter(chunks)
    # the opening boundary and the part's headers
    while True:
        start = buffer.find(opening)
        if start >= 0:
            body = buffer.find(b"\r\n\r\n", start)
            if body >= 0:
                del buffer[:body + 4]
                break
        if len(buffer) > _MAX_HEAD:
            raise PermanentError(f"DICOMweb {what}: retrieve: malformed multipart answer")
        chunk = next(chunks, None)
        if chunk is None:
            raise TransientError(f"DICOMweb {what}: retrieve: answer cut short")
        buffer += chunk
    keep = len(delimiter) + 1
    while True:
        end = buffer.find(delimiter)
        if end >= 0:
            handle.write(buffer[:end])
            rest = bytes(buffer[end + len(delimiter):])
            while len(rest) < 2:  # the closing "--", or "\r\n" before another part
                chunk = next(chunks, None)
                if chunk is None:
                    break
                rest += chunk
            if not rest.startswith(b"--"):
                raise PermanentError(f"DICOMweb {what}: retrieve: more than one instance "
                                     "in the answer")
            return
        if len(buffer) > keep:
            handle.write(buffer[:-keep])
            del buffer[:-keep]
        chunk = next(chunks, None)
        if chunk is None:
            raise TransientError(f"DICOMweb {what}: retrieve: answer cut short")
        buffer += chunk
