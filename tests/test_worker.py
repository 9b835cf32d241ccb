"""anonymizer.pipeline.worker: a batch in a worker process, each file within its time limit."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA

from anonymizer.pipeline.layout import DEFAULT_LAYOUT
from anonymizer.pipeline.worker import (
    FileTimeout,
    TimeLimit,
    WorkerConfig,
    WorkItem,
    process_batch,
)


def test_each_item_gets_its_own_time_limit_and_the_handler_is_put_back() -> None:
    before = signal.getsignal(signal.SIGALRM)
    with TimeLimit(0.25) as limit:
        assert signal.getsignal(signal.SIGALRM) is not before
        with pytest.raises(FileTimeout, match=r"took longer than 0\.25 s"):
            limit.call(time.sleep, 2)
        # two items of 0.15 s, 0.3 s together: each has a fresh 0.25 s (0.1 s to spare)
        assert [limit.call(lambda: time.sleep(0.15) or "done") for _ in range(2)] == \
            ["done", "done"]
        time.sleep(0.3)  # disarmed when the item ended in time: nothing fires
        with pytest.raises(ValueError):  # an item's own error disarms it too
            limit.call(int, "x")
        time.sleep(0.3)
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_no_limit_installs_nothing() -> None:
    before = signal.getsignal(signal.SIGALRM)
    with TimeLimit(0) as limit:
        assert limit.call(signal.getitimer, signal.ITIMER_REAL) == (0.0, 0.0)
        assert signal.getsignal(signal.SIGALRM) is before


@pytest.mark.parametrize("timeout", [1e-6, 600.0])
def test_a_file_over_the_time_limit_fails_and_leaves_no_output(
        tmp_path: Path, key_file: Path, timeout: float) -> None:
    inputs = sorted(p.relative_to(SAMPLE_DATA).as_posix() for p in SAMPLE_DATA.rglob("*.dcm"))
    out = tmp_path / "out"
    config = WorkerConfig(profile="basic", key_file=str(key_file), input_dir=str(SAMPLE_DATA),
                          output_dir=str(out), layout=DEFAULT_LAYOUT, timeout=timeout)
    outcomes = process_batch(config, [WorkItem(name) for name in inputs[:3]])
    assert [o.relative for o in outcomes] == inputs[:3]
    if timeout < 1:
        assert {(o.status, o.reason) for o in outcomes} == {
            ("failed", "timeout: took longer than 1e-06 s")}
        assert not [p for p in out.rglob("*") if p.is_file()]  # no partial temporary
    else:
        assert {o.status for o in outcomes} == {"written"}
        assert all(Path(o.temporary).is_file() for o in outcomes)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
