"""Reading `agents/<id>/sessions/sessions.json` (REFERENCE §1.7): what started each session.

Session keys can hold personal data (phone numbers, chat handles). They are kept in private columns to
decide task types and triggers; public outputs only ever see the derived ``trigger``/``channel``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

SESSION_INDEX: dict[str, pl.DataType] = {
    "agent_id": pl.String(),
    "session_id": pl.String(),
    "session_key": pl.String(),
    "trigger": pl.String(),
    "channel": pl.String(),
    "cron_job_id": pl.String(),
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
                }
            )
    frame = pl.DataFrame(rows, schema=SESSION_INDEX).unique(["agent_id", "session_id"], keep="first")
    return frame, problems
