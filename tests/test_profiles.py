"""Profiles: YAML -> compiled rules. Errors name file:line; precedence; built-in profiles.

Every profile here is a real YAML file written into ``tmp_path``; line numbers in the
assertions are the 1-based lines of those files.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from anonymizer.actions import ByType, Dummy, Empty, Keep, RemapUID, Remove, Replace
from anonymizer.errors import ProfileError
from anonymizer.profiles import builtin_profile_names, load_profile
from anonymizer.rules import CompiledProfile
from anonymizer.standard import OPTIONS
from anonymizer.tags import TagPattern
from anonymizer.transforms import CapAge, CleanBitmap, Pseudonym, ShiftDate

REPO = Path(__file__).resolve().parents[1]

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
PATIENT_SEX = 0x00100040
PATIENT_AGE = 0x00101010
ACCESSION_NUMBER = 0x00080050
STUDY_DATE = 0x00080020
INSTITUTION_NAME = 0x00080080
MANUFACTURER = 0x00080070
DEVICE_SERIAL_NUMBER = 0x00181000
DATE_OF_LAST_CALIBRATION = 0x00181200
ROWS = 0x00280010
EVALUATOR_NAME = 0x00142006  # PN, not in Table E.1-1 nor in basic.yaml's actions
CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def write(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` (dedented; line 1 is the first line after the opening quotes)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def compile_error(path: Path) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    return info.value


def assert_at(exc: ProfileError, path: Path, line: int, *fragments: str) -> None:
    """The error names ``path`` and ``line`` (attributes and message) and says ``fragments``."""
    assert exc.source == str(path), str(exc)
    assert exc.line == line, str(exc)
    assert str(exc).startswith(f"{path}:{line}: "), str(exc)
    for fragment in fragments:
        assert fragment in exc.message, str(exc)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("anonymizer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "anonymizer"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd or REPO, check=False)


@pytest.fixture(scope="module")
def builtins() -> dict[str, CompiledProfile]:
    return {name: load_profile(name) for name in ("basic", "default", "research")}


# =========================================================================== compile errors


def test_invalid_yaml_syntax(tmp_path: Path) -> None:
    path = write(tmp_path, "syntax.yaml", """\
        name: syntax
        actions:
          PatientName: keep
           PatientID: remove
        """)
    assert_at(compile_error(path), path, 4, "invalid YAML")


def test_unclosed_flow_sequence_is_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "flow.yaml", """\
        name: flow
        standard: ps3.15
        options: [retain_uids, clean_descriptors
        default: keep
        """)
    exc = compile_error(path)
    assert exc.source == str(path)
    assert exc.line == 4, str(exc)  # where the parser finds the flow sequence unfinished
    assert "invalid YAML" in exc.message and "Traceback" not in str(exc)


def test_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.yaml", """\
        name: dup
        actions:
          PatientName: keep
          PatientID: remove
          PatientName: remove
        """)
    assert_at(compile_error(path), path, 5, "duplicate key 'PatientName'")


def test_empty_profile(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.yaml", "# nothing here\n")
    assert_at(compile_error(path), path, 1, "empty")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "top.yaml", """\
        name: top
        standard: ps3.15

        actoins:
          PatientName: keep
        """)
    assert_at(compile_error(path), path, 4, "unknown key 'actoins'")


def test_unknown_keyword(tmp_path: Path) -> None:
    path = write(tmp_path, "kw.yaml", """\
        name: kw
        actions:
          PatientName: keep
          PatientNme: remove
        """)
    assert_at(compile_error(path), path, 4, "unknown keyword 'PatientNme'")


def test_empty_keyword_is_refused(tmp_path: Path) -> None:
    # "" is no keyword; it must not silently become a rule for some retired tag.
    path = write(tmp_path, "emptykw.yaml", """\
        name: emptykw
        actions:
          PatientName: keep
          "": remove
        """)
    assert_at(compile_error(path), path, 4)


def test_bad_tag_notation(tmp_path: Path) -> None:
    path = write(tmp_path, "tag.yaml", """\
        name: tag
        actions:
          PatientName: keep
          "(0010,0020)": keep
          "(00ZZ,0010)": remove
        """)
    assert_at(compile_error(path), path, 5, "bad tag '(00ZZ,0010)'")


def test_unknown_action(tmp_path: Path) -> None:
    path = write(tmp_path, "action.yaml", """\
        name: action
        actions:
          PatientName: keep
          PatientID: obliterate
        """)
    assert_at(compile_error(path), path, 4, "unknown action 'obliterate'", "PatientID")


def test_unknown_parameterised_action(tmp_path: Path) -> None:
    path = write(tmp_path, "param.yaml", """\
        name: param
        actions:
          PatientName: keep
          PatientID: {substitute: X}
        """)
    assert_at(compile_error(path), path, 4, "PatientID")


def test_replace_value_too_long_for_cs(tmp_path: Path) -> None:
    path = write(tmp_path, "cs.yaml", """\
        name: cs
        actions:
          PatientName: keep
          PatientSex: {replace: "toolongvalueforcs!!"}
        """)
    assert_at(compile_error(path), path, 4, "PatientSex", "not valid for VR CS")


def test_replace_value_not_a_da(tmp_path: Path) -> None:
    path = write(tmp_path, "da.yaml", """\
        name: da
        actions:
          StudyDate: {replace: "2019-01-01"}
        """)
    assert_at(compile_error(path), path, 3, "StudyDate", "not valid for VR DA")


def test_replace_a_sequence_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "sq.yaml", """\
        name: sq
        actions:
          PatientName: keep
          ReferencedStudySequence: {replace: "x"}
        """)
    assert_at(compile_error(path), path, 4, "not valid for VR SQ")


def test_valid_replace_compiles(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.yaml", """\
        name: ok
        actions:
          PatientSex: {replace: O}
          StudyDate: {replace: "20190101"}
        """)
    profile = load_profile(str(path))
    assert profile.tag_rules[PATIENT_SEX].action == Replace("O", "CS")
    assert profile.tag_rules[STUDY_DATE].action == Replace("20190101", "DA")


def test_unknown_option(tmp_path: Path) -> None:
    path = write(tmp_path, "opt.yaml", """\
        name: opt
        standard: ps3.15
        options:
          - retain_uids
          - retain_everything
        """)
    assert_at(compile_error(path), path, 5, "unknown option 'retain_everything'")


def test_pixel_option_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "pixel.yaml", """\
        name: pixel
        standard: ps3.15
        options:
          - clean_pixel_data
        """)
    assert_at(compile_error(path), path, 4, "clean_pixel_data", "pixel data")


def test_option_without_standard(tmp_path: Path) -> None:
    path = write(tmp_path, "nostd.yaml", """\
        name: nostd
        default: keep
        options:
          - retain_uids
        """)
    assert_at(compile_error(path), path, 4, "standard: ps3.15")


def test_option_inherits_standard_from_parent(tmp_path: Path) -> None:
    path = write(tmp_path, "child.yaml", """\
        name: child
        extends: basic
        options:
          - retain_uids
        """)
    assert load_profile(str(path)).options == ("retain_uids",)


def test_bad_standard_value(tmp_path: Path) -> None:
    path = write(tmp_path, "std.yaml", """\
        name: std
        standard: hipaa
        """)
    assert_at(compile_error(path), path, 2, "ps3.15")


def test_mutually_exclusive_date_options(tmp_path: Path) -> None:
    path = write(tmp_path, "dates.yaml", """\
        name: dates
        standard: ps3.15
        options:
          - retain_longitudinal_full_dates
          - retain_uids
          - retain_longitudinal_modified_dates
        """)
    assert_at(compile_error(path), path, 6, "retain_longitudinal_full_dates",
              "retain_longitudinal_modified_dates", "exclude")


def test_mutually_exclusive_date_options_line_is_the_conflicting_option(tmp_path: Path) -> None:
    # The error must point at the option that makes the conflict (line 5), not at
    # whatever option happens to be listed last (retain_uids, line 6).
    path = write(tmp_path, "dates2.yaml", """\
        name: dates2
        standard: ps3.15
        options:
          - retain_longitudinal_full_dates
          - retain_longitudinal_modified_dates
          - retain_uids
        """)
    assert_at(compile_error(path), path, 5, "exclude")


def test_mutually_exclusive_date_options_across_extends(tmp_path: Path) -> None:
    path = write(tmp_path, "full.yaml", """\
        name: full
        extends: research
        options:
          - retain_longitudinal_full_dates
        """)
    assert_at(compile_error(path), path, 4, "exclude")


def test_extends_cycle(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()  # extends paths are resolved
    a = write(tmp_path, "a.yaml", """\
        name: a
        version: "1"
        extends: b.yaml
        """)
    b = write(tmp_path, "b.yaml", """\
        name: b
        extends: a.yaml
        """)
    exc = compile_error(a)
    assert "cycle in 'extends'" in exc.message
    # the message names the whole cycle, in order
    assert f"{a} -> {b} -> {a}" in exc.message, str(exc)
    # ... and where it closes: b.yaml line 2 (extends: a.yaml)
    assert_at(exc, b, 2)


def test_extends_itself(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()  # extends paths are resolved
    path = write(tmp_path, "self.yaml", """\
        name: self

        extends: self.yaml
        """)
    exc = compile_error(path)
    assert "cycle in 'extends'" in exc.message
    assert_at(exc, path, 3)


def test_extends_missing_builtin(tmp_path: Path) -> None:
    path = write(tmp_path, "child.yaml", """\
        name: child
        standard: ps3.15
        extends: basci
        """)
    assert_at(compile_error(path), path, 3, "no such profile 'basci'", "basic, default, research")


def test_extends_missing_file(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()  # extends paths are resolved
    # The error must say which profile refers to the missing file, and where.
    path = write(tmp_path, "child.yaml", """\
        name: child
        standard: ps3.15
        extends: parents/nothere.yaml
        """)
    exc = compile_error(path)
    assert "nothere.yaml" in str(exc)
    assert_at(exc, path, 3)


def test_extends_is_relative_to_the_child_file(tmp_path: Path) -> None:
    write(tmp_path, "shared/parent.yaml", """\
        name: parent
        actions:
          PatientName: remove
          PatientID: keep
        """)
    child = write(tmp_path, "projects/x/child.yaml", """\
        name: child
        extends: ../../shared/parent.yaml
        actions:
          PatientName: keep
        """)
    profile = load_profile(str(child))  # the cwd is not tmp_path
    assert profile.name == "child"
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Keep)
    assert profile.rule_for(PATIENT_ID, "LO").origin == "profile parent keyword PatientID"


def test_error_in_parent_names_the_parent_file(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()  # extends paths are resolved
    parent = write(tmp_path, "parent.yaml", """\
        name: parent
        actions:
          PatientName: keep
          PatientNme: remove
        """)
    child = write(tmp_path, "child.yaml", """\
        name: child
        extends: parent.yaml
        """)
    assert_at(compile_error(child), parent, 4, "PatientNme")


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


def test_unknown_vr_in_by_vr(tmp_path: Path) -> None:
    path = write(tmp_path, "vr.yaml", """\
        name: vr
        by_vr:
          PN: remove
          XY: remove
        """)
    assert_at(compile_error(path), path, 4, "unknown VR 'XY'")


# --------------------------------------------------------------------------- CLI


def test_cli_check_bad_profile_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "BAD.yaml", """\
        name: bad
        standard: ps3.15
        actions:
          PatientName: keep
          PatientNme: remove
        """)
    result = cli("profiles", "check", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "BAD.yaml:5:" in lines[0]
    assert "PatientNme" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_check_yaml_error_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "BAD.yaml", "name: bad\nactions: [\n")
    result = cli("profiles", "check", str(path))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "BAD.yaml:3:" in result.stderr
    assert "Traceback" not in result.stderr


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


def test_bad_profile_layout_is_one_line_from_check_and_run(tmp_path: Path) -> None:
    path = write(tmp_path, "BAD.yaml", """\
        name: bad
        extends: research
        layout: "{PatientID}/{StudyDate/{SOPInstanceUID}.dcm"
        """)
    source = tmp_path / "in"
    source.mkdir()
    (source / "x.dcm").write_bytes(b"not read: the profile fails first")
    out = tmp_path / "out"
    key = tmp_path / "k"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    for result in (cli("profiles", "check", str(path)),
                   cli("run", "--profile", str(path), "--key-file", str(key), str(source),
                       str(out))):
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"anonymizer: error: {path}:3: layout "), result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "bad braces" in result.stderr
    assert not out.exists()


def test_good_layouts_compile(tmp_path: Path) -> None:
    for number, layout in enumerate(("mirror", "'{{x}}/{Modality}-{SOPInstanceUID}.dcm'",
                                     "'{PatientID}/{StudyDate}/{SOPInstanceUID}'")):
        path = write(tmp_path, f"ok{number}.yaml", f"name: ok\nlayout: {layout}\n")
        assert load_profile(str(path)).layout == layout.strip("'")


def test_cli_check_good_profile(tmp_path: Path) -> None:
    path = write(tmp_path, "good.yaml", """\
        name: good
        extends: basic
        actions:
          PatientName: keep
        """)
    result = cli("profiles", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert f"{path}: ok (profile good" in result.stdout


# =========================================================================== patterns


def test_overlay_pattern_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "overlay.yaml", """\
        name: overlay
        default: keep
        actions:
          "(60xx,3000)": remove
        """)
    profile = load_profile(str(path))
    assert isinstance(profile.rule_for(0x60003000, "OW").action, Remove)
    assert isinstance(profile.rule_for(0x601E3000, "OW").action, Remove)
    assert profile.rule_for(0x601E3000, "OW").origin == "profile overlay pattern (60XX,3000)"
    # the rest of an overlay group goes with its Overlay Data: no half overlay module
    rest = profile.rule_for(0x60003001, "OW")
    assert isinstance(rest.action, Remove)
    assert rest.origin == "profile overlay pattern (60XX,3000): the whole overlay group goes"
    assert isinstance(profile.rule_for(0x00283000, "SQ").action, Keep)


def test_curve_pattern_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "curve.yaml", """\
        name: curve
        default: keep
        actions:
          "(50xx,xxxx)": remove
        """)
    profile = load_profile(str(path))
    for tag in (0x50000000, 0x50000010, 0x501E3000, 0x50FEFFFF):
        assert isinstance(profile.rule_for(tag, "US").action, Remove), hex(tag)
    for tag in (0x51000010, 0x60003000, 0x00105000):
        assert isinstance(profile.rule_for(tag, "US").action, Keep), hex(tag)


def test_more_specific_pattern_wins_whatever_the_order(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", """\
        name: spec
        default: keep
        actions:
          "(xxxx,xxxx)": empty
          "(60xx,xxxx)": remove
          "(60xx,3000)": keep
          "(6000,30x0)": dummy
        """)
    profile = load_profile(str(path))
    assert isinstance(profile.rule_for(0x60003010, "OW").action, Dummy)
    assert isinstance(profile.rule_for(0x60003000, "OW").action, Dummy)
    assert isinstance(profile.rule_for(0x60023000, "OW").action, Keep)
    assert isinstance(profile.rule_for(0x60024000, "LT").action, Remove)
    assert isinstance(profile.rule_for(0x00280010, "US").action, Empty)
    specificity = [p.specificity for p, _ in profile.pattern_rules]
    assert specificity == sorted(specificity, reverse=True)


def test_explicit_tag_beats_pattern(tmp_path: Path) -> None:
    path = write(tmp_path, "expl.yaml", """\
        name: expl
        actions:
          "(0010,xxxx)": remove
          PatientSex: keep
        """)
    profile = load_profile(str(path))
    assert isinstance(profile.rule_for(PATIENT_SEX, "CS").action, Keep)
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Remove)


def test_basic_profile_overlay_and_curve_patterns(builtins: dict[str, CompiledProfile]) -> None:
    basic = builtins["basic"]
    texts = {p.text for p, _ in basic.pattern_rules}
    assert {"(50XX,XXXX)", "(60XX,3000)", "(60XX,4000)"} <= texts
    rule = basic.rule_for(0x601E3000, "OW")
    assert isinstance(rule.action, Remove)
    assert "PS3.15 Basic Profile" in rule.origin and "Overlay Data" in rule.origin
    assert "Curve Data" in basic.rule_for(0x50020010, "US").origin
    # an overlay element the table does not list (OverlayRows) goes with Overlay Data
    rows = basic.explicit_rule(0x60000010)
    assert rows is not None and isinstance(rows.action, Remove)
    assert rows.origin.endswith("the whole overlay group goes")


def test_clean_graphics_option_on_overlay_data(tmp_path: Path) -> None:
    path = write(tmp_path, "graphics.yaml", """\
        name: graphics
        extends: basic
        options: [clean_graphics]
        """)
    rule = load_profile(str(path)).rule_for(0x60023000, "OW")
    assert isinstance(rule.action, CleanBitmap)
    assert "option clean_graphics" in rule.origin


# =========================================================================== precedence


def test_child_overrides_parent_keyword_rule(tmp_path: Path) -> None:
    parent = write(tmp_path, "parent.yaml", """\
        name: parent
        actions:
          PatientName: remove
          PatientID: remove
        """)
    child = write(tmp_path, "child.yaml", """\
        name: child
        extends: parent.yaml
        actions:
          PatientName: keep
        """)
    profile = load_profile(str(child))
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Keep)
    assert profile.rule_for(PATIENT_NAME, "PN").origin == "profile child keyword PatientName"
    assert isinstance(profile.rule_for(PATIENT_ID, "LO").action, Remove)
    assert profile.rule_for(PATIENT_ID, "LO").origin == "profile parent keyword PatientID"
    assert profile.name == "child"
    assert profile.source == str(child)
    assert isinstance(load_profile(str(parent)).rule_for(PATIENT_NAME, "PN").action, Remove)


def test_child_keyword_overrides_parent_tag_key(tmp_path: Path) -> None:
    write(tmp_path, "parent.yaml", """\
        name: parent
        actions:
          "(0010,0010)": remove
        """)
    child = write(tmp_path, "child.yaml", """\
        name: child
        extends: parent.yaml
        actions:
          PatientName: keep
        """)
    assert isinstance(load_profile(str(child)).rule_for(PATIENT_NAME, "PN").action, Keep)


@pytest.mark.parametrize("tag_first", [True, False])
def test_tag_key_beats_keyword_key_in_the_same_profile(tmp_path: Path, tag_first: bool) -> None:
    entries = ['  "(0010,0010)": keep', "  PatientName: remove"]
    if not tag_first:
        entries.reverse()
    path = tmp_path / "both.yaml"
    path.write_text("name: both\nactions:\n" + "\n".join(entries) + "\n", encoding="utf-8")
    rule = load_profile(str(path)).rule_for(PATIENT_NAME, "PN")
    assert isinstance(rule.action, Keep)
    assert rule.origin == "profile both tag (0010,0010)"


def test_user_pattern_beats_table_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "acc.yaml", """\
        name: acc
        extends: basic
        actions:
          "(0008,00xx)": keep
        """)
    profile = load_profile(str(path))
    rule = profile.rule_for(ACCESSION_NUMBER, "SH")
    assert isinstance(rule.action, Keep)
    assert rule.origin == "profile acc pattern (0008,00XX)"
    # outside the pattern the table still rules
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Empty)
    assert isinstance(load_profile("basic").rule_for(ACCESSION_NUMBER, "SH").action, Empty)


def test_user_pattern_beats_table_overlay_pattern(tmp_path: Path) -> None:
    path = write(tmp_path, "ov.yaml", """\
        name: ov
        extends: basic
        actions:
          "(60xx,xxxx)": keep
        """)
    rule = load_profile(str(path)).rule_for(0x60023000, "OW")
    assert isinstance(rule.action, Keep)
    assert rule.origin == "profile ov pattern (60XX,XXXX)"


def test_option_column_beats_basic_profile(builtins: dict[str, CompiledProfile]) -> None:
    basic, research = builtins["basic"], builtins["research"]
    # research has no retain_institution_identity: InstitutionName keeps its Basic rule
    institution = research.rule_for(INSTITUTION_NAME, "LO")
    assert not isinstance(institution.action, Keep)
    assert institution.action == ByType("X/Z/D")
    assert "PS3.15 Basic Profile" in institution.origin
    # retain_device_identity: K instead of X/Z/D
    assert basic.rule_for(DEVICE_SERIAL_NUMBER, "LO").action == ByType("X/Z/D")
    assert "PS3.15 Basic Profile" in basic.rule_for(DEVICE_SERIAL_NUMBER, "LO").origin
    device = research.rule_for(DEVICE_SERIAL_NUMBER, "LO")
    assert isinstance(device.action, Keep)
    assert "option retain_device_identity" in device.origin
    # retain_patient_characteristics: K, with the HIPAA age cap, instead of X
    assert isinstance(basic.rule_for(PATIENT_AGE, "AS").action, Remove)
    age = research.rule_for(PATIENT_AGE, "AS")
    assert isinstance(age.action, CapAge)
    assert "option retain_patient_characteristics" in age.origin
    assert "HIPAA age cap" in age.origin
    # retain_longitudinal_modified_dates: C on a DA is a shift
    study_date = research.rule_for(STUDY_DATE, "DA")
    assert isinstance(study_date.action, ShiftDate)
    assert "option retain_longitudinal_modified_dates" in study_date.origin


def test_institution_kept_with_retain_institution_identity(tmp_path: Path) -> None:
    path = write(tmp_path, "inst.yaml", """\
        name: inst
        extends: research
        options: [retain_institution_identity]
        """)
    rule = load_profile(str(path)).rule_for(INSTITUTION_NAME, "LO")
    assert isinstance(rule.action, Keep)
    assert "option retain_institution_identity" in rule.origin


def test_option_order_does_not_change_the_rules(tmp_path: Path) -> None:
    # Date of Last Calibration has K under retain_device_identity and C under
    # retain_longitudinal_modified_dates; the same set of options must give the same
    # rules whatever order the YAML lists them in.
    one = write(tmp_path, "one.yaml", """\
        name: order
        standard: ps3.15
        options: [retain_device_identity, retain_longitudinal_modified_dates]
        """)
    two = write(tmp_path, "two.yaml", """\
        name: order
        standard: ps3.15
        options: [retain_longitudinal_modified_dates, retain_device_identity]
        """)
    first, second = load_profile(str(one)), load_profile(str(two))
    assert first.tag_rules[DATE_OF_LAST_CALIBRATION].action == \
        second.tag_rules[DATE_OF_LAST_CALIBRATION].action
    actions_one = {t: r.action for t, r in first.tag_rules.items()}
    actions_two = {t: r.action for t, r in second.tag_rules.items()}
    differing = sorted(f"{t:08X}" for t in actions_one if actions_one[t] != actions_two[t])
    assert differing == []


def test_by_vr_only_for_tags_not_otherwise_ruled(tmp_path: Path) -> None:
    path = write(tmp_path, "byvr.yaml", """\
        name: byvr
        default: keep
        by_vr:
          LO: remove
          PN: empty
        actions:
          PatientID: keep
          "(0010,10xx)": dummy
        """)
    profile = load_profile(str(path))
    assert isinstance(profile.rule_for(PATIENT_ID, "LO").action, Keep)  # keyword
    assert isinstance(profile.rule_for(0x00101040, "LO").action, Dummy)  # pattern
    other_lo = profile.rule_for(MANUFACTURER, "LO")
    # a removal by VR resolves by Type: the VR says nothing about the IOD
    assert other_lo.action == ByType("X/Z/D")
    assert other_lo.origin == "profile byvr by VR LO: remove; Type 1 -> dummy, Type 2 -> empty"
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Empty)
    assert isinstance(profile.rule_for(ROWS, "US").action, Keep)
    assert profile.rule_for(ROWS, "US").origin == "profile byvr default"
    # by_vr is a fallback: it is not an explicit rule
    assert profile.explicit_rule(MANUFACTURER) is None


def test_by_vr_in_basic_applies_to_unlisted_tags(builtins: dict[str, CompiledProfile]) -> None:
    basic = builtins["basic"]
    unlisted = basic.rule_for(EVALUATOR_NAME, "PN")
    assert unlisted.action == ByType("X/Z/D")
    assert unlisted.origin == "profile basic by VR PN: remove; Type 1 -> dummy, Type 2 -> empty"
    listed = basic.rule_for(PATIENT_NAME, "PN")
    assert isinstance(listed.action, Empty)
    assert "PS3.15 Basic Profile" in listed.origin
    assert isinstance(basic.rule_for(0x00209161, "UI").action, RemapUID)  # unlisted UID
    assert isinstance(basic.rule_for(0x00080016, "UI").action, Keep)  # SOPClassUID


@pytest.mark.parametrize(("default", "action"), [("keep", Keep), ("remove", Remove)])
def test_default(tmp_path: Path, default: str, action: type) -> None:
    path = write(tmp_path, "default.yaml", f"""\
        name: d
        default: {default}
        """)
    rule = load_profile(str(path)).rule_for(ROWS, "US")
    assert isinstance(rule.action, action)
    assert rule.origin == "profile d default"


def test_no_default_keeps(tmp_path: Path) -> None:
    path = write(tmp_path, "nodefault.yaml", "name: nd\n")
    rule = load_profile(str(path)).rule_for(ROWS, "US")
    assert isinstance(rule.action, Keep)
    assert rule.origin == "built-in default"


def test_child_default_overrides_parent(tmp_path: Path) -> None:
    path = write(tmp_path, "strict.yaml", """\
        name: strict
        extends: basic
        default: remove
        """)
    profile = load_profile(str(path))
    assert isinstance(profile.rule_for(ROWS, "US").action, Remove)
    assert isinstance(profile.rule_for(PATIENT_NAME, "PN").action, Empty)  # table still rules


def test_bad_default(tmp_path: Path) -> None:
    path = write(tmp_path, "baddefault.yaml", """\
        name: bd
        default: maybe
        """)
    assert_at(compile_error(path), path, 2, "keep or remove")


def test_kept_patient_age_gets_the_cap(tmp_path: Path) -> None:
    path = write(tmp_path, "age.yaml", """\
        name: age
        extends: basic
        actions:
          PatientAge: keep
        """)
    rule = load_profile(str(path)).rule_for(PATIENT_AGE, "AS")
    assert isinstance(rule.action, CapAge)
    assert rule.origin == "profile age keyword PatientAge, HIPAA age cap"


def test_origin_strings(builtins: dict[str, CompiledProfile]) -> None:
    default, research = builtins["default"], builtins["research"]
    assert default.rule_for(PATIENT_ID, "LO").origin == "profile default keyword PatientID"
    assert isinstance(default.rule_for(PATIENT_ID, "LO").action, Pseudonym)
    assert default.rule_for(MANUFACTURER, "LO").origin == "profile basic keyword Manufacturer"
    assert default.rule_for(ACCESSION_NUMBER, "SH").origin == \
        "PS3.15 Basic Profile (Accession Number)"
    assert research.rule_for(ACCESSION_NUMBER, "SH").origin == \
        "profile research keyword AccessionNumber"
    assert research.rule_for(ACCESSION_NUMBER, "SH").action == Pseudonym("ACC-{hash:12}")


# =========================================================================== built-in profiles


def test_builtin_names() -> None:
    names = builtin_profile_names()
    assert {"basic", "default", "research"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", ["basic", "default", "research"])
def test_builtin_compiles(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.source == f"{name} (built-in)"
    assert len(profile.tag_rules) > 500  # Table E.1-1 has ~600 single-tag rows
    assert profile.method_codes[0].value == "113100"


def test_every_builtin_name_compiles() -> None:
    for name in builtin_profile_names():
        assert load_profile(name).name == name


def test_fingerprints_differ_and_are_stable() -> None:
    first = {name: load_profile(name).fingerprint() for name in ("basic", "default", "research")}
    second = {name: load_profile(name).fingerprint() for name in ("basic", "default", "research")}
    assert first == second
    assert len(set(first.values())) == 3
    assert all(len(f) == 64 and int(f, 16) >= 0 for f in first.values())


def test_fingerprint_changes_with_one_rule(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "name: fp\nextends: basic\nactions:\n  PatientSex: keep\n")
    b = write(tmp_path, "b.yaml", "name: fp\nextends: basic\nactions:\n  PatientSex: remove\n")
    same = write(tmp_path, "c.yaml", "name: fp\nextends: basic\n\nactions: {PatientSex: keep}\n")
    assert load_profile(str(a)).fingerprint() != load_profile(str(b)).fingerprint()
    assert load_profile(str(a)).fingerprint() == load_profile(str(same)).fingerprint()


def test_research_describe_lists_every_option(builtins: dict[str, CompiledProfile]) -> None:
    research = builtins["research"]
    expected = ("retain_safe_private", "retain_longitudinal_modified_dates",
                "retain_patient_characteristics", "retain_device_identity",
                "clean_descriptors", "clean_structured_content")
    assert research.options == expected
    assert set(expected) <= set(OPTIONS)
    lines = research.describe()
    options_line = next(line for line in lines if line.startswith("options: "))
    for option in expected:
        assert option in options_line
    assert any("DeviceSerialNumber" in line and "retain_device_identity" in line
               for line in lines)
    assert "options: (none)" in builtins["basic"].describe()


def test_research_settings_and_private(builtins: dict[str, CompiledProfile]) -> None:
    research = builtins["research"]
    assert research.settings.pseudonym_format == "SUBJ-{hash:8}"
    assert research.settings.dates_modified == "MODIFIED"
    assert research.private.safe  # Table E.3.10-1 entries
    assert builtins["basic"].settings.dates_modified == "REMOVED"
    assert not builtins["basic"].private.safe
    assert builtins["default"].layout is not None


def test_cli_show_research() -> None:
    result = cli("profiles", "show", "research")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "DeviceSerialNumber" in line]
    assert len(lines) == 1
    assert "retain_device_identity" in lines[0] and "keep" in lines[0]


def _show_line(result: subprocess.CompletedProcess[str], keyword: str) -> str:
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if f" {keyword} " in line]
    assert len(lines) == 1, result.stdout[:2000]
    return lines[0]


@pytest.mark.parametrize(
    ("sop_class", "expected"),
    [
        ("CT", "remove (Type 3, X/Z/D)"),
        (CT, "remove (Type 3, X/Z/D)"),
        ("Enhanced CT Image Storage", "dummy (Type 1, X/Z/D)"),
        (ENHANCED_CT, "dummy (Type 1, X/Z/D)"),
    ],
)
def test_cli_show_basic_resolved_for_sop_class(sop_class: str, expected: str) -> None:
    line = _show_line(cli("profiles", "show", "basic", "--sop-class", sop_class),
                      "DeviceSerialNumber")
    assert expected in line
    assert "PS3.15 Basic Profile" in line


def test_cli_show_unknown_sop_class_is_usage_error() -> None:
    result = cli("profiles", "show", "basic", "--sop-class", "Not A SOP Class")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "unknown SOP Class" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_list() -> None:
    result = cli("profiles", "list")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert names == builtin_profile_names()
    assert "research" in names


def test_bytype_resolution_of_device_serial_number(builtins: dict[str, CompiledProfile]) -> None:
    action = builtins["basic"].rule_for(DEVICE_SERIAL_NUMBER, "LO").action
    assert isinstance(action, ByType)
    assert isinstance(action.resolve("1"), Dummy)
    assert isinstance(action.resolve("2"), Empty)
    assert isinstance(action.resolve("3"), Remove)
    assert isinstance(action.resolve(None), Remove)


def test_compiled_profile_is_frozen(builtins: dict[str, CompiledProfile]) -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        builtins["basic"].name = "changed"  # type: ignore[misc]


def test_pattern_rules_hold_tag_patterns(builtins: dict[str, CompiledProfile]) -> None:
    assert all(isinstance(p, TagPattern) for p, _ in builtins["research"].pattern_rules)
