"""Ingest: raw OpenClaw sources -> source batches -> the validated ``llm_calls`` table and quarantine."""


from pathlib import Path

import dagster as dg
import polars as pl

from mc_pipeline.billing import load_billing_overrides, read_auth_profiles
from mc_pipeline.calls import build_llm_calls
from mc_pipeline.readers.batch import SourceBatch
from mc_pipeline.readers.session_index import read_session_index
from mc_pipeline.readers.transcript_files import read_transcripts, with_line_excerpts
from mc_pipeline.reconcile import reconcile
from mc_pipeline.report import markdown_table
from mc_pipeline.schemas import LLM_CALLS, QUARANTINE, LlmCallsModel, conform
from mc_pipeline.defs.resources import McSettings
from mc_pipeline.task_types import load_task_rules

SOURCES_GROUP = "sources"
INGEST_GROUP = "ingest"

# -- raw inputs, owned by OpenClaw and the user: declared, never written ----------------------------------
openclaw_transcripts = dg.AssetSpec(
    "openclaw_transcripts",
    group_name=SOURCES_GROUP,
    description="agents/*/sessions/*.jsonl: live, topic, .reset and .deleted transcripts (never .bak).",
    kinds={"jsonl"},
)
openclaw_session_index = dg.AssetSpec(
    "openclaw_session_index",
    group_name=SOURCES_GROUP,
    description="agents/*/sessions/sessions.json: session key -> session (what started it).",
    kinds={"json"},
)
openclaw_auth_profiles = dg.AssetSpec(
    "openclaw_auth_profiles",
    group_name=SOURCES_GROUP,
    description="agents/*/agent/auth-profiles.json: api key or subscription (only the type is read).",
    kinds={"json"},
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
    home = settings.home
    if not home.exists():
        context.log.info(f"No OpenClaw home at {home}: no transcripts to read.")
        batch = SourceBatch.empty()
    else:
        batch = read_transcripts(home, progress=context.log.info)
    log_problems(context, batch)
    return dg.Output(batch, metadata=batch_metadata(batch))


CHECKS = [
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
    deps=[openclaw_session_index, openclaw_auth_profiles],
    check_specs=CHECKS,
)
def llm_calls(context: dg.AssetExecutionContext, settings: McSettings, transcript_records: SourceBatch):
    batches = [transcript_records]  # in order of preference when a call is seen twice
    home = settings.home
    session_index, index_problems = read_session_index(home)
    auth, auth_problems = read_auth_profiles(home)
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

    yield dg.Output(calls, output_name="llm_calls", metadata=calls_metadata(calls))
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


def _schema_errors(calls: pl.DataFrame) -> str | None:
    try:
        LlmCallsModel.validate(calls, lazy=True)
        return None
    except Exception as exc:  # noqa: BLE001 - the message is the check's evidence
        return str(exc)[:2000]


defs = dg.Definitions(
    assets=[openclaw_transcripts, openclaw_session_index, openclaw_auth_profiles, transcript_records, llm_calls],
)
