"""Budgets people ask for: per agent, cron job, model, provider or everything, per day or month, with
warning thresholds, a forecast, and rolling subscription windows (pure; rules in ``alert_rules.toml``).

A budget (``[[budgets.budget]]``: ``scope`` = ``global`` | ``agent`` | ``cron_job`` | ``model`` | ``provider``
| ``home`` (a fleet's home, MC_OPENCLAW_HOMES), ``name``, ``period`` = ``daily`` | ``monthly``, ``limit_usd``)
is evaluated on the current period of the per-day aggregate ``usage_daily`` (spend = ``cost_usd``;
subscription calls left out unless ``include_subscription``; a cron job matches its id or its name). Each
threshold (``thresholds_percent``, default 50, 80, 100) that the spend reaches raises one alert per period
(``alert_id`` ``budget:<scope>=<name>:<period>:<threshold>``): warning below 100%, critical at 100%.

Forecast, at the recent rate: a daily budget projects today's spend per elapsed hour to the end of the day
(and the time the limit is crossed); a monthly budget adds, to the month so far, the mean daily spend of
the last :data:`RATE_DAYS` days (today counted for the hours elapsed) times the days left, and gives the
date the limit is crossed (``None`` when the rate is zero or the month ends first). Shown in
``usage-data.json`` ``budgets[]`` and in each budget alert's text.

Subscription windows (``[[subscription_window]]``: ``provider``, ``window`` = ``5h`` | ``weekly``,
``limit_tokens`` or ``limit_requests``): the plan quotas of Claude Max, ChatGPT Plus and the like. A
window starts at the first call after the previous one ended and lasts 5 hours (or 7 days); the current
window's use and its reset time come from the calls of the last 8 days (``llm_calls``: ``timestamp``,
``provider``, ``billing``, ``total_tokens``) with ``billing = subscription``. Thresholds as for budgets
(``alert_id`` ``subscription_window:<provider>:<window>:<window start>:<threshold>``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

SCOPES = ("global", "agent", "cron_job", "model", "provider", "home")
PERIODS = ("daily", "monthly")
WINDOWS = {"5h": timedelta(hours=5), "weekly": timedelta(days=7)}
DEFAULT_THRESHOLDS = (50.0, 80.0, 100.0)
#: Days the monthly forecast's rate is the mean of (today counted for the hours elapsed).
RATE_DAYS = 7


class BudgetRulesError(ValueError):
    """A budget or window definition that cannot be used, named with why."""


@dataclass(frozen=True)
class Budget:
    scope: str
    name: str | None
    period: str
    limit_usd: float

    @property
    def label(self) -> str:
        return "all spend" if self.scope == "global" else f"{self.scope.replace('_', ' ')} {self.name}"

    @property
    def key(self) -> str:
        return f"{self.scope}={self.name or '*'}"


@dataclass(frozen=True)
class SubscriptionWindow:
    provider: str
    window: str
    limit_tokens: int | None = None
    limit_requests: int | None = None


@dataclass(frozen=True)
class BudgetRules:
    budgets: tuple[Budget, ...] = ()
    windows: tuple[SubscriptionWindow, ...] = ()
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    include_subscription: bool = False


def rules_from_doc(
    doc: Mapping, where: str = "alert rules", include_subscription: bool = False
) -> BudgetRules:
    section = doc.get("budgets", {}) or {}
    thresholds = section.get("thresholds_percent", list(DEFAULT_THRESHOLDS))
    if (
        not isinstance(thresholds, list)
        or not thresholds
        or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 1000 for t in thresholds
        )
    ):
        raise BudgetRulesError(
            f"{where}: budgets.thresholds_percent must be a list of percents, e.g. [50, 80, 100]"
        )
    budgets = []
    for i, b in enumerate(section.get("budget", []) or [], 1):
        if not isinstance(b, Mapping):
            raise BudgetRulesError(f"{where}: budgets.budget #{i} must be a table")
        scope, period, limit = b.get("scope", "global"), b.get("period", "daily"), b.get("limit_usd")
        name = b.get("name")
        if scope not in SCOPES:
            raise BudgetRulesError(
                f"{where}: budgets.budget #{i}: scope must be one of {', '.join(SCOPES)}, not {scope!r}"
            )
        if period not in PERIODS:
            raise BudgetRulesError(
                f"{where}: budgets.budget #{i}: period must be daily or monthly, not {period!r}"
            )
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0:
            raise BudgetRulesError(
                f"{where}: budgets.budget #{i}: limit_usd must be a positive number, not {limit!r}"
            )
        if scope != "global" and not (isinstance(name, str) and name.strip()):
            raise BudgetRulesError(f"{where}: budgets.budget #{i}: a {scope} budget needs a name")
        budgets.append(Budget(scope, name.strip() if isinstance(name, str) else None, period, float(limit)))
    windows = []
    for i, w in enumerate(doc.get("subscription_window", []) or [], 1):
        if (
            not isinstance(w, Mapping)
            or not isinstance(w.get("provider"), str)
            or w.get("window") not in WINDOWS
        ):
            raise BudgetRulesError(
                f'{where}: subscription_window #{i} needs provider and window = "5h" or "weekly"'
            )
        tokens, requests = w.get("limit_tokens"), w.get("limit_requests")
        if (tokens is None) == (requests is None) or not all(
            x is None or (isinstance(x, int) and not isinstance(x, bool) and x > 0)
            for x in (tokens, requests)
        ):
            raise BudgetRulesError(
                f"{where}: subscription_window #{i} needs one of limit_tokens or limit_requests (> 0)"
            )
        windows.append(SubscriptionWindow(w["provider"], w["window"], tokens, requests))
    return BudgetRules(
        tuple(budgets), tuple(windows), tuple(sorted(float(t) for t in thresholds)), include_subscription
    )


# -- evaluation ------------------------------------------------------------------------------------------
def _scoped(usage: pl.DataFrame, b: Budget, include_subscription: bool) -> pl.DataFrame:
    if not include_subscription:
        usage = usage.filter(pl.col("billing").fill_null("unknown") != "subscription")
    if b.scope == "agent":
        return usage.filter(pl.col("agent_id") == b.name)
    if b.scope == "cron_job":
        return usage.filter((pl.col("cron_job_id") == b.name) | (pl.col("cron_job_name") == b.name))
    if b.scope == "model":
        return usage.filter(pl.col("model") == b.name)
    if b.scope == "provider":
        return usage.filter(pl.col("provider") == b.name)
    if b.scope == "home":  # a fleet's agents are <home>/<agent>
        return usage.filter(pl.col("agent_id").str.starts_with(f"{b.name}/"))
    return usage


def _spend(frame: pl.DataFrame, start: date, end: date) -> float:
    return float(frame.filter(pl.col("day").is_between(start, end)).get_column("cost_usd").sum() or 0.0)


@dataclass
class BudgetStatus:
    budget: Budget
    period: str  # 2026-03-04 | 2026-03
    spend_usd: float
    percent: float
    projected_usd: float
    crosses_at: str | None  # ISO time (daily) or date (monthly) the limit is crossed at the recent rate
    crossed: bool
    thresholds_reached: list[float] = field(default_factory=list)

    def as_json(self) -> dict:
        b = self.budget
        return {
            "scope": b.scope,
            "name": b.name,
            "period": b.period,
            "periodKey": self.period,
            "limitUsd": b.limit_usd,
            "spendUsd": self.spend_usd,
            "percent": round(self.percent, 2),
            "projectedUsd": round(self.projected_usd, 6),
            "crossesAt": self.crosses_at,
            "crossed": self.crossed,
            "thresholdsReached": self.thresholds_reached,
        }


def budget_status(usage: pl.DataFrame, b: Budget, now: datetime, tz: str, rules: BudgetRules) -> BudgetStatus:
    """One budget's current period: spend, percent, forecast (see the module doc)."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    today = local.date()
    frame = _scoped(usage, b, rules.include_subscription)
    day_start = datetime(today.year, today.month, today.day, tzinfo=zone)
    elapsed_h = max((local - day_start).total_seconds() / 3600, 1 / 60)
    day_hours = (
        (day_start + timedelta(days=1)).astimezone(UTC) - day_start.astimezone(UTC)
    ).total_seconds() / 3600
    today_spend = _spend(frame, today, today)
    if b.period == "daily":
        spend, key = today_spend, today.isoformat()
        per_hour = today_spend / elapsed_h
        projected = per_hour * day_hours
        crosses = None
        if spend >= b.limit_usd:
            crosses = None
        elif per_hour > 0:
            at = local + timedelta(hours=(b.limit_usd - spend) / per_hour)
            if at.date() == today:
                crosses = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    else:
        first = today.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        spend, key = _spend(frame, first, today), f"{today.year:04d}-{today.month:02d}"
        past = _spend(frame, today - timedelta(days=RATE_DAYS - 1), today - timedelta(days=1))
        rate = (past + today_spend) / (RATE_DAYS - 1 + elapsed_h / day_hours)  # per day
        left = (nxt - today).days - elapsed_h / day_hours  # the rest of today and the days after it
        projected = spend + rate * left
        crosses = None
        if spend < b.limit_usd and rate > 0:
            days_needed = (b.limit_usd - spend) / rate
            if days_needed <= left:
                crosses = (
                    today + timedelta(days=math.floor(elapsed_h / day_hours + days_needed))
                ).isoformat()
    percent = 100.0 * spend / b.limit_usd
    reached = [t for t in rules.thresholds if percent >= t]
    return BudgetStatus(b, key, spend, percent, projected, crosses, spend >= b.limit_usd, reached)


def _usd(x: float) -> str:
    return f"${x:,.2f}"


def budget_alerts(
    usage: pl.DataFrame, rules: BudgetRules, now: datetime, tz: str
) -> tuple[list[dict], list[BudgetStatus]]:
    """(alert rows for ``schemas.ALERTS``, every budget's status)."""
    alerts, statuses = [], []
    for b in rules.budgets:
        st = budget_status(usage, b, now, tz, rules)
        statuses.append(st)
        for t in st.thresholds_reached:
            forecast = f"; at the recent rate {_usd(st.projected_usd)} by the end of the period" + (
                f", crossing the limit at {st.crosses_at}" if st.crosses_at else ""
            )
            alerts.append(
                {
                    "alert_id": f"budget:{b.key}:{st.period}:{t:g}",
                    "rule": "budget",
                    "scope": f"{b.scope}:{b.name or '*'}",
                    "period": st.period,
                    "severity": "critical" if t >= 100 else "warning",
                    "message": f"{b.period.capitalize()} budget of {b.label} {st.period}: "
                    f"{_usd(st.spend_usd)} is {st.percent:.0f}% of {_usd(b.limit_usd)} "
                    f"(threshold {t:g}%){forecast}",
                    "value": st.spend_usd,
                    "limit": b.limit_usd * t / 100,
                    "raised_at": now,
                }
            )
    return alerts, statuses


@dataclass
class WindowStatus:
    window: SubscriptionWindow
    start: datetime | None
    resets_at: datetime | None
    tokens: int
    requests: int

    @property
    def used(self) -> int:
        return self.tokens if self.window.limit_tokens is not None else self.requests

    @property
    def limit(self) -> int:
        return (
            self.window.limit_tokens if self.window.limit_tokens is not None else self.window.limit_requests
        )

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.limit

    def as_json(self) -> dict:
        w = self.window
        iso = lambda t: t.astimezone(UTC).isoformat().replace("+00:00", "Z") if t else None  # noqa: E731
        return {
            "provider": w.provider,
            "window": w.window,
            "start": iso(self.start),
            "resetsAt": iso(self.resets_at),
            "tokens": self.tokens,
            "requests": self.requests,
            "limitTokens": w.limit_tokens,
            "limitRequests": w.limit_requests,
            "percent": round(self.percent, 2),
        }


def window_status(calls: pl.DataFrame, w: SubscriptionWindow, now: datetime) -> WindowStatus:
    """The window holding ``now``: windows start at the first call after the previous one ended (how plan
    quotas reset); none holds now when the last one ended (use 0 until the next call)."""
    span = WINDOWS[w.window]
    rows = (
        calls.filter(
            (pl.col("provider") == w.provider)
            & (pl.col("billing") == "subscription")
            & (pl.col("timestamp") <= now)
            & (pl.col("timestamp") > now - timedelta(days=8))
        )
        .sort("timestamp")
        .select("timestamp", "total_tokens")
    )
    start = end = None
    for ts in rows.get_column("timestamp").to_list():
        if end is None or ts >= end:
            start, end = ts, ts + span
    if end is None or now >= end:
        return WindowStatus(w, None, None, 0, 0)
    inside = rows.filter(pl.col("timestamp") >= start)
    return WindowStatus(w, start, end, int(inside.get_column("total_tokens").sum() or 0), inside.height)


def window_alerts(
    calls: pl.DataFrame, rules: BudgetRules, now: datetime
) -> tuple[list[dict], list[WindowStatus]]:
    alerts, statuses = [], []
    for w in rules.windows:
        st = window_status(calls, w, now)
        statuses.append(st)
        if st.start is None:
            continue
        what = "tokens" if w.limit_tokens is not None else "requests"
        for t in rules.thresholds:
            if st.percent >= t:
                start = st.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
                alerts.append(
                    {
                        "alert_id": f"subscription_window:{w.provider}:{w.window}:{start}:{t:g}",
                        "rule": "subscription_window",
                        "scope": f"{w.provider}:{w.window}",
                        "period": start,
                        "severity": "critical" if t >= 100 else "warning",
                        "message": f"{w.provider} {w.window} window since {start}: "
                        f"{st.used:,} {what} is {st.percent:.0f}% of {st.limit:,} (threshold {t:g}%); "
                        f"resets at {st.resets_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%MZ')}",
                        "value": float(st.used),
                        "limit": st.limit * t / 100,
                        "raised_at": now,
                    }
                )
    return alerts, statuses
