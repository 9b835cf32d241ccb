"""The parse limit: read every file with pydicom and write it back, changing nothing.

    python -m bench.noop [--jobs N] IN OUT

Every regular file under IN (sorted walk) is read with ``pydicom.dcmread`` and written with
``Dataset.save_as`` to the same relative path under OUT. One process when ``--jobs 1``, else
a ``multiprocessing.Pool`` of N processes fed with ``imap_unordered(chunksize=32)``. pydicom
keeps element values undecoded (raw) when nobody looks at them, so this is a lower bound for
any tool that must parse, inspect and rewrite every header.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import warnings
from pathlib import Path

import pydicom

CHUNKSIZE = 32


def _quiet() -> None:
    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def _copy(pair: tuple[str, str]) -> int:
    source, target = pair
    ds = pydicom.dcmread(source)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    ds.save_as(target)
    return 1


def _pairs(source: Path, target: Path) -> list[tuple[str, str]]:
    pairs = []
    for folder, dirs, names in os.walk(source):
        dirs.sort()
        relative = Path(folder).relative_to(source)
        pairs.extend((os.path.join(folder, name), str(target / relative / name))
                     for name in sorted(names))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.noop")
    parser.add_argument("--jobs", type=int, default=1, help="processes (0: all cores)")
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    jobs = args.jobs or os.cpu_count() or 1
    _quiet()
    pairs = _pairs(args.input, args.output)
    if jobs == 1:
        done = sum(_copy(pair) for pair in pairs)
    else:
        pool = multiprocessing.Pool(jobs, initializer=_quiet)
        try:
            done = sum(pool.imap_unordered(_copy, pairs, chunksize=CHUNKSIZE))
        finally:
            pool.close()
            pool.join()
    print(f"{done} files read and written")
    return 0 if done == len(pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
