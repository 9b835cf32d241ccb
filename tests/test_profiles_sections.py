"""Profile sections besides the rules: ``private``, ``add``, ``pseudonyms``, ``dates``,
``age``, ``burned_in_annotation``, lookup tables and ``layout``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from profile_helpers import (
    assert_at,
    compile_error,
    write,
)

from anonymizer.profiles import load_profile


def test_private_raw_tag_in_actions_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "priv.yaml", """\
        name: priv
        actions:
          PatientName: keep
          "(0009,1001)": keep
        """)
    assert_at(compile_error(path), path, 4, "private tags are addressed by creator")


def test_private_pattern_in_actions_is_refused(tmp_path: Path) -> None:
    # (0009,xxxx) can only match a private (odd) group: it would compile and then
    # never apply, because private elements are decided under 'private:' only.
    path = write(tmp_path, "privpat.yaml", """\
        name: privpat
        actions:
          PatientName: keep
          "(0009,xxxx)": keep
        """)
    assert_at(compile_error(path), path, 4, "private")


def test_private_keep_even_group(tmp_path: Path) -> None:
    path = write(tmp_path, "even.yaml", """\
        name: even
        private:
          keep:
            - creator: ACME 1.1
              group: 0x0010
              element: 0x01
        """)
    assert_at(compile_error(path), path, 5, "0x0010", "not a private (odd) group")


def test_private_keep_element_beyond_block(tmp_path: Path) -> None:
    path = write(tmp_path, "elem.yaml", """\
        name: elem
        private:
          keep:
            - creator: ACME 1.1
              group: 0x0009
              element: 0x100
        """)
    assert_at(compile_error(path), path, 6, "'element'", "0xff")


def test_private_keep_missing_creator(tmp_path: Path) -> None:
    path = write(tmp_path, "nocreator.yaml", """\
        name: nocreator
        private:
          default: remove
          keep:
            - creator: ACME 1.1
            - group: 0x0009
              element: 0x01
        """)
    assert_at(compile_error(path), path, 6, "needs 'creator'")


def test_private_keep_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, "pkey.yaml", """\
        name: pkey
        private:
          keep:
            - creator: ACME 1.1
              tag: "(0009,1001)"
        """)
    assert_at(compile_error(path), path, 5, "unknown key 'tag'")


def test_private_keep_compiles_and_decides(tmp_path: Path) -> None:
    path = write(tmp_path, "pk.yaml", """\
        name: pk
        private:
          keep_creators: [" WHOLE BLOCK "]
          keep:
            - creator: ACME 1.1
              group: 0x0009
              element: 0x01
            - creator: ANY GROUP
              element: "0x02"
        """)
    policy = load_profile(str(path)).private
    assert policy.decide(0x0009, "ACME 1.1", 0x01, "LO") == "profile pk private keep"
    assert policy.decide(0x0009, "ACME 1.1", 0x02, "LO") is None
    assert policy.decide(0x0011, "ACME 1.1", 0x01, "LO") is None
    assert policy.decide(0x0029, "ANY GROUP", 0x02, "LO") == "profile pk private keep"
    assert policy.decide(0x0029, "ANY GROUP", 0x03, "LO") is None
    assert policy.decide(0x0019, "WHOLE BLOCK", 0x7F, "UN") == "profile pk keep_creators"
    assert policy.decide(0x0019, "OTHER", 0x01, "LO") is None


def test_add_missing_value(tmp_path: Path) -> None:
    path = write(tmp_path, "addval.yaml", """\
        name: addval
        add:
          - keyword: ClinicalTrialProtocolID
            value: TRIAL-1
          - keyword: ClinicalTrialSiteID
            vr: LO
        """)
    assert_at(compile_error(path), path, 5, "needs 'value'")


def test_add_pattern_tag(tmp_path: Path) -> None:
    path = write(tmp_path, "addpat.yaml", """\
        name: addpat
        add:
          - tag: "(60xx,3000)"
            value: x
        """)
    assert_at(compile_error(path), path, 3, "single tag, not a pattern")


def test_add_value_invalid_for_vr(tmp_path: Path) -> None:
    path = write(tmp_path, "addda.yaml", """\
        name: addda
        add:
          - keyword: ClinicalTrialProtocolID
            value: TRIAL-1
          - keyword: StudyDate
            value: "2019-01-01"
        """)
    assert_at(compile_error(path), path, 5, "not valid for VR DA")


def test_add_private_even_group(tmp_path: Path) -> None:
    path = write(tmp_path, "addpriv.yaml", """\
        name: addpriv
        add:
          - creator: PROJECT
            group: 0x0010
            element: 0x01
            vr: LO
            value: X
        """)
    assert_at(compile_error(path), path, 4, "not a private (odd) group")


def test_add_compiles(tmp_path: Path) -> None:
    path = write(tmp_path, "add.yaml", """\
        name: add
        add:
          - keyword: ClinicalTrialProtocolID
            value: TRIAL-1
          - tag: "(0012,0030)"
            value: SITE A
          - creator: PROJECT
            group: 0x0011
            element: 0x01
            vr: LO
            value: X
        """)
    additions = load_profile(str(path)).additions
    assert [(a.tag, a.vr, a.value) for a in additions[:2]] == [
        (0x00120020, "LO", "TRIAL-1"), (0x00120030, "LO", "SITE A")]
    assert (additions[2].creator, additions[2].group, additions[2].offset) == ("PROJECT", 0x11, 1)


def test_bad_pseudonym_format_field(tmp_path: Path) -> None:
    path = write(tmp_path, "fmt.yaml", """\
        name: fmt
        pseudonyms:
          on_missing: hash
          format: "P-{name}"
        """)
    assert_at(compile_error(path), path, 4, "unknown field {name}")


def test_bad_inline_pseudonym_hash_length(tmp_path: Path) -> None:
    path = write(tmp_path, "hash.yaml", """\
        name: hash
        actions:
          PatientName: keep
          PatientID: {pseudonym: "X-{hash:2}"}
        """)
    assert_at(compile_error(path), path, 4, "{hash:N}")


def test_pseudonym_on_non_text_vr(tmp_path: Path) -> None:
    path = write(tmp_path, "pvr.yaml", """\
        name: pvr
        actions:
          Rows: pseudonym
        """)
    assert_at(compile_error(path), path, 3, "text VR")


@pytest.mark.parametrize(
    "value", ["[10, -10]", "5", "[-10]", "[-10, 1.5]", "[-3, -2, -1]", "[a, b]"])
def test_bad_shift_days(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "shift.yaml", f"""\
        name: shift
        dates:
          times: keep
          shift_days: {value}
        """)
    assert_at(compile_error(path), path, 4, "'shift_days'")


def test_good_sections_reach_settings(tmp_path: Path) -> None:
    path = write(tmp_path, "sections.yaml", """\
        name: sections
        pseudonyms: {format: "S-{hash:6}", on_missing: fail}
        dates: {shift_days: [-30, 30], times: remove}
        age: {cap: null}
        burned_in_annotation: accept
        """)
    settings = load_profile(str(path)).settings
    assert settings.pseudonym_format == "S-{hash:6}"
    assert settings.on_missing == "fail"
    assert settings.shift_days == (-30, 30)
    assert settings.times == "remove"
    assert settings.age_cap is None
    assert settings.pixels.accept_burned_in is True


def test_bad_burned_in_annotation(tmp_path: Path) -> None:
    path = write(tmp_path, "burn.yaml", """\
        name: burn
        standard: ps3.15
        burned_in_annotation: yes
        """)
    assert_at(compile_error(path), path, 3, "accept or fail")


def test_lookup_table_with_wrong_header(tmp_path: Path) -> None:
    table = tmp_path / "subjects.csv"
    table.write_text("orig,repl\nMRN001,SUBJ-01\n", encoding="utf-8")
    path = write(tmp_path, "lookup.yaml", """\
        name: lookup
        pseudonyms:
          lookup: subjects.csv
        """)
    exc = compile_error(path)
    assert "header must be original,replacement" in str(exc)
    # the CSV file and its row are named as file:line, like any other profile error
    assert "<profile>" not in str(exc), str(exc)
    assert_at(exc, table, 1)


def test_lookup_table_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "nolookup.yaml", """\
        name: nolookup
        pseudonyms:
          format: "A-{hash:8}"
          lookup: missing.csv
        """)
    assert_at(compile_error(path), path, 4, "cannot read lookup table", "missing.csv")


def test_lookup_table_is_read_relative_to_the_profile(tmp_path: Path) -> None:
    (tmp_path / "subjects.csv").write_text(
        "keyword,original,replacement\nPatientID,MRN001,SUBJ-01\n", encoding="utf-8")
    path = write(tmp_path, "lookup.yaml", """\
        name: lookup
        pseudonyms:
          lookup: subjects.csv
        """)
    lookup = load_profile(str(path)).settings.lookup
    assert lookup is not None
    assert lookup.get("PatientID", "MRN001") == "SUBJ-01"
    assert lookup.get("PatientName", "MRN001") is None


@pytest.mark.parametrize(("layout", "fragment"), [
    ("'{PatientId}/{SOPInstanceUID}.dcm'", "{PatientId} is not a DICOM keyword"),
    ("'{PatientID/{SOPInstanceUID}.dcm'", "bad braces"),
    ("'{PatientID}}/{SOPInstanceUID}.dcm'", "bad braces"),
    ("'{}/{SOPInstanceUID}.dcm'", "{} is not a DICOM keyword"),
    ("'{PatientID:>8}/{SOPInstanceUID}.dcm'", "{PatientID} is not a DICOM keyword"),
    ("/data/{PatientID}/{SOPInstanceUID}.dcm", "not an absolute one"),
    ("'{PatientID}/../{SOPInstanceUID}.dcm'", "'..'"),
    ("'{PatientID}//{SOPInstanceUID}.dcm'", "empty"),
    ("'{PatientID}/{SOPInstanceUID}.dcm/'", "empty"),
])
def test_bad_layout_is_reported_at_its_line(tmp_path: Path, layout: str, fragment: str) -> None:
    path = write(tmp_path, "layout.yaml", f"""\
        name: layout
        extends: default

        layout: {layout}
        """)
    assert_at(compile_error(path), path, 4, "layout", fragment)


def test_bad_layout_in_a_parent_profile_names_the_parent(tmp_path: Path) -> None:
    parent = write(tmp_path, "parent.yaml", "name: parent\nlayout: '../{SOPInstanceUID}'\n")
    child = write(tmp_path, "child.yaml", "name: child\nextends: parent.yaml\n")
    assert_at(compile_error(child), parent, 2, "'..'")


def test_good_layouts_compile(tmp_path: Path) -> None:
    for number, layout in enumerate(("mirror", "'{{x}}/{Modality}-{SOPInstanceUID}.dcm'",
                                     "'{PatientID}/{StudyDate}/{SOPInstanceUID}'")):
        path = write(tmp_path, f"ok{number}.yaml", f"name: ok\nlayout: {layout}\n")
        assert load_profile(str(path)).layout == layout.strip("'")
