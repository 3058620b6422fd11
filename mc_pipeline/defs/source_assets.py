"""Ingest: the raw OpenClaw sources (observed, never written) -> each reader's staged records by day.

One step reads every source that changed (``source_records``, a multi-asset that can also refresh one
reader alone); the readers are incremental (only new or changed files, database sessions, archives),
so the step's work is proportional to what changed. Which days changed is in the staged day indexes;
``defs/day_assets.py`` builds those days.
"""

import warnings

import dagster as dg

from mc_pipeline.defs.automation import FULL_REBUILD_TAG
from mc_pipeline.defs.columns import table_metadata
from mc_pipeline.defs.resources import step_config, step_resource_keys, step_resources
from mc_pipeline.ingest import source_state
from mc_pipeline.ingest.readers.staged import ReadReport
from mc_pipeline.runtime.config import parse_bool

# observable source assets are "beta" in Dagster 1.13; we use them knowingly (their data versions are the UI's
# view of how fresh the raw inputs are): say so once here instead of a warning per asset on every load
warnings.filterwarnings("ignore", message="Function `observable_source_asset` is currently in beta")

SOURCES_GROUP = "sources"
INGEST_GROUP = "ingest"


# -- raw inputs, owned by OpenClaw and the user: observed (a data version from file states), never written ---
RAW = {
    "openclaw_transcripts": (
        "jsonl",
        "agents/*/sessions/*.jsonl: live, topic, .reset and .deleted transcripts and "
        "(2026.8+) their published .zst copies (never .bak).",
    ),
    "openclaw_session_index": (
        "json",
        "agents/*/sessions/sessions.json: session key -> session (what started it).",
    ),
    "openclaw_auth_profiles": (
        "json",
        "agents/*/agent/auth-profiles.json: api key or subscription (only the type is read).",
    ),
    "openclaw_transcript_store": (
        "sqlite",
        "agents/*/agent/openclaw-agent.sqlite (OpenClaw 2026.8+): transcript_events, "
        "reset/delete archives, cold archives (+ sessions/cold/*.jsonl.zst), session windows and "
        "nodes, the auth profile store.",
    ),
    "openclaw_state_db": (
        "sqlite",
        "state/openclaw.sqlite (OpenClaw 2026.8+): where the agent databases are, cron job names "
        "and runs, the shared auth profile store.",
    ),
    "openclaw_interactions_db": (
        "sqlite",
        "data/interactions.db (MC_INTERACTIONS_DB): the user's own call log (llm_calls, api_calls).",
    ),
    "openclaw_model_usage_log": (
        "jsonl",
        "logs/model-usage.jsonl (MC_MODEL_USAGE_LOG): the user's own backup log of calls.",
    ),
}


def key(name: str, home: str | None = None) -> dg.AssetKey:
    """An asset's key: the name, prefixed by the home's name in a fleet (MC_OPENCLAW_HOMES)."""
    return dg.AssetKey([home, name]) if home else dg.AssetKey(name)


def _source(name: str, home: str | None) -> dg.SourceAsset:
    kind, description = RAW[name]

    @dg.observable_source_asset(
        key=key(name, home),
        group_name=SOURCES_GROUP,
        description=description,
        kinds={kind},
        required_resource_keys=step_resource_keys(home),
    )
    def _observe(context) -> dg.DataVersion:
        return dg.DataVersion(source_state.digests(step_config(context, home))[name])

    return _observe


#: reader asset -> (its raw sources, kinds, description)
READERS = {
    "transcript_records": (
        ["openclaw_transcripts"],
        {"jsonl", "parquet"},
        "Call records of the transcript files, staged by day (incremental: new lines, new or changed files).",
    ),
    "transcript_store_records": (
        ["openclaw_transcript_store", "openclaw_state_db"],
        {"sqlite", "parquet"},
        "Call records of the agent databases (OpenClaw 2026.8+): transcript_events (zstd or text), "
        "reset/delete archives, cold archives; staged by day, incremental per session.",
    ),
    "interactions_db_records": (
        ["openclaw_interactions_db"],
        {"sqlite", "parquet"},
        "Call records of interactions.db llm_calls (any schema variant), staged by day.",
    ),
    "api_calls": (
        ["openclaw_interactions_db"],
        {"parquet"},
        "The user's HTTP calls to other services (interactions.db api_calls): when, which service, "
        "endpoint without query string, status and duration; bodies never copied.",
    ),
    "model_usage_log_records": (
        ["openclaw_model_usage_log"],
        {"jsonl", "parquet"},
        "Call records of logs/model-usage.jsonl, staged by day.",
    ),
}
#: the readers with a source_readable check
CHECKED = ("transcript_store_records", "interactions_db_records", "model_usage_log_records")


def report_metadata(report: ReadReport) -> dict[str, dg.MetadataValue]:
    meta: dict[str, dg.MetadataValue] = {k: dg.MetadataValue.int(v) for k, v in report.summary.items()}
    meta["read_mode"] = dg.MetadataValue.text(report.mode)
    meta["days_touched"] = dg.MetadataValue.int(len(report.touched))
    if report.touched:
        shown = sorted(report.touched)
        meta["days"] = dg.MetadataValue.text(
            ", ".join(d.isoformat() for d in shown[:20]) + (" …" if len(shown) > 20 else "")
        )
    meta["problems"] = dg.MetadataValue.int(len(report.problems))
    if report.problems:
        meta["problem_list"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in report.problems))
    return meta


def build_reader_assets(home: str | None = None) -> list:
    """The observed raw sources and the ``source_records`` step of one home (prefixed by its name in a
    fleet)."""

    @dg.multi_asset(
        specs=_reader_specs(home),
        check_specs=_reader_checks(home),
        can_subset=True,
        name=f"{home}__source_records" if home else "source_records",
        required_resource_keys=step_resource_keys(home),
    )
    def source_records(context: dg.AssetExecutionContext):
        """Every selected reader brings its staged records up to date (``mc_pipeline.ingest.staging``)."""
        yield from read_sources(context, home)

    return [*(_source(name, home) for name in RAW), source_records]


def _reader_specs(home: str | None) -> list[dg.AssetSpec]:
    """One asset per reader, depending on the raw sources it reads."""
    return [
        dg.AssetSpec(
            key(name, home),
            group_name=INGEST_GROUP,
            deps=[key(d, home) for d in deps],
            kinds=kinds,
            description=desc,
            metadata=table_metadata(name),
        )
        for name, (deps, kinds, desc) in READERS.items()
    ]


def _reader_checks(home: str | None) -> list[dg.AssetCheckSpec]:
    """source_readable per checked reader; home_reachable for a fleet's home."""
    checks = [
        dg.AssetCheckSpec(
            "source_readable",
            asset=key(a, home),
            description="The source could be read (a corrupt file or a missing table fails this; "
            "the run goes on).",
        )
        for a in CHECKED
    ]
    if home:  # a fleet's home may be unmounted or unreadable: its own check fails, the others publish
        checks.append(
            dg.AssetCheckSpec(
                "home_reachable",
                asset=key("transcript_records", home),
                description="The home's folder could be listed; when it cannot (unmounted, no "
                "permission) nothing of it is read and what was read before stays.",
            )
        )
    return checks


def read_sources(context: dg.AssetExecutionContext, home: str | None):
    """The step: a fleet's home checked for reachability, the raw sources observed, the selected readers
    run; their materialisations and checks."""
    from mc_pipeline.ingest.staging import record_home_problem, stage_sources

    settings, openclaw_home, store = step_resources(context, home)
    config = settings.config(openclaw_home, store)
    selected = {k.path[-1] for k in context.selected_asset_keys}
    if home:
        unreachable = openclaw_home.problem()
        record_home_problem(config.staging, unreachable)
        yield dg.AssetCheckResult(
            check_name="home_reachable",
            asset_key=key("transcript_records", home),
            passed=unreachable is None,
            description=unreachable or "listed",
        )
        if unreachable:
            context.log.error(
                f"home {home} ({config.home}): {unreachable}; nothing read, what was read before stays"
            )
            yield from _unreachable_results(selected, unreachable, home)
            return
    tag = parse_bool(context.run.tags.get(FULL_REBUILD_TAG)) is True
    source_state.record_watched(store.staging, openclaw_home.file_states())
    for name, digest in source_state.digests(config).items():
        context.log_event(
            dg.AssetObservation(asset_key=key(name, home), tags={"dagster/data_version": digest})
        )
    staged = stage_sources(
        config, selected, full_rebuild=settings.full_rebuild or tag, progress=context.log.info
    )
    for name in READERS:
        if name in selected:
            yield from _reader_results(context, name, staged, home)


def _unreachable_results(selected: set[str], unreachable: str, home: str):
    """An unreachable home's readers: materialised with nothing new (what was read before stays), each
    source_readable failing with why."""
    for name in READERS:
        if name not in selected:
            continue
        yield dg.MaterializeResult(
            asset_key=key(name, home), metadata={"unreachable": unreachable, **table_metadata(name)}
        )
        if name in CHECKED:
            yield dg.AssetCheckResult(
                check_name="source_readable",
                asset_key=key(name, home),
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=unreachable,
            )


def _reader_results(context, name: str, staged, home: str | None):
    """One reader's materialisation (what it read, the days it touched) and its source_readable check."""
    report = staged.reports.get(name, ReadReport(present=False))
    for problem in report.problems:
        context.log.warning(f"[{home + ': ' if home else ''}{name}] {problem}")
    context.log.info(f"{name} ({report.mode}): {len(report.touched)} day(s) changed {report.summary}")
    meta = report_metadata(report)
    if name == "api_calls":
        meta = {
            "dagster/row_count": dg.MetadataValue.int(staged.api_calls_rows),
            **table_metadata("api_calls"),
        }
    yield dg.MaterializeResult(asset_key=key(name, home), metadata=meta)
    if name in CHECKED:
        if report.problems:
            description = "; ".join(report.problems)[:1000]
        else:
            description = "read" if report.present else "absent: skipped"
        yield dg.AssetCheckResult(
            check_name="source_readable",
            asset_key=key(name, home),
            passed=not report.problems,
            severity=dg.AssetCheckSeverity.WARN,
            description=description,
            metadata={"present": report.present, "problems": len(report.problems)},
        )
