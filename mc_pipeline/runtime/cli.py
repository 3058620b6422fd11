"""`python -m mc_pipeline run`: materialise every asset once, in this process, and print a summary.

Runs are recorded in the Dagster instance under ``$DAGSTER_HOME`` (default ``$MC_DATA_DIR/dagster_home``),
the same one ``make dev`` shows, so a run started here appears in the UI with its checks and metadata.

When nothing the outputs depend on changed since the last successful run
(``mc_pipeline.runtime.fingerprint``), the run is skipped before Dagster is even imported and the last summary
is printed; ``--force`` or ``MC_FULL_REBUILD=1`` always runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mc_pipeline.runtime.config import parse_bool

if TYPE_CHECKING:  # Dagster and Polars are imported only when a run really starts
    from mc_pipeline.defs.resources import McSettings
    from mc_pipeline.runtime.fingerprint import Decision, Inputs
    from mc_pipeline.tables.store import Tables


def ensure_dagster_home(settings: McSettings) -> Path:
    from mc_pipeline.runtime.instance import ensure_dagster_home as ensure

    return ensure(settings.data)


def create_instance_storage(home: Path) -> None:
    from mc_pipeline.runtime.instance import create_instance_storage as create

    create(home)


def summary_lines(settings: McSettings) -> list[str]:
    """What a person wants to know after a run, read back from the small tables on disk (never all calls)."""
    from mc_pipeline.tables.store import Tables

    io = Tables(settings.data)
    lines = _usage_lines(io, settings)
    lines += _file_lines(io)
    lines += _problem_lines(io)
    lines += _alert_lines(io)
    lines += fleet_lines(settings)
    lines.append(f"outputs:      {io.parquet}")
    usage = io.root / "usage-data.json"
    if usage.exists():
        lines.append(
            f"dashboard:    {usage}"
            + (" (the fleet; each home's in homes/<name>/)" if settings.fleet() else "")
        )
    return lines


def _usage_lines(io: Tables, settings: McSettings) -> list[str]:
    """The summary's calls, cost, days and sources (or that no model calls were found)."""
    import polars as pl

    from mc_pipeline.tables.schemas import SOURCE_LABELS, SOURCES

    usage = io.staged("usage_daily")
    if usage.height == 0:
        where = ", ".join(str(p) for _, p in settings.fleet()) or settings.home
        return [f"No model calls found under {where} (is OPENCLAW_HOME / MC_OPENCLAW_HOMES right?)."]
    t = usage.select(pl.col("calls", "failed_calls", "unpriced_calls", "cost_usd").sum()).row(0, named=True)
    days = usage.get_column("day")
    counted = dict(io.staged("accounting").group_by("source").agg(pl.col("calls").sum()).iter_rows())
    by_source = [
        (SOURCE_LABELS.get(s, s), counted[s])
        for s in [*SOURCES, *sorted(set(counted) - set(SOURCES))]
        if counted.get(s)
    ]
    return [
        f"calls:        {t['calls']:,} ({t['failed_calls']:,} failed, {t['unpriced_calls']:,} unpriced)",
        f"cost:         ${t['cost_usd'] or 0.0:,.2f} ({settings.cost_mode} mode)",
        f"days:         {days.n_unique()} ({days.min()} .. {days.max()}, {settings.timezone})",
        "sources:      " + "; ".join(f"{s} {n:,}" for s, n in by_source),
    ]


def _file_lines(io: Tables) -> list[str]:
    """The summary's quarantined lines and source files read (and whether they reconcile)."""
    import polars as pl

    lines = []
    qfile = io.table_dir("quarantine") / "quarantine.parquet"
    if qfile.exists():
        q = io.read("quarantine")
        lines.append(f"quarantined:  {q.height:,} lines (see {qfile})")
    files = io.table_dir("source_files") / "source_files.parquet"
    if files.exists():
        f = io.read("source_files")
        unbalanced = f.filter(~pl.col("balanced")).height
        lines.append(
            f"files read:   {f.height:,} ({int(f.get_column('lines_read').sum() or 0):,} lines"
            + (f", {unbalanced} NOT reconciled" if unbalanced else ", all reconciled")
            + ")"
        )
    return lines


def _problem_lines(io: Tables) -> list[str]:
    """The summary's problems of the sources read and warnings of sources that went silent or changed."""
    lines = []
    staging = io.root / "staging"
    for problems in sorted(staging.glob("*/problems.json")):
        for p in json.loads(problems.read_text()):
            lines.append(f"problem:      [{problems.parent.name}] {p}")
    try:  # a source that went silent or changed shape (mc_pipeline.ingest.source_health)
        health = json.loads((staging / "source_health.json").read_text())
    except (OSError, ValueError):
        health = {}
    for w in health.get("warnings", []) if isinstance(health, dict) else []:
        lines.append(f"warning:      {w}")
    return lines


def _alert_lines(io: Tables) -> list[str]:
    """The summary's current budget alerts."""
    lines = []
    alerts_file = io.table_dir("budget_alerts") / "budget_alerts.parquet"
    if alerts_file.exists():
        current = io.read("budget_alerts")
        for row in current.iter_rows(named=True):
            lines.append(f"alert:        [{row['severity']}] {row['message']}")
        if current.height:
            lines.append(f"              (all raised alerts: {io.root / 'alerts.jsonl'})")
    return lines


def fleet_lines(settings: McSettings) -> list[str]:
    """A fleet's homes: each one's calls and cost, or why it could not be read (what it had stays
    published)."""
    import polars as pl

    from mc_pipeline.ingest.staging import read_home_problem
    from mc_pipeline.tables.store import Tables

    lines = []
    for name, _path in settings.fleet():
        config = settings.paths(name)
        usage = Tables(config.data).staged("usage_daily")
        calls, cost = (
            usage.select(pl.col("calls").sum(), pl.col("cost_usd").sum()).row(0) if usage.height else (0, 0.0)
        )
        problem = read_home_problem(config.staging)
        text = f"{calls or 0:,} calls, ${cost or 0.0:,.2f}"
        if problem:
            text = f"NOT READ this run: {problem} (still published from earlier runs: {text})"
        lines.append(f"home {name + ':':<8} {text}")
        for problems in sorted(config.staging.glob("*/problems.json")):
            for p in json.loads(problems.read_text()):
                lines.append(f"problem:      [{name}/{problems.parent.name}] {p}")
    return lines


def _print_summary(lines: list[str]) -> None:
    print("\n".join(["", "mc_pipeline summary", "-------------------", *lines]))


def run(argv: list[str] | None = None, clock: Callable[[], datetime] | None = None) -> int:
    """``clock`` (UTC now) is for tests: the no-op check and its fingerprint take "today" from it."""
    args = _run_args(argv)

    from mc_pipeline.runtime import fingerprint

    started = (clock or (lambda: datetime.now(UTC)))()
    inputs, why, skipped = _decide_skip(args.force, started)
    if skipped is not None:
        print(f"mc_pipeline: nothing changed since {skipped.since}; outputs are current", flush=True)
        _print_summary(skipped.summary)
        return 0
    checked = _checked_settings()
    if checked is None:
        return 2
    settings, homes = checked
    settings.data.mkdir(parents=True, exist_ok=True)
    if inputs is not None:
        fingerprint.forget(inputs.data)
    ensure_dagster_home(settings)
    success, events = _launch(settings, homes, why, quiet=args.quiet)
    lines = summary_lines(settings)
    _print_summary(lines)
    failed_checks = _failed_checks(events)
    if failed_checks:
        print("checks failed: " + ", ".join(sorted(set(failed_checks))))
    if not success:
        print("mc_pipeline: the run failed; see the log above.", file=sys.stderr)
        return 1
    if inputs is not None and not failed_checks:
        _record_fingerprint(inputs, started, lines, settings)
    return 0


def _run_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the arguments of ``run``."""
    parser = argparse.ArgumentParser(prog="python -m mc_pipeline run", description=__doc__)
    parser.add_argument("--quiet", action="store_true", help="only the summary")
    parser.add_argument("--force", action="store_true", help="run even when nothing changed since the last")
    return parser.parse_args(argv)


def _decide_skip(force_arg: bool, started: datetime) -> tuple[Inputs | None, str, Decision | None]:
    """Decide from the fingerprint whether to skip: (inputs taken or None, why the run goes ahead, the
    decision when it is skipped)."""
    from mc_pipeline.runtime import fingerprint

    force = force_arg or parse_bool(os.environ.get("MC_FULL_REBUILD")) is True
    fleet = bool(os.environ.get("MC_OPENCLAW_HOMES") or os.environ.get("MC_OPENCLAW_HOMES_FILE"))
    try:  # a fleet is not fingerprinted: each home's readers find what changed (a no-op run reads nothing)
        inputs = None if fleet else fingerprint.current_inputs(os.environ, started)
    except Exception:  # noqa: BLE001 - a bad setting: the checks below name it; never skip then
        inputs = None
    why = (
        "forced (--force or MC_FULL_REBUILD)"
        if force
        else "a fleet of homes"
        if fleet
        else "settings could not be fingerprinted"
    )
    if inputs is not None and not force:
        decision = fingerprint.decide(inputs, started)
        if decision.skip:
            return inputs, "", decision
        why = decision.reason
    return inputs, why, None


def _checked_settings() -> tuple[McSettings, list] | None:
    """Read and check the settings before any work starts: (settings, the fleet's homes), or None after
    naming a bad setting."""
    try:
        from mc_pipeline.defs.resources import McSettings

        settings = McSettings.from_env()
        homes = settings.fleet()  # a bad MC_OPENCLAW_HOMES is named before any work starts
        from mc_pipeline.defs.alert_assets import AlertSettings

        AlertSettings.from_env().rules()  # alert limits are checked before any work starts
    except Exception as exc:  # noqa: BLE001 - a configuration error is reported plainly
        print(f"mc_pipeline: bad setting: {exc}", file=sys.stderr)
        return None
    return settings, homes


def _launch(settings: McSettings, homes: list, why: str, *, quiet: bool) -> tuple[bool, list]:
    """Launch the refresh run in the Dagster instance: (whether it succeeded, its events)."""
    import logging

    import dagster as dg

    from mc_pipeline.definitions import build_defs
    from mc_pipeline.defs.automation import REFRESH_TAG

    logging.basicConfig(format="%(message)s")  # Dagster's console logger already formats its lines

    if homes:
        names = ", ".join(f"{n} ({p})" for n, p in homes)
        print(f"mc_pipeline: reading {len(homes)} homes: {names} -> {settings.data} ({why})", flush=True)
    else:
        print(f"mc_pipeline: reading {settings.home} -> {settings.data} ({why})", flush=True)
        if not settings.home.exists():
            print(f"mc_pipeline: no OpenClaw data at {settings.home}; writing empty outputs.", flush=True)
    create_instance_storage(Path(os.environ["DAGSTER_HOME"]))
    level = "WARNING" if quiet else "INFO"
    run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    tags = {REFRESH_TAG: "cli"}
    instance = dg.DagsterInstance.get()  # storages made by create_instance_storage
    if homes:  # the multiprocess executor: each step a process, homes in parallel (definitions.py)
        from mc_pipeline.definitions import refresh_job

        with dg.execute_job(
            dg.reconstructable(refresh_job),
            instance=instance,
            run_config=run_config,
            tags=tags,
            raise_on_error=False,
        ) as result:
            return result.success, result.all_events
    result = (
        build_defs(settings)
        .resolve_job_def("refresh_all")
        .execute_in_process(instance=instance, run_config=run_config, tags=tags, raise_on_error=False)
    )
    return result.success, result.all_events


def _failed_checks(events: list) -> list[str]:
    """The names of the asset checks that failed in a run's events."""
    return [
        e.asset_check_evaluation_data.check_name
        for e in events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]


def _record_fingerprint(inputs: Inputs, started: datetime, lines: list[str], settings: McSettings) -> None:
    """Record the fingerprint of a run that succeeded with every check passing (the next may skip)."""
    from mc_pipeline.defs.alert_assets import AlertSettings
    from mc_pipeline.defs.mart_assets import usage_json_targets
    from mc_pipeline.runtime import fingerprint

    targets = usage_json_targets(settings.usage_json_paths, settings.data)
    fingerprint.record_success(
        inputs,
        started,
        lines,
        extra_outputs=[str(p) for pair in targets[1:] for p in pair],
        failure_rule=AlertSettings.from_env().rules().failure_rate_threshold is not None,
    )


def _day(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text if "-" in text else f"{text[:4]}-{text[4:6]}-{text[6:]}")
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD or YYYYMMDD): {text!r}") from None


def rerun(argv: list[str] | None = None) -> int:
    """``python -m mc_pipeline rerun --day D`` or ``--from D --to D``: rebuild those days of ``llm_calls`` and
    ``usage_daily`` from the raw sources (the files and database sessions that hold them are read again), in
    one Dagster run (as a single-run backfill from the UI does), then the marts, alerts and dashboard
    files."""
    parser = argparse.ArgumentParser(prog="python -m mc_pipeline rerun", description=rerun.__doc__)
    parser.add_argument("--day", type=_day, help="one day (in MC_TIMEZONE)")
    parser.add_argument("--from", dest="first", type=_day, help="first day of a range")
    parser.add_argument("--to", dest="last", type=_day, help="last day of a range (inclusive)")
    parser.add_argument("--quiet", action="store_true", help="only the summary")
    args = parser.parse_args(argv)
    first, last = (args.day, args.day) if args.day else (args.first, args.last or args.first)
    if first is None or (args.day and (args.first or args.last)) or last < first:
        parser.error("give --day D, or --from D [--to D] with the first day not after the last")
    try:
        from mc_pipeline.defs.resources import McSettings

        settings = McSettings.from_env()
    except Exception as exc:  # noqa: BLE001 - a configuration error is reported plainly
        print(f"mc_pipeline: bad setting: {exc}", file=sys.stderr)
        return 2
    settings.data.mkdir(parents=True, exist_ok=True)
    home = ensure_dagster_home(settings)
    create_instance_storage(home)
    from mc_pipeline.runtime import fingerprint

    fingerprint.forget(settings.data)  # outputs change: the next `run` must not skip on the old fingerprint
    import logging

    import dagster as dg

    from mc_pipeline.definitions import build_defs
    from mc_pipeline.defs.automation import RERUN_TAG
    from mc_pipeline.defs.source_assets import READERS

    logging.basicConfig(format="%(message)s")
    defs = build_defs(settings)
    graph = defs.resolve_asset_graph()
    keep = [
        k for k in graph.get_all_asset_keys() if k.path[-1] not in READERS and graph.get(k).is_materializable
    ]
    print(f"mc_pipeline: rebuilding {first} .. {last} ({settings.timezone}) from {settings.home}", flush=True)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.get(),
        asset_selection=keep,
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
            RERUN_TAG: "cli",
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING" if args.quiet else "INFO"}}}},
        raise_on_error=False,
    )
    _print_summary(summary_lines(settings))
    if not result.success:
        print("mc_pipeline: the rerun failed; see the log above.", file=sys.stderr)
        return 1
    return 0


def serve(argv: list[str] | None = None) -> int:
    from mc_pipeline.reporting.api import serve as serve_api

    return serve_api(argv)


def report(argv: list[str] | None = None) -> int:
    """``python -m mc_pipeline report VIEW``: tables from the Parquet files
    (mc_pipeline.reporting.usage_report; no Dagster)."""
    from mc_pipeline.reporting.usage_report import main as report_main

    return report_main(argv)


COMMANDS = {"run": run, "rerun": rerun, "serve": serve, "report": report}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(
            "usage: python -m mc_pipeline run [--quiet] [--force]\n"
            "       python -m mc_pipeline rerun (--day D | --from D [--to D]) [--quiet]\n"
            "       python -m mc_pipeline serve\n"
            "       python -m mc_pipeline report VIEW [--since D] [--until D] [--agent A] [--model M]"
            " [--by K] [--breakdown] [--json | --csv]\n"
            "         VIEW: daily, weekly, monthly, session, model, provider, task, agent, cron, health"
            " (report --help: every option)",
            file=sys.stderr,
        )
        return 2
    return COMMANDS[sys.argv[1]](sys.argv[2:])
