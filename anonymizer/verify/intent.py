"""What a profile keeps or writes on purpose, so that ``verify`` tells it from a residual.

Two things in an output can match an input's identifier and still be the profile's
choice rather than a failure to remove it:

- a value the profile's rules keep as it is (its action is ``keep``), found where the
  input had the very same value: Station Name under Retain Device Identity, a code
  meaning of an SR that happens to be a patient's surname;
- the tool's own text: the fixed part of a pseudonym format (``ANON-``), placeholders
  (``[NAME]``), dummies, added values, the de-identification stamp, the implementation
  version in the file meta; written into every output, it discloses nothing, even
  when an input's value happens to read the same (a test file named ``Name^Test``).
"""

from __future__ import annotations

import string
from collections.abc import Iterator

from pydicom.dataset import Dataset

from anonymizer.actions import DUMMY_BY_VR, Keep, Replace
from anonymizer.elements import element_strings, stored
from anonymizer.engine import PLACEHOLDERS, stamp_elements
from anonymizer.io.writer import IMPLEMENTATION_VERSION_NAME
from anonymizer.rules import CompiledProfile
from anonymizer.transforms import Pseudonym

FILE_META_GROUP = 0x0002


class ProfileIntent:
    """The elements a profile keeps and the text it writes.

    Parameters
    ----------
    profile : CompiledProfile
        The profile the output was made with.
    """

    def __init__(self, profile: CompiledProfile):
        self.profile = profile
        #: the tool's own text, lower case (matched case-insensitively)
        self.texts = tuple(sorted({t.lower() for t in _written_texts(profile)
                                   if len(t.strip()) >= 2}))

    def keeps(self, tag: int, vr: str) -> bool:
        """Whether the profile's rules keep this (non-private) element as it is."""
        if tag >> 16 == FILE_META_GROUP:
            rule = self.profile.explicit_rule(tag)
            return rule is not None and type(rule.action) is Keep
        return type(self.profile.rule_for(tag, vr).action) is Keep

    def wrote(self, text: str, start: int, end: int) -> bool:
        """Whether ``text[start:end]`` lies inside text the profile writes itself."""
        lowered = text.lower()
        for written in self.texts:
            at = lowered.find(written, max(0, end - len(written)))
            while 0 <= at <= start:
                if at + len(written) >= end:
                    return True
                at = lowered.find(written, at + 1)
        return False


def _written_texts(profile: CompiledProfile) -> Iterator[str]:
    yield IMPLEMENTATION_VERSION_NAME
    yield from PLACEHOLDERS.values()
    yield from (v for v in DUMMY_BY_VR.values() if isinstance(v, str))
    formats = [profile.settings.pseudonym_format]
    for rule in profile.tag_rules.values():
        action = rule.action
        if isinstance(action, Pseudonym) and action.fmt:
            formats.append(action.fmt)
        elif isinstance(action, Replace) and isinstance(action.value, str):
            yield action.value
    for fmt in formats:  # the fixed text around {hash:N} and {patient_id}
        yield from (literal for literal, *_ in string.Formatter().parse(fmt))
    yield from (str(a.value) for a in profile.additions)
    stamp = Dataset()
    stamp._dict.update(stamp_elements(profile))
    yield from _strings(stamp)


def _strings(ds: Dataset) -> Iterator[str]:
    for tag, elem in stored(ds).items():
        if elem.VR == "SQ":
            for item in ds[tag].value:
                yield from _strings(item)
        else:
            yield from element_strings(elem, ds)
