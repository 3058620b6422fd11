"""Where each table lives under ``$MC_DATA_DIR`` and how it is read and written (atomically, see ``storage``).

- Day-partitioned tables (``DAY_TABLES``: ``llm_calls``, ``usage_daily``):
  ``parquet/<name>/day=YYYY-MM-DD/part-0.parquet``, one folder per day with rows (hive layout: DuckDB, Polars,
  pyarrow read them as one table). The per-day aggregates (``usage_daily``, ``sessions_daily``,
  ``health_daily``) keep an all-days copy in ``staging/daily/<name>.parquet`` (small: the marts, the dashboard
  and the alerts read it instead of hundreds of day files); ``sessions_daily`` and ``health_daily`` are
  published as that one file.
- Other tables: ``parquet/<name>/<name>.parquet`` (+ ``csv/<name>.csv`` for the marts).
- Per-day line accounting and the calls a day's build rejected: ``staging/daily/accounting.parquet``,
  ``staging/daily/rejected.parquet`` (all days; rows of rebuilt days replaced).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

import polars as pl

from mc_pipeline.calls.build_days import ACCOUNTING
from mc_pipeline.tables import storage
from mc_pipeline.tables.schemas import API_HEALTH, LLM_CALLS, QUARANTINE, SESSIONS_DAILY, USAGE_DAILY, conform

DAY_TABLES: dict[str, dict[str, pl.DataType]] = {"llm_calls": LLM_CALLS, "usage_daily": USAGE_DAILY}
#: Per-day tables with an all-days copy in staging (everything but llm_calls).
AGGREGATES = ("usage_daily", "sessions_daily", "health_daily")
STAGED = {
    "usage_daily": USAGE_DAILY,
    "sessions_daily": SESSIONS_DAILY,
    "health_daily": API_HEALTH,
    "accounting": ACCOUNTING,
    "rejected": {**QUARANTINE, "day": pl.Date()},
}


class Tables:
    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir).expanduser().resolve()

    @property
    def parquet(self) -> Path:
        return self.root / "parquet"

    def table_dir(self, name: str) -> Path:
        return self.parquet / name

    def staging_dir(self, name: str) -> Path:
        return self.root / "staging" / name

    # -- day-partitioned tables -------------------------------------------------------------------------
    def day_file(self, name: str, day: date) -> Path:
        return self.table_dir(name) / f"day={day.isoformat()}" / storage.PART_FILE

    def write_day(self, name: str, day: date, frame: pl.DataFrame) -> None:
        """One day of a day table (without its ``day`` column); no rows: the day's folder goes."""
        if frame.height == 0:
            self.remove_day(name, day)
            return
        storage.write_parquet(frame.drop("day", strict=False), self.day_file(name, day))

    def remove_day(self, name: str, day: date) -> None:
        folder = self.day_file(name, day).parent
        if folder.exists():
            storage.remove_tree(folder)

    def read_days(
        self, name: str, days: Iterable[date] | None = None, columns: list[str] | None = None
    ) -> pl.DataFrame:
        """Rows of some days (all when None) of a day table, with the ``day`` column."""
        schema = DAY_TABLES[name]
        if days is None:
            return storage.read_partitioned_by_day(self.table_dir(name), schema, columns=columns)
        want = {c: t for c, t in schema.items() if columns is None or c in columns or c == "day"}
        parts = []
        for day in sorted(set(days)):
            try:
                part = storage.read_parquet(self.day_file(name, day), [c for c in want if c != "day"])
            except FileNotFoundError:
                continue
            parts.append(part.with_columns(pl.lit(day, pl.Date()).alias("day")))
        if not parts:
            return pl.DataFrame(schema=want)
        return pl.concat(parts, how="diagonal_relaxed").select([pl.col(c).cast(t) for c, t in want.items()])

    def days(self, name: str) -> list[date]:
        folder = self.table_dir(name)
        if not folder.is_dir():
            return []
        return sorted(date.fromisoformat(p.name.split("=", 1)[1]) for p in folder.glob("day=*") if p.is_dir())

    # -- all-days copies of the aggregates, accounting, rejected rows -----------------------------------
    def staged(self, name: str) -> pl.DataFrame:
        path = self.staging_dir("daily") / f"{name}.parquet"
        if not path.exists():
            return pl.DataFrame(schema=STAGED[name])
        return storage.read_parquet(path).cast(STAGED[name])

    def replace_staged_days(self, name: str, days: Iterable[date], rows: pl.DataFrame) -> pl.DataFrame:
        """The all-days copy with ``days`` replaced by ``rows``; written, and returned."""
        days = sorted(set(days))
        rows = conform(rows, STAGED[name])
        frame = pl.concat([self.staged(name).filter(~pl.col("day").is_in(days)), rows])
        frame = frame.sort("day", maintain_order=True)
        storage.write_parquet(frame, self.staging_dir("daily") / f"{name}.parquet")
        return frame

    def load(self, name: str) -> pl.DataFrame:
        """A whole table: every day of a day-partitioned one (with ``day``), else its single file."""
        return self.read_days(name) if name in DAY_TABLES else self.read(name)

    # -- other tables -------------------------------------------------------------------------------------
    def write(self, name: str, frame: pl.DataFrame, csv: bool = False) -> None:
        storage.write_parquet(frame, self.table_dir(name) / f"{name}.parquet")
        if csv:
            storage.write_csv(frame, self.root / "csv" / f"{name}.csv")

    def read(self, name: str, schema: dict | None = None) -> pl.DataFrame:
        path = self.table_dir(name) / f"{name}.parquet"
        if not path.exists():
            return pl.DataFrame(schema=schema or {})
        frame = storage.read_parquet(path)
        return frame.cast(schema) if schema else frame
