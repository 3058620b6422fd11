"""The IO manager hands a table or batch written in this run to later steps without reading it back,
and what it hands over equals what a read from disk gives; when another writer replaced the files, it
reads them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import polars as pl

from mc_pipeline import storage
from mc_pipeline.calls import build_llm_calls
from mc_pipeline.defs.io_manager import ParquetIOManager
from mc_pipeline.readers.batch import SourceBatch
from mc_pipeline.readers.session_index import SESSION_INDEX
from mc_pipeline.readers.transcript_files import read_transcripts
from mc_pipeline.schemas import LLM_CALLS
from mc_pipeline.task_types import load_task_rules
from mc_pipeline_tests import homes as h


def calls_over_days(tmp_path) -> pl.DataFrame:
    home = tmp_path / "home"
    t0 = datetime(2026, 4, 1, 23, 30, tzinfo=timezone.utc)
    for s in range(3):
        lines = [h.session_line(f"s{s}", t0)]
        lines += [
            h.assistant(t0 + timedelta(hours=11 * i + s), u=h.usage(10 + i, 5, cost=0.01 * i))
            for i in range(6)
        ]
        h.write_session(home, lines)
    records = read_transcripts(home).records
    built = build_llm_calls(records, session_index=pl.DataFrame(schema=SESSION_INDEX), auth={},
                            task_rules=load_task_rules(), tz="Europe/Berlin", cost_mode="auto")  # fmt: skip
    return built.calls


def contexts(name: str, metadata: dict, typing_type: type = pl.DataFrame):
    dagster_type = dg.DagsterType(lambda _, v: True, name=f"{name}_type", typing_type=typing_type)
    out = dg.build_output_context(asset_key=dg.AssetKey(name), definition_metadata=metadata)
    inp = dg.build_input_context(asset_key=dg.AssetKey(name), upstream_output=out, dagster_type=dagster_type)
    return out, inp


def test_a_day_partitioned_table_is_handed_over_as_a_read_would_return_it(tmp_path):
    calls = calls_over_days(tmp_path)
    assert calls.get_column("day").n_unique() >= 3
    shuffled = calls.reverse()  # rows not in day order: a read returns them by day
    io = ParquetIOManager(data_dir=str(tmp_path / "data"))
    out, inp = contexts("llm_calls", {"partition_by": "day"})
    io.handle_output(out, shuffled)

    handed = io.load_input(inp)
    from_disk = storage.read_partitioned_by_day(io.table_dir("llm_calls"), LLM_CALLS)
    assert handed.equals(from_disk)
    assert io.load_input(inp) is handed  # kept, not read again

    # another run replaces the table: the files on disk win
    storage.write_partitioned_by_day(calls.head(2), io.table_dir("llm_calls"))
    again = io.load_input(inp)
    assert again.height == 2
    assert again.equals(storage.read_partitioned_by_day(io.table_dir("llm_calls"), LLM_CALLS))

    io.teardown_after_execution(None)  # the run ends: nothing is kept
    assert io.load_input(inp) is not again


def test_a_batch_is_handed_over_as_load_batch_returns_it(tmp_path):
    calls = calls_over_days(tmp_path)
    records = read_transcripts(tmp_path / "home")
    batch = SourceBatch(
        records=records.records,
        quarantine=records.quarantine,
        file_counts=records.file_counts,
        problems=["a problem"],
    )
    assert calls.height == batch.records.height
    io = ParquetIOManager(data_dir=str(tmp_path / "data"))
    out, inp = contexts("transcript_records", {}, typing_type=SourceBatch)
    io.handle_output(out, batch)
    handed = io.load_input(inp)
    from_disk = io.load_batch("transcript_records")
    assert handed.records.equals(from_disk.records)
    assert handed.quarantine.equals(from_disk.quarantine)
    assert handed.file_counts.equals(from_disk.file_counts)
    assert handed.problems == from_disk.problems == ["a problem"]
    assert io.load_input(inp) is handed


def test_reading_some_columns_of_a_partitioned_table(tmp_path):
    calls = calls_over_days(tmp_path)
    root = tmp_path / "t"
    storage.write_partitioned_by_day(calls, root)
    some = storage.read_partitioned_by_day(root, LLM_CALLS, columns=["cost_usd", "status"])
    full = storage.read_partitioned_by_day(root, LLM_CALLS)
    assert set(some.columns) == {"day", "status", "cost_usd"}
    assert some.equals(full.select(some.columns))
