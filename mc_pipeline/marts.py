"""Aggregates of ``llm_calls``: usage per day, provider, model, task type, agent, session and trigger,
thinking statistics and API health. Pure: frames in, frames out; ``today`` is always passed in.

Windows (``MART_WINDOWS``) are calendar days in the reporting zone (the ``day`` column of
``llm_calls`` already is): ``today``; ``last_7_days`` and ``last_30_days`` ending today inclusive;
``month_to_date`` from the 1st; ``all_time`` every call. Costs are sums of ``cost_usd``: unpriced calls
(null cost) add nothing to them and are counted in ``unpriced_calls``.

Public: these frames become CSV files. No session keys, no paths, no text: session ids are UUIDs or,
when a source used something else as its id, a salted hash of it (:func:`public_session_ids`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields
from datetime import date, timedelta

import polars as pl

from mc_pipeline.schemas import (
    API_HEALTH,
    ERROR_CLASSES,
    LLM_CALLS,
    MART_WINDOWS,
    THINKING_STATS,
    USAGE_BY_AGENT,
    USAGE_BY_MODEL,
    USAGE_BY_PROVIDER,
    USAGE_BY_SESSION,
    USAGE_BY_TASK_TYPE,
    USAGE_BY_TRIGGER,
    USAGE_DAILY,
    USAGE_MEASURES,
    conform,
)

TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEFAULT_SALT = "mc_pipeline"


# -- windows --------------------------------------------------------------------------------------------
def window_start(window: str, today: date) -> date | None:
    """First day of ``window`` (inclusive); None for all_time."""
    if window == "today":
        return today
    if window == "last_7_days":
        return today - timedelta(days=6)
    if window == "last_30_days":
        return today - timedelta(days=29)
    if window == "month_to_date":
        return today.replace(day=1)
    if window == "all_time":
        return None
    raise ValueError(f"unknown window {window!r}; one of {', '.join(MART_WINDOWS)}")


def in_window(window: str, today: date) -> pl.Expr:
    start = window_start(window, today)
    if start is None:
        return pl.lit(True)
    return pl.col("day").is_between(pl.lit(start), pl.lit(today), closed="both")


# -- privacy --------------------------------------------------------------------------------------------
def public_session_id(session_id: str | None, salt: str = DEFAULT_SALT) -> str | None:
    """The id itself when it is a UUID (OpenClaw's), else ``s-`` + a salted SHA-256 (keys hold phone numbers)."""
    if session_id is None:
        return None
    if _UUID.match(session_id):
        return session_id.lower()
    return "s-" + hashlib.sha256(f"{salt}\x00{session_id}".encode()).hexdigest()[:20]


def public_session_ids(calls: pl.DataFrame, salt: str = DEFAULT_SALT) -> pl.DataFrame:
    """``calls`` with ``session_id`` made public (mapped once per distinct id, not per row)."""
    ids = calls.select(pl.col("session_id").unique().drop_nulls())
    mapping = ids.with_columns(
        public=pl.Series([public_session_id(s, salt) for s in ids.get_column("session_id")], dtype=pl.String())
    )
    return (
        calls.join(mapping, on="session_id", how="left")
        .with_columns(session_id=pl.col("public"))
        .drop("public")
    )


# -- measures -------------------------------------------------------------------------------------------
def measures() -> list[pl.Expr]:
    """The sums of ``USAGE_MEASURES`` over a group of calls."""
    cost = pl.col("cost_usd")
    return [
        pl.len().cast(pl.Int64).alias("calls"),
        (pl.col("status") != "ok").sum().cast(pl.Int64).alias("failed_calls"),
        *[pl.col(c).sum().cast(pl.Int64).alias(c) for c in TOKEN_COLUMNS],
        pl.col("thinking_tokens").sum().cast(pl.Int64).alias("thinking_tokens"),
        pl.col("thinking_estimated").sum().cast(pl.Int64).alias("thinking_estimated_calls"),
        pl.col("tool_calls").sum().cast(pl.Int64).alias("tool_calls"),
        cost.sum().alias("cost_usd"),
        cost.filter(pl.col("cost_source") == "recorded").sum().alias("recorded_cost_usd"),
        cost.filter(pl.col("cost_source") == "calculated").sum().alias("calculated_cost_usd"),
        (pl.col("cost_source") == "unpriced").sum().cast(pl.Int64).alias("unpriced_calls"),
        cost.filter(pl.col("billing") == "api").sum().alias("api_cost_usd"),
        cost.filter(pl.col("billing") == "subscription").sum().alias("subscription_value_usd"),
    ]


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den > 0).then(num / den).otherwise(None)


def ratios() -> list[pl.Expr]:
    prompt = pl.col("input_tokens") + pl.col("cache_read_tokens") + pl.col("cache_write_tokens")
    return [
        _ratio(pl.col("cost_usd"), pl.col("calls") - pl.col("unpriced_calls")).alias("avg_cost_per_call_usd"),
        _ratio(prompt.cast(pl.Float64), pl.col("output_tokens").cast(pl.Float64)).alias("input_output_ratio"),
        _ratio(pl.col("failed_calls").cast(pl.Float64), pl.col("calls").cast(pl.Float64)).alias("error_rate"),
    ]


def _prepare(calls: pl.DataFrame) -> pl.DataFrame:
    return conform(calls, LLM_CALLS)


def by_window(
    calls: pl.DataFrame, today: date, keys: list[str], schema: dict, extra: list[pl.Expr] | None = None
) -> pl.DataFrame:
    """One group per (window, keys), windows in ``MART_WINDOWS`` order, each sorted by cost then calls."""
    parts = []
    for window in MART_WINDOWS:
        part = calls.filter(in_window(window, today))
        if part.height == 0:
            continue
        grouped = (
            part.group_by(keys)
            .agg(measures() + (extra or []))
            .with_columns(ratios())
            .with_columns(window=pl.lit(window))
            .sort(["cost_usd", "calls", *keys], descending=[True, True] + [False] * len(keys), nulls_last=True)
        )
        parts.append(conform(grouped, schema))
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


# -- the marts ------------------------------------------------------------------------------------------
DAILY_KEYS = ["day", "agent_id", "provider", "model", "task_type", "billing", "trigger"]


def usage_daily(calls: pl.DataFrame) -> pl.DataFrame:
    """Day x agent x provider x model x task type x billing x trigger (all history, oldest first)."""
    calls = _prepare(calls)
    out = calls.group_by(DAILY_KEYS).agg(measures()).sort(DAILY_KEYS, nulls_last=True)
    return conform(out, USAGE_DAILY)


def usage_by_provider(calls: pl.DataFrame, today: date) -> pl.DataFrame:
    return by_window(_prepare(calls), today, ["provider"], USAGE_BY_PROVIDER)


def usage_by_model(calls: pl.DataFrame, today: date) -> pl.DataFrame:
    return by_window(_prepare(calls), today, ["provider", "model"], USAGE_BY_MODEL)


def usage_by_task_type(calls: pl.DataFrame, today: date) -> pl.DataFrame:
    return by_window(_prepare(calls), today, ["task_type"], USAGE_BY_TASK_TYPE)


def usage_by_agent(calls: pl.DataFrame, today: date) -> pl.DataFrame:
    return by_window(_prepare(calls), today, ["agent_id"], USAGE_BY_AGENT)


def usage_by_trigger(calls: pl.DataFrame, today: date) -> pl.DataFrame:
    return by_window(_prepare(calls), today, ["trigger", "channel", "cron_job_id", "cron_job_name"], USAGE_BY_TRIGGER)


def main_models(calls: pl.DataFrame) -> pl.DataFrame:
    """Per (agent, session): the provider/model with the most calls (then cost, then name)."""
    return (
        calls.group_by("agent_id", "session_id", "provider", "model")
        .agg(n=pl.len(), c=pl.col("cost_usd").sum())
        .sort(["n", "c", "provider", "model"], descending=[True, True, False, False])
        .unique(["agent_id", "session_id"], keep="first", maintain_order=True)
        .select("agent_id", "session_id", "provider", "model")
    )


def usage_by_session(calls: pl.DataFrame, today: date, salt: str = DEFAULT_SALT) -> pl.DataFrame:
    """Per session and window; the session id is public (UUID or salted hash), never the session key."""
    calls = public_session_ids(_prepare(calls), salt)
    extra = [
        pl.col("trigger").drop_nulls().first().alias("trigger"),
        pl.col("channel").drop_nulls().first().alias("channel"),
        pl.col("cron_job_id").drop_nulls().first().alias("cron_job_id"),
        pl.col("timestamp").min().alias("first_call"),
        pl.col("timestamp").max().alias("last_call"),
    ]
    out = by_window(calls, today, ["agent_id", "session_id"], {**USAGE_BY_SESSION}, extra)
    if out.height == 0:
        return out
    models = main_models(calls)
    out = (
        out.drop("provider", "model")
        .join(models, on=["agent_id", "session_id"], how="left", nulls_equal=True, maintain_order="left")
        .with_columns(duration_ms=(pl.col("last_call") - pl.col("first_call")).dt.total_milliseconds())
    )
    return conform(out, USAGE_BY_SESSION)


def thinking_stats(calls: pl.DataFrame, today: date) -> pl.DataFrame:
    """Thinking per window: totals, calls with thinking, max, average, share estimated, share on subscription."""
    calls = _prepare(calls)
    t = pl.col("thinking_tokens")
    rows = []
    for window in MART_WINDOWS:
        part = calls.filter(in_window(window, today))
        if part.height == 0:
            continue
        rows.append(
            part.select(
                window=pl.lit(window),
                calls=pl.len().cast(pl.Int64),
                calls_with_thinking=(t > 0).sum().cast(pl.Int64),
                calls_thinking_unknown=t.is_null().sum().cast(pl.Int64),
                thinking_tokens=t.sum().cast(pl.Int64),
                max_thinking_tokens=t.max().fill_null(0).cast(pl.Int64),
                avg_thinking_tokens=t.filter(t > 0).mean(),
                estimated_thinking_tokens=t.filter(pl.col("thinking_estimated")).sum().cast(pl.Int64),
                subscription_thinking_tokens=t.filter(pl.col("billing") == "subscription").sum().cast(pl.Int64),
            ).with_columns(
                estimated_share=_ratio(pl.col("estimated_thinking_tokens"), pl.col("thinking_tokens")),
                subscription_share=_ratio(pl.col("subscription_thinking_tokens"), pl.col("thinking_tokens")),
            )
        )
    return conform(pl.concat(rows), THINKING_STATS) if rows else pl.DataFrame(schema=THINKING_STATS)


def _health_aggs(status_ok: pl.Expr, status_error: pl.Expr, aborted: pl.Expr, error_class: pl.Expr,
                 http: pl.Expr) -> list[pl.Expr]:
    return [
        pl.len().cast(pl.Int64).alias("calls"),
        status_ok.sum().cast(pl.Int64).alias("ok_calls"),
        status_error.sum().cast(pl.Int64).alias("error_calls"),
        aborted.sum().cast(pl.Int64).alias("aborted_calls"),
        (~status_ok & ~status_error & ~aborted).sum().cast(pl.Int64).alias("unknown_status_calls"),
        *[(error_class == c).sum().cast(pl.Int64).alias(f"errors_{c}") for c in ERROR_CLASSES],
        ((error_class == "rate_limit") | (http == 429)).sum().cast(pl.Int64).alias("rate_limit_hits"),
        http.is_between(500, 599).fill_null(False).sum().cast(pl.Int64).alias("server_errors_5xx"),
        pl.col("duration_ms").mean().alias("avg_duration_ms"),
    ]


def api_health(calls: pl.DataFrame, api_calls: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per provider and day from ``llm_calls``, plus per service and day from ``api_calls`` when given."""
    calls = _prepare(calls)
    status = pl.col("status")
    providers = (
        calls.group_by("provider", "day")
        .agg(
            _health_aggs(
                status == "ok",
                status == "error",
                status == "aborted",
                pl.col("error_class"),
                pl.col("http_status"),
            )
        )
        .rename({"provider": "name"})
        .with_columns(kind=pl.lit("provider"))
    )
    parts = [providers]
    if api_calls is not None and api_calls.height:
        ok = pl.col("ok")
        known = pl.col("error_class").is_in(list(ERROR_CLASSES))
        cls = pl.when(ok.fill_null(True)).then(None).when(known).then(pl.col("error_class")).otherwise(pl.lit("other"))
        services = (
            api_calls.group_by("service", "day")
            .agg(_health_aggs(ok.fill_null(False), (~ok).fill_null(False), pl.lit(False), cls, pl.col("status_code")))
            .rename({"service": "name"})
            .with_columns(kind=pl.lit("service"))
        )
        parts.append(services)
    out = pl.concat([conform(p.with_columns(success_rate=_ratio(
        pl.col("ok_calls").cast(pl.Float64), pl.col("calls").cast(pl.Float64))), API_HEALTH) for p in parts])
    return out.sort("kind", "day", "name", nulls_last=True)


@dataclass
class Marts:
    """Every mart, built together from one ``llm_calls`` frame and one ``today``."""

    usage_daily: pl.DataFrame
    usage_by_provider: pl.DataFrame
    usage_by_model: pl.DataFrame
    usage_by_task_type: pl.DataFrame
    usage_by_agent: pl.DataFrame
    usage_by_session: pl.DataFrame
    usage_by_trigger: pl.DataFrame
    thinking_stats: pl.DataFrame
    api_health: pl.DataFrame

    def items(self) -> list[tuple[str, pl.DataFrame]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def build_marts(
    calls: pl.DataFrame, today: date, api_calls: pl.DataFrame | None = None, salt: str = DEFAULT_SALT
) -> Marts:
    return Marts(
        usage_daily=usage_daily(calls),
        usage_by_provider=usage_by_provider(calls, today),
        usage_by_model=usage_by_model(calls, today),
        usage_by_task_type=usage_by_task_type(calls, today),
        usage_by_agent=usage_by_agent(calls, today),
        usage_by_session=usage_by_session(calls, today, salt),
        usage_by_trigger=usage_by_trigger(calls, today),
        thinking_stats=thinking_stats(calls, today),
        api_health=api_health(calls, api_calls),
    )


__all__ = ["Marts", "build_marts", "USAGE_MEASURES", "public_session_id", "window_start"]
