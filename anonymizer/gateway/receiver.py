"""The gateway's receiving side: a C-STORE SCP (pynetdicom) that spools every instance.

Nothing is decoded here: pynetdicom writes each arriving dataset straight to a file in the
spool's ``incoming`` folder as its PDUs come in (``STORE_RECV_CHUNKED_DATASET``), so an
association holds one PDU in memory whatever the instance's size; the handler fsyncs the
file, gives it its spool name and only then answers Success. Associations are served
concurrently, each in its own thread; de-identification happens in worker processes
(:mod:`anonymizer.gateway.forward`), never here.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from anonymizer.errors import MissingExtraError, UsageError
from anonymizer.gateway.spool import Spool
from anonymizer.keyed import KeyedSource
from anonymizer.pipeline.worker import instance_token
from anonymizer.reasons import os_error_phrase

#: C-STORE statuses (PS3.4 Table B.2-1)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
#: seconds without data after which pynetdicom aborts an association (a partial
#: instance older than twice this belongs to a dead association)
NETWORK_TIMEOUT = 60.0


def require_pynetdicom() -> None:
    """One line naming the extra when pynetdicom is not installed.

    Raises
    ------
    MissingExtraError
        The ``net`` extra is missing.
    """
    try:
        import pynetdicom  # noqa: F401
    except ImportError:
        raise MissingExtraError("net", "anonymizer listen") from None


@dataclass(frozen=True)
class ReceiverConfig:
    """The SCP's network settings."""

    ae_title: str
    port: int  # 0: any free port (the one chosen is in Receiver.address)
    bind: str = "0.0.0.0"
    #: calling AE titles accepted (empty: any)
    allow_ae: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: CA bundle: with it, senders must present a certificate it signed
    tls_ca: Path | None = None
    max_associations: int = 16


def tls_context(config: ReceiverConfig) -> ssl.SSLContext | None:
    """The server's TLS context, or None without ``--tls-cert``.

    Raises
    ------
    UsageError
        A certificate, key or CA file that cannot be loaded (one line).
    """
    if config.tls_cert is None and config.tls_key is None:
        if config.tls_ca is not None:
            raise UsageError("--tls-ca needs --tls-cert and --tls-key")
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise UsageError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
        if config.tls_ca is not None:
            context.load_verify_locations(config.tls_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
            getattr(exc, "reason", None) or type(exc).__name__
        raise UsageError(f"TLS: cannot load the certificate, key or CA file: {reason}") from None
    return context


def _quiet_pynetdicom() -> None:
    """pynetdicom logs requests and exceptions that may quote identifiers: off."""
    logger = logging.getLogger("pynetdicom")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    logger.setLevel(logging.CRITICAL)


class Receiver:
    """A C-STORE SCP that writes every instance into ``spool`` before acknowledging it.

    Parameters
    ----------
    config : ReceiverConfig
        AE title, address, allowed callers, TLS.
    spool : Spool
        Where received instances go (opened).
    keyed : KeyedSource
        Names instances by a keyed hash of their SOP Instance UID.
    """

    def __init__(self, config: ReceiverConfig, spool: Spool, keyed: KeyedSource):
        self.config = config
        self.spool = spool
        self.keyed = keyed
        self.received = 0
        self.refused = 0  # answered Out of Resources (spool not writable, stopping)
        self._state = threading.Condition()
        self._active = 0
        self._stopping = False
        self._ae = None
        self.address: tuple[str, int] = (config.bind, config.port)

    def start(self) -> None:
        """Listen (returns at once; associations are served in background threads).

        Raises
        ------
        UsageError
            The address cannot be bound (in use, not ours, no permission).
        """
        from pynetdicom import (
            AE,
            ALL_TRANSFER_SYNTAXES,
            AllStoragePresentationContexts,
            _config,
            evt,
        )
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        _quiet_pynetdicom()
        context = tls_context(self.config)
        _config.STORE_RECV_CHUNKED_DATASET = True
        # pynetdicom writes arriving datasets to a NamedTemporaryFile in the default
        # temporary folder: the spool's, so a half-received instance (PHI) never lands
        # in /tmp and the finished one is hard-linked into the spool, not copied.
        tempfile.tempdir = str(self.spool.incoming)
        ae = AE(ae_title=self.config.ae_title)
        for presentation in AllStoragePresentationContexts:
            ae.add_supported_context(presentation.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.require_calling_aet = list(self.config.allow_ae)
        ae.maximum_associations = self.config.max_associations
        ae.network_timeout = NETWORK_TIMEOUT
        try:
            server = ae.start_server((self.config.bind, self.config.port), block=False,
                                     ssl_context=context,
                                     evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        except OSError as exc:
            raise UsageError(f"cannot listen on {self.config.bind}:{self.config.port}: "
                             f"{os_error_phrase(exc)}") from None
        self._ae = ae
        self.address = server.server_address[:2]

    def _on_store(self, event) -> int:
        """One C-STORE request, its dataset already in a file: spool it, then answer."""
        with self._state:
            if self._stopping:
                self.refused += 1
                return OUT_OF_RESOURCES  # the sender keeps it and sends it again later
            self._active += 1
        try:
            token = instance_token(self.keyed, str(event.request.AffectedSOPInstanceUID or ""))
            self.spool.accept(Path(event.dataset_path), token)
        except OSError:  # spool full or not writable: not stored, so not acknowledged
            with self._state:
                self.refused += 1
            return OUT_OF_RESOURCES
        finally:
            with self._state:
                self._active -= 1
                self._state.notify_all()
        with self._state:
            self.received += 1
        return SUCCESS

    def stop(self) -> None:
        """Stop listening; let the requests being spooled finish, then end the
        associations (an instance still arriving was not acknowledged: its sender sends
        it again)."""
        with self._state:
            self._stopping = True
            while self._active:
                self._state.wait()
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None
