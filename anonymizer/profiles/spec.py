"""YAML -> validated profile spec (plain frozen dataclasses, every item with its line).

This stage only checks shape (keys, types, tag notation, action names). Meaning
(VR of replacement values, options, inheritance) is checked by the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anonymizer.errors import ProfileError
from anonymizer.profiles.yaml_lines import LineDict, LineList, load_yaml
from anonymizer.tags import TagPattern, keyword_tag, parse_tag_text

#: Action names accepted in ``actions:`` (and their PS3.15 code).
ACTION_NAMES: dict[str, str] = {
    "remove": "X", "empty": "Z", "keep": "K", "dummy": "D", "uid": "U", "clean": "C",
    "pseudonym": "P", "shift": "S",
    "X": "X", "Z": "Z", "K": "K", "D": "D", "U": "U", "C": "C",
    "X/Z": "X/Z", "X/D": "X/D", "Z/D": "Z/D", "X/Z/D": "X/Z/D", "X/Z/U*": "X/Z/U*",
}
#: Actions that take a parameter: ``{replace: VALUE}``, ``{pseudonym: FORMAT}``.
PARAM_ACTIONS = ("replace", "pseudonym")

TOP_KEYS = ("name", "version", "description", "extends", "standard", "options", "default",
            "by_vr", "actions", "private", "add", "layout", "pseudonyms", "dates", "age",
            "burned_in_annotation", "pixels")


@dataclass(frozen=True)
class Located:
    """A value with the line it came from."""

    value: Any
    line: int


@dataclass(frozen=True)
class ActionSpec:
    """One entry of ``actions:``: a tag, keyword or pattern and its action."""

    key: str
    target: int | TagPattern
    by_keyword: bool
    action: str
    param: Any
    line: int


@dataclass(frozen=True)
class PrivateKeepSpec:
    creator: str
    offset: int | None
    group: int | None
    line: int


@dataclass(frozen=True)
class PrivateSpec:
    default: Located | None
    keep_creators: tuple[Located, ...]
    keep: tuple[PrivateKeepSpec, ...]


@dataclass(frozen=True)
class AddSpec:
    """One entry of ``add:``: a standard element (tag) or a private one (creator...)."""

    tag: int | None
    vr: str | None
    value: Any
    creator: str | None
    group: int | None
    offset: int | None
    line: int


@dataclass(frozen=True)
class ProfileSpec:
    """A profile as written, validated for shape, before inheritance and compilation."""

    source: str
    name: str
    version: str
    description: str
    extends: Located | None
    standard: Located | None
    options: tuple[Located, ...]
    default: Located | None
    by_vr: tuple[tuple[str, Located], ...]
    actions: tuple[ActionSpec, ...]
    private: PrivateSpec | None
    add: tuple[AddSpec, ...]
    layout: Located | None
    sections: dict[str, Located]  # pseudonyms, dates, age, burned_in_annotation: raw mappings


class _Reader:
    """Validation helpers bound to one source file."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str, line: int | None) -> ProfileError:
        return ProfileError(message, self.source, line)

    def mapping(self, value: Any, what: str, line: int) -> LineDict:
        if not isinstance(value, LineDict):
            raise self.fail(f"{what} must be a mapping, got {type(value).__name__}", line)
        return value

    def sequence(self, value: Any, what: str, line: int) -> LineList:
        if not isinstance(value, LineList):
            raise self.fail(f"{what} must be a list, got {type(value).__name__}", line)
        return value

    def string(self, value: Any, what: str, line: int) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{what} must be a non-empty string", line)
        return value

    def only_keys(self, mapping: LineDict, allowed: tuple[str, ...], what: str) -> None:
        for key in mapping:
            if key not in allowed:
                raise self.fail(
                    f"unknown key {key!r} in {what} (allowed: {', '.join(allowed)})",
                    mapping.key_lines[key])

    def integer(self, value: Any, what: str, line: int, maximum: int) -> int:
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                raise self.fail(f"{what} must be an integer (e.g. 0x01)", line) from None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
            raise self.fail(f"{what} must be an integer in 0..{maximum:#x}", line)
        return value

    def target(self, key: Any, line: int) -> tuple[int | TagPattern, bool]:
        """Parse an ``actions:`` key: keyword, ``(gggg,eeee)``, pattern or integer tag."""
        if isinstance(key, int):
            if not 0 <= key <= 0xFFFFFFFF:
                raise self.fail(f"bad tag {key!r}", line)
            return key, False
        parsed = parse_tag_text(key)
        if parsed is not None:
            return parsed, False
        if "(" in key or "," in key:
            raise self.fail(f"bad tag {key!r}: expected (gggg,eeee) with hex digits or x", line)
        tag = keyword_tag(key)
        if tag is None:
            raise self.fail(f"unknown keyword {key!r} (not in the DICOM dictionary)", line)
        return tag, True


def parse_profile(text: str, source: str) -> ProfileSpec:
    """Parse and shape-check a profile's YAML text.

    Raises
    ------
    ProfileError
        On the first problem, with ``source`` and the line.
    """
    reader = _Reader(source)
    data = load_yaml(text, source)
    if data is None:
        raise reader.fail("profile is empty", 1)
    root = reader.mapping(data, "a profile", 1)
    reader.only_keys(root, TOP_KEYS, "the profile")

    def located(key: str) -> Located | None:
        return Located(root[key], root.key_lines[key]) if key in root else None

    name = root.get("name")
    if name is None:
        raise reader.fail("missing 'name'", root.line)
    reader.string(name, "'name'", root.key_lines["name"])
    version = str(root.get("version", "1"))
    description = str(root.get("description", ""))
    for key in ("extends", "layout"):
        if key in root:
            reader.string(root[key], f"'{key}'", root.key_lines[key])
    if "standard" in root and root["standard"] not in ("ps3.15", "PS3.15"):
        raise reader.fail("'standard' must be ps3.15 (PS3.15 Annex E Table E.1-1 as the base)",
                          root.key_lines["standard"])

    options: list[Located] = []
    if "options" in root:
        items = reader.sequence(root["options"], "'options'", root.key_lines["options"])
        for item, line in zip(items, items.item_lines, strict=True):
            options.append(Located(reader.string(item, "an option", line), line))

    if "default" in root and root["default"] not in ("keep", "remove"):
        raise reader.fail("'default' must be keep or remove", root.key_lines["default"])

    by_vr: list[tuple[str, Located]] = []
    if "by_vr" in root:
        vr_map = reader.mapping(root["by_vr"], "'by_vr'", root.key_lines["by_vr"])
        for vr, action in vr_map.items():
            line = vr_map.key_lines[vr]
            if action not in ACTION_NAMES:
                raise reader.fail(f"unknown action {action!r} for VR {vr!r}", line)
            by_vr.append((str(vr), Located(action, line)))

    actions = _parse_actions(reader, root)
    private = _parse_private(reader, root) if "private" in root else None
    additions = _parse_add(reader, root) if "add" in root else ()
    sections = {key: Located(root[key], root.key_lines[key])
                for key in ("pseudonyms", "dates", "age", "burned_in_annotation", "pixels")
                if key in root}
    return ProfileSpec(
        source=source, name=name, version=version, description=description,
        extends=located("extends"), standard=located("standard"), options=tuple(options),
        default=located("default"), by_vr=tuple(by_vr), actions=actions, private=private,
        add=additions, layout=located("layout"), sections=sections,
    )


def _parse_actions(reader: _Reader, root: LineDict) -> tuple[ActionSpec, ...]:
    if "actions" not in root:
        return ()
    table = reader.mapping(root["actions"], "'actions'", root.key_lines["actions"])
    specs = []
    for key, value in table.items():
        line = table.key_lines[key]
        target, by_keyword = reader.target(key, line)
        param = None
        if isinstance(value, LineDict):
            if len(value) != 1 or next(iter(value)) not in PARAM_ACTIONS:
                raise reader.fail(
                    f"action for {key!r} must be one of {', '.join(sorted(ACTION_NAMES))} or a "
                    f"one-key mapping {{replace: VALUE}} / {{pseudonym: FORMAT}}", line)
            action, param = next(iter(value.items()))
        elif isinstance(value, str) and value in ACTION_NAMES:
            action = value
        else:
            raise reader.fail(f"unknown action {value!r} for {key!r} "
                              f"(known: {', '.join(n for n in ACTION_NAMES if n.islower())}, "
                              "replace, or a PS3.15 code)", line)
        specs.append(ActionSpec(key=str(key), target=target, by_keyword=by_keyword,
                                action=action, param=param, line=line))
    return tuple(specs)


def _parse_private(reader: _Reader, root: LineDict) -> PrivateSpec:
    section = reader.mapping(root["private"], "'private'", root.key_lines["private"])
    reader.only_keys(section, ("default", "keep_creators", "keep"), "'private'")
    default = None
    if "default" in section:
        if section["default"] not in ("keep", "remove"):
            raise reader.fail("private 'default' must be keep or remove",
                              section.key_lines["default"])
        default = Located(section["default"], section.key_lines["default"])
    creators = []
    if "keep_creators" in section:
        items = reader.sequence(section["keep_creators"], "'keep_creators'",
                                section.key_lines["keep_creators"])
        for item, line in zip(items, items.item_lines, strict=True):
            creators.append(Located(reader.string(item, "a private creator", line).strip(), line))
    keeps = []
    if "keep" in section:
        items = reader.sequence(section["keep"], "private 'keep'", section.key_lines["keep"])
        for item, line in zip(items, items.item_lines, strict=True):
            entry = reader.mapping(item, "a private keep entry", line)
            reader.only_keys(entry, ("creator", "element", "group"), "a private keep entry")
            if "creator" not in entry:
                raise reader.fail("private keep entry needs 'creator'", line)
            creator = reader.string(entry["creator"], "'creator'", line).strip()
            offset = group = None
            if "element" in entry:
                offset = reader.integer(entry["element"], "'element' (offset in the block)",
                                        entry.key_lines["element"], 0xFF)
            if "group" in entry:
                group = reader.integer(entry["group"], "'group'", entry.key_lines["group"], 0xFFFF)
                if group % 2 == 0:
                    raise reader.fail(f"group {group:#06x} is not a private (odd) group",
                                      entry.key_lines["group"])
            keeps.append(PrivateKeepSpec(creator, offset, group, line))
    return PrivateSpec(default=default, keep_creators=tuple(creators), keep=tuple(keeps))


def _parse_add(reader: _Reader, root: LineDict) -> tuple[AddSpec, ...]:
    items = reader.sequence(root["add"], "'add'", root.key_lines["add"])
    specs = []
    for item, line in zip(items, items.item_lines, strict=True):
        entry = reader.mapping(item, "an 'add' entry", line)
        reader.only_keys(entry, ("tag", "keyword", "creator", "group", "element", "vr", "value"),
                         "an 'add' entry")
        if "value" not in entry:
            raise reader.fail("'add' entry needs 'value'", line)
        vr = entry.get("vr")
        if vr is not None:
            vr = reader.string(vr, "'vr'", entry.key_lines["vr"])
        if "creator" in entry:
            for needed in ("group", "element", "vr"):
                if needed not in entry:
                    raise reader.fail(f"private 'add' entry needs '{needed}'", line)
            group = reader.integer(entry["group"], "'group'", entry.key_lines["group"], 0xFFFF)
            if group % 2 == 0:
                raise reader.fail(f"group {group:#06x} is not a private (odd) group",
                                  entry.key_lines["group"])
            offset = reader.integer(entry["element"], "'element'", entry.key_lines["element"],
                                    0xFF)
            creator = reader.string(entry["creator"], "'creator'", entry.key_lines["creator"])
            specs.append(AddSpec(None, vr, entry["value"], creator, group, offset, line))
            continue
        key = entry.get("tag", entry.get("keyword"))
        if key is None:
            raise reader.fail("'add' entry needs 'tag', 'keyword' or 'creator'", line)
        target, _ = reader.target(key, line)
        if isinstance(target, TagPattern):
            raise reader.fail("'add' needs a single tag, not a pattern", line)
        specs.append(AddSpec(target, vr, entry["value"], None, None, None, line))
    return tuple(specs)
