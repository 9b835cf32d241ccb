"""Stream input files in a deterministic order (sorted per folder), without loops."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from anonymizer.io.writer import TEMP_PREFIX


def discover(root: Path, exclude: Path | None = None) -> Iterator[str]:
    """Yield the relative POSIX paths of every regular file under ``root``.

    Folders are visited in sorted order, so the same tree always gives the same
    sequence. Symbolic links to folders are followed once (a folder reached twice,
    as in a symlink loop, is not entered again); ``exclude`` (the output folder, if
    a symbolic link inside the input leads to it) is never entered. A folder is known by
    its device and inode, read with the ``stat`` each folder gets anyway: resolving every
    folder's path to compare it with ``exclude`` took a ``lstat`` per component of it,
    ten times the walk's own cost in a tree of a folder per series.
    """
    seen: set[tuple[int, int]] = set()
    excluded: tuple[int, int] | None = None
    if exclude is not None:
        try:
            info = os.stat(exclude)
        except OSError:
            pass  # not there: it holds nothing to keep out
        else:
            excluded = (info.st_dev, info.st_ino)

    def walk(folder: str, prefix: str) -> Iterator[str]:
        try:
            info = os.stat(folder)
        except OSError:
            return
        identity = (info.st_dev, info.st_ino)
        if identity in seen or (identity == excluded and prefix):
            return
        seen.add(identity)
        try:
            with os.scandir(folder) as entries:
                items = sorted(entries, key=lambda e: e.name)
        except OSError:
            return
        for entry in items:
            relative = f"{prefix}{entry.name}"
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_dir:
                yield from walk(entry.path, relative + "/")
            elif is_file and not entry.name.startswith(TEMP_PREFIX):
                yield relative

    yield from walk(os.fspath(root), "")
