"""Counts that must add up: for every input file, lines read = calls + other + skipped + quarantined."""

from __future__ import annotations

import polars as pl

from mc_pipeline.tables.schemas import FILE_COUNTS

KEY = ["source", "source_file"]


def _count(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    return frame.group_by(KEY).agg(pl.len().cast(pl.Int64).alias(name))


def reconcile(
    file_counts: pl.DataFrame, calls: pl.DataFrame, quarantine: pl.DataFrame, duplicates: pl.DataFrame
) -> pl.DataFrame:
    """Per file: what the reader saw, and what ended in ``llm_calls``/quarantine; ``balanced`` says if it adds
    up.

    ``calls`` and ``quarantined`` are counted in the final tables (not taken from the reader), so a row lost
    anywhere between reading and writing shows up as an unbalanced file.
    """
    out = (
        file_counts.select(KEY + ["lines_read", "other_entries", "skipped_by_rule"])
        .join(_count(calls, "calls"), on=KEY, how="left")
        .join(
            _count(quarantine.filter(pl.col("source_file").is_not_null()), "quarantined"), on=KEY, how="left"
        )
        .join(duplicates.select(KEY + ["duplicates"]), on=KEY, how="left")
        .with_columns(pl.col("calls", "quarantined", "duplicates").fill_null(0))
        .with_columns(skipped_by_rule=pl.col("skipped_by_rule") + pl.col("duplicates"))
    )
    return out.select(
        *FILE_COUNTS,
        "duplicates",
        balanced=pl.col("lines_read")
        == pl.col("calls") + pl.col("other_entries") + pl.col("skipped_by_rule") + pl.col("quarantined"),
    ).sort(KEY)


def reconcile_accounting(
    file_counts: pl.DataFrame, accounting: pl.DataFrame, quarantine: pl.DataFrame
) -> pl.DataFrame:
    """Per file, from the readers' counts and the per-day accounting of the built days (calls kept,
    duplicates dropped, rows the contract rejected): ``balanced`` says if its lines add up."""
    acc = accounting.group_by(KEY).agg(pl.col("calls").sum(), duplicates=pl.col("duplicates").sum())
    out = (
        file_counts.select(KEY + ["lines_read", "other_entries", "skipped_by_rule"])
        .join(acc, on=KEY, how="left")
        .join(
            _count(quarantine.filter(pl.col("source_file").is_not_null()), "quarantined"), on=KEY, how="left"
        )
        .with_columns(pl.col("calls", "quarantined", "duplicates").fill_null(0))
        .with_columns(skipped_by_rule=pl.col("skipped_by_rule") + pl.col("duplicates"))
    )
    return out.select(
        *FILE_COUNTS,
        "duplicates",
        balanced=pl.col("lines_read")
        == pl.col("calls") + pl.col("other_entries") + pl.col("skipped_by_rule") + pl.col("quarantined"),
    ).sort(KEY)
