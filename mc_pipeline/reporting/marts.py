"""The window marts: usage per provider, model, task type, agent, session and trigger, thinking statistics
and API health, over windows of the per-day aggregates (:mod:`mc_pipeline.calls.daily`), never over all calls.
Pure: frames in, frames out; ``today`` is always passed in.

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

from mc_pipeline.calls.daily import DAILY_KEYS, DailyTables, daily_tables, health_aggs
from mc_pipeline.tables.schemas import (
    API_HEALTH,
    ERROR_CLASSES,
    MART_WINDOWS,
    THINKING_STATS,
    USAGE_BY_AGENT,
    USAGE_BY_MODEL,
    USAGE_BY_PROVIDER,
    USAGE_BY_SESSION,
    USAGE_BY_TASK_TYPE,
    USAGE_BY_TRIGGER,
    USAGE_MEASURES,
    conform,
)

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
    """The id itself when it is a UUID (OpenClaw's), else ``s-`` + a salted SHA-256 (keys hold phone
    numbers)."""
    if session_id is None:
        return None
    if _UUID.match(session_id):
        return session_id.lower()
    return "s-" + hashlib.sha256(f"{salt}\x00{session_id}".encode()).hexdigest()[:20]


def public_session_ids(calls: pl.DataFrame, salt: str = DEFAULT_SALT) -> pl.DataFrame:
    """``calls`` with ``session_id`` made public (mapped once per distinct id, not per row)."""
    ids = calls.select(pl.col("session_id").unique().drop_nulls())
    mapping = ids.with_columns(
        public=pl.Series(
            [public_session_id(s, salt) for s in ids.get_column("session_id")], dtype=pl.String()
        )
    )
    return (
        calls.join(mapping, on="session_id", how="left")
        .with_columns(session_id=pl.col("public"))
        .drop("public")
    )


# -- windows over the per-day aggregates -------------------------------------------------------------------
SUMMABLE = list(USAGE_MEASURES)


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den > 0).then(num / den).otherwise(None)


def ratios() -> list[pl.Expr]:
    prompt = pl.col("input_tokens") + pl.col("cache_read_tokens") + pl.col("cache_write_tokens")
    return [
        _ratio(pl.col("cost_usd"), pl.col("calls") - pl.col("unpriced_calls")).alias("avg_cost_per_call_usd"),
        _ratio(prompt.cast(pl.Float64), pl.col("output_tokens").cast(pl.Float64)).alias("input_output_ratio"),
        _ratio(pl.col("failed_calls").cast(pl.Float64), pl.col("calls").cast(pl.Float64)).alias("error_rate"),
    ]


def fsum(column: str) -> pl.Expr:
    """A float column's sum in a fixed order (its values sorted): the same total to the last digit whatever
    order the rows come in (float addition is not associative; the day files and thread partitions may
    hand the rows over in another order from run to run)."""
    return pl.col(column).sort().sum()


def sums(frame: pl.DataFrame, columns) -> list[pl.Expr]:
    """Each column's sum, float ones in a fixed order (:func:`fsum`)."""
    return [(fsum(c) if frame.schema[c].is_float() else pl.col(c).sum()).alias(c) for c in columns]


def _sums() -> list[pl.Expr]:
    return [(fsum(c) if USAGE_MEASURES[c].is_float() else pl.col(c).sum()).alias(c) for c in SUMMABLE]


def by_window(
    daily: pl.DataFrame, today: date, keys: list[str], schema: dict, extra: list[pl.Expr] | None = None
) -> pl.DataFrame:
    """One group per (window, keys) of per-day rows, windows in ``MART_WINDOWS`` order, each sorted by cost
    then calls."""
    parts = []
    for window in MART_WINDOWS:
        part = daily.filter(in_window(window, today))
        if part.height == 0:
            continue
        grouped = (
            part.group_by(keys)
            .agg(_sums() + (extra or []))
            .with_columns(ratios())
            .with_columns(window=pl.lit(window))
            .sort(
                ["cost_usd", "calls", *keys], descending=[True, True] + [False] * len(keys), nulls_last=True
            )
        )
        parts.append(conform(grouped, schema))
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


# -- the marts ------------------------------------------------------------------------------------------
def usage_by_provider(daily: DailyTables, today: date) -> pl.DataFrame:
    return by_window(daily.usage_daily, today, ["provider"], USAGE_BY_PROVIDER)


def usage_by_model(daily: DailyTables, today: date) -> pl.DataFrame:
    return by_window(daily.usage_daily, today, ["provider", "model"], USAGE_BY_MODEL)


def usage_by_task_type(daily: DailyTables, today: date) -> pl.DataFrame:
    return by_window(daily.usage_daily, today, ["task_type"], USAGE_BY_TASK_TYPE)


def usage_by_agent(daily: DailyTables, today: date) -> pl.DataFrame:
    return by_window(daily.usage_daily, today, ["agent_id"], USAGE_BY_AGENT)


def usage_by_trigger(daily: DailyTables, today: date) -> pl.DataFrame:
    return by_window(
        daily.usage_daily, today, ["trigger", "channel", "cron_job_id", "cron_job_name"], USAGE_BY_TRIGGER
    )


def main_models(sessions: pl.DataFrame) -> pl.DataFrame:
    """Per (agent, session): the provider/model with the most calls (then cost, then name)."""
    return (
        sessions.group_by("agent_id", "session_id", "provider", "model")
        .agg(n=pl.col("calls").sum(), c=fsum("cost_usd"))
        .sort(["n", "c", "provider", "model"], descending=[True, True, False, False])
        .unique(["agent_id", "session_id"], keep="first", maintain_order=True)
        .select("agent_id", "session_id", "provider", "model")
    )


def usage_by_session(daily: DailyTables, today: date) -> pl.DataFrame:
    """Per session and window; the session id is already public (UUID or salted hash) in sessions_daily."""
    sessions = daily.sessions_daily
    extra = [
        pl.col("trigger").drop_nulls().first().alias("trigger"),
        pl.col("channel").drop_nulls().first().alias("channel"),
        pl.col("cron_job_id").drop_nulls().first().alias("cron_job_id"),
        pl.col("first_call").min().alias("first_call"),
        pl.col("last_call").max().alias("last_call"),
    ]
    out = by_window(
        sessions.sort("day", "first_call"), today, ["agent_id", "session_id"], {**USAGE_BY_SESSION}, extra
    )
    if out.height == 0:
        return out
    parts = []
    for window in MART_WINDOWS:  # the main model of a session within each window
        part = out.filter(pl.col("window") == window)
        if part.height:
            models = main_models(sessions.filter(in_window(window, today)))
            parts.append(
                part.drop("provider", "model").join(
                    models, on=["agent_id", "session_id"], how="left", nulls_equal=True, maintain_order="left"
                )
            )
    out = pl.concat(parts, how="diagonal_relaxed").with_columns(
        duration_ms=(pl.col("last_call") - pl.col("first_call")).dt.total_milliseconds()
    )
    return conform(out, USAGE_BY_SESSION)


def thinking_stats(daily: DailyTables, today: date) -> pl.DataFrame:
    """Thinking per window: totals, calls with thinking, max, average, share estimated, share on
    subscription."""
    u = daily.usage_daily
    t = pl.col("thinking_tokens")
    rows = []
    for window in MART_WINDOWS:
        part = u.filter(in_window(window, today))
        if part.height == 0:
            continue
        rows.append(
            part.select(
                window=pl.lit(window),
                calls=pl.col("calls").sum().cast(pl.Int64),
                calls_with_thinking=pl.col("calls_with_thinking").sum().cast(pl.Int64),
                calls_thinking_unknown=pl.col("calls_thinking_unknown").sum().cast(pl.Int64),
                thinking_tokens=t.sum().cast(pl.Int64),
                max_thinking_tokens=pl.col("max_thinking_tokens").max().fill_null(0).cast(pl.Int64),
                estimated_thinking_tokens=pl.col("estimated_thinking_tokens").sum().cast(pl.Int64),
                subscription_thinking_tokens=t.filter(pl.col("billing") == "subscription")
                .sum()
                .cast(pl.Int64),
            ).with_columns(
                avg_thinking_tokens=_ratio(
                    pl.col("thinking_tokens").cast(pl.Float64), pl.col("calls_with_thinking")
                ),
                estimated_share=_ratio(pl.col("estimated_thinking_tokens"), pl.col("thinking_tokens")),
                subscription_share=_ratio(pl.col("subscription_thinking_tokens"), pl.col("thinking_tokens")),
            )
        )
    return conform(pl.concat(rows), THINKING_STATS) if rows else pl.DataFrame(schema=THINKING_STATS)


def service_health(api_calls: pl.DataFrame | None) -> pl.DataFrame:
    """Per service and day from the user's ``api_calls`` table."""
    if api_calls is None or api_calls.height == 0:
        return pl.DataFrame(schema=API_HEALTH)
    ok = pl.col("ok")
    known = pl.col("error_class").is_in(list(ERROR_CLASSES))
    cls = (
        pl.when(ok.fill_null(True))
        .then(None)
        .when(known)
        .then(pl.col("error_class"))
        .otherwise(pl.lit("other"))
    )
    out = (
        api_calls.group_by("service", "day")
        .agg(
            health_aggs(
                ok.fill_null(False), (~ok).fill_null(False), pl.lit(False), cls, pl.col("status_code")
            )
        )
        .rename({"service": "name"})
        .with_columns(kind=pl.lit("service"))
        .with_columns(
            success_rate=_ratio(pl.col("ok_calls").cast(pl.Float64), pl.col("calls").cast(pl.Float64))
        )
    )
    return conform(out, API_HEALTH)


def api_health(daily: DailyTables, api_calls: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per provider and day (``health_daily``), plus per service and day from ``api_calls`` when given."""
    out = pl.concat([conform(daily.health_daily, API_HEALTH), service_health(api_calls)])
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


def marts_from_daily(daily: DailyTables, today: date, api_calls: pl.DataFrame | None = None) -> Marts:
    """Every mart from the per-day aggregates (never from all calls)."""
    return Marts(
        usage_daily=daily.usage_daily.sort(DAILY_KEYS, nulls_last=True),
        usage_by_provider=usage_by_provider(daily, today),
        usage_by_model=usage_by_model(daily, today),
        usage_by_task_type=usage_by_task_type(daily, today),
        usage_by_agent=usage_by_agent(daily, today),
        usage_by_session=usage_by_session(daily, today),
        usage_by_trigger=usage_by_trigger(daily, today),
        thinking_stats=thinking_stats(daily, today),
        api_health=api_health(daily, api_calls),
    )


def build_marts(
    calls: pl.DataFrame, today: date, api_calls: pl.DataFrame | None = None, salt: str = DEFAULT_SALT
) -> Marts:
    """Every mart of ``calls``: their per-day aggregates, then the windows over those."""
    return marts_from_daily(daily_tables(calls, salt), today, api_calls)


__all__ = ["Marts", "build_marts", "marts_from_daily", "USAGE_MEASURES", "public_session_id", "window_start"]
