"""Automation: the hourly refresh and a sensor that refreshes soon after a transcript is written.

Both launch the ``refresh_all`` job (defined in ``mc_pipeline/definitions.py``) with the run tag
``mc_pipeline/refresh``; the run queue allows one run with that tag at a time (``tag_concurrency_limits`` in
the ``dagster.yaml`` that ``mc_pipeline.runtime.cli`` writes), and neither asks for a run while one is already
waiting in the queue (that run will read the latest files anyway), so runs cannot pile up.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from mc_pipeline.defs.resources import McSettings
from mc_pipeline.ingest.source_state import file_states, fleet_file_states, last_read_digest, states_digest
from mc_pipeline.tables import storage

REFRESH_JOB = "refresh_all"
#: Run tags (instance.py's dagster.yaml spells REFRESH_TAG literally; test_definitions checks they agree).
REFRESH_TAG = "mc_pipeline/refresh"  # refresh runs (schedule, sensor, CLI): queued one at a time
FULL_REBUILD_TAG = (
    "mc_pipeline/full_rebuild"  # "true" on a run: re-read every source file (as MC_FULL_REBUILD)
)
RERUN_TAG = "mc_pipeline/rerun"  # a rerun of days (`python -m mc_pipeline rerun`)
#: Runs that have not started yet: one of these already covers whatever changed.
WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]


#: A run still waiting after this long is treated as stuck and no longer holds refreshes back.
STUCK_AFTER = timedelta(hours=2)


def refresh_waiting(instance: dg.DagsterInstance, now: datetime | None = None) -> bool:
    """True when a refresh run created in the last two hours is queued but has not started reading yet."""
    since = (now or datetime.now(UTC)) - STUCK_AFTER
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=REFRESH_JOB, statuses=WAITING, created_after=since), limit=1
    )
    return len(runs) > 0


# -- the hourly schedule ---------------------------------------------------------------------------------
hourly_refresh = dg.ScheduleDefinition(
    name="hourly_refresh",
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    job_name=REFRESH_JOB,
    tags={REFRESH_TAG: "schedule"},
    should_execute=lambda context: not refresh_waiting(context.instance),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour on the hour (UTC): read every source and rebuild everything downstream.",
)


# -- the live sensor ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileChanges:
    new: list[str]
    grown: list[str]  # bigger, or same size with a newer mtime (rewritten in place)
    removed: list[str]

    @property
    def any(self) -> bool:
        return bool(self.new or self.grown or self.removed)

    def summary(self) -> str:
        return f"{len(self.new)} new, {len(self.grown)} changed, {len(self.removed)} removed file(s)"


def compare_states(previous: dict[str, list[int]], current: dict[str, list[int]]) -> FileChanges:
    new = sorted(set(current) - set(previous))
    removed = sorted(set(previous) - set(current))
    grown = sorted(rel for rel in set(current) & set(previous) if list(current[rel]) != list(previous[rel]))
    return FileChanges(new=new, grown=grown, removed=removed)


SENSOR_FILES = "sensor_files.json"


#: How often the live sensor looks (stat calls only): a call reaches usage-data.json within this plus a run.
SENSOR_INTERVAL_S = 15


@dg.sensor(
    name="transcript_changes",
    job_name=REFRESH_JOB,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a refresh when a transcript under $OPENCLAW_HOME/agents/*/sessions is new or has "
    "grown, or an OpenClaw database (state/openclaw.sqlite, agents/*/agent/openclaw-agent.sqlite and -wal) "
    "or cold archive changed. The cursor is a digest; the file list it stands for is in "
    "staging/sensor_files.json.",
)
def transcript_changes(context: dg.SensorEvaluationContext, settings: McSettings):
    staging = settings.paths().staging
    homes = settings.fleet()  # a fleet: every home's files, keyed <home>:<path>
    current = fleet_file_states(homes) if homes else file_states(settings.home)
    digest = states_digest(current)
    baseline = context.cursor
    if baseline is None:  # first tick (e.g. after `make dev`): compare with what the last refresh run read
        baseline = last_read_digest({n: settings.paths(n).staging for n, _ in homes} if homes else staging)
    if baseline == digest:
        context.update_cursor(digest)
        return dg.SkipReason(f"nothing changed ({len(current)} file(s) watched)")
    if not current and baseline is None:
        context.update_cursor(digest)
        where = ", ".join(str(p) for _, p in homes) if homes else settings.home
        return dg.SkipReason(f"no transcripts or databases under {where} yet")
    try:
        previous = json.loads((staging / SENSOR_FILES).read_text())
    except (OSError, ValueError):
        previous = {}
    changes = compare_states(previous if isinstance(previous, dict) else {}, current)
    storage.write_json(current, staging / SENSOR_FILES, indent=None)
    context.update_cursor(digest)
    if refresh_waiting(context.instance):
        return dg.SkipReason(f"{changes.summary()}; a queued refresh run will read them")
    return dg.RunRequest(run_key=f"sources-{digest}", tags={REFRESH_TAG: "sensor"})


defs = dg.Definitions(schedules=[hourly_refresh], sensors=[transcript_changes])
