"""Consistency across files, batches and runs: what links one patient's data must survive
de-identification identically in separate runs with the same key.

Two CLI runs of the research profile over two halves of sample_data (one series split
between them) must agree on pseudonyms, UIDs and date offsets, and references between files
must resolve in the union of their outputs. Dates keep their intervals and timezone, no
original date is left in any byte, lookup tables override the hash (or fail the files they
do not cover) and the crosswalk maps what it should, outside OUT.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import KEY_A, SAMPLE_DATA, dcmread_quiet
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

ANONYMIZER = [sys.executable, "-m", "anonymizer"]
DOE, ROE, MULLER = "DOE^JOHN_12345678", "ROE^RICHARD_99887766", "MÜLLER^ANNA MRN-0042"
DOE_CT = f"{DOE}/20190101_CT_CHEST"
#: half A / half B: every patient in both, the DOE^JOHN CT series split between them
HALVES = {
    "A": [f"{DOE_CT}/IM0001.dcm", f"{DOE_CT}/IM0002.dcm", f"{DOE}/20200315_MR_BRAIN/IM0001.dcm",
          f"{ROE}/20180220_CT_ABDOMEN/IM0001.dcm", f"{MULLER}/20210704_MR_KNEE/IM0001.dcm"],
    "B": [f"{DOE_CT}/IM0003", f"{DOE_CT}/SR0001.dcm", f"{DOE}/20200315_MR_BRAIN/IM0002.dcm",
          f"{ROE}/20180220_CT_ABDOMEN/IM0002.dcm", f"{ROE}/20220911_CT_HEAD/IM0001.dcm",
          f"{MULLER}/20210704_MR_KNEE/IM0002.dcm", f"{MULLER}/20210704_MR_KNEE/IM0003.dcm"],
}
REFERENCED_SOP_INSTANCE_UID = 0x00081155
SERIES_INSTANCE_UID = 0x0020000E
REFERENCED_SERIES_SEQUENCE = 0x00081115
SHIFT_RANGE = (-365, -1)  # research: dates.shift_days


# --------------------------------------------------------------------------- helpers


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ANONYMIZER_KEY"}
    return subprocess.run([*ANONYMIZER, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, check=False, cwd=cwd)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _date(text: str) -> dt.date:
    return dt.datetime.strptime(str(text)[:8], "%Y%m%d").date()


def _values(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


@dataclass
class Pair:
    """One input file and its de-identified output."""

    half: str
    relative: str
    before: Dataset
    after: Dataset
    output: Path

    @property
    def patient(self) -> str:
        return self.relative.split("/")[0]

    @property
    def offset(self) -> int:
        return (_date(self.after.StudyDate) - _date(self.before.StudyDate)).days


@dataclass
class Run:
    source: Path
    out: Path
    proc: subprocess.CompletedProcess[str]
    manifest: dict[str, tuple[str, str]] = field(default_factory=dict)
    crosswalk: list[dict[str, str]] = field(default_factory=list)


def run_research(root: Path, name: str, files: list[str], key: Path, *options: object) -> Run:
    """Copy ``files`` of sample_data into ROOT/in-NAME and run the CLI into ROOT/out-NAME."""
    source, out = root / f"in-{name}", root / f"out-{name}"
    for relative in files:
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE_DATA / relative, source / relative)
    manifest = root / f"manifest-{name}.csv"
    proc = cli("run", "--no-progress", "--key-file", key, "--manifest", manifest, *options,
               source, out)
    rows = read_csv(manifest) if manifest.exists() else []
    return Run(source, out, proc, {r["input"]: (r["output"], r["status"]) for r in rows})


def pairs_of(run: Run, half: str) -> list[Pair]:
    pairs = []
    for relative, (output, status) in sorted(run.manifest.items()):
        assert status == "written", (relative, status)
        pairs.append(Pair(half, relative, dcmread_quiet(run.source / relative),
                          dcmread_quiet(run.out / output), run.out / output))
    return pairs


def paired_values(before: Dataset, after: Dataset, tag: int) -> Iterator[tuple[str, str]]:
    """(original, new) values of ``tag`` at the same place in both datasets, at any depth
    (sequences followed where both sides hold them with the same number of items)."""
    for element_tag in before.keys():
        if element_tag >> 16 & 1 or element_tag not in after:
            continue
        old, new = before[element_tag], after[element_tag]
        if element_tag == tag:
            yield from zip(_values(old.value), _values(new.value), strict=True)
        elif old.VR == "SQ" and new.VR == "SQ" and len(old.value) == len(new.value):
            for item_before, item_after in zip(old.value, new.value, strict=True):
                yield from paired_values(item_before, item_after, tag)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "secret.key"
    path.write_bytes(KEY_A)
    return path


@pytest.fixture(scope="module")
def halves(tmp_path_factory: pytest.TempPathFactory, key: Path) -> dict[str, Run]:
    """The two research runs (half A with 2 worker processes, half B in one)."""
    root = tmp_path_factory.mktemp("halves")
    runs = {}
    for half, files in HALVES.items():
        jobs = "2" if half == "A" else "1"
        run = run_research(root, half, files, key, "--profile", "research", "--jobs", jobs,
                           "--crosswalk", root / f"crosswalk-{half}.csv")
        assert run.proc.returncode == 0, run.proc.stderr
        run.crosswalk = read_csv(root / f"crosswalk-{half}.csv")
        runs[half] = run
    return runs


@pytest.fixture(scope="module")
def pairs(halves: dict[str, Run]) -> list[Pair]:
    found = pairs_of(halves["A"], "A") + pairs_of(halves["B"], "B")
    assert len(found) == sum(len(files) for files in HALVES.values())
    return found


# --------------------------------------------------------------------------- identifiers


def test_the_split_puts_one_series_of_one_patient_in_both_halves(pairs: list[Pair]) -> None:
    series = defaultdict(set)
    for pair in pairs:
        series[str(pair.before.SeriesInstanceUID)].add(pair.half)
    assert {"A", "B"} in series.values()
    assert all({p.half for p in pairs if p.patient == patient} == {"A", "B"}
               for patient in (DOE, ROE, MULLER))


@pytest.mark.parametrize("keyword", ["PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                                     "FrameOfReferenceUID", "AccessionNumber"])
def test_one_original_one_replacement_across_both_runs(keyword: str, pairs: list[Pair]) -> None:
    mapped: dict[str, set[str]] = defaultdict(set)
    halves_seen: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        if keyword not in pair.before:
            continue
        original = str(pair.before[keyword].value)
        mapped[original].add(str(pair.after[keyword].value))
        halves_seen[original].add(pair.half)
    assert mapped
    assert any(seen == {"A", "B"} for seen in halves_seen.values())
    for original, replacements in mapped.items():
        assert len(replacements) == 1, (keyword, replacements)
        assert original not in replacements
    # different originals, different replacements
    assert len({next(iter(r)) for r in mapped.values()}) == len(mapped)


def test_shared_patient_pseudonym_and_offset_agree_between_runs(pairs: list[Pair]) -> None:
    doe = [p for p in pairs if p.patient == DOE]
    assert {p.half for p in doe} == {"A", "B"}
    assert len({str(p.after.PatientID) for p in doe}) == 1
    assert str(doe[0].after.PatientID).startswith("SUBJ-")
    assert len({str(p.after.PatientName) for p in doe}) == 1
    assert len({p.offset for p in doe}) == 1
    ct = [p for p in doe if p.relative.startswith(DOE_CT)]
    assert {p.half for p in ct} == {"A", "B"}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        images = {str(p.after[keyword].value) for p in ct if keyword in p.before
                  and p.before.Modality == "CT"}
        assert len(images) == 1, keyword


def test_pseudonyms_differ_between_patients(pairs: list[Pair]) -> None:
    by_patient = defaultdict(set)
    for pair in pairs:
        by_patient[pair.patient].add(str(pair.after.PatientID))
    assert all(len(ids) == 1 for ids in by_patient.values())
    assert len({next(iter(ids)) for ids in by_patient.values()}) == 3


def test_references_resolve_to_output_files_across_runs(pairs: list[Pair]) -> None:
    """A ReferencedSOPInstanceUID that named an input file names that file's output, also
    when the referencing and the referenced file went through different runs."""
    output_of = {str(p.before.SOPInstanceUID): str(p.after.SOPInstanceUID) for p in pairs}
    half_of = {str(p.before.SOPInstanceUID): p.half for p in pairs}
    resolved = crossing = 0
    for pair in pairs:
        for original, new in paired_values(pair.before, pair.after, REFERENCED_SOP_INSTANCE_UID):
            if original not in output_of:
                assert new != original
                continue
            assert new == output_of[original], (pair.relative, original)
            resolved += 1
            crossing += half_of[original] != pair.half
    assert resolved >= 3 and crossing >= 1
    # no reference anywhere in the union of outputs still names an input file
    for pair in pairs:
        for elem in pair.after.iterall():
            if elem.tag == REFERENCED_SOP_INSTANCE_UID:
                assert str(elem.value) not in output_of, pair.relative


def referenced_series(ds: Dataset, inside: bool = False) -> Iterator[str]:
    """Series Instance UIDs in items of a Referenced Series Sequence, at any depth."""
    for tag in ds.keys():
        if tag >> 16 & 1:
            continue
        elem = ds[tag]
        if tag == SERIES_INSTANCE_UID and inside:
            yield from _values(elem.value)
        elif elem.VR == "SQ":
            for item in elem.value:
                yield from referenced_series(item, tag == REFERENCED_SERIES_SEQUENCE)


def test_referenced_series_resolve_to_output_series(pairs: list[Pair]) -> None:
    output_series = {str(p.before.SeriesInstanceUID): str(p.after.SeriesInstanceUID)
                     for p in pairs}
    found = 0
    for pair in pairs:
        before, after = list(referenced_series(pair.before)), list(referenced_series(pair.after))
        assert len(after) in (0, len(before))
        for original, new in zip(before, after, strict=False):
            if original in output_series:
                assert new == output_series[original], pair.relative
                found += 1
    assert found >= 1  # the SR (half B) names the CT series (both halves)


# --------------------------------------------------------------------------- dates


def test_intervals_between_a_patients_studies_are_kept(pairs: list[Pair]) -> None:
    studies: dict[str, dict[str, tuple[dt.date, dt.date]]] = defaultdict(dict)
    for pair in pairs:
        studies[pair.patient][str(pair.before.StudyInstanceUID)] = (
            _date(pair.before.StudyDate), _date(pair.after.StudyDate))
    for patient in (DOE, ROE):
        (old_1, new_1), (old_2, new_2) = sorted(studies[patient].values())[:2]
        assert old_1 != old_2
        assert (new_2 - new_1) == (old_2 - old_1), patient
    assert (sorted(studies[DOE].values())[0][0], sorted(studies[DOE].values())[1][0]) == (
        dt.date(2019, 1, 1), dt.date(2020, 3, 15))


def test_offsets_are_per_patient_within_the_profile_range(pairs: list[Pair]) -> None:
    offsets = defaultdict(set)
    for pair in pairs:
        offsets[pair.patient].add(pair.offset)
        for original, new in paired_values(pair.before, pair.after, 0x00100030):
            assert (_date(new) - _date(original)).days == pair.offset  # birth date too
    for patient, found in offsets.items():
        assert len(found) == 1, patient
        assert SHIFT_RANGE[0] <= next(iter(found)) <= SHIFT_RANGE[1]


def _original_dates(pairs: list[Pair]) -> set[str]:
    dates = set()
    for pair in pairs:
        for elem in pair.before.iterall():
            if elem.VR == "DA":
                dates.update(v.strip() for v in _values(elem.value)
                             if re.fullmatch(r"\d{8}", v.strip()))
    return dates


def test_no_original_date_in_any_output_byte_or_audit_log(pairs: list[Pair],
                                                          halves: dict[str, Run]) -> None:
    dates = _original_dates(pairs)
    assert {"20190101", "20200315", "19650412", "20180220"} <= dates
    leaks = []
    for run in halves.values():
        assert (run.out / "audit.jsonl").is_file()
        for path in sorted(p for p in run.out.rglob("*") if p.is_file()):
            data = path.read_bytes()
            leaks += [f"{path.name}: {d}" for d in sorted(dates) if d.encode() in data]
    assert not leaks


def test_datetimes_keep_their_timezone_and_move_by_the_offset(pairs: list[Pair]) -> None:
    checked = 0
    for pair in pairs:
        for tag in (0x0008002A, 0x0040A030, 0x00189074):  # Acquisition/Verification/Frame
            for original, new in paired_values(pair.before, pair.after, tag):
                zone = re.search(r"[+-]\d{4}$", original)
                assert zone is not None
                assert new.endswith(zone.group()), (pair.relative, new)
                assert new[8:] == original[8:]  # time kept (dates.times: keep)
                assert (_date(new) - _date(original)).days == pair.offset
                checked += 1
    assert checked >= 12


# --------------------------------------------------------------------------- lookup tables


def _lookup_profile(folder: Path, on_missing: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "subjects.csv").write_text("original,replacement\n12345678,TRIAL-001\n"
                                         "99887766,TRIAL-002\n", encoding="utf-8")
    profile = folder / f"trial-{on_missing}.yaml"
    profile.write_text(f"name: trial\nextends: research\npseudonyms:\n  lookup: subjects.csv\n"
                       f"  on_missing: {on_missing}\n", encoding="utf-8")
    return profile


ALL_FILES = HALVES["A"] + HALVES["B"]


def test_lookup_table_with_on_missing_fail(tmp_path: Path, key: Path) -> None:
    """The table's patients get its replacements; the patient it lacks fails, exit 1."""
    profile = _lookup_profile(tmp_path / "profile", "fail")
    run = run_research(tmp_path, "fail", ALL_FILES, key, "--profile", profile)
    assert run.proc.returncode == 1, run.proc.stderr
    failed = sorted(r for r, (_, status) in run.manifest.items() if status == "failed")
    assert failed == sorted(r for r in ALL_FILES if r.startswith(MULLER)), run.proc.stderr
    assert re.search(r"failed x3: .*lookup table", run.proc.stderr), run.proc.stderr
    ids = {}
    for pair in pairs_of(Run(run.source, run.out, run.proc,
                             {r: v for r, v in run.manifest.items() if v[1] == "written"}), "-"):
        ids.setdefault(pair.patient, set()).add((str(pair.after.PatientID),
                                                 str(pair.after.PatientName)))
    assert ids == {DOE: {("TRIAL-001", "TRIAL-001^")}, ROE: {("TRIAL-002", "TRIAL-002^")}}


def test_lookup_table_with_on_missing_hash_falls_back_to_the_hash(
        tmp_path: Path, key: Path, pairs: list[Pair]) -> None:
    profile = _lookup_profile(tmp_path / "profile", "hash")
    run = run_research(tmp_path, "hash", ALL_FILES, key, "--profile", profile)
    assert run.proc.returncode == 0, run.proc.stderr
    ids = defaultdict(set)
    for pair in pairs_of(run, "-"):
        ids[pair.patient].add(str(pair.after.PatientID))
    hashed = {str(p.after.PatientID) for p in pairs if p.patient == MULLER}
    assert ids == {DOE: {"TRIAL-001"}, ROE: {"TRIAL-002"}, MULLER: hashed}
    assert next(iter(hashed)).startswith("SUBJ-")
    # no crosswalk unless asked: OUT holds the DICOM files and the audit log only
    assert {p.suffix for p in run.out.rglob("*") if p.is_file()} == {".dcm", ".jsonl"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["manifest-hash.csv"]


def test_lookup_profile_given_by_a_relative_path(tmp_path: Path, key: Path) -> None:
    """``-p trial.yaml`` from the profile's folder runs like the absolute path does."""
    profile = _lookup_profile(tmp_path / "profile", "hash")
    shutil.copytree(SAMPLE_DATA / ROE, tmp_path / "in" / ROE)
    proc = cli("run", "--no-progress", "--key-file", key, "--profile", profile.name,
               tmp_path / "in", tmp_path / "out", cwd=profile.parent)
    assert proc.returncode == 0, proc.stderr
    ids = {str(dcmread_quiet(p).PatientID) for p in (tmp_path / "out").rglob("*.dcm")}
    assert ids == {"TRIAL-002"}


# --------------------------------------------------------------------------- crosswalk


def test_crosswalk_maps_patient_ids_with_offsets_and_study_uids(
        halves: dict[str, Run], pairs: list[Pair]) -> None:
    for half, run in halves.items():
        mine = [p for p in pairs if p.half == half]
        patients = {str(p.before.PatientID): (str(p.after.PatientID), p.offset) for p in mine}
        rows = {r["original"]: r for r in run.crosswalk
                if r["kind"] == "pseudonym" and r["attribute"] == "PatientID"}
        assert set(rows) == set(patients)
        for original, (pseudonym, offset) in patients.items():
            assert rows[original]["replacement"] == pseudonym
            assert int(rows[original]["date_offset_days"]) == offset
        studies = {str(p.before.StudyInstanceUID): str(p.after.StudyInstanceUID) for p in mine}
        uid_rows = {r["original"]: r["replacement"] for r in run.crosswalk
                    if r["kind"] == "uid" and r["attribute"] == "StudyInstanceUID"}
        assert uid_rows == studies
    # the same patient, the same row in both runs' crosswalks
    doe = [{(r["replacement"], r["date_offset_days"]) for r in run.crosswalk
            if r["attribute"] == "PatientID" and r["original"] == "12345678"}
           for run in halves.values()]
    assert doe[0] == doe[1] and len(doe[0]) == 1


def test_crosswalk_originals_never_reach_out(halves: dict[str, Run]) -> None:
    originals = {r["original"] for run in halves.values() for r in run.crosswalk}
    assert {"12345678", "99887766", "MRN-0042", "ACC2019000101"} <= originals
    leaks = []
    for run in halves.values():
        assert not any(p.suffix == ".csv" for p in run.out.rglob("*"))
        for path in (p for p in run.out.rglob("*") if p.is_file()):
            data = path.read_bytes()
            for original in originals:
                for encoded in {original.encode("utf-8"), original.encode("latin-1", "ignore")}:
                    if encoded and encoded in data:
                        leaks.append(f"{path.name}: {original}")
    assert not leaks
