#!/usr/bin/env python3
"""Build the DICOM-standard package data in ``anonymizer/standard/data/``.

Run once by developers when the reference extract changes; CI only reads the generated files,
which are committed. Usage::

    python scripts/build_standard_data.py [REFERENCE_DIR] [--out OUT_DIR]

``REFERENCE_DIR`` defaults to ``/work/shared/reference`` (see its ``README.md`` for the origin and
edition of every input file). ``OUT_DIR`` defaults to ``anonymizer/standard/data`` next to this
script. Writes ``confidentiality_profile.json``, ``attribute_types.json``,
``safe_private_attributes.json``, ``cid7050.json`` and ``README.md`` (provenance, input hashes,
conflicts between the two Table E.1-1 editions). Needs pydicom (for attribute keywords).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
import zipfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import keyword_for_tag

DEFAULT_REFERENCE = Path("/work/shared/reference")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "anonymizer" / "standard" / "data"

E11_JSON = "confidentiality_profile_attributes.json"
E11_CSV = "table_E.1-1_2023b.csv"
TYPES_CSV = "attribute_types_by_sop_class.csv"
SOP_MODULES_CSV = "sop_class_modules.csv"
SAFE_PRIVATE_CSV = "safe_private_attributes.csv"
CID7050_CSV = "cid7050_deidentification_methods.csv"
INPUTS = (E11_JSON, E11_CSV, TYPES_CSV, SOP_MODULES_CSV, SAFE_PRIVATE_CSV, CID7050_CSV)

TABLE_EDITION = "2024b (innolitics extract) + 2023b DocBook"
HIGHDICOM_VERSION = "0.28.2"
TYPES_EDITION = "2026b (highdicom 0.28.2 _standard tables, from the innolitics extract)"

# (canonical option name, innolitics JSON key, 2023b CSV column, Table E.1-1 column header)
OPTION_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("retain_safe_private", "rtnSafePrivOpt", "rtn_safe_priv_opt", "Rtn. Safe Priv. Opt."),
    ("retain_uids", "rtnUIDsOpt", "rtn_uids_opt", "Rtn. UIDs Opt."),
    ("retain_device_identity", "rtnDevIdOpt", "rtn_dev_id_opt", "Rtn. Dev. Id. Opt."),
    ("retain_institution_identity", "rtnInstIdOpt", "rtn_inst_id_opt", "Rtn. Inst. Id. Opt."),
    (
        "retain_patient_characteristics",
        "rtnPatCharsOpt",
        "rtn_pat_chars_opt",
        "Rtn. Pat. Chars. Opt.",
    ),
    (
        "retain_longitudinal_full_dates",
        "rtnLongFullDatesOpt",
        "rtn_long_full_dates_opt",
        "Rtn. Long. Full Dates Opt.",
    ),
    (
        "retain_longitudinal_modified_dates",
        "rtnLongModifDatesOpt",
        "rtn_long_modif_dates_opt",
        "Rtn. Long. Modif. Dates Opt.",
    ),
    ("clean_descriptors", "cleanDescOpt", "clean_desc_opt", "Clean Desc. Opt."),
    (
        "clean_structured_content",
        "cleanStructContOpt",
        "clean_struct_cont_opt",
        "Clean Struct. Cont. Opt.",
    ),
    ("clean_graphics", "cleanGraphOpt", "clean_graph_opt", "Clean Graph. Opt."),
)
# CID 7050 codes without a Table E.1-1 column (they act on pixel data).
PIXEL_OPTION_CODES = {"113101": "clean_pixel_data", "113102": "clean_recognizable_visual_features"}

BASIC_CODES = {"X", "D", "Z", "U", "X/D", "X/Z", "X/Z/D", "Z/D", "X/Z/U*"}
OPTION_CODES = {"", "K", "C"}
TAG_RE = re.compile(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)")
PATTERN_RE = re.compile(r"\(([0-9A-F]{2}XX),([0-9A-FX]{4})\)")
TYPE_RANK = {"1": 0, "2": 1, "3": 2}
TYPE_REDUCE = {"1": "1", "1C": "1", "2": "2", "2C": "2", "3": "3"}


def fail(msg: str) -> None:
    """Abort the build: the input does not look like what this script was written for."""
    sys.exit(f"build_standard_data: {msg}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def clean_text(text: str) -> str:
    """Drop zero-width spaces (2023b DocBook) and collapse whitespace/newlines (innolitics)."""
    return " ".join(text.replace("\u200b", " ").split())


def norm_tag(tag: str) -> str:
    """Normalize only the case of a Table E.1-1 tag cell (2023b has ``(gggg,eeee) where ...``)."""
    return tag.strip().upper()


def is_plain_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


def hex8(tag: str) -> str:
    """``(GGGG,EEEE)`` or ``(60XX,EEEE)`` -> ``GGGGEEEE`` / ``60XXEEEE``."""
    m = re.fullmatch(r"\(([0-9A-FX]{4}),([0-9A-FX]{4})\)", tag.strip().upper())
    if m is None:
        fail(f"bad tag {tag!r}")
        raise AssertionError  # unreachable, for type checkers
    return m.group(1) + m.group(2)


def dump_rows(header: dict[str, Any], key: str, rows: list[Any]) -> str:
    """``{"edition": header, key: [...]}`` with one row per line (small, diff-friendly)."""
    body = ",\n".join(json.dumps(r, separators=(",", ":")) for r in rows)
    head = json.dumps(header, separators=(",", ":"))
    return f'{{"edition":{head},\n"{key}":[\n{body}\n]}}\n'


# --------------------------------------------------------------------------- Table E.1-1


def build_confidentiality(ref: Path) -> tuple[dict[str, Any], list[dict[str, str]], list[str]]:
    """Return (header, rows, notes): 2024b JSON rows, union 2023b-only rows, Retired from 2023b."""
    new = json.loads((ref / E11_JSON).read_text(encoding="utf-8"))
    old = read_csv(ref / E11_CSV)
    notes: list[str] = []

    old_by_tag: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in old:
        old_by_tag[norm_tag(r["tag"])].append(r)
    new_tags = Counter(norm_tag(r["tag"]) for r in new)
    if any(n > 1 for n in new_tags.values()):
        fail("duplicate tags in the 2024b JSON")

    for r in old:
        if r["tag"] != norm_tag(r["tag"]) and norm_tag(r["tag"]) in new_tags:
            notes.append(
                f"2023b writes the private row's tag as {r['tag']!r}; "
                "matched case-insensitively to the 2024b row."
            )
    zw = sorted(clean_text(r["name"]) for r in old if "\u200b" in r["name"])
    if zw:
        notes.append(
            f"{len(zw)} 2023b names contain zero-width spaces (U+200B), e.g. {zw[0]!r}; "
            "names are whitespace-normalized, so these are not conflicts."
        )

    def row_from(src: dict[str, str], *, json_src: bool) -> dict[str, str]:
        g = (lambda k, c: src.get(k, "")) if json_src else (lambda k, c: src[c])
        tag = norm_tag(src["tag"])
        row = {
            "tag": tag,
            "name": clean_text(src["name"]),
            "keyword": "",
            "retired": "N",
            "in_std_comp_iod": g("stdCompIOD", "in_std_comp_iod"),
            "basic": g("basicProfile", "basic_profile"),
        }
        for opt, jkey, ccol, _ in OPTION_COLUMNS:
            row[opt] = g(jkey, ccol)
        if is_plain_tag(tag):
            row["keyword"] = keyword_for_tag(int(hex8(tag), 16)) or ""
        return row

    rows: list[dict[str, str]] = []
    row_notes: list[str] = []
    compare = [
        ("name", "name"),
        ("in_std_comp_iod", "in_std_comp_iod"),
        ("basic", "basic_profile"),
    ] + [(o[0], o[2]) for o in OPTION_COLUMNS]
    for src in new:
        row = row_from(src, json_src=True)
        olds = old_by_tag.get(row["tag"], [])
        if olds:
            row["retired"] = olds[0]["retired"]
            for field, col in compare:
                vals = sorted({(clean_text(o[col]) if field == "name" else o[col]) for o in olds})
                if len(olds) > 1 and len(vals) > 1:
                    row_notes.append(
                        f"{row['tag']} {row['name']}: listed {len(olds)} times in 2023b, with "
                        f"{field} {' and '.join(repr(v) for v in vals)}; 2024b has one row "
                        f"with {row[field]!r}, which is used."
                    )
                elif vals != [row[field]]:
                    row_notes.append(
                        f"{row['tag']} {row['name']}: {field} is {row[field]!r} in 2024b, "
                        f"{' / '.join(repr(v) for v in vals)} in 2023b; 2024b used."
                    )
        else:
            row_notes.append(
                f"{row['tag']} {row['name']} is only in 2024b (Retired set to 'N', "
                "pydicom: "
                + ("retired" if row["keyword"] and _pydicom_retired(row["tag"]) else "not retired")
                + ")."
            )
        rows.append(row)
    for tag, olds in old_by_tag.items():
        if tag not in new_tags:
            row = row_from(olds[0], json_src=False)
            row["retired"] = olds[0]["retired"]
            row_notes.append(f"{tag} {row['name']} is only in 2023b; added from 2023b.")
            rows.append(row)

    for row in rows:
        if row["basic"] not in BASIC_CODES:
            fail(f"unknown Basic Profile code {row['basic']!r} for {row['tag']}")
        if any(row[o[0]] not in OPTION_CODES for o in OPTION_COLUMNS):
            fail(f"unknown option code in {row}")
        if not (
            is_plain_tag(row["tag"])
            or PATTERN_RE.fullmatch(row["tag"])
            or row["tag"].startswith("(GGGG,EEEE)")
        ):
            fail(f"unexpected tag {row['tag']!r}")
        if row["retired"] not in ("Y", "N") or row["in_std_comp_iod"] not in ("Y", "N"):
            fail(f"bad Y/N flag in {row}")
        if is_plain_tag(row["tag"]) and not row["keyword"]:
            row_notes.append(
                f"{row['tag']} {row['name']}: no keyword in pydicom {pydicom.__version__}."
            )
        if row["keyword"] and (row["retired"] == "Y") != _pydicom_retired(row["tag"]):
            row_notes.append(
                f"{row['tag']} {row['name']}: Retired {row['retired']!r} in 2023b Table E.1-1 "
                f"but pydicom {pydicom.__version__} says "
                f"{'retired' if _pydicom_retired(row['tag']) else 'not retired'}; table value kept."
            )
    rows.sort(key=lambda r: r["tag"])
    notes += sorted(row_notes)

    header = {
        "table": "PS3.15 Table E.1-1",
        "edition": TABLE_EDITION,
        "primary": "innolitics/dicom-standard standard/confidentiality_profile_attributes.json "
        "(commit 8670abdd9ad16c61af5146ef857899699bdd9c5f, "
        "'Update standard to rev2024b')",
        "secondary": "DICOM PS3.15 2023b DocBook part15.xml table_E.1-1 "
        "(jodogne/dicom-specification 58f3e44ea96c0a3b1bee6ba19004391cd880310e): "
        "Retired column and rows absent from 2024b",
        "keywords": f"pydicom {pydicom.__version__} data dictionary",
        "option_columns": {o[0]: o[3] for o in OPTION_COLUMNS},
    }
    return header, rows, notes


def _pydicom_retired(tag: str) -> bool:
    from pydicom.datadict import dictionary_is_retired

    return bool(dictionary_is_retired(int(hex8(tag), 16)))


# --------------------------------------------------------------------------- Attribute types


def _type_key_part(keyword: str) -> str:
    """``GGGGEEEE`` of a keyword, or the ``60XXEEEE`` form of a repeating-group keyword."""
    from pydicom.datadict import RepeatersDictionary, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is not None:
        return f"{tag:08X}"
    masks = [mask for mask, entry in RepeatersDictionary.items() if entry[4] == keyword]
    if not masks:
        fail(f"keyword {keyword!r} of the highdicom tables is not in pydicom's dictionary")
    return masks[0].upper()


def build_attribute_types(ref: Path, wheel: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Types 1/2 of every attribute of every module, and the modules of each SOP Class.

    Type 3 rows are left out (a known SOP Class without a row means Type 3). The reference
    CSV of the 91 Type-dependent Table E.1-1 attributes must agree with the result.
    """
    with zipfile.ZipFile(wheel) as archive:
        def table(name: str) -> Any:
            return json.loads(archive.read(f"highdicom/_standard/{name}"))

        modules_raw = table("module_attribute_map.json")
        iod_modules = table("iod_module_map.json")
        sop_iods = table("sop_class_iod_map.json")
    sop_rows = read_csv(ref / SOP_MODULES_CSV)
    sop_classes = dict(sorted({r["sop_class_uid"]: r["sop_class_name"] for r in sop_rows}.items()))
    if set(sop_classes) != set(sop_iods):
        fail(f"SOP Classes of {SOP_MODULES_CSV} and of the highdicom tables differ")
    raw: Counter[str] = Counter()
    module_types: dict[str, dict[str, str]] = {}
    for module, attributes in modules_raw.items():
        keys: dict[str, str] = {}
        for attribute in attributes:
            raw[str(attribute["type"])] += 1
            # None: the source states no Type (some incomplete 2026b modules): not 1 or 2.
            t = TYPE_REDUCE.get(str(attribute["type"]), "3")
            if t == "3":
                continue
            key = _type_key_part(attribute["keyword"]) + "|" + ">".join(
                _type_key_part(p) for p in attribute["path"])
            if key not in keys or TYPE_RANK[t] < TYPE_RANK[keys[key]]:
                keys[key] = t
        if keys:
            module_types[module] = dict(sorted(keys.items()))
    sop_class_modules = {
        uid: sorted({m["key"] for m in iod_modules[sop_iods[uid]]} & set(module_types))
        for uid in sop_classes
    }
    data = {
        "edition": {
            "table": "PS3.3 Attribute Types 1 and 2 of every attribute of every module, and the "
            "modules of the IOD of each storage SOP Class",
            "edition": TYPES_EDITION,
            "rule": "strictest Type over all modules of the IOD at the same (tag, path); "
            "1C->1, 2C->2; SOP Class known but no (tag, path) -> 3",
            "key": "GGGGEEEE|path, path = enclosing Sequence tags from top level joined by '>'; "
            "repeating groups as 60XXEEEE",
        },
        "sop_classes": sop_classes,
        "sop_class_modules": sop_class_modules,
        "module_types": dict(sorted(module_types.items())),
    }
    _check_against_reference(ref, data)
    stats = {
        "sop_classes": len(sop_classes),
        "sop_classes_without_rows": sorted(u for u, m in sop_class_modules.items() if not m),
        "input_rows": sum(raw.values()),
        "input_types": dict(sorted(raw.items())),
        "modules": len(module_types),
        "keys": sum(len(v) for v in module_types.values()),
        "key_types": dict(sorted(Counter(t for v in module_types.values()
                                         for t in v.values()).items())),
    }
    return data, stats


def _check_against_reference(ref: Path, data: dict[str, Any]) -> None:
    """Fail unless the 91 attributes of the reference CSV resolve to the same Types."""
    expected: dict[str, dict[str, str]] = defaultdict(dict)
    for r in read_csv(ref / TYPES_CSV):
        if r["type"] not in TYPE_REDUCE:
            fail(f"unknown attribute type {r['type']!r}")
        path = ">".join(hex8(p) for p in r["path"].split(">") if p)
        key, t = f"{hex8(r['tag'])}|{path}", TYPE_REDUCE[r["type"]]
        current = expected[r["sop_class_uid"]].get(key)
        if current is None or TYPE_RANK[t] < TYPE_RANK[current]:
            expected[r["sop_class_uid"]][key] = t
    for uid, keys in expected.items():
        merged: dict[str, str] = {}
        for module in data["sop_class_modules"][uid]:
            for key, t in data["module_types"][module].items():
                if key not in merged or TYPE_RANK[t] < TYPE_RANK[merged[key]]:
                    merged[key] = t
        for key, t in keys.items():
            if merged.get(key, "3") != t:
                fail(f"{uid} {key}: Type {merged.get(key, '3')} from highdicom, {t} in {TYPES_CSV}")


# --------------------------------------------------------------------------- Safe private


def build_safe_private(ref: Path) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    seen: set[tuple[int, str, int]] = set()
    for r in read_csv(ref / SAFE_PRIVATE_CSV):
        m = re.fullmatch(r"xx([0-9A-Fa-f]{2})", r["element"])
        if m is None or not re.fullmatch(r"[0-9A-Fa-f]{4}", r["group"]):
            fail(f"bad safe-private row {r}")
            raise AssertionError
        group, offset = int(r["group"], 16), int(m.group(1), 16)
        if group % 2 == 0:
            fail(f"even group in safe-private row {r}")
        key = (group, r["creator"], offset)
        if key in seen:
            fail(f"duplicate safe-private key {key}")
        seen.add(key)
        if r["creator"] != r["creator"].strip():
            notes.append(f"creator {r['creator']!r} has leading/trailing spaces (kept).")
        if not r["vr"]:
            notes.append(
                f"({r['group']},{r['element']}) {r['creator']!r} {r['name']!r}: empty VR in the "
                "standard (kept as '')."
            )
        rows.append(
            {
                "creator": r["creator"],
                "group": group,
                "offset": offset,
                "vr": r["vr"],
                "name": clean_text(r["name"]),
                "vm": r["vm"],
            }
        )
    rows.sort(key=lambda x: (x["group"], x["creator"], x["offset"]))
    return rows, sorted(set(notes))


# --------------------------------------------------------------------------- CID 7050


def build_cid7050(ref: Path) -> list[dict[str, str]]:
    by_column = {o[2]: o[0] for o in OPTION_COLUMNS}
    out = []
    for r in read_csv(ref / CID7050_CSV):
        col, code = r["e11_csv_column"], r["code_value"]
        if col == "basic_profile":
            option = "basic"
        elif col:
            option = by_column[col]
        elif code in PIXEL_OPTION_CODES:
            option = PIXEL_OPTION_CODES[code]
        else:
            fail(f"CID 7050 code {code} has no option mapping")
            raise AssertionError
        out.append(
            {
                "code_value": code,
                "scheme": r["coding_scheme_designator"],
                "meaning": r["code_meaning"],
                "option": option,
            }
        )
    names = [r["option"] for r in out]
    if len(set(names)) != len(names) or len(out) != 13:
        fail("CID 7050 options not unique or not 13 codes")
    return out


# --------------------------------------------------------------------------- README


def readme(
    out: Path,
    hashes: dict[str, str],
    e11_rows: list[dict[str, str]],
    e11_notes: list[str],
    type_stats: dict[str, Any],
    safe: list[dict[str, Any]],
    safe_notes: list[str],
    cid: list[dict[str, str]],
) -> str:
    basic = Counter(r["basic"] for r in e11_rows)
    opts = {o[0]: Counter(r[o[0]] for r in e11_rows if r[o[0]]) for o in OPTION_COLUMNS}
    sizes = {p.name: p.stat().st_size for p in sorted(out.glob("*.json"))}
    out_hashes = {name: sha256(out / name) for name in sizes}
    pairs = Counter((r["creator"], r["group"]) for r in safe)
    lines = [
        "# Package data from the DICOM Standard",
        "",
        "Generated by `scripts/build_standard_data.py`; do not edit by hand. Rebuild with",
        "",
        "```",
        "pip download --no-deps -d /tmp highdicom==0.28.2",
        "python scripts/build_standard_data.py /work/shared/reference \\",
        "    --highdicom-wheel /tmp/highdicom-0.28.2-py3-none-any.whl",
        "```",
        "",
        f"(last built with pydicom {pydicom.__version__}, which supplies the attribute keywords).",
        "The reference directory is not part of the",
        "repository; its `README.md` describes each input in detail. Loaded at run time by",
        "`anonymizer.standard` (no pydicom needed for that).",
        "",
        "## Files",
        "",
        "| file | bytes | content | edition / source |",
        "| --- | --- | --- | --- |",
        f"| `confidentiality_profile.json` | {sizes['confidentiality_profile.json']} | "
        f"PS3.15 Table E.1-1, {len(e11_rows)} rows | **2024b** "
        "(`innolitics/dicom-standard` `standard/confidentiality_profile_attributes.json`, commit "
        '`8670abdd9ad16c61af5146ef857899699bdd9c5f`, "Update standard to rev2024b") as primary '
        "source, united with **2023b** (DICOM PS3.15 2023b DocBook `part15.xml`, "
        "`table_E.1-1`, via `jodogne/dicom-specification` commit "
        "`58f3e44ea96c0a3b1bee6ba19004391cd880310e`) for the Retired column; keywords from "
        f"pydicom {pydicom.__version__} |",
        f"| `attribute_types.json` | {sizes['attribute_types.json']} | PS3.3 Attribute Types of "
        "every attribute (Types 1 and 2; anything else is Type 3) per module, and the modules of "
        "each SOP Class's IOD | **2026b** (highdicom 0.28.2 wheel `highdicom/_standard/*.json`, "
        "generated from the innolitics extract); checked against the reference's Types of the "
        "91 Type-dependent Table E.1-1 attributes |",
        f"| `safe_private_attributes.json` | {sizes['safe_private_attributes.json']} | "
        f"PS3.15 Table E.3.10-1 Safe Private Attributes, {len(safe)} rows | **2023b** DocBook "
        "`part15.xml`, `table_E.3.10-1` |",
        f"| `cid7050.json` | {sizes['cid7050.json']} | PS3.16 CID 7050 De-identification Method "
        f"codes, {len(cid)} codes, mapped to option names | PS3.16 (codes stable) |",
        "",
        "## Inputs (sha256)",
        "",
        "| file in the reference directory (and the highdicom wheel) | sha256 |",
        "| --- | --- |",
        *[f"| `{name}` | `{h}` |" for name, h in hashes.items()],
        "",
        "## Outputs (sha256)",
        "",
        "| file | sha256 |",
        "| --- | --- |",
        *[f"| `{name}` | `{h}` |" for name, h in out_hashes.items()],
        "",
        "## `confidentiality_profile.json`",
        "",
        '`{"edition": {...}, "rows": [...]}`, one row per line, sorted by tag. Row fields:',
        "`tag` (`(GGGG,EEEE)` upper case, or one of the patterns `(50XX,XXXX)` Curve Data,",
        "`(60XX,3000)` Overlay Data, `(60XX,4000)` Overlay Comments, "
        "`(GGGG,EEEE) WHERE GGGG IS ODD` Private Attributes), `name` (whitespace-normalized),",
        "`keyword` (pydicom; empty for the patterns), `retired` (`Y`/`N`, 2023b Retd. column,",
        "`N` for rows only in 2024b), `in_std_comp_iod` (`Y`/`N`), `basic` (Basic Profile code)",
        "and one field per option column (empty string = no entry): "
        + ", ".join(f"`{o[0]}` ({o[3]})" for o in OPTION_COLUMNS)
        + ".",
        "",
        "Basic Profile codes: " + ", ".join(f"{k} {v}" for k, v in basic.most_common()) + ".",
        "Option columns: "
        + "; ".join(
            f"{o} " + " / ".join(f"{k} {v}" for k, v in sorted(c.items())) for o, c in opts.items()
        )
        + ".",
        "",
        "### Differences between the editions and how they were resolved",
        "",
        "Rule: the 2024b row wins; rows only in 2023b would be added (there are none); Retired",
        "comes from 2023b. Found while building:",
        "",
        *[f"- {n}" for n in e11_notes],
        "",
        "## `attribute_types.json`",
        "",
        '`{"edition": {...}, "sop_classes": {uid: name}, "sop_class_modules": {uid: [module]}, '
        '"module_types": {module: {"GGGGEEEE|path": type}}}`. `path` lists the tags of the',
        "enclosing Sequences from the top-level dataset down, 8 upper-case hex digits each,",
        "joined by `>` (empty = top level). Repeating groups are written `60XXEEEE`. Only",
        "Types 1 and 2 are stored. The Type of an attribute in a SOP Class is the strictest",
        "Type over all modules of the IOD stating the attribute at that path, with `1C` read as",
        "`1` and `2C` as `2` (rule of the reference README: a present conditional element met its",
        "condition or was allowed). `sop_classes` lists every SOP Class of",
        "`sop_class_modules.csv`, so that a known SOP Class without a row for (tag, path) means",
        'Type 3, while an unknown SOP Class means "cannot tell".',
        "",
        f"- {type_stats['sop_classes']} SOP Classes known, {type_stats['modules']} modules with "
        f"Type 1 or 2 attributes; SOP Classes without any: "
        f"{', '.join(type_stats['sop_classes_without_rows']) or 'none'}.",
        "- `None` in the input: the source states no Type; read as Type 3.",
        f"- {type_stats['input_rows']} input rows (types "
        + ", ".join(f"{k}: {v}" for k, v in type_stats["input_types"].items())
        + f") reduce to {type_stats['keys']} keys ("
        + ", ".join(f"{k}: {v}" for k, v in type_stats["key_types"].items())
        + ").",
        "- Caveats (from the reference README): some 2026b modules are incomplete in the",
        "  source (Waveform Presentation State IODs, Enhanced Continuous RT Image functional",
        "  groups); real-time IODs",
        "  (`1.2.840.10008.10.x`) are absent.",
        "",
        "## `safe_private_attributes.json`",
        "",
        '`{"edition": {...}, "rows": [...]}`, rows `creator` (exact Private Creator string',
        "of the standard, case-sensitive), `group` (int, odd), `offset` (int, low byte `EE` of",
        "the `xxEE` element: the block byte `xx` is wherever the creator was reserved), `vr`,",
        "`name` (the standard's Meaning column), `vm`. "
        f"{len(pairs)} (creator, group) pairs; creators: "
        + ", ".join(f"`{c}`" for c in sorted({r["creator"] for r in safe}))
        + ".",
        "No creator has leading/trailing spaces; note the mixed case (`HOLOGIC, Inc.` with a",
        "comma, `Philips ST80i`, `NQHeader`): match the stored value exactly after stripping the",
        "value's padding. Notes:",
        "",
        *[f"- {n}" for n in safe_notes],
        "",
        "## `cid7050.json`",
        "",
        '`{"edition": {...}, "rows": [...]}`, rows `code_value`, `scheme` (`DCM`), `meaning`',
        "(Code Meaning), `option` (`basic` or the canonical option name of "
        "`anonymizer.standard.OPTIONS` / `PIXEL_OPTIONS`).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "reference",
        nargs="?",
        type=Path,
        default=DEFAULT_REFERENCE,
        help=f"reference directory (default {DEFAULT_REFERENCE})",
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    ap.add_argument(
        "--highdicom-wheel",
        type=Path,
        required=True,
        help=f"the highdicom {HIGHDICOM_VERSION} wheel (pip download --no-deps "
        f"highdicom=={HIGHDICOM_VERSION}), whose _standard tables give the Attribute Types",
    )
    args = ap.parse_args(argv)
    ref: Path = args.reference
    out: Path = args.out
    for name in INPUTS:
        if not (ref / name).is_file():
            fail(f"missing input {ref / name}")
    hashes = {name: sha256(ref / name) for name in INPUTS}
    hashes[args.highdicom_wheel.name] = sha256(args.highdicom_wheel)
    out.mkdir(parents=True, exist_ok=True)

    header, e11_rows, e11_notes = build_confidentiality(ref)
    (out / "confidentiality_profile.json").write_text(
        dump_rows(header, "rows", e11_rows), encoding="utf-8"
    )

    types, type_stats = build_attribute_types(ref, args.highdicom_wheel)
    (out / "attribute_types.json").write_text(
        json.dumps(types, separators=(",", ":")) + "\n", encoding="utf-8"
    )

    safe, safe_notes = build_safe_private(ref)
    safe_header = {
        "table": "PS3.15 Table E.3.10-1 Safe Private Attributes",
        "edition": "2023b DocBook",
    }
    (out / "safe_private_attributes.json").write_text(
        dump_rows(safe_header, "rows", safe), encoding="utf-8"
    )

    cid = build_cid7050(ref)
    cid_header = {"table": "PS3.16 CID 7050 De-identification Method", "edition": "PS3.16"}
    (out / "cid7050.json").write_text(dump_rows(cid_header, "rows", cid), encoding="utf-8")

    (out / "README.md").write_text(
        readme(out, hashes, e11_rows, e11_notes, type_stats, safe, safe_notes, cid),
        encoding="utf-8",
    )
    for p in sorted(out.iterdir()):
        print(f"{p.stat().st_size:>9}  {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
