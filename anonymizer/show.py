"""``anonymizer profiles show``: the compiled rules, optionally resolved for one SOP Class."""

from __future__ import annotations

from pydicom.datadict import keyword_for_tag
from pydicom.uid import UID_dictionary

from anonymizer import precedence, standard
from anonymizer.actions import ByType
from anonymizer.errors import UsageError
from anonymizer.rules import CompiledProfile
from anonymizer.tags import format_tag

_SHORT_NAMES = {"CT": "CT Image Storage", "MR": "MR Image Storage",
                "US": "Ultrasound Image Storage", "CR": "Computed Radiography Image Storage",
                "DX": "Digital X-Ray Image Storage - For Presentation",
                "MG": "Digital Mammography X-Ray Image Storage - For Presentation",
                "PT": "Positron Emission Tomography Image Storage",
                "NM": "Nuclear Medicine Image Storage", "SC": "Secondary Capture Image Storage",
                "SR": "Basic Text SR Storage", "SEG": "Segmentation Storage",
                "RTSTRUCT": "RT Structure Set Storage", "RTPLAN": "RT Plan Storage"}


def resolve_sop_class(text: str) -> str:
    """A SOP Class UID from a UID, a short modality name (CT, MR...) or a full name."""
    name = _SHORT_NAMES.get(text.upper(), text)
    if standard.known_sop_class(text):
        return text
    for uid, entry in UID_dictionary.items():
        if entry[1] == "SOP Class" and entry[0].lower() == name.lower():
            return uid
    raise UsageError(f"unknown SOP Class {text!r} (give a UID, a storage SOP Class name, or one "
                     f"of {', '.join(_SHORT_NAMES)})")


def show_profile(profile: CompiledProfile, sop_class: str | None = None) -> list[str]:
    """Lines of ``profiles show``: the precedence of rule levels (with how many of the
    profile's rules compete at each), then every rule with what decided it.

    With ``sop_class``, combined codes (X/Z/D...) are shown resolved by the attribute's
    Type at the top level of that SOP Class's IOD.
    """
    ordering = precedence.describe(profile.level_counts())
    if sop_class is None:
        return [*profile.describe_header(), *ordering, *profile.describe_rules()]
    uid = resolve_sop_class(sop_class)
    name = UID_dictionary.get(uid, (uid,))[0]
    lines = [f"profile {profile.name} {profile.version} resolved for {name} ({uid}), top level",
             *ordering]
    for tag in sorted(profile.tag_rules):
        rule = profile.tag_rules[tag]
        action = rule.action
        text = action.describe()
        if isinstance(action, ByType):
            attribute_type = standard.attribute_type(uid, tag, ())
            text = f"{action.resolve(attribute_type).describe()} (Type {attribute_type or '?'}, " \
                   f"{action.combined})"
        lines.append(f"{format_tag(tag)} {keyword_for_tag(tag) or '?':40} {text}  [{rule.origin}]")
    return lines
