"""What a previous run in the same OUT left: its settings and the latest record per input.

A nightly job may have millions of inputs: the latest outcome of each (and which input
holds each output name) is kept in a scratch SQLite database, built streaming while the
log is read, so that the parent process holds at most a bounded database or page cache
and not one Python object per input. It stays in memory while small and moves to a file
beside the audit log when large; that file is unlinked as soon as it is opened, so it is
gone when the run ends, however it ends.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.pipeline.audit import RUN_RECORDS, SHARED_LISTS, iter_records

#: SQLite page cache of a scratch index, in KiB (the parent's memory for resume state)
INDEX_CACHE_KIB = 8192
#: rows inserted per statement while a log is read
_INSERT_CHUNK = 2000
#: numbers the scratch databases of this process (each its own file)
_SCRATCH = itertools.count()
#: an index larger than this moves from memory to a scratch file beside the log
SPILL_BYTES = 8 << 20
#: rows written between two looks at the index's size
_SPILL_CHECK_ROWS = 10000
#: page cache of the scratch file while the index is copied into it, in KiB
_COPY_CACHE_KIB = 512


class Done(NamedTuple):
    """What the latest record of one input says."""

    status: str
    input_sha256: str | None
    output: str | None
    #: keyed stat digest of the input when it was written or last re-hashed (none: it
    #: is read and hashed again; see ``worker.stat_digest``)
    input_stat: str | None = None


def scratch_database(beside: Path) -> sqlite3.Connection:
    """A private SQLite database in a file next to ``beside`` (on the log's file system,
    which has room for the outputs; not in a /tmp that may be memory), unlinked at once.

    No journal and no syncing: it is rebuilt from the audit log by every run.
    """
    path = beside.with_name(f"{TEMP_PREFIX}{beside.name}.{os.getpid()}.{next(_SCRATCH)}.index")
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE",
                       f"cache_size=-{INDEX_CACHE_KIB}", "temp_store=FILE"):
            connection.execute(f"PRAGMA {pragma}")
        connection.execute("CREATE TABLE IF NOT EXISTS scratch_created (x)")  # takes the lock
    except BaseException:
        connection.close()
        raise
    finally:
        path.unlink(missing_ok=True)
    return connection


#: the resume index: latest outcome per input, output claims
INDEX_SCHEMA = (
    "CREATE TABLE done (token TEXT PRIMARY KEY, status TEXT, sha BLOB, output TEXT, "
    "stat BLOB) WITHOUT ROWID",
    "CREATE TABLE claims (output TEXT PRIMARY KEY, token TEXT) WITHOUT ROWID")
#: compaction: the latest line of each input, the shared lists it refers to and the stat
#: digest of a later ``stat`` record (folded into that line)
_LAST_SCHEMA = ("CREATE TABLE last (token TEXT PRIMARY KEY, line INTEGER, refs TEXT, "
                "stat TEXT) WITHOUT ROWID",)


class _LazyDatabase:
    """The index's database: created on first use, in memory while it is small, moved to a
    scratch file beside the log (:func:`scratch_database`) once it holds more than
    :data:`SPILL_BYTES`. A small run never writes it to disk (nor needs room for it on a
    full one); a large one keeps a page cache in memory, not the index. One known to be
    large (``large``) starts in the file: the move would hold the index in memory and the
    file's page cache at once, the parent's peak.
    """

    def __init__(self, beside: Path, schema: tuple[str, ...] = INDEX_SCHEMA,
                 large: bool = False):
        self.beside = beside
        self.schema = schema
        self.large = large
        self._connection: sqlite3.Connection | None = None
        self._in_memory = False
        self._writes = 0

    @property
    def opened(self) -> bool:
        return self._connection is not None

    def get(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = self._scratch_file() if self.large else None
            in_memory = connection is None
            if connection is None:
                connection = sqlite3.connect(":memory:", isolation_level=None,
                                             check_same_thread=False)
            for statement in self.schema:
                connection.execute(statement)
            self._connection, self._in_memory = connection, in_memory
        return self._connection

    def _scratch_file(self) -> sqlite3.Connection | None:
        """A scratch file beside the log, or None where there is no room for one."""
        try:
            return scratch_database(self.beside)
        except (OSError, sqlite3.Error):
            return None

    def wrote(self, rows: int = 1) -> None:
        """Called after writes: move to disk once the database is large."""
        self._writes += rows
        if not self._in_memory or self._writes < _SPILL_CHECK_ROWS:
            return
        self._writes = 0
        memory = self.get()
        pages, size = (memory.execute(f"PRAGMA {name}").fetchone()[0]
                       for name in ("page_count", "page_size"))
        if pages * size <= SPILL_BYTES:
            return
        on_disk = self._scratch_file()
        if on_disk is None:
            return  # no room beside the log: it stays in memory
        try:
            # copied through a small page cache: a full one beside the index still in
            # memory would be the parent's peak; it grows again into what the index frees
            on_disk.execute(f"PRAGMA cache_size=-{_COPY_CACHE_KIB}")
            memory.backup(on_disk)
            on_disk.execute(f"PRAGMA cache_size=-{INDEX_CACHE_KIB}")
        except sqlite3.Error:
            on_disk.close()
            return
        memory.close()
        self._connection, self._in_memory = on_disk, False

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _large_log(audit_path: Path) -> bool:
    """Whether an index built from this log may outgrow :data:`SPILL_BYTES` (a row per
    record, smaller than the record: a sixth of a 417-byte one): it is built in a file from
    the start. No log: no."""
    return audit_path.is_file() and audit_path.stat().st_size > SPILL_BYTES


@contextlib.contextmanager
def _disk_full_as_os_error() -> Iterator[None]:
    """A scratch file that no longer fits is a full disk (the run stops with exit 3)."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "full" in str(exc):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
        raise


def _pack_sha(sha256: str | None, length: int = 64) -> bytes | str | None:
    """A hex digest of ``length`` digits as its bytes (anything else kept as it is)."""
    if sha256 is None or len(sha256) != length:
        return sha256
    try:
        return bytes.fromhex(sha256)
    except ValueError:
        return sha256


def _unpack_sha(stored: bytes | str | None) -> str | None:
    return stored.hex() if isinstance(stored, bytes) else stored


class DoneIndex(MutableMapping[str, Done]):
    """Input token -> :class:`Done`, in the scratch database (a dict's interface)."""

    def __init__(self, database: _LazyDatabase):
        self._database = database

    def _rows(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        if not self._database.opened:
            return []
        return self._database.get().execute(sql, parameters).fetchall()

    def __getitem__(self, token: str) -> Done:
        done = self.get(token)
        if done is None:
            raise KeyError(token)
        return done

    def get(self, token: str, default: Done | None = None) -> Done | None:  # type: ignore[override]
        """One query (a rerun asks once per input)."""
        if not self._database.opened:
            return default
        row = self._database.get().execute(
            "SELECT status, sha, output, stat FROM done WHERE token = ?", (token,)).fetchone()
        if row is None:
            return default
        status, sha, output, stat = row
        return Done(status, _unpack_sha(sha), output, _unpack_sha(stat))

    def __setitem__(self, token: str, done: Done) -> None:
        self.put_many([(token, *done)])

    def put_many(self, rows: list[tuple]) -> None:
        """(token, status, input_sha256, output[, input_stat]) rows; a later row of a
        token wins."""
        with _disk_full_as_os_error():
            self._database.get().executemany(
                "INSERT OR REPLACE INTO done VALUES (?, ?, ?, ?, ?)",
                [(token, status, _pack_sha(sha), output,
                  _pack_sha(stat[0] if stat else None, 32))
                 for token, status, sha, output, *stat in rows])
        self._database.wrote(len(rows))

    def restat_many(self, rows: list[tuple[str, str | None]]) -> None:
        """(token, input_stat) rows: a written input re-hashed unchanged with a new stat."""
        with _disk_full_as_os_error():
            self._database.get().executemany(
                "UPDATE done SET stat = ? WHERE token = ? AND status = 'written'",
                [(_pack_sha(stat, 32), token) for token, stat in rows])

    def __delitem__(self, token: str) -> None:
        if token not in self:
            raise KeyError(token)
        self._database.get().execute("DELETE FROM done WHERE token = ?", (token,))

    def __contains__(self, token: object) -> bool:
        return bool(self._rows("SELECT 1 FROM done WHERE token = ?", (token,)))

    def __iter__(self) -> Iterator[str]:
        if self._database.opened:
            for (token,) in self._database.get().execute("SELECT token FROM done"):
                yield token

    def __len__(self) -> int:
        rows = self._rows("SELECT COUNT(*) FROM done")
        return rows[0][0] if rows else 0

    def __bool__(self) -> bool:
        return bool(self._rows("SELECT 1 FROM done LIMIT 1"))


class ClaimIndex(MutableMapping[str, str]):
    """Output path -> input token of every output placed, in the scratch database."""

    def __init__(self, database: _LazyDatabase):
        self._database = database

    def __getitem__(self, output: str) -> str:
        rows = (self._database.get().execute("SELECT token FROM claims WHERE output = ?",
                                             (output,)).fetchall()
                if self._database.opened else [])
        if not rows:
            raise KeyError(output)
        return rows[0][0]

    def __setitem__(self, output: str, token: str) -> None:
        with _disk_full_as_os_error():
            self._database.get().execute("INSERT OR REPLACE INTO claims VALUES (?, ?)",
                                         (output, token))
        self._database.wrote()

    def __delitem__(self, output: str) -> None:
        if output not in self:
            raise KeyError(output)
        self._database.get().execute("DELETE FROM claims WHERE output = ?", (output,))

    def __iter__(self) -> Iterator[str]:
        if self._database.opened:
            for (output,) in self._database.get().execute("SELECT output FROM claims"):
                yield output

    def __len__(self) -> int:
        if not self._database.opened:
            return 0
        return self._database.get().execute("SELECT COUNT(*) FROM claims").fetchone()[0]


@dataclass
class PreviousRuns:
    """The audit log's state before this run starts.

    ``latest`` and :meth:`claims` have a dict's interface over the scratch database;
    :meth:`close` drops it (also done when the object is collected).
    """

    settings: dict[str, Any] | None = None  # profile_sha256, key_fingerprint, layout
    #: the log ends with the footer of a compaction (:func:`ends_compacted`)
    compacted: bool = False
    #: input token -> latest outcome
    latest: MutableMapping[str, Done] = field(default_factory=dict)
    _database: _LazyDatabase | None = None

    @classmethod
    def load(cls, audit_path: Path) -> PreviousRuns:
        """Read the log in one streaming pass (a torn line from a crash is skipped)."""
        database = _LazyDatabase(audit_path, large=_large_log(audit_path))
        state = cls(latest=DoneIndex(database), _database=database)
        if not audit_path.is_file():
            return state
        state.compacted = ends_compacted(audit_path)
        #: file records (5-tuples) and stat records (2-tuples), in the log's order
        rows: list[tuple] = []
        latest = state.latest
        assert isinstance(latest, DoneIndex)
        for record in iter_records(audit_path):
            kind = record.get("type")
            if kind == "file" and isinstance(record.get("input"), str):
                rows.append((record["input"], str(record.get("status", "")),
                             record.get("input_sha256"), record.get("output"),
                             _stat_of(record)))
            elif kind == "stat" and isinstance(record.get("input"), str):
                rows.append((record["input"], _stat_of(record)))
            elif kind == "run_start":
                state.settings = {k: record.get(k) for k in
                                  ("profile_sha256", "key_fingerprint", "layout")}
            if len(rows) >= _INSERT_CHUNK:
                _store_in_order(latest, rows)
                rows.clear()
        _store_in_order(latest, rows)
        return state

    def mismatch(self, current: dict[str, Any]) -> list[str]:
        """Names of the settings that differ from the previous run's."""
        if self.settings is None:
            return []
        return [key for key, value in current.items() if self.settings.get(key) != value]

    def claims(self) -> MutableMapping[str, str]:
        """Output path -> input token of every file a previous run wrote; the destination
        adds and removes claims as it places outputs (a fresh copy at each call)."""
        if self._database is None:  # built in memory by a caller, not from a log
            return {done.output: token for token, done in self.latest.items()
                    if done.status == "written" and done.output}
        connection = self._database.get()
        with _disk_full_as_os_error():
            connection.execute("DELETE FROM claims")
            connection.execute("INSERT OR REPLACE INTO claims SELECT output, token FROM done "
                               "WHERE status = 'written' AND output IS NOT NULL "
                               "AND output != ''")
        self._database.wrote(_SPILL_CHECK_ROWS)
        return ClaimIndex(self._database)

    def close(self) -> None:
        """Drop the scratch database (``latest`` and the claims are empty afterwards)."""
        if self._database is not None:
            self._database.close()


def _stat_of(record: dict[str, Any]) -> str | None:
    stat = record.get("input_stat")
    return stat if isinstance(stat, str) else None


def _store_in_order(latest: DoneIndex, rows: list[tuple]) -> None:
    """File records and later stat records, each run of one kind in one statement."""
    for is_file, group in itertools.groupby(rows, key=lambda row: len(row) == 5):
        if is_file:
            latest.put_many(list(group))
        else:
            latest.restat_many(list(group))


def sweep_temporaries(root: Path) -> int:
    """Remove temporary files (and folders: a network source's spool) an interrupted run
    left under ``root``; return how many."""
    removed = 0
    for folder, folders, files in os.walk(root):
        for name in [name for name in folders if name.startswith(TEMP_PREFIX)]:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            folders.remove(name)
            removed += 1
        for name in files:
            if name.startswith(TEMP_PREFIX):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except OSError:
                    pass
    return removed


#: what marks the footer of a compacted log
COMPACTED = "compacted"


def ends_compacted(audit_path: Path) -> bool:
    """Whether the log's last line is the footer :func:`compact` marked: nothing was
    appended since (not even a torn line), so it holds one record per input.

    A run that appends nothing else need not rewrite it (a nightly rerun with nothing to
    do would otherwise rewrite a log of millions of records).
    """
    try:
        with open(audit_path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - (64 << 10)))
            tail = handle.read()
    except OSError:
        return False
    if not tail.endswith(b"\n"):
        return False
    try:
        record = json.loads(tail[tail.rfind(b"\n", 0, len(tail) - 1) + 1:])
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("type") == "run_end" \
        and record.get(COMPACTED) is True


def compact(audit_path: Path) -> None:
    """Rewrite the log with every run header/footer, only the latest record per input and
    the shared-list definitions (tags, warnings) those records refer to (one of each).

    Two streaming passes over the file; which lines to keep is worked out in a scratch
    database (memory: a page cache, one bit per line, one entry per distinct shared list).
    Written to a temporary name and renamed, so a crash leaves the old log intact. The last
    footer is marked ``"compacted": true`` (:func:`ends_compacted`).
    """
    database = _LazyDatabase(audit_path, _LAST_SCHEMA, large=_large_log(audit_path))
    try:
        keep, headers = _lines_to_keep(audit_path, database)
        _rewrite(audit_path, keep, headers, _restats(database))
    finally:
        database.close()


def _restats(database: _LazyDatabase) -> Iterator[tuple[int, str]]:
    """(line, input_stat) of the kept file records a later ``stat`` record updates, in
    line order."""
    if database.opened:
        yield from database.get().execute(
            "SELECT line, stat FROM last WHERE stat IS NOT NULL AND line IS NOT NULL "
            "ORDER BY line")


def _rewrite(audit_path: Path, keep: bytearray, headers: list[int],
             restats: Iterator[tuple[int, str]]) -> None:
    """Write the kept lines to a temporary and rename it over the log."""
    final = headers[-1] if headers else -1
    earlier = set(headers) - {final}  # one per run: a few
    temporary = audit_path.with_name(f"{TEMP_PREFIX}{audit_path.name}")
    restat_line, stat = next(restats, (-1, ""))
    try:
        with open(audit_path, encoding="utf-8") as source, \
                open(temporary, "w", encoding="utf-8") as target:
            # every run's header and footer first, then one record per input (each tag
            # shared list's definition before the first record that refers to it), then the
            # footer of the last run
            for number, line in enumerate(source):
                if number in earlier:
                    target.write(line)
            source.seek(0)
            tail = ""
            for number, line in enumerate(source):
                if keep[number >> 3] & (1 << (number & 7)):
                    if number == restat_line:  # its stat record is folded in
                        record = json.loads(line)
                        record["input_stat"] = stat
                        line = json.dumps(record, ensure_ascii=True,
                                          separators=(",", ":")) + "\n"
                        restat_line, stat = next(restats, (-1, ""))
                    target.write(line)
                elif number == final:
                    tail = _marked_compacted(line)
            target.write(tail)
            target.flush()
            os.fsync(target.fileno())
        os.replace(temporary, audit_path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _marked_compacted(footer: str) -> str:
    record = json.loads(footer)
    record[COMPACTED] = True
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"


def _lines_to_keep(audit_path: Path, database: _LazyDatabase
                   ) -> tuple[bytearray, list[int]]:
    """A bitmap of the file records and shared-list definitions to keep, and the header
    and footer lines; a ``stat`` record is kept as its input's ``stat`` (see
    :func:`_restats`)."""
    insert = "INSERT OR REPLACE INTO last VALUES (?, ?, ?, NULL)"
    restat = "UPDATE last SET stat = ? WHERE token = ?"

    def store(rows: list[tuple]) -> None:
        # file records and stat records, in the log's order
        with _disk_full_as_os_error():
            for is_file, group in itertools.groupby(rows, key=lambda row: len(row) == 3):
                database.get().executemany(insert if is_file else restat, list(group))
        database.wrote(len(rows))

    definitions: dict[str, int] = {}  # "name id" of a shared list -> its first definition
    headers: list[int] = []
    rows: list[tuple] = []
    lines = 0
    with open(audit_path, encoding="utf-8") as handle:
        for lines, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line from a crash
            if not isinstance(record, dict):
                continue
            kind, number = record.get("type"), lines - 1
            if kind == "file" and isinstance(record.get("input"), str):
                refs = ",".join(f"{name} {record[name + '_ref']}" for name in SHARED_LISTS
                                if isinstance(record.get(f"{name}_ref"), str))
                rows.append((record["input"], number, refs))
            elif kind == "stat" and isinstance(record.get("input"), str):
                rows.append((_stat_of(record), record["input"]))
            elif kind in RUN_RECORDS:
                headers.append(number)
            elif kind in SHARED_LISTS and isinstance(record.get("id"), str):
                definitions.setdefault(f"{kind} {record['id']}", number)
            if len(rows) >= _INSERT_CHUNK:
                store(rows)
                rows.clear()
    store(rows)
    keep = bytearray((lines + 7) // 8)

    def mark(number: int) -> None:
        keep[number >> 3] |= 1 << (number & 7)

    needed: set[str] = set()
    for number, refs in database.get().execute("SELECT line, refs FROM last"):
        mark(number)
        if refs:
            needed.update(refs.split(","))
    for ref in needed:
        if ref in definitions:
            mark(definitions[ref])
    return keep, headers
