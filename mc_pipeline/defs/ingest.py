"""Ingest: raw OpenClaw sources -> source batches -> the validated ``llm_calls`` table and quarantine."""

import dagster as dg
import polars as pl

from mc_pipeline.billing import load_billing_overrides, read_auth_profiles
from mc_pipeline.calls import build_llm_calls
from mc_pipeline.readers.batch import SourceBatch
from mc_pipeline.readers.interactions_db import read_interactions_db
from mc_pipeline.readers.model_usage_log import read_model_usage_log
from mc_pipeline.readers.agent_db import discover_agent_dbs, read_agent_facts
from mc_pipeline.readers.session_index import read_sessions
from mc_pipeline.readers.state_db import read_state_db
from mc_pipeline.readers.transcript_files import with_line_excerpts
from mc_pipeline.reconcile import reconcile
from mc_pipeline import storage
from mc_pipeline.report import markdown_table
from mc_pipeline.schemas import API_CALLS, LLM_CALLS, QUARANTINE, ApiCallsModel, LlmCallsModel, conform
from mc_pipeline.defs.resources import McSettings
from mc_pipeline.task_types import load_task_rules

SOURCES_GROUP = "sources"
INGEST_GROUP = "ingest"

# -- raw inputs, owned by OpenClaw and the user: declared, never written ----------------------------------


def _raw(name: str, kind: str, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(name, group_name=SOURCES_GROUP, description=description, kinds={kind})


openclaw_transcripts = _raw(
    "openclaw_transcripts",
    "jsonl",
    "agents/*/sessions/*.jsonl: live, topic, .reset and .deleted transcripts (never .bak).",
)
openclaw_session_index = _raw(
    "openclaw_session_index",
    "json",
    "agents/*/sessions/sessions.json: session key -> session (what started it).",
)
openclaw_auth_profiles = _raw(
    "openclaw_auth_profiles",
    "json",
    "agents/*/agent/auth-profiles.json: api key or subscription (only the type is read).",
)
openclaw_transcript_store = _raw(
    "openclaw_transcript_store",
    "sqlite",
    "agents/*/agent/openclaw-agent.sqlite (OpenClaw 2026.8+): transcript_events, reset/delete archives, "
    "cold archives (+ sessions/cold/*.jsonl.zst), session windows and nodes, the auth profile store.",
)
openclaw_state_db = _raw(
    "openclaw_state_db",
    "sqlite",
    "state/openclaw.sqlite (OpenClaw 2026.8+): where the agent databases are, cron job names and runs, "
    "the shared auth profile store.",
)
openclaw_interactions_db = _raw(
    "openclaw_interactions_db",
    "sqlite",
    "data/interactions.db (MC_INTERACTIONS_DB): the user's own call log (llm_calls, api_calls).",
)
openclaw_model_usage_log = _raw(
    "openclaw_model_usage_log",
    "jsonl",
    "logs/model-usage.jsonl (MC_MODEL_USAGE_LOG): the user's own backup log of calls.",
)


def batch_metadata(batch: SourceBatch) -> dict[str, dg.MetadataValue]:
    meta: dict[str, dg.MetadataValue] = {k: dg.MetadataValue.int(v) for k, v in batch.summary().items()}
    if batch.problems:
        meta["problem_list"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in batch.problems))
    return meta


def log_problems(context: dg.AssetExecutionContext, batch: SourceBatch) -> None:
    for problem in batch.problems:
        context.log.warning(problem)


@dg.asset(
    deps=[openclaw_transcripts],
    group_name=INGEST_GROUP,
    kinds={"polars"},
    description="Every model call found in the transcripts, as recorded, with quarantined lines.",
)
def transcript_records(context: dg.AssetExecutionContext, settings: McSettings) -> dg.Output[SourceBatch]:
    # Incremental: only new or changed files are read (manifest beside the staged batch; README
    # "Performance"). A full rebuild: MC_FULL_REBUILD=1 or the run tag mc_pipeline/full_rebuild=true.
    from mc_pipeline.defs.io_manager import ParquetIOManager
    from mc_pipeline.readers.transcript_files import read_transcripts_since_last_run

    tag = context.run.tags.get("mc_pipeline/full_rebuild", "").lower() in ("1", "true", "yes")
    full = settings.full_rebuild or tag
    home = settings.home
    extra: dict[str, dg.MetadataValue] = {}
    if not home.exists():
        context.log.info(f"No OpenClaw home at {home}: no transcripts to read.")
        batch = SourceBatch.empty()
    else:
        io = ParquetIOManager(data_dir=settings.data_dir)
        read = read_transcripts_since_last_run(
            home,
            io.staging_dir("transcript_records"),
            lambda: io.load_batch("transcript_records"),
            full_rebuild=full,
            progress=context.log.info,
        )
        batch = read.batch
        context.log.info(f"transcripts ({read.mode}): {read.summary()}")
        extra = {k: dg.MetadataValue.int(v) for k, v in read.summary().items()}
        extra["read_mode"] = dg.MetadataValue.text(read.mode)
    log_problems(context, batch)
    return dg.Output(batch, metadata={**batch_metadata(batch), **extra})


def _readable_check(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "source_readable",
        asset=asset,
        description="The source could be read (a corrupt file or a missing table fails this; the run goes on).",
    )


def _readable_result(asset: str, batch: SourceBatch, present: bool) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="source_readable",
        asset_key=asset,
        passed=not batch.problems,
        severity=dg.AssetCheckSeverity.WARN,
        description=("; ".join(batch.problems) if batch.problems else ("read" if present else "absent: skipped"))[:1000],
        metadata={"present": present, "problems": len(batch.problems)},
    )


@dg.multi_asset(
    outs={
        "interactions_db_records": dg.AssetOut(
            group_name=INGEST_GROUP,
            kinds={"polars"},
            description="Model calls from interactions.db llm_calls (any schema variant), with quarantined rows.",
        ),
        "api_calls": dg.AssetOut(
            group_name=INGEST_GROUP,
            kinds={"parquet"},
            description="HTTP calls from interactions.db api_calls (schemas.API_CALLS); bodies never copied.",
        ),
    },
    deps=[openclaw_interactions_db],
    check_specs=[_readable_check("interactions_db_records")],
)
def interactions_db_records(context: dg.AssetExecutionContext, settings: McSettings):
    path = settings.interactions_db
    present = path.is_file()
    if not present:
        context.log.info(f"No interactions.db at {path}: skipped.")
        batch, api, tables = SourceBatch.empty(), pl.DataFrame(schema=API_CALLS), {}
    else:
        read = read_interactions_db(path, settings.home, tz=settings.timezone)
        batch, api, tables = read.batch, read.api_calls, read.tables
    ApiCallsModel.validate(api)
    log_problems(context, batch)
    meta = batch_metadata(batch)
    meta.update({f"rows_{t}": dg.MetadataValue.int(n) for t, n in tables.items()})
    yield dg.Output(batch, output_name="interactions_db_records", metadata=meta)
    yield dg.Output(api, output_name="api_calls", metadata={"dagster/row_count": dg.MetadataValue.int(api.height)})
    yield _readable_result("interactions_db_records", batch, present)


@dg.asset(
    deps=[openclaw_transcript_store, openclaw_state_db],
    group_name=INGEST_GROUP,
    kinds={"polars"},
    description="Model calls from the agent databases (OpenClaw 2026.8+): transcript_events (zstd or text), "
    "reset/delete archives and cold archives, through the transcript line parser; incremental per session.",
    check_specs=[_readable_check("transcript_store_records")],
)
def transcript_store_records(context: dg.AssetExecutionContext, settings: McSettings):
    from mc_pipeline.defs.io_manager import ParquetIOManager
    from mc_pipeline.readers.agent_db import read_agent_dbs_since_last_run

    home = settings.home
    state = read_state_db(home) if home.exists() else None
    registry = state.agent_dbs if state else []
    present = bool(discover_agent_dbs(home, registry)) if home.exists() else False
    extra: dict[str, dg.MetadataValue] = {}
    if not present:
        context.log.info(f"No agent databases (agents/*/agent/openclaw-agent.sqlite) under {home}: skipped.")
        batch = SourceBatch.empty(state.problems if state else [])
    else:
        io = ParquetIOManager(data_dir=settings.data_dir)
        tag = context.run.tags.get("mc_pipeline/full_rebuild", "").lower() in ("1", "true", "yes")
        read = read_agent_dbs_since_last_run(
            home,
            io.staging_dir("transcript_store_records"),
            lambda: io.load_batch("transcript_store_records"),
            full_rebuild=settings.full_rebuild or tag,
            registry=registry,
            progress=context.log.info,
        )
        batch = read.batch
        batch.problems[:0] = state.problems if state else []
        context.log.info(f"agent databases ({read.mode}): {read.summary()}")
        extra = {k: dg.MetadataValue.int(v) for k, v in read.summary().items()}
        extra["read_mode"] = dg.MetadataValue.text(read.mode)
    log_problems(context, batch)
    yield dg.Output(batch, metadata={**batch_metadata(batch), **extra})
    yield _readable_result("transcript_store_records", batch, present)


@dg.asset(
    deps=[openclaw_model_usage_log],
    group_name=INGEST_GROUP,
    kinds={"polars"},
    description="Model calls from logs/model-usage.jsonl, with quarantined lines.",
    check_specs=[_readable_check("model_usage_log_records")],
)
def model_usage_log_records(context: dg.AssetExecutionContext, settings: McSettings):
    path = settings.model_usage_log
    present = path.is_file()
    if not present:
        context.log.info(f"No model-usage.jsonl at {path}: skipped.")
        batch = SourceBatch.empty()
    else:
        batch = read_model_usage_log(path, settings.home, tz=settings.timezone)
    log_problems(context, batch)
    yield dg.Output(batch, metadata=batch_metadata(batch))
    yield _readable_result("model_usage_log_records", batch, present)


def duplicates_metadata(duplicates: pl.DataFrame) -> dict[str, dg.MetadataValue]:
    """Rows dropped as repeats of a call, per source (mc_pipeline.dedupe)."""
    per_source = duplicates.group_by("source").agg(pl.col("duplicates").sum()).sort("source")
    meta: dict[str, dg.MetadataValue] = {
        f"duplicates_dropped_{s}": dg.MetadataValue.int(int(n)) for s, n in per_source.iter_rows()
    }
    meta["duplicates_dropped"] = dg.MetadataValue.int(int(duplicates.get_column("duplicates").sum() or 0))
    return meta


CHECKS = [
    dg.AssetCheckSpec(
        "sources_not_silent",
        asset="llm_calls",
        description="No source was written in the last 7 days without a call dated in them being read from it "
        "(a reader that finds files but no calls: a changed format). WARN.",
    ),
    dg.AssetCheckSpec(
        "quarantine_share_stable",
        asset="llm_calls",
        description="No source's share of quarantined lines jumped since the last run. WARN.",
    ),
    dg.AssetCheckSpec("matches_schema", asset="llm_calls", description="pandera LlmCallsModel passes."),
    dg.AssetCheckSpec("unique_call_ids", asset="llm_calls", description="call_id is unique."),
    dg.AssetCheckSpec(
        "lines_reconcile",
        asset="llm_calls",
        description="Per input file: lines read = calls + other entries + skipped by rule + quarantined.",
    ),
]


def calls_metadata(calls: pl.DataFrame) -> dict[str, dg.MetadataValue]:
    cost = calls.get_column("cost_usd").sum() or 0.0
    days = calls.get_column("day").n_unique()
    return {
        "dagster/row_count": dg.MetadataValue.int(calls.height),
        "cost_usd": dg.MetadataValue.float(float(cost)),
        "days": dg.MetadataValue.int(days),
        "unpriced_calls": dg.MetadataValue.int(calls.filter(pl.col("cost_source") == "unpriced").height),
        "failed_calls": dg.MetadataValue.int(calls.filter(pl.col("status") != "ok").height),
        "preview": dg.MetadataValue.md(
            markdown_table(
                calls.sort("timestamp", descending=True),
                columns=["timestamp", "agent_id", "provider", "model", "status", "total_tokens", "cost_usd"],
            )
        ),
    }


@dg.multi_asset(
    outs={
        "llm_calls": dg.AssetOut(
            group_name=INGEST_GROUP,
            kinds={"parquet"},
            metadata={"partition_by": "day"},
            description="One row per model call: priced, classified, de-duplicated, validated (schemas.LLM_CALLS).",
        ),
        "quarantine": dg.AssetOut(
            group_name=INGEST_GROUP,
            kinds={"parquet"},
            description="Every line or row that could not be used, with its file, line and reason.",
        ),
        "source_files": dg.AssetOut(
            group_name=INGEST_GROUP,
            kinds={"parquet"},
            description="Per input file: how its lines were accounted for (the reconciliation).",
        ),
    },
    deps=[openclaw_session_index, openclaw_auth_profiles, openclaw_state_db],
    check_specs=CHECKS,
)
def llm_calls(
    context: dg.AssetExecutionContext,
    settings: McSettings,
    transcript_records: SourceBatch,
    transcript_store_records: SourceBatch,
    interactions_db_records: SourceBatch,
    model_usage_log_records: SourceBatch,
):
    # in order of preference when a call is seen twice (schemas.SOURCES, mc_pipeline.dedupe)
    batches = [transcript_store_records, transcript_records, interactions_db_records, model_usage_log_records]
    home = settings.home
    state = read_state_db(home)
    facts = read_agent_facts(home, state.agent_dbs)
    session_index, index_problems = read_sessions(home, state, facts)
    auth, auth_problems = read_auth_profiles(home, facts.auth_stores, state.shared_auth)
    for problem in index_problems + auth_problems:
        context.log.warning(problem)
    rules = load_task_rules(settings.task_rules_path or None)
    overrides = load_billing_overrides(settings.billing_overrides_path) if settings.billing_overrides_path else None

    records = pl.concat([b.records for b in batches])
    built = build_llm_calls(
        records,
        session_index=session_index,
        auth=auth,
        task_rules=rules,
        tz=settings.timezone,
        cost_mode=settings.cost_mode,
        billing_overrides=overrides,
    )
    quarantine = pl.concat([b.quarantine for b in batches] + [with_line_excerpts(home, built.rejected)])
    quarantine = conform(quarantine, QUARANTINE).sort("source", "source_file", "line_no", nulls_last=True)
    files = reconcile(pl.concat([b.file_counts for b in batches]), built.calls, quarantine, built.duplicates)
    calls = conform(built.calls, LLM_CALLS)

    yield dg.Output(
        calls, output_name="llm_calls", metadata={**calls_metadata(calls), **duplicates_metadata(built.duplicates)}
    )
    yield dg.Output(
        quarantine,
        output_name="quarantine",
        metadata={
            "dagster/row_count": dg.MetadataValue.int(quarantine.height),
            "reasons": dg.MetadataValue.md(
                markdown_table(quarantine.group_by("reason").agg(lines=pl.len()).sort("lines", descending=True))
            ),
        },
    )
    yield dg.Output(files, output_name="source_files", metadata={"dagster/row_count": dg.MetadataValue.int(files.height)})

    yield from source_health_checks(context, settings, records, pl.concat([b.file_counts for b in batches]), state)

    schema_errors = _schema_errors(calls)
    yield dg.AssetCheckResult(
        check_name="matches_schema",
        asset_key="llm_calls",
        passed=schema_errors is None,
        metadata={"error": dg.MetadataValue.text(schema_errors or "")},
    )
    dupes = calls.height - calls.get_column("call_id").n_unique()
    yield dg.AssetCheckResult(
        check_name="unique_call_ids", asset_key="llm_calls", passed=dupes == 0, metadata={"duplicates": dupes}
    )
    unbalanced = files.filter(~pl.col("balanced"))
    yield dg.AssetCheckResult(
        check_name="lines_reconcile",
        asset_key="llm_calls",
        passed=unbalanced.height == 0,
        metadata={
            "files": files.height,
            "lines_read": int(files.get_column("lines_read").sum() or 0),
            "unbalanced_files": unbalanced.height,
            "unbalanced": dg.MetadataValue.md(markdown_table(unbalanced)) if unbalanced.height else "",
        },
    )


def source_health_checks(context, settings: McSettings, records: pl.DataFrame, file_counts: pl.DataFrame, state):
    """The two WARN checks of ``mc_pipeline.source_health``; the findings also go to the log and to
    ``staging/source_health.json`` (the next run's comparison, and the ``make run`` summary's warnings)."""
    from datetime import datetime, timezone

    from mc_pipeline import source_health as sh
    from mc_pipeline.readers.home import last_writes

    staging = settings.data / "staging"
    now = datetime.now(timezone.utc)
    history = sh.read_history(staging)
    writes = last_writes(settings.home, settings.interactions_db, settings.model_usage_log, state.agent_dbs)
    stats = sh.source_stats(records, file_counts, writes, now, history)
    silent, jumps = sh.silent(stats, now, history), sh.quarantine_jumps(stats, history)
    for w in silent + jumps:
        context.log.warning(w)
    storage.write_json(sh.history_doc(stats, silent + jumps), staging / sh.HISTORY_FILE)
    table = pl.DataFrame([{"source": s.source, "calls_read": s.calls_read, "calls_last_7_days": s.calls_recent,
                           "lines_read": s.lines_read, "quarantined": s.quarantined, "last_write": s.last_write}
                          for s in stats]) if stats else pl.DataFrame()  # fmt: skip
    meta = {"sources": dg.MetadataValue.md(markdown_table(table))} if stats else {}
    for name, found in (("sources_not_silent", silent), ("quarantine_share_stable", jumps)):
        yield dg.AssetCheckResult(
            check_name=name, asset_key="llm_calls", passed=not found, severity=dg.AssetCheckSeverity.WARN,
            description=("; ".join(found) or "ok")[:1000], metadata=meta,
        )  # fmt: skip


def _schema_errors(calls: pl.DataFrame) -> str | None:
    try:
        LlmCallsModel.validate(calls, lazy=True)
        return None
    except Exception as exc:  # noqa: BLE001 - the message is the check's evidence
        return str(exc)[:2000]


defs = dg.Definitions(
    assets=[
        openclaw_transcripts,
        openclaw_session_index,
        openclaw_auth_profiles,
        openclaw_transcript_store,
        openclaw_state_db,
        openclaw_interactions_db,
        openclaw_model_usage_log,
        transcript_records,
        transcript_store_records,
        interactions_db_records,
        model_usage_log_records,
        llm_calls,
    ],
)
