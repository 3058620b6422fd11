"""Each model call counted once, across and within sources.

The same call can reach us more than once: the JSONL transcript and the SQLite transcript store hold the
same entries; a popular migration script copied transcript calls into ``interactions.db`` (same session
id, timestamp, model and token counts) and appended them again on every re-run; a backup log may repeat
what the DB has; a current OpenClaw (2026.8+) home holds a session in its agent database and maybe also
as a leftover ``.jsonl``, an archive row and its published file copy, a cold archive restored to the hot
table, or a fork that copied its parent's events. Rows are kept in preference order ``transcript_store >
transcript_archive > transcript_cold > transcript > interactions_db > model_usage_log``
(``schemas.SOURCES``): the database wins over files, the richer record over a copy. Five rules, in order:

1. ``same_call_id``: the same ``call_id`` (agent/session/entry id) seen twice -- the same transcript
   entry read twice, e.g. from a leftover ``.jsonl`` file and the agent database, an archive row and its
   published ``.zst`` copy, a cold archive and the hot rows it was restored to. First (preferred) wins.
2. ``fork_copy``: a forked session copies its parent's entries under a new session id, keeping their
   entry ids, times and usage (docs/openclaw-formats.md#duplicates-across-eras). Transcript rows equal
   in entry id, time, model and all
   four token counts are one call (the key tokscale uses, plus model and cache tokens); the row of a
   session that is not a fork is kept, then the preferred source.
3. ``prompt_error_covered``: an ``openclaw:prompt-error`` entry is a failed call only when no assistant
   ``error``/``aborted`` message of the same run (``runId``) is there; when one is, the entry is a
   second record of that failure and is dropped (the failure rate and alerts then count it once).
4. ``exact_repeat``: inside one non-transcript source, rows equal in session, timestamp, provider, model,
   all four token counts, stop reason and error message (a re-run appending the same rows again).
5. ``copy_of_richer``: a row of a less preferred source that matches a kept row of a more preferred one:
   same session id, same model (case-insensitive), same output tokens, same input tokens (either the
   uncached input or the whole prompt ``input + cache read + cache write``: scripts copy either), and a
   timestamp within :data:`MATCH_TOLERANCE` (5 min: a copy may carry the transcript entry's write time,
   seen up to 192 s after the call's start time in real files, and be truncated to the second or
   re-zoned). Calls without any tokens (failed, aborted) match only within :data:`ZERO_TOKEN_TOLERANCE`
   (5 s), since retries of a failed call are otherwise identical. A row without a session id (the log,
   some DBs) matches on model + tokens + time alone, and only when it has tokens.

Rows only a DB or the log knows match nothing and are kept, with their ``source``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from mc_pipeline.tables.schemas import SOURCES, TRANSCRIPT_SOURCES

MATCH_TOLERANCE = timedelta(minutes=5)
ZERO_TOKEN_TOLERANCE = timedelta(seconds=5)
#: Sources whose rows have a real entry identity (rule 1 covers their repeats).
ENTRY_SOURCES = TRANSCRIPT_SOURCES
#: What makes two transcript rows of different sessions the same call (a fork's copy of its parent's entry).
FORK_KEY = (
    "entry_id",
    "timestamp",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)
EXACT_KEY = (
    "session_id",
    "timestamp",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "stop_reason",
    "error_message",
)
RULES = ("same_call_id", "fork_copy", "prompt_error_covered", "exact_repeat", "copy_of_richer")


@dataclass
class Deduped:
    calls: pl.DataFrame  # the input rows, each call once, in preference order
    dropped: pl.DataFrame  # source, source_file, rule, duplicates

    def per_file(self, days=None) -> pl.DataFrame:
        """source, source_file, duplicates (what reconciliation counts as skipped by rule); ``days``: of
        rows on those days only (the neighbours' margin rows a day's build looks at are their own day's)."""
        dropped = self.dropped if days is None else self.dropped.filter(pl.col("day").is_in(sorted(days)))
        by = ["source", "source_file", *(["day"] if "day" in dropped.columns else [])]
        return dropped.group_by(by).agg(duplicates=pl.col("duplicates").sum().cast(pl.Int64)).sort(by)

    def per_source(self) -> dict[str, int]:
        agg = self.dropped.group_by("source").agg(pl.col("duplicates").sum())
        return dict(zip(agg.get_column("source").to_list(), agg.get_column("duplicates").to_list()))


def _rank() -> pl.Expr:
    return pl.col("source").replace_strict(
        {s: i for i, s in enumerate(SOURCES)}, default=len(SOURCES), return_dtype=pl.Int32
    )


def _keys(df: pl.DataFrame) -> pl.DataFrame:
    prompt = pl.sum_horizontal("input_tokens", "cache_read_tokens", "cache_write_tokens")
    return df.select(
        "_i",
        "_rank",
        _t="timestamp",
        _sess="session_id",
        _model=pl.col("model").str.to_lowercase().str.strip_chars(),
        _out="output_tokens",
        _in1="input_tokens",
        _in2=prompt,
        _zero=(prompt + pl.col("output_tokens").fill_null(0)) == 0,
        _copyable=~pl.col("source").is_in(ENTRY_SOURCES),
    ).filter(pl.col("_t").is_not_null() & pl.col("_model").is_not_null())


def _matched(lower: pl.DataFrame, higher: pl.DataFrame, by: list[str], tolerance: timedelta) -> set[int]:
    if lower.height == 0 or higher.height == 0:
        return set()
    right = higher.select(*by, "_t", _hit=pl.lit(True)).sort("_t")
    left = lower.select("_i", *by, "_t").sort("_t")
    joined = left.join_asof(
        right, on="_t", by=by, strategy="nearest", tolerance=tolerance, check_sortedness=False
    )
    return set(joined.filter(pl.col("_hit").fill_null(False)).get_column("_i").to_list())


def _copies(keys: pl.DataFrame) -> set[int]:
    """Row indices of rule-5 copies (each less preferred source against everything preferred to it)."""
    dropped: set[int] = set()
    # transcript rows are never copies by this rule: they have real entry identities (rules 1 and 2)
    ranks = sorted(keys.filter(pl.col("_copyable")).get_column("_rank").unique().to_list())
    for rank in ranks:
        higher = keys.filter((pl.col("_rank") < rank) & ~pl.col("_i").is_in(list(dropped)))
        lower = keys.filter(pl.col("_rank") == rank)
        with_sess = lower.filter(pl.col("_sess").is_not_null())
        higher_sess = higher.filter(pl.col("_sess").is_not_null())
        no_sess = lower.filter(pl.col("_sess").is_null() & ~pl.col("_zero"))
        for inp in ("_in1", "_in2"):
            by = ["_sess", "_model", "_out", inp]
            dropped |= _matched(with_sess.filter(~pl.col("_zero")), higher_sess, by, MATCH_TOLERANCE)
            dropped |= _matched(with_sess.filter(pl.col("_zero")), higher_sess, by, ZERO_TOKEN_TOLERANCE)
            dropped |= _matched(no_sess, higher, ["_model", "_out", inp], MATCH_TOLERANCE)
    return dropped


def _fork_copies(df: pl.DataFrame) -> pl.Series:
    """``_i`` of rows that copy another session's entry (rule 2): all but the first of each FORK_KEY group,
    in the order: sessions that are not forks first, then source preference, then reading order."""
    fork = pl.col("session_is_fork").fill_null(False) if "session_is_fork" in df.columns else pl.lit(False)
    cand = df.filter(
        pl.col("_rule").is_null() & pl.col("source").is_in(ENTRY_SOURCES) & pl.col("entry_id").is_not_null()
    ).with_columns(_fork=fork)
    if cand.height == 0:
        return pl.Series("_i", [], dtype=pl.UInt32)
    key = pl.struct(list(FORK_KEY))
    dup = cand.filter(key.is_duplicated())
    if dup.height == 0:
        return pl.Series("_i", [], dtype=pl.UInt32)
    ordered = dup.sort("_fork", "_rank", "_i")
    return ordered.filter(~pl.struct(list(FORK_KEY)).is_first_distinct()).get_column("_i")


def _covered_prompt_errors(df: pl.DataFrame) -> pl.Series:
    """``_i`` of prompt-error rows whose run has an assistant error/aborted message (rule 3)."""
    if "entry_kind" not in df.columns:
        return pl.Series("_i", [], dtype=pl.UInt32)
    live = df.filter(pl.col("_rule").is_null() & pl.col("run_id").is_not_null())
    failed_runs = live.filter(
        (pl.col("entry_kind") == "assistant") & pl.col("stop_reason").is_in(["error", "aborted"])
    ).get_column("run_id")
    return live.filter(
        (pl.col("entry_kind") == "prompt_error") & pl.col("run_id").is_in(failed_runs.unique().implode())
    ).get_column("_i")


def _mark(df: pl.DataFrame, rows: pl.Series, rule: str) -> pl.DataFrame:
    if rows.len() == 0:
        return df
    return df.with_columns(
        _rule=pl.when(pl.col("_i").is_in(rows.implode()) & pl.col("_rule").is_null())
        .then(pl.lit(rule))
        .otherwise("_rule")
    )


def dedupe_calls(calls: pl.DataFrame) -> Deduped:
    """Drop repeats of a call (rules in the module docstring). ``calls`` needs ``call_id`` and the
    CALL_RECORDS columns; rows of any order (they are put in preference order, stably)."""
    df = calls.with_row_index("_i").with_columns(_rank=_rank()).sort("_rank", "_i")
    same_id = pl.col("call_id").is_duplicated() & ~pl.col("call_id").is_first_distinct()
    df = df.with_columns(_rule=pl.when(same_id).then(pl.lit("same_call_id")))
    df = _mark(df, _fork_copies(df), "fork_copy")
    df = _mark(df, _covered_prompt_errors(df), "prompt_error_covered")

    key = pl.struct(["source", *EXACT_KEY])
    rest = df.filter(
        pl.col("_rule").is_null() & pl.col("source").is_in(SOURCES) & ~pl.col("source").is_in(ENTRY_SOURCES)
    )
    repeats = rest.filter(key.is_duplicated() & ~key.is_first_distinct()).get_column("_i")
    df = _mark(df, repeats, "exact_repeat")

    # rows of an unknown source are left to the contract check (it rejects them with the reason)
    copies = _copies(_keys(df.filter(pl.col("_rule").is_null() & pl.col("source").is_in(SOURCES))))
    df = _mark(df, pl.Series("_i", sorted(copies), dtype=pl.UInt32), "copy_of_richer")
    by = ["source", "source_file", *(["day"] if "day" in df.columns else [])]
    dropped = (
        df.filter(pl.col("_rule").is_not_null())
        .group_by(*by, rule="_rule")
        .agg(duplicates=pl.len().cast(pl.Int64))
        .sort(*by, "rule")
    )
    kept = df.filter(pl.col("_rule").is_null()).drop("_i", "_rank", "_rule")
    return Deduped(kept, dropped)
