"""Per-day aggregates of ``llm_calls`` (pure): small tables every window mart, the dashboard files and the
alert rules are computed from, so that no run reads all calls.

- ``usage_daily``: day x agent x provider x model x task type x billing x trigger x channel x cron job:
  every summable measure (``schemas.USAGE_MEASURES``) plus what thinking statistics and cost sources need;
- ``sessions_daily``: day x agent x session (public id) x provider x model: calls, tokens, cost, first and
  last call, what started the session, and the tools it called (count and cost share per tool);
- ``health_daily``: day x provider: ok, errors by class, rate limits, 5xx, durations (``schemas.API_HEALTH``).

Every column is a sum, a count, a min or a max of its day's calls, so a window over days is the same
aggregate of these rows (:mod:`mc_pipeline.reporting.marts`). Each day is computed from that day's calls only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import polars as pl

from mc_pipeline.tables.schemas import (
    API_HEALTH,
    ERROR_CLASSES,
    LLM_CALLS,
    SESSIONS_DAILY,
    USAGE_DAILY,
    conform,
)

TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens")

DAILY_KEYS = [
    "day",
    "agent_id",
    "provider",
    "model",
    "task_type",
    "billing",
    "trigger",
    "channel",
    "cron_job_id",
    "cron_job_name",
]
SESSION_KEYS = ["day", "agent_id", "session_id", "provider", "model"]


def measures() -> list[pl.Expr]:
    """The sums of ``schemas.USAGE_MEASURES`` over a group of calls."""
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


def health_aggs(
    status_ok: pl.Expr, status_error: pl.Expr, aborted: pl.Expr, error_class: pl.Expr, http: pl.Expr
) -> list[pl.Expr]:
    """Health counts of a group of calls; ``duration_sum_ms``/``duration_calls`` make the mean summable."""
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
        pl.col("duration_ms").sum().cast(pl.Int64).alias("duration_sum_ms"),
        pl.col("duration_ms").is_not_null().sum().cast(pl.Int64).alias("duration_calls"),
    ]


@dataclass
class DailyTables:
    usage_daily: pl.DataFrame  # USAGE_DAILY
    sessions_daily: pl.DataFrame  # SESSIONS_DAILY
    health_daily: pl.DataFrame  # API_HEALTH, kind = provider

    def items(self) -> list[tuple[str, pl.DataFrame]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def empty(cls) -> DailyTables:
        return cls(
            pl.DataFrame(schema=USAGE_DAILY),
            pl.DataFrame(schema=SESSIONS_DAILY),
            pl.DataFrame(schema=API_HEALTH),
        )

    @classmethod
    def concat(cls, parts: list[DailyTables]) -> DailyTables:
        if not parts:
            return cls.empty()
        return cls(*(pl.concat([getattr(p, f.name) for p in parts]) for f in fields(cls)))


def thinking_measures() -> list[pl.Expr]:
    t = pl.col("thinking_tokens")
    return [
        (t > 0).sum().cast(pl.Int64).alias("calls_with_thinking"),
        t.is_null().sum().cast(pl.Int64).alias("calls_thinking_unknown"),
        t.max().cast(pl.Int64).alias("max_thinking_tokens"),
        t.filter(pl.col("thinking_estimated")).sum().cast(pl.Int64).alias("estimated_thinking_tokens"),
        (pl.col("cost_source") == "recorded").sum().cast(pl.Int64).alias("recorded_calls"),
        (pl.col("cost_source") == "calculated").sum().cast(pl.Int64).alias("calculated_calls"),
    ]


def usage_daily(calls: pl.DataFrame) -> pl.DataFrame:
    calls = conform(calls, LLM_CALLS)
    out = calls.group_by(DAILY_KEYS).agg(measures() + thinking_measures()).sort(DAILY_KEYS, nulls_last=True)
    return conform(out, USAGE_DAILY)


def sessions_daily(calls: pl.DataFrame, salt: str) -> pl.DataFrame:
    """Per day, session and model; the session id is public (UUID or salted hash), never the session key."""
    from mc_pipeline.reporting.marts import public_session_ids

    calls = public_session_ids(conform(calls, LLM_CALLS), salt).filter(pl.col("session_id").is_not_null())
    if calls.height == 0:
        return pl.DataFrame(schema=SESSIONS_DAILY)
    prompt = pl.col("input_tokens") + pl.col("cache_read_tokens") + pl.col("cache_write_tokens")
    base = calls.group_by(SESSION_KEYS).agg(
        *measures(),
        pl.col("trigger").drop_nulls().first().alias("trigger"),
        pl.col("channel").drop_nulls().first().alias("channel"),
        pl.col("cron_job_id").drop_nulls().first().alias("cron_job_id"),
        pl.col("cron_job_name").drop_nulls().first().alias("cron_job_name"),
        pl.col("timestamp").min().alias("first_call"),
        pl.col("timestamp").max().alias("last_call"),
        prompt.sum().cast(pl.Int64).alias("prompt_tokens"),
    )
    tools = (
        calls.filter(pl.col("tool_calls") > 0)
        .with_columns(share=pl.col("cost_usd") / pl.col("tool_calls"))
        .explode("tool_names")
        .group_by(*SESSION_KEYS, "tool_names")
        .agg(count=pl.len().cast(pl.Int64), cost=pl.col("share").sum())
        .sort("tool_names")
        .group_by(SESSION_KEYS)
        .agg(tools=pl.struct(tool="tool_names", count="count", cost="cost"))
    )
    out = base.join(tools, on=SESSION_KEYS, how="left", nulls_equal=True).sort(SESSION_KEYS, nulls_last=True)
    return conform(out, SESSIONS_DAILY)


def health_daily(calls: pl.DataFrame) -> pl.DataFrame:
    calls = conform(calls, LLM_CALLS)
    status = pl.col("status")
    out = (
        calls.group_by("provider", "day")
        .agg(
            health_aggs(
                status == "ok",
                status == "error",
                status == "aborted",
                pl.col("error_class"),
                pl.col("http_status"),
            )
        )
        .rename({"provider": "name"})
        .with_columns(kind=pl.lit("provider"))
        .with_columns(success_rate=pl.when(pl.col("calls") > 0).then(pl.col("ok_calls") / pl.col("calls")))
        .sort("day", "name", nulls_last=True)
    )
    return conform(out, API_HEALTH)


def daily_tables(calls: pl.DataFrame, salt: str) -> DailyTables:
    """Every per-day aggregate of ``calls`` (any number of days)."""
    return DailyTables(usage_daily(calls), sessions_daily(calls, salt), health_daily(calls))
