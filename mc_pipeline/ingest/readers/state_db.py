"""OpenClaw's global database, ``state/openclaw.sqlite`` (2026.8+, docs/openclaw-formats.md#state-database).

What is read from it, read-only (:func:`mc_pipeline.ingest.readers.sqlite_access.read_snapshot`):

- ``agent_databases(agent_id, path)``: where each agent's database is (``path`` relative to the state root,
  the folder holding ``state/``, or absolute); the agent databases are also found by globbing;
- ``cron_jobs(job_id, name)``: a cron job's name, so the cost per cron job shows what the job is;
- ``cron_run_logs(job_id, session_id | entry_json.sessionId)`` (older builds only): which cron job ran in a
  session. Its token totals are never added to anything: they hold no cost and would count calls twice;
- ``config_machine_state``: the shared auth profile store (``authProfiles.store``) when
  ``auth.sharedStore`` says it lives here (``{"location": "state-db"}``); otherwise the ``main`` agent's
  store is the shared one. Only each profile's ``type`` and ``provider`` are used, never a secret.

A missing database or table is normal (an older home); a broken one is a problem naming the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from mc_pipeline.ingest.readers.sqlite_access import DbUnavailable, read_snapshot, table_columns

STATE_REL = "state/openclaw.sqlite"


@dataclass
class StateDb:
    present: bool = False
    agent_dbs: list[tuple[str, Path]] = field(
        default_factory=list
    )  # (agent id, absolute path) from the registry
    cron_names: dict[str, str] = field(default_factory=dict)  # job id -> name
    cron_sessions: dict[str, str] = field(default_factory=dict)  # session id -> job id (cron_run_logs)
    shared_auth: dict | None = None  # the shared auth profile store when it lives in this database
    problems: list[str] = field(default_factory=list)


def state_db_path(home: Path) -> Path:
    return home / STATE_REL


def _json(value: object) -> object:
    if not isinstance(value, (str, bytes)):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _query(con: sqlite3.Connection) -> dict[str, list]:
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    out: dict[str, list] = {"agent_databases": [], "cron_jobs": [], "cron_run_logs": [], "config": []}
    if "agent_databases" in tables:
        out["agent_databases"] = con.execute("SELECT agent_id, path FROM agent_databases").fetchall()
    if "cron_jobs" in tables:
        cols = table_columns(con, "cron_jobs") or []
        name = "name" if "name" in cols else "NULL"
        job_json = "job_json" if "job_json" in cols else "NULL"
        out["cron_jobs"] = con.execute(f"SELECT job_id, {name}, {job_json} FROM cron_jobs").fetchall()
    if "cron_run_logs" in tables:
        cols = table_columns(con, "cron_run_logs") or []
        sid = "session_id" if "session_id" in cols else "NULL"
        entry = "entry_json" if "entry_json" in cols else "NULL"
        out["cron_run_logs"] = con.execute(f"SELECT job_id, {sid}, {entry} FROM cron_run_logs").fetchall()
    if "config_machine_state" in tables:
        out["config"] = con.execute(
            "SELECT state_key, value_json FROM config_machine_state"
            " WHERE state_key IN ('auth.sharedStore', 'authProfiles.store')"
        ).fetchall()
    return out


def read_state_db(home: Path) -> StateDb:
    """What the global database says (empty when there is none); never raises."""
    path = state_db_path(home)
    if not path.is_file():
        return StateDb()
    try:
        rows = read_snapshot(path, _query, what="OpenClaw state database")
    except DbUnavailable as exc:
        return StateDb(present=True, problems=[f"{STATE_REL}: {exc}"])
    root = path.parent.parent
    state = StateDb(present=True)
    for agent_id, stored in rows["agent_databases"]:
        if isinstance(agent_id, str) and isinstance(stored, str) and stored:
            state.agent_dbs.append((agent_id, Path(stored) if os.path.isabs(stored) else root / stored))
    for job_id, name, job_json in rows["cron_jobs"]:
        if not isinstance(job_id, str):
            continue
        if not isinstance(name, str) or not name.strip():
            doc = _json(job_json)
            name = doc.get("name") if isinstance(doc, dict) else None
        if isinstance(name, str) and name.strip():
            state.cron_names[job_id] = name.strip()
    for job_id, session_id, entry_json in rows["cron_run_logs"]:
        if not isinstance(session_id, str):
            doc = _json(entry_json)
            session_id = doc.get("sessionId") if isinstance(doc, dict) else None
        if isinstance(job_id, str) and isinstance(session_id, str) and session_id:
            state.cron_sessions[session_id] = job_id
    config = {k: _json(v) for k, v in rows["config"]}
    location = config.get("auth.sharedStore")
    store = config.get("authProfiles.store")
    if isinstance(location, dict) and location.get("location") == "state-db":
        if isinstance(store, dict) and isinstance(store.get("profiles", {}), dict):
            state.shared_auth = store
        elif store is not None:
            state.problems.append(
                f"{STATE_REL}: config_machine_state authProfiles.store is not an auth profile store"
            )
    return state
