"""Staged call records of one source, one Parquet file per day (in the reporting zone): what the readers
found, before de-duplication and pricing, kept so that a run works on the days that changed only.

Layout under ``root`` (``$MC_DATA_DIR/staging/<source asset>/records``):

- ``day=YYYY-MM-DD/records.parquet``: CALL_RECORDS rows of that day, ordered by ``source_file``, ``line_no``;
- ``_days.parquet``: per day ``rows``, ``digest`` (order-free digest of the day's rows), ``head``/``tail``
  (digests of the rows within :data:`MARGIN` of the day's start/end: what a neighbouring day's
  de-duplication looks at);
- ``_day_sessions.parquet``: (day, agent_id, session_id) of every session with records on a day.

An update is streamed (:meth:`DayStore.update`): rows to remove are named by unit (``source_file``: a
file, or a database session) and the days they were on (the reader's manifest knows), new rows are
added frame by frame; added rows are buffered and spilled to per-day part files above ``spill_bytes``,
so memory stays flat whatever the size of a full build. ``finish`` rewrites each touched day once
(atomically) and returns the touched days. A reader never sees half a day file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from mc_pipeline.tables import storage
from mc_pipeline.tables.schemas import CALL_RECORDS

#: How far into a neighbouring day de-duplication looks (a copy within 5 min, a prompt-error's run).
MARGIN = timedelta(hours=1)
DAY_FILE = "records.parquet"
INDEX = "_days.parquet"
SESSIONS = "_day_sessions.parquet"
#: Added rows held in memory before they are spilled to per-day part files.
SPILL_BYTES = 48 * 1024 * 1024

DAY_INDEX: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "rows": pl.Int64(),
    "digest": pl.String(),
    "head": pl.String(),  # rows in the first MARGIN of the day
    "tail": pl.String(),  # rows in the last MARGIN of the day
}
DAY_SESSIONS: dict[str, pl.DataType] = {"day": pl.Date(), "agent_id": pl.String(), "session_id": pl.String()}


def digest(frame: pl.DataFrame) -> str:
    """An order-free digest of a frame's rows ("0" for none)."""
    if frame.height == 0:
        return "0"
    return f"{frame.height}:{int(frame.hash_rows(seed=5).sum()) & 0xFFFFFFFFFFFF:x}"


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in ``tz``, in UTC (23 or 25 hours around DST changes)."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def with_day(records: pl.DataFrame, tz: str) -> pl.DataFrame:
    return records.with_columns(day=pl.col("timestamp").dt.convert_time_zone(tz).dt.date())


@dataclass
class Removal:
    """What of the stored rows goes: whole units, the tail of appended units, renamed units' labels."""

    units: set[str] = field(default_factory=set)  # source_file: every row
    after_line: dict[str, int] = field(default_factory=dict)  # source_file -> rows with line_no > N go
    relabel: dict[str, str] = field(default_factory=dict)  # old source_file -> new
    days: set[date] = field(default_factory=set)  # the days those rows are on (from the manifest)
    drop_new: set[str] = field(default_factory=set)  # units whose rows added this run go too (a failed read)

    def __bool__(self) -> bool:
        return bool(self.units or self.after_line or self.relabel)


class DayStore:
    def __init__(self, root: Path, tz: str, spill_bytes: int = SPILL_BYTES):
        self.root, self.tz, self.spill_bytes = root, tz, spill_bytes
        self._buffer: list[pl.DataFrame] = []
        self._buffered = 0
        self._spills = 0
        self._spilled_days: set[date] = set()

    # -- reading -------------------------------------------------------------------------------------
    def index(self) -> pl.DataFrame:
        path = self.root / INDEX
        if not path.exists():
            return pl.DataFrame(schema=DAY_INDEX)
        return storage.read_parquet(path).cast(DAY_INDEX)

    def day_sessions(self) -> pl.DataFrame:
        path = self.root / SESSIONS
        if not path.exists():
            return pl.DataFrame(schema=DAY_SESSIONS)
        return storage.read_parquet(path).cast(DAY_SESSIONS)

    def day_path(self, day: date) -> Path:
        return self.root / f"day={day.isoformat()}" / DAY_FILE

    def read_day(self, day: date, columns: list[str] | None = None) -> pl.DataFrame:
        try:
            frame = storage.read_parquet(self.day_path(day), columns)
        except FileNotFoundError:
            return pl.DataFrame(
                schema={c: t for c, t in CALL_RECORDS.items() if columns is None or c in columns}
            )
        return frame.cast({c: t for c, t in CALL_RECORDS.items() if c in frame.columns})

    def read_window(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Rows with start <= timestamp < end (the days they are on are read whole, then filtered)."""
        first = start.astimezone(ZoneInfo(self.tz)).date()
        last = (end - timedelta(microseconds=1)).astimezone(ZoneInfo(self.tz)).date()
        parts, day = [], first
        while day <= last:
            if self.day_path(day).exists():
                parts.append(self.read_day(day))
            day += timedelta(days=1)
        if not parts:
            return pl.DataFrame(schema=CALL_RECORDS)
        frame = pl.concat(parts)
        lo, hi = start.astimezone(UTC), end.astimezone(UTC)
        return frame.filter(pl.col("timestamp").is_between(pl.lit(lo), pl.lit(hi), closed="left"))

    # -- writing -------------------------------------------------------------------------------------
    def add(self, records: pl.DataFrame) -> None:
        """Queue new rows (CALL_RECORDS); spilled to part files when the buffer is full."""
        if records.height == 0:
            return
        self._buffer.append(records.cast(CALL_RECORDS))
        self._buffered += records.estimated_size()
        if self._buffered >= self.spill_bytes:
            self._spill()

    def _spill(self) -> None:
        if not self._buffer:
            return
        frame = with_day(pl.concat(self._buffer), self.tz)
        self._buffer, self._buffered = [], 0
        self._spills += 1
        for (day,), part in frame.partition_by("day", as_dict=True).items():
            folder = self.root / f"day={day.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            part.drop("day").write_parquet(folder / f".part-{self._spills:05d}.parquet", compression="lz4")
            self._spilled_days.add(day)

    def finish(self, removal: Removal | None = None) -> set[date]:
        """Apply ``removal`` and every added row, each touched day rewritten once; returns those days."""
        removal = removal or Removal()
        buffered = with_day(pl.concat(self._buffer), self.tz) if self._buffer else None
        self._buffer, self._buffered = [], 0
        added_days = set(self._spilled_days)
        by_day: dict[date, pl.DataFrame] = {}
        if buffered is not None:
            by_day = {d: p.drop("day") for (d,), p in buffered.partition_by("day", as_dict=True).items()}
            added_days |= set(by_day)
        touched = added_days | (removal.days if removal else set())
        index = {r["day"]: r for r in self.index().iter_rows(named=True)}
        sessions = self.day_sessions()
        new_sessions = []
        for day in sorted(touched):
            old = self.read_day(day) if (day in index or self.day_path(day).exists()) else None
            parts = []
            if old is not None and old.height:
                if removal:
                    old = _remove(old, removal)
                parts.append(old)
            folder = self.root / f"day={day.isoformat()}"
            spilled = sorted(folder.glob(".part-*.parquet")) if day in self._spilled_days else []
            new = [pl.read_parquet(p).cast(CALL_RECORDS) for p in spilled] + (
                [by_day[day]] if day in by_day else []
            )
            if removal.drop_new:
                new = [n.filter(~pl.col("source_file").is_in(sorted(removal.drop_new))) for n in new]
            parts += new
            frame = (
                pl.concat(parts).sort("source_file", "line_no", maintain_order=True, nulls_last=True)
                if parts
                else None
            )
            if frame is None or frame.height == 0:
                if folder.exists():
                    shutil.rmtree(folder, ignore_errors=True)
                index.pop(day, None)
            else:
                storage.write_parquet(frame, folder / DAY_FILE)
                for p in spilled:
                    os.unlink(p)
                index[day] = self._summary(day, frame)
                new_sessions.append(frame.select(pl.lit(day).alias("day"), "agent_id", "session_id").unique())
        self._spilled_days.clear()
        if touched:
            idx = (
                pl.DataFrame(list(index.values()), schema=DAY_INDEX).sort("day")
                if index
                else pl.DataFrame(schema=DAY_INDEX)
            )
            storage.write_parquet(idx, self.root / INDEX)
            kept = sessions.filter(~pl.col("day").is_in(sorted(touched)))
            storage.write_parquet(
                pl.concat([kept, *[s.cast(DAY_SESSIONS) for s in new_sessions]]).sort(
                    "day", "agent_id", "session_id"
                ),
                self.root / SESSIONS,
            )
        return touched

    def _summary(self, day: date, frame: pl.DataFrame) -> dict:
        start, end = day_bounds(day, self.tz)
        ts = pl.col("timestamp")
        return {
            "day": day,
            "rows": frame.height,
            "digest": digest(frame),
            "head": digest(frame.filter(ts < pl.lit(start + MARGIN))),
            "tail": digest(frame.filter(ts >= pl.lit(end - MARGIN))),
        }

    def clear(self) -> None:
        """Forget everything (a full rebuild, a changed time zone)."""
        if self.root.exists():
            shutil.rmtree(self.root)


def _remove(frame: pl.DataFrame, removal: Removal) -> pl.DataFrame:
    """Renamed units relabelled first (a new file may take the old name), then dropped units and the
    lines of appended units past what was consumed."""
    from mc_pipeline.ingest.readers.staged import filter_units

    return filter_units(frame, removal.units, removal.after_line, removal.relabel)


def merged_index(stores: Iterable[DayStore]) -> pl.DataFrame:
    """(day, source, rows, digest, head, tail) of several stores."""
    parts = [s.index().with_columns(source=pl.lit(s.root.parent.name)) for s in stores]
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame(schema={**DAY_INDEX, "source": pl.String()})
    return pl.concat(parts)
