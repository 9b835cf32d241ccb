"""Network destinations: store one finished (de-identified) Part 10 file at a time.

The batch runner calls :meth:`Destination.store` with each committed output; the gateway
(``anonymizer listen``) can call it the same way with each spooled file. A store that
fails after its retries raises :class:`~anonymizer.net.errors.PermanentError` or
:class:`~anonymizer.net.errors.TransientError` (the instance failed; others may not), or
:class:`~anonymizer.net.errors.RefusedError` (credentials: nothing else will work).

A destination keeps one connection (HTTP session or association) open between stores and is
not thread-safe: a caller storing from several threads opens one destination per thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from anonymizer.net.options import NetOptions
from anonymizer.net.urls import parse_endpoint


class Destination(Protocol):
    """Somewhere finished instances go, one file at a time."""

    def probe(self) -> None:
        """Reach the peer once: wrong credentials or a rejection raise RefusedError."""

    def store(self, path: Path) -> None:
        """Store one Part 10 file (retried with backoff when the failure is transient)."""

    def close(self) -> None: ...


def open_destination(url: str, options: NetOptions) -> Destination:
    """The destination a ``dicomweb+http(s)://`` or ``dimse://`` URL names (not probed)."""
    endpoint = parse_endpoint(url)
    if endpoint.kind == "dimse":
        from anonymizer.net.dimse import DimseDestination

        return DimseDestination(endpoint, options.ae_title, ca_file=options.ca_file)
    from anonymizer.net.credentials import http_settings
    from anonymizer.net.dicomweb import DicomWebClient

    settings = http_settings(endpoint.host, options.token_file, options.ca_file)
    return DicomWebClient(endpoint.base_url, settings, "destination")
