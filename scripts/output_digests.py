"""Digest of every output of every built-in profile on the test and benchmark files.

Run before and after a change that must not change outputs, and diff the two lists::

    python scripts/output_digests.py > before.txt
    ... change ...
    python scripts/output_digests.py > after.txt
    diff before.txt after.txt && echo byte-identical

Each line is ``profile  tree  output-path  status  sha256`` (``-`` for failed or skipped
inputs, which are listed by their keyed name). The inputs: ``sample_data/``, pydicom's and
pydicom-data's test files, and the benchmark corpora given with ``--corpus`` (default: the
200-file single-frame set, the same 200 files of about 5 per patient (40 patients' sets of
identifiers), both built here when missing, and the 10-image ultrasound set when ``make
bench`` has built it). The key is fixed, so two runs of one tree give the same list.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pydicom.data import get_testdata_files

ROOT = Path(__file__).resolve().parent.parent
FIXED_KEY = "output-digests-fixed-key-0123456789abcdef"
PROFILES = ("default", "basic", "research", "research-ocr-blank")
#: the OCR profile is slow: run it on these trees only
OCR_TREES = ("sample_data", "us-10")
DEFAULT_CORPORA = ("sf-200", "sf-200-5pp", "us-10")


def _testdata_tree(target: Path) -> Path:
    files = sorted(Path(f) for f in get_testdata_files() if os.path.isfile(f))
    common = Path(os.path.commonpath([str(p) for p in files]))
    for path in files:
        destination = target / path.relative_to(common)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except OSError:  # another file system
            shutil.copy(path, destination)
    return target


def _build_single_frame(name: str) -> None:
    """Build the single-frame corpus ``name`` (``sf-200-5pp``) if it is one."""
    sys.path.insert(0, str(ROOT))
    from bench import corpus

    corpus.single_frame_named(name, log=lambda line: print(f"# {line}", file=sys.stderr))


def _run(profile: str, tree: Path, out: Path, key: Path, jobs: int) -> list[str]:
    command = [sys.executable, "-m", "anonymizer", "run", str(tree), str(out), "-p", profile,
               "--key-file", str(key), "-j", str(jobs), "--no-progress"]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{profile} on {tree}: exit {proc.returncode}: {proc.stderr.strip()}")
    lines = []
    with open(out / "audit.jsonl", encoding="utf-8") as log:
        for line in log:
            record = json.loads(line)
            if record.get("type") != "file":
                continue
            if record["status"] == "written":
                lines.append(f"{record['output']}  written  {record['output_sha256']}")
            else:
                lines.append(f"{record['input']}  {record['status']}  -")
    return sorted(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append",
                        help="bench/corpus/NAME to include (repeatable; default "
                             f"{', '.join(DEFAULT_CORPORA)})")
    parser.add_argument("--profile", action="append", choices=PROFILES,
                        help="only these profiles (repeatable; default all)")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="digests-") as scratch:
        work = Path(scratch)
        key = work / "key"
        key.write_text(FIXED_KEY)
        key.chmod(0o600)
        trees = {"sample_data": ROOT / "sample_data",
                 "testdata": _testdata_tree(work / "testdata")}
        for name in args.corpus or DEFAULT_CORPORA:
            tree = ROOT / "bench" / "corpus" / name / "tree"
            if not tree.is_dir():
                _build_single_frame(name)
            if tree.is_dir():
                trees[name] = tree
            else:
                print(f"# {name}: not built (make bench builds it)", file=sys.stderr)
        for profile in args.profile or PROFILES:
            for name, tree in trees.items():
                if profile == "research-ocr-blank" and name not in OCR_TREES:
                    continue
                out = work / f"out-{profile}-{name}"
                for line in _run(profile, tree, out, key, args.jobs):
                    print(f"{profile}  {name}  {line}")
                shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
