#!/usr/bin/env python3
"""Generate a clearly SYNTHETIC OpenClaw home of a given size, in the real on-disk format (REFERENCE §1).

For benchmarks only: never point ``make run`` at it, never write it under ``data/``. Every session's
``cwd`` is ``/synthetic/mc-bench``, every text is drawn from a made-up word list, and the home root
holds a ``SYNTHETIC.txt`` saying so. Deterministic for a given ``--seed`` and ``--end-date``.

What is in it: several agents, each with ``sessions/*.jsonl`` (session v3 header, user messages as
strings or blocks, assistant calls with usage and recorded cost, text/thinking/toolCall blocks,
toolResult lines of realistic size, model and thinking-level changes, gateway delivery-mirror rows,
failed calls with real error-message shapes, prompt-error custom entries), ``-topic-`` threads,
``.reset.<ts>`` and ``.deleted.<ts>`` archives, a few ``.bak`` copies (never counted), ``sessions.json``
and ``auth-profiles.json``.

    python scripts/synth_home.py --out /tmp/mc-synth-home --size-mb 1024
    python scripts/synth_home.py --out /tmp/mc-synth-home --add-mb 10 --add-seed 2   # ~1% new sessions
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

MARKER = "SYNTHETIC.txt"
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
    '429 {"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your rate limit"}}',
    '529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    "500 Internal Server Error",
    "fetch failed",
    "You have hit your ChatGPT usage limit (plus plan). Try again in ~12 min.",
)
WORDS = (
    "synthetic alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu function return value "
    "config build test deploy refactor module parser schema table column index query cache token"
).split()


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
                    "role": "assistant", "content": [], "api": api, "provider": provider, "model": model,
                    "usage": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0,
                              "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}},
                    "stopReason": "error", "timestamp": _ms(ts), "errorMessage": rng.choice(ERRORS),
                }
                line = entry("message", message=msg)
                out.append(line)
                size += len(line)
                continue
            if r < 0.04:  # the gateway's own bookkeeping row (not a model call)
                msg = {
                    "role": "assistant", "content": [{"type": "text", "text": w.text(20, 200)}], "api": "openclaw",
                    "provider": "openclaw", "model": "delivery-mirror",
                    "usage": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0,
                              "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}},
                    "stopReason": "stop", "timestamp": _ms(ts),
                }
                out.append(entry("message", message=msg))
                continue
            if r < 0.045:
                line = entry("custom", customType="openclaw:prompt-error",
                             data={"provider": provider, "model": model, "api": api, "error": rng.choice(ERRORS)})
                out.append(line)
                continue
            blocks: list[dict] = []
            if rng.random() < 0.4:
                blocks.append({"type": "thinking", "thinking": w.text(50, 3000), "thinkingSignature": w.eid() * 8})
            if rng.random() < 0.7:
                blocks.append({"type": "text", "text": w.text(10, 1200)})
            tools = [rng.choice(TOOLS) for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 3)))]
            for name in tools:
                blocks.append({"type": "toolCall", "id": f"toolu_{w.eid()}{w.eid()}", "name": name,
                               "arguments": {"path": f"{CWD}/src/{w.text(3, 12).replace(' ', '_')}.py",
                                             "command": w.text(5, 200)}})
            inp = rng.randint(1, 4000)
            cache_write = rng.randint(0, 3000)
            cache_read = cache
            cache = min(cache + cache_write, 180_000) if rng.random() > 0.02 else 0  # compaction resets it
            outp = rng.randint(20, 4000)
            c_in, c_out = inp * pin / 1e6, outp * pout / 1e6
            c_cr, c_cw = cache_read * pin * 0.1 / 1e6, cache_write * pin * 1.25 / 1e6
            usage = {"input": inp, "output": outp, "cacheRead": cache_read, "cacheWrite": cache_write,
                     "totalTokens": inp + outp + cache_read + cache_write,
                     "cost": {"input": c_in, "output": c_out, "cacheRead": c_cr, "cacheWrite": c_cw,
                              "total": c_in + c_out + c_cr + c_cw}}
            msg = {"role": "assistant", "content": blocks, "api": api, "provider": provider, "model": model,
                   "usage": usage, "stopReason": "toolUse" if tools else "stop", "timestamp": _ms(ts),
                   "responseId": f"msg_{w.eid()}{w.eid()}", "durationMs": rng.randint(300, 90000)}
            line = entry("message", message=msg)
            out.append(line)
            size += len(line)
            for name in tools:
                ts += timedelta(seconds=rng.randint(0, 30))
                body = w.text(50, 1500) if rng.random() < 0.7 else w.text(2000, 20000)
                msg = {"role": "toolResult", "toolCallId": f"toolu_{w.eid()}", "toolName": name,
                       "content": [{"type": "text", "text": body}], "isError": rng.random() < 0.05,
                       "timestamp": _ms(ts)}
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


def write_sessions(
    home: Path, size_bytes: int, seed: int, end: date, days: int, prefix: str = "", archives: bool = True
) -> dict:
    """Write sessions until about ``size_bytes`` are on disk; returns what was written."""
    rng = random.Random(seed)
    w = Writer(rng, _text_pool(random.Random(seed ^ 0x5EED)))
    end_dt = datetime(end.year, end.month, end.day, tzinfo=timezone.utc) + timedelta(days=1)
    written = files = 0
    index: dict[str, dict[str, dict]] = {a: {} for a in AGENTS}
    stats = {"live": 0, "topic": 0, "reset": 0, "deleted": 0, "bak": 0}
    while written < size_bytes:
        agent = rng.choice(AGENTS)
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        start = end_dt - timedelta(seconds=rng.randint(3600 * 3, days * 86400))
        target = min(_session_size(rng), max(4000, size_bytes - written))
        lines = session_lines(w, sid, start, target)
        data = ("\n".join(lines) + "\n").encode()
        folder = home / "agents" / agent / "sessions"
        folder.mkdir(parents=True, exist_ok=True)
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
            auth.write_text(json.dumps({"version": 1, "profiles": {
                "anthropic:default": {"type": "api_key" if agent != "main" else "oauth", "provider": "anthropic"}}}))
    return {"bytes": written, "files": files, **stats}


def generate(out: Path, size_mb: float, seed: int = 42, end: date = date(2026, 10, 31), days: int = 120) -> dict:
    if (out / "agents").exists() and not (out / MARKER).exists():
        raise SystemExit(f"{out} looks like a real OpenClaw home (no {MARKER}); refusing to write into it")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(
        "SYNTHETIC OpenClaw home generated by mc_pipeline scripts/synth_home.py for benchmarks.\n"
        "Not real usage. Never use it as OPENCLAW_HOME for real reports.\n"
    )
    return write_sessions(out, int(size_mb * 1e6), seed, end, days)


def add_sessions(out: Path, add_mb: float, seed: int, end: date = date(2026, 10, 31), days: int = 2) -> dict:
    """New live sessions (about ``add_mb``) in the last ``days`` days: what an hour or a day adds."""
    if not (out / MARKER).exists():
        raise SystemExit(f"{out} is not a synthetic home (no {MARKER})")
    return write_sessions(out, int(add_mb * 1e6), seed, end, days, prefix=f"s{seed}-", archives=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/mc-synth-home"))
    p.add_argument("--size-mb", type=float, default=1024.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--end-date", type=date.fromisoformat, default=date(2026, 10, 31))
    p.add_argument("--days", type=int, default=120, help="days of history before --end-date")
    p.add_argument("--add-mb", type=float, help="add this many MB of new sessions to an existing synthetic home")
    p.add_argument("--add-seed", type=int, default=1)
    args = p.parse_args(argv)
    if any(part == "data" for part in args.out.resolve().parts):
        print("refusing to write a synthetic home under a data/ folder", file=sys.stderr)
        return 2
    if args.add_mb:
        stats = add_sessions(args.out, args.add_mb, args.add_seed, args.end_date)
    else:
        stats = generate(args.out, args.size_mb, args.seed, args.end_date, args.days)
    print(json.dumps({"home": str(args.out), **stats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
