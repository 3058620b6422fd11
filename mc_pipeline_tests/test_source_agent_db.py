"""The 2026.8+ agent database (docs/openclaw-formats.md#agent-databases): compressed events, archives, cold
archives, read incrementally."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from mc_pipeline.ingest.readers.agent_db import read_agent_dbs, read_agent_facts, stage_agent_dbs
from mc_pipeline.ingest.readers.staged import SourceState
from mc_pipeline.ingest.readers.transcript_files import read_transcripts
from mc_pipeline_tests import homes as h
from mc_pipeline_tests.openclaw_db import AgentDb

T0 = datetime(2026, 9, 5, 8, 0, tzinfo=UTC)
THINK = "Let me check the schema before touching the reader. " * 40
KEY = ["session_id", "entry_id"]
COMPARED = [
    "agent_id",
    "session_id",
    "entry_id",
    "timestamp",
    "provider",
    "model",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_recorded_usd",
    "tool_names",
    "thinking_chars",
    "run_id",
]


def session(sid: str, n: int = 3, start: datetime = T0) -> list[dict]:
    lines = [h.session_line(sid, start)]
    for i in range(n):
        t = start + timedelta(minutes=i)
        lines.append(h.user(t))
        lines.append(
            h.assistant(
                t + timedelta(seconds=3),
                thinking=THINK if i % 2 == 0 else None,
                tools=("read",),
                u=h.usage(500 + i, 90 + i, 40, 3, cost=0.002),
            )
        )
    return lines


def incremental(home, prev=None):
    """Stage the home's databases (state kept beside the home across calls); ``.batch`` is all that is
    staged."""
    state = SourceState(home.parent / f"{home.name}-staging", "UTC")
    read = stage_agent_dbs(home, state)
    read.batch = state.batch()
    return read


def same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.select(COMPARED).sort(KEY).equals(b.select(COMPARED).sort(KEY))


def test_compressed_events_are_the_lines_they_hold(tmp_path):
    sid = str(uuid.uuid4())
    lines = session(sid, 4)
    db = AgentDb(tmp_path / "db", "main")
    db.add_session(sid, lines)
    n_zstd = db.con.execute("SELECT count(*) FROM transcript_events WHERE event_zstd IS NOT NULL").fetchone()[
        0
    ]
    db.close()
    assert n_zstd == 2  # the two calls with thinking are over 1 KiB: compressed as OpenClaw does
    h.write_session(tmp_path / "files", lines, session_id=sid)
    store, files = read_agent_dbs(tmp_path / "db"), read_transcripts(tmp_path / "files")
    assert store.problems == [] and store.quarantine.height == 0
    assert store.records.height == 4 and same(store.records, files.records)
    assert store.records.get_column("line_no").to_list() == [3, 5, 7, 9]  # the events' seq


def test_an_append_reads_only_the_new_rows_and_equals_a_full_read(tmp_path):
    home = tmp_path / "home"
    db = AgentDb(home, "main")
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    db.add_session(a, session(a))
    db.add_session(b, session(b))
    first = incremental(home)
    assert first.summary() == {
        "databases_opened": 1,
        "sessions_read": 2,
        "sessions_unchanged": 0,
        "sessions_vanished": 0,
    }
    again = incremental(home, first)
    assert again.dbs_opened == 0 and again.batch.records.height == 6  # the file did not change: not opened

    db.append(a, [h.assistant(T0 + timedelta(hours=1), u=h.usage(9, 9, cost=0.0001))])
    grown = incremental(home, again)
    assert grown.summary() == {
        "databases_opened": 1,
        "sessions_read": 1,
        "sessions_unchanged": 1,
        "sessions_vanished": 0,
    }
    full = read_agent_dbs(home)
    assert grown.batch.records.height == 7 and same(grown.batch.records, full.records)
    assert grown.batch.file_counts.sort("source_file").equals(full.file_counts.sort("source_file"))
    db.close()


def test_a_rewritten_session_is_read_whole(tmp_path):
    """A new rewrite watermark (rewind, repair) changes what seq means: the session is read again whole; so
    is one whose earlier rows changed without a new watermark."""
    home = tmp_path / "home"
    db = AgentDb(home, "main")
    a = str(uuid.uuid4())
    db.add_session(a, session(a, 3))
    first = incremental(home)
    db.rewrite(
        a, session(a, 2) + [h.assistant(T0 + timedelta(hours=2), u=h.usage(1, 1)), h.user(T0), h.user(T0)]
    )
    second = incremental(home, first)
    full = read_agent_dbs(home)
    assert second.batch.records.height == full.records.height == 3 and same(
        second.batch.records, full.records
    )
    # rows before the last seq replaced and more appended, same watermark (a writer that skipped it)
    db.con.execute("DELETE FROM transcript_events WHERE session_id = ? AND seq = 3", (a,))
    db.con.commit()
    db.append(a, [h.assistant(T0 + timedelta(hours=3), u=h.usage(2, 2))])
    third = incremental(home, second)
    full = read_agent_dbs(home)
    assert third.batch.records.height == full.records.height == 3 and same(third.batch.records, full.records)
    db.close()


def test_archiving_moves_calls_without_changing_the_totals(tmp_path):
    home = tmp_path / "home"
    db = AgentDb(home, "main")
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    for sid in (a, b, c):
        db.add_session(sid, session(sid))
    first = incremental(home)
    db.archive(a, reason="reset", encoding="zstd", publish=False)
    db.cold(b, storage="file")
    db.cold(c, storage="sqlite", restore=True)  # restored: hot rows and the cold archive both there
    second = incremental(home, first)
    sources = dict(second.batch.records.group_by("source").len().iter_rows())
    assert sources == {"transcript_store": 3, "transcript_archive": 3, "transcript_cold": 6}
    assert second.summary()["sessions_vanished"] == 2  # a's and b's hot rows are gone
    full = read_agent_dbs(home)
    assert same(second.batch.records, full.records)
    db.close()


def test_a_replaced_database_is_read_again(tmp_path):
    home = tmp_path / "home"
    db = AgentDb(home, "main")
    a = str(uuid.uuid4())
    db.add_session(a, session(a))
    db.close()
    first = incremental(home)
    path = home / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    other = AgentDb(tmp_path / "other", "main")
    b = str(uuid.uuid4())
    other.add_session(b, session(b, 2))
    other.close()
    os.replace(tmp_path / "other" / "agents" / "main" / "agent" / "openclaw-agent.sqlite", path)
    for suffix in ("-wal", "-shm"):
        if (path.parent / (path.name + suffix)).exists():
            (path.parent / (path.name + suffix)).unlink()
    second = incremental(home, first)
    assert second.batch.records.get_column("session_id").unique().to_list() == [b]


def test_bad_rows_are_quarantined_with_database_table_session_and_seq(tmp_path):
    home = tmp_path / "home"
    db = AgentDb(home, "main")
    a = str(uuid.uuid4())
    db.add_session(a, session(a, 1))
    db.raw_event(a, 50, event_zstd=b"not zstd at all", utf8_bytes=10)
    db.raw_event(a, 51, event_zstd=b"\x28\xb5\x2f\xfd" + b"\x00" * 10, utf8_bytes=100)
    db.raw_event(a, 52, event_json="{}", utf8_bytes=7, navigation_json=None)
    db.close()
    batch = read_agent_dbs(home)
    unit = f"agents/main/agent/openclaw-agent.sqlite#transcript_events/{a}"
    q = batch.quarantine.select("source_file", "line_no", "reason").rows()
    assert [(f, n) for f, n, _ in q] == [(unit, 50), (unit, 51), (unit, 52)]
    assert q[0][2] == "event_zstd is not a zstd frame (bad magic number)"
    assert q[1][2].startswith("event_zstd")
    assert q[2][2] == "event_json is 2 bytes, event_utf8_bytes says 7"
    assert batch.records.height == 1
    counts = batch.file_counts.row(0, named=True)
    assert counts["lines_read"] == 6 and counts["quarantined"] == 3


def test_a_cold_archive_whose_file_is_gone_is_named_not_dropped(tmp_path):
    home = tmp_path / "home"
    db = AgentDb(home, "main")
    a = str(uuid.uuid4())
    db.add_session(a, session(a, 2))
    name = db.cold(a, storage="file")
    db.close()
    (home / "agents" / "main" / "sessions" / "cold" / name).unlink()
    batch = read_agent_dbs(home)
    assert batch.records.height == 0
    (reason,) = batch.quarantine.get_column("reason").to_list()
    assert reason.startswith(f"cold archive file sessions/cold/{name} cannot be read")


def test_an_older_database_without_the_newer_tables_and_columns(tmp_path):
    """Before v20/v23: no archives or cold tables, no event_zstd columns, no watermarks."""
    path = tmp_path / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    path.parent.mkdir(parents=True)
    import sqlite3

    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE transcript_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL,"
        " event_json TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (session_id, seq))"
    )
    sid = str(uuid.uuid4())
    for i, line in enumerate(session(sid, 2), 1):
        con.execute("INSERT INTO transcript_events VALUES (?, ?, ?, 0)", (sid, i, json.dumps(line)))
    con.commit()
    con.close()
    batch = read_agent_dbs(tmp_path)
    assert batch.problems == [] and batch.records.height == 2
    facts = read_agent_facts(tmp_path)
    assert facts.sessions.height == 0 and facts.problems == []


def test_a_busy_or_broken_database_keeps_what_was_read_before(tmp_path):
    home = tmp_path / "home"
    db = AgentDb(home, "main")
    a = str(uuid.uuid4())
    db.add_session(a, session(a))
    db.close()
    first = incremental(home)
    path = home / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    saved = path.read_bytes()
    path.write_bytes(b"\x00garbage" * 100)
    second = incremental(home, first)
    assert second.batch.records.height == 3
    assert len(second.batch.problems) == 1 and "read from it before are kept" in second.batch.problems[0]
    path.write_bytes(saved)
    third = incremental(home, second)
    assert third.batch.problems == [] and third.batch.records.height == 3


@pytest.mark.skipif(not h.REAL_DIR.exists(), reason="shared/real not present")
def test_real_transcripts_through_the_2026_8_database(tmp_path):
    """The real pi sessions written into an agent database as OpenClaw would (big lines compressed)."""
    db = AgentDb(tmp_path / "db", "main")
    for f in sorted(h.REAL_DIR.glob("*.jsonl")):
        lines = f.read_text().splitlines()
        db.add_session(json.loads(lines[0])["id"], lines)
    db.close()
    store = read_agent_dbs(tmp_path / "db")
    files = read_transcripts(h.copy_real_home(tmp_path / "jsonl"))
    key = ["session_id", "timestamp", "output_tokens"]
    assert store.records.height == files.records.height == 937
    assert store.records.select(COMPARED).sort(key).equals(files.records.select(COMPARED).sort(key))
    shutil.rmtree(tmp_path / "jsonl")
