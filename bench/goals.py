"""The speed and memory goals, each judged from the rows one bench run measured.

The ratios against pydicom are taken round by round: ``--repeat K`` runs every command once
per round, and each round runs pydicom's copy at N processes just before the N-job rows and
again just after them, while the machine's speed drifts by 10-25% within half an hour (and
by 30% between two rounds of one run). Each round gives pydicom's seconds (the geometric
mean of its two runs: :func:`bracketed`) over ours (above 1: faster than the plain copy);
the goal is judged on the median of those. A goal whose rows were not measured
(``--skip-huge``, ``--scale 0``) is reported as not measured, never as met.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Throughput of ``anonymizer run`` at N jobs over pydicom's read+write at N processes.
THROUGHPUT_VS_PYDICOM = {"research": 1.0, "basic": 1.15}
#: CPU ms per file the main process spends outside the workers (sync, commit, audit, ...).
OUTSIDE_MS_PER_FILE = 0.25
#: wall time at 1 job over wall time at N jobs, paired by round (2 cores: at most 2).
SCALING = 1.75
#: peak RSS of the one process de-identifying the 1 GiB multi-frame file.
MULTI_FRAME_RSS_MIB = 256
#: inputs per second a rerun with nothing left to do gets through (the quick check by stat).
RERUN_FILES_PER_S = 20000
#: bytes the audit log takes per file of a first run.
AUDIT_BYTES_PER_FILE = 512
#: the main process's peak RSS on the largest scale run; and flat: at most this much more
#: than on a quarter of the files
PARENT_RSS_MIB = 256
PARENT_GROWTH = 1.25


#: row kinds of pydicom's copy: run before the rows compared with it, and again after them
NOOP, NOOP_AGAIN = "pydicom-noop", "pydicom-noop-again"
#: pydicom's copy hashing every input and output as the audit log does: no goal's reference,
#: it tells the cost of the two digests apart from the rest
NOOP_SHA256 = "pydicom-noop-sha256"


@dataclass
class Bracketed:
    """A reference measured just before and just after the commands compared with it, in
    each round: a round's seconds are the geometric mean of its two runs, so a machine
    speeding up or slowing down steadily over the round weighs on both sides alike."""

    repeats: list[dict[str, float]]


def bracketed(before: Any, after: Any) -> Any:
    """``before`` and ``after`` (rows of one command, their samples in round order) as one
    :class:`Bracketed` reference; ``before`` alone when there is no ``after``."""
    if before is None or after is None:
        return before
    return Bracketed([{"seconds": math.sqrt(first["seconds"] * second["seconds"])}
                      for first, second in zip(before.repeats, after.repeats, strict=False)])


def passed(rows: list[Any]) -> list[Any]:
    """The rows whose command passed its check: only they are compared (a command that
    failed fast would look fast)."""
    return [row for row in rows if row.check.startswith("ok")]


def reference(rows: list[Any], procs: int) -> Any:
    """The reference of the N-process rows among ``rows``: pydicom's copy at ``procs``
    processes, bracketed by its second run when there is one; None without the first."""
    def row(kind: str) -> Any:
        return next((r for r in rows if r.kind == kind and r.procs == procs), None)

    return bracketed(row(NOOP), row(NOOP_AGAIN))


@dataclass
class Goal:
    """One goal and what this run measured of it."""

    goal: str
    measured: str
    #: None: not measured in this run
    met: bool | None


def paired_ratios(slower: Any, faster: Any) -> list[float]:
    """``slower``'s seconds over ``faster``'s, round by round (samples are in round order)."""
    return [round(first["seconds"] / second["seconds"], 3)
            for first, second in zip(slower.repeats, faster.repeats, strict=False)
            if second["seconds"] > 0]


def paired_median(slower: Any, faster: Any) -> tuple[float, str] | None:
    """The median of :func:`paired_ratios` and how it reads (``0.873 (rounds: 0.770,
    0.873, 0.968)``); None when either row is missing or has no round."""
    ratios = paired_ratios(slower, faster) if slower is not None and faster is not None else []
    if not ratios:
        return None
    median = statistics.median(ratios)
    return median, f"{median:.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)})"


def _paired_goal(name: str, slower: Any, faster: Any, least: float) -> Goal:
    """The goal that ``slower``'s seconds over ``faster``'s reach ``least`` (the median of
    the rounds); not measured when either row is missing."""
    paired = paired_median(slower, faster)
    if paired is None:
        return Goal(name, "not measured", None)
    median, measured = paired
    return Goal(name, measured, median >= least)


def _row_goal(name: str, row: Any, measured: Callable[[Any], str],
              met: Callable[[Any], bool]) -> Goal:
    """The goal one row tells: ``measured(row)`` and ``met(row)``; not measured without it."""
    return Goal(name, "not measured", None) if row is None else Goal(name, measured(row), met(row))


def judge(rows: list[Any], huge_rows: list[Any], scale_rows: list[Any], jobs: int) -> list[Goal]:
    """Every goal, judged from the rows of one run (``bench.run.Row``) that passed their
    checks: a command that failed fast would look fast."""
    from bench.run import outside_ms  # bench.run imports this module

    rows, huge_rows, scale_rows = (passed(group) for group in (rows, huge_rows, scale_rows))
    goals: list[Goal] = []
    by_name = {row.name: row for row in rows}
    pydicom = reference(rows, jobs)
    for profile, least in THROUGHPUT_VS_PYDICOM.items():
        row = by_name.get(f"anonymizer {profile} -j{jobs}")
        name = f"{profile} -j{jobs} throughput / pydicom x{jobs}, per round, median >= {least:.2f}"
        goals.append(_paired_goal(name, pydicom, row, least))
    for profile in THROUGHPUT_VS_PYDICOM:
        row = by_name.get(f"anonymizer {profile} -j{jobs}")
        goals.append(_row_goal(
            f"{profile} -j{jobs} CPU outside the workers <= {OUTSIDE_MS_PER_FILE} ms/file",
            row if row is not None and row.timings else None,
            lambda r: f"{outside_ms(r.timings):.3f} ms",
            lambda r: outside_ms(r.timings) <= OUTSIDE_MS_PER_FILE))
    for profile in THROUGHPUT_VS_PYDICOM:
        one, many = by_name.get(f"anonymizer {profile} -j1"), \
            by_name.get(f"anonymizer {profile} -j{jobs}")
        name = f"{profile} -j1 -> -j{jobs} speed-up, per round, median >= {SCALING}"
        goals.append(_paired_goal(name, one, many if jobs > 1 else None, SCALING))
    goals.append(_row_goal(
        f"multi-frame file, research: peak RSS < {MULTI_FRAME_RSS_MIB} MiB",
        next((row for row in huge_rows if row.name == "anonymizer research -j1"), None),
        lambda r: f"{r.peak_rss_mib:.0f} MiB", lambda r: r.peak_rss_mib < MULTI_FRAME_RSS_MIB))
    largest = max((row.files for row in scale_rows if row.kind == "scale-resume"), default=0)
    goals.append(_row_goal(
        f"rerun with nothing to do >= {RERUN_FILES_PER_S:,} files/s",
        next((row for row in scale_rows if row.kind == "scale-resume"
              and row.files == largest and "--rehash" not in row.command), None),
        lambda r: f"{r.files_per_s:,.0f} files/s at {r.files:,}",
        lambda r: r.files_per_s >= RERUN_FILES_PER_S))
    first = next((row for row in scale_rows if row.kind == "scale" and row.files == largest
                  and row.audit_bytes_per_file is not None), None)
    goals.append(_row_goal(
        f"audit log <= {AUDIT_BYTES_PER_FILE} B per file", first,
        lambda r: f"{r.audit_bytes_per_file:.0f} B",
        lambda r: r.audit_bytes_per_file <= AUDIT_BYTES_PER_FILE))
    quarter = next((row for row in scale_rows if row.kind == "scale" and row.files < largest
                    and row.parent_rss_mib), None)
    goals.append(_row_goal(
        f"main process peak RSS <= {PARENT_RSS_MIB} MiB, and flat (<= {PARENT_GROWTH}x that "
        "at a quarter of the files)",
        first if first is not None and first.parent_rss_mib and quarter is not None else None,
        lambda r: f"{r.parent_rss_mib:.0f} MiB at {r.files:,}, "
                  f"{quarter.parent_rss_mib:.0f} MiB at {quarter.files:,}",
        lambda r: r.parent_rss_mib <= min(PARENT_RSS_MIB,
                                          PARENT_GROWTH * quarter.parent_rss_mib)))
    return goals


def hashing_reference(rows: list[Any], jobs: int) -> str:
    """research's and basic's throughput at N jobs over the copy that hashes like them
    (:data:`NOOP_SHA256`), paired by round as the goals are; "" when it was not measured."""
    rows = passed(rows)
    hashed = next((r for r in rows if r.kind == NOOP_SHA256 and r.procs == jobs), None)
    lines = []
    for profile in THROUGHPUT_VS_PYDICOM:
        row = next((r for r in rows if r.name == f"anonymizer {profile} -j{jobs}"), None)
        paired = paired_median(hashed, row)
        if paired is not None:
            lines.append(f"{profile} -j{jobs} throughput / pydicom+sha256 x{jobs}, per round, "
                         f"median  {paired[1]}")
    return "\n".join(lines)


def table(goals: list[Goal]) -> str:
    """The goals as printed lines."""
    verdict = {True: "met", False: "NOT MET", None: "-"}
    width = max(len(goal.goal) for goal in goals)
    return "\n".join(f"{goal.goal:<{width}}  {verdict[goal.met]:<7}  {goal.measured}"
                     for goal in goals)
