"""Geometry of the study-date chart: one row per patient, a dot per study on a shared
time axis, the days between consecutive studies written on the line that joins them.

Only numbers are computed here; the page's template draws them as inline SVG.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

LEFT = 190  # room for a patient's pseudonym
PLOT_WIDTH = 640
RIGHT = 30
TOP = 34  # room for the axis labels
ROW = 24
#: Below this width (pixels) a segment's day count is not written on it.
_LABEL_MIN_WIDTH = 34


@dataclass(frozen=True)
class Point:
    x: float
    date: str


@dataclass(frozen=True)
class Segment:
    x1: float
    x2: float
    days: int

    @property
    def labelled(self) -> bool:
        return self.x2 - self.x1 >= _LABEL_MIN_WIDTH

    @property
    def middle(self) -> float:
        return (self.x1 + self.x2) / 2


@dataclass(frozen=True)
class Row:
    patient: str
    y: float
    points: tuple[Point, ...]
    segments: tuple[Segment, ...]
    undated: int  # studies of this patient without a study date


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass
class Chart:
    """What the template draws; ``rows`` is empty when no study has a date."""

    width: int
    height: int
    rows: list[Row] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    first: dt.date | None = None
    last: dt.date | None = None
    undated_patients: int = 0
    undated_studies: int = 0
    longest_interval: int | None = None


def build_chart(study_dates: Mapping[str, Mapping[str, dt.date | None]]) -> Chart:
    """The chart of ``study_dates`` (patient -> study -> date or None)."""
    dated = [d for dates in study_dates.values() for d in dates.values() if d is not None]
    undated = sum(1 for dates in study_dates.values() for d in dates.values() if d is None)
    chart = Chart(width=LEFT + PLOT_WIDTH + RIGHT, height=TOP, undated_studies=undated)
    if not dated:
        chart.undated_patients = len(study_dates)
        return chart
    first, last = min(dated), max(dated)
    chart.first, chart.last = first, last
    span = max((last - first).days, 1)

    def x_of(day: dt.date) -> float:
        if first == last:
            return LEFT + PLOT_WIDTH / 2
        return round(LEFT + (day - first).days / span * PLOT_WIDTH, 1)

    longest = None
    for patient in sorted(study_dates):
        dates = study_dates[patient]
        days = sorted({d for d in dates.values() if d is not None})
        missing = sum(1 for d in dates.values() if d is None)
        if not days:
            chart.undated_patients += 1
            continue
        y = TOP + len(chart.rows) * ROW + ROW / 2
        points = tuple(Point(x_of(d), d.isoformat()) for d in days)
        segments = tuple(Segment(x_of(a), x_of(b), (b - a).days)
                         for a, b in zip(days, days[1:], strict=False))
        for segment in segments:
            longest = segment.days if longest is None else max(longest, segment.days)
        chart.rows.append(Row(patient, y, points, segments, missing))
    chart.longest_interval = longest
    chart.height = TOP + len(chart.rows) * ROW + 8
    chart.ticks = _ticks(first, last, x_of)
    return chart


def _ticks(first: dt.date, last: dt.date, x_of) -> list[Tick]:
    """Year starts inside the range (at most about ten), else the two ends."""
    years = list(range(first.year + (first > dt.date(first.year, 1, 1)), last.year + 1))
    step = max(1, len(years) // 10 + (len(years) % 10 > 0))
    ticks = [Tick(x_of(dt.date(year, 1, 1)), str(year)) for year in years[::step]]
    if len(ticks) < 2:
        ticks = [Tick(x_of(first), first.isoformat())]
        if last != first:
            ticks.append(Tick(x_of(last), last.isoformat()))
    return ticks
