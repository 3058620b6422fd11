"""The per-agent databases of OpenClaw 2026.8+: ``agents/<id>/agent/openclaw-agent.sqlite`` (REFERENCE §1.6).

Since 2026.8 new sessions are written only here. Three tables hold transcript lines, each read as the
JSONL lines it stores and parsed by the one line parser (:func:`mc_pipeline.readers.transcripts.parse_pieces`),
so there is one definition of a call:

- ``transcript_events`` (source ``transcript_store``): one row per line, ``event_json`` text or
  ``event_zstd`` (one zstd frame of the line's UTF-8 bytes, ``event_utf8_bytes`` long). A row that does
  not decode is quarantined with its database, table, session and ``seq``. ``line_no`` is the ``seq``.
- ``session_transcript_archives`` (``transcript_archive``): a deleted or reset session's whole JSONL,
  ``identity`` or ``zstd``; ``line_no`` is the line in it. Its published copy in ``sessions/`` is the same
  calls and is counted once (:mod:`mc_pipeline.dedupe`, same ``call_id``).
- ``session_transcript_cold_archives`` (``transcript_cold``): a session moved to cold storage, a zstd
  JSONL of ``{"kind": "event", "row": {"seq", "event_json"}}`` lines (other kinds hold no usage), in
  ``archive_blob`` or in ``sessions/cold/<archive_name>``; ``line_no`` is the event's ``seq``. A session
  restored to the hot table is in both places for a while: counted once (same ``call_id``).

Each session of a table is a *unit* with its own ``source_file`` (``<db>#<table>/<session>[/<generation>]``)
and line accounting. Reading is incremental per unit (:data:`DB_MANIFEST` beside the staged batch):
a database whose file and ``-wal`` did not change is not opened; else a session whose rewrite watermark
(``transcript_rewrite_watermarks.generation``), row count and last ``seq`` are unchanged is not read, one
that grew is read from its last ``seq`` (the rows before it are counted to notice a rewrite without a new
watermark), any other is read whole; archives and cold archives are read again only when their sha256
changes; a replaced database (new inode) is read whole. Every read is a short read transaction on a
read-only connection (:func:`mc_pipeline.readers.sqlite_access.read_snapshot`: nothing is created beside
the file, the gateway's writers are never blocked), sessions are read in batches.

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
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from mc_pipeline.readers.batch import SourceBatch
from mc_pipeline.readers.home import STORE_NAME, AgentDatabase, discover_agent_dbs  # noqa: F401 - re-exported
from mc_pipeline.readers.sqlite_access import DbUnavailable, read_snapshot, sidecar, table_columns
from mc_pipeline.readers.transcripts import Piece, PieceStats, excerpt, parse_pieces
from mc_pipeline.readers.zstd_frames import ZstdError, decompress_line, stream_lines
from mc_pipeline.schemas import CALL_RECORDS, FILE_COUNTS, QUARANTINE, conform

EVENTS, ARCHIVES, COLD = "transcript_events", "session_transcript_archives", "session_transcript_cold_archives"
SOURCE_OF = {EVENTS: "transcript_store", ARCHIVES: "transcript_archive", COLD: "transcript_cold"}
#: The most an archive or cold archive may expand to (a hostile frame must not exhaust memory).
MAX_ARCHIVE_BYTES = 8 * 1024**3
#: Rows read per short read transaction (a batch of whole sessions; a bigger session is one batch).
BATCH_ROWS = 50_000
#: Bytes of transcript lines parsed per Polars pass.
UNIT_BYTES = 16 * 1024 * 1024
#: Quarantine reasons that depend on the clock: such units are read again every run.
CLOCK_REASONS = ("no plausible timestamp",)
MANIFEST_FILE = "db_manifest.parquet"
MANIFEST_VERSION = "1"

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
        marks = {s: g for s, g in con.execute("SELECT session_id, generation FROM transcript_rewrite_watermarks")}
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
            archives.append({"session_id": sid, "generation": gen, "encoding": enc, "sha256": sha, "name": name})
    cold = []
    if COLD in tables:
        for sid, gen, name, sha, storage, n in con.execute(
            f"SELECT session_id, generation, archive_name, archive_sha256, storage, event_count FROM {COLD}"
        ):
            cold.append({"session_id": sid, "generation": gen, "name": name, "sha256": sha, "storage": storage,
                         "event_count": n})  # fmt: skip
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
    unit.quarantine.append({"source": unit.source, "source_file": unit.key, "line_no": line_no,
                            "reason": reason, "excerpt": shown[:200]})  # fmt: skip
    unit.stats.lines_read += 1
    unit.stats.quarantined += 1


def decode_event(unit: _Unit, seq: int, event_json: bytes | None, blob: bytes | None, n: int | None) -> bytes | None:
    """The line a ``transcript_events`` row holds, or None (the row quarantined with why)."""
    if event_json is not None:
        if isinstance(event_json, str):
            event_json = event_json.encode("utf-8", errors="surrogateescape")
        if n is not None and blob is None and n != len(event_json):
            _bad(unit, seq, f"event_json is {len(event_json):,} bytes, event_utf8_bytes says {n:,}", excerpt(event_json))
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

    def __init__(self, now: datetime, unit_bytes: int = UNIT_BYTES):
        self.now, self.unit_bytes = now, unit_bytes
        self.pending: list[tuple[Piece, _Unit, list[int] | None]] = []
        self.size = 0
        self.calls: list[pl.DataFrame] = []
        self.quarantine: list[pl.DataFrame] = []

    def add(self, unit: _Unit, lines: list[bytes], seqs: list[int] | None, first_line: int = 1) -> None:
        if not lines:
            return
        data = b"\n".join(x.replace(b"\r", b" ").replace(b"\n", b" ") for x in lines) + b"\n"
        piece = Piece(data, rel=unit.key, agent_id=unit.agent_id, session_id=unit.session_id, first_line=first_line,
                      source=unit.source, n_lines=len(lines), is_fork=unit.is_fork)  # fmt: skip
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
                maps.append(pl.DataFrame({"source_file": piece.rel, "line_no": range(piece.first_line, piece.first_line + len(seqs)),
                                          "_seq": seqs}, schema={"source_file": pl.String, "line_no": pl.Int64, "_seq": pl.Int64}))  # fmt: skip
        if maps:
            seq_of = pl.concat(maps)

            def to_seq(frame: pl.DataFrame) -> pl.DataFrame:
                return (frame.join(seq_of, on=["source_file", "line_no"], how="left", maintain_order="left")
                        .with_columns(line_no=pl.coalesce("_seq", "line_no")).drop("_seq"))  # fmt: skip

            calls, quarantine = to_seq(calls), to_seq(quarantine)
        self.calls.append(calls)
        self.quarantine.append(quarantine)
        self.pending, self.size = [], 0


# -- reading each kind of unit ------------------------------------------------------------------------------
def _event_batches(db: AgentDatabase, units: list[_Unit], columns: list[str]) -> Iterator[list[tuple[_Unit, list[tuple]]]]:
    """Rows of each unit, a batch of whole sessions per short read transaction."""
    js = "CAST(event_json AS BLOB)" if "event_json" in columns else "NULL"
    blob = "event_zstd" if "event_zstd" in columns else "NULL"
    n = "event_utf8_bytes" if "event_utf8_bytes" in columns else "NULL"
    sql = f"SELECT seq, {js}, {blob}, {n} FROM {EVENTS} WHERE session_id = ? AND seq > ? AND seq <= ? ORDER BY seq"
    has_marks = True

    def query(batch: list[_Unit]):
        def run(con: sqlite3.Connection) -> list[tuple[_Unit, list[tuple]]]:
            nonlocal has_marks
            out = []
            for u in batch:
                gen = None
                if has_marks:
                    try:
                        row = con.execute("SELECT generation FROM transcript_rewrite_watermarks WHERE session_id = ?",
                                          (u.session_id,)).fetchone()  # fmt: skip
                        gen = row[0] if row else None
                    except sqlite3.OperationalError:
                        has_marks = False
                upto = u.to_seq if u.to_seq is not None else 2**62
                first = u.first_seq
                if first and (gen != u.version or _rows_upto(con, u.session_id, first) != (u.previous or {}).get("rows")):
                    first = 0  # rewritten since the last read (a new watermark, or rows before it changed): read it whole
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
    return con.execute(f"SELECT count(*) FROM {EVENTS} WHERE session_id = ? AND seq <= ?", (session_id, seq)).fetchone()[0]


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
    line_no = 0
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
                    _bad(u, None, f"cold archive line {line_no}: event without event_json or seq", excerpt(raw))
                    continue
                lines.append(text.encode("utf-8", errors="surrogateescape"))
                seqs.append(seq)
            parser.add(u, lines, seqs)
    except ZstdError as exc:
        parser.flush()
        _bad(u, None, f"cold archive {where} does not decompress: {exc}", f"<{len(blob):,} bytes>")


# -- the incremental read of every agent database ------------------------------------------------------------
@dataclass
class DbRead:
    batch: SourceBatch
    manifest: pl.DataFrame  # DB_MANIFEST
    units_read: int = 0
    units_unchanged: int = 0
    units_vanished: int = 0
    dbs_opened: int = 0
    mode: str = "full"

    def summary(self) -> dict[str, int]:
        return {"databases_opened": self.dbs_opened, "sessions_read": self.units_read,
                "sessions_unchanged": self.units_unchanged, "sessions_vanished": self.units_vanished}  # fmt: skip


def _plan(db: AgentDatabase, contents: DbContents, previous: dict[str, dict]) -> tuple[list[_Unit], list[_Unit], list[_Unit], list[str]]:
    """(events units to read, archive units, cold units, keys unchanged) of one database."""
    events, archives, cold, unchanged = [], [], [], []
    for sid, (n, max_seq, gen) in sorted(contents.sessions.items()):
        key = unit_key(db.rel, EVENTS, sid)
        e = previous.get(key)
        if e is not None and not e["reread"] and e["version"] == gen and e["rows"] == n and e["last_seq"] == max_seq:
            unchanged.append(key)
            continue
        u = _Unit(key, SOURCE_OF[EVENTS], db.agent_id, sid, "events", version=gen, to_seq=max_seq)
        if e is not None and not e["reread"] and e["version"] == gen and max_seq > e["last_seq"] and n > e["rows"]:
            u.first_seq, u.previous, u.is_fork = e["last_seq"], e, e["is_fork"]
        events.append(u)
    for meta in contents.archives:
        key = unit_key(db.rel, ARCHIVES, meta["session_id"], meta["generation"])
        e = previous.get(key)
        if e is not None and not e["reread"] and e["version"] == meta["sha256"]:
            unchanged.append(key)
            continue
        archives.append(_Unit(key, SOURCE_OF[ARCHIVES], db.agent_id, meta["session_id"], "archive", version=meta["sha256"]))
    for meta in contents.cold:
        key = unit_key(db.rel, COLD, meta["session_id"])
        e = previous.get(key)
        if e is not None and not e["reread"] and e["version"] == meta["sha256"]:
            unchanged.append(key)
            continue
        cold.append(_Unit(key, SOURCE_OF[COLD], db.agent_id, meta["session_id"], "cold", version=meta["sha256"]))
    return events, archives, cold, unchanged


def _manifest_row(u: _Unit, db: AgentDatabase, stamp: str) -> dict:
    base = u.previous or {}
    st = u.stats
    return {
        "source_file": u.key, "source": u.source, "db": db.rel, "agent_id": u.agent_id,
        "session_id": u.header_sid or base.get("session_id") or u.session_id, "version": u.version,
        "last_seq": u.last_seq, "rows": u.rows, "is_fork": bool(u.is_fork),
        "lines_read": base.get("lines_read", 0) + st.lines_read, "calls": base.get("calls", 0) + st.calls,
        "other_entries": base.get("other_entries", 0) + st.other_entries,
        "skipped_by_rule": base.get("skipped_by_rule", 0) + st.skipped_by_rule,
        "quarantined": base.get("quarantined", 0) + st.quarantined, "reread": False, "db_stamp": stamp,
    }  # fmt: skip


def read_agent_dbs_incremental(
    home: Path,
    previous: SourceBatch | None = None,
    manifest: pl.DataFrame | None = None,
    *,
    registry: list[tuple[str, Path]] | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    every_s: float = 2.0,
) -> DbRead:
    """The batch of every agent database under ``home`` as a full read would give it, reading only what changed."""
    now = now or datetime.now(timezone.utc)
    if previous is None or manifest is None:
        previous, manifest = SourceBatch.empty(), pl.DataFrame(schema=DB_MANIFEST)
    by_db: dict[str, dict[str, dict]] = {}
    for row in manifest.iter_rows(named=True):
        by_db.setdefault(row["db"], {})[row["source_file"]] = row
    parser = _Parser(now)
    problems: list[str] = []
    keep: list[str] = []  # unit keys whose previous rows stay as they are
    keep_and_add: list[dict] = []  # appended units: previous rows stay, new rows are added
    entries: list[dict] = []
    read_units: list[tuple[_Unit, AgentDatabase, str]] = []
    out = DbRead(SourceBatch.empty(), manifest)
    last = time.monotonic()
    dbs = discover_agent_dbs(home, registry)
    for i, db in enumerate(dbs):
        prev = by_db.pop(db.rel, {})
        stamp = db_stamp(db.path)
        if prev and all(e["db_stamp"] == stamp and not e["reread"] for e in prev.values()):
            keep.extend(prev)
            entries.extend(prev.values())
            out.units_unchanged += len(prev)
            continue
        if prev and any(e["db_stamp"].split("|")[0].split(":")[0] != stamp.split("|")[0].split(":")[0] for e in prev.values()):
            prev = {}  # a replaced database (another inode): read it whole
        parser.flush()
        done = (len(parser.calls), len(parser.quarantine))
        try:
            contents = read_contents(db.path)
            out.dbs_opened += 1
            events, archives, cold, unchanged = _plan(db, contents, prev)
            keep.extend(unchanged)
            entries.extend({**prev[k], "db_stamp": stamp} for k in unchanged)
            out.units_unchanged += len(unchanged)
            _read_events(db, events, contents.event_columns, parser)
            by_key = {unit_key(db.rel, ARCHIVES, m["session_id"], m["generation"]): m for m in contents.archives}
            for u in archives:
                _read_archive(db, u, by_key[u.key], parser)
            cold_meta = {m["session_id"]: m for m in contents.cold}
            for u in cold:
                _read_cold(db, u, cold_meta[u.session_id], parser)
            parser.flush()
        except DbUnavailable as exc:
            # not readable now (busy, corrupt): what earlier runs read from it stays, and the next run tries again
            parser.pending, parser.size = [], 0
            del parser.calls[done[0]:], parser.quarantine[done[1]:]
            kept = f"; the {len(prev)} session(s) read from it before are kept" if prev else ""
            problems.append(f"{db.rel}: {exc}{kept}")
            keep.extend(prev)
            entries.extend(prev.values())
            continue
        present = set(unchanged) | {u.key for u in events + archives + cold}
        out.units_vanished += len(set(prev) - present)
        for u in events + archives + cold:
            read_units.append((u, db, stamp))
            if u.previous is not None:
                keep_and_add.append(u.previous)
        if progress and time.monotonic() - last > every_s:
            last = time.monotonic()
            progress(f"agent databases: {i + 1}/{len(dbs)} read")
    out.units_vanished += sum(len(v) for v in by_db.values())  # databases that are gone
    parser.flush()

    for u, db, stamp in read_units:
        if u.problem:
            problems.append(f"{u.key}: {u.problem}")
        entries.append(_manifest_row(u, db, stamp))
    out.units_read = len(read_units)
    kept_keys = keep + [e["source_file"] for e in keep_and_add]
    new_q = [conform(pl.DataFrame([q for u, _, _ in read_units for q in u.quarantine], schema=QUARANTINE), QUARANTINE)]
    records = pl.concat([previous.records.filter(pl.col("source_file").is_in(kept_keys)).cast(CALL_RECORDS)]
                        + [c.cast(CALL_RECORDS) for c in parser.calls])  # fmt: skip
    quarantine = pl.concat([previous.quarantine.filter(pl.col("source_file").is_in(kept_keys)).cast(QUARANTINE)]
                           + [q.cast(QUARANTINE) for q in parser.quarantine + new_q])  # fmt: skip
    entries.sort(key=lambda e: (e["db"], e["source_file"]))  # one order, whatever was read when
    new_manifest = pl.DataFrame(entries, schema=DB_MANIFEST) if entries else pl.DataFrame(schema=DB_MANIFEST)
    clock = set(quarantine.filter(pl.col("reason").str.starts_with(CLOCK_REASONS[0])).get_column("source_file").to_list())
    if clock:
        new_manifest = new_manifest.with_columns(reread=pl.col("source_file").is_in(list(clock)))
    order = new_manifest.select("source_file").with_row_index("_pos")
    file_counts = new_manifest.select(*FILE_COUNTS.keys()).cast(FILE_COUNTS)

    def ordered(frame: pl.DataFrame) -> pl.DataFrame:
        return (frame.join(order, on="source_file", how="left", maintain_order="left")
                .sort("_pos", "line_no", maintain_order=True, nulls_last=True).drop("_pos"))  # fmt: skip

    out.batch = SourceBatch(ordered(records), ordered(quarantine), file_counts, problems)
    out.manifest = new_manifest
    return out


def read_agent_dbs(home: Path, registry: list[tuple[str, Path]] | None = None, now: datetime | None = None) -> SourceBatch:
    """Every agent database read whole (no earlier run)."""
    return read_agent_dbs_incremental(home, registry=registry, now=now).batch


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
        fork = f"({w('reason')} = 'fork' OR {nd('fork_source_session_id')} IS NOT NULL AND {nd('current_session_id')} = w.session_id)"
        if not ncols:
            nd = lambda c: "NULL"  # noqa: E731 - no nodes table
            fork = f"({w('reason')} = 'fork')"
        rows = con.execute(
            f"SELECT w.session_id, w.session_key, {w('channel')}, {w('chat_type')}, {nd('created_via')}, {fork}"
            f" FROM session_windows w {join}"
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
            rows.append({"agent_id": db.agent_id, "session_id": sid, "session_key": key, "channel": channel,
                         "chat_type": chat_type, "created_via": via, "is_fork": bool(fork)})  # fmt: skip
        if store is not None:
            try:
                stores[db.agent_id] = (f"{db.rel}#auth_profile_store", json.loads(store))
            except (TypeError, ValueError):
                problems.append(f"{db.rel}#auth_profile_store: not valid JSON; ignored")
    frame = pl.DataFrame(rows, schema=SESSION_FACTS) if rows else pl.DataFrame(schema=SESSION_FACTS)
    return AgentFacts(frame.unique(["agent_id", "session_id"], keep="first", maintain_order=True), stores, problems)


# -- the manifest beside the staged batch ---------------------------------------------------------------------
def read_db_manifest(folder: Path) -> tuple[pl.DataFrame, str | None]:
    """(manifest, batch digest it was written with); empty when missing, unreadable or of another version."""
    path = folder / MANIFEST_FILE
    if not path.exists():
        return pl.DataFrame(schema=DB_MANIFEST), None
    try:
        meta = pl.read_parquet_metadata(path)
        if meta.get("mc_pipeline.manifest_version") != MANIFEST_VERSION:
            return pl.DataFrame(schema=DB_MANIFEST), None
        frame = pl.read_parquet(path)
        return frame.select([pl.col(c).cast(t) for c, t in DB_MANIFEST.items()]), meta.get("mc_pipeline.batch_digest")
    except Exception:  # noqa: BLE001 - an unreadable manifest only means a full read
        return pl.DataFrame(schema=DB_MANIFEST), None


def write_db_manifest(manifest: pl.DataFrame, folder: Path, digest: str) -> None:
    from mc_pipeline import storage

    with storage.atomic_path(folder / MANIFEST_FILE) as tmp:
        manifest.select([pl.col(c).cast(t) for c, t in DB_MANIFEST.items()]).write_parquet(
            tmp, compression="zstd",
            metadata={"mc_pipeline.manifest_version": MANIFEST_VERSION, "mc_pipeline.batch_digest": digest},
        )  # fmt: skip


def read_agent_dbs_since_last_run(
    home: Path,
    staging: Path,
    load_previous: Callable[[], SourceBatch],
    *,
    full_rebuild: bool = False,
    registry: list[tuple[str, Path]] | None = None,
    progress: Progress | None = None,
) -> DbRead:
    """Read what changed since the batch staged in ``staging`` (its manifest beside it); write the new
    manifest (with a digest of its batch: a batch that was never staged means a full read next run)."""
    from mc_pipeline.readers.manifest import batch_digest

    manifest, digest = read_db_manifest(staging)
    previous, why = None, "full rebuild requested" if full_rebuild else None
    if why is None and (digest is None or manifest.height == 0):
        why = "no manifest from an earlier run"
    if why is None:
        previous = load_previous()
        if batch_digest(previous.records, previous.quarantine, previous.file_counts) != digest:
            previous, why = None, "the staged batch does not match the manifest (an earlier run stopped early?)"
    read = read_agent_dbs_incremental(
        home, previous, manifest if previous is not None else None, registry=registry, progress=progress
    )
    read.mode = f"full: {why}" if why else "incremental"
    b = read.batch
    write_db_manifest(read.manifest, staging, batch_digest(b.records, b.quarantine, b.file_counts))
    return read
