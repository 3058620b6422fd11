"""The Dagster code location: every domain's definitions merged, with resources from the environment.

One home (OPENCLAW_HOME): asset keys as they are (``llm_calls``), every run in process. A fleet
(MC_OPENCLAW_HOMES): each home's assets under its name (``home_a/llm_calls``) with its own data folder,
``fleet_tables`` combining them, the marts, dashboard and alerts of the whole fleet at the top, and the
multiprocess executor (MC_MAX_CONCURRENT processes) so that homes are read in parallel.
"""

from __future__ import annotations

import os

import dagster as dg

from mc_pipeline.defs import alert_assets, automation
from mc_pipeline.defs.alert_assets import AlertSettings, build_alert_asset
from mc_pipeline.defs.columns import schema_change_checks
from mc_pipeline.defs.day_assets import PARTITIONED, build_daily_assets, day_partitions
from mc_pipeline.defs.mart_assets import build_home_dashboard, build_mart_assets
from mc_pipeline.defs.resources import McSettings
from mc_pipeline.defs.source_assets import build_reader_assets, key

REFRESH_DESCRIPTION = (
    "Read what changed in every source, build the days it touched (day_tables records the llm_calls "
    "and usage_daily materialisations of exactly those days), refresh the marts, alerts and "
    "dashboard files."
)


#: Imported once by the forkserver of a fleet's run, so that no step process imports them again (measured: a
#: step process took ~1 s from queued to started importing the instance's storages, then each its own
#: modules).
PRELOAD = [
    "mc_pipeline.definitions",
    "mc_pipeline.runtime.instance",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
    "mc_pipeline.ingest.staging",
    "mc_pipeline.calls.build_days",
    "mc_pipeline.reporting.marts",
    "mc_pipeline.reporting.dashboard",
    "mc_pipeline.reporting.fleet",
    "mc_pipeline.alerting.rules",
    "mc_pipeline.tables.contracts",
]


def build_defs(settings: McSettings | None = None) -> dg.Definitions:
    settings = settings or McSettings.from_env()
    partitions = day_partitions(settings.timezone)
    homes = [name for name, _ in settings.fleet()]
    if not homes:
        assets = [
            *build_reader_assets(),
            *build_daily_assets(partitions),
            *build_mart_assets(),
            build_alert_asset(),
        ]
        partitioned = [key(a) for a in PARTITIONED]
        # One process for every run, the UI's asset selections and reruns included: the steps are few and
        # share staged files; a fresh Python per step (the multiprocess default) costs ~2 s each.
        executor = dg.in_process_executor
    else:
        from mc_pipeline.defs.fleet_assets import build_fleet_asset

        assets = [
            a
            for h in homes
            for a in (*build_reader_assets(h), *build_daily_assets(partitions, h), build_home_dashboard(h))
        ]
        assets += [build_fleet_asset(homes), *build_mart_assets(fleet=True), build_alert_asset(fleet=True)]
        partitioned = [key(a, h) for h in homes for a in PARTITIONED]
        concurrent = settings.max_concurrent or os.cpu_count() or 2
        # forkserver with our code preloaded: a step's process is forked from one that has Dagster, Polars and
        # these definitions imported already (spawning a fresh Python per step costs ~2 s of imports)
        executor = dg.multiprocess_executor.configured(
            {
                "max_concurrent": concurrent,
                "start_method": {
                    "forkserver": {
                        "preload_modules": PRELOAD
                        + (
                            ["mc_pipeline.runtime.postgres_storage"]
                            if os.environ.get("MC_DAGSTER_POSTGRES_URL")
                            else []
                        )
                    }
                },
            }
        )
    # the day-partitioned assets run when days are rerun (the UI's partition picker, a backfill, `rerun`)
    refresh_all = dg.define_asset_job(
        "refresh_all",
        selection=dg.AssetSelection.all() - dg.AssetSelection.assets(*partitioned),
        description=REFRESH_DESCRIPTION,
    )
    return dg.Definitions.merge(
        alert_assets.defs,
        automation.defs,
        dg.Definitions(
            assets=assets,
            asset_checks=schema_change_checks(assets),
            jobs=[refresh_all],
            resources={**settings.resources(), "alert_settings": AlertSettings.from_env()},
            executor=executor,
        ),
    )


defs = build_defs()


def refresh_job() -> dg.JobDefinition:
    """``refresh_all`` of the definitions built from the environment: reconstructable, so that each step of a
    fleet's run (a process of the multiprocess executor) builds the same job again
    (``mc_pipeline.runtime.cli``)."""
    return defs.resolve_job_def("refresh_all")
