"""Each model call counted once, across and within sources.

The same call can reach us more than once: the JSONL transcript and the SQLite transcript store hold the
same entries; a popular migration script copied transcript calls into ``interactions.db`` (same session
id, timestamp, model and token counts) and appended them again on every re-run; a backup log may repeat
what the DB has. Rows are kept in preference order ``transcript > transcript_store > interactions_db >
model_usage_log`` (``schemas.SOURCES``): the richer record wins. Three rules, applied in order:

1. ``same_call_id``: the same ``call_id`` (agent/session/entry id) seen twice -- the same transcript
   entry read twice, e.g. from a ``.jsonl`` file and from the transcript store. First (preferred) wins.
2. ``exact_repeat``: inside one non-transcript source, rows equal in session, timestamp, provider, model,
   all four token counts, stop reason and error message (a re-run appending the same rows again).
3. ``copy_of_richer``: a row of a less preferred source that matches a kept row of a more preferred one:
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

from mc_pipeline.schemas import SOURCES

MATCH_TOLERANCE = timedelta(minutes=5)
ZERO_TOKEN_TOLERANCE = timedelta(seconds=5)
#: Sources whose rows have a real entry identity (rule 1 covers their repeats).
ENTRY_SOURCES = ("transcript", "transcript_store")
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
RULES = ("same_call_id", "exact_repeat", "copy_of_richer")


@dataclass
class Deduped:
    calls: pl.DataFrame  # the input rows, each call once, in preference order
    dropped: pl.DataFrame  # source, source_file, rule, duplicates

    def per_file(self) -> pl.DataFrame:
        """source, source_file, duplicates (what reconciliation counts as skipped by rule)."""
        return (
            self.dropped.group_by("source", "source_file")
            .agg(duplicates=pl.col("duplicates").sum().cast(pl.Int64))
            .sort("source", "source_file")
        )

    def per_source(self) -> dict[str, int]:
        agg = self.dropped.group_by("source").agg(pl.col("duplicates").sum())
        return dict(zip(agg.get_column("source").to_list(), agg.get_column("duplicates").to_list()))


def _rank() -> pl.Expr:
    return pl.col("source").replace_strict({s: i for i, s in enumerate(SOURCES)}, default=len(SOURCES), return_dtype=pl.Int32)


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
    ).filter(pl.col("_t").is_not_null() & pl.col("_model").is_not_null())


def _matched(lower: pl.DataFrame, higher: pl.DataFrame, by: list[str], tolerance: timedelta) -> set[int]:
    if lower.height == 0 or higher.height == 0:
        return set()
    right = higher.select(*by, "_t", _hit=pl.lit(True)).sort("_t")
    left = lower.select("_i", *by, "_t").sort("_t")
    joined = left.join_asof(right, on="_t", by=by, strategy="nearest", tolerance=tolerance, check_sortedness=False)
    return set(joined.filter(pl.col("_hit").fill_null(False)).get_column("_i").to_list())


def _copies(keys: pl.DataFrame) -> set[int]:
    """Row indices of rule-3 copies (each less preferred source against everything preferred to it)."""
    dropped: set[int] = set()
    ranks = sorted(keys.get_column("_rank").unique().to_list())
    for rank in ranks[1:]:
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


def dedupe_calls(calls: pl.DataFrame) -> Deduped:
    """Drop repeats of a call (rules in the module docstring). ``calls`` needs ``call_id`` and the
    CALL_RECORDS columns; rows of any order (they are put in preference order, stably)."""
    df = calls.with_row_index("_i").with_columns(_rank=_rank()).sort("_rank", "_i")
    same_id = pl.col("call_id").is_duplicated() & ~pl.col("call_id").is_first_distinct()
    df = df.with_columns(_rule=pl.when(same_id).then(pl.lit("same_call_id")))

    key = pl.struct(["source", *EXACT_KEY])
    rest = df.filter(pl.col("_rule").is_null() & pl.col("source").is_in(SOURCES) & ~pl.col("source").is_in(ENTRY_SOURCES))
    repeats = rest.filter(key.is_duplicated() & ~key.is_first_distinct()).get_column("_i")
    df = df.with_columns(_rule=pl.when(pl.col("_i").is_in(repeats.implode())).then(pl.lit("exact_repeat")).otherwise("_rule"))

    # rows of an unknown source are left to the contract check (it rejects them with the reason)
    copies = _copies(_keys(df.filter(pl.col("_rule").is_null() & pl.col("source").is_in(SOURCES))))
    df = df.with_columns(
        _rule=pl.when(pl.col("_i").is_in(list(copies))).then(pl.lit("copy_of_richer")).otherwise("_rule")
    )
    dropped = (
        df.filter(pl.col("_rule").is_not_null())
        .group_by("source", "source_file", rule="_rule")
        .agg(duplicates=pl.len().cast(pl.Int64))
        .sort("source", "source_file", "rule")
    )
    kept = df.filter(pl.col("_rule").is_null()).drop("_i", "_rank", "_rule")
    return Deduped(kept, dropped)
