"""The Dagster code location: every domain's definitions merged, with resources from the environment."""

from __future__ import annotations

import dagster as dg

from mc_pipeline.defs import alerts, automation, ingest
from mc_pipeline.defs import marts as marts_defs
from mc_pipeline.defs.alerts import AlertSettings
from mc_pipeline.defs.io_manager import ParquetIOManager
from mc_pipeline.defs.resources import McSettings

#: Refresh everything that can be materialised (the raw sources are declared, never materialised).
refresh_all = dg.define_asset_job(
    "refresh_all",
    selection=dg.AssetSelection.all(),
    description="Read every source and rebuild every table and the dashboard file.",
    # One process for the whole run: the steps hand frames to each other through the IO manager and a
    # fresh Python per step (the multiprocess default) costs ~2 s each for no parallelism worth having.
    executor_def=dg.in_process_executor,
)


def build_defs(settings: McSettings | None = None) -> dg.Definitions:
    settings = settings or McSettings.from_env()
    return dg.Definitions.merge(
        ingest.defs,
        marts_defs.defs,
        alerts.defs,
        automation.defs,
        dg.Definitions(
            jobs=[refresh_all],
            resources={
                "settings": settings,
                "alert_settings": AlertSettings.from_env(),
                "io_manager": ParquetIOManager(data_dir=settings.data_dir),
            },
        ),
    )


defs = build_defs()
