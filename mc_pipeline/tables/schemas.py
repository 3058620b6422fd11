"""Column definitions of every table mc_pipeline writes.

This is the one place where a column is defined: each table is one spec, a tuple of :class:`Column` (name,
Polars type, description, nullable or not, private or not, and the checks of its pandera contract). The
dicts the code uses (``LLM_CALLS``: name -> dtype, in table order) are derived from the specs; the pandera
contracts of ``llm_calls``, ``quarantine`` and ``api_calls`` are generated from them in
:mod:`mc_pipeline.tables.contracts` (imported only when a table is validated: pandera is slow to import),
and the Dagster column schemas (descriptions in the UI, private columns tagged) in
:mod:`mc_pipeline.defs.columns`. ``LLM_CALLS`` is a public contract (Parquet readers, DuckDB users and the
dashboard builder rely on the names): add columns freely, never rename or drop one.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class Column:
    """One column of a table.

    ``nullable``: whether null is allowed; ``private``: holds a personal id, personal text or a local path
    (never published; tagged PII in the Dagster UI). The checks (``unique``, ``isin``, ``ge``, ``in_range``,
    ``str_min``, ``str_max``) are enforced by the pandera contract of the tables that have one
    (``contracts.CONTRACTS``); for the others ``nullable`` says what the code guarantees, unchecked.
    """

    name: str
    dtype: pl.DataType
    description: str
    nullable: bool = True
    private: bool = False
    unique: bool = False
    isin: tuple[str, ...] | None = None
    ge: float | None = None
    in_range: tuple[int, int] | None = None
    str_min: int | None = None
    str_max: int | None = None


#: A table: its columns in order.
Spec = tuple[Column, ...]


def dtypes(spec: Spec) -> dict[str, pl.DataType]:
    """name -> Polars dtype of a spec, in its order."""
    out = {c.name: c.dtype for c in spec}
    if len(out) != len(spec):
        raise ValueError(f"a column is twice in the spec: {[c.name for c in spec]}")
    return out


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
EXCERPT_CHARS = 200
_TRIGGERS = "main|direct|group|cron|heartbeat|hook|subagent|other|unknown"


def _one_of(values: tuple[str, ...]) -> str:
    return "|".join(values)


# -- columns that mean the same in several tables ------------------------------------------------------
_SOURCE_FILE = Column(
    "source_file", pl.String(), "file relative to the OpenClaw home (never absolute)", private=True
)
_LINE_NO = Column("line_no", pl.Int64(), "1-based line (or row/seq) within source_file")
_AGENT_ID = Column("agent_id", pl.String(), "the OpenClaw agent (agents/<id>; <home>/<id> in a fleet)")
_RAW_SESSION_ID = Column(
    "session_id",
    pl.String(),
    "the session as the source recorded it: OpenClaw's UUID, or an id that can hold a phone number or chat "
    "handle (the marts publish a salted hash of those)",
    private=True,
)
_DAY = Column("day", pl.Date(), "calendar day of `timestamp` in MC_TIMEZONE", nullable=False)
_PROVIDER = Column("provider", pl.String(), "the model provider (anthropic, openai, ...)")
_MODEL = Column("model", pl.String(), "the model as the provider names it")
_TRIGGER = Column("trigger", pl.String(), f"what started the session: {_TRIGGERS}")
_CHANNEL = Column("channel", pl.String(), "telegram, whatsapp, ... when the session key says")
_CRON_JOB_ID = Column("cron_job_id", pl.String(), "the cron job that started the session, when one did")
_CRON_JOB_NAME = Column(
    "cron_job_name", pl.String(), "the cron job's name (state/openclaw.sqlite cron_jobs), when known"
)
_TASK_TYPE = Column("task_type", pl.String(), "what the call was for (task_rules.toml)")
_BILLING = Column("billing", pl.String(), f"how the call is paid: {_one_of(BILLINGS)}")
_FIRST_CALL = Column("first_call", UTC_TS, "time of the session's first call in the period", nullable=False)
_LAST_CALL = Column("last_call", UTC_TS, "time of the session's last call in the period", nullable=False)


def _count(name: str, description: str) -> Column:
    """A count or a sum of counts: never null (a group without any is 0)."""
    return Column(name, pl.Int64(), description, nullable=False)


#: One row per model call. Nullable columns say "unknown" with null, never with a made-up value.
LLM_CALLS_SPEC: Spec = (
    Column(
        "call_id",
        pl.String(),
        "stable across runs: hash of (session, entry) identity, not of the path",
        nullable=False,
        unique=True,
    ),
    Column(
        "source",
        pl.String(),
        f"where the call was read from: {_one_of(SOURCES)}",
        nullable=False,
        isin=SOURCES,
    ),
    _SOURCE_FILE,
    _LINE_NO,
    _AGENT_ID,
    _RAW_SESSION_ID,
    Column(
        "session_key",
        pl.String(),
        "from sessions.json; private, never in public outputs (can hold a phone number or chat handle)",
        private=True,
    ),
    _TRIGGER,
    _CHANNEL,
    _CRON_JOB_ID,
    _CRON_JOB_NAME,
    Column("entry_id", pl.String(), "the entry's id in its source (db:<row>, log:<line> for those sources)"),
    Column(
        "entry_kind",
        pl.String(),
        f"what the row was written from: {_one_of(ENTRY_KINDS)}",
        isin=ENTRY_KINDS,
    ),
    Column("run_id", pl.String(), "the agent run (message.__openclaw.runId, prompt-error data.runId)"),
    Column("timestamp", UTC_TS, "when the call was made (UTC)", nullable=False),
    _DAY,
    Column("provider", pl.String(), "the model provider (anthropic, openai, ...)", nullable=False, str_min=1),
    Column("model", pl.String(), "the model as the provider names it", nullable=False, str_min=1),
    Column("api", pl.String(), "the provider API the runtime called, as it recorded it"),
    Column("task_type", pl.String(), "what the call was for (task_rules.toml)", nullable=False),
    Column("task_rule", pl.String(), "which rule of task_rules.toml decided task_type", nullable=False),
    Column(
        "billing", pl.String(), f"how the call is paid: {_one_of(BILLINGS)}", nullable=False, isin=BILLINGS
    ),
    Column("input_tokens", pl.Int64(), "UNCACHED input", nullable=False, ge=0),
    Column("output_tokens", pl.Int64(), "includes thinking", nullable=False, ge=0),
    Column("cache_read_tokens", pl.Int64(), "input tokens read from the prompt cache", nullable=False, ge=0),
    Column(
        "cache_write_tokens", pl.Int64(), "input tokens written to the prompt cache", nullable=False, ge=0
    ),
    Column("thinking_tokens", pl.Int64(), "part of output_tokens, never added on top; null: unknown", ge=0),
    Column("thinking_estimated", pl.Boolean(), "True when estimated from thinking text", nullable=False),
    Column("total_tokens", pl.Int64(), "input + output + cache read + cache write", nullable=False, ge=0),
    Column(
        "cost_recorded_usd", pl.Float64(), "what the runtime/DB recorded; null when it recorded nothing", ge=0
    ),
    Column(
        "cost_calculated_usd",
        pl.Float64(),
        "from genai-prices; null when the model is not in the table",
        ge=0,
    ),
    Column("cost_usd", pl.Float64(), "per MC_COST_MODE; null when unpriced", ge=0),
    Column(
        "cost_source",
        pl.String(),
        f"where cost_usd came from: {_one_of(COST_SOURCES)}",
        nullable=False,
        isin=COST_SOURCES,
    ),
    Column("price_model_id", pl.String(), "genai-prices model id the price came from"),
    Column("status", pl.String(), f"how the call ended: {_one_of(STATUSES)}", nullable=False, isin=STATUSES),
    Column("stop_reason", pl.String(), "why the response ended, as the runtime recorded it"),
    Column(
        "error_class",
        pl.String(),
        f"why a call failed: {_one_of(ERROR_CLASSES)}; null for ok calls",
        isin=ERROR_CLASSES,
    ),
    Column("http_status", pl.Int32(), "HTTP status of a failed call, when known"),
    Column("duration_ms", pl.Int64(), "how long the call took, when recorded"),
    Column("tool_calls", pl.Int64(), "number of toolCall blocks in the response", nullable=False, ge=0),
    Column("tool_names", pl.List(pl.String()), "the tools the response called, in order"),
    Column("response_id", pl.String(), "the provider's id of the response"),
)

#: What every reader hands over: one row per model call as the source recorded it, before pricing,
#: classification and validation (``calls.build_llm_calls`` turns these into ``LLM_CALLS``).
CALL_RECORDS_SPEC: Spec = (
    Column("source", pl.String(), f"where the call was read from: {_one_of(SOURCES)}"),
    _SOURCE_FILE,
    _LINE_NO,
    _AGENT_ID,
    _RAW_SESSION_ID,
    Column("entry_id", pl.String(), "the entry's id in its source (db:<row>, log:<line> for those sources)"),
    Column("timestamp", UTC_TS, "when the call was made (UTC)"),
    _PROVIDER,
    _MODEL,
    Column("api", pl.String(), "the provider API the runtime called, as it recorded it"),
    Column("stop_reason", pl.String(), "why the response ended, as the runtime recorded it"),
    Column(
        "error_message",
        pl.String(),
        "private: used to classify, never written to public outputs (can quote the prompt or a key)",
        private=True,
    ),
    Column("input_tokens", pl.Int64(), "UNCACHED input"),
    Column("output_tokens", pl.Int64(), "includes thinking"),
    Column("cache_read_tokens", pl.Int64(), "input tokens read from the prompt cache"),
    Column("cache_write_tokens", pl.Int64(), "input tokens written to the prompt cache"),
    Column("reasoning_tokens", pl.Int64(), "usage.reasoning when the runtime wrote it"),
    Column("thinking_chars", pl.Int64(), "characters of thinking text in the response"),
    Column("thinking_redacted", pl.Boolean(), "a thinking block whose text was withheld"),
    Column("cost_recorded_usd", pl.Float64(), "the cost the source recorded, if any"),
    Column("response_id", pl.String(), "the provider's id of the response"),
    Column("duration_ms", pl.Int64(), "how long the call took, when recorded"),
    Column("tool_names", pl.List(pl.String()), "the tools the response called, in order"),
    Column("given_task_type", pl.String(), "a task type the source itself recorded (DB, log)"),
    Column("given_thinking_tokens", pl.Int64(), "a thinking count the source itself recorded (DB)"),
    Column(
        "entry_kind",
        pl.String(),
        f"{_one_of(ENTRY_KINDS)} (transcripts); null for DB and log rows",
    ),
    Column("run_id", pl.String(), "message.__openclaw.runId, or a prompt-error's data.runId"),
    Column(
        "session_is_fork",
        pl.Boolean(),
        "the session header names a parentSession (a fork copies its events)",
    ),
)

#: Lines, rows or records that could not be used, kept with the reason.
QUARANTINE_SPEC: Spec = (
    Column("source", pl.String(), f"where the line was read from: {_one_of(SOURCES)}", nullable=False),
    _SOURCE_FILE,
    Column("line_no", pl.Int64(), "1-based line (or row/seq) within source_file", ge=0),
    Column(
        "reason", pl.String(), "why it could not be used (the check it failed)", nullable=False, str_min=1
    ),
    Column(
        "excerpt",
        pl.String(),
        f"at most {EXCERPT_CHARS} characters of the offending line (can hold message text)",
        private=True,
        str_max=EXCERPT_CHARS,
    ),
)

#: Per input file: how its lines were accounted for (lines_read = calls + other + skipped + quarantined).
FILE_COUNTS_SPEC: Spec = (
    Column("source", pl.String(), f"where the file was read from: {_one_of(SOURCES)}"),
    _SOURCE_FILE,
    Column("lines_read", pl.Int64(), "lines (or rows) read from the file"),
    Column("calls", pl.Int64(), "lines that are model calls"),
    Column("other_entries", pl.Int64(), "session headers, user/toolResult messages, model changes, ..."),
    Column("skipped_by_rule", pl.Int64(), "bookkeeping rows, blank lines, duplicates"),
    Column("quarantined", pl.Int64(), "lines put in quarantine"),
)

#: One row per HTTP call the user's own logger recorded in interactions.db ``api_calls`` (bodies never
#: copied).
API_CALLS_SPEC: Spec = (
    Column("timestamp", UTC_TS, "when the HTTP call was made (UTC)", nullable=False),
    _DAY,
    Column("service", pl.String(), "the service called, as the logger named it"),
    Column("endpoint", pl.String(), "without its query string (keys and personal data live there)"),
    Column("method", pl.String(), "HTTP method"),
    Column("status_code", pl.Int32(), "HTTP status code, when recorded", in_range=(0, 999)),
    Column("duration_ms", pl.Int64(), "how long the call took, when recorded", ge=0),
    Column("ok", pl.Boolean(), "1xx-3xx; null when the status code was not recorded"),
    Column(
        "error_class",
        pl.String(),
        f"one of ERROR_CLASSES for failed calls, else null: {_one_of(ERROR_CLASSES)}",
        isin=ERROR_CLASSES,
    ),
)

#: One row per alert that holds now (mc_pipeline/alerting/rules.py); also the lines of alerts.jsonl.
ALERTS_SPEC: Spec = (
    Column("alert_id", pl.String(), "<rule>[:<scope>]:<period>, stable across runs"),
    Column(
        "rule",
        pl.String(),
        "daily_limit|weekly_limit|monthly_limit|model_daily_limit|failure_rate|spend_spike|run_failure",
    ),
    Column("scope", pl.String(), "the model of a per-model limit, the job of a failed run; else null"),
    Column("period", pl.String(), "2026-03-01, 2026-W09, 2026-03 (a run id for run_failure)"),
    Column("severity", pl.String(), "critical|warning"),
    Column("message", pl.String(), "one line for people; never prompt/response text or paths"),
    Column("value", pl.Float64(), "USD, or percent for failure_rate"),
    Column("limit", pl.Float64(), "the limit value was compared with (same unit)"),
    Column("raised_at", UTC_TS, "when the alert was raised (UTC)"),
)


# -- marts (mc_pipeline/reporting/marts.py): public aggregates, written as Parquet and CSV -------------------
#: Reporting windows, each ending today (inclusive) in MC_TIMEZONE; all_time has no bounds.
MART_WINDOWS = ("today", "last_7_days", "last_30_days", "month_to_date", "all_time")

#: What every usage mart sums over its calls. Cost sums skip unpriced calls (null cost), which are
#: counted in ``unpriced_calls`` instead: a cost is never a silent $0.
USAGE_MEASURES_SPEC: Spec = (
    _count("calls", "model calls, failed ones included"),
    _count("failed_calls", "status error or aborted"),
    _count("input_tokens", "uncached input"),
    _count("output_tokens", "thinking included"),
    _count("cache_read_tokens", "input tokens read from the prompt cache"),
    _count("cache_write_tokens", "input tokens written to the prompt cache"),
    _count("total_tokens", "input + output + cache read + cache write"),
    _count("thinking_tokens", "part of output_tokens; calls whose thinking is unknown add nothing"),
    _count("thinking_estimated_calls", "calls whose thinking_tokens were estimated from text"),
    _count("tool_calls", "toolCall blocks in the responses"),
    Column("cost_usd", pl.Float64(), "sum of llm_calls.cost_usd (priced calls only)", nullable=False),
    Column(
        "recorded_cost_usd", pl.Float64(), "part of cost_usd whose cost_source is recorded", nullable=False
    ),
    Column(
        "calculated_cost_usd",
        pl.Float64(),
        "part of cost_usd whose cost_source is calculated",
        nullable=False,
    ),
    _count("unpriced_calls", "calls with no cost at all (not in cost_usd)"),
    Column("api_cost_usd", pl.Float64(), "part of cost_usd billed per token (billing = api)", nullable=False),
    Column(
        "subscription_value_usd",
        pl.Float64(),
        "part of cost_usd on a subscription: API-equivalent value, not spend",
        nullable=False,
    ),
)
#: Derived per row of the windowed marts; null when the denominator is zero.
USAGE_RATIOS_SPEC: Spec = (
    Column("avg_cost_per_call_usd", pl.Float64(), "cost_usd / priced calls"),
    Column(
        "input_output_ratio", pl.Float64(), "prompt tokens (input + cache read + cache write) / output tokens"
    ),
    Column("error_rate", pl.Float64(), "failed_calls / calls"),
)
_WINDOW = Column("window", pl.String(), f"the reporting window: {_one_of(MART_WINDOWS)}", nullable=False)
_THINKING_DAILY = (
    _count("calls_with_thinking", "thinking_tokens > 0"),
    _count("calls_thinking_unknown", "redacted thinking: size not knowable"),
    Column("max_thinking_tokens", pl.Int64(), "the largest thinking_tokens of a call; null when none known"),
    _count("estimated_thinking_tokens", "of thinking_tokens, estimated from text"),
)

#: Per day (the daily-partitioned aggregate every window mart, the dashboard and the alerts read).
USAGE_DAILY_SPEC: Spec = (
    _DAY,
    _AGENT_ID,
    _PROVIDER,
    _MODEL,
    _TASK_TYPE,
    _BILLING,
    _TRIGGER,
    _CHANNEL,
    _CRON_JOB_ID,
    _CRON_JOB_NAME,
    *USAGE_MEASURES_SPEC,
    *_THINKING_DAILY,
    _count("recorded_calls", "calls whose cost_source is recorded"),
    _count("calculated_calls", "calls whose cost_source is calculated"),
)
#: Per day, agent, session (UUID or salted hash) and model: what the session marts and sessions.json need.
SESSIONS_DAILY_SPEC: Spec = (
    _DAY,
    _AGENT_ID,
    Column(
        "session_id",
        pl.String(),
        "the session UUID, or a salted hash when the id is not a UUID (never the session key)",
        nullable=False,
    ),
    _PROVIDER,
    _MODEL,
    _TRIGGER,
    _CHANNEL,
    _CRON_JOB_ID,
    _CRON_JOB_NAME,
    _FIRST_CALL,
    _LAST_CALL,
    _count("prompt_tokens", "input + cache read + cache write"),
    *USAGE_MEASURES_SPEC,
    Column(
        "tools",
        pl.List(pl.Struct({"tool": pl.String(), "count": pl.Int64(), "cost": pl.Float64()})),
        "per tool requested: calls, and each model call's cost shared equally among its tool calls",
    ),
)
USAGE_BY_PROVIDER_SPEC: Spec = (_WINDOW, _PROVIDER, *USAGE_MEASURES_SPEC, *USAGE_RATIOS_SPEC)
USAGE_BY_MODEL_SPEC: Spec = (_WINDOW, _PROVIDER, _MODEL, *USAGE_MEASURES_SPEC, *USAGE_RATIOS_SPEC)
USAGE_BY_TASK_TYPE_SPEC: Spec = (_WINDOW, _TASK_TYPE, *USAGE_MEASURES_SPEC, *USAGE_RATIOS_SPEC)
USAGE_BY_AGENT_SPEC: Spec = (_WINDOW, _AGENT_ID, *USAGE_MEASURES_SPEC, *USAGE_RATIOS_SPEC)
#: Cost per cron job, heartbeat, hook, chat: what started the session (never the private session key).
USAGE_BY_TRIGGER_SPEC: Spec = (
    _WINDOW,
    _TRIGGER,
    _CHANNEL,
    _CRON_JOB_ID,
    _CRON_JOB_NAME,
    *USAGE_MEASURES_SPEC,
    *USAGE_RATIOS_SPEC,
)
USAGE_BY_SESSION_SPEC: Spec = (
    _WINDOW,
    _AGENT_ID,
    Column(
        "session_id",
        pl.String(),
        "the session UUID, or a salted hash when the id is not a UUID",
        nullable=False,
    ),
    _TRIGGER,
    _CHANNEL,
    _CRON_JOB_ID,
    Column("provider", pl.String(), "the session's main provider/model (most calls, then cost)"),
    Column("model", pl.String(), "the session's main model (most calls, then cost)"),
    _FIRST_CALL,
    _LAST_CALL,
    Column("duration_ms", pl.Int64(), "last call - first call in the window", nullable=False),
    *USAGE_MEASURES_SPEC,
    *USAGE_RATIOS_SPEC,
)
THINKING_STATS_SPEC: Spec = (
    _WINDOW,
    _count("calls", "model calls in the window"),
    _count("calls_with_thinking", "thinking_tokens > 0"),
    _count("calls_thinking_unknown", "redacted thinking: size not knowable"),
    _count("thinking_tokens", "sum of thinking_tokens (part of output_tokens)"),
    Column("max_thinking_tokens", pl.Int64(), "the largest thinking_tokens of a call; null when none known"),
    Column("avg_thinking_tokens", pl.Float64(), "over calls with thinking; null when none"),
    _count("estimated_thinking_tokens", "of thinking_tokens, estimated from text"),
    Column("estimated_share", pl.Float64(), "estimated_thinking_tokens / thinking_tokens"),
    _count("subscription_thinking_tokens", "of thinking_tokens, on a subscription"),
    Column("subscription_share", pl.Float64(), "subscription_thinking_tokens / thinking_tokens"),
)
#: Health per provider (from llm_calls) or per service (from api_calls) and day.
API_HEALTH_SPEC: Spec = (
    Column("kind", pl.String(), "provider | service", nullable=False),
    Column("name", pl.String(), "the provider (llm_calls) or service (api_calls)"),
    _DAY,
    _count("calls", "calls of that provider or service on that day"),
    _count("ok_calls", "status ok (api_calls: ok is true)"),
    _count("error_calls", "failed (status error; api_calls: ok is false)"),
    _count("aborted_calls", "stopped by the user, not an API failure"),
    _count("unknown_status_calls", "api_calls whose status was not recorded"),
    *(_count(f"errors_{c}", f"failed calls of error class {c}") for c in ERROR_CLASSES),
    _count("rate_limit_hits", "error class rate_limit or HTTP 429"),
    _count("server_errors_5xx", "HTTP 500-599"),
    Column("success_rate", pl.Float64(), "ok_calls / calls (0..1); null when no calls"),
    Column("avg_duration_ms", pl.Float64(), "mean duration of the calls that recorded one"),
    _count("duration_sum_ms", "the sum and count behind avg_duration_ms (summable over days)"),
    _count("duration_calls", "calls that recorded a duration"),
)

# -- the specs as name -> dtype dicts (what the code builds, reads and conforms frames with) ---------------
LLM_CALLS: dict[str, pl.DataType] = dtypes(LLM_CALLS_SPEC)
CALL_RECORDS: dict[str, pl.DataType] = dtypes(CALL_RECORDS_SPEC)
QUARANTINE: dict[str, pl.DataType] = dtypes(QUARANTINE_SPEC)
FILE_COUNTS: dict[str, pl.DataType] = dtypes(FILE_COUNTS_SPEC)
API_CALLS: dict[str, pl.DataType] = dtypes(API_CALLS_SPEC)
ALERTS: dict[str, pl.DataType] = dtypes(ALERTS_SPEC)
USAGE_MEASURES: dict[str, pl.DataType] = dtypes(USAGE_MEASURES_SPEC)
USAGE_RATIOS: dict[str, pl.DataType] = dtypes(USAGE_RATIOS_SPEC)
USAGE_DAILY: dict[str, pl.DataType] = dtypes(USAGE_DAILY_SPEC)
SESSIONS_DAILY: dict[str, pl.DataType] = dtypes(SESSIONS_DAILY_SPEC)
USAGE_BY_PROVIDER: dict[str, pl.DataType] = dtypes(USAGE_BY_PROVIDER_SPEC)
USAGE_BY_MODEL: dict[str, pl.DataType] = dtypes(USAGE_BY_MODEL_SPEC)
USAGE_BY_TASK_TYPE: dict[str, pl.DataType] = dtypes(USAGE_BY_TASK_TYPE_SPEC)
USAGE_BY_AGENT: dict[str, pl.DataType] = dtypes(USAGE_BY_AGENT_SPEC)
USAGE_BY_TRIGGER: dict[str, pl.DataType] = dtypes(USAGE_BY_TRIGGER_SPEC)
USAGE_BY_SESSION: dict[str, pl.DataType] = dtypes(USAGE_BY_SESSION_SPEC)
THINKING_STATS: dict[str, pl.DataType] = dtypes(THINKING_STATS_SPEC)
API_HEALTH: dict[str, pl.DataType] = dtypes(API_HEALTH_SPEC)

#: Every table written under its own name (``parquet/<name>/``, see ``tables.store``) -> its spec. The
#: readers' staged ``CALL_RECORDS`` and ``FILE_COUNTS`` (``staging/<reader>/``) are not tables of their own.
TABLES: dict[str, Spec] = {
    "llm_calls": LLM_CALLS_SPEC,
    "usage_daily": USAGE_DAILY_SPEC,
    "sessions_daily": SESSIONS_DAILY_SPEC,
    "health_daily": API_HEALTH_SPEC,
    "quarantine": QUARANTINE_SPEC,
    "api_calls": API_CALLS_SPEC,
    "budget_alerts": ALERTS_SPEC,
    "usage_by_provider": USAGE_BY_PROVIDER_SPEC,
    "usage_by_model": USAGE_BY_MODEL_SPEC,
    "usage_by_task_type": USAGE_BY_TASK_TYPE_SPEC,
    "usage_by_agent": USAGE_BY_AGENT_SPEC,
    "usage_by_session": USAGE_BY_SESSION_SPEC,
    "usage_by_trigger": USAGE_BY_TRIGGER_SPEC,
    "thinking_stats": THINKING_STATS_SPEC,
    "api_health": API_HEALTH_SPEC,
}


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
