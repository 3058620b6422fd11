"""The per-agent SQLite transcript store (an older, text-only transcript_events) goes through the same line
parser as the JSONL files; the 2026.8+ layout is in test_source_agent_db.py."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mc_pipeline.ingest.readers.agent_db import read_agent_dbs as read_transcript_store
from mc_pipeline.ingest.readers.transcript_files import read_transcripts
from mc_pipeline_tests import homes as h

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
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
]


def write_store(
    home: Path, agent: str, sessions: dict[str, list], seq_start: int = 10, seq_step: int = 3
) -> Path:
    """``agents/<agent>/agent/openclaw-agent.sqlite`` holding each session's lines as events."""
    path = home / "agents" / agent / "agent" / "openclaw-agent.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE transcript_events (session_id TEXT, seq INTEGER, event_json TEXT, created_at INTEGER)"
    )
    for sid, lines in sessions.items():
        for i, line in enumerate(lines):
            text = line if isinstance(line, str) else json.dumps(line)
            con.execute(
                "INSERT INTO transcript_events VALUES (?, ?, ?, 0)", (sid, seq_start + i * seq_step, text)
            )
    con.commit()
    con.close()
    return path


def session_lines(sid: str) -> list[dict]:
    return [
        h.session_line(sid, T0),
        h.user(T0),
        h.assistant(
            T0 + timedelta(seconds=5),
            tools=("exec",),
            thinking="let me think",
            u=h.usage(1000, 200, 50, 7, cost=0.01),
        ),
        h.tool_result(T0 + timedelta(seconds=9)),
        h.assistant(T0 + timedelta(seconds=12), stop="error", error="429 rate limit", u=h.usage(0, 0)),
        h.mirror(T0 + timedelta(seconds=13)),
    ]


def test_store_calls_equal_the_same_lines_read_as_jsonl(tmp_path):
    sessions = {"s-a": session_lines("s-a"), "s-b": session_lines("s-b")}
    store_home, jsonl_home = tmp_path / "store", tmp_path / "jsonl"
    write_store(store_home, "main", sessions)
    for sid, lines in sessions.items():
        h.write_session(jsonl_home, lines, session_id=sid)
    store = read_transcript_store(store_home)
    files = read_transcripts(jsonl_home)
    assert store.problems == []
    assert store.records.height == files.records.height == 4
    key = ["session_id", "timestamp"]
    assert store.records.select(COMPARED).sort(key).equals(files.records.select(COMPARED).sort(key))
    assert store.records.get_column("source").unique().to_list() == ["transcript_store"]
    # one unit per session: the database, the table and the session id name where a line is
    assert sorted(store.records.get_column("source_file").unique().to_list()) == [
        "agents/main/agent/openclaw-agent.sqlite#transcript_events/s-a",
        "agents/main/agent/openclaw-agent.sqlite#transcript_events/s-b",
    ]
    # line_no is the event's seq: the calls are the 3rd and 5th events (seq 10 + 2*3, 10 + 4*3)
    assert sorted(set(store.records.get_column("line_no").to_list())) == [16, 22]
    assert store.file_counts.get_column("lines_read").to_list() == [6, 6]
    for counts in store.file_counts.iter_rows(named=True):
        assert (
            counts["lines_read"]
            == counts["calls"] + counts["other_entries"] + counts["skipped_by_rule"] + counts["quarantined"]
        )
        assert counts["skipped_by_rule"] == 1  # the delivery mirror


def test_bad_events_are_quarantined_with_their_seq(tmp_path):
    lines = session_lines("s-a")
    lines.insert(2, '{"type": "message", "message": {"role": "assist')
    lines.insert(3, 'pretty\n{"printed": true}')  # a raw newline is JSON whitespace: still one event
    write_store(tmp_path, "main", {"s-a": lines}, seq_start=1, seq_step=1)
    batch = read_transcript_store(tmp_path)
    assert batch.quarantine.get_column("line_no").to_list() == [3, 4]
    assert batch.quarantine.get_column("source").unique().to_list() == ["transcript_store"]
    assert batch.records.height == 2
    assert batch.file_counts.get_column("lines_read").to_list() == [len(lines)]


def test_an_event_that_is_not_utf8_costs_only_its_line(tmp_path):
    """sqlite3 raises on such a cell while fetching (the whole store was lost); it is quarantined like an
    invalid-UTF-8 JSONL line, at its seq."""
    lines = session_lines("s-a")
    path = write_store(tmp_path, "main", {"s-a": lines}, seq_start=1, seq_step=2)
    bad = (
        json.dumps(h.assistant(T0 + timedelta(seconds=6), u=h.usage(5, 5)))
        .encode()
        .replace(b"assistant", b"assist\xff")
    )
    con = sqlite3.connect(path)
    con.execute("INSERT INTO transcript_events VALUES ('s-a', 4, ?, 0)", (bad,))
    con.commit()
    con.close()
    batch = read_transcript_store(tmp_path)
    assert batch.problems == []
    assert batch.records.height == 2  # the session's two model calls
    assert batch.quarantine.select("line_no", "reason").rows() == [
        (4, "invalid UTF-8 at byte " + str(bad.index(b"\xff")))
    ]
    assert batch.file_counts.get_column("lines_read").to_list() == [len(lines) + 1]


def test_one_broken_store_does_not_hide_the_others(tmp_path):
    write_store(tmp_path, "good", {"s-a": session_lines("s-a")})
    bad = tmp_path / "agents" / "bad" / "agent" / "openclaw-agent.sqlite"
    bad.parent.mkdir(parents=True)
    con = sqlite3.connect(bad)
    con.execute("CREATE TABLE something_else (x)")
    con.close()
    corrupt = tmp_path / "agents" / "corrupt" / "agent" / "openclaw-agent.sqlite"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x00garbage" * 500)
    batch = read_transcript_store(tmp_path)
    assert batch.records.height == 2
    assert set(batch.records.get_column("agent_id").to_list()) == {"good"}
    assert len(batch.problems) == 2
    assert any(
        p.startswith("agents/bad/agent/openclaw-agent.sqlite: no transcript_events") for p in batch.problems
    )
    assert any(p.startswith("agents/corrupt/agent/openclaw-agent.sqlite: ") for p in batch.problems)


def test_no_store_is_an_empty_batch(tmp_path):
    batch = read_transcript_store(tmp_path)
    assert batch.records.height == 0 and batch.problems == [] and batch.file_counts.height == 0


@pytest.mark.skipif(not h.REAL_DIR.exists(), reason="shared/real not present")
def test_real_transcripts_through_the_store(tmp_path):
    sessions = {}
    for f in sorted(h.REAL_DIR.glob("*.jsonl")):
        lines = f.read_text().splitlines()
        sessions[json.loads(lines[0])["id"]] = lines
    write_store(tmp_path / "store", "main", sessions)
    store = read_transcript_store(tmp_path / "store")
    files = read_transcripts(h.copy_real_home(tmp_path / "jsonl"))
    key = ["session_id", "timestamp", "output_tokens"]
    assert store.records.height == files.records.height > 0
    assert store.records.select(COMPARED).sort(key).equals(files.records.select(COMPARED).sort(key))
