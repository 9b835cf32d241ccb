"""The benchmark's synthetic export (bench.corpus): how files spread over patients."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.corpus import FILES_PER_PATIENT, plan


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
