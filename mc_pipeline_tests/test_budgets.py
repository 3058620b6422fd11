"""Budgets per agent and cron job with thresholds and a forecast, subscription windows, the alert action."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from mc_pipeline.alerting import delivery as ad
from mc_pipeline.alerting.budgets import (
    Budget,
    BudgetRules,
    SubscriptionWindow,
    budget_alerts,
    budget_status,
    window_status,
)
from mc_pipeline.alerting.rules import evaluate_alerts_daily, load_alert_rules
from mc_pipeline.tables.schemas import USAGE_DAILY, conform

TZ = "Europe/Berlin"


def usage(rows: list[tuple]) -> pl.DataFrame:
    """usage_daily rows: (day, agent, cron job id, cron job name, model, billing, cost)."""
    return conform(
        pl.DataFrame(
            [
                {
                    "day": d,
                    "agent_id": a,
                    "cron_job_id": j,
                    "cron_job_name": n,
                    "model": m,
                    "billing": b,
                    "provider": "anthropic",
                    "cost_usd": c,
                }
                for d, a, j, n, m, b, c in rows
            ]
        ),
        USAGE_DAILY,
    )


def test_thresholds_are_raised_once_per_period_per_agent_and_cron_job(tmp_path):
    rules = BudgetRules(
        budgets=(
            Budget("agent", "coder", "daily", 10.0),
            Budget("cron_job", "Nightly report", "monthly", 40.0),
        )
    )
    now = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)  # 12:00 in Berlin
    day = date(2026, 3, 10)
    data = usage(
        [
            (day, "coder", None, None, "opus", "api", 6.0),
            (day, "main", None, None, "opus", "api", 50.0),
            (day, "ops", "job-1", "Nightly report", "haiku", "api", 21.0),
            (day, "coder", None, None, "opus", "subscription", 99.0),
        ]
    )  # subscription value: not spend
    alerts, statuses = budget_alerts(data, rules, now, TZ)
    assert [a["alert_id"] for a in alerts] == [
        "budget:agent=coder:2026-03-10:50",
        "budget:cron_job=Nightly report:2026-03:50",
    ]
    assert {a["severity"] for a in alerts} == {"warning"}
    assert statuses[0].spend_usd == 6.0 and statuses[1].spend_usd == 21.0
    # raised once: the same period seen again appends nothing; a new threshold is a new alert
    assert len(ad.record_alerts(alerts, tmp_path)) == 2
    assert ad.record_alerts(alerts, tmp_path) == []
    more = usage([(day, "coder", None, None, "opus", "api", 10.5)])
    again, _ = budget_alerts(more, rules, now, TZ)
    assert [a["alert_id"] for a in again] == [
        "budget:agent=coder:2026-03-10:50",
        "budget:agent=coder:2026-03-10:80",
        "budget:agent=coder:2026-03-10:100",
    ]
    new = ad.record_alerts(again, tmp_path)
    assert [a["alert_id"] for a in new] == [
        "budget:agent=coder:2026-03-10:80",
        "budget:agent=coder:2026-03-10:100",
    ]
    assert [a["severity"] for a in new] == ["warning", "critical"]
    # the next day is another period
    tomorrow, _ = budget_alerts(
        usage([(day + timedelta(days=1), "coder", None, None, "opus", "api", 5.0)]),
        rules,
        now + timedelta(days=1),
        TZ,
    )
    assert [a["alert_id"] for a in tomorrow] == ["budget:agent=coder:2026-03-11:50"]


def test_the_forecast_matches_a_hand_computed_one():
    # monthly budget 300: March 1-9 spent 10/day (90), today (the 10th) 4 by 12:00 Berlin (half of a 24 h day)
    rules = BudgetRules(budgets=(Budget("global", None, "monthly", 300.0),))
    rows = [(date(2026, 3, d), "main", None, None, "opus", "api", 10.0) for d in range(1, 10)]
    rows.append((date(2026, 3, 10), "main", None, None, "opus", "api", 4.0))
    now = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
    st = budget_status(usage(rows), rules.budgets[0], now, TZ, rules)
    # rate: the last 7 days = Mar 4-9 (60) + today's 4 over 6.5 days = 64 / 6.5 per day
    rate = 64 / 6.5
    left = 22 - 0.5  # the rest of March 10 (half a day) and March 11-31 (21 days)
    assert st.spend_usd == 94.0
    assert st.projected_usd == pytest.approx(94 + rate * left)
    # 206 to go at that rate: 20.92 days from now (12:00 on the 10th) -> the 31st
    days_needed = 206 / rate
    assert 20 < days_needed < 21.5 and st.crosses_at == "2026-03-31"
    # daily budget 10: 4 spent in 12 hours -> 8 by the end of the day, never crossed today
    daily = budget_status(usage(rows), Budget("global", None, "daily", 10.0), now, TZ, rules)
    assert daily.projected_usd == pytest.approx(8.0) and daily.crosses_at is None
    # daily budget 6: crossed at 4 + 6h * 1/3 per hour ... 18:00 Berlin = 17:00 UTC
    six = budget_status(usage(rows), Budget("global", None, "daily", 6.0), now, TZ, rules)
    assert six.crosses_at == "2026-03-10T17:00:00Z"
    # the alert text carries the forecast
    (alert,) = budget_alerts(
        usage(rows), BudgetRules(budgets=(Budget("global", None, "monthly", 150.0),)), now, TZ
    )[0]
    assert "at the recent rate $" in alert["message"] and "crossing the limit at 2026-03-" in alert["message"]


def test_a_5_hour_window_across_midnight_and_its_reset_time():
    w = SubscriptionWindow("anthropic", "5h", limit_tokens=100_000)
    t = datetime(2026, 3, 9, 22, 30, tzinfo=UTC)  # 23:30 in Berlin: the window runs past midnight
    calls = pl.DataFrame(
        {
            "timestamp": [
                t - timedelta(hours=6),
                t,
                t + timedelta(hours=1),
                t + timedelta(hours=3, minutes=59),
            ],
            "provider": ["anthropic"] * 4,
            "billing": ["subscription"] * 4,
            "total_tokens": [90_000, 30_000, 20_000, 35_000],
        },
        schema={
            "timestamp": pl.Datetime("us", "UTC"),
            "provider": pl.String,
            "billing": pl.String,
            "total_tokens": pl.Int64,
        },
    )
    st = window_status(calls, w, t + timedelta(hours=4))
    assert st.start == t and st.resets_at == t + timedelta(
        hours=5
    )  # the 6-hours-earlier call's window has ended
    assert (st.tokens, st.requests) == (85_000, 3) and st.percent == pytest.approx(85.0)
    assert window_status(calls, w, t + timedelta(hours=5, minutes=1)).start is None  # reset: nothing used yet
    rules = BudgetRules(windows=(w,))
    alerts = evaluate_alerts_daily(usage([]), calls, _rules(rules), t + timedelta(hours=4), TZ)
    assert alerts.get_column("alert_id").to_list() == [
        "subscription_window:anthropic:5h:2026-03-09T22:30Z:50",
        "subscription_window:anthropic:5h:2026-03-09T22:30Z:80",
    ]
    assert "resets at 2026-03-10T03:30Z" in alerts.get_column("message")[0]


def _rules(budgets: BudgetRules):
    from dataclasses import replace

    from mc_pipeline.alerting.rules import AlertRules

    return replace(AlertRules(), budgets=budgets)


def test_budgets_and_windows_are_read_from_the_rules_file(tmp_path):
    f = tmp_path / "rules.toml"
    f.write_text(
        '[budgets]\nthresholds_percent = [75, 100]\n[[budgets.budget]]\nscope = "agent"\nname = "coder"\n'
        'period = "monthly"\nlimit_usd = 120\n[[subscription_window]]\nprovider = "openai-codex"\n'
        'window = "weekly"\nlimit_requests = 500\n[action]\ncommand = "notify-send budget"\ntimeout_s = 5\n'
    )
    rules = load_alert_rules(f)
    assert rules.budgets.thresholds == (75.0, 100.0)
    assert rules.budgets.budgets == (Budget("agent", "coder", "monthly", 120.0),)
    assert rules.budgets.windows == (SubscriptionWindow("openai-codex", "weekly", None, 500),)
    assert rules.action == ("notify-send", "budget") and rules.action_timeout_s == 5.0
    f.write_text('[[budgets.budget]]\nscope = "team"\nlimit_usd = 1\n')
    with pytest.raises(ValueError, match="scope must be one of"):
        load_alert_rules(f)


def _alert(aid: str, severity: str) -> dict:
    return {
        "alert_id": aid,
        "rule": "budget",
        "scope": "agent:coder",
        "period": "2026-03",
        "severity": severity,
        "message": f"{aid} fired",
        "value": 1.0,
        "limit": 1.0,
        "raised_at": datetime(2026, 3, 10, tzinfo=UTC),
    }


def test_the_action_runs_once_per_critical_alert_and_its_failure_is_recorded(tmp_path):
    out = tmp_path / "stdin.jsonl"
    ok = [
        sys.executable,
        "-c",
        f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + '\\n'); print('paused')",
    ]
    ad.record_alerts([_alert("a:1", "critical"), _alert("w:1", "warning")], tmp_path)
    # not configured: never run
    ad.deliver_pending(tmp_path, [], log=lambda m: None)
    assert not out.exists() and "action" not in ad.read_state(tmp_path)["alerts"]["a:1"]
    # configured later: alerts already seen do not get it; a new critical alert does, once
    ad.record_alerts([_alert("a:2", "critical")], tmp_path)
    for _ in range(3):
        report = ad.deliver_pending(tmp_path, [], log=lambda m: None, action=ok, action_timeout_s=10)
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["alert_id"] == "a:2"
    record = ad.read_state(tmp_path)["alerts"]["a:2"]["action"]
    assert record["exit_code"] == 0 and record["output"].strip() == "paused" and record["finished_at"]
    assert report.actions == []  # the third round ran nothing
    # a failing and a hanging command: recorded, not retried
    ad.record_alerts([_alert("a:3", "critical"), _alert("a:4", "critical")], tmp_path)
    ad.deliver_pending(
        tmp_path, [], log=lambda m: None, action=[sys.executable, "-c", "import sys; sys.exit(3)"]
    )
    state = ad.read_state(tmp_path)["alerts"]
    assert (
        state["a:3"]["action"]["exit_code"] == 3 and state["a:3"]["action"]["error"] == "exited with status 3"
    )
    ad.record_alerts([_alert("a:5", "critical")], tmp_path)
    ad.deliver_pending(
        tmp_path,
        [],
        log=lambda m: None,
        action=[sys.executable, "-c", "import time; time.sleep(5)"],
        action_timeout_s=0.5,
    )
    five = ad.read_state(tmp_path)["alerts"]["a:5"]["action"]
    assert five["exit_code"] is None and five["error"] == "timed out after 0.5 s"
    assert "w:1" not in {k for k, v in ad.read_state(tmp_path)["alerts"].items() if "action" in v}
