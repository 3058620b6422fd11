"""A fleet (MC_OPENCLAW_HOMES): every home's tables combined into $MC_DATA_DIR
(``mc_pipeline.reporting.fleet``)."""

import dagster as dg

from mc_pipeline.defs.resources import DataStore
from mc_pipeline.defs.source_assets import key


def build_fleet_asset(homes: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        name="fleet_tables",
        group_name="marts",
        kinds={"parquet"},
        deps=[
            key(t, h) for h in homes for t in ("sessions_daily", "health_daily", "quarantine", "source_files")
        ],
        description="Every home's per-day aggregates, line accounting, quarantine, reconciliation and "
        "api_calls in $MC_DATA_DIR, agents qualified as <home>/<agent>: what the combined marts, dashboard "
        "and alerts read.",
    )
    def fleet_tables(context: dg.AssetExecutionContext, store: DataStore) -> dg.MaterializeResult:
        from mc_pipeline.reporting.fleet import combine

        counts = combine(store.root, homes)
        context.log.info(f"{len(homes)} home(s) combined: {counts}")
        return dg.MaterializeResult(
            metadata={
                "homes": dg.MetadataValue.int(len(homes)),
                **{f"rows_{t}": dg.MetadataValue.int(n) for t, n in counts.items()},
            }
        )

    return fleet_tables
