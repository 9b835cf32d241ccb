"""Assemble the review page from the audit log, the release scan and verify's findings,
render it with Jinja2 and write it atomically.

Where the page may be written: anywhere the user says (``--html FILE``), OUT included,
since it holds nothing OUT and its audit log do not already hold; but an existing file
is replaced only when it is a page this command wrote (never the audit log, a DICOM
file or anything else). Findings that carry values (verify's ``--show-values``) make
the page PHI: it must then lie outside OUT and is written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from anonymizer import __version__, scrub
from anonymizer.errors import MissingExtraError, UsageError
from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.pipeline.runner import inside
from anonymizer.review.audit_summary import AuditSummary
from anonymizer.review.chart import build_chart
from anonymizer.review.release import (
    AttributeStats,
    ReleaseStats,
    ValueCount,
    by_creator,
    iter_public,
    scan_release,
)
from anonymizer.review.thumbnails import EXTRA, require_imaging

AUDIT_NAME = "audit.jsonl"
#: In the head of every page this command writes: what may be overwritten.
GENERATOR = "anonymizer review"
_GENERATOR_META = f'<meta name="generator" content="{GENERATOR}">'
#: Values of an attribute shown before the rest of its top values are folded.
FOLD_AFTER = 10
MAX_FINDINGS_SHOWN = 1000
#: Where ``anonymizer verify`` looks (the ``where`` of a finding), in the page's order.
FINDING_PLACES = ("element", "private", "file meta", "path", "raw bytes", "pixels")
#: VR groups of the public attributes, in the page's order.
VR_GROUPS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("text", "Names and free text", frozenset({"PN", "LO", "LT", "SH", "ST", "UC", "UT",
                                                 "UR", "AE"})),
    ("codes", "Coded values and ages", frozenset({"CS", "AS"})),
    ("dates", "Dates and times", frozenset({"DA", "DT", "TM"})),
    ("numbers", "Numbers written as text", frozenset({"IS", "DS"})),
    ("uids", "UIDs", frozenset({"UI"})),
)
#: Free-text VRs: an attribute of these with a value that looks like an identifier is
#: shown unfolded.
_FREE_TEXT = VR_GROUPS[0][2]


class FindingLike(Protocol):
    """What the page needs of a finding of ``anonymizer verify``."""

    output: str
    where: str
    tag_path: str
    kind: str
    value: str | None


@dataclass(frozen=True)
class ReviewFinding:
    """A residual identifier found by ``anonymizer verify`` (its findings have these fields).

    ``output`` is the output file relative to OUT; ``where`` one of
    :data:`FINDING_PLACES`; ``kind`` says what was found without saying it
    (``"PatientName surname"``); ``value`` is None unless the user asked for values.
    """

    output: str
    where: str
    tag_path: str
    kind: str
    value: str | None = None


@dataclass(frozen=True)
class ReviewOptions:
    """What ``anonymizer review`` was asked for."""

    out_dir: Path
    html_path: Path
    audit_path: Path | None = None  # None: OUT/audit.jsonl when it exists
    thumbnails: int = 3
    top: int = 20


@dataclass(frozen=True)
class ReviewResult:
    """What was written: for the command's summary line and exit code."""

    path: Path
    files: int
    findings: int | None  # None: verify was not run
    unreadable: int
    elapsed: float


def write_review(options: ReviewOptions,
                 findings: Iterable[FindingLike] | None = None) -> ReviewResult:
    """Scan the release, render the page and write it to ``options.html_path``.

    Parameters
    ----------
    options : ReviewOptions
        OUT, the page's path, the audit log, thumbnails per series, values per attribute.
    findings : iterable of FindingLike, optional
        ``anonymizer verify``'s findings (None: verify was not run; the page says so).

    Raises
    ------
    UsageError
        For a missing OUT, a page path the command refuses, an unreadable audit log.
    MissingExtraError
        When the ``review`` extra is not installed.
    """
    started = time.monotonic()
    environment = _environment()
    require_imaging()
    out_dir, html_path = options.out_dir, options.html_path
    if options.thumbnails < 0 or options.top < 1:
        raise UsageError("--thumbnails must be >= 0 and --top >= 1")
    if not out_dir.is_dir():
        raise UsageError(f"{out_dir}: output folder does not exist")
    audit_path = options.audit_path or out_dir / AUDIT_NAME
    _check_page_path(html_path, audit_path)
    audit = AuditSummary.load(audit_path, required=options.audit_path is not None)
    stats = ReleaseStats(top=options.top, thumbnails_per_series=options.thumbnails)
    exclude = frozenset({html_path.resolve(), audit_path.resolve()})
    scan_release(out_dir, stats, exclude, audit.flagged,
                 audit.outputs if audit.found else None)
    verified = _Findings.collect(findings) if findings is not None else None
    holds_values = verified is not None and verified.with_values > 0
    if holds_values and inside(html_path.resolve(), out_dir.resolve()):
        raise UsageError(f"{html_path}: the page shows identifier values (PHI): write it "
                         "outside OUT")
    context = _context(options, audit, stats, verified, holds_values)
    html = environment.get_template("review.html.j2").render(**context)
    _write_atomically(html_path, html.encode("utf-8"), 0o600 if holds_values else 0o644)
    return ReviewResult(html_path, stats.files, verified.total if verified else None,
                        stats.unreadable_count, time.monotonic() - started)


def _environment() -> Any:
    try:
        import jinja2
    except ImportError:
        raise MissingExtraError(EXTRA, "the review page") from None
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("anonymizer.review", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    environment.filters["by_count"] = sorted_counts
    environment.filters["size"] = _size
    return environment


def _check_page_path(html_path: Path, audit_path: Path) -> None:
    """Refuse to write the page over the audit log or over any file it did not write."""
    if html_path.resolve() == audit_path.resolve():
        raise UsageError(f"{html_path}: is the audit log; refusing to overwrite it")
    if html_path.is_dir():
        raise UsageError(f"{html_path}: is a folder; give the page's file name")
    if html_path.exists():
        try:
            with open(html_path, "rb") as handle:
                head = handle.read(2048)
        except OSError as exc:
            raise UsageError(f"{html_path}: {exc.strerror}") from None
        if _GENERATOR_META.encode() not in head:
            raise UsageError(f"{html_path}: exists and is not a review page; refusing to "
                             "overwrite it")


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary name beside ``path``, fsync, then rename over it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{TEMP_PREFIX}{path.name}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)  # also when an earlier temporary had another mode
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        Path(path.with_name(f"{TEMP_PREFIX}{path.name}")).unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write the page: {exc.strerror}") from None


# ----------------------------------------------------------------------------------
# What the template shows
# ----------------------------------------------------------------------------------

@dataclass
class _Findings:
    total: int = 0
    with_values: int = 0
    shown: list[FindingLike] = field(default_factory=list)
    by_place: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    outputs: set[str] = field(default_factory=set)

    @classmethod
    def collect(cls, findings: Iterable[FindingLike]) -> _Findings:
        collected = cls()
        for finding in findings:
            collected.total += 1
            collected.with_values += finding.value is not None
            collected.by_place[finding.where] += 1
            collected.by_kind[finding.kind] += 1
            collected.outputs.add(finding.output)
            if len(collected.shown) < MAX_FINDINGS_SHOWN:
                collected.shown.append(finding)
        return collected

    @property
    def places(self) -> list[tuple[str, int]]:
        known = [(place, self.by_place[place]) for place in FINDING_PLACES]
        other = [(p, n) for p, n in sorted(self.by_place.items()) if p not in FINDING_PLACES]
        return known + other


@dataclass(frozen=True)
class _ValueView:
    segments: tuple[tuple[str, str | None], ...]  # (text, what it looks like or None)
    count: int
    files: int
    looks_like: str
    empty: bool


@dataclass(frozen=True)
class _AttributeView:
    anchor: str
    label: str
    path: str
    vr: str
    files: int
    total: int
    distinct: int | None
    pruned_max: int
    preview: str
    shown: tuple[_ValueView, ...]
    folded: tuple[_ValueView, ...]
    rest: int
    marked: int
    open: bool


_GENERIC_IDENTIFIERS = scrub.Identifiers()  # no header: only the shapes any text can have


def _value_view(value: ValueCount) -> _ValueView:
    findings = _GENERIC_IDENTIFIERS.find(value.value)
    segments: list[tuple[str, str | None]] = []
    position = 0
    for finding in findings:
        if finding.start > position:
            segments.append((value.value[position:finding.start], None))
        segments.append((value.value[finding.start:finding.end], finding.label))
        position = finding.end
    if position < len(value.value):
        segments.append((value.value[position:], None))
    labels = ", ".join(dict.fromkeys(f.label for f in findings))
    return _ValueView(tuple(segments), value.count, value.files, labels, value.value == "")


def _attribute_view(attribute: AttributeStats, top: int, anchor: str) -> _AttributeView:
    values = [_value_view(v) for v in attribute.values.top(top)]
    marked = sum(1 for v in values if v.looks_like)
    listed = sum(v.count for v in values)
    return _AttributeView(
        anchor=anchor, label=attribute.label, path=attribute.path, vr=attribute.vr,
        preview=_preview(values),
        files=attribute.files, total=attribute.values.total,
        distinct=attribute.values.distinct, pruned_max=attribute.values.pruned_max,
        shown=tuple(values[:FOLD_AFTER]), folded=tuple(values[FOLD_AFTER:]),
        rest=attribute.values.total - listed, marked=marked,
        open=marked > 0 and attribute.vr in _FREE_TEXT)


#: The summary line of an attribute shows its first values, each cut to this length.
_PREVIEW_VALUES, _PREVIEW_CHARS = 3, 40


def _preview(values: list[_ValueView]) -> str:
    """The most frequent values, short, for the folded attribute's one line."""
    parts = []
    for value in values[:_PREVIEW_VALUES]:
        text = " ".join("".join(segment for segment, _ in value.segments).split()) \
            or "(empty)"  # on one line: newlines and runs of spaces become one space
        parts.append(text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "…")
    more = ", …" if len(values) > _PREVIEW_VALUES else ""
    return ", ".join(parts) + more


def _public_groups(stats: ReleaseStats, top: int) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    attributes = list(iter_public(stats))
    number = 0
    for anchor, title, vrs in VR_GROUPS:
        views = []
        for attribute in attributes:
            if attribute.vr in vrs:
                views.append(_attribute_view(attribute, top, f"attr-{number}"))
                number += 1
        groups.append({"anchor": f"public-{anchor}", "title": title, "attributes": views,
                       "marked": sum(v.marked for v in views)})
    return groups


def _private_groups(stats: ReleaseStats, top: int) -> list[dict[str, Any]]:
    groups = []
    for index, (creator, attributes) in enumerate(by_creator(stats).items()):
        views = [_attribute_view(a, top, f"attr-private-{index}-{n}")
                 for n, a in enumerate(attributes)]
        groups.append({"anchor": f"private-{index}", "creator": creator, "attributes": views,
                       "files": max((a.files for a in attributes), default=0),
                       "marked": sum(v.marked for v in views)})
    return groups


def _date_shift(audit: AuditSummary, stats: ReleaseStats) -> dict[str, Any]:
    """What the page can say about the date shift: the profiles' configured range when a
    run's profile is a built-in one whose fingerprint matches, and the output's own
    Longitudinal Temporal Information Modified."""
    from anonymizer.profiles import builtin_profile_names, load_profile

    profiles = []
    seen: set[tuple[str, str]] = set()
    builtins = set(builtin_profile_names())
    for run in audit.runs:
        name = str(run.start.get("profile", ""))
        fingerprint = str(run.start.get("profile_sha256", ""))
        if (name, fingerprint) in seen:
            continue
        seen.add((name, fingerprint))
        entry: dict[str, Any] = {"name": name, "known": False}
        if name in builtins:
            profile = load_profile(name)
            if profile.fingerprint() == fingerprint:
                settings = profile.settings
                entry.update(known=True, shift=settings.shift_days,
                             treatment=settings.dates_modified or "as the profile's rules say")
        profiles.append(entry)
    modified = stats.attributes.get((None, "(0028,0303)"))
    return {"profiles": profiles,
            "modified": modified.values.top(5) if modified is not None else []}


def _context(options: ReviewOptions, audit: AuditSummary, stats: ReleaseStats,
             verified: _Findings | None, holds_values: bool) -> dict[str, Any]:
    series = sorted(stats.series.values(),
                    key=lambda s: (s.patient, s.study, s.modality, s.uid))
    public = _public_groups(stats, options.top)
    private = _private_groups(stats, options.top)
    return {
        "generator": GENERATOR, "version": __version__,
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "release": options.out_dir.resolve().name or str(options.out_dir),
        "options": options, "audit": audit, "stats": stats,
        "audit_name": audit.path.name,
        "runs": audit.runs, "verified": verified, "holds_values": holds_values,
        "chart": build_chart(stats.study_dates),
        "date_shift": _date_shift(audit, stats),
        "series": series, "series_shown": len(stats.series),
        "public": public, "private": private,
        "marked_public": sum(g["marked"] for g in public),
        "marked_private": sum(g["marked"] for g in private),
        "limits": _limits(),
        "fold_after": FOLD_AFTER,
    }


def _limits() -> dict[str, int]:
    from anonymizer.review import release

    return {"series": release.MAX_SERIES, "chart": release.MAX_CHART_PATIENTS,
            "flagged": release.MAX_FLAGGED_IMAGES, "attributes": release.MAX_ATTRIBUTES,
            "listed": release.MAX_LISTED_PROBLEMS, "findings": MAX_FINDINGS_SHOWN,
            "value_chars": release.MAX_VALUE_CHARS, "studies": release.MAX_STUDIES_PER_PATIENT}


def sorted_counts(counter: Counter[str]) -> Sequence[tuple[str, int]]:
    """Most frequent first, ties by name."""
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))


def _size(number: int) -> str:
    """A byte count the way people read it (``1.5 MiB``)."""
    value = float(number)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{number} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
