"""The benchmark's synthetic export (bench.corpus): how files spread over patients."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.corpus import FILES_PER_PATIENT, plan, single_frame_named


@pytest.mark.parametrize(("files", "per_patient"), [
    (5000, FILES_PER_PATIENT), (1000, 5), (7, 5), (3, 100),
])
def test_files_spread_over_patients_as_asked_and_no_series_is_empty(
        files: int, per_patient: int) -> None:
    series = plan(files, per_patient)
    by_patient = Counter(s.study.patient.index for s in series for _ in range(s.count))
    assert sum(s.count for s in series) == files
    assert all(s.count > 0 for s in series)
    assert len(by_patient) == max(1, round(files / per_patient))  # every patient has files


def test_a_corpus_is_built_from_its_folder_name(tmp_path) -> None:
    built = single_frame_named("sf-10-5pp", root=tmp_path, log=lambda _: None)
    assert built is not None and built.path == tmp_path / "sf-10-5pp"
    assert built.stamp["params"] == {"files": 10, "files_per_patient": 5}
    assert (built.stamp["files"], built.stamp["patients"]) == (10, 2)
    plain = single_frame_named("sf-3", root=tmp_path, log=lambda _: None)
    assert plain is not None and plain.stamp["params"] == {"files": 3}
    assert single_frame_named("us-10", root=tmp_path) is None
    assert not (tmp_path / "us-10").exists()
