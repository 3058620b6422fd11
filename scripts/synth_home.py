#!/usr/bin/env python3
"""Generate a clearly SYNTHETIC OpenClaw home of a given size, in the real on-disk format
(docs/openclaw-formats.md#home-layout).

For benchmarks only: never point ``make run`` at it, never write it under ``data/``. Every session's
``cwd`` is ``/synthetic/mc-bench``, every text is drawn from a made-up word list, and the home root
holds a ``SYNTHETIC.txt`` saying so. Deterministic for a given ``--seed`` and ``--end-date``.

What is in it: several agents, each with ``sessions/*.jsonl`` (session v3 header, user messages as
strings or blocks, assistant calls with usage and recorded cost, text/thinking/toolCall blocks,
toolResult lines of realistic size, model and thinking-level changes, gateway delivery-mirror rows,
failed calls with real error-message shapes, prompt-error custom entries), ``-topic-`` threads,
``.reset.<ts>`` and ``.deleted.<ts>`` archives, a few ``.bak`` copies (never counted), ``sessions.json``
and ``auth-profiles.json``.

``--layout upgraded``: a home upgraded to OpenClaw 2026.8+ (docs/openclaw-formats.md#agent-databases),
from the same session
generator. Sessions that start before the upgrade (2026-08-01; when the date range does not straddle it,
the time 30% into the range) stay JSONL files as above; later ones go into
``agents/<id>/agent/openclaw-agent.sqlite`` (written by ``mc_pipeline_tests.openclaw_db.AgentDb``: lines
of 1 KiB..4 MiB zstd-compressed), where ~5% are archived (zstd, published as a ``.zst`` copy in
``sessions/``), ~2% archived as identity and not published, ~3% moved to cold storage (a file or a blob),
~1% cold and restored to the hot table, ~1% also leave a leftover ``<sid>.jsonl`` holding the first half of
their lines. ``state/openclaw.sqlite`` registers the agent databases and names two cron jobs. Without
``--days`` the range is widened so that ~30% of the sessions start before the upgrade.
``TRUTH.json`` at the home root is the count kept while writing: per UTC day and in total the calls
(assistant messages not from provider ``openclaw``, each once however many places hold it, plus each
``openclaw:prompt-error`` entry as a failed call), their tokens and recorded cost (``usage.cost.total``).
``--add-mb`` on such a home appends the new sessions to the agent databases and updates ``TRUTH.json``.
The ``jsonl`` layout (the default) writes exactly what it always did, and no ``TRUTH.json``.

    python scripts/synth_home.py --out /tmp/mc-synth-home --size-mb 1024
    python scripts/synth_home.py --out /tmp/mc-synth-home --add-mb 10 --add-seed 2   # ~1% new sessions
    python scripts/synth_home.py --out /tmp/mc-synth-up --size-mb 200 --layout upgraded
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import uuid
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
MARKER = "SYNTHETIC.txt"
TRUTH = "TRUTH.json"
LAYOUTS = ("jsonl", "upgraded")
#: When the synthetic home was upgraded to OpenClaw 2026.8 (sessions starting later live in SQLite).
UPGRADE_AT = datetime(2026, 8, 1, tzinfo=UTC)
#: Share of sessions that start before the upgrade when ``--days`` is not given (or the range misses it).
BEFORE_SHARE = 0.3
CRON_JOBS = (("job-1", "Synthetic nightly digest"), ("job-2", "Synthetic weekly cleanup"))
PROMPT_ERROR = "openclaw:prompt-error"
CWD = "/synthetic/mc-bench"
AGENTS = ("main", "coder", "ops", "research")
#: (provider, model, api, $ per 1M input, $ per 1M output): list prices used for the recorded cost.
MODELS = (
    ("anthropic", "claude-sonnet-4-5", "anthropic-messages", 3.0, 15.0),
    ("anthropic", "claude-opus-4-6", "anthropic-messages", 5.0, 25.0),
    ("anthropic", "claude-haiku-4-5", "anthropic-messages", 1.0, 5.0),
    ("openai", "gpt-5.1", "openai-responses", 1.25, 10.0),
    ("openai-codex", "gpt-5.1-codex", "openai-codex-responses", 1.25, 10.0),
    ("google", "gemini-2.5-pro", "google-generative-ai", 1.25, 10.0),
    ("openrouter", "minimax/minimax-m2.1", "openai-completions", 0.3, 1.2),
)
TOOLS = ("read", "edit", "write", "exec", "web_search", "browser", "process")
ERRORS = (
    '429 {"type":"error","error":{"type":"rate_limit_error",'
    '"message":"Number of request tokens has exceeded your rate limit"}}',
    '529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    "500 Internal Server Error",
    "fetch failed",
    "You have hit your ChatGPT usage limit (plus plan). Try again in ~12 min.",
)
WORDS = [
    "synthetic",
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "function",
    "return",
    "value",
    "config",
    "build",
    "test",
    "deploy",
    "refactor",
    "module",
    "parser",
    "schema",
    "table",
    "column",
    "index",
    "query",
    "cache",
    "token",
]


def _text_pool(rng: random.Random, n_chars: int = 1 << 20) -> str:
    words, size = [], 0
    while size < n_chars:
        w = rng.choice(WORDS)
        words.append(w)
        size += len(w) + 1
    return " ".join(words)


class Writer:
    """Builds one transcript's lines; text is sliced from a shared pool (fast, deterministic)."""

    def __init__(self, rng: random.Random, pool: str):
        self.rng = rng
        self.pool = pool

    def text(self, lo: int, hi: int) -> str:
        n = self.rng.randint(lo, hi)
        at = self.rng.randrange(0, len(self.pool) - n - 1)
        return self.pool[at : at + n]

    def eid(self) -> str:
        return f"{self.rng.getrandbits(32):08x}"


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def session_lines(w: Writer, session_id: str, start: datetime, target_bytes: int) -> list[str]:
    """One session's lines, about ``target_bytes`` long."""
    rng = w.rng
    dumps = json.dumps
    provider, model, api, pin, pout = rng.choice(MODELS)
    ts = start
    parent = None
    out = [dumps({"type": "session", "version": 3, "id": session_id, "timestamp": _iso(ts), "cwd": CWD})]
    size = len(out[0])

    def entry(kind: str, **body) -> str:
        nonlocal parent
        eid = w.eid()
        line = dumps({"type": kind, "id": eid, "parentId": parent, "timestamp": _iso(ts), **body})
        parent = eid
        return line

    out.append(entry("model_change", provider=provider, modelId=model))
    out.append(entry("thinking_level_change", thinkingLevel=rng.choice(("off", "low", "medium", "high"))))
    cache = 0
    while size < target_bytes:
        ts += timedelta(seconds=rng.randint(5, 600))
        text = w.text(20, 1500)
        content = text if rng.random() < 0.5 else [{"type": "text", "text": text}]
        line = entry("message", message={"role": "user", "content": content, "timestamp": _ms(ts)})
        out.append(line)
        size += len(line)
        for _turn in range(rng.randint(1, 6)):
            ts += timedelta(seconds=rng.randint(1, 90))
            r = rng.random()
            if r < 0.03:  # a failed call: empty content, zero usage, an error message
                msg = {
                    "role": "assistant",
                    "content": [],
                    "api": api,
                    "provider": provider,
                    "model": model,
                    "usage": {
                        "input": 0,
                        "output": 0,
                        "cacheRead": 0,
                        "cacheWrite": 0,
                        "totalTokens": 0,
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0},
                    },
                    "stopReason": "error",
                    "timestamp": _ms(ts),
                    "errorMessage": rng.choice(ERRORS),
                }
                line = entry("message", message=msg)
                out.append(line)
                size += len(line)
                continue
            if r < 0.04:  # the gateway's own bookkeeping row (not a model call)
                msg = {
                    "role": "assistant",
                    "content": [{"type": "text", "text": w.text(20, 200)}],
                    "api": "openclaw",
                    "provider": "openclaw",
                    "model": "delivery-mirror",
                    "usage": {
                        "input": 0,
                        "output": 0,
                        "cacheRead": 0,
                        "cacheWrite": 0,
                        "totalTokens": 0,
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0},
                    },
                    "stopReason": "stop",
                    "timestamp": _ms(ts),
                }
                out.append(entry("message", message=msg))
                continue
            if r < 0.045:
                line = entry(
                    "custom",
                    customType="openclaw:prompt-error",
                    data={"provider": provider, "model": model, "api": api, "error": rng.choice(ERRORS)},
                )
                out.append(line)
                continue
            blocks: list[dict] = []
            if rng.random() < 0.4:
                blocks.append(
                    {"type": "thinking", "thinking": w.text(50, 3000), "thinkingSignature": w.eid() * 8}
                )
            if rng.random() < 0.7:
                blocks.append({"type": "text", "text": w.text(10, 1200)})
            tools = [rng.choice(TOOLS) for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 3)))]
            for name in tools:
                blocks.append(
                    {
                        "type": "toolCall",
                        "id": f"toolu_{w.eid()}{w.eid()}",
                        "name": name,
                        "arguments": {
                            "path": f"{CWD}/src/{w.text(3, 12).replace(' ', '_')}.py",
                            "command": w.text(5, 200),
                        },
                    }
                )
            inp = rng.randint(1, 4000)
            cache_write = rng.randint(0, 3000)
            cache_read = cache
            cache = min(cache + cache_write, 180_000) if rng.random() > 0.02 else 0  # compaction resets it
            outp = rng.randint(20, 4000)
            c_in, c_out = inp * pin / 1e6, outp * pout / 1e6
            c_cr, c_cw = cache_read * pin * 0.1 / 1e6, cache_write * pin * 1.25 / 1e6
            usage = {
                "input": inp,
                "output": outp,
                "cacheRead": cache_read,
                "cacheWrite": cache_write,
                "totalTokens": inp + outp + cache_read + cache_write,
                "cost": {
                    "input": c_in,
                    "output": c_out,
                    "cacheRead": c_cr,
                    "cacheWrite": c_cw,
                    "total": c_in + c_out + c_cr + c_cw,
                },
            }
            msg = {
                "role": "assistant",
                "content": blocks,
                "api": api,
                "provider": provider,
                "model": model,
                "usage": usage,
                "stopReason": "toolUse" if tools else "stop",
                "timestamp": _ms(ts),
                "responseId": f"msg_{w.eid()}{w.eid()}",
                "durationMs": rng.randint(300, 90000),
            }
            line = entry("message", message=msg)
            out.append(line)
            size += len(line)
            for name in tools:
                ts += timedelta(seconds=rng.randint(0, 30))
                body = w.text(50, 1500) if rng.random() < 0.7 else w.text(2000, 20000)
                msg = {
                    "role": "toolResult",
                    "toolCallId": f"toolu_{w.eid()}",
                    "toolName": name,
                    "content": [{"type": "text", "text": body}],
                    "isError": rng.random() < 0.05,
                    "timestamp": _ms(ts),
                }
                line = entry("message", message=msg)
                out.append(line)
                size += len(line)
            if not tools:
                break
        if rng.random() < 0.02:
            provider, model, api, pin, pout = rng.choice(MODELS)
            out.append(entry("model_change", provider=provider, modelId=model))
    return out


def _session_size(rng: random.Random) -> int:
    """Bytes of one session: mostly small, a long tail of big ones (capped at 24 MB)."""
    return int(min(24e6, max(4e3, rng.lognormvariate(12.6, 1.2))))


def _ts_name(ts: datetime) -> str:
    return _iso(ts).replace(":", "-")


def _end_dt(end: date) -> datetime:
    return datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)


def _day_of_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


FIELDS = ("calls", "failed", "input", "output", "cacheRead", "cacheWrite", "cost")


class Truth:
    """The independent count of the calls written, kept while writing (``TRUTH.json``).

    A call is an assistant message whose provider is not ``openclaw``, or an ``openclaw:prompt-error``
    custom entry (no runId in this generator: each is one failed call, zero tokens, zero cost). Each
    generated call is counted once, however many places hold it (leftover file + database, archive row +
    published copy, cold + restored): sessions are counted when generated, never when copied. Its day is the
    UTC day of ``message.timestamp`` (ms) when present, else of the entry's ISO ``timestamp``."""

    def __init__(self, doc: dict | None = None):
        self.doc = doc or {
            "days": {},
            "totals": dict.fromkeys(FIELDS, 0),
            "sessions": {"jsonl": 0, "db": 0},
            "id_collisions": {"same_session": 0, "cross_session": 0},
            "adds": [],
        }
        self._ids: dict[
            tuple[str, str], str
        ] = {}  # (agent, entry id) -> session id (this process's sessions)
        self.max_ms = self.doc.get("max_call_ms", 0)

    def add_session(self, agent: str, sid: str, lines: list[str], where: str) -> None:
        self.doc["sessions"][where] += 1
        days, totals, seen = self.doc["days"], self.doc["totals"], set()
        for line in lines:
            if '"assistant"' not in line and PROMPT_ERROR not in line:
                continue
            e = json.loads(line)
            if e.get("type") == "message":
                m = e.get("message") or {}
                if m.get("role") != "assistant" or m.get("provider") == "openclaw":
                    continue
                u = m.get("usage") or {}
                ms = m.get("timestamp")
                row = {
                    "input": u.get("input", 0),
                    "output": u.get("output", 0),
                    "cacheRead": u.get("cacheRead", 0),
                    "cacheWrite": u.get("cacheWrite", 0),
                    "cost": (u.get("cost") or {}).get("total", 0),
                    "failed": int(m.get("stopReason") in ("error", "aborted")),
                }
            elif e.get("type") == "custom" and e.get("customType") == PROMPT_ERROR:
                ms = (e.get("data") or {}).get("timestamp")
                row = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "cost": 0.0, "failed": 1}
            else:
                continue
            eid = e.get("id")
            if eid in seen:  # the same entry id twice in one session: one call_id, counted once
                self.doc["id_collisions"]["same_session"] += 1
                continue
            seen.add(eid)
            other = self._ids.setdefault((agent, eid), sid)
            if other != sid:  # two different calls sharing an agent's entry id (8 hex digits): both counted
                self.doc["id_collisions"]["cross_session"] += 1
            if ms is None:
                ms = int(datetime.fromisoformat(e["timestamp"]).timestamp() * 1000)
            self.max_ms = max(self.max_ms, ms)
            day = days.setdefault(_day_of_ms(ms), dict.fromkeys(FIELDS, 0))
            row["calls"] = 1
            for k in FIELDS:
                day[k] += row[k]
                totals[k] += row[k]

    def write(self, home: Path, **meta) -> None:
        self.doc.update(meta)
        self.doc["max_call_ms"] = self.max_ms
        self.doc["days"] = dict(sorted(self.doc["days"].items()))
        (home / TRUTH).write_text(json.dumps(self.doc, indent=1) + "\n")


def _openclaw_db():
    """``mc_pipeline_tests.openclaw_db`` (the builders of the real 2026.8+ schema), imported from the repo."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from mc_pipeline_tests import openclaw_db

    return openclaw_db


@contextmanager
def _seeded_generations(odb, seed: int):
    """AgentDb draws archive/watermark generations from uuid4: draw them from the seed instead
    (deterministic)."""
    g = random.Random(seed ^ 0x6E6E)
    old = odb.generation
    odb.generation = lambda: f"{g.getrandbits(128):032x}"
    try:
        yield
    finally:
        odb.generation = old


#: What happens to a database session (share of them), after it is written to ``transcript_events``.
DB_FATES = (
    ("db_archived_zstd", 0.05),  # archived (reset/deleted), zstd, published as a .zst file in sessions/
    ("db_archived_identity", 0.02),  # archived, identity encoding, not published
    ("db_cold_file", 0.015),
    ("db_cold_sqlite", 0.015),
    ("db_cold_restored", 0.01),  # cold, and restored to the hot table as well
    ("db_leftover_jsonl", 0.01),  # a leftover <sid>.jsonl with the first half of its lines
)
DB_TRIGGERS = ("main", "telegram:direct:synthetic-peer", "cron:job-1", "cron:job-2", "hook")


class Upgraded:
    """Writes the sessions of an upgraded home that start at or after ``cut`` into the agent databases."""

    def __init__(self, home: Path, seed: int, cut: datetime, truth: Truth, archives: bool):
        self.odb = _openclaw_db()
        self.home, self.seed, self.cut, self.truth, self.archives = home, seed, cut, truth, archives
        self.rng: random.Random | None = None  # the session generator's (set by write_sessions)
        self.dbs: dict[str, object] = {}
        self.state = None
        # the first database sessions of a full generation take each fate once, so every case is there
        self.forced = [f for f, _ in DB_FATES] if archives else []

    def __enter__(self) -> Self:
        self._gens = _seeded_generations(self.odb, self.seed)
        self._gens.__enter__()
        self.state = self.odb.StateDb(self.home)
        jobs = {r[0] for r in self.state.con.execute("SELECT job_id FROM cron_jobs")}
        for job, name in CRON_JOBS:
            if job not in jobs:
                self.state.cron_job(job, name, agent="ops")
        return self

    def __exit__(self, *exc) -> None:
        for db in self.dbs.values():
            db.close()
        self.state.close()
        self._gens.__exit__(*exc)

    def db(self, agent: str):
        db = self.dbs.get(agent)
        if db is None:
            path = self.home / "agents" / agent / "agent" / "openclaw-agent.sqlite"
            fresh = not path.exists()
            db = self.dbs[agent] = self.odb.AgentDb(self.home, agent)
            if fresh:
                db.set_auth(
                    {
                        "anthropic:default": {
                            "type": "api_key" if agent != "main" else "oauth",
                            "provider": "anthropic",
                        }
                    }
                )
            rel = f"agents/{agent}/agent/openclaw-agent.sqlite"
            if not self.state.con.execute(
                "SELECT 1 FROM agent_databases WHERE agent_id = ? AND path = ?", (agent, rel)
            ).fetchone():
                self.state.register(agent, rel)
        return db

    def write(self, agent: str, sid: str, lines: list[str], start: datetime, end_dt: datetime) -> str:
        """One session into ``agent``'s database; returns its fate."""
        rng = self.rng
        db = self.db(agent)
        trigger = rng.choice(DB_TRIGGERS)
        channel = chat_type = None
        if trigger.startswith("cron:"):
            key, via = trigger, "cron"
        elif trigger == "hook":
            key, via = f"hook:{sid[:8]}", "internal"
        else:
            key, via = f"agent:{agent}:{trigger}", "channel" if "telegram" in trigger else "operator"
            if "telegram" in trigger:
                channel, chat_type = "telegram", "direct"
        db.add_session(sid, lines, key=key, channel=channel, chat_type=chat_type, created_via=via)
        if not self.archives:
            return "db_hot"
        if self.forced:
            fate = self.forced.pop(0)
        else:
            r, fate = rng.random(), "db_hot"
            for name, share in DB_FATES:
                if r < share:
                    fate = name
                    break
                r -= share
        when = min(start + timedelta(days=rng.randint(1, 5)), end_dt)
        if fate == "db_archived_zstd":
            db.archive(sid, reason=rng.choice(("reset", "deleted")), encoding="zstd", when=when, publish=True)
        elif fate == "db_archived_identity":
            db.archive(
                sid, reason=rng.choice(("reset", "deleted")), encoding="identity", when=when, publish=False
            )
        elif fate in ("db_cold_file", "db_cold_sqlite"):
            db.cold(sid, storage=fate.rsplit("_", 1)[1])
        elif fate == "db_cold_restored":
            db.cold(sid, storage=rng.choice(("file", "sqlite")), restore=True)
        elif fate == "db_leftover_jsonl":
            half = lines[: len(lines) // 2]
            (self.home / "agents" / agent / "sessions" / f"{sid}.jsonl").write_bytes(
                ("\n".join(half) + "\n").encode()
            )
        return fate


def write_sessions(
    home: Path,
    size_bytes: int,
    seed: int,
    end: date,
    days: int,
    prefix: str = "",
    archives: bool = True,
    upgraded: Upgraded | None = None,
) -> dict:
    """Write sessions until about ``size_bytes`` are on disk; returns what was written. With ``upgraded``,
    sessions starting at or after its cut go into the agent databases, and every session into its truth."""
    rng = random.Random(seed)
    w = Writer(rng, _text_pool(random.Random(seed ^ 0x5EED)))
    end_dt = _end_dt(end)
    written = files = 0
    index: dict[str, dict[str, dict]] = {a: {} for a in AGENTS}
    stats = {"live": 0, "topic": 0, "reset": 0, "deleted": 0, "bak": 0}
    if upgraded is not None:
        upgraded.rng = rng
        stats.update({"db_hot": 0, **{f: 0 for f, _ in DB_FATES}})
    while written < size_bytes:
        agent = rng.choice(AGENTS)
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        start = end_dt - timedelta(seconds=rng.randint(3600 * 3, days * 86400))
        target = min(_session_size(rng), max(4000, size_bytes - written))
        lines = session_lines(w, sid, start, target)
        data = ("\n".join(lines) + "\n").encode()
        folder = home / "agents" / agent / "sessions"
        folder.mkdir(parents=True, exist_ok=True)
        if upgraded is not None:
            in_db = start >= upgraded.cut
            upgraded.truth.add_session(agent, sid, lines, "db" if in_db else "jsonl")
            if in_db:
                stats[upgraded.write(agent, sid, lines, start, end_dt)] += 1
                written += len(data)
                continue
        r = rng.random() if archives else 1.0
        later = start + timedelta(days=rng.randint(1, 5))
        if r < 0.12:
            name, kind = f"{sid}.jsonl.reset.{_ts_name(min(later, end_dt))}", "reset"
        elif r < 0.16:
            name, kind = f"{sid}.jsonl.deleted.{_ts_name(min(later, end_dt))}", "deleted"
        elif r < 0.22:
            name, kind = f"{sid}-topic-{rng.randint(1, 9999)}.jsonl", "topic"
        else:
            name, kind = f"{sid}.jsonl", "live"
            trigger = rng.choice(("main", "telegram:direct:synthetic-peer", "cron:job-1", "hook:" + sid[:8]))
            key = f"agent:{agent}:{trigger}" if not trigger.startswith(("cron", "hook")) else f"{trigger}"
            index[agent][f"{key}:{prefix}{len(index[agent])}"] = {"sessionId": sid, "updatedAt": _ms(end_dt)}
        (folder / name).write_bytes(data)
        stats[kind] += 1
        written += len(data)
        files += 1
        if kind == "live" and archives and rng.random() < 0.01:  # a backup copy: never counted
            (folder / f"{sid}.jsonl.bak.{_ts_name(later)}").write_bytes(data)
            stats["bak"] += 1
    for agent, entries in index.items():
        folder = home / "agents" / agent / "sessions"
        folder.mkdir(parents=True, exist_ok=True)
        idx_file = folder / "sessions.json"
        doc = json.loads(idx_file.read_text()) if idx_file.exists() else {}
        doc.update(entries)
        idx_file.write_text(json.dumps(doc))
        auth = home / "agents" / agent / "agent" / "auth-profiles.json"
        if not auth.exists():
            auth.parent.mkdir(parents=True, exist_ok=True)
            auth.write_text(
                json.dumps(
                    {
                        "version": 1,
                        "profiles": {
                            "anthropic:default": {
                                "type": "api_key" if agent != "main" else "oauth",
                                "provider": "anthropic",
                            }
                        },
                    }
                )
            )
    return {"bytes": written, "files": files, **stats}


def default_days(end: date, layout: str = "jsonl") -> int:
    """Days of history: 120, or for an upgraded home enough that ~30% of sessions start before the upgrade."""
    after = (_end_dt(end) - UPGRADE_AT).total_seconds() / 86400
    if layout == "jsonl" or after <= 0:
        return 120
    return math.ceil(after / (1 - BEFORE_SHARE))


def upgrade_cut(end: date, days: int) -> datetime:
    """The upgrade time: 2026-08-01 when the range of session starts straddles it, else 30% into the range."""
    hi = _end_dt(end) - timedelta(hours=3)
    lo = _end_dt(end) - timedelta(days=days)
    return UPGRADE_AT if lo < UPGRADE_AT < hi else lo + (hi - lo) * BEFORE_SHARE


def _truth_doc(out: Path) -> dict | None:
    return json.loads((out / TRUTH).read_text()) if (out / TRUTH).exists() else None


def generate(
    out: Path,
    size_mb: float,
    seed: int = 42,
    end: date = date(2026, 10, 31),
    days: int | None = None,
    layout: str = "jsonl",
) -> dict:
    if layout not in LAYOUTS:
        raise SystemExit(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")
    if (out / "agents").exists() and not (out / MARKER).exists():
        raise SystemExit(f"{out} looks like a real OpenClaw home (no {MARKER}); refusing to write into it")
    if layout == "upgraded" and any((out / x).exists() for x in ("agents", "state", TRUTH)):
        raise SystemExit(f"{out} already holds a home; an upgraded home is generated into an empty folder")
    days = days or default_days(end, layout)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(
        "SYNTHETIC OpenClaw home generated by mc_pipeline scripts/synth_home.py for benchmarks.\n"
        "Not real usage. Never use it as OPENCLAW_HOME for real reports.\n"
    )
    if layout == "jsonl":
        return write_sessions(out, int(size_mb * 1e6), seed, end, days)
    cut, truth = upgrade_cut(end, days), Truth()
    with Upgraded(out, seed, cut, truth, archives=True) as up:
        stats = write_sessions(out, int(size_mb * 1e6), seed, end, days, upgraded=up)
    truth.write(
        out,
        synthetic=True,
        layout="upgraded",
        seed=seed,
        end_date=end.isoformat(),
        span_days=days,
        upgrade_at=_iso(cut),
    )
    return {
        "layout": "upgraded",
        "days": days,
        "upgrade_at": _iso(cut),
        **stats,
        "truth": truth.doc["totals"],
    }


def add_sessions(
    out: Path,
    add_mb: float,
    seed: int,
    end: date = date(2026, 10, 31),
    days: int = 2,
    layout: str | None = None,
) -> dict:
    """New live sessions (about ``add_mb``) in the last ``days`` days: what an hour or a day adds. In an
    upgraded home (its ``TRUTH.json`` says so) they go into the agent databases and ``TRUTH.json`` is
    updated."""
    if not (out / MARKER).exists():
        raise SystemExit(f"{out} is not a synthetic home (no {MARKER})")
    doc = _truth_doc(out)
    found = doc.get("layout", "jsonl") if doc else "jsonl"
    if layout and layout != found:
        raise SystemExit(f"{out} has the {found} layout, not {layout}")
    if found == "jsonl":
        return write_sessions(out, int(add_mb * 1e6), seed, end, days, prefix=f"s{seed}-", archives=False)
    used = [doc.get("seed"), *(a["seed"] for a in doc.get("adds", []))]
    if seed in used:  # the same seed would write the same session ids again
        raise SystemExit(f"seed {seed} was already used for {out} (used: {used}); pick another --add-seed")
    truth = Truth(doc)
    with Upgraded(out, seed, datetime.min.replace(tzinfo=UTC), truth, archives=False) as up:
        stats = write_sessions(
            out, int(add_mb * 1e6), seed, end, days, prefix=f"s{seed}-", archives=False, upgraded=up
        )
    truth.doc["adds"].append(
        {"seed": seed, "mb": add_mb, "end_date": end.isoformat(), "days": days, "sessions": stats["db_hot"]}
    )
    truth.write(out)
    return {"layout": "upgraded", **stats, "truth": truth.doc["totals"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/mc-synth-home"))
    p.add_argument("--size-mb", type=float, default=1024.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--end-date", type=date.fromisoformat, default=date(2026, 10, 31))
    p.add_argument(
        "--days",
        type=int,
        help="days of history before --end-date (default 120; for --layout "
        "upgraded, enough that ~30%% of sessions start before the 2026-08-01 upgrade)",
    )
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        help="jsonl (default): JSONL files only; upgraded: a home upgraded "
        "to OpenClaw 2026.8+ (later sessions in SQLite) with TRUTH.json; with --add-mb, the home's own",
    )
    p.add_argument(
        "--add-mb", type=float, help="add this many MB of new sessions to an existing synthetic home"
    )
    p.add_argument("--add-seed", type=int, default=1)
    args = p.parse_args(argv)
    if any(part == "data" for part in args.out.resolve().parts):
        print("refusing to write a synthetic home under a data/ folder", file=sys.stderr)
        return 2
    if args.add_mb:
        stats = add_sessions(args.out, args.add_mb, args.add_seed, args.end_date, layout=args.layout)
    else:
        stats = generate(
            args.out, args.size_mb, args.seed, args.end_date, args.days, layout=args.layout or "jsonl"
        )
    print(json.dumps({"home": str(args.out), **stats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
