"""Parquet I/O for assets: published tables under ``$MC_DATA_DIR/parquet``, source batches under staging.

- A ``pl.DataFrame`` output goes to ``parquet/<asset>/``: hive ``day=`` folders when the asset's
  metadata says ``partition_by: day``, else ``<asset>.parquet``; with ``csv: True`` also ``csv/<asset>.csv``.
- A ``SourceBatch`` output goes to ``staging/<asset>/`` (records, quarantine, file counts, problems).
Everything is written atomically (see ``mc_pipeline.storage``).
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl

from mc_pipeline import storage
from mc_pipeline.readers.batch import SourceBatch
from mc_pipeline.schemas import CALL_RECORDS, FILE_COUNTS, LLM_CALLS, QUARANTINE

#: Day-partitioned tables read back with their full schema (an empty table still has every column).
PARTITIONED_SCHEMAS = {"llm_calls": LLM_CALLS}


class ParquetIOManager(dg.ConfigurableIOManager):
    data_dir: str = "./data"

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
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{name}: cannot store a {type(obj).__name__}; return a polars DataFrame")
        if meta.get("partition_by") == "day":
            stats = storage.write_partitioned_by_day(obj, self.table_dir(name))
            context.add_output_metadata({k: dg.MetadataValue.int(v) for k, v in stats.items()})
        else:
            storage.write_parquet(obj, self.table_dir(name) / f"{name}.parquet")
        if meta.get("csv"):
            storage.write_csv(obj, self.root / "csv" / f"{name}.csv")

    # -- reading -------------------------------------------------------------------------------------
    def load_input(self, context: dg.InputContext) -> object:
        name = self._name(context.asset_key)
        if context.dagster_type.typing_type is SourceBatch:
            return self.load_batch(name)
        meta = context.upstream_output.definition_metadata if context.upstream_output else {}
        return self.load_table(name, partitioned=(meta or {}).get("partition_by") == "day")

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
