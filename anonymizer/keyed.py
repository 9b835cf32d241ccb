"""Keyed transforms: one HMAC-SHA-256 source for UIDs, pseudonyms and date offsets.

Everything that must be consistent across files, processes and runs (without a
database) and must not be recomputable without the secret comes from here.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from anonymizer.errors import SecretKeyError
from anonymizer.memo import BoundedMemo

KEY_ENV_VAR = "ANONYMIZER_KEY"
MIN_KEY_BYTES = 16
_STANDARD_UID_ROOT = "1.2.840.10008."
#: Domains whose values repeat from file to file (a patient's name, ID and subject key):
#: their digests are kept for the process's next file. Per-file values (input paths,
#: stats) are not, or they would only fill the memo.
_REPEATED_DOMAINS = frozenset({"pseudonym", "date-shift", "collision"})
#: Entries of each memo (UIDs, repeated digests; :class:`~anonymizer.memo.BoundedMemo`).
_MEMO_ENTRIES = 1 << 16


class KeyedSource:
    """Deterministic keyed values derived from a secret key.

    Parameters
    ----------
    key : bytes
        The secret (at least 16 bytes). It never leaves this object: the
        audit log only gets :attr:`fingerprint`, a MAC of a constant.
    """

    __slots__ = ("_key", "_uid_cache", "_digests")

    def __init__(self, key: bytes):
        if len(key) < MIN_KEY_BYTES:
            raise SecretKeyError(f"secret key too short: {len(key)} bytes, need {MIN_KEY_BYTES}")
        self._key = key
        self._uid_cache: BoundedMemo[str, str] = BoundedMemo(_MEMO_ENTRIES)
        self._digests: BoundedMemo[tuple[str, str | bytes], bytes] = BoundedMemo(_MEMO_ENTRIES)

    def __repr__(self) -> str:  # never show the key
        return f"KeyedSource(fingerprint={self.fingerprint})"

    def __reduce__(self):  # pragma: no cover - guard
        raise TypeError("KeyedSource is not picklable: workers load the key themselves")

    def digest(self, domain: str, value: str | bytes) -> bytes:
        """HMAC-SHA-256 of ``value`` in a named domain (so uses never collide)."""
        memo = domain in _REPEATED_DOMAINS
        if memo and (known := self._digests.get((domain, value))) is not None:
            return known
        data = value.encode("utf-8") if isinstance(value, str) else value
        digest = hmac.digest(self._key, domain.encode() + b"\x00" + data, "sha256")
        return self._digests.remember((domain, value), digest) if memo else digest

    def hexdigest(self, domain: str, value: str | bytes, length: int = 32) -> str:
        """Hex form of :meth:`digest`, truncated to ``length`` characters."""
        return self.digest(domain, value).hex()[:length]

    @property
    def fingerprint(self) -> str:
        """Identifies the key (to detect a key change on resume) without revealing it."""
        return self.hexdigest("key-fingerprint", b"", 16)

    def uid(self, original: str) -> str:
        """Map a UID to ``2.25.<128-bit integer>``; standard (1.2.840.10008.) UIDs are kept.

        The same original and key always give the same UID, so references between
        files still resolve after remapping.
        """
        original = original.strip("\x00 ")
        if not original or original.startswith(_STANDARD_UID_ROOT):
            return original
        cached = self._uid_cache.get(original)
        if cached is None:
            number = int.from_bytes(self.digest("uid", original)[:16], "big")
            cached = self._uid_cache.remember(original, f"2.25.{number}")
        return cached


def load_key(key_file: str | os.PathLike[str] | None) -> KeyedSource:
    """Load the secret from ``key_file`` or the ``ANONYMIZER_KEY`` environment variable.

    Raises
    ------
    SecretKeyError
        With one line naming the source when there is no usable key.
    """
    if key_file is not None:
        path = Path(key_file)
        try:
            material = path.read_bytes().strip()
        except OSError as exc:
            raise SecretKeyError(f"{path}: cannot read key file: {exc.strerror}") from None
        if len(material) < MIN_KEY_BYTES:
            raise SecretKeyError(f"{path}: key file holds {len(material)} bytes, need >= 16")
        return KeyedSource(material)
    env = os.environ.get(KEY_ENV_VAR)
    if env:
        if len(env.encode()) < MIN_KEY_BYTES:
            raise SecretKeyError(f"{KEY_ENV_VAR}: key too short, need >= {MIN_KEY_BYTES} bytes")
        return KeyedSource(env.encode())
    raise SecretKeyError(
        f"no secret key: pass --key-file FILE or set {KEY_ENV_VAR} "
        "(create one with `anonymizer keygen FILE`)"
    )


def generate_key_file(path: str | os.PathLike[str]) -> Path:
    """Write a new random 256-bit key (hex) readable by the owner only; refuse to overwrite."""
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return target
