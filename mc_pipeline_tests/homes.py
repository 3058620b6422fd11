"""Builders of OpenClaw homes in the real on-disk format (docs/openclaw-formats.md#home-layout), for tests.

Lines are written the way OpenClaw 2026 (session version 3) writes them; ``v1=True`` drops ids and
``totalTokens`` like the old pi files in ``shared/real``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

#: The real pi transcripts (../shared/real, not committed); MC_TEST_REAL_DIR points elsewhere, e.g. at a
#: missing folder to run the suite as a fresh clone without ../shared does (tests about the real files then
#: skip).
REAL_DIR = Path(
    os.environ.get("MC_TEST_REAL_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "real" / "pi-transcripts"
)
_ids = count(1)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def entry_id() -> str:
    return f"{next(_ids):08x}"


def session_line(session_id: str, ts: datetime, v1: bool = False) -> dict:
    line = {"type": "session", "id": session_id, "timestamp": iso(ts), "cwd": "/home/alice/project"}
    if not v1:
        line["version"] = 3
    return line


def usage(inp=100, out=50, cache_read=0, cache_write=0, cost=None, v1=False, reasoning=None) -> dict:
    u = {"input": inp, "output": out, "cacheRead": cache_read, "cacheWrite": cache_write}
    if not v1:
        u["totalTokens"] = inp + out + cache_read + cache_write
    if reasoning is not None:
        u["reasoning"] = reasoning
    total = 0.0 if cost is None else cost
    u["cost"] = {"input": 0.0, "output": 0.0, "cacheRead": 0.0, "cacheWrite": 0.0, "total": total}
    return u


def assistant(
    ts: datetime,
    *,
    provider="anthropic",
    model="claude-sonnet-4-5",
    api="anthropic-messages",
    u: dict | None = None,
    stop="stop",
    error: str | None = None,
    tools: tuple[str, ...] = (),
    thinking: str | None = None,
    redacted: bool = False,
    v1: bool = False,
    entry_ts: datetime | None = None,
    text: str = "Done.",
) -> dict:
    content: list[dict] = []
    if thinking is not None or redacted:
        block = {"type": "thinking", "thinking": "" if redacted else thinking}
        if redacted:
            block["redacted"] = True
        content.append(block)
    if text:
        content.append({"type": "text", "text": text})
    for name in tools:
        content.append(
            {"type": "toolCall", "id": f"toolu_{uuid.uuid4().hex[:12]}", "name": name, "arguments": {}}
        )
    msg = {
        "role": "assistant",
        "content": content,
        "api": api,
        "provider": provider,
        "model": model,
        "usage": u if u is not None else usage(v1=v1),
        "stopReason": stop,
        "timestamp": ms(ts),
    }
    if error is not None:
        msg["errorMessage"] = error
    line = {"type": "message", "timestamp": iso(entry_ts or ts + timedelta(seconds=2)), "message": msg}
    if not v1:
        line = {
            "type": "message",
            "id": entry_id(),
            "parentId": None,
            **{k: v for k, v in line.items() if k != "type"},
        }
    return line


def user(ts: datetime, text: str = "please fix the bug", as_string: bool = True, v1: bool = False) -> dict:
    content = text if as_string else [{"type": "text", "text": text}]
    line = {
        "type": "message",
        "timestamp": iso(ts),
        "message": {"role": "user", "content": content, "timestamp": ms(ts)},
    }
    if not v1:
        line["id"] = entry_id()
        line["parentId"] = None
    return line


def tool_result(ts: datetime, name: str = "exec") -> dict:
    return {
        "type": "message",
        "id": entry_id(),
        "parentId": None,
        "timestamp": iso(ts),
        "message": {
            "role": "toolResult",
            "toolCallId": "toolu_x",
            "toolName": name,
            "content": [{"type": "text", "text": "ok"}],
            "isError": False,
        },
    }


def mirror(ts: datetime) -> dict:
    """A bookkeeping row the gateway writes itself (not a model call)."""
    return assistant(ts, provider="openclaw", model="delivery-mirror", api="openclaw", u=usage(0, 0))


def write_lines(path: Path, lines: list[dict | str | bytes], newline_at_end: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for line in lines:
        if isinstance(line, bytes):
            parts.append(line)
        elif isinstance(line, str):
            parts.append(line.encode())
        else:
            parts.append(json.dumps(line).encode())
    data = b"\n".join(parts) + (b"\n" if newline_at_end else b"")
    path.write_bytes(data)
    return path


def sessions_dir(home: Path, agent: str = "main") -> Path:
    d = home / "agents" / agent / "sessions"
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_session(
    home: Path, lines: list, agent: str = "main", session_id: str | None = None, suffix: str = ""
) -> Path:
    sid = session_id or str(uuid.uuid4())
    return write_lines(sessions_dir(home, agent) / f"{sid}.jsonl{suffix}", lines)


def write_sessions_index(home: Path, agent: str, entries: dict[str, str]) -> None:
    """entries: session key -> session id."""
    doc = {key: {"sessionId": sid, "updatedAt": 1764000000000} for key, sid in entries.items()}
    (sessions_dir(home, agent) / "sessions.json").write_text(json.dumps(doc))


def write_auth_profiles(home: Path, agent: str, profiles: dict[str, dict]) -> None:
    d = home / "agents" / agent / "agent"
    d.mkdir(parents=True, exist_ok=True)
    (d / "auth-profiles.json").write_text(json.dumps({"version": 1, "profiles": profiles}))


def copy_real_home(home: Path, agent: str = "main") -> Path:
    """The real pi transcripts placed as an OpenClaw home (caller skips when REAL_DIR is missing)."""
    d = sessions_dir(home, agent)
    for f in sorted(REAL_DIR.glob("*.jsonl")):
        shutil.copy(f, d / f.name)
    return home
