"""``python -m mc_pipeline report``: every view's figures equal the marts and usage-data.json on the same
data.

One real refresh (the whole code location, in process) of a real-format home with calls on several days
(relative to today, so the marts' windows hold them), two agents, three providers, several task types, a
cron session, failed calls (429, 529, 500, a timeout), an unpriced model, a call just after local midnight
and an interactions.db with api_calls. Then the report runs in process (its main with argv, stdout
captured) and is compared with the Parquet marts and usage-data.json the same run wrote.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from mc_pipeline.reporting import usage_report
from mc_pipeline.tables.schemas import ERROR_CLASSES
from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import homes as h

ZONE = "Europe/Berlin"
TZ = ZoneInfo(ZONE)
S1, S2, S3 = (
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333",
)
ERR_429 = '429 {"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
ERR_529 = '529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
ERR_500 = '500 {"type":"error","error":{"type":"api_error","message":"Internal server error"}}'
ERR_TIMEOUT = "Request timed out after 600000ms"
API_DDL = (
    "id INTEGER PRIMARY KEY, timestamp TEXT, service TEXT, endpoint TEXT, method TEXT, request_body TEXT,"
    " response_body TEXT, status_code INTEGER, duration_ms INTEGER"
)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), TZ)


def build_home(home: Path, today: date, now: datetime) -> None:
    d = {n: today - timedelta(days=n) for n in (1, 3, 10, 40, 60)}
    # today's calls: before now, after local midnight
    midnight = local(today, 0)
    t_today = midnight + min(timedelta(minutes=30), (now - midnight) / 2)
    sonnet = {"model": "claude-sonnet-4-5"}
    h.write_session(
        home,
        [
            h.session_line(S1, local(d[60], 9)),
            h.user(local(d[60], 9)),
            h.assistant(
                local(d[60], 12), u=h.usage(1000, 200, 5000, 300, cost=0.05), tools=("exec",), **sonnet
            ),
            h.assistant(
                local(d[40], 12), u=h.usage(2000, 400, 8000, 0, cost=0.08), tools=("web_search",), **sonnet
            ),
            h.assistant(local(d[10], 12), u=h.usage(1500, 300, 0, 100, cost=0.04), **sonnet),
            h.assistant(
                local(d[10], 12, 5), u=h.usage(10, 5), stop="aborted", **sonnet
            ),  # stopped by the user
            h.assistant(
                local(d[3], 0, 30), u=h.usage(700, 100, 300, 0, cost=0.02), tools=("exec",), **sonnet
            ),
            h.assistant(local(d[3], 12), u=h.usage(0, 0), stop="error", error=ERR_429, **sonnet),
            h.assistant(
                local(d[1], 12),
                provider="openai",
                model="gpt-5.1-codex",
                api="openai-responses",
                u=h.usage(400, 100, 0, 0, cost=0.01),
                tools=("exec",),
            ),
            h.assistant(local(d[1], 13), u=h.usage(100, 50, 0, 0, cost=1.234567), **sonnet),
        ],
        session_id=S1,
    )
    h.write_session(
        home,
        [
            h.session_line(S2, local(d[40], 9)),
            h.user(local(d[40], 9)),
            h.assistant(local(d[40], 15), model="claude-opus-4-5", u=h.usage(3000, 900, 0, 0, cost=0.3)),
            h.assistant(
                local(d[10], 15), model="claude-opus-4-5", u=h.usage(0, 0), stop="error", error=ERR_529
            ),
            h.assistant(
                local(d[3], 15), model="claude-opus-4-5", u=h.usage(0, 0), stop="error", error=ERR_500
            ),
            h.assistant(
                local(d[3], 16), model="claude-opus-4-5", u=h.usage(0, 0), stop="error", error=ERR_TIMEOUT
            ),
            h.assistant(
                local(d[1], 15),
                provider="my-llm",
                model="house-model-7",
                api="openai-completions",
                u=h.usage(700, 70),
            ),  # unpriced
            h.assistant(
                local(d[1], 16),
                model="claude-opus-4-5",
                u=h.usage(2500, 600, 1000, 0, cost=0.25),
                tools=("image",),
            ),
        ],
        agent="ops",
        session_id=S2,
    )
    h.write_session(
        home,
        [
            h.session_line(S3, local(d[3], 2)),
            h.assistant(local(d[3], 2), u=h.usage(20, 10, cost=0.001), **sonnet),
            h.assistant(t_today, u=h.usage(30, 10, cost=0.002), **sonnet),
        ],
        agent="ops",
        session_id=S3,
    )
    h.write_sessions_index(home, "ops", {"cron:nightly-report": S3, "agent:ops:main": S2})
    db = home / "data" / "interactions.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE llm_calls (id INTEGER PRIMARY KEY, timestamp TEXT, provider TEXT, model TEXT,"
        " session_id TEXT, input_tokens INTEGER, output_tokens INTEGER)"
    )
    con.execute(f"CREATE TABLE api_calls ({API_DDL})")
    for ts, service, status in [
        (local(d[1], 10), "github", 200),
        (local(d[1], 11), "github", 429),
        (local(d[3], 10), "github", 503),
        (local(d[3], 10, 5), "weather", 200),
        (local(d[40], 10), "weather", 200),
    ]:
        con.execute(
            "INSERT INTO api_calls (timestamp, service, endpoint, method, status_code, duration_ms)"
            " VALUES (?, ?, '/x', 'GET', ?, 120)",
            (h.iso(ts), service, status),
        )
    con.commit()
    con.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory, refresh):
    now = datetime.now(UTC)
    today = now.astimezone(TZ).date()
    root = tmp_path_factory.mktemp("report")
    home, out = root / "home", root / "data"
    build_home(home, today, now)
    result = refresh(home, out, timezone=ZONE)
    assert result.success
    if datetime.now(TZ).date() != today:
        pytest.skip("the day changed during the refresh")
    return {"home": home, "root": out, "today": today}


def report(data, *argv, width=250, env=None):
    out, err = io.StringIO(), io.StringIO()
    env = {
        "MC_DATA_DIR": str(data["root"]),
        "MC_TIMEZONE": ZONE,
        "OPENCLAW_HOME": str(data["home"]),
        **(env or {}),
    }
    code = usage_report.main(list(argv), env=env, out=out, err=err, width=width)
    return code, out.getvalue(), err.getvalue()


def rep(data, *argv, **kw) -> dict:
    code, out, err = report(data, *argv, "--json", **kw)
    assert code == 0, err
    return json.loads(out)


def usage_doc(data) -> dict:
    return json.loads((data["root"] / "usage-data.json").read_text())


def mart(data, name: str, window: str) -> pl.DataFrame:
    return Tables(data["root"]).read(name).filter(pl.col("window") == window)


def staged(data) -> pl.DataFrame:
    return Tables(data["root"]).staged("usage_daily")


def sums(frame: pl.DataFrame) -> dict:
    """The report's measures computed straight from mart or aggregate rows."""
    cols = {
        "cost": "cost_usd",
        "requests": "calls",
        "tokens": "total_tokens",
        "inputTokens": "input_tokens",
        "outputTokens": "output_tokens",
        "cacheReadTokens": "cache_read_tokens",
        "cacheWriteTokens": "cache_write_tokens",
        "failedRequests": "failed_calls",
        "unpricedRequests": "unpriced_calls",
    }
    return {
        k: (float(frame.get_column(c).sum() or 0.0) if k == "cost" else int(frame.get_column(c).sum() or 0))
        for k, c in cols.items()
    }


def same(a: dict, b: dict, keys=None) -> None:
    for k in keys or b:
        assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), k


def since(data, days_back: int) -> str:
    return (data["today"] - timedelta(days=days_back)).isoformat()


# -- totals equal the marts and usage-data.json --------------------------------------------------------------
def test_daily_equals_usage_daily_and_the_dashboard_days(data):
    doc = rep(data, "daily")
    daily = staged(data)
    assert [r["date"] for r in doc["rows"]] == [
        d.isoformat() for d in sorted(daily.get_column("day").unique())
    ]
    for row in doc["rows"]:
        same(row, sums(daily.filter(pl.col("day") == date.fromisoformat(row["date"]))))
    same(doc["totals"], sums(daily))
    assert doc["totals"]["requests"] == 16 and doc["totals"]["failedRequests"] == 5  # 4 errors, 1 aborted
    assert doc["totals"]["unpricedRequests"] == 1
    # the dashboard's 30 days: every day with calls has the report's figures
    by_day = {r["date"]: r for r in doc["rows"]}
    for entry in usage_doc(data)["daily"]:
        row = by_day.get(entry["date"], {"cost": 0.0, "tokens": 0, "requests": 0})
        assert (entry["cost"], entry["tokens"], entry["requests"]) == pytest.approx(
            (row["cost"], row["tokens"], row["requests"])
        )
    summary = usage_doc(data)["summary"]
    assert doc["totals"]["cost"] == pytest.approx(summary["totalCost"])
    assert doc["totals"]["requests"] == summary["totalRequests"]
    assert doc["totals"]["tokens"] == summary["totalTokens"]


@pytest.mark.parametrize(
    "view, name, keys, field",
    [
        ("model", "usage_by_model", ["provider", "model"], "models"),
        ("provider", "usage_by_provider", ["provider"], "providers"),
        ("task", "usage_by_task_type", ["task_type"], "taskTypes"),
        ("agent", "usage_by_agent", ["agent_id"], "agents"),
    ],
)
def test_keyed_views_over_30_days_equal_the_30_day_marts(data, view, name, keys, field):
    doc = rep(data, view, "--since", since(data, 29))
    m = mart(data, name, "last_30_days")
    fields = [usage_report.KEYS[k].field for k in usage_report.VIEW_KEYS[view]]
    assert len(doc["rows"]) == m.height > 1
    for row, r in zip(doc["rows"], m.iter_rows(named=True)):  # same rows, same order (cost desc)
        assert [row[f] for f in fields] == [r[k] for k in keys]
        same(row, sums(pl.DataFrame([r])))
    same(doc["totals"], sums(m))
    # usage-data.json's lists are the same 30 days
    listed = {e["name"]: e for e in usage_doc(data)[field]}
    last = fields[-1]
    for row in doc["rows"]:
        e = listed[row[last]]
        same(
            row,
            {
                "cost": e["cost"],
                "requests": e["requests"],
                "tokens": e["tokens"],
                "inputTokens": e["inputTokens"],
                "cacheReadTokens": e["cacheReadTokens"],
            },
        )


def test_windows_equal_the_dashboard_summary(data):
    summary, today = usage_doc(data)["summary"], data["today"]
    month = rep(data, "monthly", "--since", since(data, 29))  # "the month" of the page: the last 30 days
    assert month["totals"]["cost"] == pytest.approx(summary["monthTotal"])
    assert month["totals"]["cost"] == pytest.approx(
        sums(mart(data, "usage_by_provider", "last_30_days"))["cost"]
    )
    mtd = rep(data, "monthly", "--since", today.replace(day=1).strftime("%Y%m%d"))
    assert mtd["totals"]["cost"] == pytest.approx(summary["monthToDate"])
    assert [r["month"] for r in mtd["rows"]] == [today.strftime("%Y-%m")]
    week = rep(data, "weekly", "--since", since(data, 6), "--until", today.isoformat())
    assert week["totals"]["cost"] == pytest.approx(summary["weekTotal"])
    assert week["totals"]["requests"] == summary["weekRequests"]
    day = rep(data, "daily", "--since", today.isoformat(), "--until", today.isoformat())
    assert day["totals"]["cost"] == pytest.approx(summary["todayCost"]) and day["totals"]["requests"] == 1
    weeks = rep(data, "weekly")
    assert all(len(r["week"]) == 8 and r["week"][4:6] == "-W" for r in weeks["rows"])
    same(weeks["totals"], sums(staged(data)))


def test_session_view_equals_the_session_mart_and_sessions_list(data):
    doc = rep(data, "session", "--since", since(data, 29))
    m = mart(data, "usage_by_session", "last_30_days")
    assert [(r["session"], r["agent"]) for r in doc["rows"]] == m.select("session_id", "agent_id").rows()
    for row, r in zip(doc["rows"], m.iter_rows(named=True)):
        same(row, sums(pl.DataFrame([r])))
        assert (row["provider"], row["model"]) == (r["provider"], r["model"])  # the session's main model
        assert row["lastCall"] == usage_report._json_value(r["last_call"])
    listed = {s["id"]: s for s in usage_doc(data)["sessions"]}
    for row in doc["rows"]:
        assert (row["cost"], row["requests"], row["tokens"]) == pytest.approx(
            (
                listed[row["session"]]["totalCost"],
                listed[row["session"]]["requests"],
                listed[row["session"]]["tokens"],
            )
        )
    same(doc["totals"], sums(m))


def test_cron_view_equals_the_cron_jobs(data):
    doc = rep(data, "cron", "--since", since(data, 29))
    jobs = usage_doc(data)["cronJobs"]
    assert [(r["cronJob"], r["requests"]) for r in doc["rows"]] == [(j["id"], j["requests"]) for j in jobs]
    assert [r["cronJob"] for r in doc["rows"]] == ["nightly-report"]
    assert doc["rows"][0]["cost"] == pytest.approx(jobs[0]["cost"])
    triggers = mart(data, "usage_by_trigger", "last_30_days").filter(pl.col("trigger") == "cron")
    same(doc["totals"], sums(triggers))
    code, text, _ = report(data, "cron")
    assert "not started by cron" in text


def test_filters_equal_the_filtered_sums(data):
    daily = staged(data)
    cases = [
        (["--agent", "ops"], pl.col("agent_id") == "ops"),
        (["--provider", "anthropic,openai"], pl.col("provider").is_in(["anthropic", "openai"])),
        (["--model", "SONNET"], pl.col("model").str.contains("sonnet")),
        (["--task", "coding"], pl.col("task_type") == "coding"),
        (
            ["--agent", "main", "--model", "sonnet,codex", "--since", since(data, 10)],
            (pl.col("agent_id") == "main")
            & pl.col("model").str.contains("sonnet|codex")
            & (pl.col("day") >= data["today"] - timedelta(days=10)),
        ),
    ]
    for argv, expr in cases:
        expected = sums(daily.filter(expr))
        assert expected["requests"] > 0, argv
        for view in ("daily", "model", "agent", "task"):
            doc = rep(data, view, *argv)
            same(doc["totals"], expected)
            assert sum(r["requests"] for r in doc["rows"]) == expected["requests"]
    doc = rep(data, "agent", "--agent", "ops")
    assert doc["filters"]["agent"] == ["ops"] and [r["agent"] for r in doc["rows"]] == ["ops"]


def test_by_splits_rows_and_breakdown_lists_models(data):
    daily = staged(data)
    doc = rep(data, "daily", "--by", "model,task")
    assert doc["filters"]["by"] == ["model", "task"]
    for row in doc["rows"]:
        part = daily.filter(
            (pl.col("day") == date.fromisoformat(row["date"]))
            & (pl.col("model") == row["model"])
            & (pl.col("task_type") == row["taskType"])
        )
        same(row, sums(part))
    same(doc["totals"], sums(daily))
    doc = rep(data, "agent", "--breakdown")
    for row in doc["rows"]:
        models = row["modelBreakdowns"]
        assert len(models) == daily.filter(pl.col("agent_id") == row["agent"]).get_column("model").n_unique()
        assert sum(m["cost"] for m in models) == pytest.approx(row["cost"])
        assert sum(m["requests"] for m in models) == row["requests"]
    # the table shows the breakdown rows under each agent
    _, text, _ = report(data, "agent", "--breakdown")
    assert "└ claude-opus-4-5" in text and "└ house-model-7" in text


# -- health --------------------------------------------------------------------------------------------------
def test_health_equals_the_dashboard_health_and_the_calls(data):
    doc = rep(data, "health", "--since", since(data, 6))
    health = usage_doc(data)["health"]
    t = doc["totals"]
    assert (t["requests"], t["okRequests"], t["rateLimits"], t["failedRequests"], t["abortedRequests"]) == (
        health["total_calls"],
        health["successful_calls"],
        health["rate_limits"],
        health["errors"],
        health["aborted"],
    )
    assert t["successRate"] == health["success_rate"]
    assert [(r["provider"], r["requests"], r["successRate"]) for r in doc["rows"]] == [
        (p["name"], p["total_calls"], p["success_rate"]) for p in health["byProvider"]
    ]
    assert [(s["service"], s["requests"], s["rateLimits"], s["serverErrors"]) for s in doc["services"]] == [
        (s["name"], s["total_calls"], s["rate_limits"], s["server_errors"]) for s in health["byService"]
    ]
    # all time, straight from llm_calls: 429, 529, 5xx, timeouts
    calls = Tables(data["root"]).load("llm_calls")
    doc = rep(data, "health")
    t = doc["totals"]
    assert t["requests"] == calls.height
    assert t["rateLimits"] == calls.filter(pl.col("http_status") == 429).height == 1
    assert t["overloaded"] == calls.filter(pl.col("error_class") == "overloaded").height == 1
    assert t["serverErrors"] == calls.filter(pl.col("http_status").is_between(500, 599)).height == 2
    assert t["timeouts"] == calls.filter(pl.col("error_class") == "timeout").height == 1
    classes = {c["class"]: c["errors"] for c in doc["classes"]}
    failed = calls.filter(pl.col("status") == "error")
    assert classes == {
        c: failed.filter(pl.col("error_class") == c).height
        for c in ERROR_CLASSES
        if failed.filter(pl.col("error_class") == c).height
    }
    assert (
        sum(classes.values()) == t["failedRequests"] == 4 and t["abortedRequests"] == 1
    )  # aborted: not a failure
    assert all(c["shareOfFailed"] == 25.0 for c in doc["classes"])
    assert {s["service"]: s["requests"] for s in doc["services"]} == {"github": 3, "weather": 2}
    _, text, _ = report(data, "health")
    for title in (
        "API health by provider",
        "Failed calls by error class",
        "Services (interactions.db api_calls)",
    ):
        assert title in text
    # filtered by model: counted from llm_calls (the health table has no model)
    doc = rep(data, "health", "--model", "opus")
    opus = calls.filter(pl.col("model").str.contains("opus"))
    assert doc["totals"]["requests"] == opus.height and doc["totals"]["overloaded"] == 1
    assert doc["totals"]["okRequests"] == opus.filter(pl.col("status") == "ok").height
    assert doc["services"] is None


def test_tz_counts_days_again_in_that_zone(data):
    calls = Tables(data["root"]).load("llm_calls")
    by_utc = (
        calls.with_columns(d=pl.col("timestamp").dt.date())
        .group_by("d")
        .agg(pl.len().alias("n"), pl.col("cost_usd").sum())
        .sort("d")
    )
    doc = rep(data, "daily", "--tz", "UTC")
    assert doc["timezone"] == "UTC"
    assert [(r["date"], r["requests"]) for r in doc["rows"]] == [
        (d.isoformat(), n) for d, n, _ in by_utc.rows()
    ]
    assert doc["rows"] != rep(data, "daily")["rows"]  # the 00:30 call belongs to the day before in UTC
    day = data["today"] - timedelta(days=4)
    one = rep(data, "daily", "--tz", "UTC", "--since", day.isoformat(), "--until", day.isoformat())
    assert one["totals"]["requests"] == calls.filter(pl.col("timestamp").dt.date() == day).height == 1
    same(rep(data, "session", "--tz", "UTC")["totals"], rep(data, "session")["totals"])
    _, text, _ = report(data, "daily", "--tz", "UTC")
    assert "days counted again in UTC from llm_calls" in text


# -- JSON, CSV and the table agree ---------------------------------------------------------------------------
def parse_table(text: str) -> list[list[str]]:
    """Header and data lines of a rich table: cells split on the column separator."""
    return [
        [c.strip() for c in line.strip().strip("│").split("│")] for line in text.splitlines() if "│" in line
    ]


@pytest.mark.parametrize("argv", [["daily"], ["model"], ["session"], ["cron"], ["weekly", "--agent", "main"]])
def test_json_parses_and_matches_the_table(data, argv):
    doc = rep(data, *argv)
    assert set(doc) == {"view", "asOf", "timezone", "filters", "rows", "totals"}
    assert doc["view"] == argv[0] and doc["timezone"] == ZONE
    assert datetime.fromisoformat(doc["asOf"].replace("Z", "+00:00")) <= datetime.now(UTC)
    code, text, _ = report(data, *argv)
    assert code == 0
    lines = parse_table(text)
    header, body = lines[0], lines[1:]
    assert header[-7:] == ["Requests", "Input", "Output", "Cache write", "Cache read", "Tokens", "Cost"]
    assert len(body) == len(doc["rows"]) + 1
    for cells, row in zip(body, doc["rows"] + [doc["totals"]]):
        want = [
            f"{row['requests']:,}",
            f"{row['inputTokens']:,}",
            f"{row['outputTokens']:,}",
            f"{row['cacheWriteTokens']:,}",
            f"{row['cacheReadTokens']:,}",
            f"{row['tokens']:,}",
            usage_report.money(row["cost"]) + (" *" if row["unpricedRequests"] else ""),
        ]
        assert cells[-7:] == want
        key = usage_report.KEYS[usage_report.VIEW_KEYS[argv[0]][0]].field
        assert cells[0] == (str(row[key]) if row is not doc["totals"] else "Total")
    assert body[-1][0] == "Total"
    assert "data refreshed" in text


def test_money_to_cents_tokens_with_separators_and_unpriced_marked(data):
    doc = rep(data, "provider")
    _, text, _ = report(data, "provider")
    rows = {r[0]: r for r in parse_table(text)}
    total = doc["totals"]
    assert rows["Total"][-1] == f"${total['cost']:,.2f} *" and rows["Total"][-2] == f"{total['tokens']:,}"
    assert total["tokens"] > 10_000 and "," in rows["Total"][-2]
    assert rows["my-llm"][-1] == "$0.00 *" and rows["openai"][-1] == "$0.01"  # unpriced: unknown, not $0
    assert "* 1 request has no price: its cost is unknown" in text
    assert usage_report.money(1234.567) == "$1,234.57" and usage_report.money(0.001) == "<$0.01"
    assert usage_report.money(0) == "$0.00"


def test_narrow_terminal_hides_token_kinds(data):
    code, text, _ = report(data, "model", width=72)
    assert code == 0
    assert all(len(line) <= 72 for line in text.splitlines() if "│" in line)
    assert "Cache read" not in text and "token kinds hidden" in text
    assert parse_table(text)[0] == ["Provider", "Model", "Requests", "Tokens", "Cost"]
    doc = rep(data, "model")
    assert parse_table(text)[1] == [
        doc["rows"][0]["provider"],
        doc["rows"][0]["model"],
        f"{doc['rows'][0]['requests']:,}",
        f"{doc['rows'][0]['tokens']:,}",
        usage_report.money(doc["rows"][0]["cost"]),
    ]


def test_csv_has_the_same_rows(data):
    doc = rep(data, "model", "--by", "agent")
    code, text, _ = report(data, "model", "--by", "agent", "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(doc["rows"])
    for got, want in zip(rows, doc["rows"]):
        assert (got["provider"], got["model"], got["agent"]) == (
            want["provider"],
            want["model"],
            want["agent"],
        )
        assert float(got["cost"]) == pytest.approx(want["cost"])
        assert (
            int(got["requests"]) == want["requests"]
            and int(got["cacheReadTokens"]) == want["cacheReadTokens"]
        )


# -- errors --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        (["daily", "--since", "2026-02-30"], "bad date '2026-02-30' for --since"),
        (["daily", "--until", "20261301"], "bad date '20261301' for --until"),
        (["daily", "--since", "yesterday"], "bad date"),
        (["daily", "--since", "2026-03-02", "--until", "2026-03-01"], "is after --until"),
        (["yearly"], "unknown view 'yearly'"),
        ([], "the following arguments are required: VIEW"),
        (["daily", "--colour"], "unrecognized arguments: --colour"),
        (["daily", "--by", "colour"], "unknown --by key 'colour'"),
        (["daily", "--agent", "nobody"], "no agent 'nobody' in the data; there is: main, ops"),
        (["daily", "--model", "gpt-9"], "no model contains 'gpt-9'"),
        (["daily", "--tz", "Mars/Olympus"], "--tz 'Mars/Olympus' is not an IANA time zone"),
        (["session", "--task", "coding"], "does not apply to the session view"),
        (["health", "--by", "model"], "do not apply to health"),
        (["daily", "--json", "--csv"], "not allowed with argument"),
        (["daily", "--home", "/somewhere/else"], "this data folder has one home"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(data, argv, message):
    code, out, err = report(data, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("mc_pipeline report: ") and message in err, err
    assert "Traceback" not in err


def test_home_option_says_there_is_one_home(data):
    code, out, err = report(data, "daily", "--home", str(data["home"]), "--json")
    assert code == 0 and json.loads(out)["filters"]["home"] == str(data["home"])
    assert "this data folder has one home" in err and "filters nothing" in err


def test_no_data_yet_says_run_make_run(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = usage_report.main(
        ["daily"], env={"MC_DATA_DIR": str(tmp_path / "data"), "MC_TIMEZONE": ZONE}, out=out, err=err
    )
    assert code == 1 and out.getvalue() == ""
    assert (
        "no data yet" in err.getvalue() and "make run" in err.getvalue() and err.getvalue().count("\n") == 1
    )


def test_a_whole_process_without_dagster(data):
    """``python -m mc_pipeline report`` as a process: exit 2 on a bad date, and the report path never imports
    Dagster."""
    env = {
        "MC_DATA_DIR": str(data["root"]),
        "MC_TIMEZONE": ZONE,
        "OPENCLAW_HOME": str(data["home"]),
        "PATH": "/usr/bin:/bin",
    }
    bad = subprocess.run(
        [sys.executable, "-m", "mc_pipeline", "report", "daily", "--since", "2026-13-01"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.count("\n") == 1
    code = (
        "import sys, mc_pipeline.runtime.cli as c; sys.argv = ['x', 'report', 'model', '--json'];"
        " rc = c.main(); print('DAGSTER' if 'dagster' in sys.modules else 'no dagster', rc)"
    )
    ok = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith("no dagster 0")
    assert json.loads(ok.stdout[: ok.stdout.rindex("}") + 1])["view"] == "model"


def test_without_a_zone_setting_the_data_zone_is_used(data):
    code, out, err = report(data, "daily", "--json", env={"MC_TIMEZONE": ""})
    doc = json.loads(out)
    assert code == 0 and doc["timezone"] == ZONE and doc["rows"] == rep(data, "daily")["rows"]
    _, text, _ = report(data, "daily", env={"MC_TIMEZONE": ""})
    assert "counted again" not in text


def test_limit_keeps_the_costliest_or_the_latest_rows(data):
    full = rep(data, "model")
    top = rep(data, "model", "--limit", "2")
    assert top["rows"] == full["rows"][:2] and top["omittedRows"] == len(full["rows"]) - 2
    assert top["totals"] == full["totals"]  # the totals still count every row
    days = rep(data, "daily", "--limit", "2")
    assert days["rows"] == rep(data, "daily")["rows"][-2:]
    assert "omittedRows" not in rep(data, "session")  # JSON lists every session unless --limit says
    code, _, err = report(data, "daily", "--limit", "-1")
    assert code == 2 and "--limit must be 0" in err


def test_the_report_reads_the_files_tables_reads(data):
    from polars.testing import assert_frame_equal

    folder, tables = usage_report.DataFolder(data["root"].resolve()), Tables(data["root"])
    for name in ("usage_daily", "sessions_daily", "health_daily"):
        assert_frame_equal(folder.staged(name), tables.staged(name))
        assert folder.staged_path(name) == tables.staging_dir("daily") / f"{name}.parquet"
    assert_frame_equal(folder.api_calls(), tables.read("api_calls").select(folder.api_calls().columns))
    assert folder.zone() == ZONE
