"""Checking many pairs: in this process or in worker processes, results in pair order.

Pairs go to workers in batches (the pool ``run`` uses: forked from this process where
that is safe, else loky's) and results come back in the order the pairs were given, one
at a time: nothing is held but the batches in flight.
Each worker loads the profile and the OCR engine once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from anonymizer.pipeline.parallel import batches, forked_workers, pooled_results
from anonymizer.pipeline.worker import FileTimeout, TimeLimit, exit_with_parent, quiet_pydicom
from anonymizer.profiles import load_profile
from anonymizer.reasons import safe_reason
from anonymizer.verify.check import Checker
from anonymizer.verify.results import Pair, PairResult, unchecked

#: Pairs per joblib task: fewer than ``run`` sends, as a pair whose image is read by
#: OCR takes seconds.
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class VerifyConfig:
    """What a worker needs (picklable): the profile by name or absolute path."""

    profile: str | None = None
    show_values: bool = False
    timeout: float = 600.0  # seconds per pair; 0 = none


@functools.lru_cache(maxsize=4)
def _checker(profile: str | None, show_values: bool) -> Checker:
    """Per process, once: the compiled profile (and, on first use, the OCR engine)."""
    quiet_pydicom()
    exit_with_parent()
    return Checker(load_profile(profile) if profile is not None else None, show_values)


def check_batch(config: VerifyConfig, pairs: list[Pair]) -> list[PairResult]:
    """Check a batch of pairs; every pair gets a result, no exception escapes per pair."""
    checker = _checker(config.profile, config.show_values)
    results = []
    with TimeLimit(config.timeout) as limit:
        for pair in pairs:
            try:
                result = limit.call(checker.check, pair)
            except FileTimeout as exc:
                result = unchecked(pair, safe_reason("timeout", exc), config.show_values)
            results.append(result)
    return results


def _died(pair: Pair, show_values: bool = False) -> PairResult:
    return unchecked(pair, "the worker process died on this file", show_values)


def verify_pairs(pairs: Iterable[Pair], profile: str | None = None, *,
                 show_values: bool = False, n_jobs: int = 1,
                 batch_size: int = DEFAULT_BATCH_SIZE, timeout: float = 600.0,
                 ) -> Iterator[PairResult]:
    """Look for each input's identifiers in its output, one result per pair, in order.

    Parameters
    ----------
    pairs : iterable of Pair
        From :class:`~anonymizer.verify.pairing.AuditPairs` or
        :func:`~anonymizer.verify.pairing.manifest_pairs`; read lazily.
    profile : str, optional
        The profile the outputs were made with (built-in name or YAML path): its pixel
        policy decides which images are read by OCR, its ``keep`` rules which
        identifiers are kept on purpose (:attr:`PairResult.kept`). None: pixels are not
        read and every identifier is a finding.
    show_values : bool
        Findings carry the text found: the results are then PHI.
    n_jobs : int
        Worker processes; 1 checks in this process, 0 uses every core.
    batch_size : int
        Pairs per task sent to a worker.
    timeout : float
        Seconds allowed per pair (0: no limit); a pair over it gets an error.

    Yields
    ------
    PairResult
        In the order of ``pairs``.
    """
    if profile is not None and Path(profile).is_file():
        profile = str(Path(profile).resolve())  # workers may start elsewhere
    config = VerifyConfig(profile, show_values, timeout)
    jobs = n_jobs or os.cpu_count() or 1
    if jobs == 1:
        for batch in batches(pairs, batch_size):
            yield from check_batch(config, batch)
        return
    died = functools.partial(_died, show_values=show_values)
    with forked_workers(jobs, exit_with_parent):  # workers that need not import anew
        for results in pooled_results(check_batch, config, batches(pairs, batch_size), jobs,
                                      died):
            yield from results
