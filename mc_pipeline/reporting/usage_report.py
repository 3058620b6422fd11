"""``python -m mc_pipeline report VIEW``: cost and usage tables in the terminal, as JSON or as CSV.

Reads the tables a run wrote (never the OpenClaw home, never Dagster): the all-days copies of the per-day
aggregates (``staging/daily/usage_daily.parquet``, ``sessions_daily``, ``health_daily``, the same files
``Tables.staged`` reads) and ``parquet/api_calls``. So a report over a year answers in a fraction of a
second, and its figures are the figures of the marts and of ``usage-data.json`` (same rows, same sums).

- Views: ``daily``, ``weekly`` (ISO weeks), ``monthly``, ``session``, ``model``, ``provider``, ``task``,
  ``agent``, ``cron`` (cron-started calls per job), ``health`` (calls, success rate, rate limits, overloaded,
  5xx, timeouts per provider and per error class, and the ``api_calls`` services).
- Filters: ``--since``/``--until`` (calendar days in ``MC_TIMEZONE`` unless ``--tz``), ``--agent``,
  ``--provider``, ``--task`` (exact, comma lists), ``--model`` (substring, case-insensitive), ``--home``.
- ``--by k1,k2`` splits every row by more keys; ``--breakdown`` lists each row's models under it.

The day buckets of the aggregates are calendar days of the zone the run used (``usage-data.json``
``timezone``); that zone is the default when neither ``--tz`` nor ``MC_TIMEZONE`` is set. When they name
another zone, the days are counted again from the
per-call table ``llm_calls`` in that zone (slower, and said so); so is ``health`` filtered by agent, model
or task (the health aggregate is per provider and day only).

Nothing but the standard library is imported at module level: Polars and rich come in when a report runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import polars as pl

VIEWS = ("daily", "weekly", "monthly", "session", "model", "provider", "task", "agent", "cron", "health")
TITLES = {
    "daily": "Usage by day",
    "weekly": "Usage by ISO week",
    "monthly": "Usage by month",
    "session": "Usage by session",
    "model": "Usage by model",
    "provider": "Usage by provider",
    "task": "Usage by task type",
    "agent": "Usage by agent",
    "cron": "Usage by cron job (calls started by cron)",
    "health": "API health by provider",
}
PROG = "mc_pipeline report"
#: Rows of the session table unless --limit says otherwise (a year holds thousands of sessions).
SESSION_TABLE_LIMIT = 50
NO_DATA = (
    "no data yet in {root}: run `make run` first "
    "(it reads your OpenClaw home and writes the tables this report reads)"
)


class ReportError(Exception):
    """A one-line message for the user; exit status 2 (bad input) unless said otherwise."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Key:
    name: str  # as written in --by
    column: str  # column of the per-day aggregates (week and month are derived from day)
    field: str  # JSON / CSV field
    label: str  # table header


KEYS = {
    k.name: k
    for k in (
        Key("day", "day", "date", "Date"),
        Key("week", "week", "week", "Week"),
        Key("month", "month", "month", "Month"),
        Key("session", "session_id", "session", "Session"),
        Key("agent", "agent_id", "agent", "Agent"),
        Key("provider", "provider", "provider", "Provider"),
        Key("model", "model", "model", "Model"),
        Key("task", "task_type", "taskType", "Task"),
        Key("billing", "billing", "billing", "Billing"),
        Key("trigger", "trigger", "trigger", "Trigger"),
        Key("channel", "channel", "channel", "Channel"),
        Key("cron", "cron_job_id", "cronJob", "Cron job"),
    )
}
ALIASES = {
    "date": "day",
    "days": "day",
    "task_type": "task",
    "agent_id": "agent",
    "cron_job": "cron",
    "cron_job_id": "cron",
    "models": "model",
    "providers": "provider",
    "agents": "agent",
    "tasks": "task",
}
VIEW_KEYS = {
    "daily": ["day"],
    "weekly": ["week"],
    "monthly": ["month"],
    "session": ["session", "agent"],
    "model": ["provider", "model"],
    "provider": ["provider"],
    "task": ["task"],
    "agent": ["agent"],
    "cron": ["cron"],
}
TIME_KEYS = ("day", "week", "month")
#: Keys the session aggregate has (it is not split by task type or billing).
SESSION_KEYS = ("day", "week", "month", "session", "agent", "provider", "model", "trigger", "channel", "cron")
#: (aggregate column, JSON field, table header) of each measure, in table order.
MEASURES = (
    ("calls", "requests", "Requests"),
    ("input_tokens", "inputTokens", "Input"),
    ("output_tokens", "outputTokens", "Output"),
    ("cache_write_tokens", "cacheWriteTokens", "Cache write"),
    ("cache_read_tokens", "cacheReadTokens", "Cache read"),
    ("total_tokens", "tokens", "Tokens"),
    ("cost_usd", "cost", "Cost"),
)
EXTRA_MEASURES = (("failed_calls", "failedRequests"), ("unpriced_calls", "unpricedRequests"))
TOKEN_KINDS = ("inputTokens", "outputTokens", "cacheWriteTokens", "cacheReadTokens")
HEALTH_SUMS = (
    "calls",
    "ok_calls",
    "error_calls",
    "aborted_calls",
    "unknown_status_calls",
    "rate_limit_hits",
    "server_errors_5xx",
    "duration_sum_ms",
    "duration_calls",
)


# -- arguments ------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        raise ReportError(message)


def parse_day(text: str, option: str) -> date:
    t = text.strip()
    try:
        if len(t) == 8 and t.isdigit():
            return date(int(t[:4]), int(t[4:6]), int(t[6:]))
        if len(t) == 10 and t[4] == "-" and t[7] == "-":
            return date.fromisoformat(t)
    except ValueError:
        pass
    raise ReportError(f"bad date {text!r} for {option} (YYYY-MM-DD or YYYYMMDD)")


def _list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=f"python -m {PROG}",
        allow_abbrev=False,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="views: " + ", ".join(VIEWS) + "\n--by keys: " + ", ".join(KEYS),
    )
    p.add_argument("view", metavar="VIEW", help="one of: " + ", ".join(VIEWS))
    p.add_argument("--since", help="first day, YYYY-MM-DD or YYYYMMDD (inclusive)")
    p.add_argument("--until", help="last day, YYYY-MM-DD or YYYYMMDD (inclusive)")
    p.add_argument("--tz", help="zone of the days (default MC_TIMEZONE, else the zone the data was built in)")
    p.add_argument("--agent", help="only these agents (comma-separated ids)")
    p.add_argument("--provider", help="only these providers (comma-separated)")
    p.add_argument("--model", help="only models whose id contains this (comma-separated: any of them)")
    p.add_argument("--task", help="only these task types (comma-separated)")
    p.add_argument("--home", help="the OpenClaw home, where a data folder holds several (today: one)")
    p.add_argument("--by", help="split each row by these keys too, e.g. model,task")
    p.add_argument("--breakdown", action="store_true", help="each row's models under it (as ccusage)")
    p.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help=f"at most N rows: the costliest (the latest for daily, weekly, monthly); 0: all. Default: "
        f"all, but {SESSION_TABLE_LIMIT} in the session table",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--json", action="store_true", help='{"view", "asOf", "timezone", "filters", "rows", "totals"}'
    )
    out.add_argument("--csv", action="store_true", help="the rows as CSV")
    return p


@dataclass
class Request:
    view: str
    zone: str
    since: date | None = None
    until: date | None = None
    agent: list[str] | None = None
    provider: list[str] | None = None
    model: list[str] | None = None
    task: list[str] | None = None
    home: str | None = None
    by: list[str] = field(default_factory=list)
    breakdown: bool = False
    limit: int | None = None
    fmt: str = "table"  # table | json | csv

    @property
    def keys(self) -> list[str]:
        base = VIEW_KEYS.get(self.view, [])
        return base + [k for k in self.by if k not in base]

    def filters(self) -> dict:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "agent": self.agent,
            "provider": self.provider,
            "model": self.model,
            "task": self.task,
            "home": self.home,
            "by": self.by,
            "breakdown": self.breakdown,
            "limit": self.limit,
        }


def parse_request(argv: list[str], env: dict[str, str]) -> Request:
    args = build_parser().parse_args(argv)
    view = args.view.strip().lower()
    if view not in VIEWS:
        raise ReportError(f"unknown view {args.view!r}; one of: {', '.join(VIEWS)}")
    zone = args.tz or env.get("MC_TIMEZONE") or ""  # neither: the data's own zone (run_report)
    if zone:
        _check_zone(zone, "--tz" if args.tz else "MC_TIMEZONE")
    req = Request(
        view=view,
        zone=zone,
        agent=_list(args.agent),
        provider=_list(args.provider),
        model=_list(args.model),
        task=_list(args.task),
        home=args.home,
        breakdown=args.breakdown,
        limit=args.limit,
        fmt="json" if args.json else "csv" if args.csv else "table",
    )
    req.since = parse_day(args.since, "--since") if args.since else None
    req.until = parse_day(args.until, "--until") if args.until else None
    if req.since and req.until and req.since > req.until:
        raise ReportError(f"--since {req.since} is after --until {req.until}")
    for name in _list(args.by) or []:
        key = ALIASES.get(name.lower(), name.lower())
        if key not in KEYS:
            raise ReportError(f"unknown --by key {name!r}; one of: {', '.join(KEYS)}")
        if key not in req.by:
            req.by.append(key)
    if view == "health" and (req.by or req.breakdown):
        raise ReportError(
            "--by and --breakdown do not apply to health (it is per provider, per class and per service)"
        )
    if view == "session":
        bad = [k for k in req.by if k not in SESSION_KEYS]
        if bad or req.task:
            what = f"--by {','.join(bad)}" if bad else "--task"
            raise ReportError(
                f"{what} does not apply to the session view (sessions are not split by task type or billing)"
            )
    if req.limit is not None and req.limit < 0:
        raise ReportError(f"--limit must be 0 (all) or more, not {req.limit}")
    if req.breakdown and req.fmt == "csv":
        raise ReportError("--breakdown does not fit a CSV; use --by model for one row per model")
    return req


def _local_zone() -> str:
    from mc_pipeline.runtime.defaults import local_timezone

    return local_timezone()


def _check_zone(zone: str, what: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"{what} {zone!r} is not an IANA time zone (e.g. Europe/Berlin)") from None


# -- the data folder --------------------------------------------------------------------------------------
@dataclass
class DataFolder:
    """The tables of one ``$MC_DATA_DIR`` (paths as in :class:`mc_pipeline.tables.store.Tables`)."""

    root: Path

    def staged_path(self, name: str) -> Path:
        return self.root / "staging" / "daily" / f"{name}.parquet"

    def staged(self, name: str) -> pl.DataFrame:
        import polars as pl

        from mc_pipeline.tables import storage
        from mc_pipeline.tables.schemas import API_HEALTH, SESSIONS_DAILY, USAGE_DAILY

        schema = {"usage_daily": USAGE_DAILY, "sessions_daily": SESSIONS_DAILY, "health_daily": API_HEALTH}[
            name
        ]
        path = self.staged_path(name)
        if not path.exists():
            return pl.DataFrame(schema=schema)
        return storage.read_parquet(path).cast(schema)

    def api_calls(self) -> pl.DataFrame:
        import polars as pl

        from mc_pipeline.tables import storage
        from mc_pipeline.tables.schemas import API_CALLS, conform

        path = self.root / "parquet" / "api_calls" / "api_calls.parquet"
        if not path.exists():
            return pl.DataFrame(schema=API_CALLS)
        return conform(storage.read_parquet(path), API_CALLS)

    def has_data(self) -> bool:
        return self.staged_path("usage_daily").exists()

    def refreshed(self) -> datetime | None:
        """When a run last wrote the outputs: usage-data.json, else the per-day aggregate."""
        for path in (self.root / "usage-data.json", self.staged_path("usage_daily")):
            try:
                return datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except OSError:
                continue
        return None

    def zone(self) -> str | None:
        """The zone the last run counted days in (``usage-data.json`` says); None when unknown."""
        try:
            doc = json.loads((self.root / "usage-data.json").read_text())
        except (OSError, ValueError):
            return None
        zone = doc.get("timezone") if isinstance(doc, dict) else None
        return zone if isinstance(zone, str) and zone else None

    def homes(self, env: dict[str, str]) -> list[Path]:
        """The OpenClaw homes whose calls this folder holds: one, the configured home, until a multi-home
        layout exists (then this is where they are listed and ``--home`` picks among them)."""
        home = env.get("OPENCLAW_HOME")
        if not home:
            from mc_pipeline.runtime.defaults import default_home

            home = default_home()
        return [Path(home).expanduser().resolve()]

    def llm_calls(self, first: date | None, last: date | None) -> pl.DataFrame:
        """The per-call columns the aggregates are made of, for the stored days in [first, last]."""
        from mc_pipeline.tables import storage
        from mc_pipeline.tables.schemas import LLM_CALLS

        cols = [
            "call_id",
            "timestamp",
            "agent_id",
            "session_id",
            "provider",
            "model",
            "task_type",
            "billing",
            "trigger",
            "channel",
            "cron_job_id",
            "cron_job_name",
            "status",
            "error_class",
            "http_status",
            "duration_ms",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "total_tokens",
            "thinking_tokens",
            "thinking_estimated",
            "tool_calls",
            "tool_names",
            "cost_usd",
            "cost_source",
        ]
        schema = {c: LLM_CALLS[c] for c in cols}
        parts = []
        import polars as pl

        for folder in sorted((self.root / "parquet" / "llm_calls").glob("day=*")):
            try:
                day = date.fromisoformat(folder.name.split("=", 1)[1])
            except ValueError:
                continue
            if (first and day < first) or (last and day > last):
                continue
            try:
                part = storage.read_parquet(folder / storage.PART_FILE, cols)
            except FileNotFoundError:
                continue
            parts.append(part.cast(schema))
        return pl.concat(parts) if parts else pl.DataFrame(schema=schema)

    def salt(self) -> str:
        from mc_pipeline.reporting.marts import DEFAULT_SALT

        try:
            return (self.root / "staging" / "session_salt").read_text().strip() or DEFAULT_SALT
        except OSError:
            return DEFAULT_SALT


# -- filters and frames -----------------------------------------------------------------------------------
def _day_filter(req: Request) -> pl.Expr:
    import polars as pl

    expr = pl.lit(True)
    if req.since:
        expr = expr & (pl.col("day") >= req.since)
    if req.until:
        expr = expr & (pl.col("day") <= req.until)
    return expr


def _value_filter(req: Request, columns: dict[str, str]) -> pl.Expr:
    """``columns``: filter name -> column of the frame (agent, provider, model, task)."""
    import polars as pl

    expr = pl.lit(True)
    for name, values in (("agent", req.agent), ("provider", req.provider), ("task", req.task)):
        if values and name in columns:
            expr = expr & pl.col(columns[name]).is_in(values)
    if req.model and "model" in columns:
        low = pl.col(columns["model"]).str.to_lowercase()
        expr = expr & pl.any_horizontal(
            [low.str.contains(m.lower(), literal=True) for m in req.model]
        ).fill_null(False)
    return expr


USAGE_COLUMNS = {"agent": "agent_id", "provider": "provider", "model": "model", "task": "task_type"}


def check_filter_values(req: Request, usage: pl.DataFrame) -> None:
    """A filter naming something the data never had is a typo: say what there is (all time)."""
    for name, values in (("agent", req.agent), ("provider", req.provider), ("task", req.task)):
        if not values:
            continue
        known = sorted(v for v in usage.get_column(USAGE_COLUMNS[name]).unique().to_list() if v is not None)
        missing = [v for v in values if v not in known]
        if missing:
            raise ReportError(
                f"no {name} {', '.join(map(repr, missing))} in the data; there is: {_some(known)}"
            )
    if req.model:
        known = sorted(v for v in usage.get_column("model").unique().to_list() if v is not None)
        missing = [m for m in req.model if not any(m.lower() in k.lower() for k in known)]
        if missing:
            raise ReportError(f"no model contains {', '.join(map(repr, missing))}; there is: {_some(known)}")


def _some(values: list[str], limit: int = 12) -> str:
    if not values:
        return "nothing"
    return ", ".join(values[:limit]) + (f" (and {len(values) - limit} more)" if len(values) > limit else "")


@dataclass
class Frames:
    usage: pl.DataFrame  # USAGE_DAILY rows
    sessions: pl.DataFrame | None = None  # SESSIONS_DAILY rows (session view)
    health: pl.DataFrame | None = None  # API_HEALTH provider rows (health view)
    services: pl.DataFrame | None = None  # API_HEALTH service rows (health view)
    recounted: str | None = None  # why the days were counted again from llm_calls, when they were


def load_frames(req: Request, folder: DataFolder) -> Frames:
    """The per-day rows the view needs: the stored aggregates, or the same aggregates made again from
    ``llm_calls`` when the days must be counted in another zone (or health is filtered by
    agent/model/task)."""
    import polars as pl

    usage = folder.staged("usage_daily")
    check_filter_values(req, usage)
    data_zone = folder.zone()
    other_zone = data_zone is not None and data_zone != req.zone
    call_filters = req.view == "health" and bool(req.agent or req.model or req.task)
    if not other_zone and not call_filters:
        frames = Frames(usage=usage)
        if req.view == "session":
            frames.sessions = folder.staged("sessions_daily")
        if req.view == "health":
            frames.health = folder.staged("health_daily").filter(pl.col("kind") == "provider")
            frames.services = _services(folder.api_calls(), None)
        return frames

    from mc_pipeline.calls.daily import health_daily, sessions_daily, usage_daily

    margin = timedelta(
        days=2
    )  # a calendar day in one zone lies within a day or so of the same day in another
    calls = folder.llm_calls(
        req.since - margin if req.since else None, req.until + margin if req.until else None
    )
    if other_zone:
        calls = calls.with_columns(day=pl.col("timestamp").dt.convert_time_zone(req.zone).dt.date())
        why = f"days counted again in {req.zone} from llm_calls (the tables were built in {data_zone})"
    else:
        calls = calls.with_columns(
            day=pl.col("timestamp").dt.convert_time_zone(data_zone or req.zone).dt.date()
        )
        why = "health counted from llm_calls (the health table is per provider and day only)"
    calls = calls.filter(_day_filter(req))
    if req.view == "health":
        picked = calls.filter(_value_filter(req, USAGE_COLUMNS))
        api = folder.api_calls()
        return Frames(
            usage=usage_daily(picked),
            health=health_daily(picked),
            services=_services(api, req.zone if other_zone else None),
            recounted=why,
        )
    frames = Frames(usage=usage_daily(calls), recounted=why)
    if req.view == "session":
        frames.sessions = sessions_daily(calls, folder.salt())
    return frames


def _services(api_calls: pl.DataFrame, zone: str | None) -> pl.DataFrame:
    import polars as pl

    from mc_pipeline.reporting.marts import service_health

    if zone is not None and api_calls.height:
        api_calls = api_calls.with_columns(day=pl.col("timestamp").dt.convert_time_zone(zone).dt.date())
    return service_health(api_calls)


# -- rows ---------------------------------------------------------------------------------------------------
def _with_periods(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    import polars as pl

    extra = []
    if "week" in keys:
        extra.append(pl.col("day").dt.strftime("%G-W%V").alias("week"))
    if "month" in keys:
        extra.append(pl.col("day").dt.strftime("%Y-%m").alias("month"))
    return frame.with_columns(extra) if extra else frame


def _sums() -> list[pl.Expr]:
    import polars as pl

    cols = [m[0] for m in MEASURES] + [m[0] for m in EXTRA_MEASURES]
    return [pl.col(c).sum().alias(c) for c in cols]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return value


def _measures(row: dict) -> dict:
    out = {}
    for col, name, _ in MEASURES:
        out[name] = float(row[col] or 0.0) if col == "cost_usd" else int(row[col] or 0)
    for col, name in EXTRA_MEASURES:
        out[name] = int(row[col] or 0)
    return out


def totals_of(frame: pl.DataFrame) -> dict:
    if frame.height == 0:
        return _measures(dict.fromkeys([m[0] for m in MEASURES] + [m[0] for m in EXTRA_MEASURES], 0))
    return _measures(frame.select(_sums()).row(0, named=True))


NUMERIC = ("int", "money", "pct")


@dataclass
class Column:
    field: str
    label: str
    kind: str = "text"  # text | time | int | money | pct


def _view_frame(req: Request, frames: Frames) -> tuple[pl.DataFrame, list[str]]:
    """The view's per-day rows after the filters (cron: only those started by cron) and a note on the rest."""
    import polars as pl

    session = req.view == "session"
    frame = frames.sessions if session else frames.usage
    assert frame is not None
    cols = USAGE_COLUMNS if not session else {k: v for k, v in USAGE_COLUMNS.items() if k != "task"}
    frame = frame.filter(_day_filter(req) & _value_filter(req, cols))
    notes = []
    if req.view == "cron":
        others = frame.filter(pl.col("trigger").ne_missing("cron"))
        frame = frame.filter(pl.col("trigger") == "cron")
        if others.height:
            t = totals_of(others)
            notes.append(
                f"not started by cron (other triggers): {money(t['cost'])} over {t['requests']:,} requests"
            )
    return frame, notes


def _grouped(
    frame: pl.DataFrame, keys: list[str], group: list[str], session: bool
) -> tuple[pl.DataFrame, list[Column], bool]:
    """The rows summed by key, in table order; the extra key columns; whether a session's main model shows."""
    import polars as pl

    carry: list[pl.Expr] = []
    extra_cols: list[Column] = []
    if "cron" in keys:
        carry.append(pl.col("cron_job_name").drop_nulls().first().alias("cron_job_name"))
        # a column only when some job's name is known
        if frame.get_column("cron_job_name").drop_nulls().len():
            extra_cols.append(Column("cronJobName", "Name"))
    if session:
        carry += [
            pl.col("trigger").drop_nulls().first().alias("trigger_"),
            pl.col("first_call").min().alias("first_call"),
            pl.col("last_call").max().alias("last_call"),
        ]
    grouped = frame.group_by(group).agg(_sums() + carry)
    main_model = session and "model" not in keys and "provider" not in keys
    if main_model and grouped.height:
        from mc_pipeline.reporting.marts import main_models

        grouped = grouped.join(
            main_models(frame), on=["agent_id", "session_id"], how="left", nulls_equal=True
        )
    if keys[0] in TIME_KEYS:
        grouped = grouped.sort(group, nulls_last=True)
    else:
        grouped = grouped.sort(
            ["cost_usd", "calls", *group], descending=[True, True] + [False] * len(group), nulls_last=True
        )
    return grouped, extra_cols, main_model


def _limited(
    grouped: pl.DataFrame, keys: list[str], limit: int, notes: list[str]
) -> tuple[pl.DataFrame, int]:
    """At most ``limit`` rows (the latest of a period view, else the costliest), noted; how many left out."""
    omitted = max(0, grouped.height - limit) if limit else 0
    if omitted:
        latest = keys[0] in TIME_KEYS
        notes.append(
            f"showing the {limit} {'latest' if latest else 'costliest'} of {grouped.height:,} rows (the "
            f"Total counts all; --limit 0 shows every row)"
        )
        grouped = grouped.tail(limit) if latest else grouped.head(limit)
    return grouped, omitted


def _with_json_text(
    grouped: pl.DataFrame, group: list[str], session: bool
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Adds the JSON text of date keys (and of a session's first and last call); its columns, by column."""
    import polars as pl

    # made by Polars at once (a year of sessions is thousands of rows)
    out_cols = {c: f"{c}__out" for c in group if grouped.schema[c] == pl.Date()}
    grouped = grouped.with_columns([pl.col(c).cast(pl.String).alias(o) for c, o in out_cols.items()])
    if session:
        out_cols |= {"first_call": "first_call__out", "last_call": "last_call__out"}
        grouped = grouped.with_columns(
            [
                pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").alias(f"{c}__out")
                for c in ("first_call", "last_call")
            ]
        )
    return grouped, out_cols


def _key_columns(keys: list[str], extra_cols: list[Column], main_model: bool, session: bool) -> list[Column]:
    """The columns before the measures: keys, a cron job's name, a session's main model and last call."""
    key_cols = [Column(KEYS[k].field, KEYS[k].label) for k in keys] + extra_cols
    if main_model:
        key_cols.append(Column("model", "Model (main)"))
    if session:
        key_cols.append(Column("lastCall", "Last call", "time"))
    return key_cols


def _output_rows(
    req: Request,
    grouped: pl.DataFrame,
    frame: pl.DataFrame,
    group: list[str],
    out_cols: dict[str, str],
    main_model: bool,
) -> list[dict]:
    """The JSON / CSV / table rows of the grouped rows (with each row's models when ``--breakdown``)."""
    keys = req.keys
    session = req.view == "session"
    breakdowns = _breakdowns(frame, group) if req.breakdown else {}
    rows = []
    for r in grouped.iter_rows(named=True):
        row = {KEYS[k].field: r[out_cols.get(KEYS[k].column, KEYS[k].column)] for k in keys}
        if "cron" in keys:
            row["cronJobName"] = r["cron_job_name"]
        if session:
            if main_model:
                row["provider"], row["model"] = r["provider"], r["model"]
            row["trigger"] = r["trigger_"]
            row["firstCall"], row["lastCall"] = r["first_call__out"], r["last_call__out"]
        row.update(_measures(r))
        if req.breakdown:
            row["modelBreakdowns"] = breakdowns.get(tuple(r[c] for c in group), [])
        rows.append(row)
    return rows


def usage_rows(
    req: Request, frames: Frames, limit: int = 0
) -> tuple[list[dict], dict, list[Column], list[str], int]:
    """(rows, totals, key columns, notes, rows left out) of a usage view, over the filtered per-day rows;
    ``limit``: at most that many rows, the costliest (the latest when the first key is a period); 0: all."""
    keys = req.keys
    session = req.view == "session"
    frame, notes = _view_frame(req, frames)
    frame = _with_periods(frame, keys)
    group = [KEYS[k].column for k in keys]
    grouped, extra_cols, main_model = _grouped(frame, keys, group, session)
    grouped, omitted = _limited(grouped, keys, limit, notes)
    grouped, out_cols = _with_json_text(grouped, group, session)
    key_cols = _key_columns(keys, extra_cols, main_model, session)
    rows = _output_rows(req, grouped, frame, group, out_cols, main_model)
    return rows, totals_of(frame), key_cols, notes, omitted


def _breakdowns(frame: pl.DataFrame, group: list[str]) -> dict[tuple, list[dict]]:
    """Per row (its key values): one entry per model, cost desc (ccusage's ``modelBreakdowns``)."""
    by = group + (["model"] if "model" not in group else [])
    sub = (
        frame.group_by(by)
        .agg(_sums())
        .sort(["cost_usd", "calls", "model"], descending=[True, True, False], nulls_last=True)
    )
    out: dict[tuple, list[dict]] = {}
    for r in sub.iter_rows(named=True):
        out.setdefault(tuple(r[c] for c in group), []).append({"model": r["model"], **_measures(r)})
    return out


# -- health ---------------------------------------------------------------------------------------------
def _health_row(r: dict) -> dict:
    from mc_pipeline.tables.schemas import ERROR_CLASSES

    calls, ok = int(r["calls"] or 0), int(r["ok_calls"] or 0)
    n = int(r["duration_calls"] or 0)
    return {
        "requests": calls,
        "okRequests": ok,
        "failedRequests": int(r["error_calls"] or 0),
        "abortedRequests": int(r["aborted_calls"] or 0),
        "unknownStatusRequests": int(r["unknown_status_calls"] or 0),
        "successRate": round(100.0 * ok / calls, 2) if calls else None,  # percent, as usage-data.json
        "rateLimits": int(r["rate_limit_hits"] or 0),  # class rate_limit or HTTP 429
        "overloaded": int(r["errors_overloaded"] or 0),  # 529 / "overloaded"
        "serverErrors": int(r["server_errors_5xx"] or 0),  # HTTP 500-599 (529 included)
        "timeouts": int(r["errors_timeout"] or 0),
        "avgDurationMs": round(r["duration_sum_ms"] / n, 1) if n else None,
        # failed calls per class (aborted calls are stopped by the user, not failures: abortedRequests)
        "errorsByClass": {
            c: int(r[f"errors_{c}"] or 0) for c in ERROR_CLASSES if c != "aborted" and r[f"errors_{c}"]
        },
    }


def _health_sums() -> list[pl.Expr]:
    import polars as pl

    from mc_pipeline.tables.schemas import ERROR_CLASSES

    return [pl.col(c).sum().alias(c) for c in (*HEALTH_SUMS, *(f"errors_{c}" for c in ERROR_CLASSES))]


def _health_table(frame: pl.DataFrame, field_name: str) -> tuple[list[dict], dict]:
    if frame.height == 0:
        empty = dict.fromkeys(frame.columns, 0)
        return [], _health_row(empty)
    g = (
        frame.group_by("name")
        .agg(_health_sums())
        .sort(["calls", "name"], descending=[True, False], nulls_last=True)
    )
    rows = [{field_name: r["name"], **_health_row(r)} for r in g.iter_rows(named=True)]
    return rows, _health_row(frame.select(_health_sums()).row(0, named=True))


def health_report(req: Request, frames: Frames) -> dict:
    import polars as pl

    from mc_pipeline.tables.schemas import ERROR_CLASSES

    assert frames.health is not None and frames.services is not None
    providers = frames.health.filter(_day_filter(req) & _value_filter(req, {"provider": "name"}))
    rows, totals = _health_table(providers, "provider")
    classes = []
    if providers.height:
        per = providers.group_by("name").agg(_health_sums()).sort("name", nulls_last=True)
        failed = totals["failedRequests"]
        for c in (c for c in ERROR_CLASSES if c != "aborted"):  # aborted: a column of its own, not a failure
            n = int(per.get_column(f"errors_{c}").sum() or 0)
            if n:
                by = {r["name"]: int(r[f"errors_{c}"]) for r in per.iter_rows(named=True) if r[f"errors_{c}"]}
                classes.append(
                    {
                        "class": c,
                        "errors": n,
                        "shareOfFailed": round(100.0 * n / failed, 2) if failed else None,
                        "byProvider": by,
                    }
                )
        classes.sort(key=lambda x: (-x["errors"], x["class"]))
    doc: dict = {"rows": rows, "totals": totals, "classes": classes}
    if req.agent or req.model or req.task or req.provider:
        doc["services"], doc["serviceTotals"] = None, None  # api_calls know no agent, model, task or provider
    else:
        services = frames.services.filter(_day_filter(req)).filter(pl.col("kind") == "service")
        doc["services"], doc["serviceTotals"] = _health_table(services, "service")
    return doc


# -- output ---------------------------------------------------------------------------------------------
def money(value: float | None) -> str:
    v = float(value or 0.0)
    if 0 < v < 0.005:
        return "<$0.01"
    return f"${v:,.2f}"


def _cell(value: Any, kind: str, zone: str) -> str:
    if value is None:
        return "—"
    if kind == "money":
        return money(value)
    if kind == "int":
        return f"{value:,}"
    if kind == "pct":
        return f"{value:.2f}%"
    if kind == "time":
        from zoneinfo import ZoneInfo

        ts = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
        return ts.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
    return str(value)


def _ago(ts: datetime, now: datetime) -> str:
    s = max(0, int((now - ts).total_seconds()))
    if s < 90:
        return "just now"
    if s < 90 * 60:
        return f"{round(s / 60)} min ago"
    if s < 36 * 3600:
        return f"{round(s / 3600)} h ago"
    return f"{round(s / 86400)} days ago"


def _range_text(req: Request) -> str:
    if req.since and req.until:
        return f"{req.since} .. {req.until}" if req.since != req.until else str(req.since)
    if req.since:
        return f"since {req.since}"
    if req.until:
        return f"until {req.until}"
    return "all time"


def _filters_text(req: Request) -> str:
    parts = [
        f"{n}={','.join(v)}"
        for n, v in (("agent", req.agent), ("provider", req.provider), ("task", req.task))
        if v
    ]
    if req.model:
        parts.append(f"model~{','.join(req.model)}")
    if req.by:
        parts.append(f"by {','.join(req.by)}")
    return "; ".join(parts)


def _console(out: TextIO, width: int | None):
    from rich.console import Console

    return Console(file=out, width=width, highlight=False, emoji=False, soft_wrap=False)


@dataclass
class Grid:
    """A table's cells as text, before rich draws it: the widths are known, so rich need not measure."""

    title: str
    columns: list[Column]
    lines: list[tuple[list[str], str | None]]  # (cells, style); a None cells list is a section break
    zone: str

    def width(self) -> int:
        """Columns at their widest, each with one space either side, and the borders."""
        return sum(w + 2 for w in self.widths()) + len(self.columns) + 1

    def widths(self) -> list[int]:
        from rich.cells import cell_len

        widths = [cell_len(c.label) for c in self.columns]
        for cells, _ in self.lines:
            for i, text in enumerate(cells or []):
                widths[i] = max(widths[i], cell_len(text))
        return widths

    def render(self, console):
        from rich import box
        from rich.table import Table
        from rich.text import Text

        fits = self.width() <= console.width
        t = Table(title=self.title, box=box.ROUNDED, title_justify="left")
        for c, w in zip(self.columns, self.widths()):
            fixed = fits or c.kind in NUMERIC or c.kind == "time"
            # widths known: rich measures nothing; a table too wide folds its text columns to the terminal
            t.add_column(
                c.label,
                justify="right" if c.kind in NUMERIC else "left",
                no_wrap=fixed,
                overflow="fold",
                width=w if fixed else None,
            )
        for cells, style in self.lines:
            if cells is None:
                t.add_section()
            else:  # Text: no markup to parse in a model id or a name
                t.add_row(*[Text(x) for x in cells], style=style)
        return t


def _grid(
    title: str,
    columns: list[Column],
    rows: list[dict],
    totals: dict | None,
    zone: str,
    sub_rows: Callable[[dict], list[dict]] | None = None,
) -> Grid:
    def cells(r: dict, first: str | None = None) -> list[str]:
        out = [
            _cell(r.get(c.field), c.kind, zone)
            + (" *" if c.kind == "money" and r.get("unpricedRequests") else "")
            if first is None or c.kind in NUMERIC
            else ""
            for c in columns
        ]
        if first is not None:
            out[0] = first
        return out

    lines: list[tuple[list[str] | None, str | None]] = []
    for r in rows:
        lines.append((cells(r), None))
        for s in sub_rows(r) if sub_rows else []:
            lines.append((cells(s, f"  └ {s.get('model') or '—'}"), "dim"))
    if totals is not None:
        lines += [(None, None), (cells(totals, "Total"), "bold")]
    return Grid(title, columns, lines, zone)  # type: ignore[arg-type]


def _fitted(console, build: Callable[[int], Grid], levels: int) -> tuple[Grid, int]:
    """The first of ``build(0)`` (everything), ``build(1)``, ... that fits the terminal (else the last)."""
    for level in range(levels):
        grid = build(level)
        if grid.width() <= console.width:
            break
    return grid, level


def _short_ids(rows: list[dict]) -> list[dict]:
    return [
        {**r, "session": r["session"][:8] + "…"} if r.get("session") and len(r["session"]) > 9 else r
        for r in rows
    ]


def render_usage(
    req: Request,
    console,
    rows: list[dict],
    totals: dict,
    key_cols: list[Column],
    notes: list[str],
    footer: list[str],
) -> None:
    """Level 0: every column; 1: without the token kinds; 2 (sessions): and session ids cut to 8 chars."""
    subtitle = " · ".join(x for x in (_range_text(req), req.zone, _filters_text(req)) if x)
    sub_rows = (lambda r: r.get("modelBreakdowns", [])) if req.breakdown and "model" not in req.keys else None

    def build(level: int) -> Grid:
        cols = list(key_cols) + [
            Column(f, label, "money" if f == "cost" else "int")
            for _, f, label in MEASURES
            if level == 0 or f not in TOKEN_KINDS
        ]
        shown = _short_ids(rows) if level >= 2 else rows
        return _grid(f"{TITLES[req.view]} — {subtitle}", cols, shown, totals, req.zone, sub_rows)

    grid, level = _fitted(console, build, 3 if "session" in req.keys else 2)
    console.print(grid.render(console))
    lines = list(notes)
    if req.breakdown and "model" in req.keys:
        lines.append("--breakdown: each row is one model already")
    if totals["unpricedRequests"]:
        n = totals["unpricedRequests"]
        lines.append(
            f"* {n:,} {'request has' if n == 1 else 'requests have'} no price: "
            f"{'its' if n == 1 else 'their'} cost is unknown and not in the cost column"
        )
    if level:
        hidden = "token kinds hidden" + (", session ids cut" if level >= 2 else "")
        lines.append(f"{hidden} to fit the terminal (a wider one, or --json, shows them)")
    for line in lines + footer:
        console.print(line, markup=False, soft_wrap=True)


HEALTH_LEGEND = (
    "429: rate limits (class rate_limit or HTTP 429) · 529: overloaded · 5xx: HTTP 500-599 (529 too) · "
    "Aborted: stopped by the user, not a failure"
)
#: The measure columns of the health tables (providers and services), in table order.
HEALTH_COLUMNS = (
    Column("requests", "Calls", "int"),
    Column("successRate", "OK", "pct"),
    Column("failedRequests", "Failed", "int"),
    Column("rateLimits", "429", "int"),
    Column("overloaded", "529", "int"),
    Column("serverErrors", "5xx", "int"),
    Column("timeouts", "Timeouts", "int"),
    Column("abortedRequests", "Aborted", "int"),
    Column("avgDurationMs", "Avg ms", "int"),
)


def _whole_ms(rows: list[dict]) -> list[dict]:
    """The rows with ``avgDurationMs`` rounded to whole milliseconds."""
    return [
        {**r, "avgDurationMs": None if r["avgDurationMs"] is None else round(r["avgDurationMs"])}
        for r in rows
    ]


def _health_columns(rows: list[dict], first: Column, drop: tuple[str, ...] = ()) -> list[Column]:
    """``first``, then the health columns but ``drop`` (and Avg ms when no row has a duration)."""
    timed = any(r["avgDurationMs"] is not None for r in rows)  # transcripts record no durations
    return [
        first,
        *[c for c in HEALTH_COLUMNS if c.field not in drop and (timed or c.field != "avgDurationMs")],
    ]


def _classes_grid(classes: list[dict], zone: str) -> Grid:
    """The failed calls per error class, with how many each provider had."""
    cls_cols = [
        Column("class", "Error class"),
        Column("errors", "Errors", "int"),
        Column("shareOfFailed", "Of failed", "pct"),
        Column("providers", "Providers"),
    ]
    rows = [{**c, "providers": ", ".join(f"{p} {n:,}" for p, n in c["byProvider"].items())} for c in classes]
    return _grid("Failed calls by error class", cls_cols, rows, None, zone)


def _services_grid(doc: dict, zone: str) -> Grid:
    """The health of the ``api_calls`` services (no Aborted column; a No status one)."""
    svc_cols = [
        *_health_columns(doc["services"], Column("service", "Service"), ("abortedRequests",)),
        Column("unknownStatusRequests", "No status", "int"),
    ]
    return _grid(
        "Services (interactions.db api_calls)",
        svc_cols,
        _whole_ms(doc["services"]),
        _whole_ms([doc["serviceTotals"]])[0],
        zone,
    )


def render_health(req: Request, console, doc: dict, footer: list[str]) -> None:
    """The providers' health table, the error classes and the services, then the legend and ``footer``."""
    subtitle = " · ".join(x for x in (_range_text(req), req.zone, _filters_text(req)) if x)
    console.print(
        _grid(
            f"{TITLES['health']} — {subtitle}",
            _health_columns(doc["rows"], Column("provider", "Provider")),
            _whole_ms(doc["rows"]),
            _whole_ms([doc["totals"]])[0],
            req.zone,
        ).render(console)
    )
    if doc["classes"]:
        console.print(_classes_grid(doc["classes"], req.zone).render(console))
    if doc["services"] is None:
        console.print(
            "services (api_calls): not shown, they have no agent, provider, model or task",
            markup=False,
            soft_wrap=True,
        )
    elif doc["services"]:
        console.print(_services_grid(doc, req.zone).render(console))
    for line in [HEALTH_LEGEND, *footer]:
        console.print(line, markup=False, soft_wrap=True)


def write_csv(out: TextIO, rows: list[dict]) -> None:
    fields: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in fields and not isinstance(v, (list, dict)):
                fields.append(k)
    w = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})


# -- the command ------------------------------------------------------------------------------------------
def _check_home(req: Request, folder: DataFolder, env: dict[str, str], err: TextIO) -> None:
    """``--home``: an error unless it names the data folder's one home, else a line: it filters nothing."""
    homes = folder.homes(env)
    wanted = Path(req.home).expanduser().resolve()
    if wanted not in homes:
        raise ReportError(f"this data folder has one home ({homes[0]}), not {req.home}")
    print(
        f"{PROG}: this data folder has one home ({homes[0]}); --home selects it and filters nothing",
        file=err,
    )


def _row_limit(req: Request) -> int:
    """``--limit``; without it all rows, but ``SESSION_TABLE_LIMIT`` in the session table."""
    session_table = (req.view, req.fmt) == ("session", "table")
    return req.limit if req.limit is not None else SESSION_TABLE_LIMIT if session_table else 0


def _footer(frames: Frames, refreshed: datetime | None, zone: str, now: datetime, root: Path) -> list[str]:
    """The lines under a table: why the days were counted again; when the data was refreshed (if stale)."""
    footer = []
    if frames.recounted:
        footer.append(frames.recounted)
    if refreshed:
        from zoneinfo import ZoneInfo

        local = refreshed.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
        stale = " — `make run` refreshes it" if now - refreshed > timedelta(hours=24) else ""
        footer.append(f"data refreshed {local} ({_ago(refreshed, now)}) in {root}{stale}")
    return footer


def run_report(
    argv: list[str],
    *,
    env: dict[str, str],
    out: TextIO,
    err: TextIO,
    width: int | None = None,
    now: datetime | None = None,
) -> int:
    """Writes the view ``argv`` asks for (of the tables in ``MC_DATA_DIR``) to ``out``: 0, or ReportError."""
    req = parse_request(argv, env)
    root = Path(env.get("MC_DATA_DIR") or "./data").expanduser().resolve()
    folder = DataFolder(root)
    if req.home is not None:
        _check_home(req, folder, env, err)
    if not folder.has_data():
        raise ReportError(NO_DATA.format(root=root), code=1)
    req.zone = req.zone or folder.zone() or _local_zone()
    frames = load_frames(req, folder)
    refreshed = folder.refreshed()
    now = now or datetime.now(UTC)
    doc: dict = {
        "view": req.view,
        "asOf": _json_value(refreshed) if refreshed else None,
        "timezone": req.zone,
        "filters": req.filters(),
    }
    if req.view == "health":
        doc.update(health_report(req, frames))
    else:
        rows, totals, key_cols, notes, omitted = usage_rows(req, frames, _row_limit(req))
        doc.update(rows=rows, totals=totals)
        if omitted:
            doc["omittedRows"] = omitted
    if req.fmt == "json":
        out.write(json.dumps(doc, indent=2) + "\n")
        return 0
    if req.fmt == "csv":
        write_csv(out, doc["rows"])
        return 0
    footer = _footer(frames, refreshed, req.zone, now, root)
    console = _console(out, width)
    if req.view == "health":
        render_health(req, console, doc, footer)
    else:
        if not rows:
            footer.insert(
                0, "no calls match" + (" (the tables hold none yet)" if frames.usage.height == 0 else "")
            )
        render_usage(req, console, rows, totals, key_cols, notes, footer)
    return 0


def main(
    argv: list[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    width: int | None = None,
    now: datetime | None = None,
) -> int:
    """``python -m mc_pipeline report``: 0, or 2 with a one-line message for a bad argument (1: no data)."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        return run_report(
            list(sys.argv[2:] if argv is None else argv),
            env=dict(os.environ if env is None else env),
            out=out,
            err=err,
            width=width,
            now=now,
        )
    except ReportError as exc:
        print(f"{PROG}: {exc}", file=err)
        return exc.code
    except BrokenPipeError:  # `... | head`: quiet, also when Python flushes stdout at exit
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - a damaged table: one line, not a traceback
        if os.environ.get("MC_REPORT_DEBUG"):
            raise
        print(
            f"{PROG}: could not read the tables: {type(exc).__name__}: {exc} (MC_REPORT_DEBUG=1 shows where)",
            file=err,
        )
        return 1
