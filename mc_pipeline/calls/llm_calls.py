"""From call records (what the readers found) to the validated ``llm_calls`` table.

Steps, each a pure frame-to-frame function: identity and day, session triggers, status and error
class, thinking tokens, billing, task type, price, de-duplication, then the pandera contract. Rows the
contract rejects are returned for quarantine with the failed check as the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from mc_pipeline.costing.billing import assign_billing
from mc_pipeline.costing.error_classes import classify_status
from mc_pipeline.costing.pricing import price_calls
from mc_pipeline.costing.task_types import TaskRules, assign_task_types
from mc_pipeline.tables.schemas import LLM_CALLS, QUARANTINE, conform

#: Characters of thinking text per token when a call's thinking must be estimated (English prose
#: averages ~4 characters per token with Claude/GPT tokenizers; such rows carry thinking_estimated=True).
CHARS_PER_THINKING_TOKEN = 4


@dataclass
class BuiltCalls:
    calls: pl.DataFrame  # LLM_CALLS, validated
    rejected: (
        pl.DataFrame
    )  # QUARANTINE rows + their day (excerpt left null: the caller knows where the line is)
    duplicates: pl.DataFrame  # source, source_file, day, duplicates: rows dropped as repeats of a call


def with_identity(records: pl.DataFrame, tz: str) -> pl.DataFrame:
    """``call_id`` (stable across runs and renames of a file) and ``day`` in the reporting zone."""
    entry = pl.coalesce(
        pl.col("entry_id"),
        pl.format("t{}", pl.col("timestamp").dt.epoch("us")),
    )
    return records.with_columns(
        call_id=pl.concat_str(
            [pl.col("agent_id").fill_null("-"), pl.col("session_id").fill_null("-"), entry], separator="/"
        ),
        day=pl.col("timestamp").dt.convert_time_zone(tz).dt.date(),
        total_tokens=pl.sum_horizontal(
            "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"
        ),
        tool_calls=pl.col("tool_names").list.len().fill_null(0).cast(pl.Int64),
    )


SESSION_COLUMNS = ("session_key", "trigger", "channel", "cron_job_id", "cron_job_name")


def with_sessions(calls: pl.DataFrame, session_index: pl.DataFrame) -> pl.DataFrame:
    """Session key, trigger, channel and cron job (id and name) from the session index of both eras
    (``readers.session_index.read_sessions``; unknown for sessions no index names), and whether the session
    is a fork (its header or the agent database says so). Index rows without an agent (a cron run naming
    a session no agent database lists any more) match on the session id alone."""
    cols = ["agent_id", "session_id", *SESSION_COLUMNS, "is_fork"]
    idx = session_index.select([c for c in cols if c in session_index.columns])
    for c in cols:
        if c not in idx.columns:
            idx = idx.with_columns(pl.lit(None, pl.Boolean if c == "is_fork" else pl.String).alias(c))
    out = calls.drop([c for c in (*SESSION_COLUMNS, "is_fork") if c in calls.columns])
    out = out.join(
        idx.filter(pl.col("agent_id").is_not_null()),
        on=["agent_id", "session_id"],
        how="left",
        nulls_equal=False,
        maintain_order="left",
    )
    by_sid = idx.filter(pl.col("agent_id").is_null()).drop("agent_id").unique("session_id", keep="first")
    if by_sid.height:
        out = (
            out.join(by_sid, on="session_id", how="left", suffix="_sid", maintain_order="left")
            .with_columns([pl.coalesce(c, f"{c}_sid").alias(c) for c in (*SESSION_COLUMNS, "is_fork")])
            .drop([f"{c}_sid" for c in (*SESSION_COLUMNS, "is_fork")])
        )
    fork = pl.col("is_fork").fill_null(False)
    if "session_is_fork" in out.columns:
        fork = fork | pl.col("session_is_fork").fill_null(False)
    return out.with_columns(trigger=pl.col("trigger").fill_null("unknown"), session_is_fork=fork).drop(
        "is_fork"
    )


def with_thinking(calls: pl.DataFrame) -> pl.DataFrame:
    """Thinking tokens: recorded (usage.reasoning, a DB column) when there, else estimated from text."""
    estimate = (pl.col("thinking_chars") / CHARS_PER_THINKING_TOKEN).ceil().cast(pl.Int64)
    recorded = pl.coalesce("reasoning_tokens", "given_thinking_tokens")
    has_text = pl.col("thinking_chars").fill_null(0) > 0
    return calls.with_columns(
        thinking_tokens=pl.when(recorded.is_not_null())
        .then(recorded)
        .when(has_text)
        .then(pl.min_horizontal(estimate, pl.col("output_tokens")))
        .when(pl.col("thinking_redacted").fill_null(False))
        .then(None)  # redacted thinking: the size is not knowable from the transcript
        .otherwise(0),
        thinking_estimated=recorded.is_null() & has_text,
    )


def drop_duplicates(calls: pl.DataFrame, days=None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each call once: same ``call_id``, exact repeats inside a source, and copies of a richer source's call
    (``mc_pipeline.calls.dedupe``); returns (kept rows, source/source_file/duplicates dropped). ``days``: the
    days being built (rows of other days only take part in the matching)."""
    from mc_pipeline.calls.dedupe import dedupe_calls

    deduped = dedupe_calls(calls)
    kept = deduped.calls if days is None else deduped.calls.filter(pl.col("day").is_in(sorted(days)))
    return kept, deduped.per_file(days)


def validate(calls: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows that satisfy ``LlmCallsModel``, quarantine rows naming the failed check)."""
    import pandera.polars as pa

    from mc_pipeline.tables.contracts import LlmCallsModel

    calls = calls.with_row_index("_row")
    try:
        LlmCallsModel.validate(calls, lazy=True)
        return calls.drop("_row"), pl.DataFrame(schema={**QUARANTINE, "day": pl.Date()})
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    row_cases = cases.filter(pl.col("index").is_not_null())
    frame_cases = cases.filter(pl.col("index").is_null())
    if frame_cases.height:  # a column-level problem (missing column, wrong dtype) is a bug, not bad data
        raise ValueError(f"llm_calls does not match its schema: {frame_cases.rows()[:5]}")
    reasons = (
        row_cases.with_columns(
            msg=pl.format(
                "failed {} on {} (value {})", "check", "column", pl.col("failure_case").str.slice(0, 60)
            )
        )
        .group_by("index")
        .agg(reason=pl.col("msg").str.join("; "))
        .with_columns(pl.col("index").cast(pl.UInt32))
    )
    bad = calls.join(reasons, left_on="_row", right_on="index", how="inner")
    good = calls.join(reasons, left_on="_row", right_on="index", how="anti").drop("_row")
    return good, conform(
        bad.select("source", "source_file", "line_no", "reason", "day"), {**QUARANTINE, "day": pl.Date()}
    )


def build_llm_calls(
    records: pl.DataFrame,
    *,
    session_index: pl.DataFrame,
    auth: dict,
    task_rules: TaskRules,
    tz: str,
    cost_mode: str,
    billing_overrides: dict | None = None,
    days=None,
) -> BuiltCalls:
    """The whole enrichment: records (CALL_RECORDS, sources in preference order) to ``llm_calls``.

    ``days``: build only the calls of these days (reporting zone); the other records (a neighbouring day's
    first or last hour) only take part in de-duplication, and their duplicates are not counted here."""
    calls = with_identity(records, tz)
    calls = with_sessions(
        calls, session_index
    )  # before de-duplication: a fork's copies are dropped, not its parent's
    calls, duplicates = drop_duplicates(calls, days)
    calls = classify_status(calls)
    calls = with_thinking(calls)
    calls = assign_billing(calls, auth, billing_overrides)
    calls = assign_task_types(calls, task_rules)
    calls = price_calls(calls, cost_mode)
    calls = conform(calls, LLM_CALLS)
    good, rejected = validate(calls)
    good = good.sort("timestamp", "call_id")
    return BuiltCalls(calls=good, rejected=rejected, duplicates=duplicates)
