"""Parquet I/O for assets: published tables under ``$MC_DATA_DIR/parquet``, source batches under staging.

- A ``pl.DataFrame`` output goes to ``parquet/<asset>/``: hive ``day=`` folders when the asset's
  metadata says ``partition_by: day``, else ``<asset>.parquet``; with ``csv: True`` also ``csv/<asset>.csv``.
- A ``SourceBatch`` output goes to ``staging/<asset>/`` (records, quarantine, file counts, problems).
Everything is written atomically (see ``mc_pipeline.storage``).

Within one run, a day-partitioned table or a batch written by a step is handed to the later steps of the
same process as the frame just written (no read back), as long as its files on disk are still the ones
this run wrote (the stat of ``_digests.json`` / ``records.parquet``); else it is read from disk as usual.
The kept frames are dropped when the run ends.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import PrivateAttr

from mc_pipeline import storage
from mc_pipeline.readers.batch import SourceBatch
from mc_pipeline.schemas import CALL_RECORDS, FILE_COUNTS, LLM_CALLS, QUARANTINE

#: Day-partitioned tables read back with their full schema (an empty table still has every column).
PARTITIONED_SCHEMAS = {"llm_calls": LLM_CALLS}


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class ParquetIOManager(dg.ConfigurableIOManager):
    data_dir: str = "./data"
    #: what this run wrote, for its later steps: name -> (file rewritten on every write, its stamp, object)
    _written: dict = PrivateAttr(default_factory=dict)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._written.clear()

    def _keep(self, name: str, marker: Path, obj: object) -> None:
        stamp = _stamp(marker)
        if stamp is not None:
            self._written[name] = (marker, stamp, obj)

    def _kept(self, name: str) -> object | None:
        marker, stamp, obj = self._written.get(name, (None, None, None))
        return obj if marker is not None and _stamp(marker) == stamp else None

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def _name(self, key: dg.AssetKey) -> str:
        return key.path[-1]

    def table_dir(self, name: str) -> Path:
        return self.root / "parquet" / name

    def staging_dir(self, name: str) -> Path:
        return self.root / "staging" / name

    # -- writing -------------------------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:
            return
        name = self._name(context.asset_key)
        meta = context.definition_metadata or {}
        if isinstance(obj, SourceBatch):
            folder = self.staging_dir(name)
            storage.write_parquet(obj.records, folder / "records.parquet")
            storage.write_parquet(obj.quarantine, folder / "quarantine.parquet")
            storage.write_parquet(obj.file_counts, folder / "file_counts.parquet")
            storage.write_json(obj.problems, folder / "problems.json")
            kept = SourceBatch(
                records=obj.records.cast(CALL_RECORDS),
                quarantine=obj.quarantine.cast(QUARANTINE),
                file_counts=obj.file_counts.cast(FILE_COUNTS),
                problems=list(obj.problems),
            )  # as load_batch returns it
            self._keep(name, folder / "records.parquet", kept)
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{name}: cannot store a {type(obj).__name__}; return a polars DataFrame")
        if meta.get("partition_by") == "day":
            stats = storage.write_partitioned_by_day(obj, self.table_dir(name))
            context.add_output_metadata({k: dg.MetadataValue.int(v) for k, v in stats.items()})
            # as a read would return it: days in order, rows of a day in their order, the table's schema
            schema = PARTITIONED_SCHEMAS.get(name)
            kept = obj.sort("day", maintain_order=True)
            if schema is not None:
                kept = kept.select([pl.col(c).cast(t) for c, t in schema.items()])
            self._keep(name, self.table_dir(name) / storage.DIGESTS, kept)
        else:
            storage.write_parquet(obj, self.table_dir(name) / f"{name}.parquet")
        if meta.get("csv"):
            storage.write_csv(obj, self.root / "csv" / f"{name}.csv")

    # -- reading -------------------------------------------------------------------------------------
    def load_input(self, context: dg.InputContext) -> object:
        name = self._name(context.asset_key)
        kept = self._kept(name)
        if context.dagster_type.typing_type is SourceBatch:
            return kept if isinstance(kept, SourceBatch) else self.load_batch(name)
        meta = context.upstream_output.definition_metadata if context.upstream_output else {}
        partitioned = (meta or {}).get("partition_by") == "day"
        if partitioned and isinstance(kept, pl.DataFrame):
            return kept
        return self.load_table(name, partitioned=partitioned)

    def load_batch(self, name: str) -> SourceBatch:
        folder = self.staging_dir(name)
        if not (folder / "records.parquet").exists():
            return SourceBatch.empty()
        problems_file = folder / "problems.json"
        return SourceBatch(
            records=storage.read_parquet(folder / "records.parquet").cast(CALL_RECORDS),
            quarantine=storage.read_parquet(folder / "quarantine.parquet").cast(QUARANTINE),
            file_counts=storage.read_parquet(folder / "file_counts.parquet").cast(FILE_COUNTS),
            problems=json.loads(problems_file.read_text()) if problems_file.exists() else [],
        )

    def load_table(self, name: str, partitioned: bool = False, schema: dict | None = None) -> pl.DataFrame:
        folder = self.table_dir(name)
        if partitioned:
            return storage.read_partitioned_by_day(folder, schema or PARTITIONED_SCHEMAS.get(name))
        return storage.read_parquet(folder / f"{name}.parquet")
