"""Profile sections that configure keyed transforms: ``pseudonyms``, ``dates``, ``age``,
``burned_in_annotation``; validated with file:line and merged into :class:`Settings`.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anonymizer.errors import ProfileError
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
        accept_burned_in=sections.get("burned_in_annotation", {}).get("accept", False),
        dates_modified=dates_modified,
    )
