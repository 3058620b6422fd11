"""Tests of mc_pipeline.reporting.marts (and the chart) on real-format homes and the real transcripts."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.calls.llm_calls import build_llm_calls
from mc_pipeline.costing.billing import read_auth_profiles
from mc_pipeline.costing.task_types import load_task_rules
from mc_pipeline.ingest.readers.session_index import read_session_index
from mc_pipeline.ingest.readers.transcript_files import read_transcripts
from mc_pipeline.reporting.charts import daily_cost_svg, markdown_image
from mc_pipeline.reporting.marts import build_marts, public_session_id, window_start
from mc_pipeline.tables.schemas import (
    API_CALLS,
    API_HEALTH,
    MART_WINDOWS,
    THINKING_STATS,
    USAGE_BY_AGENT,
    USAGE_BY_MODEL,
    USAGE_BY_PROVIDER,
    USAGE_BY_SESSION,
    USAGE_BY_TASK_TYPE,
    USAGE_BY_TRIGGER,
    USAGE_DAILY,
)
from mc_pipeline_tests import homes as h

needs_real = pytest.mark.skipif(not h.REAL_DIR.exists(), reason="shared/real not present")
SCHEMAS = {
    "usage_daily": USAGE_DAILY,
    "usage_by_provider": USAGE_BY_PROVIDER,
    "usage_by_model": USAGE_BY_MODEL,
    "usage_by_task_type": USAGE_BY_TASK_TYPE,
    "usage_by_agent": USAGE_BY_AGENT,
    "usage_by_session": USAGE_BY_SESSION,
    "usage_by_trigger": USAGE_BY_TRIGGER,
    "thinking_stats": THINKING_STATS,
    "api_health": API_HEALTH,
}
WINDOWED = [
    "usage_by_provider",
    "usage_by_model",
    "usage_by_task_type",
    "usage_by_agent",
    "usage_by_session",
    "usage_by_trigger",
]


def calls_from_home(home: Path, tz: str = "UTC") -> pl.DataFrame:
    batch = read_transcripts(home)
    index, _ = read_session_index(home)
    auth, _ = read_auth_profiles(home)
    return build_llm_calls(
        batch.records,
        session_index=index,
        auth=auth,
        task_rules=load_task_rules(None),
        tz=tz,
        cost_mode="auto",
    ).calls


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def mixed_home(home: Path) -> Path:
    """Two agents, three providers, a cron session, a failed and an aborted call, an unpriced model."""
    s1, s2, s3 = (
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
        "33333333-3333-4333-8333-333333333333",
    )
    t = utc(2026, 3, 2, 9)
    h.write_session(
        home,
        [
            h.session_line(s1, t),
            h.user(t),
            h.assistant(
                t, u=h.usage(1000, 200, 5000, 300, cost=0.05), tools=("exec", "read"), thinking="x" * 400
            ),
            h.assistant(
                t + timedelta(minutes=3),
                u=h.usage(0, 0),
                stop="error",
                error='429 {"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}',
            ),
            h.assistant(
                t + timedelta(days=1),
                provider="openai",
                model="gpt-5.1-codex",
                api="openai-responses",
                u=h.usage(400, 100, 0, 0, cost=0.01),
            ),
            h.assistant(t + timedelta(days=1, hours=1), u=h.usage(10, 5), stop="aborted"),
        ],
        session_id=s1,
    )
    h.write_session(
        home,
        [
            h.session_line(s2, t),
            h.user(t),
            h.assistant(
                t + timedelta(hours=2),
                provider="my-llm",
                model="house-model-7",
                api="openai-completions",
                u=h.usage(700, 70),
            ),
            h.assistant(t + timedelta(days=5), u=h.usage(50, 25, 100, 0, cost=0.002)),
        ],
        agent="ops",
        session_id=s2,
    )
    h.write_session(
        home,
        [
            h.session_line(s3, t),
            h.assistant(t + timedelta(days=3), u=h.usage(20, 10, cost=0.001)),
        ],
        agent="ops",
        session_id=s3,
    )
    h.write_sessions_index(home, "ops", {"cron:nightly-report": s3, "agent:ops:main": s2})
    return home


@pytest.fixture(scope="module")
def mixed_calls(tmp_path_factory) -> pl.DataFrame:
    return calls_from_home(mixed_home(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def real_calls(tmp_path_factory) -> pl.DataFrame:
    if not h.REAL_DIR.exists():
        pytest.skip("shared/real not present")
    return calls_from_home(h.copy_real_home(tmp_path_factory.mktemp("real")))


def totals(df: pl.DataFrame) -> dict:
    cols = [
        "calls",
        "failed_calls",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "total_tokens",
        "thinking_tokens",
        "unpriced_calls",
        "tool_calls",
    ]
    out = {c: int(df.get_column(c).sum() or 0) for c in cols}
    out["cost_usd"] = float(df.get_column("cost_usd").sum() or 0.0)
    return out


def call_totals(calls: pl.DataFrame) -> dict:
    """The same figures straight from llm_calls (no mart code)."""
    return {
        "calls": calls.height,
        "failed_calls": calls.filter(pl.col("status") != "ok").height,
        **{
            c: int(calls.get_column(c).sum() or 0)
            for c in (
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "total_tokens",
                "thinking_tokens",
                "tool_calls",
            )
        },
        "unpriced_calls": calls.filter(pl.col("cost_usd").is_null()).height,
        "cost_usd": float(sum(c for c in calls.get_column("cost_usd").to_list() if c is not None)),
    }


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-9), k


@pytest.mark.parametrize("which", ["mixed", pytest.param("real", marks=needs_real)])
def test_marts_sum_to_llm_calls_totals(which, mixed_calls, request):
    calls = mixed_calls if which == "mixed" else request.getfixturevalue("real_calls")
    today = calls.get_column("day").max()
    marts = build_marts(calls, today)
    expected = call_totals(calls)
    assert_same(totals(marts.usage_daily), expected)
    for name in WINDOWED:
        frame = getattr(marts, name)
        assert_same(totals(frame.filter(pl.col("window") == "all_time")), expected)
    # every window: exactly the calls whose day falls in it (computed here with plain dates)
    for window, start in [
        ("today", today),
        ("last_7_days", today - timedelta(days=6)),
        ("last_30_days", today - timedelta(days=29)),
        ("month_to_date", today.replace(day=1)),
    ]:
        part = calls.filter((pl.col("day") >= start) & (pl.col("day") <= today))
        got = marts.usage_by_provider.filter(pl.col("window") == window)
        if part.height == 0:
            assert got.height == 0, window
        else:
            assert_same(totals(got), call_totals(part))
    th = marts.thinking_stats.filter(pl.col("window") == "all_time").row(0, named=True)
    assert th["thinking_tokens"] == expected["thinking_tokens"]
    assert th["calls_with_thinking"] == calls.filter(pl.col("thinking_tokens") > 0).height
    health = marts.api_health
    assert int(health.get_column("calls").sum()) == calls.height
    assert int(health.get_column("ok_calls").sum()) == calls.filter(pl.col("status") == "ok").height


def test_marts_follow_their_schemas(mixed_calls):
    marts = build_marts(mixed_calls, date(2026, 3, 7))
    for name, frame in marts.items():
        assert frame.schema == pl.Schema(SCHEMAS[name]), name
    empty = build_marts(mixed_calls.clear(), date(2026, 3, 7))
    for name, frame in empty.items():
        assert frame.height == 0 and frame.schema == pl.Schema(SCHEMAS[name]), name


def test_costs_by_source_billing_and_ratios(mixed_calls):
    marts = build_marts(mixed_calls, date(2026, 3, 7))
    p = marts.usage_by_provider.filter(pl.col("window") == "all_time")
    # the unpriced house model: counted, never a $0 cost
    house = p.filter(pl.col("provider") == "my-llm").row(0, named=True)
    assert (
        house["unpriced_calls"] == 1 and house["cost_usd"] == 0.0 and house["avg_cost_per_call_usd"] is None
    )
    for r in p.iter_rows(named=True):
        assert r["recorded_cost_usd"] + r["calculated_cost_usd"] == pytest.approx(r["cost_usd"])
        assert r["error_rate"] == pytest.approx(r["failed_calls"] / r["calls"])
        prompt = r["input_tokens"] + r["cache_read_tokens"] + r["cache_write_tokens"]
        assert r["input_output_ratio"] == (
            pytest.approx(prompt / r["output_tokens"]) if r["output_tokens"] else None
        )
    codex = p.filter(pl.col("provider") == "openai").row(0, named=True)  # openai with an API key: billed
    assert codex["api_cost_usd"] + codex["subscription_value_usd"] <= codex["cost_usd"] + 1e-12


def test_cost_per_cron_job_and_sessions_without_keys(mixed_calls):
    marts = build_marts(mixed_calls, date(2026, 3, 7))
    t = marts.usage_by_trigger.filter(pl.col("window") == "all_time")
    cron = t.filter(pl.col("trigger") == "cron").row(0, named=True)
    expected = mixed_calls.filter(pl.col("session_id") == "33333333-3333-4333-8333-333333333333")
    assert cron["cron_job_id"] == "nightly-report" and cron["calls"] == expected.height
    assert cron["cost_usd"] == pytest.approx(expected.get_column("cost_usd").sum())
    s = marts.usage_by_session.filter(pl.col("window") == "all_time")
    assert "session_key" not in s.columns
    one = s.filter(pl.col("session_id") == "11111111-1111-4111-8111-111111111111").row(0, named=True)
    assert one["model"] == "claude-sonnet-4-5"  # 3 of its 4 calls
    assert one["duration_ms"] == (utc(2026, 3, 3, 10) - utc(2026, 3, 2, 9)) // timedelta(milliseconds=1)


def test_public_session_id_keeps_uuids_and_hashes_anything_else():
    u = "D703A1A9-1B7B-4FB1-B512-C9738B1A2B3C"
    assert public_session_id(u) == u.lower()
    key = "agent:main:whatsapp:direct:+4915112345678"
    hashed = public_session_id(key, salt="a")
    assert hashed.startswith("s-") and "4915112345678" not in hashed
    assert hashed == public_session_id(key, salt="a") != public_session_id(key, salt="b")


def one_call(home: Path, when: datetime, cost: float = 0.01) -> None:
    h.write_session(
        home, [h.session_line(h.uuid.uuid4().hex, when), h.assistant(when, u=h.usage(10, 5, cost=cost))]
    )


def test_month_boundary_in_a_non_utc_zone(tmp_path):
    """23:30 UTC on Mar 31 is already April 1 in Berlin: it belongs to April's month to date there."""
    one_call(tmp_path, utc(2026, 3, 31, 23, 30), cost=0.5)
    one_call(tmp_path, utc(2026, 3, 31, 20, 0), cost=0.25)
    for tz, april_cost in (("Europe/Berlin", 0.5), ("UTC", 0.0)):
        calls = calls_from_home(tmp_path, tz)
        marts = build_marts(calls, date(2026, 4, 1))
        by_window = {
            w: float(
                marts.usage_by_provider.filter(pl.col("window") == w).get_column("cost_usd").sum() or 0.0
            )
            for w in MART_WINDOWS
        }
        assert by_window["month_to_date"] == pytest.approx(april_cost), tz
        assert by_window["today"] == pytest.approx(april_cost), tz
        assert by_window["last_7_days"] == pytest.approx(0.75), tz
        assert by_window["all_time"] == pytest.approx(0.75), tz


def test_week_window_is_seven_days_including_today(tmp_path):
    today = date(2026, 3, 4)  # a Wednesday: the window is Thu 26 Feb .. Wed 4 Mar, across a month end
    assert window_start("last_7_days", today) == date(2026, 2, 26)
    for d, cost in ((date(2026, 2, 25), 1.0), (date(2026, 2, 26), 0.1), (date(2026, 3, 4), 0.01)):
        one_call(tmp_path, datetime(d.year, d.month, d.day, 12, tzinfo=UTC), cost=cost)
    marts = build_marts(calls_from_home(tmp_path), today)
    w = marts.usage_by_provider.filter(pl.col("window") == "last_7_days").row(0, named=True)
    assert w["calls"] == 2 and w["cost_usd"] == pytest.approx(0.11)
    m = marts.usage_by_provider.filter(pl.col("window") == "month_to_date").row(0, named=True)
    assert m["calls"] == 1 and m["cost_usd"] == pytest.approx(0.01)


def test_api_health_per_service_from_api_calls(mixed_calls):
    api = pl.DataFrame(
        {
            "timestamp": [utc(2026, 3, 2, 10), utc(2026, 3, 2, 11), utc(2026, 3, 2, 12), utc(2026, 3, 2, 13)],
            "day": [date(2026, 3, 2)] * 4,
            "service": ["brave", "brave", "brave", "github"],
            "endpoint": ["/search"] * 3 + ["/repos"],
            "method": ["GET"] * 4,
            "status_code": [200, 429, 503, 200],
            "duration_ms": [100, 50, 30, 20],
            "ok": [True, False, False, True],
            "error_class": [None, "rate_limit", "server_error", None],
        },
        schema=API_CALLS,
    )
    health = build_marts(mixed_calls, date(2026, 3, 7), api_calls=api).api_health
    brave = health.filter((pl.col("kind") == "service") & (pl.col("name") == "brave")).row(0, named=True)
    assert (brave["calls"], brave["ok_calls"], brave["error_calls"]) == (3, 1, 2)
    assert (brave["rate_limit_hits"], brave["server_errors_5xx"], brave["errors_server_error"]) == (1, 1, 1)
    assert brave["success_rate"] == pytest.approx(1 / 3)
    anth = health.filter(
        (pl.col("kind") == "provider") & (pl.col("name") == "anthropic") & (pl.col("day") == date(2026, 3, 2))
    )
    assert anth.row(0, named=True)["rate_limit_hits"] == 1
    assert (
        build_marts(mixed_calls, date(2026, 3, 7), api_calls=api.clear())
        .api_health.filter(pl.col("kind") == "service")
        .height
        == 0
    )


def test_chart_is_valid_svg_with_one_bar_part_per_priced_provider_day(mixed_calls):
    marts = build_marts(mixed_calls, date(2026, 3, 7))
    svg = daily_cost_svg(marts.usage_daily, date(2026, 3, 7))
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    priced = (
        marts.usage_daily.group_by("day", "provider")
        .agg(pl.col("cost_usd").sum())
        .filter(pl.col("cost_usd") > 0)
    )
    assert len(bars) == priced.height
    md = markdown_image(svg, "x")
    assert base64.b64decode(md.split("base64,", 1)[1].rstrip(")")).decode() == svg
    empty = ET.fromstring(daily_cost_svg(marts.usage_daily.clear(), date(2026, 3, 7)))
    assert "no priced calls" in "".join(empty.itertext())
