"""Retries with exponential backoff for transient failures, and a quick give-up once a peer
has been found down (so a stopped archive fails each remaining instance at once instead of
making every one wait through the full backoff)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from anonymizer.net.errors import TransientError

T = TypeVar("T")


@dataclass
class Retry:
    """Call an operation up to ``attempts`` times, sleeping ``first_delay * 2**n`` between.

    After an operation failed on every attempt the peer counts as down: the next calls get
    one attempt each until one succeeds.
    """

    attempts: int = 4
    first_delay: float = 0.25
    max_delay: float = 8.0
    down: bool = False

    def __call__(self, operation: Callable[[], T]) -> T:
        attempts = 1 if self.down else self.attempts
        for attempt in range(attempts):
            try:
                result = operation()
            except TransientError:
                if attempt + 1 == attempts:
                    self.down = True
                    raise
                time.sleep(min(self.first_delay * 2 ** attempt, self.max_delay))
            else:
                self.down = False
                return result
        raise AssertionError("unreachable")
