"""Column definitions of every table mc_pipeline writes.

This is the one place where a column is defined: its name and its Polars type; the rules pandera enforces on
``llm_calls``, ``quarantine`` and ``api_calls`` are in :mod:`mc_pipeline.tables.contracts` (imported only when
a table is validated: pandera is slow to import). ``LLM_CALLS`` is a public contract (Parquet readers, DuckDB
users and the dashboard builder rely on the names): add columns freely, never rename or drop one.
"""

from __future__ import annotations

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

#: Where a call was read from. Order is the preference when the same call is seen twice: the agent
#: database wins over a leftover or published file of the same session
#: (docs/openclaw-formats.md#duplicates-across-eras), the hot table over
#: a cold archive restored to it, a transcript over a user's own copy of its calls.
SOURCES = (
    "transcript_store",  # agents/<id>/agent/openclaw-agent.sqlite transcript_events (2026.8+)
    "transcript_archive",  # ... session_transcript_archives: deleted/reset sessions (2026.8+)
    "transcript_cold",  # ... session_transcript_cold_archives and sessions/cold/*.jsonl.zst (2026.8+)
    "transcript",  # agents/<id>/sessions/*.jsonl[.reset|.deleted...][.zst] files
    "interactions_db",
    "model_usage_log",
)
#: Sources that are transcripts (each row one transcript entry with a real entry identity).
TRANSCRIPT_SOURCES = SOURCES[:4]
#: How the summary and the Dagster metadata name each source.
SOURCE_LABELS = {
    "transcript": "transcripts (files)",
    "transcript_store": "transcripts (SQLite)",
    "transcript_archive": "archives",
    "transcript_cold": "cold",
    "interactions_db": "interactions.db",
    "model_usage_log": "model-usage.jsonl",
}
#: What a row of llm_calls was written from: an assistant message, or an ``openclaw:prompt-error`` entry
#: that no assistant error/aborted message of the same run covers (docs/openclaw-formats.md#prompt-errors).
ENTRY_KINDS = ("assistant", "prompt_error")
STATUSES = ("ok", "error", "aborted")
BILLINGS = ("api", "subscription", "unknown")
COST_SOURCES = ("recorded", "calculated", "unpriced")
COST_MODES = ("auto", "calculate", "display")
ERROR_CLASSES = (
    "rate_limit",
    "overloaded",
    "server_error",
    "timeout",
    "network",
    "billing",
    "auth",
    "invalid_request",
    "aborted",
    "other",
)

#: One row per model call. Nullable columns say "unknown" with null, never with a made-up value.
LLM_CALLS: dict[str, pl.DataType] = {
    "call_id": pl.String(),  # stable across runs: hash of (session, entry) identity, not of the path
    "source": pl.String(),  # one of SOURCES
    "source_file": pl.String(),  # file relative to the OpenClaw home (never absolute)
    "line_no": pl.Int64(),  # 1-based line (or row/seq) within source_file
    "agent_id": pl.String(),
    "session_id": pl.String(),
    "session_key": pl.String(),  # from sessions.json; private, never in public outputs
    "trigger": pl.String(),  # main|direct|group|cron|heartbeat|hook|subagent|other|unknown
    "channel": pl.String(),  # telegram, whatsapp, ... when the session key says
    "cron_job_id": pl.String(),
    "cron_job_name": pl.String(),  # the cron job's name (state/openclaw.sqlite cron_jobs), when known
    "entry_id": pl.String(),
    "entry_kind": pl.String(),  # one of ENTRY_KINDS
    "run_id": pl.String(),  # the agent run (message.__openclaw.runId, prompt-error data.runId)
    "timestamp": UTC_TS,
    "day": pl.Date(),  # calendar day of `timestamp` in MC_TIMEZONE
    "provider": pl.String(),
    "model": pl.String(),
    "api": pl.String(),
    "task_type": pl.String(),
    "task_rule": pl.String(),  # which rule of task_rules.toml decided task_type
    "billing": pl.String(),  # one of BILLINGS
    "input_tokens": pl.Int64(),  # UNCACHED input
    "output_tokens": pl.Int64(),  # includes thinking
    "cache_read_tokens": pl.Int64(),
    "cache_write_tokens": pl.Int64(),
    "thinking_tokens": pl.Int64(),  # part of output_tokens, never added on top
    "thinking_estimated": pl.Boolean(),  # True when estimated from thinking text
    "total_tokens": pl.Int64(),  # input + output + cache read + cache write
    "cost_recorded_usd": pl.Float64(),  # what the runtime/DB recorded; null when it recorded nothing
    "cost_calculated_usd": pl.Float64(),  # from genai-prices; null when the model is not in the table
    "cost_usd": pl.Float64(),  # per MC_COST_MODE; null when unpriced
    "cost_source": pl.String(),  # one of COST_SOURCES
    "price_model_id": pl.String(),  # genai-prices model id the price came from
    "status": pl.String(),  # one of STATUSES
    "stop_reason": pl.String(),
    "error_class": pl.String(),  # one of ERROR_CLASSES, null for ok calls
    "http_status": pl.Int32(),
    "duration_ms": pl.Int64(),
    "tool_calls": pl.Int64(),  # number of toolCall blocks in the response
    "tool_names": pl.List(pl.String()),
    "response_id": pl.String(),
}

#: What every reader hands over: one row per model call as the source recorded it, before pricing,
#: classification and validation (``calls.build_llm_calls`` turns these into ``LLM_CALLS``).
CALL_RECORDS: dict[str, pl.DataType] = {
    "source": pl.String(),
    "source_file": pl.String(),
    "line_no": pl.Int64(),
    "agent_id": pl.String(),
    "session_id": pl.String(),
    "entry_id": pl.String(),
    "timestamp": UTC_TS,
    "provider": pl.String(),
    "model": pl.String(),
    "api": pl.String(),
    "stop_reason": pl.String(),
    "error_message": pl.String(),  # private: used to classify, never written to public outputs
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "cache_read_tokens": pl.Int64(),
    "cache_write_tokens": pl.Int64(),
    "reasoning_tokens": pl.Int64(),  # usage.reasoning when the runtime wrote it
    "thinking_chars": pl.Int64(),  # characters of thinking text in the response
    "thinking_redacted": pl.Boolean(),  # a thinking block whose text was withheld
    "cost_recorded_usd": pl.Float64(),
    "response_id": pl.String(),
    "duration_ms": pl.Int64(),
    "tool_names": pl.List(pl.String()),
    "given_task_type": pl.String(),  # a task type the source itself recorded (DB, log)
    "given_thinking_tokens": pl.Int64(),  # a thinking count the source itself recorded (DB)
    "entry_kind": pl.String(),  # assistant | prompt_error (transcripts); null for DB and log rows
    "run_id": pl.String(),  # message.__openclaw.runId, or a prompt-error's data.runId
    "session_is_fork": pl.Boolean(),  # the session header names a parentSession (a fork copies its events)
}

#: Lines, rows or records that could not be used, kept with the reason.
QUARANTINE: dict[str, pl.DataType] = {
    "source": pl.String(),
    "source_file": pl.String(),  # relative to the OpenClaw home
    "line_no": pl.Int64(),
    "reason": pl.String(),
    "excerpt": pl.String(),  # at most 200 characters of the offending line
}

#: Per input file: how its lines were accounted for (lines_read = calls + other + skipped + quarantined).
FILE_COUNTS: dict[str, pl.DataType] = {
    "source": pl.String(),
    "source_file": pl.String(),
    "lines_read": pl.Int64(),
    "calls": pl.Int64(),
    "other_entries": pl.Int64(),  # session headers, user/toolResult messages, model changes, ...
    "skipped_by_rule": pl.Int64(),  # bookkeeping rows, blank lines, duplicates
    "quarantined": pl.Int64(),
}

#: One row per HTTP call the user's own logger recorded in interactions.db ``api_calls`` (bodies never
#: copied).
API_CALLS: dict[str, pl.DataType] = {
    "timestamp": UTC_TS,
    "day": pl.Date(),  # calendar day of `timestamp` in MC_TIMEZONE
    "service": pl.String(),
    "endpoint": pl.String(),  # without its query string (keys and personal data live there)
    "method": pl.String(),
    "status_code": pl.Int32(),
    "duration_ms": pl.Int64(),
    "ok": pl.Boolean(),  # 1xx-3xx; null when the status code was not recorded
    "error_class": pl.String(),  # one of ERROR_CLASSES for failed calls, else null
}

#: One row per alert that holds now (mc_pipeline/alerting/rules.py); also the lines of alerts.jsonl.
ALERTS: dict[str, pl.DataType] = {
    "alert_id": pl.String(),  # <rule>[:<scope>]:<period>, stable across runs
    # daily_limit|weekly_limit|monthly_limit|model_daily_limit|failure_rate|spend_spike|run_failure
    "rule": pl.String(),
    "scope": pl.String(),  # the model of a per-model limit, the job of a failed run; else null
    "period": pl.String(),  # 2026-03-01, 2026-W09, 2026-03 (a run id for run_failure)
    "severity": pl.String(),  # critical|warning
    "message": pl.String(),  # one line for people; never prompt/response text or paths
    "value": pl.Float64(),  # USD, or percent for failure_rate
    "limit": pl.Float64(),
    "raised_at": UTC_TS,
}

EXCERPT_CHARS = 200


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Columns of ``schema`` in its order and types; missing ones become null."""
    if df.width == 0:  # selecting only literals from a column-less frame would invent one null row
        return pl.DataFrame(schema=schema)
    return df.select(
        [
            (pl.col(name) if name in df.columns else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )


# -- marts (mc_pipeline/reporting/marts.py): public aggregates, written as Parquet and CSV -------------------
#: Reporting windows, each ending today (inclusive) in MC_TIMEZONE; all_time has no bounds.
MART_WINDOWS = ("today", "last_7_days", "last_30_days", "month_to_date", "all_time")

#: What every usage mart sums over its calls. Cost sums skip unpriced calls (null cost), which are
#: counted in ``unpriced_calls`` instead: a cost is never a silent $0.
USAGE_MEASURES: dict[str, pl.DataType] = {
    "calls": pl.Int64(),  # model calls, failed ones included
    "failed_calls": pl.Int64(),  # status error or aborted
    "input_tokens": pl.Int64(),  # uncached input
    "output_tokens": pl.Int64(),  # thinking included
    "cache_read_tokens": pl.Int64(),
    "cache_write_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "thinking_tokens": pl.Int64(),  # part of output_tokens; calls whose thinking is unknown add nothing
    "thinking_estimated_calls": pl.Int64(),
    "tool_calls": pl.Int64(),
    "cost_usd": pl.Float64(),  # sum of llm_calls.cost_usd (priced calls only)
    "recorded_cost_usd": pl.Float64(),  # part of cost_usd whose cost_source is recorded
    "calculated_cost_usd": pl.Float64(),  # part of cost_usd whose cost_source is calculated
    "unpriced_calls": pl.Int64(),  # calls with no cost at all (not in cost_usd)
    "api_cost_usd": pl.Float64(),  # part of cost_usd billed per token (billing = api)
    # part of cost_usd on a subscription: API-equivalent value, not spend
    "subscription_value_usd": pl.Float64(),
}
#: Derived per row of the windowed marts; null when the denominator is zero.
USAGE_RATIOS: dict[str, pl.DataType] = {
    "avg_cost_per_call_usd": pl.Float64(),  # cost_usd / priced calls
    "input_output_ratio": pl.Float64(),  # prompt tokens (input + cache read + cache write) / output tokens
    "error_rate": pl.Float64(),  # failed_calls / calls
}
_W = {"window": pl.String()}  # one of MART_WINDOWS

#: Per day (the daily-partitioned aggregate every window mart, the dashboard and the alerts read).
USAGE_DAILY: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "agent_id": pl.String(),
    "provider": pl.String(),
    "model": pl.String(),
    "task_type": pl.String(),
    "billing": pl.String(),
    "trigger": pl.String(),
    "channel": pl.String(),
    "cron_job_id": pl.String(),
    "cron_job_name": pl.String(),
    **USAGE_MEASURES,
    "calls_with_thinking": pl.Int64(),  # thinking_tokens > 0
    "calls_thinking_unknown": pl.Int64(),  # redacted thinking: size not knowable
    "max_thinking_tokens": pl.Int64(),
    "estimated_thinking_tokens": pl.Int64(),  # of thinking_tokens, estimated from text
    "recorded_calls": pl.Int64(),  # calls whose cost_source is recorded
    "calculated_calls": pl.Int64(),  # ... calculated
}
#: Per day, agent, session (UUID or salted hash) and model: what the session marts and sessions.json need.
SESSIONS_DAILY: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "agent_id": pl.String(),
    "session_id": pl.String(),
    "provider": pl.String(),
    "model": pl.String(),
    "trigger": pl.String(),
    "channel": pl.String(),
    "cron_job_id": pl.String(),
    "cron_job_name": pl.String(),
    "first_call": UTC_TS,
    "last_call": UTC_TS,
    "prompt_tokens": pl.Int64(),  # input + cache read + cache write
    **USAGE_MEASURES,
    # per tool requested: calls, and each model call's cost shared equally among its tool calls
    "tools": pl.List(pl.Struct({"tool": pl.String(), "count": pl.Int64(), "cost": pl.Float64()})),
}
USAGE_BY_PROVIDER = {**_W, "provider": pl.String(), **USAGE_MEASURES, **USAGE_RATIOS}
USAGE_BY_MODEL = {**_W, "provider": pl.String(), "model": pl.String(), **USAGE_MEASURES, **USAGE_RATIOS}
USAGE_BY_TASK_TYPE = {**_W, "task_type": pl.String(), **USAGE_MEASURES, **USAGE_RATIOS}
USAGE_BY_AGENT = {**_W, "agent_id": pl.String(), **USAGE_MEASURES, **USAGE_RATIOS}
#: Cost per cron job, heartbeat, hook, chat: what started the session (never the private session key).
USAGE_BY_TRIGGER = {
    **_W,
    "trigger": pl.String(),
    "channel": pl.String(),
    "cron_job_id": pl.String(),
    "cron_job_name": pl.String(),  # the job's name from state/openclaw.sqlite, when known
    **USAGE_MEASURES,
    **USAGE_RATIOS,
}
USAGE_BY_SESSION = {
    **_W,
    "agent_id": pl.String(),
    "session_id": pl.String(),  # the session UUID, or a salted hash when the id is not a UUID
    "trigger": pl.String(),
    "channel": pl.String(),
    "cron_job_id": pl.String(),
    "provider": pl.String(),  # the session's main provider/model (most calls, then cost)
    "model": pl.String(),
    "first_call": UTC_TS,
    "last_call": UTC_TS,
    "duration_ms": pl.Int64(),  # last call - first call in the window
    **USAGE_MEASURES,
    **USAGE_RATIOS,
}
THINKING_STATS: dict[str, pl.DataType] = {
    **_W,
    "calls": pl.Int64(),
    "calls_with_thinking": pl.Int64(),  # thinking_tokens > 0
    "calls_thinking_unknown": pl.Int64(),  # redacted thinking: size not knowable
    "thinking_tokens": pl.Int64(),
    "max_thinking_tokens": pl.Int64(),
    "avg_thinking_tokens": pl.Float64(),  # over calls with thinking; null when none
    "estimated_thinking_tokens": pl.Int64(),  # of thinking_tokens, estimated from text
    "estimated_share": pl.Float64(),  # estimated_thinking_tokens / thinking_tokens
    "subscription_thinking_tokens": pl.Int64(),
    "subscription_share": pl.Float64(),  # subscription_thinking_tokens / thinking_tokens
}
#: Health per provider (from llm_calls) or per service (from api_calls) and day.
API_HEALTH: dict[str, pl.DataType] = {
    "kind": pl.String(),  # provider | service
    "name": pl.String(),
    "day": pl.Date(),
    "calls": pl.Int64(),
    "ok_calls": pl.Int64(),
    "error_calls": pl.Int64(),  # failed (status error; api_calls: ok is false)
    "aborted_calls": pl.Int64(),  # stopped by the user, not an API failure
    "unknown_status_calls": pl.Int64(),  # api_calls whose status was not recorded
    **{f"errors_{c}": pl.Int64() for c in ERROR_CLASSES},
    "rate_limit_hits": pl.Int64(),  # error class rate_limit or HTTP 429
    "server_errors_5xx": pl.Int64(),  # HTTP 500-599
    "success_rate": pl.Float64(),  # ok_calls / calls (0..1); null when no calls
    "avg_duration_ms": pl.Float64(),
    "duration_sum_ms": pl.Int64(),  # the sum and count behind avg_duration_ms (summable over days)
    "duration_calls": pl.Int64(),
}
