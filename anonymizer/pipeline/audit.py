"""The audit log: JSON Lines, one record per input file plus a run header and footer.

Nothing in it is PHI: inputs are named by a keyed hash of their relative path,
failure reasons come from a fixed vocabulary (:mod:`anonymizer.reasons`), tags are listed with
the action taken and never with a value.

A file record's per-tag action list is most of its size and repeats from file to file (so
do its warnings), so each distinct list is written once, as a ``{"type": "tags", "id": ...,
"tags": [...]}`` (``"warnings"``) record before the first file record that refers to it by
``"tags_ref": id`` (``"warnings_ref"``). The id is a hash of the list: the same list has the
same id in every run, so a definition written twice is the same line, and compaction keeps
one of each that a kept record refers to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anonymizer.memo import BoundedMemo

#: How many shared-list ids one writer remembers as defined. A list seen again after it was
#: forgotten is defined once more (an identical line): memory stays bounded however many
#: distinct lists a run meets.
REMEMBERED_LISTS = 4096


#: The lists of a file record written once per distinct value and referred to by
#: ``<name>_ref``: the per-tag actions, the warnings.
SHARED_LISTS = ("tags", "warnings")
#: a run's header and footer records
RUN_RECORDS = ("run_start", "run_end")


def list_id(values: list) -> str:
    """The id of a shared list: a hash of its JSON (64 bits, as 16 hex digits)."""
    return EncodedList.of(values).id


@dataclass(frozen=True)
class EncodedList:
    """A shared list (:data:`SHARED_LISTS`) as the log writes it: its JSON and its id.

    Made where the list is made (a worker), so that the one process writing the log
    neither encodes nor hashes it (a file's tag list is the largest part of its record),
    and a worker sends one string back instead of a list of pairs.
    """

    id: str
    json: str

    @classmethod
    def of(cls, values: list) -> EncodedList:
        canonical = json.dumps(values, ensure_ascii=True, separators=(",", ":"))
        return cls(hashlib.blake2b(canonical.encode("ascii"), digest_size=8).hexdigest(),
                   canonical)

    def __iter__(self) -> Iterator[Any]:
        """The list's items, decoded (JSON: pairs come back as lists)."""
        return iter(json.loads(self.json))


def encode_list(values: list) -> EncodedList | list:
    """``values`` ready for a file record's shared list: encoded, or empty as it is.

    The files of a series mostly get the same list: a process encodes each distinct one
    once (the memo holds tags, codes and warnings, never values).
    """
    if not values:
        return []
    key = tuple(values)  # a snapshot: the caller may change its list afterwards
    try:
        encoded = _ENCODED.get(key)
    except TypeError:  # items that are lists (as read back from a log): not kept
        return EncodedList.of(values)
    return encoded if encoded is not None else _ENCODED.remember(key, EncodedList.of(values))


_ENCODED: BoundedMemo[tuple, EncodedList] = BoundedMemo(1024)


class AuditLog:
    """Append-only JSON Lines writer that never leaves a torn record.

    Records are buffered and written as whole lines with ``os.write`` at every
    :meth:`flush`; if a write fails (disk full), the file is cut back to its last
    complete record before the error propagates.

    Parameters
    ----------
    path : Path
        The log file (created with its folder if missing).
    """

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._pending: list[str] = []
        #: records other than run headers and footers queued so far (inputs, shared lists)
        self.entries = 0
        #: (list name, id) of the lists this writer defined, least recently used first
        self._defined: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._end_torn_line()

    def _end_torn_line(self) -> None:
        """A run killed mid-write left a line without its newline: end it, so that the
        next record (this run's header) is a line of its own, not glued to the torn one."""
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            with contextlib.suppress(OSError):  # a full disk: the header joins the torn line
                os.write(self._fd, b"\n")

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record; a file record's shared lists (:data:`SHARED_LISTS`) are
        replaced by references to them (each defined first, if this writer has not
        defined it lately)."""
        kind = record.get("type")
        if kind not in RUN_RECORDS:
            self.entries += 1
        if kind == "file":
            for name in SHARED_LISTS:
                if record.get(name):
                    record = self._refer(record, name)
        self._pending.append(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")

    def _refer(self, record: dict[str, Any], name: str) -> dict[str, Any]:
        values = record[name]
        encoded = values if isinstance(values, EncodedList) else EncodedList.of(values)
        ref = encoded.id
        if (name, ref) in self._defined:
            self._defined.move_to_end((name, ref))
        else:
            # {"type": name, "id": ref, name: values} as json.dumps writes it
            self._pending.append(f'{{"type":"{name}","id":"{ref}","{name}":{encoded.json}}}\n')
            self._defined[name, ref] = None
            if len(self._defined) > REMEMBERED_LISTS:
                self._defined.popitem(last=False)
        # same key order, the list replaced by its id
        return {(f"{name}_ref" if key == name else key): (ref if key == name else value)
                for key, value in record.items()}

    def flush(self) -> None:
        if not self._pending:
            return
        data = "".join(self._pending).encode("ascii")
        good = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, good)
            raise
        self._pending.clear()

    def flush_what_fits(self) -> int:
        """Write the pending records one by one until one does not fit (disk full).

        Returns how many were dropped. The log keeps only complete records; the
        outputs of dropped records are adopted by the next run (identical bytes).
        """
        try:
            self.flush()
            return 0
        except OSError:
            pending, self._pending = self._pending, []
        for number, line in enumerate(pending):
            self._pending = [line]
            try:
                self.flush()
            except OSError:
                self._pending = []
                return len(pending) - number
        return 0

    def close(self) -> None:
        try:
            self.flush()
        finally:
            os.close(self._fd)


def iter_records(path: Path, resolve_tags: bool = False) -> Iterator[dict[str, Any]]:
    """The complete records of a log, one at a time (a torn line from a crash is skipped).

    With ``resolve_tags`` a file record gets its shared lists (``tags``, ``warnings``) back
    in place of their ``..._ref`` (a reference without a definition gives no list), and
    the definitions themselves are not yielded; memory then holds one copy of each
    distinct list.
    """
    definitions: dict[tuple[str, str], list] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            if resolve_tags:
                kind = record.get("type")
                if kind in SHARED_LISTS:
                    definitions.setdefault((kind, str(record.get("id"))), record.get(kind) or [])
                    continue
                if kind == "file":
                    resolve_lists(record, definitions)
            yield record


def resolve_lists(record: dict[str, Any], definitions: dict[tuple[str, str], list]) -> None:
    """Put a file record's shared lists back in place of their references (in place)."""
    for name in SHARED_LISTS:
        ref = record.pop(f"{name}_ref", None)
        if ref is not None and (name, ref) in definitions:
            record[name] = definitions[name, ref]


def read_records(path: Path, resolve_tags: bool = True) -> list[dict[str, Any]]:
    """All complete records of a log, file records with their lists (see
    :func:`iter_records`; for a large log iterate that instead)."""
    return list(iter_records(path, resolve_tags))
