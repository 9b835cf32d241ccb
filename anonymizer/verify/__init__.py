"""``anonymizer verify``: the input's identifiers looked for in each output.

Public API (what the CLI and the review page use)::

    from anonymizer.verify import AuditPairs, verify_pairs
    pairs = AuditPairs(input_dir, output_dir, load_key(key_file))
    for result in verify_pairs(pairs, profile=pairs.run.profile, n_jobs=0):
        for finding in result.findings:
            print(finding.line())

See :mod:`anonymizer.verify.check` for what is looked for where.
"""

from anonymizer.verify.pairing import AuditPairs, RecordedRun, manifest_pairs
from anonymizer.verify.results import PLACES, Finding, Pair, PairResult
from anonymizer.verify.stream import verify_pairs

__all__ = ["PLACES", "AuditPairs", "Finding", "Pair", "PairResult", "RecordedRun",
           "manifest_pairs", "verify_pairs"]
