"""The parse limit: read every file with pydicom and write it back, changing nothing.

    python -m bench.noop [--jobs N] [--sha256] IN OUT

Every regular file under IN (sorted walk) is read with ``pydicom.dcmread`` and written with
``Dataset.save_as`` to the same relative path under OUT. One process when ``--jobs 1``, else
a ``multiprocessing.Pool`` of N processes fed with ``imap_unordered(chunksize=32)``. pydicom
keeps element values undecoded (raw) when nobody looks at them, so this is a lower bound for
any tool that must parse, inspect and rewrite every header.

With ``--sha256`` the copy also hashes what it reads and what it writes, as ``anonymizer
run`` does for the audit log: each input is read whole, hashed and parsed from memory, and
the output is hashed as pydicom writes it. Not a lower bound: the plain copy with the cost
of the audit log's two digests per file, so that a ratio to it tells the rest apart.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
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


class _HashingWriter:
    """The output file, hashing what passes through it."""

    def __init__(self, handle: io.BufferedWriter):
        self._handle = handle
        self.digest = hashlib.sha256()
        # pydicom wants a whole file object; it writes sequentially (the digest is checked
        # against the written file's in tests/test_bench_goals.py)
        self.tell, self.seek, self.read = handle.tell, handle.seek, handle.read

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()


def copy_file(source: str, target: str, sha256: bool = False) -> tuple[str, str] | None:
    """Copy one file through pydicom; with ``sha256``, return the digests of the bytes read
    and of the bytes written."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not sha256:
        pydicom.dcmread(source).save_as(target)
        return None
    with open(source, "rb") as handle:
        data = handle.read()
    read_digest = hashlib.sha256(data).hexdigest()
    ds = pydicom.dcmread(io.BytesIO(data))
    with open(target, "wb") as handle:
        out = _HashingWriter(handle)
        ds.save_as(out)  # type: ignore[arg-type]
    return read_digest, out.digest.hexdigest()


def _copy(pair: tuple[str, str], sha256: bool = False) -> int:
    copy_file(*pair, sha256=sha256)
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
    parser.add_argument("--sha256", action="store_true",
                        help="hash every input and output, as the audit log does")
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    jobs = args.jobs or os.cpu_count() or 1
    _quiet()
    pairs = _pairs(args.input, args.output)
    copy = functools.partial(_copy, sha256=args.sha256)
    if jobs == 1:
        done = sum(copy(pair) for pair in pairs)
    else:
        pool = multiprocessing.Pool(jobs, initializer=_quiet)
        try:
            done = sum(pool.imap_unordered(copy, pairs, chunksize=CHUNKSIZE))
        finally:
            pool.close()
            pool.join()
    print(f"{done} files read and written")
    return 0 if done == len(pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
