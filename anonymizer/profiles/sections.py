"""Profile sections that configure keyed transforms and pixels: ``pseudonyms``, ``dates``,
``age``, ``burned_in_annotation``, ``pixels``; validated with file:line and merged into
:class:`Settings`.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from anonymizer.errors import ProfileError
from anonymizer.pixels.policy import (
    MATCH_KEYWORDS,
    OCR_MODES,
    TEXT_POLICIES,
    PixelPolicy,
    RegionRule,
)
from anonymizer.profiles.spec import Located
from anonymizer.profiles.yaml_lines import LineDict, LineList
from anonymizer.settings import DEFAULT_PSEUDONYM_FORMAT, LookupTable, Settings, check_format


def parse_section(key: str, section: Located, source: str) -> dict[str, Any]:
    """Validate one settings section of a profile; return its values."""
    def fail(message: str, line: int) -> ProfileError:
        return ProfileError(message, source, line)

    value = section.value
    if key == "burned_in_annotation":
        if value not in ("accept", "fail"):
            raise fail("'burned_in_annotation' must be accept or fail", section.line)
        return {"accept": value == "accept"}
    if not isinstance(value, LineDict):
        raise fail(f"'{key}' must be a mapping", section.line)
    if key == "pixels":
        return _parse_pixels(value, fail)
    allowed = {"pseudonyms": ("format", "lookup", "on_missing"),
               "dates": ("shift_days", "times"), "age": ("cap",)}[key]
    out: dict[str, Any] = {}
    for name, item in value.items():
        line = value.key_lines[name]
        if name not in allowed:
            raise fail(f"unknown key {name!r} in '{key}' (allowed: {', '.join(allowed)})", line)
        if name == "format":
            try:
                out[name] = check_format(str(item))
            except ValueError as exc:
                raise fail(str(exc), line) from None
        elif name == "lookup":
            base = Path(source).parent if Path(source).is_file() else Path.cwd()
            out[name] = load_lookup(base / str(item), line, source)
        elif name == "on_missing":
            if item not in ("hash", "fail"):
                raise fail("'on_missing' must be hash or fail", line)
            out[name] = item
        elif name == "shift_days":
            if (not isinstance(item, LineList) or len(item) != 2
                    or not all(isinstance(i, int) and not isinstance(i, bool) for i in item)
                    or item[0] > item[1]):
                raise fail("'shift_days' must be [MIN, MAX] whole days, MIN <= MAX", line)
            out[name] = (item[0], item[1])
        elif name == "times":
            if item not in ("keep", "remove"):
                raise fail("'times' must be keep or remove", line)
            out[name] = item
        elif name == "cap":
            if item is not None and (not isinstance(item, int) or not 0 < item < 150):
                raise fail("'cap' must be an age in years (e.g. 89) or null", line)
            out[name] = item
    return out


_PIXEL_KEYS = ("ocr", "text", "scan", "frames", "margin", "min_chars", "regions")


def _parse_pixels(value: LineDict, fail: Callable[[str, int], ProfileError]) -> dict[str, Any]:
    """The ``pixels:`` section: what is searched for burned-in text and how it is cleaned."""
    out: dict[str, Any] = {}
    for name, item in value.items():
        line = value.key_lines[name]
        if name not in _PIXEL_KEYS:
            raise fail(f"unknown key {name!r} in 'pixels' (allowed: {', '.join(_PIXEL_KEYS)})",
                       line)
        if name == "ocr":
            if item is False:
                item = "off"  # YAML 1.1 reads an unquoted off as false
            if item not in OCR_MODES:
                raise fail(f"'ocr' must be one of {', '.join(OCR_MODES)}", line)
            out["ocr"] = item
        elif name == "text":
            if item not in TEXT_POLICIES:
                raise fail(f"'text' must be one of {', '.join(TEXT_POLICIES)}", line)
            out["text"] = item
        elif name in ("margin", "min_chars"):
            if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item <= 1000:
                raise fail(f"'{name}' must be a whole number of pixels/characters", line)
            out[name] = item
        elif name == "frames":
            every = item.get("every") if isinstance(item, LineDict) else None
            if not isinstance(item, LineDict) or set(item) != {"every"} \
                    or not isinstance(every, int) or isinstance(every, bool) or every < 1:
                raise fail("'frames' must be {every: N} (N >= 1: first, last and every "
                           "Nth frame of a multi-frame file are searched)", line)
            out["every_nth"] = every
        elif name == "scan":
            out.update(_parse_scan(item, line, fail))
        elif name == "regions":
            if not isinstance(item, LineList):
                raise fail("'regions' must be a list of {name, match, blank}", line)
            out["regions"] = tuple(_parse_region(entry, item.item_lines[number], fail)
                                   for number, entry in enumerate(item))
    return out


def _parse_scan(item: Any, line: int, fail: Callable[[str, int], ProfileError]
                ) -> dict[str, Any]:
    if not isinstance(item, LineDict) or not set(item) <= {"modalities", "sop_classes"}:
        raise fail("'scan' must be a mapping with modalities and/or sop_classes lists", line)
    out: dict[str, Any] = {}
    for key, target in (("modalities", "scan_modalities"), ("sop_classes", "scan_sop_classes")):
        if key in item:
            values = item[key]
            if not isinstance(values, LineList) or not all(isinstance(v, str) for v in values):
                raise fail(f"'scan.{key}' must be a list of strings", item.key_lines[key])
            out[target] = tuple(v.strip().upper() if key == "modalities" else v.strip()
                                for v in values)
    return out


def _parse_region(entry: Any, line: int, fail: Callable[[str, int], ProfileError]
                  ) -> RegionRule:
    if not isinstance(entry, LineDict) or set(entry) != {"name", "match", "blank"}:
        raise fail("a region rule is {name: TEXT, match: {KEYWORD: VALUE, ...}, "
                   "blank: [[x0, y0, x1, y1], ...]}", line)
    match = entry["match"]
    if not isinstance(match, LineDict):
        raise fail("'match' must be a mapping of attribute keyword to value", line)
    for keyword in match:
        if keyword not in MATCH_KEYWORDS:
            raise fail(f"region rules match on {', '.join(MATCH_KEYWORDS)}, not {keyword!r}",
                       match.key_lines[keyword])
    boxes = entry["blank"]
    if not isinstance(boxes, LineList) or not boxes or not all(
            isinstance(b, LineList) and len(b) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in b)
            and b[0] < b[2] and b[1] < b[3] for b in boxes):
        raise fail("'blank' must be a list of [x0, y0, x1, y1] pixel rectangles "
                   "(x0 < x1, y0 < y1, x1/y1 exclusive)", entry.key_lines["blank"])
    return RegionRule(str(entry["name"]), tuple((str(k), str(v)) for k, v in match.items()),
                      tuple(tuple(b) for b in boxes))  # type: ignore[misc]


def load_lookup(path: Path, line: int, source: str) -> LookupTable:
    """Read a lookup CSV; errors name the CSV file and row."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read lookup table {path}: {exc.strerror}", source,
                           line) from None
    try:
        rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ProfileError(f"lookup table {path}: {exc}", source, line) from None
    if not rows or [c.strip() for c in rows[0]] not in (["original", "replacement"],
                                                        ["keyword", "original", "replacement"]):
        raise ProfileError("lookup table header must be original,replacement or "
                           "keyword,original,replacement", str(path), 1)
    keyed = len(rows[0]) == 3
    by_keyword: dict[tuple[str, str], str] = {}
    any_keyword: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(rows[0]) or not all(c.strip() for c in row):
            raise ProfileError(f"expected {len(rows[0])} non-empty columns", str(path), number)
        if keyed:
            by_keyword[(row[0].strip(), row[1].strip())] = row[2].strip()
        else:
            any_keyword[row[0].strip()] = row[1].strip()
    return LookupTable(str(path), hashlib.sha256(raw).hexdigest(), by_keyword, any_keyword)


def freeze_settings(sections: Mapping[str, dict[str, Any]], dates_modified: str | None
                    ) -> Settings:
    """Merge validated sections (parent first) into :class:`Settings`."""
    pseudonyms = sections.get("pseudonyms", {})
    dates = sections.get("dates", {})
    return Settings(
        pseudonym_format=pseudonyms.get("format", DEFAULT_PSEUDONYM_FORMAT),
        lookup=pseudonyms.get("lookup"),
        on_missing=pseudonyms.get("on_missing", "hash"),
        shift_days=dates.get("shift_days", (-365, -1)),
        times=dates.get("times", "keep"),
        age_cap=sections.get("age", {}).get("cap", 89),
        pixels=PixelPolicy(accept_burned_in=sections.get("burned_in_annotation", {}).get(
            "accept", False), **sections.get("pixels", {})),
        dates_modified=dates_modified,
    )
