"""What started each session: session keys, triggers, channels, cron jobs, forks
(docs/openclaw-formats.md#session-index, docs/openclaw-formats.md#session-windows-and-nodes,
docs/openclaw-formats.md#state-database).

Two eras: ``agents/<id>/sessions/sessions.json`` (session key -> entry) and, since OpenClaw 2026.8, the agent
database's ``session_windows``/``session_nodes``
(:func:`mc_pipeline.ingest.readers.agent_db.read_agent_facts`, which win where both know a session) with cron
job names and cron runs' sessions from ``state/openclaw.sqlite`` (:mod:`mc_pipeline.ingest.readers.state_db`).
Cron runs only name and attribute sessions here; their token totals are never counted (they hold no cost and
would count calls twice).

Session keys can hold personal data (phone numbers, chat handles). They are kept in private columns to
decide task types and triggers; public outputs only ever see the derived ``trigger``/``channel``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from mc_pipeline.ingest.readers.agent_db import AgentFacts

SESSION_INDEX: dict[str, pl.DataType] = {
    "agent_id": pl.String(),
    "session_id": pl.String(),
    "session_key": pl.String(),
    "trigger": pl.String(),
    "channel": pl.String(),
    "cron_job_id": pl.String(),
    "cron_job_name": pl.String(),
    "is_fork": pl.Boolean(),  # the agent database says the session is a fork of another
}

_CRON = re.compile(r"(?:^|:)cron:(?P<job>[^:]+)")


def parse_session_key(key: str) -> tuple[str, str | None, str | None]:
    """(trigger, channel, cron job id) of a session key such as ``agent:main:telegram:direct:+4912345``."""
    parts = key.split(":")
    if key.endswith(":heartbeat") or "heartbeat" in parts:
        return "heartbeat", None, None
    m = _CRON.search(key)
    if m:
        return "cron", None, m.group("job")
    if parts[0] == "hook" or ":hook:" in key:
        return "hook", None, None
    if "subagent" in parts:
        return "subagent", None, None
    if parts[0] == "agent" and len(parts) >= 3:
        if parts[2] == "main" and len(parts) == 3:
            return "main", None, None
        if len(parts) >= 4 and parts[3] in ("direct", "dm"):
            return "direct", parts[2], None
        if len(parts) >= 4 and parts[3] in ("group", "channel", "thread"):
            return "group", parts[2], None
    return "other", None, None


def read_session_index(home: Path) -> tuple[pl.DataFrame, list[str]]:
    """(one row per known session, problems) for every agent's sessions.json; read-only, never fails."""
    rows: list[dict] = []
    problems: list[str] = []
    agents = home / "agents"
    if not agents.is_dir():
        return pl.DataFrame(schema=SESSION_INDEX), problems
    for index in sorted(agents.glob("*/sessions/sessions.json")):
        agent_id = index.parent.parent.name
        rel = f"agents/{agent_id}/sessions/sessions.json"
        try:
            doc = json.loads(index.read_bytes())
        except (OSError, ValueError) as exc:
            problems.append(f"{rel}: unreadable ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        if not isinstance(doc, dict):
            problems.append(f"{rel}: not a JSON object")
            continue
        for key, entry in doc.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("sessionId"), str):
                continue
            trigger, channel, job = parse_session_key(str(key))
            rows.append(
                {
                    "agent_id": agent_id,
                    "session_id": entry["sessionId"],
                    "session_key": str(key),
                    "trigger": trigger,
                    "channel": channel,
                    "cron_job_id": job,
                    "cron_job_name": None,
                    "is_fork": False,
                }
            )
    frame = pl.DataFrame(rows, schema=SESSION_INDEX).unique(["agent_id", "session_id"], keep="first")
    return frame, problems


def _trigger_of(
    key: str | None, created_via: str | None, chat_type: str | None, channel: str | None
) -> tuple:
    trigger, key_channel, job = parse_session_key(key or "")
    if trigger == "other" and created_via == "cron":
        trigger = "cron"
    elif trigger == "other" and created_via == "spawn":
        trigger = "subagent"
    elif trigger == "other" and chat_type in ("direct", "group"):
        trigger = chat_type
    if trigger in ("direct", "group"):
        key_channel = key_channel or channel
    return trigger, key_channel, job


def _current_sessions(facts: AgentFacts) -> pl.DataFrame:
    """Current era step: one row per session the agent databases know, its trigger and channel derived."""
    rows = []
    for r in facts.sessions.iter_rows(named=True):
        trigger, channel, job = _trigger_of(r["session_key"], r["created_via"], r["chat_type"], r["channel"])
        rows.append(
            {
                "agent_id": r["agent_id"],
                "session_id": r["session_id"],
                "session_key": r["session_key"],
                "trigger": trigger,
                "channel": channel,
                "cron_job_id": job,
                "cron_job_name": None,
                "is_fork": r["is_fork"],
            }
        )
    return pl.DataFrame(rows, schema=SESSION_INDEX) if rows else pl.DataFrame(schema=SESSION_INDEX)


def _with_cron_runs(frame: pl.DataFrame, cron_sessions: dict[str, str]) -> pl.DataFrame:
    """Cron run step: sessions a cron run names are cron-triggered, with its job (added when not known)."""
    runs = pl.DataFrame(
        {"session_id": list(cron_sessions), "_job": list(cron_sessions.values())},
        schema={"session_id": pl.String, "_job": pl.String},
    )
    frame = (
        frame.join(runs, on="session_id", how="left", maintain_order="left")
        .with_columns(
            cron_job_id=pl.coalesce("cron_job_id", "_job"),
            trigger=pl.when(pl.col("_job").is_not_null()).then(pl.lit("cron")).otherwise("trigger"),
        )
        .drop("_job")
    )
    known = set(frame.get_column("session_id").to_list())
    extra = [
        {
            "agent_id": None,
            "session_id": sid,
            "session_key": None,
            "trigger": "cron",
            "channel": None,
            "cron_job_id": job,
            "cron_job_name": None,
            "is_fork": False,
        }
        for sid, job in cron_sessions.items()
        if sid not in known
    ]
    if extra:
        frame = pl.concat([frame, pl.DataFrame(extra, schema=SESSION_INDEX)])
    return frame


def read_sessions(home: Path, state=None, facts=None) -> tuple[pl.DataFrame, list[str]]:
    """One row per known session of both eras (SESSION_INDEX), and problems; read-only, never raises.

    ``state``/``facts``: what :func:`mc_pipeline.ingest.readers.state_db.read_state_db` and
    :func:`mc_pipeline.ingest.readers.agent_db.read_agent_facts` returned, when the caller has them
    already. Steps: both eras' sessions (the agent databases win), then the cron runs and job names."""
    from mc_pipeline.ingest.readers.agent_db import read_agent_facts
    from mc_pipeline.ingest.readers.state_db import read_state_db

    legacy, problems = read_session_index(home)
    state = state if state is not None else read_state_db(home)
    facts = facts if facts is not None else read_agent_facts(home, state.agent_dbs)
    problems += state.problems + facts.problems
    current = _current_sessions(facts)
    frame = pl.concat([current, legacy]).unique(["agent_id", "session_id"], keep="first", maintain_order=True)
    if state.cron_sessions:  # a cron run names its session (older state databases)
        frame = _with_cron_runs(frame, state.cron_sessions)
    if state.cron_names:
        frame = frame.with_columns(
            cron_job_name=pl.col("cron_job_id").replace_strict(
                state.cron_names, default=None, return_dtype=pl.String
            )
        )
    return frame, problems
