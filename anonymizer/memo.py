"""Memos a long-running process keeps of what repeats from file to file.

A worker de-identifies millions of files in a nightly run: whatever it remembers of one
file for the next (UIDs, a patient's keyed digests, the folders it wrote into, the
encoded tag lists of a series) must not grow with the run. A :class:`BoundedMemo` is
emptied when it is full: what repeats is soon back in it, and memory stays flat.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(dict[K, V]):
    """A dict of at most ``limit`` entries, read like any dict (``get``, ``in``), filled
    through :meth:`remember`.

    Parameters
    ----------
    limit : int
        Entries kept at most; the memo is emptied before one more would be added.
    """

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def remember(self, key: K, value: V) -> V:
        """Keep ``value`` under ``key`` (emptying the memo first if it is full); returns it."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
