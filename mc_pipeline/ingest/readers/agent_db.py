"""The per-agent databases of OpenClaw 2026.8+: ``agents/<id>/agent/openclaw-agent.sqlite``
(docs/openclaw-formats.md#agent-databases).

Since 2026.8 new sessions are written only here. Three tables hold transcript lines, each read as the JSONL
lines it stores and parsed by the one line parser
(:func:`mc_pipeline.ingest.readers.transcripts.parse_pieces`), so there is one definition of a call:

- ``transcript_events`` (source ``transcript_store``): one row per line, ``event_json`` text or
  ``event_zstd`` (one zstd frame of the line's UTF-8 bytes, ``event_utf8_bytes`` long). A row that does
  not decode is quarantined with its database, table, session and ``seq``. ``line_no`` is the ``seq``.
- ``session_transcript_archives`` (``transcript_archive``): a deleted or reset session's whole JSONL,
  ``identity`` or ``zstd``; ``line_no`` is the line in it. Its published copy in ``sessions/`` is the same
  calls and is counted once (:mod:`mc_pipeline.calls.dedupe`, same ``call_id``).
- ``session_transcript_cold_archives`` (``transcript_cold``): a session moved to cold storage, a zstd
  JSONL of ``{"kind": "event", "row": {"seq", "event_json"}}`` lines (other kinds hold no usage), in
  ``archive_blob`` or in ``sessions/cold/<archive_name>``; ``line_no`` is the event's ``seq``. A session
  restored to the hot table is in both places for a while: counted once (same ``call_id``).

Each session of a table is a *unit* with its own ``source_file`` (``<db>#<table>/<session>[/<generation>]``)
and line accounting. Reading is incremental per unit (:data:`DB_MANIFEST` beside the staged batch): a database
whose file and ``-wal`` did not change is not opened; else a session whose rewrite watermark
(``transcript_rewrite_watermarks.generation``), row count and last ``seq`` are unchanged is not read, one that
grew is read from its last ``seq`` (the rows before it are counted to notice a rewrite without a new
watermark), any other is read whole; archives and cold archives are read again only when their sha256 changes;
a replaced database (new inode) is read whole. Every read is a short read transaction on a read-only
connection (:func:`mc_pipeline.ingest.readers.sqlite_access.read_snapshot`: nothing is created beside the
file, the gateway's writers are never blocked), sessions are read in batches.

Also here: the session keys, channels and fork lineage (``session_windows``/``session_nodes``) and the
auth profile store of each agent (only profile types are read).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from mc_pipeline.ingest.day_store import Removal
from mc_pipeline.ingest.readers.batch import SourceBatch
from mc_pipeline.ingest.readers.home import STORE_NAME, AgentDatabase, discover_agent_dbs  # noqa: F401 - re-exported
from mc_pipeline.ingest.readers.sqlite_access import DbUnavailable, read_snapshot, sidecar, table_columns
from mc_pipeline.ingest.readers.staged import ReadReport, SourceState, filter_units, unit_days
from mc_pipeline.ingest.readers.transcripts import Piece, PieceStats, excerpt, parse_pieces
from mc_pipeline.ingest.readers.zstd_frames import ZstdError, decompress_line, stream_lines
from mc_pipeline.tables.schemas import CALL_RECORDS, FILE_COUNTS, QUARANTINE, conform

EVENTS, ARCHIVES, COLD = (
    "transcript_events",
    "session_transcript_archives",
    "session_transcript_cold_archives",
)
SOURCE_OF = {EVENTS: "transcript_store", ARCHIVES: "transcript_archive", COLD: "transcript_cold"}
#: The most an archive or cold archive may expand to (a hostile frame must not exhaust memory).
MAX_ARCHIVE_BYTES = 8 * 1024**3
#: Rows read per short read transaction (a batch of whole sessions; a bigger session is one batch).
BATCH_ROWS = 50_000
#: Bytes of transcript lines parsed per Polars pass.
UNIT_BYTES = 16 * 1024 * 1024
#: Quarantine reasons that depend on the clock: such units are read again every run.
CLOCK_REASONS = ("no plausible timestamp",)

Progress = Callable[[str], None]

DB_MANIFEST: dict[str, pl.DataType] = {
    "source_file": pl.String(),  # <db>#<table>/<session>[/<generation>]
    "source": pl.String(),
    "db": pl.String(),  # the database, relative to the home
    "agent_id": pl.String(),
    "session_id": pl.String(),
    "version": pl.String(),  # events: the rewrite watermark; archives and cold: the sha256
    "last_seq": pl.Int64(),  # events: the last seq read
    "rows": pl.Int64(),  # events: rows read up to last_seq
    "is_fork": pl.Boolean(),
    "lines_read": pl.Int64(),
    "calls": pl.Int64(),
    "other_entries": pl.Int64(),
    "skipped_by_rule": pl.Int64(),
    "quarantined": pl.Int64(),
    "reread": pl.Boolean(),  # read again every run (clock-dependent quarantine)
    "db_stamp": pl.String(),  # the database's file state when read
    "days": pl.List(pl.Date()),  # the days (reporting zone) its call records are on
}


def db_stamp(path: Path) -> str:
    """What changes when OpenClaw writes the database: the file's and its ``-wal``'s inode, size and mtime."""
    parts = []
    for p in (path, sidecar(path, "-wal")):
        try:
            st = os.stat(p)
            parts.append(f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append("-")
    return "|".join(parts)


def unit_key(db_rel: str, table: str, session_id: str, generation: str | None = None) -> str:
    return f"{db_rel}#{table}/{session_id}" + (f"/{generation}" if generation else "")


# -- what a database holds ----------------------------------------------------------------------------------
@dataclass
class DbContents:
    tables: set[str]
    event_columns: list[str]
    sessions: dict[str, tuple[int, int, str | None]]  # session -> (rows, max seq, watermark generation)
    archives: list[dict]  # session_id, generation, encoding, sha256, name
    cold: list[dict]  # session_id, generation, name, sha256, storage, event_count


def _contents(con: sqlite3.Connection) -> DbContents:
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if EVENTS not in tables:
        raise DbUnavailable(f"no {EVENTS} table (tables: {', '.join(sorted(tables)) or 'none'})")
    cols = table_columns(con, EVENTS) or []
    marks: dict[str, str] = {}
    if "transcript_rewrite_watermarks" in tables:
        marks = dict(con.execute("SELECT session_id, generation FROM transcript_rewrite_watermarks"))
    sessions = {
        s: (n, m, marks.get(s))
        for s, n, m in con.execute(f"SELECT session_id, count(*), max(seq) FROM {EVENTS} GROUP BY session_id")
        if isinstance(s, str)
    }
    archives = []
    if ARCHIVES in tables:
        for sid, gen, enc, sha, name in con.execute(
            f"SELECT session_id, generation, encoding, archive_sha256, archive_name FROM {ARCHIVES}"
        ):
            archives.append(
                {"session_id": sid, "generation": gen, "encoding": enc, "sha256": sha, "name": name}
            )
    cold = []
    if COLD in tables:
        for sid, gen, name, sha, storage, n in con.execute(
            f"SELECT session_id, generation, archive_name, archive_sha256, storage, event_count FROM {COLD}"
        ):
            cold.append(
                {
                    "session_id": sid,
                    "generation": gen,
                    "name": name,
                    "sha256": sha,
                    "storage": storage,
                    "event_count": n,
                }
            )
    return DbContents(tables, cols, sessions, archives, cold)


def read_contents(path: Path) -> DbContents:
    return read_snapshot(path, _contents, what="OpenClaw agent database")


# -- decoding rows into transcript lines ------------------------------------------------------------------
@dataclass
class _Unit:
    """One session of one table being read: its lines so far, their seq, and accounting."""

    key: str
    source: str
    agent_id: str
    session_id: str
    kind: str  # events | archive | cold
    version: str | None = None
    first_seq: int = 0  # events: rows with seq > first_seq are read (0: the whole session)
    to_seq: int | None = None
    previous: dict | None = None  # the manifest row when appending
    stats: PieceStats = field(default_factory=PieceStats)
    last_seq: int = 0
    rows: int = 0
    quarantine: list[dict] = field(default_factory=list)
    problem: str | None = None
    header_sid: str | None = None
    is_fork: bool | None = None


def _bad(unit: _Unit, line_no: int | None, reason: str, shown: str) -> None:
    unit.quarantine.append(
        {
            "source": unit.source,
            "source_file": unit.key,
            "line_no": line_no,
            "reason": reason,
            "excerpt": shown[:200],
        }
    )
    unit.stats.lines_read += 1
    unit.stats.quarantined += 1


def decode_event(
    unit: _Unit, seq: int, event_json: bytes | None, blob: bytes | None, n: int | None
) -> bytes | None:
    """The line a ``transcript_events`` row holds, or None (the row quarantined with why)."""
    if event_json is not None:
        if isinstance(event_json, str):
            event_json = event_json.encode("utf-8", errors="surrogateescape")
        if n is not None and blob is None and n != len(event_json):
            _bad(
                unit,
                seq,
                f"event_json is {len(event_json):,} bytes, event_utf8_bytes says {n:,}",
                excerpt(event_json),
            )
            return None
        return event_json
    if blob is None:
        _bad(unit, seq, "event row without event_json or event_zstd", "")
        return None
    try:
        return decompress_line(blob, n)
    except ZstdError as exc:
        size = len(blob) if isinstance(blob, (bytes, bytearray)) else 0
        _bad(unit, seq, str(exc), f"<event_zstd: {size:,} bytes>")
        return None


class _Parser:
    """Collects units' lines and parses them in Polars passes of about UNIT_BYTES."""

    def __init__(
        self,
        now: datetime,
        sink: Callable[[pl.DataFrame], None],
        tz: str | None = None,
        unit_bytes: int = UNIT_BYTES,
    ):
        self.now, self.unit_bytes, self.sink, self.tz = now, unit_bytes, sink, tz
        self.pending: list[tuple[Piece, _Unit, list[int] | None]] = []
        self.size = 0
        self.quarantine: list[pl.DataFrame] = []
        self.days: dict[str, set] = {}  # unit -> days of its new records

    def add(self, unit: _Unit, lines: list[bytes], seqs: list[int] | None, first_line: int = 1) -> None:
        if not lines:
            return
        data = b"\n".join(x.replace(b"\r", b" ").replace(b"\n", b" ") for x in lines) + b"\n"
        piece = Piece(
            data,
            rel=unit.key,
            agent_id=unit.agent_id,
            session_id=unit.session_id,
            first_line=first_line,
            source=unit.source,
            n_lines=len(lines),
            is_fork=unit.is_fork,
        )
        self.pending.append((piece, unit, seqs))
        self.size += len(data)
        if self.size >= self.unit_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        calls, quarantine, stats = parse_pieces([p for p, _, _ in self.pending], self.now)
        maps = []
        for (piece, unit, seqs), st in zip(self.pending, stats):
            for name in ("lines_read", "calls", "other_entries", "skipped_by_rule", "quarantined"):
                setattr(unit.stats, name, getattr(unit.stats, name) + getattr(st, name))
            if st.session_id and unit.header_sid is None and piece.first_line == 1:
                unit.header_sid = st.session_id
            if st.is_fork is not None and unit.is_fork is None:
                unit.is_fork = st.is_fork
            if seqs is not None:
                maps.append(
                    pl.DataFrame(
                        {
                            "source_file": piece.rel,
                            "line_no": range(piece.first_line, piece.first_line + len(seqs)),
                            "_seq": seqs,
                        },
                        schema={"source_file": pl.String, "line_no": pl.Int64, "_seq": pl.Int64},
                    )
                )
        if maps:
            seq_of = pl.concat(maps)

            def to_seq(frame: pl.DataFrame) -> pl.DataFrame:
                return (
                    frame.join(seq_of, on=["source_file", "line_no"], how="left", maintain_order="left")
                    .with_columns(line_no=pl.coalesce("_seq", "line_no"))
                    .drop("_seq")
                )

            calls, quarantine = to_seq(calls), to_seq(quarantine)
        if calls.height:
            if self.tz is not None:
                for key, days in unit_days(calls, self.tz).items():
                    self.days.setdefault(key, set()).update(days)
            self.sink(calls)
        if quarantine.height:
            self.quarantine.append(quarantine)
        self.pending, self.size = [], 0


# -- reading each kind of unit ------------------------------------------------------------------------------
def _event_batches(
    db: AgentDatabase, units: list[_Unit], columns: list[str]
) -> Iterator[list[tuple[_Unit, list[tuple]]]]:
    """Rows of each unit, a batch of whole sessions per short read transaction."""
    js = "CAST(event_json AS BLOB)" if "event_json" in columns else "NULL"
    blob = "event_zstd" if "event_zstd" in columns else "NULL"
    n = "event_utf8_bytes" if "event_utf8_bytes" in columns else "NULL"
    sql = (
        f"SELECT seq, {js}, {blob}, {n} FROM {EVENTS}"
        " WHERE session_id = ? AND seq > ? AND seq <= ? ORDER BY seq"
    )
    has_marks = True

    def query(batch: list[_Unit]):
        def run(con: sqlite3.Connection) -> list[tuple[_Unit, list[tuple]]]:
            nonlocal has_marks
            out = []
            for u in batch:
                gen = None
                if has_marks:
                    try:
                        row = con.execute(
                            "SELECT generation FROM transcript_rewrite_watermarks WHERE session_id = ?",
                            (u.session_id,),
                        ).fetchone()
                        gen = row[0] if row else None
                    except sqlite3.OperationalError:
                        has_marks = False
                upto = u.to_seq if u.to_seq is not None else 2**62
                first = u.first_seq
                if first and (
                    gen != u.version or _rows_upto(con, u.session_id, first) != (u.previous or {}).get("rows")
                ):
                    # rewritten since the last read (a new watermark, or rows before it changed): read it
                    # whole
                    first = 0
                rows = con.execute(sql, (u.session_id, first, upto)).fetchall()
                u.version, u.first_seq = gen, first
                out.append((u, rows))
            return out

        return run

    batch: list[_Unit] = []
    size = 0
    for u in units:
        batch.append(u)
        size += max(1, (u.to_seq or 0) - u.first_seq)
        if size >= BATCH_ROWS:
            yield read_snapshot(db.path, query(batch), what="OpenClaw agent database")
            batch, size = [], 0
    if batch:
        yield read_snapshot(db.path, query(batch), what="OpenClaw agent database")


def _rows_upto(con: sqlite3.Connection, session_id: str, seq: int) -> int:
    return con.execute(
        f"SELECT count(*) FROM {EVENTS} WHERE session_id = ? AND seq <= ?", (session_id, seq)
    ).fetchone()[0]


def _read_events(db: AgentDatabase, units: list[_Unit], columns: list[str], parser: _Parser) -> None:
    for batch in _event_batches(db, units, columns):
        for u, rows in batch:
            if u.first_seq == 0:
                u.previous = None  # read whole: nothing of the last read stays
            lines, seqs = [], []
            for seq, event_json, blob, n in rows:
                line = decode_event(u, seq, event_json, blob, n)
                if line is not None:
                    lines.append(line)
                    seqs.append(seq)
            u.rows = (u.previous or {}).get("rows", 0) + len(rows)
            u.last_seq = rows[-1][0] if rows else (u.previous or {}).get("last_seq", 0)
            parser.add(u, lines, seqs)


def _blob(db: AgentDatabase, table: str, where: str, args: tuple) -> bytes | None:
    def q(con: sqlite3.Connection):
        row = con.execute(f"SELECT archive_blob FROM {table} WHERE {where}", args).fetchone()
        return None if row is None else row[0]

    return read_snapshot(db.path, q, what="OpenClaw agent database")


def _feed_jsonl(unit: _Unit, chunks: Iterator[bytes], parser: _Parser) -> None:
    """Lines of an archived session's JSONL (streamed), numbered from 1."""
    line_no = 1
    for chunk in chunks:
        lines = chunk.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        parser.add(unit, lines, None, first_line=line_no)
        line_no += len(lines)


def _read_archive(db: AgentDatabase, u: _Unit, meta: dict, parser: _Parser) -> None:
    blob = _blob(db, ARCHIVES, "session_id = ? AND generation = ?", (u.session_id, meta["generation"]))
    if blob is None:  # gone since the table was listed: the next run sees it gone
        u.problem = "vanished while being read"
        return
    if isinstance(blob, str):
        blob = blob.encode()
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        u.problem = "archive_blob does not match its archive_sha256 (read anyway)"
    try:
        if meta["encoding"] == "zstd":
            _feed_jsonl(u, stream_lines(blob, MAX_ARCHIVE_BYTES), parser)
        else:
            _feed_jsonl(u, iter([blob]), parser)
    except ZstdError as exc:
        parser.flush()
        _bad(u, None, f"archive does not decompress: {exc}", f"<archive_blob: {len(blob):,} bytes>")


def _read_cold(db: AgentDatabase, u: _Unit, meta: dict, parser: _Parser) -> None:
    if meta["storage"] == "sqlite":
        blob = _blob(db, COLD, "session_id = ?", (u.session_id,))
        where = "archive_blob"
    else:
        path = db.sessions_dir / "cold" / str(meta["name"])
        where = f"sessions/cold/{meta['name']}"
        try:
            blob = path.read_bytes()
        except OSError as exc:
            _bad(u, None, f"cold archive file {where} cannot be read ({exc.strerror or exc})", "")
            return
    if blob is None:
        u.problem = "vanished while being read"
        return
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        u.problem = f"cold archive {where} does not match its archive_sha256 (read anyway)"
    line_no, position = 0, 1  # position: the next event's place among the unit's decoded lines
    try:
        for chunk in stream_lines(blob, MAX_ARCHIVE_BYTES):
            lines, seqs = [], []
            for raw in chunk.split(b"\n"):
                if not raw:
                    continue
                line_no += 1
                try:
                    rec = json.loads(raw)
                except ValueError:
                    _bad(u, None, f"cold archive line {line_no}: not valid JSON", excerpt(raw))
                    continue
                row = rec.get("row") if isinstance(rec, dict) else None
                if not isinstance(rec, dict) or rec.get("kind") != "event":
                    u.stats.lines_read += 1
                    u.stats.skipped_by_rule += 1  # header, identity, active, index, fts: no usage
                    continue
                text, seq = (row.get("event_json"), row.get("seq")) if isinstance(row, dict) else (None, None)
                if not isinstance(text, str) or not isinstance(seq, int):
                    _bad(
                        u, None, f"cold archive line {line_no}: event without event_json or seq", excerpt(raw)
                    )
                    continue
                lines.append(text.encode("utf-8", errors="surrogateescape"))
                seqs.append(seq)
            parser.add(u, lines, seqs, first_line=position)
            position += len(lines)
    except ZstdError as exc:
        parser.flush()
        _bad(u, None, f"cold archive {where} does not decompress: {exc}", f"<{len(blob):,} bytes>")


# -- the incremental read of every agent database ------------------------------------------------------------
@dataclass
class DbRead:
    report: ReadReport
    units_read: int = 0
    units_unchanged: int = 0
    units_vanished: int = 0
    dbs_opened: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "databases_opened": self.dbs_opened,
            "sessions_read": self.units_read,
            "sessions_unchanged": self.units_unchanged,
            "sessions_vanished": self.units_vanished,
        }


def _plan(
    db: AgentDatabase, contents: DbContents, previous: dict[str, dict]
) -> tuple[list[_Unit], list[_Unit], list[_Unit], list[str]]:
    """(events units to read, archive units, cold units, keys unchanged) of one database."""
    events, archives, cold, unchanged = [], [], [], []
    for sid, (n, max_seq, gen) in sorted(contents.sessions.items()):
        key = unit_key(db.rel, EVENTS, sid)
        e = previous.get(key)
        if (
            e is not None
            and not e["reread"]
            and e["version"] == gen
            and e["rows"] == n
            and e["last_seq"] == max_seq
        ):
            unchanged.append(key)
            continue
        u = _Unit(key, SOURCE_OF[EVENTS], db.agent_id, sid, "events", version=gen, to_seq=max_seq)
        if (
            e is not None
            and not e["reread"]
            and e["version"] == gen
            and max_seq > e["last_seq"]
            and n > e["rows"]
        ):
            u.first_seq, u.previous, u.is_fork = e["last_seq"], e, e["is_fork"]
        events.append(u)
    for meta in contents.archives:
        key = unit_key(db.rel, ARCHIVES, meta["session_id"], meta["generation"])
        e = previous.get(key)
        if e is not None and not e["reread"] and e["version"] == meta["sha256"]:
            unchanged.append(key)
            continue
        archives.append(
            _Unit(
                key, SOURCE_OF[ARCHIVES], db.agent_id, meta["session_id"], "archive", version=meta["sha256"]
            )
        )
    for meta in contents.cold:
        key = unit_key(db.rel, COLD, meta["session_id"])
        e = previous.get(key)
        if e is not None and not e["reread"] and e["version"] == meta["sha256"]:
            unchanged.append(key)
            continue
        cold.append(
            _Unit(key, SOURCE_OF[COLD], db.agent_id, meta["session_id"], "cold", version=meta["sha256"])
        )
    return events, archives, cold, unchanged


def _manifest_row(u: _Unit, db: AgentDatabase, stamp: str, days: set) -> dict:
    base = u.previous or {}
    st = u.stats
    return {
        "source_file": u.key,
        "source": u.source,
        "db": db.rel,
        "agent_id": u.agent_id,
        "session_id": u.header_sid or base.get("session_id") or u.session_id,
        "version": u.version,
        "last_seq": u.last_seq,
        "rows": u.rows,
        "is_fork": bool(u.is_fork),
        "lines_read": base.get("lines_read", 0) + st.lines_read,
        "calls": base.get("calls", 0) + st.calls,
        "other_entries": base.get("other_entries", 0) + st.other_entries,
        "skipped_by_rule": base.get("skipped_by_rule", 0) + st.skipped_by_rule,
        "quarantined": base.get("quarantined", 0) + st.quarantined,
        "reread": False,
        "db_stamp": stamp,
        "days": sorted(set(base.get("days") or []) | days),
    }


@dataclass
class _DbPass:
    entries: list[dict]
    removal: Removal
    quarantine: list[pl.DataFrame]
    problems: list[str]
    read: DbRead


def _manifest_by_db(manifest: pl.DataFrame) -> dict[str, dict[str, dict]]:
    """Plan step: the last run's manifest rows, per database, per unit."""
    by_db: dict[str, dict[str, dict]] = {}
    for row in manifest.iter_rows(named=True):
        by_db.setdefault(row["db"], {})[row["source_file"]] = row
    return by_db


def _replaced(prev: dict[str, dict], stamp: str) -> bool:
    """Plan step: the database file is another inode than the one its earlier units were read from."""
    inode = stamp.split("|")[0].split(":")[0]
    return any(e["db_stamp"].split("|")[0].split(":")[0] != inode for e in prev.values())


def _read_units(
    db: AgentDatabase,
    contents: DbContents,
    units: tuple[list[_Unit], list[_Unit], list[_Unit]],
    parser: _Parser,
) -> None:
    """Read step: a database's changed (events, archive, cold) units into ``parser``."""
    events, archives, cold = units
    _read_events(db, events, contents.event_columns, parser)
    by_key = {unit_key(db.rel, ARCHIVES, m["session_id"], m["generation"]): m for m in contents.archives}
    for u in archives:
        _read_archive(db, u, by_key[u.key], parser)
    cold_meta = {m["session_id"]: m for m in contents.cold}
    for u in cold:
        _read_cold(db, u, cold_meta[u.session_id], parser)
    parser.flush()


def _account_db(
    out: _DbPass,
    stamp: str,
    prev: dict[str, dict],
    gone: dict[str, dict],
    unchanged: list[str],
    units: list[_Unit],
) -> None:
    """Accounting step: a read database's unchanged units kept, and what of its earlier rows goes."""
    out.entries.extend({**prev[k], "db_stamp": stamp} for k in unchanged)
    out.read.units_unchanged += len(unchanged)
    present = set(unchanged) | {u.key for u in units}
    for key, e in {**gone, **prev}.items():
        if key not in present or key in gone:
            out.removal.units.add(key)
            out.removal.days.update(e["days"] or [])
            out.read.units_vanished += key not in present
    for u in units:
        if u.previous is None and u.key in prev:  # read whole: none of its earlier rows stay
            out.removal.units.add(u.key)
            out.removal.days.update(prev[u.key]["days"] or [])


def _read_db(
    db: AgentDatabase, prev: dict[str, dict], parser: _Parser, out: _DbPass
) -> list[tuple[_Unit, AgentDatabase, str]] | None:
    """One database step: its changed units read into ``parser`` and accounted in ``out``; None when it was
    not read (unchanged, or not readable now: what earlier runs read from it stays)."""
    stamp = db_stamp(db.path)
    if prev and all(e["db_stamp"] == stamp and not e["reread"] for e in prev.values()):
        out.entries.extend(prev.values())
        out.read.units_unchanged += len(prev)
        return None
    gone: dict[str, dict] = {}
    if prev and _replaced(prev, stamp):
        gone, prev = prev, {}  # a replaced database (another inode): every earlier row goes, read it whole
    parser.flush()
    n_quarantine = len(parser.quarantine)
    units: list[_Unit] = []
    try:
        contents = read_contents(db.path)
        out.read.dbs_opened += 1
        events, archives, cold, unchanged = _plan(db, contents, prev)
        units = events + archives + cold
        _read_units(db, contents, (events, archives, cold), parser)
    except DbUnavailable as exc:
        # not readable now (busy, corrupt): what earlier runs read from it stays, the next run tries again
        parser.pending, parser.size = [], 0
        del parser.quarantine[n_quarantine:]
        out.removal.drop_new.update(u.key for u in units)
        kept = f"; the {len(prev)} session(s) read from it before are kept" if prev or gone else ""
        out.problems.append(f"{db.rel}: {exc}{kept}")
        out.entries.extend((prev or gone).values())
        return None
    _account_db(out, stamp, prev, gone, unchanged, units)
    return [(u, db, stamp) for u in units]


def _finish_units(out: _DbPass, read_units: list[tuple[_Unit, AgentDatabase, str]], parser: _Parser) -> None:
    """Manifest step: the read units' manifest rows, problems and quarantine rows, entries in one order."""
    for u, db, stamp in read_units:
        if u.problem:
            out.problems.append(f"{u.key}: {u.problem}")
        out.entries.append(_manifest_row(u, db, stamp, parser.days.get(u.key, set())))
    out.read.units_read = len(read_units)
    out.quarantine = parser.quarantine + [
        conform(
            pl.DataFrame([q for u, _, _ in read_units for q in u.quarantine], schema=QUARANTINE), QUARANTINE
        )
    ]
    out.entries.sort(key=lambda e: (e["db"], e["source_file"]))  # one order, whatever was read when


def _read_dbs(
    home: Path,
    manifest: pl.DataFrame,
    sink: Callable[[pl.DataFrame], None],
    *,
    tz: str | None,
    registry: list[tuple[str, Path]] | None,
    now: datetime,
    progress: Progress | None,
    every_s: float,
) -> _DbPass:
    """Read what changed in every agent database; new call records go to ``sink``. Returns the new manifest
    rows, what of the earlier records goes (:class:`Removal`), the new quarantine rows and problems.

    Steps: the last manifest grouped by database, each database read (or skipped), the units of databases
    that are gone removed, then the read units' manifest rows."""
    by_db = _manifest_by_db(manifest)
    parser = _Parser(now, sink, tz)
    out = _DbPass([], Removal(), parser.quarantine, [], DbRead(ReadReport()))
    read_units: list[tuple[_Unit, AgentDatabase, str]] = []
    last = time.monotonic()
    dbs = discover_agent_dbs(home, registry)
    for i, db in enumerate(dbs):
        read = _read_db(db, by_db.pop(db.rel, {}), parser, out)
        if read is None:
            continue
        read_units += read
        if progress and time.monotonic() - last > every_s:
            last = time.monotonic()
            progress(f"agent databases: {i + 1}/{len(dbs)} read")
    for gone_db in by_db.values():  # databases that are gone
        for key, e in gone_db.items():
            out.removal.units.add(key)
            out.removal.days.update(e["days"] or [])
            out.read.units_vanished += 1
    parser.flush()
    _finish_units(out, read_units, parser)
    return out


def _finish_tables(
    entries: list[dict], quarantine: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(manifest, quarantine, file counts) in the manifest's order; clock-dependent units marked for reading
    again."""
    manifest = pl.DataFrame(entries, schema=DB_MANIFEST) if entries else pl.DataFrame(schema=DB_MANIFEST)
    clock = set(
        quarantine.filter(pl.col("reason").str.starts_with(CLOCK_REASONS[0]))
        .get_column("source_file")
        .to_list()
    )
    if clock:
        manifest = manifest.with_columns(reread=pl.col("source_file").is_in(sorted(clock)))
    order = manifest.select("source_file").with_row_index("_pos")
    quarantine = (
        quarantine.join(order, on="source_file", how="left", maintain_order="left")
        .sort("_pos", "line_no", maintain_order=True, nulls_last=True)
        .drop("_pos")
    )
    return manifest, quarantine, manifest.select(*FILE_COUNTS.keys()).cast(FILE_COUNTS)


def stage_agent_dbs(
    home: Path,
    state: SourceState,
    *,
    settings_key: str = "",
    full_rebuild: bool = False,
    reread: set[str] | None = None,
    registry: list[tuple[str, Path]] | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    every_s: float = 2.0,
) -> DbRead:
    """Bring the staged records of every agent database up to date, reading only what changed (see the
    module doc); ``reread``: units to read again whole (a rerun of a day from the raw databases)."""
    now = now or datetime.now(UTC)
    manifest = None if full_rebuild else state.manifest(DB_MANIFEST, settings_key)
    why = "full rebuild requested" if full_rebuild else None
    if why is None and state.interrupted():
        why, manifest = "an earlier run stopped while staging", None
    if why is None and manifest is None:
        why = "no manifest from an earlier run"
    if manifest is None:
        state.reset()
        manifest = pl.DataFrame(schema=DB_MANIFEST)
    if reread:
        manifest = manifest.with_columns(
            reread=pl.col("reread") | pl.col("source_file").is_in(sorted(reread))
        )
    state.begin()
    store = state.store
    got = _read_dbs(
        home, manifest, store.add, tz=state.tz, registry=registry, now=now, progress=progress, every_s=every_s
    )
    touched = store.finish(got.removal)
    r = got.removal
    earlier = filter_units(state.quarantine(), r.units | r.drop_new, {}, {})
    new_manifest, quarantine, file_counts = _finish_tables(
        got.entries, pl.concat([earlier, *[q.cast(QUARANTINE) for q in got.quarantine if q.height]])
    )
    state.save(quarantine, file_counts, got.problems)
    state.write_manifest(new_manifest, DB_MANIFEST, settings_key)
    state.end()
    got.read.report = ReadReport(
        touched=touched,
        problems=got.problems,
        mode=f"full: {why}" if why else "incremental",
        summary=got.read.summary(),
    )
    return got.read


def read_agent_dbs(
    home: Path, registry: list[tuple[str, Path]] | None = None, now: datetime | None = None
) -> SourceBatch:
    """Every agent database read whole, in memory (no staging): for tests and small homes."""
    calls: list[pl.DataFrame] = []
    got = _read_dbs(
        home,
        pl.DataFrame(schema=DB_MANIFEST),
        calls.append,
        tz=None,
        registry=registry,
        now=now or datetime.now(UTC),
        progress=None,
        every_s=2.0,
    )
    q = [x.cast(QUARANTINE) for x in got.quarantine if x.height]
    manifest, quarantine, file_counts = _finish_tables(
        got.entries, pl.concat(q) if q else pl.DataFrame(schema=QUARANTINE)
    )
    records = pl.concat([c.cast(CALL_RECORDS) for c in calls]) if calls else pl.DataFrame(schema=CALL_RECORDS)
    order = manifest.select("source_file").with_row_index("_pos")
    records = (
        records.join(order, on="source_file", how="left", maintain_order="left")
        .sort("_pos", "line_no", maintain_order=True, nulls_last=True)
        .drop("_pos")
    )
    return SourceBatch(records, quarantine, file_counts, got.problems)


# -- session facts and auth ---------------------------------------------------------------------------------
SESSION_FACTS: dict[str, pl.DataType] = {
    "agent_id": pl.String(),
    "session_id": pl.String(),
    "session_key": pl.String(),
    "channel": pl.String(),
    "chat_type": pl.String(),
    "created_via": pl.String(),
    "is_fork": pl.Boolean(),
}


def _facts(con: sqlite3.Connection) -> tuple[list[tuple], dict | None]:
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    rows: list[tuple] = []
    if "session_windows" in tables:
        wcols = set(table_columns(con, "session_windows") or [])
        ncols = set(table_columns(con, "session_nodes") or []) if "session_nodes" in tables else set()

        def w(c: str) -> str:
            return f"w.{c}" if c in wcols else "NULL"

        def nd(c: str) -> str:
            return f"n.{c}" if c in ncols else "NULL"

        join = "LEFT JOIN session_nodes n ON n.session_key = w.session_key" if ncols else ""
        fork = (
            f"({w('reason')} = 'fork' OR {nd('fork_source_session_id')} IS NOT NULL"
            f" AND {nd('current_session_id')} = w.session_id)"
        )
        if not ncols:
            nd = lambda c: "NULL"  # noqa: E731 - no nodes table
            fork = f"({w('reason')} = 'fork')"
        rows = con.execute(
            f"SELECT w.session_id, w.session_key, {w('channel')}, {w('chat_type')}, {nd('created_via')},"
            f" {fork} FROM session_windows w {join}"
        ).fetchall()
    store = None
    if "auth_profile_store" in tables:
        row = con.execute("SELECT store_json FROM auth_profile_store WHERE store_key = 'primary'").fetchone()
        store = row[0] if row else None
    return rows, store


@dataclass
class AgentFacts:
    sessions: pl.DataFrame  # SESSION_FACTS
    auth_stores: dict[str, tuple[str, object]]  # agent id -> (where, parsed store JSON or None)
    problems: list[str]


def read_agent_facts(home: Path, registry: list[tuple[str, Path]] | None = None) -> AgentFacts:
    """Session keys, channels, fork lineage and auth profile stores of every agent database; never raises."""
    rows, stores, problems = [], {}, []
    for db in discover_agent_dbs(home, registry):
        try:
            facts, store = read_snapshot(db.path, _facts, what="OpenClaw agent database")
        except DbUnavailable as exc:
            problems.append(f"{db.rel}: {exc}")
            continue
        for sid, key, channel, chat_type, via, fork in facts:
            rows.append(
                {
                    "agent_id": db.agent_id,
                    "session_id": sid,
                    "session_key": key,
                    "channel": channel,
                    "chat_type": chat_type,
                    "created_via": via,
                    "is_fork": bool(fork),
                }
            )
        if store is not None:
            try:
                stores[db.agent_id] = (f"{db.rel}#auth_profile_store", json.loads(store))
            except (TypeError, ValueError):
                problems.append(f"{db.rel}#auth_profile_store: not valid JSON; ignored")
    frame = pl.DataFrame(rows, schema=SESSION_FACTS) if rows else pl.DataFrame(schema=SESSION_FACTS)
    return AgentFacts(
        frame.unique(["agent_id", "session_id"], keep="first", maintain_order=True), stores, problems
    )
