"""What a reader keeps between runs, under ``$MC_DATA_DIR/staging/<reader>/``, so the next run reads what
changed.

- ``records/``: the call records by day (:class:`mc_pipeline.ingest.day_store.DayStore`);
- ``quarantine.parquet``, ``file_counts.parquet``, ``problems.json``: the source's bad lines, per-unit line
  accounting and unreadable files, as a full read would give them;
- ``manifest.parquet``: per unit (file, database session, ...) what was read of it and the ``days`` its
  records are on (written last, with the settings it was read under);
- ``.staging``: present while a run changes the folder; found at the start of a run, it means an earlier
  run stopped half-way, and the source is read again in full.

A unit's ``days`` let a run rewrite only the days its changes touch, and let a rerun of one day re-read
exactly the units that hold it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from mc_pipeline.ingest.day_store import DayStore, Removal
from mc_pipeline.tables import storage
from mc_pipeline.tables.schemas import FILE_COUNTS, QUARANTINE

MARKER = ".staging"
MANIFEST_FILE = "manifest.parquet"


@dataclass
class ReadReport:
    """What one reader did this run."""

    touched: set[date] = field(default_factory=set)  # days whose records changed
    problems: list[str] = field(default_factory=list)
    mode: str = "incremental"  # or "full: <why>"
    summary: dict[str, int] = field(default_factory=dict)
    present: bool = True  # the source exists at all


class SourceState:
    def __init__(self, folder: Path, tz: str):
        self.folder, self.tz = folder, tz

    @property
    def store(self) -> DayStore:
        return DayStore(self.folder / "records", self.tz)

    # -- the run's bracket ---------------------------------------------------------------------------
    def interrupted(self) -> bool:
        return (self.folder / MARKER).exists()

    def begin(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / MARKER).write_text("a run is changing this folder\n")

    def end(self) -> None:
        (self.folder / MARKER).unlink(missing_ok=True)

    def reset(self) -> None:
        """Forget every staged record and the manifest (a full read follows)."""
        self.store.clear()
        for name in (MANIFEST_FILE, "quarantine.parquet", "file_counts.parquet", "problems.json"):
            (self.folder / name).unlink(missing_ok=True)

    def batch(self):
        """Everything staged, as one in-memory batch (all days): for tests and small homes."""
        from mc_pipeline.ingest.readers.batch import SourceBatch
        from mc_pipeline.tables.schemas import CALL_RECORDS

        store = self.store
        days = store.index().get_column("day").to_list()
        records = [store.read_day(d) for d in days]
        frame = pl.concat(records).cast(CALL_RECORDS) if records else pl.DataFrame(schema=CALL_RECORDS)
        return SourceBatch(
            frame.sort("source_file", "line_no", maintain_order=True, nulls_last=True),
            self.quarantine(),
            self.file_counts(),
            self.problems(),
        )

    # -- small tables ----------------------------------------------------------------------------------
    def _table(self, name: str, schema: dict) -> pl.DataFrame:
        path = self.folder / name
        if not path.exists():
            return pl.DataFrame(schema=schema)
        return storage.read_parquet(path).cast(schema)

    def quarantine(self) -> pl.DataFrame:
        return self._table("quarantine.parquet", QUARANTINE)

    def file_counts(self) -> pl.DataFrame:
        return self._table("file_counts.parquet", FILE_COUNTS)

    def problems(self) -> list[str]:
        try:
            return json.loads((self.folder / "problems.json").read_text())
        except (OSError, ValueError):
            return []

    def save(self, quarantine: pl.DataFrame, file_counts: pl.DataFrame, problems: list[str]) -> None:
        storage.write_parquet(quarantine.cast(QUARANTINE), self.folder / "quarantine.parquet")
        storage.write_parquet(file_counts.cast(FILE_COUNTS), self.folder / "file_counts.parquet")
        storage.write_json(problems, self.folder / "problems.json")

    def manifest(self, schema: dict, settings_key: str) -> pl.DataFrame | None:
        """The manifest, or None when there is none or it was written under other settings (or another
        version)."""
        path = self.folder / MANIFEST_FILE
        if not path.exists():
            return None
        try:
            meta = pl.read_parquet_metadata(path)
            if meta.get("mc_pipeline.settings") != settings_key:
                return None
            return storage.read_parquet(path).select([pl.col(c).cast(t) for c, t in schema.items()])
        except Exception:  # noqa: BLE001 - an unreadable or older manifest only means a full read
            return None

    def write_manifest(self, manifest: pl.DataFrame, schema: dict, settings_key: str) -> None:
        with storage.atomic_path(self.folder / MANIFEST_FILE) as tmp:
            manifest.select([pl.col(c).cast(t) for c, t in schema.items()]).write_parquet(
                tmp, compression="zstd", metadata={"mc_pipeline.settings": settings_key}
            )


def unit_days(records: pl.DataFrame, tz: str) -> dict[str, list[date]]:
    """source_file -> the days (in ``tz``) its rows are on."""
    if records.height == 0:
        return {}
    frame = records.select("source_file", day=pl.col("timestamp").dt.convert_time_zone(tz).dt.date()).unique()
    return {k: sorted(v) for k, v in frame.group_by("source_file").agg(pl.col("day")).iter_rows()}


def filter_units(
    frame: pl.DataFrame, drop: set[str], after_line: dict[str, int], relabel: dict[str, str]
) -> pl.DataFrame:
    """Rows of ``frame`` (records, quarantine, file counts) that stay: renamed units relabelled, then without
    dropped units and without the lines of appended units past what was consumed."""
    if frame.height == 0:
        return frame
    sf = pl.col("source_file")
    if relabel:  # first: a new file may have taken a renamed file's old name
        frame = frame.with_columns(source_file=sf.replace(relabel))
    if drop:
        frame = frame.filter(~sf.is_in(sorted(drop)))
    if after_line and "line_no" in frame.columns:
        limits = pl.DataFrame(
            {"source_file": list(after_line), "_upto": list(after_line.values())},
            schema={"source_file": pl.String, "_upto": pl.Int64},
        )
        frame = (
            frame.join(limits, on="source_file", how="left", maintain_order="left")
            .filter(
                pl.col("_upto").is_null()
                | pl.col("line_no").is_null()
                | (pl.col("line_no") <= pl.col("_upto"))
            )
            .drop("_upto")
        )
    return frame


#: The manifest of a source read whole whenever its file changes (interactions.db, model-usage.jsonl).
WHOLE_FILE: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "stamp": pl.String(),
    "days": pl.List(pl.Date()),
}


def file_stamp(paths: list[Path]) -> str:
    """Size, mtime, inode and ctime of each path (missing ones too): what changes when someone writes it."""
    import os

    parts = []
    for p in paths:
        try:
            st = os.stat(p)
            parts.append(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}")
        except OSError:
            parts.append("-")
    return "|".join(parts)


def stage_whole_file(
    state: SourceState, stamp: str, read, *, settings_key: str = "", full_rebuild: bool = False
):
    """Stage a source that is read whole when it changed: ``read()`` returns (SourceBatch, extra) and is
    called only when ``stamp`` differs from the last run's (or on a full rebuild). Returns (report, extra or
    None when the source was not read)."""
    manifest = None if full_rebuild else state.manifest(WHOLE_FILE, settings_key)
    why = "full rebuild requested" if full_rebuild else None
    if why is None and state.interrupted():
        why, manifest = "an earlier run stopped while staging", None
    if manifest is not None and manifest.height and set(manifest.get_column("stamp").to_list()) == {stamp}:
        return ReadReport(problems=state.problems(), mode="unchanged"), None
    batch, extra = read()
    removal = Removal()
    if manifest is not None:
        removal.units = set(manifest.get_column("source_file").to_list())
        removal.days = {d for days in manifest.get_column("days").to_list() for d in (days or [])}
    else:
        state.reset()
    state.begin()
    store = state.store
    store.add(batch.records)
    touched = store.finish(removal)
    state.save(batch.quarantine, batch.file_counts, batch.problems)
    days = unit_days(batch.records, state.tz)
    units = sorted(set(batch.file_counts.get_column("source_file").to_list()) | set(days)) or ["-"]
    rows = [{"source_file": u, "stamp": stamp, "days": days.get(u, [])} for u in units]
    state.write_manifest(pl.DataFrame(rows, schema=WHOLE_FILE), WHOLE_FILE, settings_key)
    state.end()
    return ReadReport(
        touched=touched, problems=list(batch.problems), mode=f"full: {why}" if why else "changed"
    ), extra
