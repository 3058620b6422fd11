"""Reading SQLite files that belong to someone else (the user's ``interactions.db``, OpenClaw's agent and
state databases): read-only, short, one snapshot per read, nothing ever added beside the file.

``read_snapshot(path, query)`` runs ``query(con)`` inside one read transaction, opened as
:func:`open_mode` decides so that no ``-wal``/``-shm`` is created in the user's folder, and retries when a
lock-free read was torn by a writer. It raises :class:`DbUnavailable` with a plain reason.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

#: How long a read waits for another program's lock before the database is reported busy.
BUSY_TIMEOUT_S = 2.0


class DbUnavailable(Exception):
    """The database cannot be read at all (corrupt, not SQLite, locked, missing table): says why."""


SQLITE_MAGIC = b"SQLite format 3\x00"
#: How often a snapshot is retried when the file changed while it was being read (a checkpoint).
SNAPSHOT_ATTEMPTS = 3
#: sqlite3 extended error code: a read-only connection found a hot journal it may not roll back.
SQLITE_READONLY_ROLLBACK = 776

T = TypeVar("T")


def connect_read_only(
    path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S, *, immutable: bool = False
) -> sqlite3.Connection:
    """A read-only connection (``mode=ro`` URI): never creates, writes or keeps a lock on the file.

    ``mode=ro`` alone still makes SQLite create ``-wal``/``-shm`` beside a WAL database that has none;
    :func:`read_snapshot` decides how a file is opened so that nothing is added to the user's folder.
    ``immutable=True`` reads the main file only, without locks (only for WAL files with no ``-wal``)."""
    uri = path.resolve().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")
    con = sqlite3.connect(
        uri, uri=True, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    con.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    con.execute("PRAGMA query_only = 1")
    return con


def sidecar(path: Path, suffix: str) -> Path:
    """``<db>-wal`` / ``<db>-shm`` / ``<db>-journal``."""
    return path.with_name(path.name + suffix)


def is_wal_file(path: Path) -> bool:
    """The header says WAL mode (file format read/write versions 2, bytes 18-19); False if not SQLite."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return False
    return head[:16] == SQLITE_MAGIC and head[18:20] == b"\x02\x02"


def open_mode(path: Path) -> str:
    """How :func:`read_snapshot` opens ``path`` now, so that nothing is created beside it:

    - ``ro``: a rollback-journal file (readers create no file; locks keep writers' pages out), or a WAL
      file whose ``-wal`` and ``-shm`` already exist (a writer is open, or left them): SQLite's own
      concurrent read through the writer's files, adding none.
    - ``immutable``: a WAL file without ``-wal``: no connection is open and every committed row is in
      the main file; read it without locks or sidecars (checked unchanged afterwards, see below).
    - ``copy``: a WAL file with ``-wal`` but no ``-shm`` (copied or restored by hand): the file and its
      ``-wal`` are copied to a private temp folder and read there.

    (A rollback-journal file with a hot ``-journal`` left by a crashed writer fails ``mode=ro``, which may
    not roll it back; :func:`read_snapshot` then reads a private copy of the file and its journal.)
    """
    if not is_wal_file(path):
        return "ro"
    wal, shm = sidecar(path, "-wal").exists(), sidecar(path, "-shm").exists()
    if not wal:
        return "immutable"
    return "ro" if shm else "copy"


def _stamp(path: Path) -> tuple[int, int, int, bool]:
    """What changes when another program writes the file: inode, size, mtime, and whether a -wal exists."""
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, sidecar(path, "-wal").exists()


def _run(
    path: Path,
    query: Callable[[sqlite3.Connection], T],
    busy_timeout_s: float,
    immutable: bool,
    private: bool = False,
) -> T:
    """``query`` in one read transaction; ``private``: ``path`` is our own copy (opened writable, so
    SQLite can recover its -wal or roll back its journal there)."""
    if private:
        con = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    else:
        con = connect_read_only(path, busy_timeout_s, immutable=immutable)
    try:
        con.execute("BEGIN")  # deferred: a shared read snapshot, taken by the first SELECT
        out = query(con)
        con.execute("COMMIT")
        return out
    finally:
        con.close()


def read_snapshot(
    path: Path,
    query: Callable[[sqlite3.Connection], T],
    busy_timeout_s: float = BUSY_TIMEOUT_S,
    *,
    what: str = "SQLite database",
) -> T:
    """``query(con)`` inside one read transaction on ``path``, opened as :func:`open_mode` says; every
    row is read into memory and the connection closed before returning. Raises DbUnavailable (why).

    An ``immutable`` or ``copy`` read takes no lock, so the file's inode, size, mtime and ``-wal`` are
    compared before and after: if another program started writing meanwhile (a checkpoint rewrites
    pages of the main file), the read is thrown away and retried with a fresh :func:`open_mode`."""
    try:
        for _ in range(SNAPSHOT_ATTEMPTS):
            before = _stamp(path)
            how = open_mode(path)
            if how == "ro":
                try:
                    return _run(path, query, busy_timeout_s, immutable=False)
                except sqlite3.DatabaseError as exc:
                    if getattr(exc, "sqlite_errorcode", None) != SQLITE_READONLY_ROLLBACK:
                        raise
                    how = "rollback"  # a crashed writer's hot -journal: roll it back in a private copy
            try:
                if how == "immutable":
                    out = _run(path, query, busy_timeout_s, immutable=True)
                else:
                    with tempfile.TemporaryDirectory(prefix="mc-pipeline-sqlite-") as tmp:
                        copy = Path(tmp) / path.name
                        shutil.copyfile(path, copy)
                        suffix = "-wal" if how == "copy" else "-journal"
                        shutil.copyfile(sidecar(path, suffix), sidecar(copy, suffix))
                        out = _run(copy, query, busy_timeout_s, immutable=False, private=True)
            except (sqlite3.DatabaseError, FileNotFoundError) as exc:
                if isinstance(exc, FileNotFoundError) or _stamp(path) != before:
                    continue  # torn by a concurrent writer, or its -wal went away while copied: read again
                raise
            if _stamp(path) == before:
                return out
        raise DbUnavailable(f"busy: changed by another program during each of {SNAPSHOT_ATTEMPTS} reads")
    except OSError as exc:
        raise DbUnavailable(f"cannot read ({exc.strerror or exc})") from exc
    except sqlite3.Error as exc:
        msg = str(exc)
        if "locked" in msg or "busy" in msg:
            raise DbUnavailable(
                f"busy: another program held a lock longer than {busy_timeout_s:g}s ({msg})"
            ) from exc
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in msg:
            raise DbUnavailable(f"cannot open read-only ({msg})") from exc
        raise DbUnavailable(f"not a readable {what} ({msg})") from exc


def table_columns(con: sqlite3.Connection, table: str) -> list[str] | None:
    """The columns of ``table`` as the file has them (schemas vary between versions); None when it is
    missing."""
    rows = con.execute(f'PRAGMA table_info("{table}")').fetchall()
    return [r[1] for r in rows] if rows else None
