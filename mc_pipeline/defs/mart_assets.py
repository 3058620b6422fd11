"""Marts and the dashboard files: per-day aggregates -> window marts (Parquet + CSV) -> usage-data.json,
sessions.json.

Thin: the figures come from ``mc_pipeline.reporting.marts`` and ``mc_pipeline.reporting.dashboard``; this
module picks ``today`` (the clock, in MC_TIMEZONE), writes files atomically and attaches previews and a chart.
The marts are one step that can be subset (materialise one mart alone from the UI); the dashboard file is
downstream of every mart and reads them as written.
"""

import re
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl

from mc_pipeline.defs.columns import table_metadata
from mc_pipeline.defs.resources import DataStore, McSettings, store_key
from mc_pipeline.reporting.charts import daily_cost_svg, markdown_image
from mc_pipeline.reporting.markdown import markdown_table, reader_order
from mc_pipeline.tables import storage

MARTS_GROUP = "marts"
DASHBOARD_GROUP = "dashboard"

DESCRIPTIONS = {
    "usage_by_provider": "Per provider and window (today, 7/30 days, month to date, all time).",
    "usage_by_model": (
        "Per provider/model and window: tokens, cost, avg cost per call, input/output ratio, error rate."
    ),
    "usage_by_task_type": "Per task type and window.",
    "usage_by_agent": "Per agent and window.",
    "usage_by_session": "Per session and window (session UUID or salted hash; never the session key).",
    "usage_by_trigger": (
        "Per trigger, channel and cron job (id and name) and window: what each cron job costs."
    ),
    "thinking_stats": (
        "Thinking tokens per window: total, calls with thinking, max, average, share estimated/subscription."
    ),
    "api_health": (
        "Per provider (and service, from api_calls) and day: ok, errors by class, rate limits, 5xx, "
        "success rate."
    ),
}
MART_DEPS = {name: ["usage_daily"] for name in DESCRIPTIONS}
MART_DEPS["usage_by_session"] = ["sessions_daily"]
MART_DEPS["api_health"] = ["health_daily", "api_calls"]
PREVIEW_COLUMNS = {
    "usage_by_session": ["window", "agent_id", "session_id", "model", "calls", "total_tokens", "cost_usd"],
    "api_health": [
        "kind",
        "name",
        "day",
        "calls",
        "ok_calls",
        "error_calls",
        "rate_limit_hits",
        "success_rate",
    ],
}


def reporting_today(settings: McSettings) -> date:
    """Today in the reporting zone (the only place the clock is read for the marts)."""
    return datetime.now(ZoneInfo(settings.timezone)).date()


def usage_json_targets(setting: str, data_dir: Path) -> list[tuple[Path, Path]]:
    """(usage-data.json, sessions.json) paths: the data dir first, then each entry of MC_USAGE_JSON_PATHS.

    An entry ending in ``.json`` is the usage file itself (sessions.json goes beside it); anything else is
    a directory (e.g. the dashboard's ``public/``).
    """
    targets = [(data_dir / "usage-data.json", data_dir / "sessions.json")]
    for raw in re.split(r"[:,]", setting or ""):
        raw = raw.strip()
        if not raw:
            continue
        p = Path(raw).expanduser()
        pair = (
            (p, p.parent / "sessions.json")
            if p.suffix == ".json"
            else (p / "usage-data.json", p / "sessions.json")
        )
        if pair not in targets:
            targets.append(pair)
    return targets


def _mart_metadata(name: str, frame: pl.DataFrame, chart: str | None, today: date, zone: str) -> dict:
    cols = PREVIEW_COLUMNS.get(name)
    shown = (
        frame.filter(pl.col("window") == "all_time") if cols is None and "window" in frame.columns else frame
    )
    meta: dict = {
        "dagster/row_count": dg.MetadataValue.int(frame.height),  # the whole table, every window
        "today": dg.MetadataValue.text(f"{today.isoformat()} ({zone})"),  # the windows end on this day
        "preview": dg.MetadataValue.md(markdown_table(shown, columns=cols or reader_order(shown)[:10])),
        **table_metadata(name),
    }
    if chart:
        meta["daily_cost_by_provider"] = dg.MetadataValue.md(chart)
    return meta


def _daily(data: Path):
    from mc_pipeline.calls.daily import DailyTables
    from mc_pipeline.tables.store import Tables

    t = Tables(data)
    return DailyTables(t.staged("usage_daily"), t.staged("sessions_daily"), t.staged("health_daily")), t


def build_mart_assets(fleet: bool = False) -> list:
    """The window marts and the dashboard files of ``$MC_DATA_DIR`` (a fleet's: every home combined by
    ``fleet_tables``)."""

    def deps(name: str) -> list[str]:
        return ["fleet_tables"] if fleet else MART_DEPS[name]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                name,
                group_name=MARTS_GROUP,
                kinds={"parquet", "csv"},
                deps=deps(name),
                description=desc,
                metadata=table_metadata(name),
                skippable=True,
            )
            for name, desc in DESCRIPTIONS.items()
        ],
        can_subset=True,
    )
    def marts(context: dg.AssetExecutionContext, settings: McSettings, store: DataStore):
        """The selected window marts from the per-day aggregates (Parquet + CSV)."""
        yield from build_marts(context, settings, store)

    dashboard_deps = [
        *DESCRIPTIONS,
        *(["fleet_tables"] if fleet else ["usage_daily", "sessions_daily"]),
        "budget_alerts",
    ]

    @dg.asset(
        group_name=DASHBOARD_GROUP,
        kinds={"json"},
        deps=dashboard_deps,
        description="usage-data.json and sessions.json for Mission Control, in $MC_DATA_DIR and each "
        "MC_USAGE_JSON_PATHS entry, from the marts as written and the per-day aggregates"
        + (" (every home of the fleet)." if fleet else "."),
    )
    def usage_data_json(
        context: dg.AssetExecutionContext, settings: McSettings, store: DataStore
    ) -> dg.MaterializeResult:
        return dashboard_files(settings, store, store, read_marts=True)

    return [marts, usage_data_json]


def build_marts(context: dg.AssetExecutionContext, settings: McSettings, store: DataStore):
    """Each selected mart computed from the per-day aggregates, written, and materialised with a preview."""
    from mc_pipeline.reporting import marts as m

    today = reporting_today(settings)
    daily, tables = _daily(store.root)
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    built = {
        "usage_by_provider": lambda: m.usage_by_provider(daily, today),
        "usage_by_model": lambda: m.usage_by_model(daily, today),
        "usage_by_task_type": lambda: m.usage_by_task_type(daily, today),
        "usage_by_agent": lambda: m.usage_by_agent(daily, today),
        "usage_by_session": lambda: m.usage_by_session(daily, today),
        "usage_by_trigger": lambda: m.usage_by_trigger(daily, today),
        "thinking_stats": lambda: m.thinking_stats(daily, today),
        "api_health": lambda: m.api_health(daily, tables.read("api_calls")),
    }
    context.log.info(
        f"marts for {today} ({settings.timezone}) from {daily.usage_daily.height:,} per-day rows"
    )
    for name, make in built.items():
        if name not in selected:
            continue
        frame = make()
        tables.write(name, frame, csv=True)
        # the daily cost chart, built once per run: on usage_by_provider (a fleet home's own dashboard file
        # has no marts step and shows it there instead)
        chart = _chart(daily, today) if name == "usage_by_provider" else None
        yield dg.MaterializeResult(
            asset_key=name, metadata=_mart_metadata(name, frame, chart, today, settings.timezone)
        )


def build_home_dashboard(home: str) -> dg.AssetsDefinition:
    """One home's own usage-data.json and sessions.json in a fleet (``$MC_DATA_DIR/homes/<name>/``)."""
    from mc_pipeline.defs.source_assets import key

    @dg.asset(
        key=key("usage_data_json", home),
        group_name=DASHBOARD_GROUP,
        kinds={"json"},
        deps=[key("sessions_daily", home), key("health_daily", home)],
        description=f"usage-data.json and sessions.json of the home {home} alone, in "
        f"$MC_DATA_DIR/homes/{home}.",
        required_resource_keys={"settings", "store", store_key(home)},
    )
    def home_dashboard(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        resources = context.resources
        home_store = getattr(resources, store_key(home))
        return dashboard_files(resources.settings, home_store, resources.store, read_marts=False)

    return home_dashboard


def dashboard_files(
    settings: McSettings, store: DataStore, salt_store: DataStore, read_marts: bool
) -> dg.MaterializeResult:
    """Write usage-data.json and sessions.json of the tables in ``store`` (and its MC_USAGE_JSON_PATHS); the
    marts as written there (``read_marts``), or computed from its per-day aggregates (a fleet home's own
    files). Session ids are salted with ``salt_store``'s salt (a fleet's: the same in every home's file)."""
    from mc_pipeline.calls.build_days import session_salt
    from mc_pipeline.reporting.dashboard import build_sessions_document, build_usage_document
    from mc_pipeline.reporting.marts import marts_from_daily
    from mc_pipeline.tables.schemas import ALERTS

    daily, tables = _daily(store.root)
    today = reporting_today(settings)
    built = (
        _marts_as_written(daily, tables)
        if read_marts
        else marts_from_daily(daily, today, tables.read("api_calls"))
    )
    salt = session_salt(salt_store.root)
    now = datetime.now(UTC)
    usage = build_usage_document(
        daily,
        today=today,
        generated_at=now,
        timezone_name=settings.timezone,
        marts=built,
        salt=salt,
        alerts=tables.read("budget_alerts", ALERTS),
        budgets=_budget_status(store),
    )
    sessions = build_sessions_document(daily, generated_at=now, timezone_name=settings.timezone, salt=salt)
    written = _publish(usage, sessions, store)
    meta = _dashboard_metadata(usage, sessions, today, written)
    if not read_marts:  # a fleet home's own files: no marts step of its own shows the chart
        meta["daily_cost_by_provider"] = dg.MetadataValue.md(_chart(daily, today))
    return dg.MaterializeResult(metadata=meta)


def _marts_as_written(daily, tables):
    """The window marts as the ``marts`` step wrote them (each read with its spec's columns)."""
    from mc_pipeline.reporting.marts import Marts
    from mc_pipeline.tables.schemas import TABLES, dtypes

    return Marts(
        usage_daily=daily.usage_daily, **{n: tables.read(n, dtypes(TABLES[n])) for n in DESCRIPTIONS}
    )


def _budget_status(store: DataStore) -> dict:
    """The budgets and their forecasts as ``budget_alerts`` last wrote them (empty before its first run)."""
    import json

    from mc_pipeline.defs.alert_assets import BUDGETS_FILE

    try:
        return json.loads((store.staging / BUDGETS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _publish(usage: dict, sessions: dict, store: DataStore) -> list[str]:
    """Both files written to the store and each MC_USAGE_JSON_PATHS entry; the usage-data.json paths."""
    written = []
    # encoded once for every target; sessions.json (one entry per session, MBs) without indentation
    usage_text, sessions_text = storage.json_text(usage), storage.json_text(sessions, indent=None)
    for usage_path, sessions_path in usage_json_targets(store.usage_json_paths, store.root):
        # sessions first: the page needs both, usage is the signal
        storage.write_text(sessions_text, sessions_path)
        storage.write_text(usage_text, usage_path)
        written.append(str(usage_path))
    return written


def _chart(daily, today: date) -> str:
    """The daily cost by provider as an SVG image in markdown."""
    return markdown_image(daily_cost_svg(daily.usage_daily, today), "daily cost by provider")


def _dashboard_metadata(usage: dict, sessions: dict, today: date, written: list[str]) -> dict:
    """What the UI shows of the dashboard files: the headline figures and where they went."""
    s = usage["summary"]
    return {
        "today": dg.MetadataValue.text(today.isoformat()),
        "week_total_usd": dg.MetadataValue.float(round(s["weekTotal"], 2)),
        "month_total_usd": dg.MetadataValue.float(round(s["monthTotal"], 2)),
        "month_projected_usd": dg.MetadataValue.float(round(s["monthProjected"], 2)),
        "total_requests": dg.MetadataValue.int(s["totalRequests"]),
        "unpriced_requests": dg.MetadataValue.int(s["unpricedRequests"]),
        "sessions": dg.MetadataValue.int(len(sessions["sessions"])),
        "written_to": dg.MetadataValue.md("\n".join(f"- `{p}`" for p in written)),
        "providers": dg.MetadataValue.md(
            markdown_table(pl.DataFrame(usage["providers"]).select("name", "cost", "tokens", "requests"))
            if usage["providers"]
            else "_(no calls)_"
        ),
    }
