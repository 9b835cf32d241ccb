"""anonymizer/memo.py: a memo stays within its limit and forgets everything when full."""

from __future__ import annotations

from anonymizer.memo import BoundedMemo


def test_a_full_memo_is_emptied_before_the_next_entry() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(3)
    assert [memo.remember(key, n) for n, key in enumerate("abc")] == [0, 1, 2]
    assert dict(memo) == {"a": 0, "b": 1, "c": 2}
    assert memo.remember("d", 3) == 3
    assert dict(memo) == {"d": 3}
    memo.remember("d", 4)  # a key already kept is replaced, not counted twice
    assert dict(memo) == {"d": 4} and memo.get("a") is None and "d" in memo
