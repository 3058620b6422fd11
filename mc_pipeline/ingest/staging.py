"""Every reader, brought up to date in one call: the raw sources -> staged records by day (Dagster-free).

Readers (staging folder names, also the Dagster asset names): ``transcript_records`` (the JSONL and ``.zst``
files), ``transcript_store_records`` (the agent databases), ``interactions_db_records`` (+ the ``api_calls``
table) and ``model_usage_log_records``. Each keeps its state under ``staging/<reader>/``
(:mod:`mc_pipeline.ingest.readers.staged`); what they stage depends on the reporting zone (the days) and on
the reading code, so a change of either reads everything again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from mc_pipeline.ingest.day_store import DayStore
from mc_pipeline.ingest.readers.batch import SourceBatch
from mc_pipeline.ingest.readers.staged import ReadReport, SourceState, file_stamp, stage_whole_file
from mc_pipeline.runtime.config import Config
from mc_pipeline.tables.schemas import API_CALLS

READERS = (
    "transcript_store_records",
    "transcript_records",
    "interactions_db_records",
    "model_usage_log_records",
)
Progress = Callable[[str], None]
#: The code a staged record depends on: a change of it reads every source again.
READER_CODE = ("ingest/readers", "tables/schemas.py", "ingest/day_store.py")


def reader_key(config: Config) -> str:
    package = Path(__file__).parents[1]
    files = []
    for name in READER_CODE:
        path = package / name
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            st = f.stat()
            files.append(f"{f.relative_to(package)}:{st.st_size}:{st.st_mtime_ns}")
    code = hashlib.blake2b("\n".join(files).encode(), digest_size=8).hexdigest()
    return f"tz={config.tz};code={code}"


def states(config: Config) -> dict[str, SourceState]:
    return {name: SourceState(config.staging / name, config.tz) for name in READERS}


def stores(config: Config) -> list[DayStore]:
    return [s.store for s in states(config).values()]


@dataclass
class StagedSources:
    reports: dict[str, ReadReport] = field(default_factory=dict)
    api_calls_rows: int = 0


def _stage_transcript_files(
    config: Config,
    state: SourceState,
    key: str,
    full_rebuild: bool,
    reread: set[str] | None,
    progress: Progress | None,
) -> ReadReport:
    """Transcript files step: the JSONL and ``.zst`` transcripts, read incrementally."""
    from mc_pipeline.ingest.readers.transcript_files import stage_transcript_files

    read = stage_transcript_files(
        config.home, state, settings_key=key, full_rebuild=full_rebuild, reread=reread, progress=progress
    )
    return read.report


def _stage_agent_dbs(
    config: Config,
    state: SourceState,
    key: str,
    full_rebuild: bool,
    reread: set[str] | None,
    progress: Progress | None,
) -> ReadReport:
    """Agent databases step: every agent database the home or the state database's registry names."""
    from mc_pipeline.ingest.readers.agent_db import stage_agent_dbs
    from mc_pipeline.ingest.readers.state_db import read_state_db

    state_db = read_state_db(config.home)
    read = stage_agent_dbs(
        config.home,
        state,
        settings_key=key,
        full_rebuild=full_rebuild,
        reread=reread,
        registry=state_db.agent_dbs,
        progress=progress,
    )
    read.report.problems[:0] = state_db.problems
    read.report.present = (
        bool(read.summary()["sessions_read"] + read.summary()["sessions_unchanged"]) or state_db.present
    )
    return read.report


def _stage_interactions_db(
    config: Config, state: SourceState, key: str, full_rebuild: bool
) -> tuple[ReadReport, int]:
    """interactions.db step: its ``llm_calls`` staged as a whole file, its ``api_calls`` written as a table
    when read (or missing); returns the report and the ``api_calls`` rows."""
    from mc_pipeline.tables.store import Tables

    path = config.interactions_db_path
    tables = Tables(config.data)

    def read_db() -> tuple[SourceBatch, pl.DataFrame]:
        from mc_pipeline.ingest.readers.interactions_db import read_interactions_db

        if not path.is_file():
            return SourceBatch.empty(), pl.DataFrame(schema=API_CALLS)
        got = read_interactions_db(path, config.home, tz=config.tz)
        return got.batch, got.api_calls

    stamp = file_stamp([path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")])
    report, api = stage_whole_file(state, stamp, read_db, settings_key=key, full_rebuild=full_rebuild)
    if api is not None or not (tables.table_dir("api_calls") / "api_calls.parquet").exists():
        from mc_pipeline.tables.contracts import ApiCallsModel

        api = api if api is not None else read_db()[1]
        ApiCallsModel.validate(api)
        tables.write("api_calls", api)
    report.present = path.is_file()
    return report, tables.read("api_calls").height


def _stage_model_usage_log(config: Config, state: SourceState, key: str, full_rebuild: bool) -> ReadReport:
    """Model usage log step: ``logs/model-usage.jsonl`` staged as a whole file."""
    log = config.model_usage_log_path

    def read_log() -> tuple[SourceBatch, None]:
        from mc_pipeline.ingest.readers.model_usage_log import read_model_usage_log

        return (
            read_model_usage_log(log, config.home, tz=config.tz) if log.is_file() else SourceBatch.empty()
        ), None

    report, _ = stage_whole_file(
        state, file_stamp([log]), read_log, settings_key=key, full_rebuild=full_rebuild
    )
    report.present = log.is_file()
    return report


def stage_sources(
    config: Config,
    selected: set[str] | None = None,
    *,
    full_rebuild: bool = False,
    reread: dict[str, set[str]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> StagedSources:
    """Bring the selected readers' staged records up to date (all readers when ``selected`` is None).

    ``reread``: per reader, units (``source_file``) to read again whole whatever their state; for the
    readers of whole files (interactions.db, the log) any unit means the file."""
    selected = set(READERS) | {"api_calls"} if selected is None else selected
    reread = reread or {}
    key = reader_key(config)
    st = states(config)
    out = StagedSources()
    if "transcript_records" in selected:
        name = "transcript_records"
        out.reports[name] = _stage_transcript_files(
            config, st[name], key, full_rebuild, reread.get(name), progress
        )
    if "transcript_store_records" in selected:
        name = "transcript_store_records"
        out.reports[name] = _stage_agent_dbs(config, st[name], key, full_rebuild, reread.get(name), progress)
    if selected & {"interactions_db_records", "api_calls"}:
        name = "interactions_db_records"
        full = full_rebuild or bool(reread.get(name))
        out.reports[name], out.api_calls_rows = _stage_interactions_db(config, st[name], key, full)
    if "model_usage_log_records" in selected:
        name = "model_usage_log_records"
        full = full_rebuild or bool(reread.get(name))
        out.reports[name] = _stage_model_usage_log(config, st[name], key, full)
    return out


def home_problem(home: Path) -> str | None:
    """Why a fleet's home cannot be read at all (unmounted, no permission), or None when it can be listed."""
    import os

    if not home.exists():
        return f"{home.name}: not there (unmounted or removed?)"
    try:
        os.listdir(home)
        if (home / "agents").is_dir():
            os.listdir(home / "agents")
    except OSError as exc:
        return f"cannot be listed ({exc.strerror or exc})"
    return None


HOME_PROBLEM_FILE = "home_problem.json"


def record_home_problem(staging: Path, problem: str | None) -> None:
    """Remember why a fleet's home could not be read in the last run (for the summary), or forget it."""
    from mc_pipeline.tables import storage

    path = staging / HOME_PROBLEM_FILE
    if problem:
        storage.write_json({"problem": problem}, path)
    else:
        path.unlink(missing_ok=True)


def read_home_problem(staging: Path) -> str | None:
    import json

    try:
        return json.loads((staging / HOME_PROBLEM_FILE).read_text()).get("problem")
    except (OSError, ValueError, AttributeError):
        return None


def units_holding(config: Config, days: set[date]) -> dict[str, set[str]]:
    """Per reader, the units (files, database sessions) whose records are on any of ``days``: what a rerun
    of those days reads again from the raw sources (never the whole home)."""
    from mc_pipeline.ingest.readers.agent_db import DB_MANIFEST
    from mc_pipeline.ingest.readers.manifest import MANIFEST
    from mc_pipeline.ingest.readers.staged import WHOLE_FILE

    key = reader_key(config)
    out: dict[str, set[str]] = {}
    for name, schema in (
        ("transcript_records", MANIFEST),
        ("transcript_store_records", DB_MANIFEST),
        ("interactions_db_records", WHOLE_FILE),
        ("model_usage_log_records", WHOLE_FILE),
    ):
        manifest = states(config)[name].manifest(schema, key)
        if manifest is None or manifest.height == 0:
            continue
        hit = manifest.filter(pl.col("days").list.eval(pl.element().is_in(sorted(days))).list.any())
        if hit.height:
            out[name] = set(hit.get_column("source_file").to_list())
    return out
