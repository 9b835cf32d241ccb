"""Discovery, joblib batches, output layout, progress and the audit log."""

from anonymizer.pipeline.runner import RunConfig, RunSummary, run

__all__ = ["RunConfig", "RunSummary", "run"]
