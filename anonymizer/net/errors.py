"""What can go wrong talking to a peer, by what the caller should do about it.

Messages are ours and one line: never a server's own text (it may echo values), never a
query, a UID or a path.
"""

from __future__ import annotations

from anonymizer.errors import AnonymizerError


class NetworkError(AnonymizerError):
    """A peer could not do what was asked."""


class TransientError(NetworkError):
    """Worth trying again: connection refused or reset, a timeout, HTTP 5xx, 408 or 429."""


class PermanentError(NetworkError):
    """This instance cannot be fetched or stored (e.g. HTTP 404 or 409, a failure status
    of a C-STORE); other instances may still be."""


class RefusedError(NetworkError):
    """The peer refuses us (credentials, AE title, TLS certificate): nothing else will work
    either, so the run stops."""
