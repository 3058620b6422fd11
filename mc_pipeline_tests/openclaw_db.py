"""Builders of OpenClaw 2026.8+ databases in the real schema
(docs/openclaw-formats.md#agent-databases), for tests.

``AgentDb`` writes ``agents/<id>/agent/openclaw-agent.sqlite`` the way OpenClaw does: one
``transcript_events`` row per transcript line, compressed with zstd (``event_zstd`` + ``event_utf8_bytes``,
``event_json`` NULL) when the line is 1 KiB..4 MiB, not the session header, free of ``\\u`` escapes, and
compression saves at least ~10%; session windows and nodes; reset/delete archives (identity or zstd,
published as ``<sid>.jsonl.<reason>.<ts>.<generation>[.zst]``); cold archives in a file or a blob; the
auth profile store; rewrite watermarks. ``StateDb`` writes ``state/openclaw.sqlite``: the agent database
registry, cron jobs and runs, shared machine state. Table definitions follow OpenClaw's schema files
(v24, STRICT tables; columns a reader does not need are kept where they are NOT NULL).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import zstandard

AGENT_SCHEMA_VERSION = 24

AGENT_DDL = """
CREATE TABLE session_nodes (
  session_key TEXT NOT NULL PRIMARY KEY,
  current_session_id TEXT NOT NULL,
  entry_json TEXT NOT NULL,
  entry_valid INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  status TEXT,
  created_at INTEGER,
  created_via TEXT CHECK (created_via IS NULL OR created_via IN
    ('operator','spawn','channel','cron','talk','run','plugin','internal')),
  parent_session_key TEXT, spawned_by TEXT,
  fork_source_session_key TEXT, fork_source_session_id TEXT, fork_source_entry_id TEXT,
  label TEXT, display_name TEXT,
  snapshot_revision INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE session_windows (
  session_id TEXT NOT NULL PRIMARY KEY,
  session_key TEXT NOT NULL,
  previous_session_id TEXT,
  reason TEXT CHECK (reason IS NULL OR reason IN
    ('initial','reset','rollover','fork','rewind','switch','recovery','compaction')),
  session_scope TEXT NOT NULL DEFAULT 'conversation',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  started_at INTEGER, ended_at INTEGER, status TEXT,
  chat_type TEXT CHECK (chat_type IS NULL OR chat_type IN ('direct','group','channel')),
  channel TEXT, account_id TEXT,
  model_provider TEXT, model TEXT, agent_harness_id TEXT,
  parent_session_key TEXT, spawned_by TEXT, display_name TEXT,
  FOREIGN KEY (session_key) REFERENCES session_nodes(session_key) ON DELETE CASCADE
) STRICT;
CREATE TABLE "transcript_events" (
  session_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  event_json TEXT,
  created_at INTEGER NOT NULL,
  event_zstd BLOB,
  event_utf8_bytes INTEGER CHECK (event_utf8_bytes IS NULL OR event_utf8_bytes >= 0),
  navigation_json TEXT,
  PRIMARY KEY (session_id, seq),
  FOREIGN KEY (session_id) REFERENCES "session_windows"(session_id) ON DELETE CASCADE,
  CHECK ((event_json IS NOT NULL AND event_zstd IS NULL) OR (event_json IS NULL AND event_zstd IS NOT NULL
         AND event_utf8_bytes IS NOT NULL AND navigation_json IS NOT NULL))
) STRICT;
CREATE TABLE transcript_rewrite_watermarks (
  session_id TEXT NOT NULL PRIMARY KEY,
  generation TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  FOREIGN KEY (session_id) REFERENCES "session_windows"(session_id) ON DELETE CASCADE
) STRICT;
CREATE TABLE session_transcript_cold_archives (
  session_id TEXT NOT NULL PRIMARY KEY,
  generation TEXT NOT NULL,
  archive_name TEXT NOT NULL UNIQUE,
  archive_sha256 TEXT NOT NULL CHECK (length(archive_sha256) = 64),
  event_count INTEGER NOT NULL CHECK (event_count >= 1),
  raw_bytes INTEGER NOT NULL CHECK (raw_bytes >= 0),
  archive_bytes INTEGER NOT NULL CHECK (archive_bytes >= 0),
  last_seq INTEGER NOT NULL,
  archived_at INTEGER NOT NULL,
  storage TEXT NOT NULL CHECK (storage IN ('file', 'sqlite')),
  archive_blob BLOB,
  FOREIGN KEY (session_id) REFERENCES "session_windows"(session_id) ON DELETE CASCADE,
  CHECK ((storage = 'file' AND archive_blob IS NULL) OR (storage = 'sqlite' AND archive_blob IS NOT NULL))
) STRICT;
CREATE TABLE auth_profile_store (
  store_key TEXT NOT NULL PRIMARY KEY,
  store_json TEXT NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE auth_profile_state (
  state_key TEXT NOT NULL PRIMARY KEY,
  state_json TEXT NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
"""

#: Created lazily by OpenClaw on the first archive (a missing table is normal).
ARCHIVES_DDL = """
CREATE TABLE IF NOT EXISTS session_transcript_archives (
  session_id TEXT NOT NULL,
  generation TEXT NOT NULL,
  session_key TEXT NOT NULL,
  reason TEXT NOT NULL CHECK (reason IN ('deleted', 'reset')),
  encoding TEXT NOT NULL CHECK (encoding IN ('identity', 'zstd')),
  archive_blob BLOB NOT NULL,
  archive_sha256 TEXT NOT NULL CHECK (length(archive_sha256) = 64),
  archive_name TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  published_at INTEGER,
  publish_attempts INTEGER NOT NULL DEFAULT 0,
  last_publish_attempt_at INTEGER,
  last_publish_error TEXT,
  PRIMARY KEY (session_id, generation)
) STRICT;
"""

STATE_DDL = """
CREATE TABLE config_machine_state (
  state_key TEXT NOT NULL PRIMARY KEY,
  value_json TEXT NOT NULL,
  updated_at_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE agent_databases (
  agent_id TEXT NOT NULL,
  path TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  size_bytes INTEGER,
  PRIMARY KEY (agent_id, path)
) STRICT;
CREATE TABLE cron_jobs (
  store_key TEXT NOT NULL,
  job_id TEXT NOT NULL,
  name TEXT NOT NULL,
  description TEXT,
  enabled INTEGER NOT NULL,
  agent_id TEXT,
  payload_kind TEXT NOT NULL,
  job_json TEXT NOT NULL,
  state_json TEXT NOT NULL DEFAULT '{}',
  sort_order INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (store_key, job_id)
) STRICT;
CREATE TABLE cron_run_logs (
  store_key TEXT NOT NULL, job_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
  status TEXT, error TEXT, session_id TEXT, session_key TEXT, run_id TEXT, run_at_ms INTEGER,
  duration_ms INTEGER, model TEXT, provider TEXT, total_tokens INTEGER,
  entry_json TEXT NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY (store_key, job_id, seq)
) STRICT;
"""

NOW_MS = 1_790_000_000_000
MIN_COMPRESS = 1024
MAX_COMPRESS = 4 * 1024 * 1024


def _text(line: dict | str | bytes) -> str:
    if isinstance(line, dict):
        return json.dumps(line, separators=(",", ":"))
    return line.decode() if isinstance(line, bytes) else line


def generation() -> str:
    return uuid.uuid4().hex


def archive_stamp(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H-%M-%S.") + f"{ts.microsecond // 1000:03d}Z"


def payload(
    text: str, *, header: bool, compress: bool = True
) -> tuple[str | None, bytes | None, int, str | None]:
    """(event_json, event_zstd, event_utf8_bytes, navigation_json) as OpenClaw's transcript-payload writes
    them."""
    raw = text.encode()
    if (
        not compress
        or header
        or len(raw) < MIN_COMPRESS
        or len(raw) > MAX_COMPRESS
        or "\\u" in text
        or "\0" in text
    ):
        return text, None, len(raw), None
    blob = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(raw)
    if len(blob) > len(raw) * 0.9:
        return text, None, len(raw), None
    nav = json.dumps(
        {"version": 1, "report": {"kind": "canonical"}, "navigation": {}, "reset": {}, "model": {}}
    )
    return None, blob, len(raw), nav


def jsonl(lines: list) -> bytes:
    return b"".join(_text(line).encode() + b"\n" for line in lines)


class AgentDb:
    """``agents/<agent>/agent/openclaw-agent.sqlite`` of ``home``; every method commits."""

    def __init__(
        self, home: Path, agent: str = "main", *, archives_table: bool = True, path: Path | None = None
    ):
        self.home, self.agent = home, agent
        self.path = path or home / "agents" / agent / "agent" / "openclaw-agent.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sessions_dir = home / "agents" / agent / "sessions"
        fresh = not self.path.exists()
        self.con = sqlite3.connect(self.path)
        if fresh:
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.executescript(AGENT_DDL)
            self.con.execute(f"PRAGMA user_version = {AGENT_SCHEMA_VERSION}")
            if archives_table:
                self.con.executescript(ARCHIVES_DDL)
        self.con.commit()

    def close(self) -> None:
        self.con.close()

    # -- sessions -----------------------------------------------------------------------------------
    def add_session(
        self,
        sid: str,
        lines: list,
        *,
        key: str | None = None,
        reason: str = "initial",
        channel: str | None = None,
        chat_type: str | None = None,
        created_via: str | None = None,
        fork_source: str | None = None,
        compress: bool = True,
        watermark: bool = True,
    ) -> None:
        key = key or f"agent:{self.agent}:main"
        self.con.execute(
            "INSERT OR REPLACE INTO session_nodes (session_key, current_session_id, entry_json, updated_at,"
            " created_via, fork_source_session_id) VALUES (?, ?, ?, ?, ?, ?)",
            (key, sid, json.dumps({"sessionId": sid}), NOW_MS, created_via, fork_source),
        )
        self.con.execute(
            "INSERT INTO session_windows (session_id, session_key, reason, created_at, updated_at, channel,"
            " chat_type) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sid, key, reason, NOW_MS, NOW_MS, channel, chat_type),
        )
        if watermark:
            self.con.execute(
                "INSERT INTO transcript_rewrite_watermarks VALUES (?, ?, ?)", (sid, generation(), NOW_MS)
            )
        self._insert(sid, lines, 1, compress)
        self.con.commit()

    def _insert(self, sid: str, lines: list, first_seq: int, compress: bool) -> None:
        for i, line in enumerate(lines):
            text = _text(line)
            is_header = '"type":"session"' in text[:40] or '"type": "session"' in text[:40]
            event_json, blob, n, nav = payload(text, header=is_header, compress=compress)
            self.con.execute(
                "INSERT INTO transcript_events (session_id, seq, event_json, created_at, event_zstd,"
                " event_utf8_bytes, navigation_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sid, first_seq + i, event_json, NOW_MS, blob, n, nav),
            )

    def append(self, sid: str, lines: list, compress: bool = True) -> None:
        last = self.con.execute(
            "SELECT coalesce(max(seq), 0) FROM transcript_events WHERE session_id = ?", (sid,)
        ).fetchone()[0]
        self._insert(sid, lines, last + 1, compress)
        self.con.commit()

    def raw_event(
        self,
        sid: str,
        seq: int,
        *,
        event_json=None,
        event_zstd=None,
        utf8_bytes=None,
        navigation_json: str | None = "{}",
    ) -> None:
        """A row as given (for planting bad ones); CHECK constraints still apply."""
        self.con.execute(
            "INSERT INTO transcript_events (session_id, seq, event_json, created_at, event_zstd,"
            " event_utf8_bytes, navigation_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sid, seq, event_json, NOW_MS, event_zstd, utf8_bytes, navigation_json),
        )
        self.con.commit()

    def rewrite(self, sid: str, lines: list) -> str:
        """Replace a session's rows in place (rewind/repair): new rows, a new generation."""
        self.con.execute("DELETE FROM transcript_events WHERE session_id = ?", (sid,))
        self._insert(sid, lines, 1, True)
        gen = generation()
        self.con.execute(
            "INSERT OR REPLACE INTO transcript_rewrite_watermarks VALUES (?, ?, ?)", (sid, gen, NOW_MS)
        )
        self.con.commit()
        return gen

    def events_text(self, sid: str) -> list[str]:
        out = []
        for js, blob, n in self.con.execute(
            "SELECT event_json, event_zstd, event_utf8_bytes FROM transcript_events"
            " WHERE session_id = ? ORDER BY seq",
            (sid,),
        ):
            out.append(
                js
                if js is not None
                else zstandard.ZstdDecompressor().decompress(blob, max_output_size=n).decode()
            )
        return out

    # -- archives -----------------------------------------------------------------------------------
    def archive(
        self,
        sid: str,
        *,
        reason: str = "reset",
        encoding: str = "zstd",
        when: datetime | None = None,
        publish: bool = True,
        keep_events: bool = False,
    ) -> str:
        """Move a session's events into ``session_transcript_archives``; returns the archive (file) name."""
        self.con.executescript(ARCHIVES_DDL)
        data = "".join(t + "\n" for t in self.events_text(sid)).encode()
        blob = zstandard.ZstdCompressor(level=3).compress(data) if encoding == "zstd" else data
        gen = generation()
        when = when or datetime(2026, 9, 1, tzinfo=UTC)
        name = f"{sid}.jsonl.{reason}.{archive_stamp(when)}.{gen}" + (".zst" if encoding == "zstd" else "")
        self.con.execute(
            "INSERT INTO session_transcript_archives (session_id, generation, session_key, reason, encoding,"
            " archive_blob, archive_sha256, archive_name, created_at, published_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sid,
                gen,
                f"agent:{self.agent}:main",
                reason,
                encoding,
                blob,
                hashlib.sha256(blob).hexdigest(),
                name,
                NOW_MS,
                NOW_MS if publish else None,
            ),
        )
        if not keep_events:
            self.con.execute("DELETE FROM transcript_events WHERE session_id = ?", (sid,))
        self.con.commit()
        if publish:
            self.publish(name)
        return name

    def publish(self, name: str) -> Path:
        """Write the published copy of an archive row into the agent's sessions folder."""
        blob = self.con.execute(
            "SELECT archive_blob FROM session_transcript_archives WHERE archive_name = ?", (name,)
        ).fetchone()[0]
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        path = self.sessions_dir / name
        path.write_bytes(blob)
        return path

    def cold(self, sid: str, *, storage: str = "file", restore: bool = False) -> str:
        """Move a session's events to a cold archive (file or blob); ``restore`` puts them back into the hot
        table as well (OpenClaw keeps both for a while after a restore)."""
        rows = self.con.execute(
            "SELECT seq, created_at FROM transcript_events WHERE session_id = ? ORDER BY seq", (sid,)
        ).fetchall()
        texts = self.events_text(sid)
        gen = self.con.execute(
            "SELECT generation FROM transcript_rewrite_watermarks WHERE session_id = ?", (sid,)
        ).fetchone()
        gen = gen[0] if gen else generation()
        records = [{"kind": "header", "version": 1, "sessionId": sid, "generation": gen}]
        records += [
            {"kind": "event", "row": {"seq": seq, "event_json": t, "created_at": c}}
            for (seq, c), t in zip(rows, texts)
        ]
        records += [
            {"kind": "identity", "row": {"event_id": "x", "seq": rows[0][0], "event_type": "session"}},
            {"kind": "index", "row": {"indexed_seq": rows[-1][0], "needs_rebuild": 0}},
        ]
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        blob = zstandard.ZstdCompressor(write_content_size=False).compress(data)
        sha = hashlib.sha256(blob).hexdigest()
        name = f"{sha}.jsonl.zst"
        if storage == "file":
            (self.sessions_dir / "cold").mkdir(parents=True, exist_ok=True)
            (self.sessions_dir / "cold" / name).write_bytes(blob)
        self.con.execute(
            "INSERT INTO session_transcript_cold_archives VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sid,
                gen,
                name,
                sha,
                len(texts),
                sum(len(t.encode()) for t in texts) + len(texts) - 1,
                len(blob),
                rows[-1][0],
                NOW_MS,
                storage,
                blob if storage == "sqlite" else None,
            ),
        )
        if not restore:
            self.con.execute("DELETE FROM transcript_events WHERE session_id = ?", (sid,))
        self.con.commit()
        return name

    # -- other tables -------------------------------------------------------------------------------
    def set_auth(self, profiles: dict[str, dict]) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO auth_profile_store VALUES ('primary', ?, ?)",
            (json.dumps({"version": 1, "profiles": profiles}), NOW_MS),
        )
        self.con.commit()


class StateDb:
    """``state/openclaw.sqlite`` of ``home``."""

    def __init__(self, home: Path):
        self.home = home
        self.path = home / "state" / "openclaw.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        self.con = sqlite3.connect(self.path)
        if fresh:
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.executescript(STATE_DDL)
        self.con.commit()

    def close(self) -> None:
        self.con.close()

    def register(self, agent: str, path: str) -> None:
        self.con.execute(
            "INSERT INTO agent_databases VALUES (?, ?, ?, ?, ?)",
            (agent, path, AGENT_SCHEMA_VERSION, NOW_MS, 0),
        )
        self.con.commit()

    def cron_job(self, job_id: str, name: str, agent: str = "main") -> None:
        self.con.execute(
            "INSERT INTO cron_jobs (store_key, job_id, name, enabled, agent_id, payload_kind, job_json,"
            " updated_at) VALUES ('default', ?, ?, 1, ?, 'agentTurn', ?, ?)",
            (job_id, name, agent, json.dumps({"id": job_id, "name": name}), NOW_MS),
        )
        self.con.commit()

    def cron_run(self, job_id: str, seq: int, session_id: str, tokens: int = 1234) -> None:
        entry = {
            "ts": NOW_MS,
            "jobId": job_id,
            "action": "finished",
            "status": "ok",
            "sessionId": session_id,
            "usage": {"input_tokens": tokens, "output_tokens": 10, "total_tokens": tokens + 10},
        }
        self.con.execute(
            "INSERT INTO cron_run_logs (store_key, job_id, seq, ts, status, session_id, total_tokens,"
            " entry_json, created_at) VALUES ('default', ?, ?, ?, 'ok', ?, ?, ?, ?)",
            (job_id, seq, NOW_MS, session_id, tokens + 10, json.dumps(entry), NOW_MS),
        )
        self.con.commit()

    def shared_auth(self, profiles: dict[str, dict]) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO config_machine_state VALUES ('auth.sharedStore', ?, ?)",
            (json.dumps({"location": "state-db"}), NOW_MS),
        )
        self.con.execute(
            "INSERT OR REPLACE INTO config_machine_state VALUES ('authProfiles.store', ?, ?)",
            (json.dumps({"version": 1, "profiles": profiles}), NOW_MS),
        )
        self.con.commit()
