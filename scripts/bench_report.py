#!/usr/bin/env python3
"""How fast ``python -m mc_pipeline report`` answers over a year of history (issue 15: under a second).

1. A data folder with a year of synthetic per-day aggregates, written with the project's own ``Tables`` and
   schemas (``usage_daily``, ``sessions_daily``, ``health_daily``: their all-days copies, and the day files
   of those ``Tables`` keeps per day),
   ``api_calls`` and the ``usage-data.json`` the dashboard builder makes from them (so the report knows the
   data's zone). Made in a child process, in a temporary folder (``--keep DIR`` to keep it there).
2. Each case run as a whole process (``python -m mc_pipeline report VIEW ...``, output to /dev/null),
   ``--repeat`` times; wall time (``time.perf_counter`` around the child) and the child's peak RSS
   (``os.wait4``). Printed as a table: min, median, max; ``--json FILE`` writes the numbers.

    python scripts/bench_report.py                         # 365 days, ~60 usage rows and ~40 sessions a day
    python scripts/bench_report.py --days 730 --rows-per-day 200 --repeat 7

Standard library only in this process (Polars runs in the children).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    ["daily"],
    ["weekly"],
    ["monthly"],
    ["session"],
    ["model"],
    ["provider"],
    ["task"],
    ["agent"],
    ["cron"],
    ["health"],
    ["daily", "--json"],
    ["model", "--csv"],
    ["monthly", "--by", "task", "--breakdown"],
    ["weekly", "--by", "model"],
    ["session", "--limit", "0", "--csv"],
    ["daily", "--since", "{month_ago}", "--agent", "coder", "--model", "sonnet"],
    ["daily", "--breakdown"],  # a big table: a year of days with their models under each (~3,000 lines)
]
#: Cases whose answer is a table of thousands of lines: timed and shown, but not the "a report" target.
BIG = {"daily --breakdown"}


def write_data(data: Path, days: int, rows_per_day: int, sessions_per_day: int, seed: int) -> None:
    """The synthetic year, with the project's writers (runs in a child process)."""
    import random
    import uuid
    from datetime import datetime, timedelta

    import polars as pl

    from mc_pipeline.calls.daily import DailyTables
    from mc_pipeline.reporting.dashboard import build_usage_document
    from mc_pipeline.tables import storage
    from mc_pipeline.tables.schemas import (
        API_CALLS,
        API_HEALTH,
        ERROR_CLASSES,
        SESSIONS_DAILY,
        USAGE_DAILY,
        conform,
    )
    from mc_pipeline.tables.store import DAY_TABLES, Tables

    rnd = random.Random(seed)
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    agents = ["main", "coder", "ops", "research"]
    models = [
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-5"),
        ("anthropic", "claude-haiku-4-5"),
        ("openai", "gpt-5.1-codex"),
        ("openai", "gpt-5-mini"),
        ("google", "gemini-2.5-pro"),
        ("openrouter", "deepseek-v3.2"),
    ]
    tasks = ["coding", "research", "testing", "design", "planning", "automation", "general"]
    triggers = [
        ("main", None, None),
        ("direct", "telegram", None),
        ("cron", None, "nightly-report"),
        ("cron", None, "inbox-digest"),
        ("heartbeat", None, None),
        ("subagent", None, None),
    ]
    usage, sessions, health, api = [], [], [], []
    for i in range(days):
        day = first + timedelta(days=i)
        seen = set()
        for _ in range(rows_per_day):
            agent, (provider, model), task, (trigger, channel, job) = (
                rnd.choice(agents),
                rnd.choice(models),
                rnd.choice(tasks),
                rnd.choice(triggers),
            )
            billing = "subscription" if provider == "anthropic" and agent == "main" else "api"
            key = (agent, provider, model, task, billing, trigger, channel, job)
            if key in seen:
                continue
            seen.add(key)
            calls = rnd.randint(1, 60)
            inp, out, cr, cw = (
                calls * rnd.randint(200, 3000),
                calls * rnd.randint(50, 800),
                calls * rnd.randint(0, 20000),
                calls * rnd.randint(0, 2000),
            )
            cost = round((inp * 3 + out * 15 + cr * 0.3 + cw * 3.75) / 1e6, 6)
            unpriced = calls if provider == "openrouter" and rnd.random() < 0.3 else 0
            usage.append(
                {
                    "day": day,
                    "agent_id": agent,
                    "provider": provider,
                    "model": model,
                    "task_type": task,
                    "billing": billing,
                    "trigger": trigger,
                    "channel": channel,
                    "cron_job_id": job,
                    "cron_job_name": job.replace("-", " ").title() if job else None,
                    "calls": calls,
                    "failed_calls": rnd.randint(0, max(0, calls // 10)),
                    "input_tokens": inp,
                    "output_tokens": out,
                    "cache_read_tokens": cr,
                    "cache_write_tokens": cw,
                    "total_tokens": inp + out + cr + cw,
                    "thinking_tokens": out // 3,
                    "tool_calls": calls,
                    "cost_usd": None if unpriced else cost,
                    "unpriced_calls": unpriced,
                    "calculated_cost_usd": None if unpriced else cost,
                    "calculated_calls": 0 if unpriced else calls,
                    "api_cost_usd": cost if billing == "api" and not unpriced else 0.0,
                    "subscription_value_usd": cost if billing == "subscription" else 0.0,
                }
            )
        for _ in range(sessions_per_day):
            agent, (provider, model), (trigger, channel, job) = (
                rnd.choice(agents),
                rnd.choice(models),
                rnd.choice(triggers),
            )
            start = datetime(day.year, day.month, day.day, rnd.randint(0, 22), rnd.randint(0, 59), tzinfo=UTC)
            calls = rnd.randint(1, 80)
            inp, out = calls * rnd.randint(200, 3000), calls * rnd.randint(50, 800)
            sessions.append(
                {
                    "day": day,
                    "agent_id": agent,
                    "session_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                    "provider": provider,
                    "model": model,
                    "trigger": trigger,
                    "channel": channel,
                    "cron_job_id": job,
                    "first_call": start,
                    "last_call": start + timedelta(minutes=calls),
                    "prompt_tokens": inp,
                    "calls": calls,
                    "input_tokens": inp,
                    "output_tokens": out,
                    "cache_read_tokens": 0,
                    "cache_write_tokens": 0,
                    "total_tokens": inp + out,
                    "cost_usd": round((inp * 3 + out * 15) / 1e6, 6),
                    "unpriced_calls": 0,
                    "failed_calls": 0,
                }
            )
        for provider in sorted({p for p, _ in models}):
            calls = rnd.randint(50, 900)
            errs = {c: rnd.randint(0, 3) for c in ERROR_CLASSES if c != "aborted"}
            failed = sum(errs.values())
            health.append(
                {
                    "kind": "provider",
                    "name": provider,
                    "day": day,
                    "calls": calls,
                    "ok_calls": calls - failed,
                    "error_calls": failed,
                    "aborted_calls": 0,
                    "unknown_status_calls": 0,
                    **{f"errors_{c}": n for c, n in errs.items()},
                    "errors_aborted": 0,
                    "rate_limit_hits": errs["rate_limit"],
                    "server_errors_5xx": errs["server_error"] + errs["overloaded"],
                    "success_rate": (calls - failed) / calls,
                    "duration_sum_ms": calls * 2500,
                    "duration_calls": calls,
                    "avg_duration_ms": 2500.0,
                }
            )
        for _ in range(40):
            status = rnd.choice([200] * 30 + [429, 500, 503, 504])
            ts = datetime(day.year, day.month, day.day, rnd.randint(0, 23), rnd.randint(0, 59), tzinfo=UTC)
            api.append(
                {
                    "timestamp": ts,
                    "day": day,
                    "service": rnd.choice(["github", "weather", "search"]),
                    "endpoint": "/x",
                    "method": "GET",
                    "status_code": status,
                    "duration_ms": rnd.randint(20, 900),
                    "ok": status < 400,
                    "error_class": None
                    if status < 400
                    else {429: "rate_limit", 504: "timeout"}.get(status, "server_error"),
                }
            )
    t = Tables(data)
    frames = {
        "usage_daily": conform(pl.DataFrame(usage, infer_schema_length=None), USAGE_DAILY),
        "sessions_daily": conform(pl.DataFrame(sessions, infer_schema_length=None), SESSIONS_DAILY),
        "health_daily": conform(pl.DataFrame(health, infer_schema_length=None), API_HEALTH),
    }
    all_days = [first + timedelta(days=i) for i in range(days)]
    for name, frame in frames.items():
        t.replace_staged_days(name, all_days, frame)
        if name in DAY_TABLES:  # the day files a run writes too (the report reads the all-days copy)
            for (day,), part in frame.partition_by("day", as_dict=True).items():
                t.write_day(name, day, part)
    t.write("api_calls", conform(pl.DataFrame(api, infer_schema_length=None), API_CALLS))
    daily = DailyTables(frames["usage_daily"], frames["sessions_daily"], frames["health_daily"])
    doc = build_usage_document(daily, today=today, generated_at=datetime.now(UTC), timezone_name="UTC")
    storage.write_json(doc, data / "usage-data.json")
    print(
        json.dumps(
            {n: f.height for n, f in frames.items()}
            | {"api_calls": len(api), "first": str(first), "last": str(today)}
        )
    )


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, lines written) of one child process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            raise SystemExit(
                f"{' '.join(argv)} failed ({os.waitstatus_to_exitcode(status)}): {err.read().decode()}"
            )
        out.seek(0)
        return wall, usage.ru_maxrss / 1024, out.read().count(b"\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=365)
    p.add_argument(
        "--rows-per-day", type=int, default=60, help="usage_daily rows tried per day (distinct keys kept)"
    )
    p.add_argument("--sessions-per-day", type=int, default=40)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--keep", type=Path, help="write the data folder here and keep it")
    p.add_argument("--json", type=Path, help="write the numbers to this file")
    p.add_argument("--write-only", type=Path, help=argparse.SUPPRESS)  # the child that writes the data
    args = p.parse_args()
    if args.write_only:
        write_data(args.write_only, args.days, args.rows_per_day, args.sessions_per_day, args.seed)
        return 0

    with tempfile.TemporaryDirectory(prefix="mc-bench-report-") as tmp:
        data = (args.keep or Path(tmp) / "data").resolve()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "OPENCLAW_", "DAGSTER_"))}
        env.update(MC_DATA_DIR=str(data), MC_TIMEZONE="UTC", COLUMNS="160")
        start = time.perf_counter()
        made = subprocess.run(
            [
                sys.executable,
                __file__,
                "--write-only",
                str(data),
                "--days",
                str(args.days),
                "--rows-per-day",
                str(args.rows_per_day),
                "--sessions-per-day",
                str(args.sessions_per_day),
                "--seed",
                str(args.seed),
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if made.returncode:
            raise SystemExit(made.stderr)
        sizes = json.loads(made.stdout.strip().splitlines()[-1])
        print(
            f"data: {data} ({sizes['first']} .. {sizes['last']}, "
            f"written in {time.perf_counter() - start:.1f} s)"
        )
        print("rows: " + ", ".join(f"{n} {v:,}" for n, v in sizes.items() if isinstance(v, int)))
        from datetime import date, timedelta

        month_ago = (date.fromisoformat(sizes["last"]) - timedelta(days=30)).isoformat()
        baselines = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("python -c 'import polars'", [sys.executable, "-c", "import polars"]),
        ]
        cases = baselines + [
            (
                "report " + " ".join(a).replace("{month_ago}", month_ago),
                [
                    sys.executable,
                    "-m",
                    "mc_pipeline",
                    "report",
                    *[x.replace("{month_ago}", month_ago) for x in a],
                ],
            )
            for a in CASES
        ]
        results = []
        print(f"\n{'case':<62} {'min s':>7} {'median s':>9} {'max s':>7} {'peak MB':>8} {'lines':>7}")
        for label, argv in cases:
            runs = [timed(argv, env) for _ in range(args.repeat)]
            walls = [r[0] for r in runs]
            row = {
                "case": label,
                "min_s": min(walls),
                "median_s": statistics.median(walls),
                "max_s": max(walls),
                "peak_rss_mb": max(r[1] for r in runs),
                "lines": runs[0][2],
            }
            results.append(row)
            print(
                f"{label:<62} {row['min_s']:>7.3f} {row['median_s']:>9.3f} {row['max_s']:>7.3f} "
                f"{row['peak_rss_mb']:>8.0f} {row['lines']:>7,}"
            )
        reports = [r for r in results if r["case"].startswith("report") and r["case"][7:] not in BIG]
        slowest = max(reports, key=lambda r: r["median_s"])
        verdict = "under" if slowest["median_s"] < 1.0 else "NOT under"
        print(
            f"\nslowest report (median, tables of thousands of lines aside): {slowest['case']} "
            f"{slowest['median_s']:.3f} s: {verdict} a second"
        )
        print(f"load average while measuring: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
        if args.json:
            args.json.write_text(
                json.dumps({"rows": sizes, "repeat": args.repeat, "results": results}, indent=2)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
