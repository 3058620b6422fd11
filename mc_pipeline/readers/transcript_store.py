"""The newer SQLite transcript store (REFERENCE §1.6): ``agents/<id>/agent/openclaw-agent.sqlite``.

Table ``transcript_events(session_id, seq, event_json, ...)``: each ``event_json`` is one transcript line.
Per session the events are joined in ``seq`` order into one JSONL chunk and parsed by the same parser as
the ``.jsonl`` files (:func:`mc_pipeline.readers.transcripts.parse_transcript`), so there is one definition
of a call; rows carry ``source = "transcript_store"`` and ``line_no`` = the event's ``seq``. A raw
newline inside ``event_json`` can only be JSON whitespace (JSON strings cannot hold one), so it is
replaced by a space before joining.

Opened like ``interactions.db`` (:func:`mc_pipeline.readers.interactions_db.read_snapshot`): read-only,
short busy timeout, one read snapshot, closed before parsing, nothing added beside the file (a WAL store
without ``-wal`` is read with ``immutable=1``). A store that cannot be read (corrupt, no
``transcript_events``) is a problem naming the file, and the other stores are still read.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from mc_pipeline.readers.batch import SourceBatch
from mc_pipeline.readers.interactions_db import BUSY_TIMEOUT_S, DbUnavailable, read_snapshot
from mc_pipeline.readers.transcripts import parse_transcript
from mc_pipeline.schemas import CALL_RECORDS, FILE_COUNTS, QUARANTINE

SOURCE = "transcript_store"
STORE_NAME = "openclaw-agent.sqlite"
TABLE = "transcript_events"


def discover_stores(home: Path) -> list[tuple[str, Path, str]]:
    """(agent id, path, path relative to the home) of every agent's transcript store."""
    agents = home / "agents"
    if not agents.is_dir():
        return []
    out = []
    for agent in sorted(p for p in agents.iterdir() if p.is_dir()):
        path = agent / "agent" / STORE_NAME
        if path.is_file():
            out.append((agent.name, path, f"agents/{agent.name}/agent/{STORE_NAME}"))
    return out


Event = tuple[bytes | str | None, int, bytes | str | None]


def read_events(path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> list[Event]:
    """(session_id, seq, event_json) ordered by session and seq, text as UTF-8 bytes (as SQLite holds it:
    an event that is not valid UTF-8 is then quarantined like such a JSONL line, not fatal for the store);
    raises DbUnavailable."""

    def query(con: sqlite3.Connection) -> list[Event]:
        names = {r[0].lower() for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if TABLE not in names:
            raise DbUnavailable(f"no {TABLE} table (tables: {', '.join(sorted(names)) or 'none'})")
        con.text_factory = bytes
        return con.execute(
            f"SELECT CAST(session_id AS TEXT), seq, CAST(event_json AS TEXT) FROM {TABLE} ORDER BY session_id, seq"
        ).fetchall()

    return read_snapshot(path, query, busy_timeout_s, what="transcript store")


def _utf8(value: bytes | str | None) -> bytes:
    return value if isinstance(value, bytes) else (value or "").encode("utf-8")


def parse_store(
    rows: list[Event], *, rel: str, agent_id: str, now: datetime | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(CALL_RECORDS, QUARANTINE, file count row) of one store's events (text as bytes or str)."""
    now = now or datetime.now(timezone.utc)
    calls, quarantine = [], []
    count = {"source": SOURCE, "source_file": rel, "lines_read": 0, "calls": 0, "other_entries": 0,
             "skipped_by_rule": 0, "quarantined": 0}  # fmt: skip
    frame = pl.DataFrame(
        {
            "session_id": [None if r[0] is None else _utf8(r[0]).decode("utf-8", errors="replace") for r in rows],
            "seq": [r[1] for r in rows],
            "event_json": [_utf8(r[2]) for r in rows],
        },
        schema={"session_id": pl.String, "seq": pl.Int64, "event_json": pl.Binary},
    )
    for (session_id,), part in frame.partition_by("session_id", as_dict=True, maintain_order=True).items():
        seqs = part.get_column("seq")
        events = part.get_column("event_json").to_list()
        data = b"\n".join(e.replace(b"\r", b" ").replace(b"\n", b" ") for e in events) + b"\n"
        chunk = parse_transcript(
            data, rel=rel, agent_id=agent_id, session_id=session_id or "", now=now, source=SOURCE
        )
        to_seq = pl.col("line_no").map_batches(lambda s: seqs.gather(s - 1), return_dtype=pl.Int64)
        calls.append(chunk.calls.with_columns(line_no=to_seq))
        quarantine.append(chunk.quarantine.with_columns(line_no=to_seq))
        count["lines_read"] += chunk.lines_read
        count["calls"] += chunk.n_calls
        count["other_entries"] += chunk.other_entries
        count["skipped_by_rule"] += chunk.skipped_by_rule
        count["quarantined"] += chunk.n_quarantined
    return (
        pl.concat(calls) if calls else pl.DataFrame(schema=CALL_RECORDS),
        pl.concat(quarantine) if quarantine else pl.DataFrame(schema=QUARANTINE),
        count,
    )


def read_transcript_store(
    home: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S, now: datetime | None = None
) -> SourceBatch:
    """Every agent's store under ``home``; an empty batch when there is none."""
    calls, quarantine, counts, problems = [], [], [], []
    for agent_id, path, rel in discover_stores(home):
        try:
            rows = read_events(path, busy_timeout_s)
        except DbUnavailable as exc:
            problems.append(f"{rel}: {exc}")
            continue
        c, q, n = parse_store(rows, rel=rel, agent_id=agent_id, now=now)
        calls.append(c)
        quarantine.append(q)
        counts.append(n)
    return SourceBatch(
        records=pl.concat(calls) if calls else pl.DataFrame(schema=CALL_RECORDS),
        quarantine=pl.concat(quarantine) if quarantine else pl.DataFrame(schema=QUARANTINE),
        file_counts=pl.DataFrame(counts, schema=FILE_COUNTS),
        problems=problems,
    )
