"""Validated spec -> compiled, frozen :class:`~anonymizer.rules.CompiledProfile`.

Resolves ``extends`` chains, the PS3.15 Table E.1-1 base layer and its options,
and precedence (asking :mod:`anonymizer.precedence`), once. Every error is a
:class:`ProfileError` naming file:line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from anonymizer import standard
from anonymizer.actions import Action, ByType, Empty, Keep, Remove, Replace, simple_action
from anonymizer.errors import ProfileError
from anonymizer.precedence import (
    Level,
    application_order,
    deciding_option,
    pattern_order,
    winner,
)
from anonymizer.profiles import sections as settings_mod
from anonymizer.profiles.spec import (
    ACTION_NAMES,
    ActionSpec,
    Located,
    ProfileSpec,
    parse_profile,
)
from anonymizer.rules import (
    Addition,
    CompiledProfile,
    PrivateElementKey,
    PrivatePolicy,
    Rule,
    pattern_winner,
)
from anonymizer.tags import (
    OVERLAY_DATA,
    OVERLAY_GROUP,
    PATIENT_AGE,
    PATIENT_BIRTH_DATE,
    VALID_VRS,
    TagPattern,
    dictionary_vr,
    format_tag,
)
from anonymizer.transforms import MEASURED_VALUE_SEQUENCE, CapAge, CapBirthDate, CapMeasuredAge

BUILTIN_PACKAGE = "anonymizer.builtin_profiles"
_MUTUALLY_EXCLUSIVE = ("retain_longitudinal_full_dates", "retain_longitudinal_modified_dates")
_VRS = VALID_VRS


def builtin_profile_names() -> list[str]:
    """Names of the profiles shipped in ``profiles/``."""
    folder = resources.files(BUILTIN_PACKAGE)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_source(reference: str, relative_to: Path | None) -> tuple[str, str, Path | None]:
    """Find a profile by built-in name or path: (text, display source, real path)."""
    candidate = Path(reference)
    if relative_to is not None and not candidate.is_absolute():
        candidate = relative_to / candidate
    if reference.endswith((".yaml", ".yml")) or "/" in reference or candidate.is_file():
        try:
            return candidate.read_text(encoding="utf-8"), str(candidate), candidate.resolve()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ProfileError(f"cannot read profile: {reason}", str(candidate)) from None
    builtin = resources.files(BUILTIN_PACKAGE) / f"{reference}.yaml"
    if builtin.is_file():
        return builtin.read_text(encoding="utf-8"), f"{reference} (built-in)", None
    known = ", ".join(builtin_profile_names())
    raise ProfileError(f"no such profile {reference!r} (built-in: {known}; or give a path)")


@dataclass
class _Layers:
    """The merged, not yet frozen state of a profile chain (parent first)."""

    name: str = ""
    version: str = "1"
    description: str = ""
    source: str = ""
    standard: bool = False
    options: list[str] = field(default_factory=list)
    tag_rules: dict[int, Rule] = field(default_factory=dict)
    patterns: list[tuple[TagPattern, Rule]] = field(default_factory=list)
    vr_rules: dict[str, Rule] = field(default_factory=dict)
    default: Rule = field(default_factory=lambda: Rule(simple_action("K"), "built-in default",
                                                       Level.DEFAULT))
    private_keep_all: bool = False
    private_keep: list[tuple[PrivateElementKey, str]] = field(default_factory=list)
    additions: list[Addition] = field(default_factory=list)
    layout: str | None = None
    sections: dict[str, Any] = field(default_factory=dict)


def load_profile(reference: str) -> CompiledProfile:
    """Load, validate and compile a profile by built-in name or path.

    Raises
    ------
    ProfileError
        One line with file:line and what is wrong.
    """
    layers = _load_layers(reference, None, ())
    return _freeze(layers)


def _load_layers(reference: str, relative_to: Path | None, stack: tuple[str, ...]) -> _Layers:
    text, source, real = _read_source(reference, relative_to)
    identity = str(real) if real is not None else f"builtin:{reference}"
    if identity in stack:
        raise ProfileError(f"cycle in 'extends': {' -> '.join(stack + (identity,))}", source)
    spec = parse_profile(text, source)
    if spec.extends is not None:
        base_dir = real.parent if real is not None else None
        try:
            layers = _load_layers(spec.extends.value, base_dir, stack + (identity,))
        except ProfileError as exc:
            if exc.line is None:  # name the 'extends' line that led to the problem
                message = exc.message if exc.source is None else f"{exc.source}: {exc.message}"
                raise ProfileError(message, source, spec.extends.line) from None
            raise
    else:
        layers = _Layers()
    _overlay(layers, spec)
    return layers


def _fail(spec: ProfileSpec, message: str, line: int | None) -> ProfileError:
    return ProfileError(message, spec.source, line)


def _overlay(layers: _Layers, spec: ProfileSpec) -> None:
    """Apply one profile's spec on top of its parent's layers."""
    origin = f"profile {spec.name}"
    layers.name, layers.version, layers.source = spec.name, spec.version, spec.source
    layers.description = spec.description or layers.description
    if spec.standard is not None:
        layers.standard = True
    for option in spec.options:
        if option.value in standard.PIXEL_OPTIONS:
            raise _fail(spec, f"option {option.value!r} acts on pixel data: say how in the "
                        "'pixels' section (ocr: blank, regions) instead of 'options'",
                        option.line)
        if option.value not in standard.OPTIONS:
            raise _fail(spec, f"unknown option {option.value!r} (known: "
                        f"{', '.join(standard.OPTIONS)})", option.line)
        if not layers.standard:
            raise _fail(spec, "options need the PS3.15 base: add 'standard: ps3.15' or "
                        "extend a profile that has it", option.line)
        if option.value not in layers.options:
            layers.options.append(option.value)
    if all(o in layers.options for o in _MUTUALLY_EXCLUSIVE):
        line = next((o.line for o in reversed(spec.options) if o.value in _MUTUALLY_EXCLUSIVE),
                    None)
        raise _fail(spec, "options retain_longitudinal_full_dates and "
                    "retain_longitudinal_modified_dates exclude each other", line)
    if spec.default is not None:
        layers.default = Rule(simple_action("K" if spec.default.value == "keep" else "X"),
                              f"{origin} default", Level.DEFAULT)
    for vr, action in spec.by_vr:
        if vr not in _VRS:
            raise _fail(spec, f"unknown VR {vr!r} in 'by_vr'", action.line)
        built = _build_action(spec, ACTION_NAMES[action.value], None, None, vr, action.line)
        why = f"{origin} by VR {vr}"
        if isinstance(built, Remove):
            # A VR says nothing about the IOD: removing by VR alone would drop Type 1 labels
            # (SegmentLabel, an SR TEXT item's TextValue) and Type 2 descriptions, so the
            # removal resolves by the attribute's Type like the standard's X/Z/D.
            built, why = ByType("X/Z/D"), f"{why}: remove; Type 1 -> dummy, Type 2 -> empty"
        layers.vr_rules[vr] = Rule(built, why, Level.BY_VR)
    # Ties within a level (precedence.STEPS): a child's rule replaces its parent's, the entry
    # that must win within this profile is applied last, its patterns go before the parent's.
    ordered = sorted(spec.actions, key=lambda a: application_order(a.by_keyword, a.line))
    new_patterns = []
    for entry in ordered:
        if isinstance(entry.target, TagPattern):
            rule = Rule(_entry_action(spec, entry, None), f"{origin} pattern {entry.target.text}",
                        Level.PROFILE_PATTERN)
            new_patterns.append((entry.target, rule))
        else:
            kind = "keyword" if entry.by_keyword else "tag"
            layers.tag_rules[entry.target] = Rule(_entry_action(spec, entry, entry.target),
                                                  f"{origin} {kind} {entry.key}",
                                                  Level.PROFILE_TAG)
    new_patterns.sort(key=lambda pr: pattern_order(pr[0].specificity))
    layers.patterns[:0] = new_patterns
    if spec.private is not None:
        if spec.private.default is not None:
            layers.private_keep_all = spec.private.default.value == "keep"
        for creator in spec.private.keep_creators:
            layers.private_keep.append((PrivateElementKey(creator.value),
                                        f"{origin} keep_creators"))
        for keep in spec.private.keep:
            layers.private_keep.append((PrivateElementKey(keep.creator, keep.offset, keep.group),
                                        f"{origin} private keep"))
    for add in spec.add:
        layers.additions.append(_build_addition(spec, add))
    if spec.layout is not None:
        layers.layout = _checked_layout(spec, spec.layout)
    for key, section in spec.sections.items():
        layers.sections.setdefault(key, {}).update(
            settings_mod.parse_section(key, section, spec.source))


def _checked_layout(spec: ProfileSpec, layout: Located) -> str:
    """The profile's ``layout:``, checked here so a bad one is a FILE:LINE error of
    ``profiles check``, not a failure when a run starts."""
    # Imported here: the pipeline package imports this one.
    from anonymizer.pipeline.layout import check_layout

    try:
        return check_layout(layout.value)
    except ValueError as exc:
        raise _fail(spec, f"layout {layout.value!r}: {exc}", layout.line) from None


def _entry_action(spec: ProfileSpec, entry: ActionSpec, tag: int | None) -> Action:
    vr = dictionary_vr(tag) if tag is not None else None
    if isinstance(entry.target, TagPattern) and entry.target.mask & entry.target.value \
            & 0x10000:
        raise _fail(spec, f"{entry.key}: private groups are addressed by creator under "
                    "'private:', never by tag pattern", entry.line)
    if tag is not None and tag >> 16 & 1:
        raise _fail(spec, f"{entry.key}: private tags are addressed by creator under "
                    "'private:', never by raw tag number", entry.line)
    if entry.action == "replace":
        if vr is None:
            raise _fail(spec, f"{entry.key}: replace needs a standard tag with a known VR",
                        entry.line)
        try:
            return Replace.checked(entry.param, vr)
        except ValueError as exc:
            raise _fail(spec, f"{entry.key}: value {entry.param!r} is not valid for VR {vr}: "
                        f"{exc}", entry.line) from None
    code = "P" if entry.action == "pseudonym" else ACTION_NAMES[entry.action]
    return _build_action(spec, code, entry.param, tag, vr, entry.line)


def _build_action(spec: ProfileSpec | None, code: str, param: Any, tag: int | None,
                  vr: str | None, line: int | None, option: str | None = None) -> Action:
    """Action object for a code from a profile entry or a Table E.1-1 cell."""
    from anonymizer import transforms

    try:
        if code in ("C", "P", "S"):
            return transforms.action_for(code, param, tag, vr, option)
        return simple_action(code)
    except ValueError as exc:
        source = spec.source if spec is not None else None
        what = format_tag(tag) if tag is not None else "action"
        raise ProfileError(f"{what}: {exc}", source, line) from None


def _build_addition(spec: ProfileSpec, add: Any) -> Addition:
    if add.creator is not None:
        if add.vr not in _VRS:
            raise _fail(spec, f"unknown VR {add.vr!r}", add.line)
        checked = _checked_value(spec, add.value, add.vr, add.line)
        return Addition(None, add.vr, checked, add.creator, add.group, add.offset)
    vr = add.vr or dictionary_vr(add.tag)
    if vr is None:
        raise _fail(spec, f"{format_tag(add.tag)}: 'add' needs 'vr' for an unknown tag",
                    add.line)
    return Addition(add.tag, vr, _checked_value(spec, add.value, vr, add.line))


def _checked_value(spec: ProfileSpec, value: Any, vr: str, line: int) -> Any:
    try:
        return Replace.checked(value, vr).value
    except ValueError as exc:
        raise _fail(spec, f"value {value!r} is not valid for VR {vr}: {exc}", line) from None


def _standard_layer(options: list[str]) -> tuple[dict[int, Rule], list[tuple[TagPattern, Rule]]]:
    """Rules from PS3.15 Table E.1-1: Basic Profile code, overridden by each option's code."""
    from anonymizer.tags import parse_tag_text

    tag_rules: dict[int, Rule] = {}
    patterns: list[tuple[TagPattern, Rule]] = []
    for row in standard.confidentiality_rows():
        option = deciding_option(row.options, options)
        code = row.basic if option is None else row.options[option]
        origin = "PS3.15 Basic Profile" if option is None else f"option {option}"
        target = row.tag_int if row.tag_int is not None else parse_tag_text(row.tag)
        if target is None:  # the private-attributes row: handled by PrivatePolicy
            continue
        tag = target if isinstance(target, int) else None
        vr = dictionary_vr(tag) if tag is not None else None
        if isinstance(target, TagPattern):
            vr = dictionary_vr(target.value)
        action = _build_action(None, code, None, tag, vr, None, option)
        if isinstance(target, TagPattern):
            patterns.append((target, Rule(action, f"{origin} ({row.name})", Level.TABLE_PATTERN)))
        else:
            level = Level.BASIC_PROFILE if option is None else Level.OPTION
            tag_rules[target] = Rule(action, f"{origin} ({row.name})", level)
    return tag_rules, patterns


def _freeze(layers: _Layers) -> CompiledProfile:
    std_tags: dict[int, Rule] = {}
    patterns = list(layers.patterns)
    safe: dict[tuple[int, str, int], str] = {}
    method_codes: list[standard.MethodCode] = []
    if layers.standard:
        std_tags, std_patterns = _standard_layer(layers.options)
        patterns += std_patterns
        method_codes = [standard.method_code(o) for o in ("basic", *layers.options)]
        if "retain_safe_private" in layers.options:
            safe = {key: attr.vr for key, attr in standard.safe_private_attributes().items()}
    patterns += _whole_overlay_group(patterns)
    # Per tag the winner among the tag-specific levels, so the table (and profiles show)
    # says what decides; the profile's own patterns compete here as they do in a lookup.
    tag_rules: dict[int, Rule] = {}
    for tag in (*std_tags, *layers.tag_rules):
        rule = winner((layers.tag_rules.get(tag), pattern_winner(layers.patterns, tag),
                       std_tags.get(tag)))
        assert rule is not None
        tag_rules[tag] = rule
    settings = settings_mod.freeze_settings(layers.sections, _dates_modified(layers, tag_rules))
    age = tag_rules.get(PATIENT_AGE)
    if age is not None and isinstance(age.action, Keep):
        tag_rules[PATIENT_AGE] = Rule(CapAge(), age.origin + ", HIPAA age cap", age.level)
    if settings.age_cap is not None:
        _cap_other_ages(tag_rules, patterns, layers)
    return CompiledProfile(
        name=layers.name, version=layers.version, description=layers.description,
        source=layers.source, tag_rules=tag_rules, pattern_rules=tuple(patterns),
        vr_rules=dict(layers.vr_rules), default_rule=layers.default,
        private=PrivatePolicy(keep_all=layers.private_keep_all,
                              keep=tuple(layers.private_keep), safe=safe,
                              value_rules=_private_value_rules(layers.vr_rules)),
        additions=tuple(layers.additions), options=tuple(layers.options),
        method_codes=tuple(method_codes), layout=layers.layout,
        settings=settings,
    )


#: VRs of kept private values that are handled as the profile handles public ones
_PRIVATE_LIKE_PUBLIC_VRS = ("UI", "DA", "DT", "TM")
#: VRs of kept private values that are cleaned (free text scrubbed, AE pseudonymised)
_PRIVATE_CLEANED_VRS = ("AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT")


def _private_value_rules(vr_rules: dict[str, Rule]) -> dict[str, Rule]:
    """How a private value kept by creator is de-identified, by its VR: like a public
    value of that VR (UIDs remapped, dates shifted or removed as ``by_vr`` says), text
    cleaned rather than removed (it was kept on purpose); other VRs stay as they are."""
    from anonymizer.transforms import action_for

    rules = {vr: Rule(vr_rules[vr].action, f"kept private value: as {vr_rules[vr].origin}",
                      Level.BY_VR)
             for vr in _PRIVATE_LIKE_PUBLIC_VRS if vr in vr_rules}
    rules.setdefault("UI", Rule(simple_action("U"), "kept private value: UIDs remapped",
                                Level.DEFAULT))
    for vr in _PRIVATE_CLEANED_VRS:
        rules[vr] = Rule(action_for("C", None, None, vr, None), "kept private value: cleaned",
                         Level.DEFAULT)
    return rules


def _whole_overlay_group(patterns: list[tuple[TagPattern, Rule]]) -> list[tuple[TagPattern, Rule]]:
    """A rule removing every element of an overlay group when Overlay Data is removed.

    Overlay Rows, Columns, Type, Origin... without Overlay Data leave a half Overlay Plane
    module whose Type 1 Overlay Data is missing; without them the optional module is simply
    absent. Appended last, so any more specific overlay pattern still decides first.
    """
    rule = pattern_winner(patterns, OVERLAY_DATA)
    if rule is None or not isinstance(rule.action, Remove):
        return []
    return [(OVERLAY_GROUP, Rule(Remove(), f"{rule.origin}: the whole overlay group goes",
                                 Level.OVERLAY_GROUP))]


def _cap_other_ages(tag_rules: dict[int, Rule], patterns: list[tuple[TagPattern, Rule]],
                    layers: _Layers) -> None:
    """What else tells a capped age follows the cap: a kept or shifted birth date (with
    the study date it gives the age) and the age concepts of kept SR content."""
    birth = tag_rules.get(PATIENT_BIRTH_DATE)
    if birth is not None and not isinstance(birth.action, Remove | Empty):
        tag_rules[PATIENT_BIRTH_DATE] = Rule(CapBirthDate(birth.action),
                                             birth.origin + ", HIPAA age cap", birth.level)
    measured = winner((tag_rules.get(MEASURED_VALUE_SEQUENCE),
                       pattern_winner(patterns, MEASURED_VALUE_SEQUENCE),
                       layers.vr_rules.get("SQ"), layers.default))
    assert measured is not None  # the default always competes
    if isinstance(measured.action, Keep):
        tag_rules[MEASURED_VALUE_SEQUENCE] = Rule(CapMeasuredAge(),
                                                  measured.origin + ", HIPAA age cap",
                                                  measured.level)


def _dates_modified(layers: _Layers, tag_rules: dict[int, Rule]) -> str | None:
    """LongitudinalTemporalInformationModified as the dates are treated, or None if unknown."""
    from anonymizer.transforms import ShiftDate

    if any(isinstance(rule.action, ShiftDate) for rule in tag_rules.values()):
        return "MODIFIED"
    if "retain_longitudinal_full_dates" in layers.options:
        return "UNMODIFIED"
    return "REMOVED" if layers.standard else None
