"""Finding identifiers in text (anonymizer.scrub): every form, every depth, no false alarms."""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_charset_files, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from anonymizer import scrub
from anonymizer.elements import element_strings, stored
from anonymizer.io import read_dataset
from anonymizer.scrub import Identifier, Identifiers, collect, render_date, replace_findings
from anonymizer.tags import dictionary_vr


def _identifiers(*values: tuple[str, str, str], dates: tuple[str, ...] = (),
                 birth: tuple[str, ...] = (), uids: tuple[str, ...] = ()) -> Identifiers:
    return Identifiers(frozenset(Identifier(*v) for v in values),
                       frozenset(d.encode() for d in dates), frozenset(b.encode() for b in birth),
                       frozenset(u.encode() for u in uids))


def _marked(identifiers: Identifiers, text: str) -> str:
    """``text`` with each finding replaced by its kind: ``[NAME]``, ``[ID]``, ..."""
    return replace_findings(text, identifiers.find(text), lambda f, _: f"[{f.kind.upper()}]")


PEOPLE = _identifiers(
    ("name", "PatientName", "Müller-Lüdenscheidt^Hans Peter^^Dr.^"),
    ("name", "ReferringPhysicianName", "García López^María"),
    ("name", "PersonName", "Li^Wei"),
    ("name", "OtherPatientNames", "van der Berg^Johanna"),
    ("name", "PatientMotherBirthName", "O'Brien^Siobhan"),
    ("name", "VerifyingObserverName", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ("name", "PatientBirthName", "Mueller^Anna"),
)


@pytest.mark.parametrize(("text", "expected"), [
    # case, diacritics folded both ways, components in any order, commas and titles
    ("Hans Müller-Lüdenscheidt seen", "[NAME] seen"),
    ("MULLER-LUDENSCHEIDT, HANS", "[NAME]"),
    ("mueller-luedenscheidt", "[NAME]"),
    ("Seen by Dr. García López", "Seen by Dr. [NAME]"),
    ("maria garcia lopez", "[NAME]"),
    ("GARCIA-LOPEZ", "[NAME]"),
    ("garcialopez", "[NAME]"),  # joined without a space
    ("Dr Lopez agreed", "Dr [NAME] agreed"),  # a part of a compound surname
    ("Anna Müller", "[NAME]"),  # Mueller in the header, Müller in the text
    ("ANNA MULLER", "[NAME]"),
    # initials next to a surname, of the person the surname belongs to
    ("H. P. Müller-Lüdenscheidt", "[NAME]"),
    ("Müller-Lüdenscheidt, H.", "[NAME]"),
    ("J. Berg", "[NAME]"), ("K. Berg", "K. [NAME]"),  # Johanna's initial, nobody's
    ("Wei Li", "[NAME]"), ("LI^WEI", "[NAME]"),  # two-letter surnames are names
    ("Lithium 5 mg", "Lithium 5 mg"),  # but not inside words (Unicode word boundaries)
    ("Johanna van der Berg", "[NAME]"),
    ("Van der Berg", "[NAME]"), ("Berg", "[NAME]"),
    ("de la Cruz and van Gogh", "de la Cruz and van Gogh"),  # particles never alone
    ("Siobhan OBrien", "[NAME]"), ("O'BRIEN", "[NAME]"),
    ("山田太郎さん", "[NAME]さん"), ("やまだ たろう", "[NAME]"),
    ("Tarou Yamada", "[NAME]"),
    # no header: names led by a title or a relation
    ("Results phoned to Dr Smith and Mrs. Jones", "Results phoned to Dr [NAME] and Mrs. [NAME]"),
    ("his wife Karen came", "his wife [NAME] came"),
    ("SEEN BY DR. SMITH", "SEEN BY DR. [NAME]"),
    # what is not a name
    ("MR Knee left", "MR Knee left"), ("DR CHEST PA", "DR CHEST PA"),
    ("Dr The", "Dr The"), ("mother of", "mother of"),
])
def test_names_in_every_form(text: str, expected: str) -> None:
    assert _marked(PEOPLE, text) == expected


NUMBERS = _identifiers(
    ("id", "PatientID", "0012345678"), ("id", "AccessionNumber", "ACC-998877"),
    ("id", "StudyID", "1"), ("id", "OtherPatientIDs", "TEST"),
    ("phone", "PatientTelephoneNumbers", "(555) 867-5309"),
    ("place", "InstitutionName", "St. Mary's General Hospital"),
    ("place", "PatientAddress", "12 Elm Street^Springfield^IL"),
    ("place", "InstitutionalDepartmentName", "Cardiology"),
)


@pytest.mark.parametrize(("text", "expected"), [
    ("MRN 12345678", "MRN [ID]"), ("MRN12345678", "MRN[ID]"), ("#0012345678", "#[ID]"),
    ("ID: 12-345-678", "ID: [ID]"), ("12 345 678 seen", "[ID] seen"), ("12.345.678", "[ID]"),
    ("1234567890", "1234567890"), ("512345678", "512345678"),  # other digits around
    ("ACC-998877", "[ID]"), ("acc-998877", "[ID]"), ("Acc 998877", "Acc [ID]"),
    ("Series 1", "Series 1"),  # a one-character Study ID would blank every 1
    ("TEST ONLY", "[ID] ONLY"), ("TESTING", "TESTING"),
    ("call 555 867 5309", "call [PHONE]"), ("5558675309", "[PHONE]"),
    ("St Mary's General Hospital", "[PLACE]"), ("ST MARYS GENERAL HOSPITAL", "[PLACE]"),
    ("lives 12 Elm Street, Springfield", "lives [PLACE], [PLACE]"),
    ("Cardiology report", "[PLACE] report"),
])
def test_ids_phones_and_places(text: str, expected: str) -> None:
    assert _marked(NUMBERS, text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("e-mail john.doe@example.org now", "e-mail [EMAIL] now"),
    ("see https://pacs.example.org/viewer?study=3", "see [URL]"),
    ("www.example.org/x", "[URL]"),
    ("SSN 123-45-6789", "SSN [SSN]"),
    ("Phone: (555) 123-4567.", "Phone: [PHONE]."), ("+44 20 7946 0958", "[PHONE]"),
    ("contact wife at 555-0101.", "contact wife at [PHONE]."),
    ("tel +41 44 123 45 67", "tel [PHONE]"),
    # not telephone numbers
    ("+0000", "+0000"), ("range -2048 to +2047,signed", "range -2048 to +2047,signed"),
    ("TR 500-2000 ms", "TR 500-2000 ms"), ("512x512 0.625 mm", "512x512 0.625 mm"),
])
def test_identifiers_that_need_no_header(text: str, expected: str) -> None:
    assert _marked(Identifiers(), text) == expected


DATED = _identifiers(dates=("19500305", "20190305"), birth=("19500305",))


@pytest.mark.parametrize(("text", "date", "shifted"), [
    ("prior exam 2019-03-05", dt.date(2019, 3, 5), "prior exam 2019-02-23"),
    ("exam 2019.03.05", dt.date(2019, 3, 5), "exam 2019.02.23"),
    ("20190305", dt.date(2019, 3, 5), "20190223"),
    ("2019-03-05T10:30", dt.date(2019, 3, 5), "2019-02-23T10:30"),
    ("DOB 05/03/1950", dt.date(1950, 3, 5), "DOB 23/02/1950"),  # the file's date decides
    ("03/05/1950", dt.date(1950, 3, 5), "02/23/1950"),
    ("3/5/50", dt.date(1950, 3, 5), "2/23/50"),  # two-digit year: a date of the file
    ("5-3-19", dt.date(2019, 3, 5), "23-2-19"),
    ("05.03.2019", dt.date(2019, 3, 5), "23.02.2019"),
    ("13/05/2019", dt.date(2019, 5, 13), "03/05/2019"),
    ("04.05.2018", dt.date(2018, 5, 4), "24.04.2018"),  # dots: day first
    ("04/05/2018", dt.date(2018, 4, 5), "03/26/2018"),  # slashes: month first
    ("5 Mar 1950", dt.date(1950, 3, 5), "23 Feb 1950"),
    ("seen on March 5, 2019.", dt.date(2019, 3, 5), "seen on February 23, 2019."),
    ("05-MAR-19 follow up", dt.date(2019, 3, 5), "23-FEB-19 follow up"),
    ("5th march 2019", dt.date(2019, 3, 5), "23th february 2019"),
    ("2019-Mar-05", dt.date(2019, 3, 5), "2019-Feb-23"),
    ("5 Mar '19", dt.date(2019, 3, 5), "23 Feb '19"),
])
def test_dates_in_every_form_found_and_written_back_in_their_form(
        text: str, date: dt.date, shifted: str) -> None:
    findings = DATED.find(text)
    assert [f.kind for f in findings] == ["date"]
    assert findings[0].date is not None and findings[0].date.date == date
    new = replace_findings(text, findings, lambda f, m: render_date(
        m, f.date, f.date.date - dt.timedelta(days=10)))  # type: ignore[arg-type]
    assert new == shifted


@pytest.mark.parametrize("text", [
    "Version 3.3.1", "v5.6.3-9-61", "1.2.840.10008.1.2", "3/4/10 ratio", "10-12-14 cm",
    "T2 AX 5mm 2/3", "may contain", "March forward", "JPEG 2000 reversible", "-0400",
    "IJG quality factor 90",
])
def test_not_dates(text: str) -> None:
    assert DATED.find(text) == []


def test_uids_of_the_file_are_found_in_text() -> None:
    identifiers = _identifiers(uids=("1.2.3.4.5.6789",))
    assert _marked(identifiers, "see 1.2.3.4.5.6789 and 1.2.3.4.5.678") == \
        "see [UID] and 1.2.3.4.5.678"
    assert identifiers.uids == {"1.2.3.4.5.6789"}


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def test_collect_finds_identifiers_at_every_depth() -> None:
    ds = _item(PatientName="Doe^John", PatientID="12345678", PatientBirthDate="19650412",
               StudyDate="20190101", StudyInstanceUID="1.2.3.4",
               SOPClassUID="1.2.840.10008.5.1.4.1.1.2",
               AcquisitionDateTime="20190102101010.5+0100", InstitutionName="Springfield General")
    ds.OtherPatientIDsSequence = Sequence([_item(PatientID="OLD-777", IssuerOfPatientID="RIS")])
    request = _item(RequestedProcedureID="RP-42", AccessionNumber="A99",
                    ScheduledProcedureStepID="SPS-1")
    request.RequestingPhysician = "House^Gregory"
    ds.RequestAttributesSequence = Sequence([request])
    content = _item(PersonName="Cuddy^Lisa", TextValue="not an identifier")
    content.ContentSequence = Sequence([_item(PersonName="Wilson^James", Date="20180101")])
    ds.ContentSequence = Sequence([content])
    ds.VerifyingObserverSequence = Sequence([_item(VerifyingObserverName="Chase^Robert")])
    found = collect(ds)
    assert {(v.kind, v.keyword, v.value) for v in found.values} == {
        ("name", "PatientName", "Doe^John"), ("id", "PatientID", "12345678"),
        ("id", "PatientID", "OLD-777"), ("place", "IssuerOfPatientID", "RIS"),
        ("place", "InstitutionName", "Springfield General"),
        ("id", "RequestedProcedureID", "RP-42"), ("id", "AccessionNumber", "A99"),
        ("id", "ScheduledProcedureStepID", "SPS-1"),
        ("name", "RequestingPhysician", "House^Gregory"), ("name", "PersonName", "Cuddy^Lisa"),
        ("name", "PersonName", "Wilson^James"),
        ("name", "VerifyingObserverName", "Chase^Robert"),
    }
    assert found.dates == {dt.date(1965, 4, 12), dt.date(2019, 1, 1), dt.date(2019, 1, 2),
                           dt.date(2018, 1, 1)}
    assert found.birth_dates == {dt.date(1965, 4, 12)}
    assert found.uids == {"1.2.3.4"}  # the SOP Class UID is the standard's, not the file's
    # names next to each other are one finding only when they are one person's
    assert _marked(found, "Wilson told Chase; Lisa Cuddy, House") == \
        "[NAME] told [NAME]; [NAME], [NAME]"


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("chrH31.dcm", "山田太郎様 (Tarou YAMADA)", "[NAME]様 ([NAME])"),  # ISO 2022 IR 87
    ("chrI2.dcm", "홍 길동, Gildong Hong", "[NAME]"),  # ISO 2022 IR 149: one person
    ("chrGerm.dcm", "Ruediger Aeneas", "[NAME]"),  # ISO_IR 100: Äneas^Rüdiger
    ("chrFren.dcm", "JEROME BUC", "[NAME]"),
    ("chrRuss.dcm", "Люкceмбypг", "[NAME]"),  # ISO_IR 144
])
def test_collect_reads_names_in_their_character_set(name: str, text: str,
                                                      expected: str) -> None:
    path = Path(get_charset_files(name)[0])
    assert b"\x1b" in path.read_bytes() or "chrH" not in name  # ISO 2022 escapes
    assert _marked(collect(read_dataset(path).dataset), text) == expected


# ------------------------------------------------------------------- no false alarms
#: Codes, not text: never cleaned, so what is found in them does not matter.
_CODES = {"CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "LongCodeValue",
          "URNCodeValue", "ContextIdentifier", "MappingResource", "ContextGroupVersion"}


def _descriptor_findings() -> tuple[int, Counter[tuple[str, str]]]:
    """(number of texts, Counter of (kind, label) found) over the descriptors, SR text and
    code meanings of every readable pydicom and pydicom-data test file, each searched
    for the identifiers of its own file."""
    texts, found = 0, Counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = sorted(Path(f) for f in get_testdata_files() if os.path.isfile(f))
        for path in paths:
            try:
                ds = read_dataset(path).dataset
            except Exception:  # noqa: BLE001 - not DICOM, or not readable: not in the set
                continue
            identifiers = collect(ds)
            for text in _descriptors(ds):
                texts += 1
                found.update((f.kind, f.label) for f in identifiers.find(text))
    return texts, found


def _descriptors(ds: Dataset) -> list[str]:
    out = []
    for key, elem in list(stored(ds).items()):
        tag = int(key)
        vr = elem.VR if elem.VR not in (None, "UN") else dictionary_vr(tag)
        if vr == "SQ":
            for item in ds[tag].value:
                out.extend(_descriptors(item))
        elif vr in ("LO", "SH", "ST", "LT", "UT", "UC") and not tag >> 16 & 1 \
                and tag not in scrub._table_tags() and scrub._keyword(tag) not in _CODES:
            out.extend(t for t in element_strings(elem, ds) if t.strip() and len(t) < 4096)
    return out


def test_no_false_alarms_on_the_descriptors_of_the_test_files() -> None:
    """Pinned: every finding here is either a value of the file's own headers (test files
    name their patients "Test", "Name", "SR", "Enter text" ...) or a real date or URL."""
    texts, found = _descriptor_findings()
    assert texts > 1500
    header_free = {key: n for key, n in found.items() if key[0] in (
        "date", "url", "email", "phone", "ssn", "uid") or key[1] == "titled name"}
    # build stamps such as "DICOMLib Ver02.00.00[20010925]" and "[2010/06/30]-07:41:13"
    # are real dates; the dcmqi model name is a real URL; nothing else
    assert header_free == {("date", "date"): 23, ("url", "URL"): 4}
    own_values = sum(n for key, n in found.items() if key not in header_free)
    assert own_values == 24, found


def test_collect_reads_private_sequences_that_lost_their_vr(tmp_path: Path) -> None:
    """Implicit VR: a private sequence is read as bytes without a VR; the names in it
    identify all the same (a description may repeat them)."""
    ds = _item(SOPClassUID="1.2.840.10008.5.1.4.1.1.2", SOPInstanceUID="1.2.3.4")
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"  # Implicit VR Little Endian
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x10, "SQ", Sequence([_item(PatientName="Hidden^Hilda")]))
    path = tmp_path / "implicit.dcm"
    ds.save_as(path, enforce_file_format=True)
    read = read_dataset(path).dataset
    assert stored(read)[0x00091010].VR is None  # as read: no VR, raw bytes
    found = collect(read)
    assert ("name", "PatientName", "Hidden^Hilda") in found.values
    assert _marked(found, "seen with Hilda Hidden") == "seen with [NAME]"


@pytest.mark.parametrize(("dates", "text", "year"), [
    ((), "05-MAR-75", 1975), ((), "05-MAR-19", 2019), ((), "05-MAR-50", 2050),
    (("19500305",), "05-MAR-50", 1950),  # a date of the file decides the century
    (("20750101",), "05-MAR-75", 2075),
])
def test_two_digit_years_read_the_same_in_every_run(dates: tuple[str, ...], text: str,
                                                    year: int) -> None:
    (finding,) = _identifiers(dates=dates).find(text)
    assert finding.date is not None and finding.date.date.year == year


_ID_VALUES = ["0012345678", "12345678", "2345", "345-678", "ACC-998877", "acc998877", "A1B",
              "TEST", "0000", "1", "(555) 867-5309", "555.867.5309", "MRN 0042-1337",
              "12 34 56", "X-12/34.56", "ab_cd", "9" * 12, "5309", "ÄB-1234", "SS12"]
_ID_NOISE = ["0", "00", "-", " ", ".", "/", "(", ")", "\t", "\x0b", "\x1c", "_", "#", ":",
             "a", "Z", "x", "1", "9", "MRN ", "tel ", ", ", "\n"]
# a digit, s, K, a space, dotted and dotless i, superscript 2, an Nko zero, letters
_BEYOND_ASCII = ["\u0663", "\u017f", "\u212a", "\u00a0", "\u0130", "\u0131", "²", "\u07c0",
                 "é", "ä", "Ü", "ß"]
_PLACE_VALUES = ["St. Mary's General Hospital", "12 Elm Street^Springfield^IL", "Cardiology",
                 "O'Hare Int'l", "Main St", "Mill Way, Springfield", "Rue de l'Église",
                 "General", "CT1_SPRINGFIE", "Springfield General"]
_PLACE_NOISE = [" ", ", ", ".", "^", "'", "''", "-", "x", "_", "1", "st", "general", "mary",
                "springfield", "street", "\n"]


def _by_alternation(forms: tuple, text: str) -> list[tuple[int, int, str, Identifier]]:
    """What one regex alternation of ``forms`` (in their order) finds: the specification
    the recognisers are held to."""
    regex = re.compile("|".join(f"(?P<g{i}>{form.pattern})" for i, form in enumerate(forms)))
    return [(m.start(), m.end(), forms[int(m.lastgroup[1:])].pattern,
             forms[int(m.lastgroup[1:])].identifier) for m in regex.finditer(text)]


def _scrambled(value: str, rng: random.Random, glue: str) -> str:
    """``value`` as a person might write it: other case, leading zeros, separators."""
    if rng.random() < 0.3:
        value = "".join(c.swapcase() if rng.random() < 0.5 else c for c in value)
    if rng.random() < 0.3:
        value = rng.choice(["0", "00", "0-", "0 0"]) + value
    if rng.random() < 0.4:
        value = "".join(c + (rng.choice(glue) if c.isalnum() and rng.random() < 0.3 else "")
                        for c in value)
    return value


def _texts(values: list[str], noise: list[str], glue: str,
           rng: random.Random) -> Iterator[str]:
    for _ in range(20):
        pieces = [rng.choice(noise) for _ in range(rng.randint(0, 6))]
        for value in rng.sample(values, min(len(values), rng.randint(0, 3))):
            pieces.insert(rng.randint(0, len(pieces)), _scrambled(value, rng, glue))
        if rng.random() < 0.2:
            pieces.insert(rng.randint(0, len(pieces)), rng.choice(_BEYOND_ASCII))
        yield "".join(pieces)


@pytest.mark.parametrize(("patterns", "text"), [
    (["ab", "a.a."], "abacad"),  # the second matches again inside its own first match
    (["a.a.", "ab"], "abacad"),
    (["aba", "b"], "ababababa"),
    (["(?<!\\w)x(?!\\w)", "x y"], "x y x"),  # the lookbehind sees before the search start
    (["abc", "ab", "bcd"], "abcdabcd"),
])
def test_what_an_alternation_finds_is_taken_from_each_of_its_patterns_matches(
        patterns: list[str], text: str) -> None:
    """Every position where each pattern matches (overlapping), then the leftmost start's
    first pattern, on from its end: what the regex ``p0|p1|...`` finds."""
    every = [(start, order, end) for order, pattern in enumerate(patterns)
             for start, end in scrub._every_match(pattern, text)]
    taken = [(start, end) for start, end, _ in scrub._leftmost_first(every)]
    assert taken == [m.span() for m in re.finditer("|".join(patterns), text)]


_NAME_VALUES = ["Müller-Lüdenscheidt^Hans Peter^^Dr.^", "García López^María", "Li^Wei",
                "van der Berg^Johanna", "O'Brien^Siobhan", "St.John^Mary", "山田^太郎", "Doe^John",
                "Johnson^John", "Mueller^Anna", "Jean-Luc Picard", "D'Angelo^Ann-Marie"]
_NAME_NOISE = [" ", "-", "'", "’", ".", ",", "^", "x", "1", "_", "dr ", "mr. ", "von ", "\n", "é",
               "st john", "StJohn", "garcia-lopez", "vanderberg", "o brien"]


def _names_by_one_regex(names: object, folded: str) -> list[tuple[int, int]]:
    """Where the one regex of every token of a set of names (as it was built before each
    token got its own) matches: the specification."""
    tokens = names.by_token  # type: ignore[attr-defined]
    bounded = sorted((t for t in tokens if not scrub._NO_SPACE_SCRIPTS.search(t)),
                     key=lambda t: (-len(t), t))
    unbounded = sorted((t for t in tokens if scrub._NO_SPACE_SCRIPTS.search(t)),
                       key=lambda t: (-len(t), t))
    alternatives = ([r"(?<!\w)(?:" + "|".join(scrub._flexible(t) for t in bounded) + r")(?!\w)"]
                    if bounded else []) + (["|".join(re.escape(t) for t in unbounded)]
                                           if unbounded else [])
    return [m.span() for m in re.finditer("|".join(alternatives), folded)]


def test_names_are_found_exactly_where_one_regex_of_all_their_tokens_finds_them() -> None:
    """Each token's own pattern, compiled only for a text that holds it, finds what one
    regex of all the set's tokens finds: seeded random sets and texts with the parts of
    the names written apart, joined, with other separators and cases."""
    rng = random.Random(20261203)
    compared = found = 0
    for _ in range(250):
        values = tuple(sorted(Identifier("name", "PatientName", value)
                              for value in rng.sample(_NAME_VALUES, rng.randint(1, 4))))
        names = scrub._Names(values)
        parts = [part for value in values for part in re.split(r"[\^=]", value.value) if part]
        for text in _texts(parts, _NAME_NOISE, " -'’.", rng):
            folded = scrub.fold(text)
            found_now = list(names.finditer(folded))
            assert found_now == _names_by_one_regex(names, folded), (folded, values)
            compared += 1
            found += bool(found_now)
    assert compared == 5000 and found > compared // 3, (compared, found)


def test_ids_are_found_exactly_where_the_regex_alternation_of_their_forms_finds_them(
) -> None:
    """IDs and telephone numbers are found without compiling the alternation of their
    forms (ASCII text without any regex, other text with each form's own); what is found
    (where, and which value's which form) is what that alternation finds: seeded random
    identifier sets and texts full of near misses."""
    rng = random.Random(20261201)
    compared = found = beyond = 0
    for _ in range(400):
        values = frozenset(
            Identifier(rng.choice(["id", "id", "phone"]), rng.choice(["PatientID", "StudyID"]),
                       value) for value in rng.sample(_ID_VALUES, rng.randint(1, 6)))
        recogniser = scrub._ids(values)
        if recogniser is None:
            continue
        for text in _texts([v.value for v in sorted(values)], _ID_NOISE, "- ./()\x1f", rng):
            found_now = [(start, end, form.pattern, form.identifier)
                         for start, end, form in recogniser.finditer(text)]
            assert found_now == _by_alternation(recogniser.forms, text), (text, values)
            compared += 1
            found += bool(found_now)
            beyond += not text.isascii()
    assert compared > 5000 and found > compared // 3 and beyond > 500, (compared, found, beyond)


def test_places_are_found_exactly_where_the_regex_alternation_of_their_forms_finds_them(
) -> None:
    """Places are found with each form's own regex, compiled only for a text holding all
    its words; what is found is what the alternation of the set's forms finds."""
    rng = random.Random(20261202)
    compared = found = 0
    for _ in range(300):
        values = frozenset(
            Identifier("place", rng.choice(["InstitutionName", "PatientAddress"]), value)
            for value in rng.sample(_PLACE_VALUES, rng.randint(1, 5)))
        recogniser = scrub._places(values)
        assert recogniser is not None
        written = [scrub.fold(v.value).replace("^", rng.choice([" ", ", ", "^"]))
                   for v in sorted(values)]
        for text in _texts(written, _PLACE_NOISE, " ,.'", rng):
            folded = scrub.fold(text)
            found_now = [(start, end, form.pattern, form.identifier)
                         for start, end, form in recogniser.finditer(folded)]
            assert found_now == _by_alternation(recogniser.forms, folded), (folded, values)
            compared += 1
            found += bool(found_now)
    assert compared > 4000 and found > compared // 5, (compared, found)


BEYOND_ASCII_IDS = _identifiers(("id", "PatientID", "12-345-678"), ("id", "StudyID", "SS12"),
                                ("id", "AccessionNumber", "KLM9"), ("id", "AdmissionID", "LIZ1"))


@pytest.mark.parametrize(("text", "expected"), [
    ("MRN 12345678 / ss12 / klm9 / liz1", "MRN [ID] / [ID] / [ID] / [ID]"),
    # what a regex reads as a digit, a space or a letter of an ID
    ("MRN 12345678\u0663", "MRN 12345678\u0663"), ("MRN \u07c012345678", "MRN \u07c012345678"),
    ("12\u00a0345\u00a0678", "[ID]"), ("\u017fs12", "[ID]"), ("\u212alm9", "[ID]"),
    ("l\u0131z1 / L\u0130Z1", "[ID] / [ID]"),
    # what it reads as none of them
    ("Müller 12345678", "Müller [ID]"), ("SS12é", "[ID]é"), ("²12345678²", "²[ID]²"),
    ("ßs12 12 345 678", "ßs12 [ID]"),
])
def test_ids_beside_characters_beyond_ascii(text: str, expected: str) -> None:
    """Where ``\\d``, ``\\s`` and case folding reach beyond ASCII (other scripts' digits,
    the no-break space, the long s, the Kelvin sign, Turkish i), an ID is found as its
    regex finds it; beside other characters as it is in ASCII."""
    assert _marked(BEYOND_ASCII_IDS, text) == expected


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every pattern the regex compiler compiles from now on (the real compiler, counted)."""
    import importlib

    compiler = getattr(re, "_compiler", None) or importlib.import_module("sre_compile")
    compiling = compiler.compile
    patterns: list[object] = []

    def counted(pattern: object, flags: int = 0) -> object:
        patterns.append(pattern)
        return compiling(pattern, flags)

    monkeypatch.setattr(compiler, "compile", counted)
    return patterns


def test_identifier_patterns_are_compiled_once_per_identifier_set(
        compiled: list[object]) -> None:
    """The files of one study share their identifiers: the first file compiles the
    patterns of the names (and places) its texts hold, the next ones compile no pattern at
    all, however many texts they search (each text new, so no finding is reused)."""
    from conftest import SAMPLE_DATA

    for cache in (scrub._compiled, scrub._names, scrub._ids, scrub._places, scrub._form_regex):
        cache.cache_clear()
    re.purge()
    study = SAMPLE_DATA / "DOE^JOHN_12345678" / "20190101_CT_CHEST"
    per_file = []
    for path in (study / "IM0001.dcm", study / "IM0002.dcm", study / "IM0003"):
        before = len(compiled)
        ds = read_dataset(path).dataset
        identifiers = collect(ds)
        texts = [str(elem.value) for elem in ds.iterall()
                 if elem.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "CS", "DA", "DT")]
        texts += ["Doe, John", "MRN 12345678", "seen by Dr. Doe on 2019-01-01"]
        for number, text in enumerate(texts):
            identifiers.find(f"{text} ({path.name} {number})")
        per_file.append(len(compiled) - before)
    assert per_file[0] > 0 and per_file[1:] == [0, 0], per_file
    assert scrub._compiled.cache_info().misses == 1


def _patient(number: int, name: str) -> Identifiers:
    return _identifiers(("name", "PatientName", name), ("id", "PatientID", f"8{number:07d}"),
                        ("id", "AccessionNumber", f"ACC-{number:06d}"),
                        ("phone", "PatientTelephoneNumbers", f"555-01{number:02d}-99"),
                        ("place", "PatientAddress", f"{number} Birch Lane^Ogdenville"),
                        ("place", "InstitutionName", "Ogdenville General"))


def test_a_new_patient_compiles_no_pattern_until_a_text_holds_its_name_or_place(
        compiled: list[object]) -> None:
    """A new patient every file (a radiography export) costs no regex compile: IDs and
    telephone numbers are matched without regexes, a name's or place's own pattern is
    compiled the first time a text holds it and kept for the next patients."""
    scrub._form_regex.cache_clear()  # other tests' patterns (Anna) are kept there too
    _patient(1, "Quimby^Joe").find("MRN 80000001, 555 0101 99: Quimby")  # the helpers' own
    compiled.clear()
    for number in range(2, 6):
        identifiers = _patient(number, f"Zyx{number}wvu^Tsr{number}")
        assert _marked(identifiers, f"CT CHEST, MRN 8000000{number} acc-00000{number} "
                                    f"tel 555 01 0{number} 99") \
            == "CT CHEST, MRN [ID] [ID] tel [PHONE]"
    assert compiled == []
    assert _marked(_patient(6, "Zyx6wvu^Anna"), "Anna at Ogdenville General") \
        == "[NAME] at [PLACE]"
    assert len(compiled) == 3  # the given name's, the institution's, the address's town
    compiled.clear()
    assert _marked(_patient(7, "Other^Anna"), "Anna at Ogdenville General") \
        == "[NAME] at [PLACE]"
    assert compiled == []  # kept for the next patient

