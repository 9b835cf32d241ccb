"""The network options of ``anonymizer run`` (what to pull, who we are, credentials)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_AE_TITLE = "ANONYMIZER"


@dataclass(frozen=True)
class NetOptions:
    """``--query``, ``--studies``, ``--ae-title``, ``--move-port``, ``--token-file``,
    ``--ca-file``. The queries are PHI: never logged."""

    queries: tuple[str, ...] = ()
    studies_file: Path | None = None
    ae_title: str = DEFAULT_AE_TITLE
    move_port: int | None = None
    token_file: Path | None = None
    ca_file: Path | None = None

    def __repr__(self) -> str:  # the queries may hold names and IDs
        return f"NetOptions(ae_title={self.ae_title!r}, move_port={self.move_port!r})"
