"""Marts and the dashboard files: llm_calls -> usage marts (Parquet + CSV) -> usage-data.json, sessions.json.

Thin: the figures come from ``mc_pipeline.marts`` and ``mc_pipeline.dashboard``; this module picks
``today`` (the clock, in MC_TIMEZONE), writes files atomically and attaches previews and a chart.
"""

import re
import secrets
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl

from mc_pipeline import storage
from mc_pipeline.charts import daily_cost_svg, markdown_image
from mc_pipeline.dashboard import build_sessions_document, build_usage_document
from mc_pipeline.defs.resources import McSettings
from mc_pipeline.marts import Marts, build_marts
from mc_pipeline.report import markdown_table

MARTS_GROUP = "marts"
DASHBOARD_GROUP = "dashboard"
SALT_FILE = "staging/session_salt"  # private: beside the staged batches, away from the public files

DESCRIPTIONS = {
    "usage_daily": "Day x agent x provider x model x task type x billing x trigger: calls, tokens, thinking, cost by source.",
    "usage_by_provider": "Per provider and window (today, 7/30 days, month to date, all time).",
    "usage_by_model": "Per provider/model and window: tokens, cost, avg cost per call, input/output ratio, error rate.",
    "usage_by_task_type": "Per task type and window.",
    "usage_by_agent": "Per agent and window.",
    "usage_by_session": "Per session and window (session UUID or salted hash; never the session key).",
    "usage_by_trigger": "Per trigger, channel and cron job and window: what each cron job costs.",
    "thinking_stats": "Thinking tokens per window: total, calls with thinking, max, average, share estimated/subscription.",
    "api_health": "Per provider (and service, from api_calls) and day: ok, errors by class, rate limits, 5xx, success rate.",
}
PREVIEW_COLUMNS = {
    "usage_daily": ["day", "agent_id", "provider", "model", "task_type", "calls", "total_tokens", "cost_usd"],
    "usage_by_session": ["window", "agent_id", "session_id", "model", "calls", "total_tokens", "cost_usd"],
    "api_health": ["kind", "name", "day", "calls", "ok_calls", "error_calls", "rate_limit_hits", "success_rate"],
}


def reporting_today(settings: McSettings) -> date:
    """Today in the reporting zone (the only place the clock is read for the marts)."""
    return datetime.now(ZoneInfo(settings.timezone)).date()


def session_salt(data_dir: Path) -> str:
    """A random salt kept in ``$MC_DATA_DIR/staging/session_salt`` (made once): hashed ids cannot be guessed back."""
    path = data_dir / SALT_FILE
    try:
        salt = path.read_text().strip()
        if salt:
            return salt
    except OSError:
        pass
    storage.write_text(secrets.token_hex(16) + "\n", path)
    return path.read_text().strip()


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
        pair = (p, p.parent / "sessions.json") if p.suffix == ".json" else (p / "usage-data.json", p / "sessions.json")
        if pair not in targets:
            targets.append(pair)
    return targets


def _mart_out(name: str) -> dg.AssetOut:
    return dg.AssetOut(
        group_name=MARTS_GROUP, kinds={"parquet", "csv"}, metadata={"csv": True}, description=DESCRIPTIONS[name]
    )


def _mart_metadata(name: str, frame: pl.DataFrame, chart: str | None, today: date, zone: str) -> dict:
    cols = PREVIEW_COLUMNS.get(name)
    if cols is None and "window" in frame.columns:
        frame = frame.filter(pl.col("window") == "all_time")
    meta: dict = {
        "dagster/row_count": dg.MetadataValue.int(frame.height),
        "today": dg.MetadataValue.text(f"{today.isoformat()} ({zone})"),  # the windows end on this day
        "preview": dg.MetadataValue.md(markdown_table(frame, columns=[c for c in (cols or frame.columns[:10])])),
    }
    if chart:
        meta["daily_cost_by_provider"] = dg.MetadataValue.md(chart)
    return meta


@dg.multi_asset(
    outs={name: _mart_out(name) for name in DESCRIPTIONS},
    ins={"llm_calls": dg.AssetIn("llm_calls"), "api_calls": dg.AssetIn("api_calls")},
)
def marts(context: dg.AssetExecutionContext, settings: McSettings, llm_calls: pl.DataFrame, api_calls: pl.DataFrame):
    today = reporting_today(settings)
    built = build_marts(llm_calls, today, api_calls=api_calls, salt=session_salt(settings.data))
    chart = markdown_image(daily_cost_svg(built.usage_daily, today), "daily cost by provider")
    context.log.info(f"marts for {today} ({settings.timezone}) from {llm_calls.height:,} calls")
    for name, frame in built.items():
        with_chart = chart if name in ("usage_daily", "usage_by_provider") else None
        yield dg.Output(frame, output_name=name, metadata=_mart_metadata(name, frame, with_chart, today, settings.timezone))


@dg.asset(
    group_name=DASHBOARD_GROUP,
    kinds={"json"},
    description="usage-data.json and sessions.json for Mission Control, in $MC_DATA_DIR and each MC_USAGE_JSON_PATHS entry.",
)
def usage_data_json(
    context: dg.AssetExecutionContext,
    settings: McSettings,
    llm_calls: pl.DataFrame,
    usage_daily: pl.DataFrame,
    usage_by_provider: pl.DataFrame,
    usage_by_model: pl.DataFrame,
    usage_by_task_type: pl.DataFrame,
    usage_by_agent: pl.DataFrame,
    usage_by_session: pl.DataFrame,
    usage_by_trigger: pl.DataFrame,
    thinking_stats: pl.DataFrame,
    api_health: pl.DataFrame,
    budget_alerts: pl.DataFrame,
) -> dg.MaterializeResult:
    built = Marts(
        usage_daily=usage_daily,
        usage_by_provider=usage_by_provider,
        usage_by_model=usage_by_model,
        usage_by_task_type=usage_by_task_type,
        usage_by_agent=usage_by_agent,
        usage_by_session=usage_by_session,
        usage_by_trigger=usage_by_trigger,
        thinking_stats=thinking_stats,
        api_health=api_health,
    )
    calls = llm_calls
    today = reporting_today(settings)
    salt = session_salt(settings.data)
    now = datetime.now(timezone.utc)
    usage = build_usage_document(
        calls, today=today, generated_at=now, timezone_name=settings.timezone, marts=built, salt=salt,
        alerts=budget_alerts,
    )
    sessions = build_sessions_document(calls, generated_at=now, timezone_name=settings.timezone, salt=salt)
    written = []
    # encoded once for every target; sessions.json (one entry per session, MBs) without indentation
    usage_text, sessions_text = storage.json_text(usage), storage.json_text(sessions, indent=None)
    for usage_path, sessions_path in usage_json_targets(settings.usage_json_paths, settings.data):
        storage.write_text(sessions_text, sessions_path)  # sessions first: the page needs both, usage is the signal
        storage.write_text(usage_text, usage_path)
        written.append(str(usage_path))
    s = usage["summary"]
    chart = markdown_image(daily_cost_svg(built.usage_daily, today), "daily cost by provider")
    return dg.MaterializeResult(
        metadata={
            "today": dg.MetadataValue.text(today.isoformat()),
            "week_total_usd": dg.MetadataValue.float(s["weekTotal"]),
            "month_total_usd": dg.MetadataValue.float(s["monthTotal"]),
            "month_projected_usd": dg.MetadataValue.float(s["monthProjected"]),
            "total_requests": dg.MetadataValue.int(s["totalRequests"]),
            "unpriced_requests": dg.MetadataValue.int(s["unpricedRequests"]),
            "sessions": dg.MetadataValue.int(len(sessions["sessions"])),
            "written_to": dg.MetadataValue.md("\n".join(f"- `{p}`" for p in written)),
            "daily_cost_by_provider": dg.MetadataValue.md(chart),
            "providers": dg.MetadataValue.md(
                markdown_table(pl.DataFrame(usage["providers"]).select("name", "cost", "tokens", "requests"))
                if usage["providers"]
                else "_(no calls)_"
            ),
        }
    )


defs = dg.Definitions(assets=[marts, usage_data_json])
