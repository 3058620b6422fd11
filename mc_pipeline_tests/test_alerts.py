"""Alert rules on llm_calls frames (mc_pipeline/alerting/rules.py): each rule, its boundaries and its
period."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from mc_pipeline.alerting.rules import (
    DEFAULT_RULES_FILE,
    AlertRules,
    AlertRulesError,
    evaluate_alerts,
    load_alert_rules,
    run_failure_alert,
)
from mc_pipeline.tables.schemas import ALERTS, LLM_CALLS, conform
from mc_pipeline_tests.homes import REAL_DIR

UTC = UTC
# A Wednesday, mid-day: the ISO week started on Monday 2026-03-02, the month on 2026-03-01.
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def calls(rows: list[dict], tz: str = "UTC") -> pl.DataFrame:
    """An llm_calls frame: each row needs ts and may set cost, model, billing, status."""
    data = []
    for i, r in enumerate(rows):
        ts = r["ts"]
        cost = r.get("cost", 0.0)
        data.append(
            {
                "call_id": f"main/s/{i:08x}",
                "source": "transcript",
                "timestamp": ts,
                "day": ts.astimezone(ZoneInfo(tz)).date(),
                "provider": r.get("provider", "anthropic"),
                "model": r.get("model", "claude-sonnet-4-5"),
                "billing": r.get("billing", "api"),
                "status": r.get("status", "ok"),
                "cost_usd": cost,
                "cost_source": "unpriced" if cost is None else "recorded",
            }
        )
    return conform(pl.DataFrame(data, schema_overrides={"timestamp": pl.Datetime("us", "UTC")}), LLM_CALLS)


def only(rules: AlertRules | None = None, **kw) -> AlertRules:
    """Rules with everything off except what is given."""
    return AlertRules(**kw) if rules is None else rules


def by_rule(alerts: pl.DataFrame, rule: str) -> pl.DataFrame:
    return alerts.filter(pl.col("rule") == rule)


# -- spend limits ----------------------------------------------------------------------------------------
def test_daily_limit_counts_today_only_and_is_critical():
    frame = calls(
        [
            {"ts": NOW - timedelta(hours=1), "cost": 4.0},
            {"ts": NOW - timedelta(hours=2), "cost": 3.5},
            {"ts": NOW - timedelta(days=1), "cost": 100.0},  # yesterday: not today's spend
        ]
    )
    alerts = evaluate_alerts(frame, only(daily_limit_usd=7.0), NOW, "UTC")
    assert alerts.schema == pl.Schema(ALERTS)
    assert alerts.height == 1
    row = alerts.row(0, named=True)
    assert row["rule"] == "daily_limit" and row["severity"] == "critical"
    assert row["period"] == "2026-03-04" and row["alert_id"] == "daily_limit:2026-03-04"
    assert row["value"] == pytest.approx(4.0 + 3.5) and row["limit"] == 7.0
    assert row["raised_at"] == NOW
    assert "$7.50" in row["message"] and "$7.00" in row["message"]


def test_daily_limit_is_exceeded_only_strictly_above():
    frame = calls([{"ts": NOW - timedelta(hours=1), "cost": 5.0}])
    assert evaluate_alerts(frame, only(daily_limit_usd=5.0), NOW, "UTC").height == 0
    assert evaluate_alerts(frame, only(daily_limit_usd=4.99), NOW, "UTC").height == 1


def test_weekly_limit_is_the_iso_week_and_a_warning():
    monday = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    sunday_before = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    frame = calls(
        [{"ts": monday, "cost": 6.0}, {"ts": NOW, "cost": 5.0}, {"ts": sunday_before, "cost": 50.0}]
    )
    alerts = evaluate_alerts(frame, only(weekly_limit_usd=10.0), NOW, "UTC")
    assert alerts.height == 1
    row = alerts.row(0, named=True)
    assert (row["rule"], row["severity"], row["period"]) == ("weekly_limit", "warning", "2026-W10")
    assert row["value"] == pytest.approx(11.0)
    assert evaluate_alerts(frame, only(weekly_limit_usd=11.0), NOW, "UTC").height == 0


def test_monthly_limit_is_the_calendar_month():
    first = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)
    last_of_feb = datetime(2026, 2, 28, 23, 55, tzinfo=UTC)
    frame = calls([{"ts": first, "cost": 20.0}, {"ts": NOW, "cost": 1.0}, {"ts": last_of_feb, "cost": 500.0}])
    alerts = evaluate_alerts(frame, only(monthly_limit_usd=20.0), NOW, "UTC")
    assert alerts.get_column("alert_id").to_list() == ["monthly_limit:2026-03"]
    assert alerts.item(0, "value") == pytest.approx(21.0)


def test_periods_follow_the_time_zone():
    # 23:30 UTC on 3 March is 4 March in Tokyo: with tz Asia/Tokyo it is today's spend at NOW.
    late = datetime(2026, 3, 3, 23, 30, tzinfo=UTC)
    now = datetime(2026, 3, 4, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
    frame_tokyo = calls([{"ts": late, "cost": 9.0}], tz="Asia/Tokyo")
    frame_utc = calls([{"ts": late, "cost": 9.0}], tz="UTC")
    assert (
        evaluate_alerts(frame_tokyo, only(daily_limit_usd=1.0), now, "Asia/Tokyo").item(0, "period")
        == "2026-03-04"
    )
    assert evaluate_alerts(frame_utc, only(daily_limit_usd=1.0), now, "UTC").height == 0


def test_subscription_calls_are_left_out_of_spend_unless_configured():
    frame = calls(
        [
            {"ts": NOW, "cost": 30.0, "billing": "subscription", "provider": "openai-codex"},
            {"ts": NOW, "cost": 2.0, "billing": "api"},
            {"ts": NOW, "cost": 3.0, "billing": "unknown"},
        ]
    )
    default = evaluate_alerts(frame, only(daily_limit_usd=4.0), NOW, "UTC")
    assert default.item(0, "value") == pytest.approx(5.0)  # api + unknown, not the subscription
    included = evaluate_alerts(frame, only(daily_limit_usd=4.0, include_subscription=True), NOW, "UTC")
    assert included.item(0, "value") == pytest.approx(35.0)
    assert evaluate_alerts(frame, only(daily_limit_usd=5.0), NOW, "UTC").height == 0


def test_unpriced_calls_add_nothing_and_are_named():
    frame = calls([{"ts": NOW, "cost": 6.0}, {"ts": NOW, "cost": None, "model": "my-local-model"}])
    alerts = evaluate_alerts(frame, only(daily_limit_usd=5.0), NOW, "UTC")
    assert alerts.item(0, "value") == pytest.approx(6.0)
    assert "1 unpriced" in alerts.item(0, "message")


def test_per_model_daily_limits():
    frame = calls(
        [
            {"ts": NOW, "cost": 12.0, "model": "claude-opus-4-6"},
            {"ts": NOW, "cost": 9.0, "model": "claude-opus-4-6"},
            {"ts": NOW, "cost": 40.0, "model": "gpt-5.1"},  # no limit for it
            {"ts": NOW, "cost": 1.0, "model": "claude-sonnet-4-5"},
        ]
    )
    rules = only(model_daily_limit_usd={"claude-opus-4-6": 20.0, "claude-sonnet-4-5": 1.0})
    alerts = evaluate_alerts(frame, rules, NOW, "UTC")
    assert alerts.height == 1
    row = alerts.row(0, named=True)
    assert row["scope"] == "claude-opus-4-6" and row["severity"] == "critical"
    assert row["alert_id"] == "model_daily_limit:claude-opus-4-6:2026-03-04"
    assert row["value"] == pytest.approx(21.0)


# -- failure rate ----------------------------------------------------------------------------------------
def _mixed(n: int, failed: int, start: datetime) -> list[dict]:
    return [{"ts": start - timedelta(minutes=i), "status": "error" if i < failed else "ok"} for i in range(n)]


def test_failure_rate_needs_the_minimum_number_of_calls():
    rules = only(failure_rate_threshold=5.0, failure_min_calls=20)
    assert evaluate_alerts(calls(_mixed(19, 10, NOW)), rules, NOW, "UTC").height == 0
    alerts = evaluate_alerts(calls(_mixed(20, 10, NOW)), rules, NOW, "UTC")
    assert alerts.height == 1
    row = alerts.row(0, named=True)
    assert row["rule"] == "failure_rate" and row["value"] == pytest.approx(50.0) and row["limit"] == 5.0
    assert "10 of 20" in row["message"]


def test_failure_rate_is_strictly_above_the_threshold_and_counts_aborts():
    rows = _mixed(20, 0, NOW)
    rows[0]["status"] = "aborted"  # 1 of 20 = 5 %
    rules = only(failure_rate_threshold=5.0, failure_min_calls=20)
    assert evaluate_alerts(calls(rows), rules, NOW, "UTC").height == 0
    rows[1]["status"] = "error"  # 2 of 20 = 10 %
    assert evaluate_alerts(calls(rows), rules, NOW, "UTC").item(0, "value") == pytest.approx(10.0)


def test_failure_rate_window_is_the_last_24_hours():
    old_failures = _mixed(30, 30, NOW - timedelta(hours=25))  # all failed, but more than a day ago
    recent_ok = _mixed(20, 0, NOW)
    rules = only(failure_rate_threshold=5.0, failure_min_calls=20)
    assert evaluate_alerts(calls(old_failures + recent_ok), rules, NOW, "UTC").height == 0
    future = [{"ts": NOW + timedelta(hours=1), "status": "error"} for _ in range(20)]
    assert evaluate_alerts(calls(future + recent_ok), rules, NOW, "UTC").height == 0


# -- spike -----------------------------------------------------------------------------------------------
def _history(daily: list[float]) -> list[dict]:
    """One call per previous day, oldest first, ending yesterday."""
    n = len(daily)
    return [{"ts": NOW - timedelta(days=n - i), "cost": c} for i, c in enumerate(daily)]


def test_spike_above_factor_times_the_trailing_median():
    week = [1.0, 2.0, 2.0, 3.0, 100.0, 2.0, 1.0]  # median 2.0: one wild day does not move it
    rules = only(spike_factor=3.0, spike_min_usd=5.0)
    median = sorted(week)[3]
    spiky = calls(_history(week) + [{"ts": NOW, "cost": 3 * median + 0.5}])
    alerts = evaluate_alerts(spiky, rules, NOW, "UTC")
    assert alerts.get_column("rule").to_list() == ["spend_spike"]
    assert alerts.item(0, "limit") == pytest.approx(3 * median)
    calm = calls(_history(week) + [{"ts": NOW, "cost": 3 * median}])
    assert evaluate_alerts(calm, rules, NOW, "UTC").height == 0


def test_spike_leaves_quiet_days_out_of_the_median_and_needs_a_minimum():
    week = [4.0, 0.0, 0.0, 0.0, 6.0, 2.0, 0.0]  # days with 0 have no calls at all
    history = [r for r in _history(week) if r["cost"] > 0]
    active = sorted(c for c in week if c > 0)
    median = active[len(active) // 2]  # 4.0, not 0.0 as with the quiet days counted
    rules = only(spike_factor=2.0, spike_min_usd=5.0)
    assert evaluate_alerts(calls(history + [{"ts": NOW, "cost": 2 * median}]), rules, NOW, "UTC").height == 0
    spike = evaluate_alerts(calls(history + [{"ts": NOW, "cost": 2 * median + 0.01}]), rules, NOW, "UTC")
    assert spike.item(0, "limit") == pytest.approx(2 * median) and "3 active day(s)" in spike.item(
        0, "message"
    )
    # below the minimum spend it is no spike, however quiet the week was
    small = [{"ts": NOW - timedelta(days=d), "cost": 0.01} for d in (1, 2, 3)]
    assert evaluate_alerts(calls(small + [{"ts": NOW, "cost": 4.99}]), rules, NOW, "UTC").height == 0
    assert evaluate_alerts(calls(small + [{"ts": NOW, "cost": 5.0}]), rules, NOW, "UTC").height == 1


def test_spike_needs_enough_active_days_in_the_window():
    rules = only(spike_factor=3.0, spike_min_usd=1.0, spike_min_active_days=3)
    two = calls(_history([1.0, 1.0]) + [{"ts": NOW, "cost": 100.0}])
    assert evaluate_alerts(two, rules, NOW, "UTC").height == 0
    three = calls(_history([1.0, 1.0, 1.0]) + [{"ts": NOW, "cost": 100.0}])
    assert evaluate_alerts(three, rules, NOW, "UTC").height == 1
    # active days more than 7 days back are not part of the baseline
    old = [{"ts": NOW - timedelta(days=d), "cost": 1.0} for d in (8, 9, 10)]
    assert evaluate_alerts(calls(old + [{"ts": NOW, "cost": 100.0}]), rules, NOW, "UTC").height == 0


# -- identity, empty input, rules files ------------------------------------------------------------------
def test_alert_ids_are_stable_within_the_period():
    frame = calls([{"ts": NOW - timedelta(hours=3), "cost": 10.0}])
    rules = only(daily_limit_usd=1.0, weekly_limit_usd=1.0)
    first = evaluate_alerts(frame, rules, NOW - timedelta(hours=2), "UTC").get_column("alert_id").to_list()
    later = evaluate_alerts(frame, rules, NOW + timedelta(hours=5), "UTC").get_column("alert_id").to_list()
    assert first == later and len(first) == 2
    next_day = evaluate_alerts(frame, rules, NOW + timedelta(days=1), "UTC").get_column("alert_id").to_list()
    assert next_day == ["weekly_limit:2026-W10"]  # nothing spent on the 5th; the week still counts


def test_no_calls_no_alerts_with_every_rule_on():
    rules = AlertRules(
        daily_limit_usd=1.0,
        weekly_limit_usd=1.0,
        monthly_limit_usd=1.0,
        model_daily_limit_usd={"x": 1.0},
        failure_rate_threshold=1.0,
        failure_min_calls=1,
        spike_factor=1.0,
    )
    alerts = evaluate_alerts(pl.DataFrame(schema=LLM_CALLS), rules, NOW, "UTC")
    assert alerts.height == 0 and alerts.schema == pl.Schema(ALERTS)


def test_shipped_rules_file_is_what_load_returns():
    doc = tomllib.loads(DEFAULT_RULES_FILE.read_text())
    rules = load_alert_rules()
    assert rules.daily_limit_usd == doc["spend"]["daily_limit_usd"]
    assert rules.weekly_limit_usd == doc["spend"]["weekly_limit_usd"]
    assert rules.monthly_limit_usd == doc["spend"].get("monthly_limit_usd")
    assert rules.include_subscription is doc["spend"]["include_subscription"] is False
    assert rules.failure_rate_threshold == doc["failure_rate"]["threshold_percent"]
    assert rules.failure_min_calls == doc["failure_rate"]["min_calls"]
    assert rules.spike_factor == doc["spike"]["factor"]
    assert rules.spike_min_usd == doc["spike"]["min_usd"]
    assert rules.spike_min_active_days == doc["spike"]["min_active_days"]


def test_environment_overrides_and_switches_off():
    env = {
        "MC_DAILY_LIMIT_USD": "2.5",
        "MC_WEEKLY_LIMIT_USD": "off",
        "MC_MONTHLY_LIMIT_USD": "90",
        "MC_MODEL_DAILY_LIMITS_USD": "claude-opus-4-6=30, openrouter/minimax/minimax-m2.1=4",
        "MC_FAILURE_RATE_THRESHOLD": "12",
        "MC_FAILURE_MIN_CALLS": "3",
        "MC_ALERTS_INCLUDE_SUBSCRIPTION": "true",
        "MC_SPIKE_FACTOR": "0",
    }
    rules = load_alert_rules(env=env)
    assert rules.daily_limit_usd == 2.5 and rules.weekly_limit_usd is None and rules.monthly_limit_usd == 90.0
    assert rules.model_daily_limit_usd == {"claude-opus-4-6": 30.0, "openrouter/minimax/minimax-m2.1": 4.0}
    assert rules.failure_rate_threshold == 12.0 and rules.failure_min_calls == 3
    assert rules.include_subscription is True and rules.spike_factor is None


@pytest.mark.parametrize(
    "text,want", [("true", True), (" ON ", True), ("1", True), ("no", False), ("off", False), ("", False)]
)
def test_include_subscription_is_a_yes_no_word_and_empty_is_off(text, want):
    assert load_alert_rules(env={"MC_ALERTS_INCLUDE_SUBSCRIPTION": text}).include_subscription is want


def test_user_rules_file(tmp_path):
    f = tmp_path / "rules.toml"
    f.write_text(
        '[spend]\nmonthly_limit_usd = 75\n[spend.model_daily_limit_usd]\n"gpt-5.1" = 3\n'
        "[failure_rate]\nmin_calls = 5\n"
    )
    rules = load_alert_rules(f, env={"MC_DAILY_LIMIT_USD": "9"})
    assert rules.daily_limit_usd == 9.0 and rules.weekly_limit_usd is None
    assert rules.monthly_limit_usd == 75.0 and rules.model_daily_limit_usd == {"gpt-5.1": 3.0}
    assert (
        rules.failure_rate_threshold is None and rules.spike_factor is None and rules.failure_min_calls == 5
    )


@pytest.mark.parametrize(
    "env,text",
    [
        ({"MC_DAILY_LIMIT_USD": "fifty"}, None),
        ({"MC_DAILY_LIMIT_USD": "-3"}, None),
        ({"MC_MODEL_DAILY_LIMITS_USD": "opus"}, None),
        ({"MC_ALERTS_INCLUDE_SUBSCRIPTION": "maybe"}, None),
        ({}, "[spend]\ndaily_limit_usd = 'a lot'\n"),
        ({}, "[spend\n"),
    ],
)
def test_bad_rules_are_named(tmp_path, env, text):
    path = None
    if text is not None:
        path = tmp_path / "bad.toml"
        path.write_text(text)
    with pytest.raises(AlertRulesError):
        load_alert_rules(path, env=env)


def test_run_failure_alert_is_one_per_run():
    a = run_failure_alert(
        "refresh_all", "abcdef12-3456", "DagsterExecutionStepExecutionError: boom\nTraceback...", NOW
    )
    b = run_failure_alert("refresh_all", "99999999-0000", None, NOW)
    assert a["alert_id"] != b["alert_id"] and a["severity"] == "critical"
    assert "boom" in a["message"] and "Traceback" not in a["message"]
    assert set(a) == set(ALERTS)


@pytest.mark.skipif(not REAL_DIR.exists(), reason="shared/real not present")
def test_failure_rate_on_the_real_transcripts():
    """Real calls, read straight from the JSON: at each call's time the rule fires iff the last 24 h say
    so."""
    rows = []
    for f in sorted(REAL_DIR.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            m = d.get("message") or {}
            if d.get("type") != "message" or m.get("role") != "assistant" or m.get("provider") == "openclaw":
                continue
            ts = datetime.fromtimestamp(m["timestamp"] / 1000, tz=UTC)
            status = {"error": "error", "aborted": "aborted"}.get(m.get("stopReason"), "ok")
            rows.append({"ts": ts, "status": status, "cost": m["usage"]["cost"]["total"]})
    assert rows
    frame = calls(rows)
    rules = only(failure_rate_threshold=5.0, failure_min_calls=20)
    fired = 0
    for r in rows[::25]:
        now = r["ts"]
        window = [x for x in rows if now - timedelta(hours=24) < x["ts"] <= now]
        failed = sum(x["status"] != "ok" for x in window)
        expected = len(window) >= 20 and 100 * failed / len(window) > 5.0
        got = evaluate_alerts(frame, rules, now, "UTC")
        assert (got.height == 1) is expected, now
        fired += expected
        if expected:
            assert got.item(0, "value") == pytest.approx(100 * failed / len(window))
    assert fired > 0  # the real files do cross the threshold at times
