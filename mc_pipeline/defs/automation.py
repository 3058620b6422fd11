"""Automation: the hourly refresh and a sensor that refreshes soon after a transcript is written.

Both launch the ``refresh_all`` job (defined in ``mc_pipeline/definitions.py``) with the run tag
``mc_pipeline/refresh``; the run queue allows one run with that tag at a time (``tag_concurrency_limits``
in the ``dagster.yaml`` that ``mc_pipeline.cli`` writes), and neither asks for a run while one is already
waiting in the queue (that run will read the latest files anyway), so runs cannot pile up.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import dagster as dg

from mc_pipeline.defs.resources import McSettings
from mc_pipeline.readers.home import discover_transcripts

REFRESH_JOB = "refresh_all"
REFRESH_TAG = "mc_pipeline/refresh"
#: Runs that have not started yet: one of these already covers whatever changed.
WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]


#: A run still waiting after this long is treated as stuck and no longer holds refreshes back.
STUCK_AFTER = timedelta(hours=2)


def refresh_waiting(instance: dg.DagsterInstance, now: datetime | None = None) -> bool:
    """True when a refresh run created in the last two hours is queued but has not started reading yet."""
    since = (now or datetime.now(timezone.utc)) - STUCK_AFTER
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


# -- the transcript sensor -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileChanges:
    new: list[str]
    grown: list[str]  # bigger, or same size with a newer mtime (rewritten in place)
    removed: list[str]

    @property
    def any(self) -> bool:
        return bool(self.new or self.grown or self.removed)

    def summary(self) -> str:
        return f"{len(self.new)} new, {len(self.grown)} changed, {len(self.removed)} removed transcript file(s)"


def file_states(home) -> dict[str, list[int]]:
    """Relative path -> [size, mtime_ns] of every counted transcript, and of OpenClaw's databases (state and
    agent databases with their ``-wal``, cold archive files; ``readers.home.watched_files``): a directory
    listing and stats, plus the state database's short registry query, never a transcript read."""
    from mc_pipeline.readers.home import watched_files
    from mc_pipeline.readers.state_db import read_state_db

    states = {f.rel: [f.size, f.mtime_ns] for f in discover_transcripts(home).files}
    if home.is_dir():
        states.update({rel: st[:2] for rel, st in watched_files(home, read_state_db(home).agent_dbs).items()})
    return states


def compare_states(previous: dict[str, list[int]], current: dict[str, list[int]]) -> FileChanges:
    new = sorted(set(current) - set(previous))
    removed = sorted(set(previous) - set(current))
    grown = sorted(rel for rel in set(current) & set(previous) if list(current[rel]) != list(previous[rel]))
    return FileChanges(new=new, grown=grown, removed=removed)


def _digest(states: dict[str, list[int]]) -> str:
    return hashlib.sha256(json.dumps(states, sort_keys=True).encode()).hexdigest()[:16]


@dg.sensor(
    name="transcript_changes",
    job_name=REFRESH_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a refresh when a transcript under $OPENCLAW_HOME/agents/*/sessions is new or has grown, "
    "or an OpenClaw database (state/openclaw.sqlite, agents/*/agent/openclaw-agent.sqlite and -wal) or cold "
    "archive changed.",
)
def transcript_changes(context: dg.SensorEvaluationContext, settings: McSettings):
    current = file_states(settings.home)
    try:
        previous = json.loads(context.cursor) if context.cursor else None
    except ValueError:
        previous = None
    cursor = json.dumps(current, sort_keys=True, separators=(",", ":"))
    changes = compare_states(previous or {}, current)
    if previous is not None and not changes.any:
        return dg.SkipReason(f"no transcript changed ({len(current)} file(s) watched)")
    if not current and previous is None:
        context.update_cursor(cursor)
        return dg.SkipReason(f"no transcripts under {settings.home} yet")
    context.update_cursor(cursor)
    if refresh_waiting(context.instance):
        return dg.SkipReason(f"{changes.summary()}; a queued refresh run will read them")
    return dg.RunRequest(
        run_key=f"transcripts-{_digest(current)}",
        tags={REFRESH_TAG: "sensor"},
    )


defs = dg.Definitions(schedules=[hourly_refresh], sensors=[transcript_changes])
