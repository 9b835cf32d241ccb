"""Loading a profile: YAML, keys, keywords, tags, actions and ``extends``; every mistake is
one error naming FILE:LINE.
"""

from __future__ import annotations

from pathlib import Path

from profile_helpers import (
    PATIENT_ID,
    PATIENT_NAME,
    PATIENT_SEX,
    STUDY_DATE,
    assert_at,
    compile_error,
    write,
)

from anonymizer.actions import Keep, Replace
from anonymizer.profiles import load_profile


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


def test_bad_standard_value(tmp_path: Path) -> None:
    path = write(tmp_path, "std.yaml", """\
        name: std
        standard: hipaa
        """)
    assert_at(compile_error(path), path, 2, "ps3.15")


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


def test_unknown_vr_in_by_vr(tmp_path: Path) -> None:
    path = write(tmp_path, "vr.yaml", """\
        name: vr
        by_vr:
          PN: remove
          XY: remove
        """)
    assert_at(compile_error(path), path, 4, "unknown VR 'XY'")


def test_bad_default(tmp_path: Path) -> None:
    path = write(tmp_path, "baddefault.yaml", """\
        name: bd
        default: maybe
        """)
    assert_at(compile_error(path), path, 2, "keep or remove")
