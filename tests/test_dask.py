"""Scale-out: the same batches on a real Dask cluster give byte-identical output."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

distributed = pytest.importorskip("dask.distributed")


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.dcm"))}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anonymizer", "run", "--no-progress", *args],
                          capture_output=True, text=True, timeout=300)


def test_dask_cluster_output_is_identical_to_local(sample_copy: Path, key_file: Path,
                                                   tmp_path: Path) -> None:
    local = _run("--key-file", str(key_file), "--jobs", "2", str(sample_copy),
                 str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = _run("--backend", "dask", "--scheduler", cluster.scheduler_address,
                      "--key-file", str(key_file), str(sample_copy), str(tmp_path / "dask"))
        assert remote.returncode == 0, remote.stderr
        workers = cluster.scheduler_info["workers"]
        assert len(workers) == 2
    local_tree, dask_tree = _tree(tmp_path / "local"), _tree(tmp_path / "dask")
    assert local_tree and local_tree == dask_tree


def test_dask_backend_needs_a_key_file_and_scheduler(sample_copy: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANONYMIZER_KEY", "k" * 32)
    result = _run("--backend", "dask", "--scheduler", "tcp://127.0.0.1:1", str(sample_copy),
                  str(tmp_path / "out"))
    assert result.returncode == 2
    assert "--key-file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
