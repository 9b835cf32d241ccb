"""Apply a compiled profile to a pydicom Dataset, recursing into every sequence item.

The engine walks element tags, looks up one precomputed rule per tag and lets the
rule's action change the element in place. Values are only decoded where an action
needs them (kept and removed elements stay raw bytes). Private elements are decided
by creator and offset within the creator's block, wherever the block sits.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import struct
from collections import Counter
from dataclasses import dataclass, field

from pydicom.charset import decode_bytes, encode_string
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import PIXEL_KEYWORDS, Dataset
from pydicom.sequence import Sequence

from anonymizer import __version__, scrub, standard
from anonymizer.actions import TEXT_VRS, Action, Keep, Remove, set_value
from anonymizer.elements import (
    Mutations,
    add_private,
    element_key,
    element_strings,
    remove,
    set_encoded,
    store,
    stored,
    text_value,
    undeclared_items,
)
from anonymizer.errors import DeidentificationError
from anonymizer.keyed import KeyedSource
from anonymizer.pixels.stage import PixelOutcome, PixelStage
from anonymizer.reasons import tag_label
from anonymizer.rules import CompiledProfile
from anonymizer.tags import (
    CONTENT_SEQUENCE,
    LONG_LENGTH_VRS,
    OVERLAY_GROUP,
    PATIENT_AGE,
    PATIENT_BIRTH_DATE,
    VALID_VRS,
    dictionary_vm,
    dictionary_vr,
    format_tag,
)
from anonymizer.transforms import CapAge, CapBirthDate, Pseudonym, oldest_age, render_format

PATIENT_ID = 0x00100020
SOP_INSTANCE_UID = 0x00080018
#: JPIP Referenced (Deflate) and their HTJ2K forms: the pixels are not in the file but
#: behind Pixel Data Provider URL (Type 1C there), on the sender's server.
JPIP_REFERENCED = frozenset({"1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95",
                             "1.2.840.10008.1.2.4.204", "1.2.840.10008.1.2.4.205"})

@dataclass
class EngineResult:
    """What the engine did to one dataset: for the audit log (no values) and the crosswalk."""

    acted: list[tuple[str, str]] = field(default_factory=list)  # (tag path, code)
    counts: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    #: (keyword, original, pseudonym, derived from the value's own hash): PHI, kept in
    #: memory for the crosswalk and the collision check only, never logged.
    pseudonyms: list[tuple[str, str, str, bool]] = field(default_factory=list)
    date_offset_days: int | None = None
    #: every change made to the dataset, by top-level element: the splice writer copies
    #: from the input only what this says is untouched
    changes: Mutations | None = None
    study_uid_map: tuple[str, str] | None = None
    #: what the pixel stage did (counts and rule names for the audit log)
    pixels: PixelOutcome = field(default_factory=PixelOutcome)


@functools.lru_cache(maxsize=1 << 16)
def judged_vr(tag: int, stored_vr: str | None) -> str:
    """The VR an element is judged by: its own if valid (private elements), else the
    dictionary's; ``"UN"`` for a tag the dictionary does not know."""
    if tag >> 16 & 1:
        return stored_vr if stored_vr in VALID_VRS else "UN"
    known = dictionary_vr(tag)
    if known is None:
        return "UN"  # not in the dictionary: its content cannot be judged by its VR
    if stored_vr is None or stored_vr == "UN" or stored_vr not in VALID_VRS:
        return known  # no VR, or one a corrupt file made up: the dictionary's
    return stored_vr


def _misparsed(raw: RawDataElement) -> bool:
    """Whether pydicom read this element leniently past a structural error.

    pydicom reads a VR it does not know (a flipped or inserted byte: ``"C\\x00"``) with a
    2-byte length, and a VR that is not two letters as the start of implicit VR encoding
    (the element then has no VR although its dataset is explicit). Either way the
    lengths that follow are guesses: one element can swallow the rest of the header
    (names, IDs) as its value, and its rule (by the dictionary's VR) may keep it.
    """
    vr = raw.VR
    if vr in VALID_VRS:  # the common case, first: nothing to doubt
        return False
    if vr is None:
        return raw.is_implicit_VR is False
    return len(vr) == 2


def _check_plausible(tag: int, vr: str | None, elem: object) -> None:
    """Fail a value read from the file that cannot be what its VR says: a length
    corrupted upwards.

    Such an element swallows the elements after it (names and IDs included) as its
    value, the parse goes on where its new length ends, and whatever the rule does
    with the element (keep it, or transform it: a clean or a pseudonym sees only part
    of the swallowed values) would carry them to the output. Checked for every element
    whose rule does not simply remove it.
    Caught here: a text value with a NUL byte inside it (element headers have them, text
    does not: none of the ~11,000 text values in pydicom's test files), a number whose
    dictionary VM is 1 with more bytes than one number (none of ~1,900 there), and any
    other value that ends in encoded elements (:func:`_ends_in_elements`).
    """
    if not isinstance(elem, RawDataElement) or not isinstance(elem.value, bytes):
        return
    if vr in TEXT_VRS:
        value = elem.value
        nul = value.find(b"\x00")
        if nul != -1 and value[nul:].strip(b"\x00 "):
            raise DeidentificationError(f"corrupt: text element {tag_label(tag)} holds "
                                        "binary data (a wrong length?)")
    elif vr in _NUMBER_SIZE and elem.length not in (0, _NUMBER_SIZE[vr]) \
            and not tag >> 16 & 1 and dictionary_vm(tag) == "1":
        raise DeidentificationError(f"corrupt: element {tag_label(tag)} holds {elem.length} "
                                    f"bytes for one {vr} value (a wrong length?)")
    elif vr != "SQ" and elem.length >= 8 and tag not in PIXEL_KEYWORDS \
            and _ends_in_elements(tag, elem.value):
        raise DeidentificationError(f"corrupt: element {tag_label(tag)} ends in encoded "
                                    "elements (a wrong length?)")


_NUMBER_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "AT": 4, "FD": 8, "SV": 8, "UV": 8}
_HEADER = struct.Struct("<HH2sH")
_UL = struct.Struct("<I")
_VR_BYTES = frozenset(vr.encode() for vr in VALID_VRS)
_LONG_VR_BYTES = frozenset(vr.encode() for vr in LONG_LENGTH_VRS)
#: Where an explicit VR element header could start: 4 bytes before two VR letters.
_VR_LETTERS = re.compile(b"(?=(?:" + b"|".join(sorted(_VR_BYTES)) + b"))")


def _ends_in_elements(tag: int, value: bytes) -> bool:
    """Whether ``value`` ends in explicit VR elements that follow ``tag``: what a binary
    value whose length was corrupted upwards holds when the parse went on cleanly after
    it. Element headers chained to exactly the end of the value, with tags rising from
    ``tag``, do not happen by chance (none in the ~2,300 binary values of pydicom's test
    files and of 200 bench corpus files, CSA headers included)."""
    size = len(value)
    for match in _VR_LETTERS.finditer(value, 4):
        position, previous = match.start() - 4, tag
        while position + 8 <= size:
            group, element, vr, length = _HEADER.unpack_from(value, position)
            following = group << 16 | element
            if vr not in _VR_BYTES or following <= previous:
                break
            position += 8
            if vr in _LONG_VR_BYTES:
                if length or position + 4 > size:
                    break
                (length,) = _UL.unpack_from(value, position)
                position += 4
            position += length
            previous = following
            if position == size:
                return True
    return False


def subject_key(ds: Dataset) -> str:
    """What identifies the file's patient: the key of its pseudonym and date offset.

    The Patient ID, as it always was (so existing pseudonyms and offsets stay), else
    ``PatientName+PatientBirthDate\\NAME\\DATE`` when both are there, else
    ``StudyInstanceUID\\UID`` (one subject per study), else ``SOPInstanceUID\\UID`` (one
    per file; the file meta's Media Storage SOP Instance UID if need be): files of one
    ID-less patient may be split, different patients are never merged. A backslash
    separates values in DICOM, so no single Patient ID can equal the fallback keys.

    Raises
    ------
    DeidentificationError
        When the file has none of these (no subject can be told apart).
    """
    patient_id = text_value(ds, "PatientID").strip()
    if patient_id:
        return patient_id
    name, birth = text_value(ds, "PatientName").strip(), text_value(ds, "PatientBirthDate").strip()
    if name and birth:
        return f"PatientName+PatientBirthDate\\{name}\\{birth}"
    for keyword in ("StudyInstanceUID", "SOPInstanceUID"):
        uid = text_value(ds, keyword).strip()
        if uid:
            return f"{keyword}\\{uid}"
    meta = ds.get("file_meta") if hasattr(ds, "file_meta") else None
    uid = text_value(meta, "MediaStorageSOPInstanceUID").strip() if meta is not None else ""
    if uid:  # a dataset cut short may have lost its own
        return f"SOPInstanceUID\\{uid}"
    raise DeidentificationError("no Patient ID, Patient's Name with Birth Date, Study or SOP "
                                "Instance UID to tell this file's patient apart")


class FileContext:
    """Per-file state handed to actions: key, settings, SOP class, path, originals."""

    def __init__(self, profile: CompiledProfile, keyed: KeyedSource, ds: Dataset):
        self.changes = Mutations(ds)
        self.profile = profile
        self.keyed = keyed
        self.settings = profile.settings
        self.sop_class_uid = text_value(ds, "SOPClassUID")
        self.path: tuple[int, ...] = ()
        self.result = EngineResult(changes=self.changes)
        #: every identifier of the file at any depth, read before anything changes
        self.identifiers = scrub.collect(ds)
        # The subject is read now, before the walk replaces the values it is read from
        # (an error only where a pseudonym or an offset needs it).
        try:
            self._subject: str | DeidentificationError = subject_key(ds)
        except DeidentificationError as exc:
            self._subject = exc
        self._new_patient_id: str | None = None
        self._offset: int | None = None
        self._pseudonyms: dict[tuple[str, str], str] = {}
        # Judged now, from the original values: the walk shifts the study date before it
        # reaches the birth date, and caps one SR age before it reads the next. Only where
        # something follows the cap: the Basic Profile removes age, birth date and SR content.
        cap, rule = self.settings.age_cap, profile.explicit_rule
        judged = cap is not None and (
            isinstance(getattr(rule(PATIENT_AGE), "action", None), CapAge)
            or isinstance(getattr(rule(PATIENT_BIRTH_DATE), "action", None), CapBirthDate)
            or CONTENT_SEQUENCE in stored(ds)
            and not isinstance(profile.rule_for(CONTENT_SEQUENCE, "SQ").action, Remove))
        oldest = oldest_age(ds) if judged else None
        self._over_age_cap = oldest is not None and cap is not None and oldest > cap

    def element_vr(self, ds: Dataset, tag: int) -> str:
        """VR of ``tag`` in ``ds`` without decoding its value."""
        return judged_vr(tag, stored(ds)[element_key(tag)].VR)

    def pseudonym(self, keyword: str, original: str, fmt: str | None) -> str:
        """Keyed pseudonym of ``original`` (the lookup table first), consistent across runs."""
        cached = self._pseudonyms.get((keyword, original))
        if cached is not None:
            return cached
        lookup = self.settings.lookup
        new = lookup.get(keyword, original) if lookup is not None else None
        hashed = new is None
        if new is None:
            if lookup is not None and self.settings.on_missing == "fail" \
                    and lookup.covers(keyword):
                # not the table's path: a file name may be PHI too (a per-file reason
                # names only fixed parts, anonymizer/reasons.py)
                raise DeidentificationError(f"{keyword}: value not in the lookup table")
            digest = self.keyed.hexdigest("pseudonym", original, 64)
            fmt = fmt or self.settings.pseudonym_format
            patient = None
            if "{patient_id}" in fmt:
                patient, hashed = self.new_patient_id(), False
            hashed = hashed and "{hash" in fmt
            new = render_format(fmt, digest, patient)
        self._pseudonyms[(keyword, original)] = new
        self.result.pseudonyms.append((keyword, original, new, hashed))
        return new

    def subject(self) -> str:
        """The file's :func:`subject_key` (read before anything changed).

        Raises
        ------
        DeidentificationError
            When the file has nothing that tells its patient apart.
        """
        if isinstance(self._subject, DeidentificationError):
            raise self._subject
        return self._subject

    def new_patient_id(self) -> str:
        """The pseudonym of the file's patient: of its original top-level Patient ID, or of
        what else identifies an ID-less patient (:func:`subject_key`)."""
        if self._new_patient_id is None:
            rule = self.profile.explicit_rule(PATIENT_ID)
            fmt = rule.action.fmt if rule is not None and isinstance(rule.action, Pseudonym) \
                else None
            if fmt is not None and "{patient_id}" in fmt:
                fmt = None
            self._new_patient_id = self.pseudonym("PatientID", self.subject(), fmt)
        return self._new_patient_id

    def date_offset_days(self) -> int:
        """Whole days every date of this patient moves by: keyed by :func:`subject_key`."""
        if self._offset is None:
            low, high = self.settings.shift_days
            number = int.from_bytes(self.keyed.digest("date-shift", self.subject())[:8], "big")
            self._offset = low + number % (high - low + 1)
            self.result.date_offset_days = self._offset
        return self._offset

    def over_age_cap(self) -> bool:
        """Whether any age the file tells (:func:`~anonymizer.transforms.oldest_age`) is
        above the profile's cap: then every age and the birth date must not tell it."""
        return self._over_age_cap


    def remap_uids_in_text(self, ds: Dataset, tag: int, vr: str,
                           elem: DataElement | RawDataElement) -> bool:
        """Give the UIDs of this file written into a kept text value their keyed
        replacement (the original would link the output back to the source)."""
        value = elem.value
        if isinstance(value, bytes) and not scrub.may_hold_uid(value):
            return False
        texts = element_strings(elem, ds)
        uids = self.identifiers.uids
        new = [scrub.replace_uids(text, uids, self.keyed.uid) for text in texts]
        if new == texts:
            return False
        set_value(ds, tag, vr, new if len(new) > 1 else new[0])
        return True

    def clean_text(self, text: str) -> str:
        """``text`` with every identifier :mod:`anonymizer.scrub` finds in it replaced.

        Dates move by the patient's offset in the form they are written in where the
        profile shifts dates (kept where it keeps them unmodified, except the birth
        date); names and IDs become their pseudonym where the profile gives their
        attribute one; UIDs of the file their keyed replacement; anything else a
        placeholder such as ``[NAME]``.
        """
        findings = self.identifiers.find(text)
        if not findings:
            return text
        return scrub.replace_findings(text, findings, self._replacement)

    def _replacement(self, finding: scrub.Finding, matched: str) -> str:
        if finding.date is not None:
            return self._date_in_text(finding.date, matched)
        if finding.kind == scrub.UID:
            return self.keyed.uid(matched)
        if finding.kind in (scrub.NAME, scrub.ID):
            # a name two attributes share (the patient's, copied into a private one)
            # takes the pseudonym of whichever has one
            for source in finding.candidates or (finding.identifier,):
                tag = tag_for_keyword(source.keyword) if source is not None else None
                rule = self.profile.explicit_rule(tag) if tag is not None else None
                if source is not None and rule is not None \
                        and isinstance(rule.action, Pseudonym):
                    new = self.pseudonym(source.keyword, source.value.strip(), rule.action.fmt)
                    return new.split("^")[0] if finding.kind == scrub.NAME else new
        return PLACEHOLDERS[finding.kind]

    def _date_in_text(self, date: scrub.DateParts, matched: str) -> str:
        modified = self.settings.dates_modified
        if modified == "MODIFIED":
            try:
                shifted = date.date + dt.timedelta(days=self.date_offset_days())
            except OverflowError:
                return PLACEHOLDERS[scrub.DATE]
            return scrub.render_date(matched, date, shifted)
        if modified == "UNMODIFIED" and date.date not in self.identifiers.birth_dates:
            return matched
        return PLACEHOLDERS[scrub.DATE]


#: Text VRs a UID can be written into (checked when their element is kept).
_FREE_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})

#: What replaces an identifier found in text that has no pseudonym.
PLACEHOLDERS = {scrub.NAME: "[NAME]", scrub.ID: "[ID]", scrub.PLACE: "[PLACE]",
                scrub.PHONE: "[PHONE]", scrub.DATE: "[DATE]", scrub.EMAIL: "[EMAIL]",
                scrub.URL: "[URL]", scrub.SSN: "[SSN]", scrub.UID: "[UID]"}


class Engine:
    """Applies one :class:`CompiledProfile` with one key to datasets.

    Parameters
    ----------
    profile : CompiledProfile
        The compiled rules.
    keyed : KeyedSource
        The run's keyed source for UIDs, pseudonyms and date offsets.
    """

    def __init__(self, profile: CompiledProfile, keyed: KeyedSource):
        self.profile = profile
        self.keyed = keyed
        #: the same element objects stamped into every file (so writers can encode them once)
        self.stamp = stamp_elements(profile)
        #: burned-in text: searched for, cleaned, or the file failed
        self.pixels = PixelStage(profile.settings.pixels)
        #: (tag, stored VR) -> :meth:`_plan`'s answer
        self._plans: dict[tuple[int, str | None], tuple[str, Action, bool, bool]] = {}

    def deidentify(self, ds: Dataset,
                   scratch_dir: str | os.PathLike[str] | None = None) -> EngineResult:
        """De-identify ``ds`` (and its file meta) in place.

        ``scratch_dir`` is where cleaned Pixel Data too large for memory is built (best
        on the output's file system; the system's temporary folder by default).

        Raises
        ------
        DeidentificationError
            When the file cannot be fully de-identified (it must then not be written).
        """
        ctx = FileContext(self.profile, self.keyed, ds)
        # from the values as read, before the header rules
        pixels = self.pixels.plan(ds, ctx.identifiers)
        meta = ds.get("file_meta") if hasattr(ds, "file_meta") else None
        if meta is not None and text_value(meta, "TransferSyntaxUID").strip() in JPIP_REFERENCED:
            # Removing the URL leaves an image without pixels, keeping it points the
            # reader at pixels this tool never saw (burned-in text included).
            raise DeidentificationError("pixel data referenced by URL (JPIP transfer "
                                        "syntax): those pixels cannot be de-identified")
        original_study_uid = text_value(ds, "StudyInstanceUID")
        with ctx.changes.recording():  # every change below is recorded for the writer
            self._clean(ds, (), ctx)
            self._clean_file_meta(ds, ctx)
            self._add(ds)
            self._stamp(ds)
            ctx.result.pixels = self.pixels.apply(pixels, ds, scratch_dir)
        if original_study_uid:
            ctx.result.study_uid_map = (original_study_uid,
                                        text_value(ds, "StudyInstanceUID"))
        return ctx.result

    def _plan(self, tag: int, stored_vr: str | None) -> tuple[str, Action, bool, bool]:
        """What :meth:`_clean` does with a standard element of this tag and stored VR:
        the VR it is judged by, its rule's action, whether that action removes it, and
        whether it is kept as it is (not a sequence). Worked out once per profile."""
        vr = judged_vr(tag, stored_vr)
        action = self.profile.rule_for(tag, vr).action
        plan = (vr, action, isinstance(action, Remove), type(action) is Keep and vr != "SQ")
        if len(self._plans) < 1 << 16:  # tags and VRs come from files: bounded
            self._plans[(tag, stored_vr)] = plan
        return plan

    def _record(self, ctx: FileContext, path: tuple[int, ...], tag: int, code: str) -> None:
        result = ctx.result
        if path:
            result.acted.append((">".join(map(format_tag, (*path, tag))), code))
        else:
            result.acted.append((format_tag(tag), code))
        result.counts[code] += 1

    def _clean(self, ds: Dataset, path: tuple[int, ...], ctx: FileContext) -> None:
        elements = stored(ds)
        private: list[int] = []
        ctx.path = path
        # Plain ints: pydicom's BaseTag compares in Python, which every table lookup
        # below (rules, dictionary, attribute Types) would pay for. The store's own key
        # objects to change the store: a lookup by the very key compares nothing.
        plans = self._plans
        for key, elem in list(elements.items()):
            tag = int(key)
            stored_vr = elem.VR
            if elem.is_raw and _misparsed(elem):
                raise DeidentificationError(
                    f"corrupt: element {tag_label(tag)} "
                    f"{'has an invalid VR' if elem.VR else 'lost its VR'}: "
                    "the header cannot be parsed reliably from there on")
            if tag >> 16 & 1:
                private.append(key)
                continue
            if not tag & 0xFFFF:  # group lengths would be wrong after any change
                remove(ds, key)
                self._record(ctx, path, tag, "X")
                continue
            plan = plans.get((tag, stored_vr))
            if plan is None:
                plan = self._plan(tag, stored_vr)
            vr, action, removes, keeps = plan
            if not removes:
                _check_plausible(tag, vr, elem)
            if keeps:
                if vr in _FREE_TEXT_VRS and ctx.remap_uids_in_text(ds, tag, vr, elem):
                    self._record(ctx, path, tag, "U")
                continue
            code = action.apply(ds, tag, ctx)
            if code != "K":
                self._record(ctx, path, tag, code)
                # An overlay group goes whole: its optional module is absent, not broken.
                if code == "X" and not OVERLAY_GROUP.matches(tag) \
                        and standard.attribute_type(ctx.sop_class_uid, tag, path) == "1":
                    ctx.result.warnings.append(f"{format_tag(tag)}: Type 1 attribute removed")
            if vr == "SQ" and key in elements:
                self._clean_items(ds[key].value, (*path, tag), ctx)
                ctx.path = path
        if private:
            self._clean_private(ds, private, path, ctx)

    def _clean_items(self, items: Sequence, path: tuple[int, ...], ctx: FileContext) -> None:
        ctx.changes.enter(items, path[0])
        for item in items:
            self._clean(item, path, ctx)

    def _clean_private(self, ds: Dataset, tags: list[int], path: tuple[int, ...],
                       ctx: FileContext) -> None:
        elements = stored(ds)
        # ``tags`` are the store's own keys (see _clean): looked up and removed by them
        creators: dict[tuple[int, int], str] = {}
        creator_keys: dict[tuple[int, int], int] = {}
        for key in tags:
            if 0x10 <= key & 0xFFFF <= 0xFF:
                value = elements[key].value  # LO: raw bytes, or text once decoded
                if isinstance(value, bytes):
                    value = value.decode("latin-1", "replace")
                block = (key >> 16, key & 0xFF)
                creators[block] = str(value or "").strip(" \x00")
                creator_keys[block] = key
        kept_blocks: set[tuple[int, int]] = set()
        policy = self.profile.private
        for key in tags:
            tag = int(key)
            group, element = tag >> 16, tag & 0xFFFF
            if 0x10 <= element <= 0xFF:
                continue
            creator = creators.get((group, element >> 8)) if element > 0xFF else None
            raw = elements[key]
            vr = raw.VR
            origin = None if creator is None else policy.decide(group, creator, element & 0xFF,
                                                                vr)
            if origin is None:
                remove(ds, key)
                self._record(ctx, path, tag, "X")
                continue
            kept_blocks.add((group, element >> 8))
            _check_plausible(tag, vr, raw)
            items = undeclared_items(raw)
            if items is not None:  # a private sequence read without its VR: cleaned too
                store(ds, DataElement(tag, "SQ", items))
                vr = "SQ"
            if vr == "SQ":
                self._clean_items(ds[tag].value, (*path, tag), ctx)
                continue
            code = self._clean_kept_private(ds, tag, vr, ctx)
            if code != "K":
                self._record(ctx, path, tag, code)
        for block, key in creator_keys.items():
            if block not in kept_blocks:
                remove(ds, key)
                self._record(ctx, path, int(key), "X")

    def _clean_kept_private(self, ds: Dataset, tag: int, vr: str | None,
                            ctx: FileContext) -> str:
        """De-identify one kept private value by its VR; returns the action code.

        A value read without its VR (implicit VR, or UN) takes the VR pydicom's private
        dictionary knows for it. Text, UID and date VRs follow the profile's value rules
        (text cleaned, UIDs remapped). A value still of unknown VR that reads as text is
        cleaned as text (kept as UN bytes in the file's character set). A binary value
        (OB, OW, UN) in which the file's names, IDs, UIDs or dates appear cannot be
        cleaned, so it is removed, whichever way its VR was learnt.
        """
        if vr in (None, "UN"):
            vr = ds[tag].VR  # decoded: the VR from pydicom's private dictionary, else UN
        value_rule = self.profile.private.value_rules.get(vr)  # type: ignore[arg-type]
        if value_rule is not None:
            return value_rule.action.apply(ds, tag, ctx)
        if vr not in _BINARY_VRS:
            return "K"  # numbers, codes, times: nothing a name or an ID hides in
        data = ds[tag].value
        if not isinstance(data, bytes) or not data:
            return "K"
        if vr == "UN" and _reads_as_text(data):
            charset = ds._character_set  # Python codec names: one, or a list
            encodings = [charset] if isinstance(charset, str) else list(charset)
            text = decode_bytes(data, encodings, set())
            cleaned = ctx.clean_text(text)
            if cleaned == text:
                return "K"
            set_encoded(ds, tag, vr, encode_string(cleaned, encodings))
            return "C"
        if any(finding.kind in _IDENTIFIERS_IN_BINARY
               for finding in ctx.identifiers.find(data.decode("latin-1"))):
            remove(ds, tag)
            return "X"
        return "K"

    def _clean_file_meta(self, ds: Dataset, ctx: FileContext) -> None:
        meta = ds.get("file_meta") if hasattr(ds, "file_meta") else None
        if meta is None:
            return
        for tag in list(meta.keys()):
            rule = self.profile.explicit_rule(int(tag))  # a key object compares in Python
            if rule is not None:
                code = rule.action.apply(meta, tag, ctx)
                if code != "K":
                    self._record(ctx, (), tag, code)
        # stored encoded: pydicom's attribute assignment validates a new element (0.07 ms)
        for meta_tag, keyword in ((0x00020003, "SOPInstanceUID"), (0x00020002, "SOPClassUID")):
            if keyword in ds:
                set_encoded(meta, meta_tag, "UI",
                            text_value(ds, keyword).encode("latin-1", "replace"))

    def _add(self, ds: Dataset) -> None:
        for addition in self.profile.additions:
            if addition.creator is not None:
                assert addition.group is not None and addition.offset is not None
                add_private(ds, addition.group, addition.creator, addition.offset,
                            addition.vr, addition.value)
            else:
                assert addition.tag is not None
                store(ds, DataElement(addition.tag, addition.vr, addition.value))

    def _stamp(self, ds: Dataset) -> None:
        for elem in self.stamp.values():
            store(ds, elem)  # the same immutable objects in every file (encoded once)


#: What found in a binary value removes it (shapes such as e-mail addresses are chance
#: in arbitrary bytes; the file's names, IDs, UIDs and dates are not).
_IDENTIFIERS_IN_BINARY = frozenset({scrub.NAME, scrub.ID, scrub.UID, scrub.DATE})
_BINARY_VRS = frozenset({"OB", "OW", "UN"})
#: Text: printable bytes and the controls text uses, padded with NUL or space
_TEXT = re.compile(rb"[\t\n\r\f\x1b\x20-\xff]+[\x00 ]*")


def _reads_as_text(data: bytes) -> bool:
    """Whether a value of unknown VR is text: no control bytes but the ones text uses."""
    return _TEXT.fullmatch(data) is not None


def stamp_elements(profile: CompiledProfile) -> dict[int, DataElement]:
    """PatientIdentityRemoved, DeidentificationMethod (+ Code Sequence), Longitudinal..."""
    stamp = Dataset()
    stamp.PatientIdentityRemoved = "YES"
    stamp.DeidentificationMethod = \
        f"anonymizer {__version__} profile {profile.name} {profile.version}"[:64]
    if profile.method_codes:
        stamp.DeidentificationMethodCodeSequence = Sequence(
            [code.item() for code in profile.method_codes])
    if profile.settings.dates_modified is not None:
        stamp.LongitudinalTemporalInformationModified = profile.settings.dates_modified
    return {tag: stamp[tag] for tag in stamp.keys()}
