"""The Mission Control dashboard's files: ``usage-data.json`` and ``sessions.json``. Pure.

The contract: docs/dashboard-contract.md#usage-data-file, docs/dashboard-contract.md#sessions-file.

Every figure comes from the marts (:mod:`mc_pipeline.reporting.marts`), so the file and the Parquet tables
agree. Costs skip unpriced calls (their cost is unknown, not $0); how many there are is in ``costSources``.
Nothing personal: no message text, no session keys, no paths; session ids are UUIDs or salted hashes.

Windows: ``summary.weekTotal`` = last 7 days including today, ``monthTotal`` = last 30 days (the page's
30-day view divides shares by it), ``monthToDate`` = the calendar month so far,
``daily`` = the last 30 calendar days, zero-filled, oldest first, ending today. The lists
(``providers``, ``models``, ``taskTypes``, ``agents``, ``triggers``, ``cronJobs``, ``sessions``) and
``thinking`` cover ``LISTS_WINDOW`` (last 30 days, named in ``listsWindow``); the other ``summary``
totals and ``costSources`` are all time; ``health`` is the last 7 days (the dashboard labels it so).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from mc_pipeline import __version__
from mc_pipeline.calls.daily import DailyTables, daily_tables
from mc_pipeline.reporting.marts import DEFAULT_SALT, Marts, fsum, marts_from_daily, sums, window_start
from mc_pipeline.tables.schemas import conform

DAILY_DAYS = 30
#: Window of the lists (providers, models, task types, agents, triggers, cron jobs, sessions, thinking):
#: the dashboard shows them as "this month" beside the 30-day ``daily`` list.
LISTS_WINDOW = "last_30_days"
GENERATOR = "mc_pipeline"


def iso_z(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _num(value: object) -> float | int:
    """A JSON number; polars' None for an empty sum is 0."""
    if value is None:
        return 0
    return value  # type: ignore[return-value]


def _opt(value: float | None) -> float | None:
    return None if value is None else float(value)


def _window(frame: pl.DataFrame, window: str) -> pl.DataFrame:
    return frame.filter(pl.col("window") == window)


def _totals(frame: pl.DataFrame) -> dict:
    """Sums of a usage mart's measures (0 when empty)."""
    cols = [
        "calls",
        "failed_calls",
        "total_tokens",
        "cost_usd",
        "unpriced_calls",
        "recorded_cost_usd",
        "calculated_cost_usd",
        "api_cost_usd",
        "subscription_value_usd",
    ]
    row = frame.select(sums(frame, cols)).row(0, named=True) if frame.height else {}
    return {c: _num(row.get(c)) for c in cols}


def _entry(name: str, row: dict) -> dict:
    """The dashboard's ``{name, cost, tokens, requests}`` plus the richer fields."""
    return {
        "name": name,
        "cost": float(_num(row["cost_usd"])),
        "tokens": int(_num(row["total_tokens"])),
        "requests": int(_num(row["calls"])),
        "failedRequests": int(_num(row["failed_calls"])),
        "unpricedRequests": int(_num(row["unpriced_calls"])),
        "inputTokens": int(_num(row["input_tokens"])),
        "outputTokens": int(_num(row["output_tokens"])),
        "cacheReadTokens": int(_num(row["cache_read_tokens"])),
        "cacheWriteTokens": int(_num(row["cache_write_tokens"])),
        "thinkingTokens": int(_num(row["thinking_tokens"])),
        "avgCostPerCall": _opt(row.get("avg_cost_per_call_usd")),
        "errorRate": _opt(row.get("error_rate")),
    }


_SUMMABLE = [
    "calls",
    "failed_calls",
    "unpriced_calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "total_tokens",
    "thinking_tokens",
    "cost_usd",
]


def _entries(frame: pl.DataFrame, key: str) -> list[dict]:
    """Entries by ``key`` (summed over other keys), sorted by cost desc, then requests, then name."""
    if frame.height == 0:
        return []
    grouped = (
        frame.group_by(key)
        .agg(sums(frame, _SUMMABLE))
        .with_columns(
            avg_cost_per_call_usd=pl.when(pl.col("calls") > pl.col("unpriced_calls")).then(
                pl.col("cost_usd") / (pl.col("calls") - pl.col("unpriced_calls"))
            ),
            error_rate=pl.when(pl.col("calls") > 0).then(pl.col("failed_calls") / pl.col("calls")),
        )
        .sort(["cost_usd", "calls", key], descending=[True, True, False], nulls_last=True)
    )
    return [
        _entry(str(r[key]) if r[key] is not None else "unknown", r) for r in grouped.iter_rows(named=True)
    ]


def _breakdown(frame: pl.DataFrame, key: str) -> dict[str, dict]:
    return {
        e["name"]: {"cost": e["cost"], "requests": e["requests"], "tokens": e["tokens"]}
        for e in _entries(frame, key)
    }


def daily_entries(marts: Marts, daily: DailyTables, today: date) -> list[dict]:
    """One entry per calendar day of the last 30, oldest first, ending today; days without calls are 0."""
    start = today - timedelta(days=DAILY_DAYS - 1)
    usage = marts.usage_daily.filter(pl.col("day").is_between(start, today))
    sessions = dict(
        daily.sessions_daily.filter(pl.col("day").is_between(start, today))
        .group_by("day")
        .agg(pl.struct("agent_id", "session_id").n_unique())
        .iter_rows()
    )
    by_day = usage.partition_by("day", as_dict=True)
    out = []
    for i in range(DAILY_DAYS):
        day = start + timedelta(days=i)
        part = by_day.get((day,), usage.clear())
        t = _totals(part)
        out.append(
            {
                "date": day.isoformat(),
                "cost": float(t["cost_usd"]),
                "tokens": int(t["total_tokens"]),
                "requests": int(t["calls"]),
                "failedRequests": int(t["failed_calls"]),
                "unpricedRequests": int(t["unpriced_calls"]),
                "sessions": int(sessions.get(day, 0)),
                "byProvider": _breakdown(part, "provider"),
                "byModel": _breakdown(part, "model"),
            }
        )
    return out


def _thinking(marts: Marts, window: str) -> dict:
    rows = _window(marts.thinking_stats, window).to_dicts()
    r = rows[0] if rows else {}
    return {
        "window": window,
        "total_thinking": int(_num(r.get("thinking_tokens"))),
        "calls_with_thinking": int(_num(r.get("calls_with_thinking"))),
        "max_thinking_tokens": int(_num(r.get("max_thinking_tokens"))),
        # the mean over calls with thinking; 0 when there were none (calls_with_thinking says so)
        "avg_thinking_tokens": float(_num(r.get("avg_thinking_tokens"))),
        "calls_thinking_unknown": int(_num(r.get("calls_thinking_unknown"))),
        "estimated_share": _opt(r.get("estimated_share")),
        "subscription_share": _opt(r.get("subscription_share")),
    }


def _health_rows(frame: pl.DataFrame) -> list[dict]:
    if frame.height == 0:
        return []
    g = (
        frame.group_by("name")
        .agg(
            [
                pl.col(c).sum()
                for c in (
                    "calls",
                    "ok_calls",
                    "error_calls",
                    "aborted_calls",
                    "rate_limit_hits",
                    "server_errors_5xx",
                )
            ]
        )
        .sort("calls", "name", descending=[True, False])
    )
    return [
        {
            "name": r["name"],
            "total_calls": r["calls"],
            "successful_calls": r["ok_calls"],
            "errors": r["error_calls"],
            "aborted": r["aborted_calls"],
            "rate_limits": r["rate_limit_hits"],
            "server_errors": r["server_errors_5xx"],
            "success_rate": round(100.0 * r["ok_calls"] / r["calls"], 2) if r["calls"] else None,
        }
        for r in g.iter_rows(named=True)
    ]


def _health(marts: Marts, today: date) -> dict:
    start = window_start("last_7_days", today)
    recent = marts.api_health.filter(pl.col("day").is_between(start, today))
    providers = _health_rows(recent.filter(pl.col("kind") == "provider"))
    total = sum(p["total_calls"] for p in providers)
    ok = sum(p["successful_calls"] for p in providers)
    return {
        "window": "last_7_days",
        "total_calls": total,
        "successful_calls": ok,
        "rate_limits": sum(p["rate_limits"] for p in providers),
        "errors": sum(p["errors"] for p in providers),
        "aborted": sum(p["aborted"] for p in providers),
        "success_rate": round(100.0 * ok / total, 2) if total else None,  # percent; null without calls
        "byProvider": providers,
        "byService": _health_rows(recent.filter(pl.col("kind") == "service")),
    }


def _alerts(alerts: pl.DataFrame | None) -> list[dict]:
    if alerts is None or alerts.height == 0:
        return []
    cols = ["rule", "period", "severity", "message", "value", "limit"]
    return [
        {c: (float(r[c]) if c in ("value", "limit") and r.get(c) is not None else r.get(c)) for c in cols}
        for r in conform(
            alerts, {c: (pl.Float64() if c in ("value", "limit") else pl.String()) for c in cols}
        ).iter_rows(named=True)
    ]


def _session_list(marts: Marts, window: str) -> list[dict]:
    s = _window(marts.usage_by_session, window)
    return [
        {
            "id": r["session_id"],
            "agent": r["agent_id"],
            "totalCost": float(_num(r["cost_usd"])),
            "tokens": int(_num(r["total_tokens"])),
            "requests": int(_num(r["calls"])),
            "messageCount": int(_num(r["calls"])),  # model calls (assistant messages) in the session
            "duration": int(_num(r["duration_ms"])),  # ms from first to last call
            "unpricedRequests": int(_num(r["unpriced_calls"])),
            "trigger": r["trigger"],
            "channel": r["channel"],
            "cronJobId": r["cron_job_id"],
            "firstCall": iso_z(r["first_call"]),
            "lastCall": iso_z(r["last_call"]),
        }
        for r in s.iter_rows(named=True)
    ]


def _cron_jobs(marts: Marts, window: str) -> list[dict]:
    """Cost per cron job, with the job's name when the state database gives it (a long-standing OpenClaw
    request); ``name`` is the id when the name is unknown."""
    t = _window(marts.usage_by_trigger, window).filter(pl.col("trigger") == "cron")
    names = dict(
        t.select(pl.col("cron_job_id").fill_null("unknown"), "cron_job_name")
        .drop_nulls()
        .unique("cron_job_id")
        .iter_rows()
    )
    return [
        {
            "id": e["name"],
            "name": names.get(e["name"], e["name"]),
            "cost": e["cost"],
            "tokens": e["tokens"],
            "requests": e["requests"],
            "unpricedRequests": e["unpricedRequests"],
        }
        for e in _entries(t.with_columns(pl.col("cron_job_id").fill_null("unknown")), "cron_job_id")
    ]


def _tables(data: DailyTables | pl.DataFrame, salt: str) -> DailyTables:
    """The per-day aggregates (``llm_calls`` rows are aggregated first: for tests and small callers)."""
    return data if isinstance(data, DailyTables) else daily_tables(data, salt)


#: The windows of ``summary`` (each summed over the per-provider mart).
_SUMMARY_WINDOWS = ("today", "last_7_days", "last_30_days", "month_to_date", "all_time")


def _window_totals(marts: Marts) -> dict[str, dict]:
    """The usage totals of each of ``_SUMMARY_WINDOWS``, by window name."""
    return {w: _totals(_window(marts.usage_by_provider, w)) for w in _SUMMARY_WINDOWS}


def _summary(t: dict[str, dict], today: date, sessions_total: int) -> dict:
    """``summary``: the headline totals of the windows, the month's projection and the billing split."""
    week, rolling, month = t["last_7_days"], t["last_30_days"], t["month_to_date"]
    today_t, all_t = t["today"], t["all_time"]
    next_month = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    days_in_month = (next_month - timedelta(days=1)).day
    return {
        # the last 7 and 30 entries of `daily`, as the Costs page sums them and divides provider shares by
        # monthTotal (a calendar month to date there showed "5141% of total" early in a month)
        "weekTotal": float(week["cost_usd"]),
        "monthTotal": float(rolling["cost_usd"]),
        "monthToDate": float(month["cost_usd"]),
        "totalSessions": int(sessions_total),
        "totalRequests": int(all_t["calls"]),
        "totalTokens": int(all_t["total_tokens"]),
        "totalCost": float(all_t["cost_usd"]),
        "todayCost": float(today_t["cost_usd"]),
        "todayRequests": int(today_t["calls"]),
        "weekRequests": int(week["calls"]),
        "monthRequests": int(rolling["calls"]),
        "monthToDateRequests": int(month["calls"]),
        "failedRequests": int(all_t["failed_calls"]),
        "unpricedRequests": int(all_t["unpriced_calls"]),
        # straight-line projection: month so far / days elapsed (today included) x days in the month
        "monthProjected": float(month["cost_usd"]) / today.day * days_in_month,
        "billedCost": float(all_t["api_cost_usd"]),
        "subscriptionValue": float(all_t["subscription_value_usd"]),
        "unknownBillingCost": max(
            0.0, round(all_t["cost_usd"] - all_t["api_cost_usd"] - all_t["subscription_value_usd"], 9)
        ),
        "monthBilledCost": float(month["api_cost_usd"]),
        "monthSubscriptionValue": float(month["subscription_value_usd"]),
    }


def _lists(marts: Marts, window: str) -> dict:
    """Lists of ``window``: by provider, model, task type, agent, trigger, cron job; sessions, thinking."""
    return {
        "providers": _entries(_window(marts.usage_by_provider, window), "provider"),
        "models": _entries(_window(marts.usage_by_model, window), "model"),
        "taskTypes": _entries(_window(marts.usage_by_task_type, window), "task_type"),
        "agents": _entries(_window(marts.usage_by_agent, window), "agent_id"),
        "triggers": _entries(_window(marts.usage_by_trigger, window), "trigger"),
        "cronJobs": _cron_jobs(marts, window),
        "sessions": _session_list(marts, window),
        "thinking": _thinking(marts, window),
    }


def _cost_sources(every: pl.DataFrame, all_t: dict) -> dict:
    """``costSources``: all-time calls and cost recorded by the provider, calculated from prices, unpriced."""
    return {
        "window": "all_time",
        "recorded": {
            "requests": int(every.get_column("recorded_calls").sum() or 0),
            "cost": float(all_t["recorded_cost_usd"]),
        },
        "calculated": {
            "requests": int(every.get_column("calculated_calls").sum() or 0),
            "cost": float(all_t["calculated_cost_usd"]),
        },
        "unpriced": {"requests": int(all_t["unpriced_calls"]), "cost": None},
    }


def _budget_sections(budgets: dict | None) -> dict:
    """``budgets`` and ``subscriptionWindows`` of the budget status (empty lists without one)."""
    return {
        "budgets": (budgets or {}).get("budgets", []),
        "subscriptionWindows": (budgets or {}).get("subscriptionWindows", []),
    }


def build_usage_document(
    data: DailyTables | pl.DataFrame,
    *,
    today: date,
    generated_at: datetime,
    timezone_name: str = "UTC",
    marts: Marts | None = None,
    alerts: pl.DataFrame | None = None,
    salt: str = DEFAULT_SALT,
    budgets: dict | None = None,
) -> dict:
    """The whole ``usage-data.json`` (docs/dashboard-contract.md#usage-data-file plus the richer keys),
    from the per-day aggregates."""
    daily = _tables(data, salt)
    marts = marts or marts_from_daily(daily, today)
    totals = _window_totals(marts)
    sessions_total = _window(marts.usage_by_session, "all_time").height
    return {
        "summary": _summary(totals, today, sessions_total),
        "daily": daily_entries(marts, daily, today),
        "listsWindow": LISTS_WINDOW,
        **_lists(marts, LISTS_WINDOW),
        "health": _health(marts, today),
        "costSources": _cost_sources(daily.usage_daily, totals["all_time"]),
        "alerts": _alerts(alerts),
        **_budget_sections(budgets),
        "timezone": timezone_name,
        "today": today.isoformat(),
        "lastUpdated": iso_z(generated_at),
        "generatedBy": {"name": GENERATOR, "version": __version__},
    }


def _per_session(rows: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """One row per session: its sums, first call and main provider and model; most recent first."""
    return (
        rows.group_by(keys)
        .agg(
            first=pl.col("first_call").min(),
            totalCost=fsum("cost_usd"),
            tokens=pl.col("total_tokens").sum(),
            requests=pl.col("calls").sum(),
            unpriced=pl.col("unpriced_calls").sum(),
            cache_read=pl.col("cache_read_tokens").sum(),
            prompt=pl.col("prompt_tokens").sum(),
        )
        .join(
            rows.group_by(*keys, "provider", "model")
            .agg(n=pl.col("calls").sum(), c=fsum("cost_usd"))
            .sort(["n", "c", "provider", "model"], descending=[True, True, False, False])
            .unique(keys, keep="first", maintain_order=True),
            on=keys,
            how="left",
        )
        .sort(["first", "session_id"], descending=[True, False])
    )


def _session_tools(rows: pl.DataFrame, keys: list[str]) -> dict[tuple, list[dict]]:
    """Per session (agent, id): its tools with call count and cost, costliest first."""
    tools = (
        rows.select(*keys, "tools")
        .explode("tools")
        .drop_nulls("tools")
        .unnest("tools")
        .group_by(*keys, "tool")
        .agg(pl.col("count").sum(), fsum("cost"))
        .sort(["cost", "count", "tool"], descending=[True, True, False], nulls_last=True)
    )
    tool_map: dict[tuple, list[dict]] = {}
    for r in tools.iter_rows(named=True):
        tool_map.setdefault((r["agent_id"], r["session_id"]), []).append(
            {"tool": r["tool"], "count": int(r["count"]), "cost": float(_num(r["cost"]))}
        )
    return tool_map


def _session_entry(r: dict, zone: ZoneInfo, tools: list[dict]) -> dict:
    """One ``sessions.json`` entry of a per-session row."""
    cost = float(_num(r["totalCost"]))
    tokens = int(_num(r["tokens"]))
    return {
        "id": r["session_id"],
        "agent": r["agent_id"],
        "timestamp": iso_z(r["first"]),
        "totalCost": cost,
        "tokens": tokens,
        "requests": int(r["requests"]),
        "unpricedRequests": int(r["unpriced"]),
        "model": r["model"],
        "provider": r["provider"],
        "hourOfDay": r["first"].astimezone(zone).hour,
        "cacheHitRate": (r["cache_read"] / r["prompt"]) if r["prompt"] else 0.0,
        "tokenEfficiency": (cost / tokens * 1000) if tokens else None,
        "toolCalls": tools,
    }


def build_sessions_document(
    data: DailyTables | pl.DataFrame,
    *,
    generated_at: datetime,
    timezone_name: str = "UTC",
    salt: str = DEFAULT_SALT,
) -> dict:
    """``sessions.json`` for the Costs page heatmap: one entry per session, most recent first.

    ``toolCalls[].cost`` shares each model call's cost equally among the tool calls it requested (so the tools
    of a session add up to the cost of its calls that used tools). ``avgDuration`` is left out rather than
    sent as null (the page shows a null as "0ms"): tool run times are not derived from the transcripts yet.
    """
    rows = _tables(data, salt).sessions_daily
    if rows.height == 0:
        return {"lastUpdated": iso_z(generated_at), "sessions": []}
    zone = ZoneInfo(timezone_name)
    keys = ["agent_id", "session_id"]
    tool_map = _session_tools(rows, keys)
    sessions = [
        _session_entry(r, zone, tool_map.get((r["agent_id"], r["session_id"]), []))
        for r in _per_session(rows, keys).iter_rows(named=True)
    ]
    return {"lastUpdated": iso_z(generated_at), "timezone": timezone_name, "sessions": sessions}
