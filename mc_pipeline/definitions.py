"""The Dagster code location: every domain's definitions merged, with resources from the environment."""

from __future__ import annotations

import dagster as dg

from mc_pipeline.defs import alerts, automation, ingest
from mc_pipeline.defs import marts as marts_defs
from mc_pipeline.defs.alerts import AlertSettings
from mc_pipeline.defs.days import PARTITIONED, build_daily_assets, day_partitions
from mc_pipeline.defs.resources import McSettings

#: Refresh everything: read what changed, build the days it touched (day_tables records the llm_calls and
#: usage_daily materialisations of exactly those days), marts, alerts, dashboard files. The day-partitioned
#: assets themselves run when days are rerun (the UI's partition picker, a backfill).
refresh_all = dg.define_asset_job(
    "refresh_all",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(*PARTITIONED),
    description="Read what changed in every source, build the days it touched, refresh the marts, alerts and "
    "dashboard files.",
)


def build_defs(settings: McSettings | None = None) -> dg.Definitions:
    settings = settings or McSettings.from_env()
    daily = build_daily_assets(day_partitions(settings.timezone))
    return dg.Definitions.merge(
        ingest.defs,
        marts_defs.defs,
        alerts.defs,
        automation.defs,
        dg.Definitions(
            assets=daily,
            jobs=[refresh_all],
            resources={"settings": settings, "alert_settings": AlertSettings.from_env()},
            # One process for every run, the UI's asset selections and reruns included: the steps are few
            # and share staged files; a fresh Python per step (the multiprocess default) costs ~2 s each.
            executor=dg.in_process_executor,
        ),
    )


defs = build_defs()
