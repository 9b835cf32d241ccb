"""DIMSE over pynetdicom: C-FIND to list, C-GET (or C-MOVE to our own storage SCP) to
fetch, C-STORE to store.

Associations are kept open and reused while they last; a dropped one is set up again on
the next call. Instances are received whole into memory by pynetdicom (one at a time per
association) and written straight to their file; C-STORE sends from the file in chunks.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anonymizer.errors import MissingExtraError
from anonymizer.net.errors import PermanentError, RefusedError, TransientError
from anonymizer.net.retry import Retry
from anonymizer.net.sources import Instance
from anonymizer.net.urls import Endpoint
from anonymizer.reasons import exception_class, os_error_phrase

#: Transfer syntaxes offered for each SOP Class we receive (one presentation context each,
#: so that the peer can send an instance as it stores it, without transcoding).
RECEIVE_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)
#: A presentation context ID is odd and at most 255: 128 contexts per association.
MAX_CONTEXTS = 128
#: Status codes of success with a warning (PS3.4 B.2.3, C.4.3.1.4).
_WARNINGS = frozenset({0xB000, 0xB006, 0xB007})
#: seconds
ACSE_TIMEOUT, DIMSE_TIMEOUT, NETWORK_TIMEOUT = 30, 120, 120


def _pynetdicom():
    try:
        import pynetdicom
    except ImportError:
        raise MissingExtraError("net", "a DIMSE source or destination") from None
    # pynetdicom logs identifiers of requests (PHI) at debug level and peers' problems at
    # error level; our one-line reasons say what matters.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    pynetdicom._config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom._config.LOG_RESPONSE_IDENTIFIERS = False
    # C-STORE sends from the file in chunks, as encoded, never decoding it
    pynetdicom._config.STORE_SEND_CHUNKED_DATASET = True
    return pynetdicom


def _status_code(status: Any) -> int | None:
    return int(status.Status) if status is not None and "Status" in status else None


def tls_context(endpoint: Endpoint, ca_file: Path | None) -> ssl.SSLContext | None:
    """The client TLS context of a ``dimse+tls://`` peer: its certificate and host name
    verified, against ``ca_file`` or the system's CAs."""
    if not endpoint.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        from anonymizer.errors import UsageError

        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not PEM"
        raise UsageError(f"{ca_file}: --ca-file: {reason}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _Peer:
    """One remote AE, our calling AE title, and one reusable association to it."""

    def __init__(self, endpoint: Endpoint, ae_title: str, what: str, retry: Retry | None,
                 ca_file: Path | None = None):
        self.pynetdicom = _pynetdicom()
        self.tls = tls_context(endpoint, ca_file)
        self.endpoint = endpoint
        self.ae_title = ae_title
        self.what = what
        self.retry = retry or Retry()
        self.assoc: Any = None
        self._contexts: tuple = ()
        #: an operation has succeeded: from then on an aborted one is a network fault
        self.worked = False

    def name(self) -> str:
        return f"DIMSE {self.what} {self.endpoint.aet}"

    def associate(self, contexts: list[Any], ext_neg: list[Any] | None = None,
                  handlers: list[Any] | None = None) -> Any:
        """The open association with these contexts, set up anew if needed."""
        key = tuple((c.abstract_syntax, tuple(c.transfer_syntax)) for c in contexts)
        if self.assoc is not None and self.assoc.is_established and key == self._contexts:
            return self.assoc
        self.release()
        ae = self.pynetdicom.AE(ae_title=self.ae_title)
        ae.acse_timeout, ae.dimse_timeout = ACSE_TIMEOUT, DIMSE_TIMEOUT
        ae.network_timeout = NETWORK_TIMEOUT
        ae.requested_contexts = contexts
        handlers = [*(handlers or []), (self.pynetdicom.evt.EVT_CONN_OPEN, _no_delay)]
        tls_args = (self.tls, self.endpoint.host) if self.tls is not None else None
        assoc = ae.associate(self.endpoint.host, self.endpoint.port, ae_title=self.endpoint.aet,
                             ext_neg=ext_neg, evt_handlers=handlers, tls_args=tls_args)
        if not assoc.is_established and not assoc.is_rejected and self.tls is not None:
            self._check_tls()  # pynetdicom logs a failed handshake and says no more
        if assoc.is_established:
            _answers_for_the_caller(assoc)
        if assoc.is_rejected:
            raise RefusedError(f"{self.name()} rejected the association (is our AE title "
                               f"{self.ae_title} known to it?)")
        if not assoc.is_established:
            raise TransientError(f"{self.name()}: cannot connect")
        self.assoc, self._contexts = assoc, key
        return assoc

    def _check_tls(self) -> None:
        """Shake hands once more, ourselves: a certificate we do not trust is a refusal."""
        assert self.tls is not None
        try:
            with socket.create_connection((self.endpoint.host, self.endpoint.port),
                                          timeout=ACSE_TIMEOUT) as raw, \
                    self.tls.wrap_socket(raw, server_hostname=self.endpoint.host):
                pass
        except ssl.SSLCertVerificationError:
            raise RefusedError(f"{self.name()}: TLS certificate not trusted (--ca-file for a "
                               "private CA)") from None
        except (OSError, ssl.SSLError):
            pass  # not a certificate matter: the caller reports a failed connection

    def no_answer(self, action: str) -> Exception:
        """The association ended without an answer: a refusal if nothing worked yet."""
        self.release()
        if not self.worked:
            return RefusedError(f"{self.name()} aborted our {action} (is our AE title "
                                f"{self.ae_title} allowed to {action} there?)")
        return TransientError(f"{self.name()}: {action}: no answer (association aborted "
                              "or timed out)")

    def release(self) -> None:
        if self.assoc is not None:
            with contextlib.suppress(Exception):
                if self.assoc.is_established:
                    self.assoc.release()
            self.assoc = None


def _answers_for_the_caller(assoc: Any) -> None:
    """Keep the association's own thread from taking answers meant for a ``send_c_*`` call.

    pynetdicom's association thread serves incoming requests by polling the message queue;
    its pause before each ``send_c_*`` has a window in which it can still take the first
    answer, which it then drops as unexpected: a C-FIND would lose a match (seen here about
    once in 50 runs against Orthanc). Here that thread takes requests only (the C-STORE
    sub-operations of a C-GET); answers stay queued for the call waiting for them.
    """
    dimse = assoc.dimse
    messages = dimse.msg_queue
    take = dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        if block:  # a send_c_* call waiting for its answer
            return take(block)
        with messages.mutex:  # the association thread: requests only
            if not messages.queue:
                return None, None
            _, message = messages.queue[0]
            if message is None or not getattr(message, "is_valid_request", False):
                return None, None
            item = messages.queue.popleft()
            messages.not_full.notify()
            return item

    dimse.get_msg = get_msg


def _no_delay(event: Any) -> None:
    """Send small PDUs at once: pynetdicom writes a command and its dataset separately,
    and Nagle's algorithm would hold the second until the peer's delayed ACK (about 40 ms
    a message)."""
    with contextlib.suppress(AttributeError, OSError):
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _context(abstract: str, syntaxes: tuple[str, ...] | list[str]) -> Any:
    from pynetdicom.presentation import build_context

    return build_context(abstract, list(syntaxes))


class DimseSource:
    """A PACS that answers C-FIND and C-GET (or C-MOVE with ``move_port``)."""

    def __init__(self, endpoint: Endpoint, ae_title: str, move_port: int | None = None,
                 retry: Retry | None = None, ca_file: Path | None = None):
        if move_port is not None and endpoint.tls:
            from anonymizer.errors import UsageError

            raise UsageError("--move-port: a storage SCP of ours over TLS is not supported; "
                             "use C-GET (the default) with dimse+tls://")
        self.peer = _Peer(endpoint, ae_title, "source", retry, ca_file)
        self.retry = self.peer.retry
        #: a second association for C-GET/C-MOVE, so that listing and fetching, which
        #: take turns, do not set up a new association at every turn
        self.fetcher = _Peer(endpoint, ae_title, "source", self.retry, ca_file)
        self.move_port = move_port
        self._receiver: _MoveReceiver | None = None
        self._get_receiver = _Receiver()
        #: SOP Classes the C-GET association offers to receive, most recent last
        self._classes: OrderedDict[str, None] = OrderedDict()

    # -- C-FIND ---------------------------------------------------------------------------

    def probe(self) -> None:
        """One C-FIND that matches nothing, so that an unknown host, a rejection or an AE
        title the peer does not serve shows at the start."""
        for _ in self._find("STUDY", {"StudyInstanceUID": _NO_STUDY}, ()):
            pass
        if self.move_port is not None:
            self._receiver = _MoveReceiver(self.fetcher, self.move_port)

    def _find(self, level: str, keys: dict[str, str], returns: tuple[str, ...]
              ) -> Iterator[Any]:
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as Find

        query = Dataset()
        query.QueryRetrieveLevel = level
        for keyword in returns:
            setattr(query, keyword, "")
        for keyword, value in keys.items():
            setattr(query, keyword, value)

        def once() -> list[Any]:
            assoc = self.peer.associate([_context(Find, RECEIVE_SYNTAXES[:2])])
            found = []
            for status, identifier in assoc.send_c_find(query, Find):
                code = _status_code(status)
                if code is None:
                    raise self.peer.no_answer("C-FIND")
                if code in (0xFF00, 0xFF01):
                    if identifier is None:  # a match pynetdicom could not decode
                        self.peer.release()
                        raise TransientError(f"{self.peer.name()}: C-FIND: an answer could "
                                             "not be decoded")
                    found.append(identifier)
                elif code == 0x0000:
                    self.peer.worked = True
                    return found
                elif code in (0xA700,) or 0xA700 <= code <= 0xA7FF:
                    raise TransientError(f"{self.peer.name()}: C-FIND: out of resources")
                else:
                    raise PermanentError(f"{self.peer.name()}: C-FIND failed "
                                         f"(status 0x{code:04X})")
            raise self.peer.no_answer("C-FIND")

        # one level of one study at a time: the answers are UIDs, small
        yield from self.retry(once)

    def find_studies(self, keys: dict[str, str]) -> Iterator[str]:
        for identifier in self._find("STUDY", keys, ("StudyInstanceUID",)):
            yield str(identifier.get("StudyInstanceUID", ""))

    def find_series(self, study: str, keys: dict[str, str]) -> Iterator[str]:
        keys = {**keys, "StudyInstanceUID": study}
        for identifier in self._find("SERIES", keys, ("SeriesInstanceUID",)):
            yield str(identifier.get("SeriesInstanceUID", ""))

    def find_instances(self, study: str, series: str) -> Iterator[Instance]:
        keys = {"StudyInstanceUID": study, "SeriesInstanceUID": series}
        for identifier in self._find("IMAGE", keys, ("SOPInstanceUID", "SOPClassUID")):
            yield Instance(study, series, str(identifier.get("SOPInstanceUID", "")),
                           str(identifier.get("SOPClassUID", "")))

    # -- C-GET / C-MOVE -------------------------------------------------------------------

    def fetch(self, instance: Instance, target: Path) -> None:
        if self.move_port is not None:
            assert self._receiver is not None, "probe() starts the C-MOVE receiver"
            self.retry(lambda: self._receiver.move(instance, target))  # type: ignore[union-attr]
        else:
            self.retry(lambda: self._get_once(instance, target))

    def _get_contexts(self, sop_class: str) -> tuple[list[Any], list[Any]]:
        """Contexts and role selections to receive ``sop_class`` (and recent others)."""
        from pynetdicom.presentation import build_role
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as Get

        self._classes[sop_class] = None
        self._classes.move_to_end(sop_class)
        per_class = len(RECEIVE_SYNTAXES)
        while 1 + per_class * len(self._classes) > MAX_CONTEXTS:
            self._classes.popitem(last=False)
        contexts = [_context(Get, RECEIVE_SYNTAXES[:2])]
        roles = []
        for uid in self._classes:
            contexts += [_context(uid, [syntax]) for syntax in RECEIVE_SYNTAXES]
            roles.append(build_role(uid, scp_role=True))
        return contexts, roles

    def _get_once(self, instance: Instance, target: Path) -> None:
        from pynetdicom import evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as Get

        sop_class = instance.sop_class or _CT_IMAGE
        contexts, roles = self._get_contexts(sop_class)
        receiver = self._get_receiver
        assoc = self.fetcher.associate(contexts, roles, [(evt.EVT_C_STORE, receiver.handle)])
        receiver.expect(instance.sop, target)
        try:
            final = None
            for status, _ in assoc.send_c_get(_identifier(instance), Get):
                code = _status_code(status)
                if code is None:
                    raise self.fetcher.no_answer("C-GET")
                if code != 0xFF00:
                    final = code
            if final is None:
                raise self.fetcher.no_answer("C-GET")
            self.fetcher.worked = True
            receiver.check(final, self.fetcher.name(), "C-GET")
        finally:
            receiver.expect(None, None)

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.close()
        self.fetcher.release()
        self.peer.release()


#: a Study Instance UID no study has (a UUID-derived UID of zero): the probe's C-FIND key
_NO_STUDY = "2.25.0"
#: what the contexts offer for an instance whose SOP Class the listing did not say
_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _identifier(instance: Instance) -> Any:
    from pydicom.dataset import Dataset

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = instance.study
    identifier.SeriesInstanceUID = instance.series
    identifier.SOPInstanceUID = instance.sop
    return identifier


class _Receiver:
    """Writes the one instance a C-GET or C-MOVE is expected to bring to its file."""

    def __init__(self, calling_aet: str | None = None):
        self._lock = threading.Lock()
        self._sop: str | None = None
        self._target: Path | None = None
        self.received = False
        self.failed: str | None = None
        self.calling_aet = calling_aet

    def expect(self, sop: str | None, target: Path | None) -> None:
        with self._lock:
            self._sop, self._target = sop, target
            self.received, self.failed = False, None

    def handle(self, event: Any) -> int:
        with self._lock:
            if self.calling_aet is not None and \
                    event.assoc.requestor.ae_title.strip() != self.calling_aet:
                return 0x0124  # refused: not authorised
            request = event.request
            if self._target is None or request.AffectedSOPInstanceUID != self._sop:
                return 0xA900  # not the instance asked for
            try:
                with open(self._target, "wb") as handle:
                    handle.write(event.encoded_dataset(include_meta=True))
            except OSError as exc:
                self._target.unlink(missing_ok=True)
                self.failed = f"cannot write the spool file: {os_error_phrase(exc)}"
                return 0xA700
            self.received = True
            return 0x0000

    def check(self, final: int, name: str, action: str) -> None:
        """After the last answer of a C-GET/C-MOVE: was the instance received?"""
        with self._lock:
            received, failed = self.received, self.failed
        if failed:
            raise PermanentError(f"{name}: {action}: {failed}")
        if received and (final == 0x0000 or final in _WARNINGS):
            return
        if 0xA700 <= final <= 0xA7FF:
            raise TransientError(f"{name}: {action}: out of resources "
                                 f"(status 0x{final:04X})")
        if final == 0x0000 or final in _WARNINGS:
            raise PermanentError(f"{name}: {action}: the instance was not sent "
                                 f"(status 0x{final:04X})")
        raise PermanentError(f"{name}: {action} failed (status 0x{final:04X})")


class _MoveReceiver:
    """Our storage SCP for C-MOVE: the PACS sends the instance we asked for to us."""

    def __init__(self, peer: _Peer, port: int):
        from pynetdicom import evt

        pynetdicom = peer.pynetdicom
        self.peer = peer
        self.receiver = _Receiver(calling_aet=peer.endpoint.aet)
        ae = pynetdicom.AE(ae_title=peer.ae_title)
        ae.acse_timeout, ae.dimse_timeout = ACSE_TIMEOUT, DIMSE_TIMEOUT
        ae.network_timeout = NETWORK_TIMEOUT
        for context in pynetdicom.AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, RECEIVE_SYNTAXES)
        try:
            self.server = ae.start_server(("", port), block=False,
                                          evt_handlers=[(evt.EVT_C_STORE,
                                                         self.receiver.handle),
                                                        (evt.EVT_CONN_OPEN, _no_delay)])
        except OSError as exc:
            from anonymizer.errors import UsageError

            raise UsageError(f"--move-port {port}: {exc.strerror}") from None

    def move(self, instance: Instance, target: Path) -> None:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as Move

        self.receiver.expect(instance.sop, target)
        try:
            assoc = self.peer.associate([_context(Move, RECEIVE_SYNTAXES[:2])])
            final = None
            for status, _ in assoc.send_c_move(_identifier(instance), self.peer.ae_title, Move):
                code = _status_code(status)
                if code is None:
                    raise self.peer.no_answer("C-MOVE")
                if code != 0xFF00:
                    final = code
            if final is None:
                raise self.peer.no_answer("C-MOVE")
            if final == 0xA801:
                raise RefusedError(f"{self.peer.name()} does not know our AE title "
                                   f"{self.peer.ae_title} as a C-MOVE destination")
            self.peer.worked = True
            self.receiver.check(final, self.peer.name(), "C-MOVE")
        finally:
            self.receiver.expect(None, None)

    def close(self) -> None:
        self.server.shutdown()


class DimseDestination:
    """An archive that takes C-STORE: each file sent as it is encoded, in chunks."""

    def __init__(self, endpoint: Endpoint, ae_title: str, retry: Retry | None = None,
                 ca_file: Path | None = None):
        self.peer = _Peer(endpoint, ae_title, "destination", retry, ca_file)
        self.retry = self.peer.retry
        #: (SOP Class, transfer syntax) pairs the association offers, most recent last
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()

    def probe(self) -> None:
        """A C-ECHO: an unknown host or a rejection shows before any instance."""
        from pynetdicom.sop_class import Verification

        def once() -> None:
            assoc = self.peer.associate([_context(Verification, RECEIVE_SYNTAXES[:2])])
            status = assoc.send_c_echo()
            if _status_code(status) is None:
                raise self.peer.no_answer("C-ECHO")
            self.peer.release()

        self.retry(once)

    def _contexts(self, pair: tuple[str, str]) -> list[Any]:
        self._pairs[pair] = None
        self._pairs.move_to_end(pair)
        while len(self._pairs) > MAX_CONTEXTS:
            self._pairs.popitem(last=False)
        return [_context(sop_class, [syntax]) for sop_class, syntax in self._pairs]

    def store(self, path: Path) -> None:
        from pydicom.filereader import read_file_meta_info

        try:
            meta = read_file_meta_info(path)
            pair = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        except Exception as exc:  # noqa: BLE001 - our own output: should not happen
            raise PermanentError(f"DIMSE destination: cannot read the file meta "
                                 f"({exception_class(exc)})") from None
        self.retry(lambda: self._store_once(path, pair))

    def _store_once(self, path: Path, pair: tuple[str, str]) -> None:
        assoc = self.peer.associate(self._contexts(pair))
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
        if pair not in accepted:
            raise PermanentError(f"{self.peer.name()} does not accept this SOP Class in this "
                                 "transfer syntax")
        try:
            status = assoc.send_c_store(path)
        except (OSError, ValueError, AttributeError) as exc:
            self.peer.release()
            raise TransientError(f"{self.peer.name()}: C-STORE: "
                                 f"{exception_class(exc)}") from None
        code = _status_code(status)
        if code is None:
            raise self.peer.no_answer("C-STORE")
        self.peer.worked = True
        if code == 0x0000 or code in _WARNINGS:
            return
        if 0xA700 <= code <= 0xA7FF:
            raise TransientError(f"{self.peer.name()}: C-STORE: out of resources "
                                 f"(status 0x{code:04X})")
        raise PermanentError(f"{self.peer.name()} refused the instance (status 0x{code:04X})")

    def close(self) -> None:
        self.peer.release()
