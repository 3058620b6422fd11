"""The day-partitioned tables: ``llm_calls`` and the per-day aggregate ``usage_daily`` (days in MC_TIMEZONE),
plus the all-days aggregates, quarantine and line reconciliation written with them.

One step (``daily``, a multi-asset that can be subset):

- in a refresh run (no partition: the schedule, the sensor, ``make run``) it builds the days whose inputs
  changed (``mc_pipeline.calls.build_days``: today, a late archive's old day, every day after a price or
  setting change) and records a materialisation of ``llm_calls`` and ``usage_daily`` for exactly those days;
- in a run for one day or a range (the UI's partition picker or a backfill, one run for the whole range) it
  reads again from the raw sources the files and database sessions that hold those days, and builds them: the
  figures of a full rebuild. Selecting only ``usage_daily`` rebuilds it from ``llm_calls`` as written.
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl

from mc_pipeline.defs.columns import table_metadata
from mc_pipeline.defs.resources import DataStore, step_config, step_resource_keys, step_resources
from mc_pipeline.defs.source_assets import READERS, key
from mc_pipeline.reporting.markdown import markdown_table

INGEST_GROUP = "ingest"
MARTS_GROUP = "marts"
#: The first day a partition exists for: call times before 2015 are not trusted (readers quarantine them).
FIRST_DAY = "2014-12-31"


def day_partitions(tz: str) -> dg.DailyPartitionsDefinition:
    """Calendar days in the reporting zone; ``end_offset=1``: today is a partition too (Dagster's days
    otherwise end with yesterday)."""
    return dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone=tz, end_offset=1)


# Checks of the calls built are on the unpartitioned source_files/quarantine of the same step: a refresh run
# has no partition, and Dagster cannot attach its check results to a day of the partitioned llm_calls.
CHECKS = [
    dg.AssetCheckSpec(
        "matches_schema",
        asset="source_files",
        description="Every call of the days built in this run satisfies the llm_calls contract (columns, "
        "types, allowed values, non-negative tokens and costs); a call that fails it is quarantined, never "
        "written.",
    ),
    dg.AssetCheckSpec(
        "unique_call_ids",
        asset="source_files",
        description="call_id is unique within each llm_calls day built in this run.",
    ),
    dg.AssetCheckSpec(
        "lines_reconcile",
        asset="source_files",
        description="Per input file: lines read = calls + other entries + skipped by rule + quarantined.",
    ),
    dg.AssetCheckSpec(
        "sources_not_silent",
        asset="source_files",
        description="No source was written in the last 7 days without a call dated in them being read from "
        "it (a reader that finds files but no calls: a changed format). WARN.",
    ),
    dg.AssetCheckSpec(
        "quarantine_share_stable",
        asset="quarantine",
        description="No source's share of quarantined lines jumped since the last run. WARN.",
    ),
]


def _day_event(asset: dg.AssetKey, r, extra: dict | None = None) -> dg.AssetMaterialization:
    meta = {
        "dagster/row_count": dg.MetadataValue.int(r.calls),
        "cost_usd": dg.MetadataValue.float(round(r.cost_usd, 2)),
    }
    if r.removed:
        meta["removed"] = dg.MetadataValue.text("no call is on this day any more: its files were removed")
    return dg.AssetMaterialization(
        asset_key=asset,
        partition=r.day.isoformat(),
        metadata={**meta, **(extra or {})},
        tags={"dagster/data_version": r.key} if r.key else None,
    )


PARTITIONED = ("llm_calls", "usage_daily")


def build_daily_assets(
    partitions: dg.DailyPartitionsDefinition, home: str | None = None
) -> list[dg.AssetsDefinition]:
    """The day-partitioned ``daily`` assets and the ``day_tables`` step of refresh runs, of one home."""

    @dg.multi_asset(
        specs=_daily_specs(partitions, home),
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
        name=f"{home}__daily" if home else "daily",
        required_resource_keys=step_resource_keys(home),
    )
    def daily(context: dg.AssetExecutionContext):
        """A rerun of days (one partition or a range, one run): from the raw sources for llm_calls, from
        llm_calls as written for usage_daily alone."""
        rerun_days(context, home)
        return
        yield  # a generator that yields nothing: the days are recorded as materialisations

    checks = [
        dg.AssetCheckSpec(c.name, asset=key(c.asset_key.path[-1], home), description=c.description)
        for c in CHECKS
    ]

    @dg.multi_asset(
        specs=_table_specs(home),
        check_specs=checks,
        name=f"{home}__day_tables" if home else "day_tables",
        required_resource_keys=step_resource_keys(home),
    )
    def day_tables(context: dg.AssetExecutionContext):
        """A refresh: build the days whose inputs changed (llm_calls and usage_daily materialisations recorded
        for exactly those days), then the all-days tables, quarantine and reconciliation."""
        yield from refresh_days(context, home)

    return [daily, day_tables]


def _daily_specs(partitions: dg.DailyPartitionsDefinition, home: str | None) -> list[dg.AssetSpec]:
    """The day-partitioned ``llm_calls`` and ``usage_daily`` of one home."""
    readers = [key(r, home) for r in READERS]

    def k(name: str) -> dg.AssetKey:
        return key(name, home)

    return [
        dg.AssetSpec(
            k("llm_calls"),
            group_name=INGEST_GROUP,
            partitions_def=partitions,
            skippable=True,
            kinds={"parquet"},
            deps=[*readers, k("openclaw_session_index"), k("openclaw_auth_profiles"), k("openclaw_state_db")],
            metadata={"partition_by": "day", **table_metadata("llm_calls")},
            description="One row per model call of every source, each call once: when, which agent, "
            "session, provider and model, tokens, cost (recorded or from the price table, or unpriced), "
            "status and error class, task type, billing, trigger. A folder per day "
            "(parquet/llm_calls/day=YYYY-MM-DD/). Refresh runs build the days that changed; materialising "
            "days here reads them again from the raw sources.",
        ),
        dg.AssetSpec(
            k("usage_daily"),
            group_name=MARTS_GROUP,
            partitions_def=partitions,
            skippable=True,
            kinds={"parquet", "csv"},
            deps=[k("llm_calls")],
            metadata=table_metadata("usage_daily"),
            description="Per day: agent x provider x model x task type x billing x trigger x cron job; every "
            "summable measure. The windowed marts, the dashboard and the alerts read this, never all calls.",
        ),
    ]


def _table_specs(home: str | None) -> list[dg.AssetSpec]:
    """The all-days tables written with the days: sessions_daily, health_daily, quarantine, source_files."""
    readers = [key(r, home) for r in READERS]

    def k(name: str) -> dg.AssetKey:
        return key(name, home)

    return [
        dg.AssetSpec(
            k("sessions_daily"),
            metadata=table_metadata("sessions_daily"),
            group_name=MARTS_GROUP,
            kinds={"parquet"},
            deps=readers,
            description="Per day, session (UUID or salted hash) and model: calls, tokens, cost, tools (all "
            "days).",
        ),
        dg.AssetSpec(
            k("health_daily"),
            metadata=table_metadata("health_daily"),
            group_name=MARTS_GROUP,
            kinds={"parquet"},
            deps=readers,
            description="Per day and provider: ok, errors by class, rate limits, 5xx, durations (all days).",
        ),
        dg.AssetSpec(
            k("quarantine"),
            metadata=table_metadata("quarantine"),
            group_name=INGEST_GROUP,
            kinds={"parquet"},
            deps=readers,
            description="Every line or row that could not be used, with its file, line and reason.",
        ),
        dg.AssetSpec(
            k("source_files"),
            group_name=INGEST_GROUP,
            kinds={"parquet"},
            deps=readers,
            description="Per input file: how its lines were accounted for (the reconciliation), and the "
            "checks of the calls built.",
        ),
    ]


def rerun_days(context: dg.AssetExecutionContext, home: str | None) -> None:
    """The partitions of the run built again: llm_calls from exactly the files and database sessions that hold
    those days, usage_daily (alone) from llm_calls as written."""
    from mc_pipeline.calls.build_days import build_and_write
    from mc_pipeline.ingest.staging import stage_sources, units_holding

    config = step_config(context, home)
    selected = {a.path[-1] for a in context.selected_asset_keys}
    days = [date.fromisoformat(p) for p in context.partition_keys]
    if "llm_calls" in selected:
        units = units_holding(config, set(days))
        context.log.info(
            "reading again: " + (", ".join(f"{len(u)} unit(s) of {r}" for r, u in units.items()) or "nothing")
        )
        stage_sources(config, set(units), reread=units, progress=context.log.info)
    run = build_and_write(
        config, days=days, aggregates_only="llm_calls" not in selected, progress=context.log.info
    )
    _log_days(context, run, selected, home)
    if run.schema_errors or run.duplicate_ids:
        raise dg.Failure(
            f"llm_calls contract: {'; '.join(run.schema_errors)[:1000]} duplicates={run.duplicate_ids}"
        )


def refresh_days(context: dg.AssetExecutionContext, home: str | None):
    """Build the days whose inputs changed, publish the all-days tables; their materialisations and checks."""
    from mc_pipeline.calls.build_days import build_and_write

    settings, openclaw_home, store = step_resources(context, home)
    run = build_and_write(settings.config(openclaw_home, store), progress=context.log.info)
    for problem in run.problems:
        context.log.warning(problem)
    _log_days(context, run, set(PARTITIONED), home)
    store.write_csv("usage_daily")
    yield from _table_results(store, run, home)
    yield from _checks(context, run, home)


def _table_results(store: DataStore, run, home: str | None):
    """The materialisations of sessions_daily, health_daily, quarantine and source_files after a refresh."""
    tables = store.tables()
    for name in ("sessions_daily", "health_daily"):
        frame = tables.staged(name)
        yield dg.MaterializeResult(
            asset_key=key(name, home),
            metadata={
                "dagster/row_count": dg.MetadataValue.int(frame.height),
                "days_rebuilt": dg.MetadataValue.int(len(run.days)),
                **table_metadata(name),
            },
        )
    q = run.quarantine
    yield dg.MaterializeResult(
        asset_key=key("quarantine", home),
        metadata={
            "dagster/row_count": dg.MetadataValue.int(q.height),
            "reasons": dg.MetadataValue.md(
                markdown_table(q.group_by("reason").agg(lines=pl.len()).sort("lines", descending=True))
            ),
            **table_metadata("quarantine"),
        },
    )
    files = run.source_files
    dropped = files.group_by("source").agg(pl.col("duplicates").sum()).sort("source")
    yield dg.MaterializeResult(
        asset_key=key("source_files", home),
        metadata={
            "dagster/row_count": dg.MetadataValue.int(files.height),
            "duplicates_dropped": dg.MetadataValue.int(int(files.get_column("duplicates").sum() or 0)),
            **{f"duplicates_dropped_{s}": dg.MetadataValue.int(int(n)) for s, n in dropped.iter_rows()},
        },
    )


def _log_days(context, run, selected: set[str], home: str | None = None) -> None:
    built = [r for r in run.days if not r.removed]
    context.log.info(f"{len(built)} day(s) built, {len(run.days) - len(built)} removed, of {run.total_days}")
    for r in run.days:
        for asset in PARTITIONED:
            if asset in selected:
                context.log_event(_day_event(key(asset, home), r))


def _checks(context, run, home: str | None = None):
    """The results of the checks of the calls built (on source_files and quarantine)."""
    yield dg.AssetCheckResult(
        check_name="matches_schema",
        asset_key=key("source_files", home),
        passed=not run.schema_errors,
        metadata={
            "days_checked": len(run.days),
            "rows_rejected_to_quarantine": run.rejected_rows,
            **({"error": "\n".join(run.schema_errors)[:2000]} if run.schema_errors else {}),
        },
    )
    yield dg.AssetCheckResult(
        check_name="unique_call_ids",
        asset_key=key("source_files", home),
        passed=run.duplicate_ids == 0,
        metadata={"duplicates": run.duplicate_ids, "days_checked": len(run.days)},
    )
    if run.source_files is not None:
        files = run.source_files
        unbalanced = files.filter(~pl.col("balanced"))
        yield dg.AssetCheckResult(
            check_name="lines_reconcile",
            asset_key=key("source_files", home),
            passed=unbalanced.height == 0,
            metadata={
                "files": files.height,
                "lines_read": int(files.get_column("lines_read").sum() or 0),
                "unbalanced_files": unbalanced.height,
                **(
                    {"unbalanced": dg.MetadataValue.md(markdown_table(unbalanced))}
                    if unbalanced.height
                    else {}
                ),
            },
        )
    if run.source_files is not None:
        yield from source_health_checks(context, run.source_files, home)


def source_health_checks(context, source_files: pl.DataFrame, home: str | None = None):
    """The two WARN checks of ``mc_pipeline.ingest.source_health``; findings also go to the log and to
    ``staging/source_health.json`` (the next run's comparison, and the ``make run`` summary's warnings)."""
    from mc_pipeline.ingest import source_health as sh
    from mc_pipeline.ingest.staging import stores
    from mc_pipeline.tables import storage

    settings, openclaw_home, store = step_resources(context, home)
    config = settings.config(openclaw_home, store)
    now = datetime.now(UTC)
    history = sh.read_history(config.staging)
    writes = openclaw_home.last_writes()
    today = now.date()
    recent = [
        s.read_day(today - timedelta(days=i), ["source", "timestamp"])
        for s in stores(config)
        for i in range(8)
    ]
    recent = (
        pl.concat([r for r in recent if r.height])
        if any(r.height for r in recent)
        else pl.DataFrame(schema={"source": pl.String, "timestamp": pl.Datetime("us", "UTC")})
    )
    stats = sh.source_stats_from_counts(source_files, recent, writes, now, history)
    silent, jumps = sh.silent(stats, now, history), sh.quarantine_jumps(stats, history)
    for w in silent + jumps:
        context.log.warning(w)
    storage.write_json(sh.history_doc(stats, silent + jumps), config.staging / sh.HISTORY_FILE)
    table = (
        pl.DataFrame(
            [
                {
                    "source": s.source,
                    "calls_read": s.calls_read,
                    "calls_last_7_days": s.calls_recent,
                    "lines_read": s.lines_read,
                    "quarantined": s.quarantined,
                    "last_write": s.last_write,
                }
                for s in stats
            ]
        )
        if stats
        else pl.DataFrame()
    )
    meta = {"sources": dg.MetadataValue.md(markdown_table(table))} if stats else {}
    for asset, name, found in (
        ("source_files", "sources_not_silent", silent),
        ("quarantine", "quarantine_share_stable", jumps),
    ):
        yield dg.AssetCheckResult(
            check_name=name,
            asset_key=key(asset, home),
            passed=not found,
            severity=dg.AssetCheckSeverity.WARN,
            description=("; ".join(found) or "ok")[:1000],
            metadata=meta,
        )
