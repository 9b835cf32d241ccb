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
    it lies inside the input) is never entered.
    """
    seen: set[tuple[int, int]] = set()
    excluded = exclude.resolve() if exclude is not None else None

    def walk(folder: Path, prefix: str) -> Iterator[str]:
        try:
            info = folder.stat()
        except OSError:
            return
        identity = (info.st_dev, info.st_ino)
        if identity in seen:
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
                path = Path(entry.path)
                if excluded is not None and path.resolve() == excluded:
                    continue
                yield from walk(path, relative + "/")
            elif is_file and not entry.name.startswith(TEMP_PREFIX):
                yield relative

    yield from walk(root, "")
