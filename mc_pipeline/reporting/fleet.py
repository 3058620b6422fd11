"""Several OpenClaw homes in one view (MC_OPENCLAW_HOMES): each home's tables combined, agents qualified.

Each home of a fleet has its own data folder, ``$MC_DATA_DIR/homes/<name>/``, with the whole one-home layout
(staged records, ``llm_calls`` by day, per-day aggregates, its own ``usage-data.json``). :func:`combine`
writes the fleet's view into ``$MC_DATA_DIR`` itself: the per-day aggregates, the line accounting, the
quarantine and reconciliation and ``api_calls`` of every home, with ``agent_id`` qualified as
``<home>/<agent>`` (two homes both have a ``main`` agent) and ``source_file`` as ``<home>:<file>``. The
combined marts, ``usage-data.json`` and alerts then read that exactly as they read one home's. A home that
could not be read this run keeps what was read from it before.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from mc_pipeline.tables.store import STAGED, Tables

HOMES_DIR = "homes"


def home_data(root: Path, name: str) -> Path:
    return root / HOMES_DIR / name


def _qualified(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    out = frame
    if "agent_id" in out.columns:
        out = out.with_columns(
            agent_id=pl.concat_str([pl.lit(f"{name}/"), pl.col("agent_id").fill_null("-")])
        )
    if "source_file" in out.columns:
        out = out.with_columns(source_file=pl.concat_str([pl.lit(f"{name}:"), pl.col("source_file")]))
    return out


def combine(root: Path, names: list[str]) -> dict[str, int]:
    """Write the fleet's combined tables under ``root`` from each home's; returns rows per table."""
    root_tables = Tables(root)
    counts = {}
    for table in STAGED:  # usage_daily, sessions_daily, health_daily, accounting, rejected
        parts = [_qualified(Tables(home_data(root, n)).staged(table), n) for n in names]
        frame = pl.concat(
            [p for p in parts if p.height] or [pl.DataFrame(schema=STAGED[table])], how="diagonal_relaxed"
        )
        frame = frame.cast(STAGED[table]).sort("day", maintain_order=True)
        from mc_pipeline.tables import storage

        storage.write_parquet(frame, root_tables.staging_dir("daily") / f"{table}.parquet")
        if table in ("sessions_daily", "health_daily"):
            root_tables.write(table, frame)
        counts[table] = frame.height
    for table in ("quarantine", "source_files", "api_calls"):
        parts = []
        for n in names:
            part = Tables(home_data(root, n)).read(table)
            if part.height:
                parts.append(_qualified(part, n) if table != "api_calls" else part)
        if parts:
            frame = pl.concat(parts, how="diagonal_relaxed")
            root_tables.write(table, frame)
            counts[table] = frame.height
        else:
            (root_tables.table_dir(table) / f"{table}.parquet").unlink(missing_ok=True)
            counts[table] = 0
    return counts


def recent_calls(root: Path, names: list[str], today: date, days: int, columns: list[str]) -> pl.DataFrame:
    """The last ``days`` days of ``llm_calls`` of every home (agents qualified): the alerts' recent calls."""
    wanted = [today - timedelta(days=i) for i in range(days)]
    cols = columns if "agent_id" in columns else [*columns, "agent_id"]
    parts = [
        _qualified(Tables(home_data(root, n)).read_days("llm_calls", wanted, columns=cols), n) for n in names
    ]
    parts = [p for p in parts if p.height]
    if not parts:
        return Tables(root).read_days("llm_calls", [], columns=cols)
    return pl.concat(parts, how="diagonal_relaxed")
