"""Schedule, sensors and the alert path in Dagster: build_sensor_context / instance_for_test, real-format
homes written with today's timestamps, a webhook receiver on 127.0.0.1, and `python -m mc_pipeline run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import pytest
from dagster._core.utils import make_new_run_id

from mc_pipeline.alerting import delivery as ad
from mc_pipeline.definitions import build_defs
from mc_pipeline.defs.alert_assets import AlertSettings, alert_delivery, run_failure_alerts
from mc_pipeline.defs.automation import (
    REFRESH_JOB,
    REFRESH_TAG,
    STUCK_AFTER,
    compare_states,
    hourly_refresh,
    refresh_waiting,
    transcript_changes,
)
from mc_pipeline.defs.resources import McSettings
from mc_pipeline_tests import homes as h
from mc_pipeline_tests.test_alert_delivery import Receiver

ROOT = Path(__file__).resolve().parents[1]


def zone_far_from_midnight() -> str:
    """A fixed-offset zone where it is about noon now, so 'today' cannot change during a test."""
    offset = 12 - datetime.now(UTC).hour  # -11 .. +12 hours
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")  # Etc/GMT-5 is UTC+5


def write_today(
    home: Path, costs: list[float], session: str = "0b7c6a52-1111-4a3e-9c1e-2f0e5d8a9b01"
) -> Path:
    """One real-format session whose calls happened minutes ago, each with its recorded cost."""
    start = datetime.now(UTC) - timedelta(minutes=len(costs) + 2)
    lines = [h.session_line(session, start), h.user(start)]
    for i, cost in enumerate(costs):
        lines.append(h.assistant(start + timedelta(minutes=i, seconds=5), u=h.usage(1000, 200, cost=cost)))
    return h.write_session(home, lines, session_id=session)


def settings_for(tmp_path: Path, tz: str = "UTC") -> McSettings:
    return McSettings(
        openclaw_home=str(tmp_path / "home"),
        data_dir=str(tmp_path / "data"),
        timezone=tz,
        cost_mode="display",
    )


# -- the transcript sensor -------------------------------------------------------------------------------
def test_compare_states():
    before = {"a": [10, 1], "b": [5, 1], "c": [7, 1]}
    after = {"a": [12, 2], "b": [5, 1], "c": [7, 3], "d": [1, 1]}
    changes = compare_states(before, after)
    assert changes.new == ["d"] and changes.grown == ["a", "c"] and changes.removed == []
    assert compare_states(after, {"a": [12, 2]}).removed == ["b", "c", "d"]
    assert not compare_states(after, dict(after)).any


def _tick(settings: McSettings, instance, cursor):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings})
    result = transcript_changes(ctx)
    return result, ctx.cursor


def test_transcript_sensor_requests_a_refresh_for_new_and_grown_files(tmp_path):
    settings = settings_for(tmp_path)
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        result, cursor = _tick(settings, instance, None)
        assert isinstance(result, dg.SkipReason)  # no home yet

        path = write_today(home, [0.1])
        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.RunRequest) and result.tags[REFRESH_TAG] == "sensor"
        first_key = result.run_key

        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.SkipReason) and "nothing changed" in result.skip_message
        assert len(cursor) < 40  # a digest, not the file list (that is in staging/sensor_files.json)

        with path.open("a") as f:  # OpenClaw appends a line
            f.write(json.dumps(h.assistant(datetime.now(UTC), u=h.usage(cost=0.2))) + "\n")
        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.RunRequest) and result.run_key != first_key

        # a .bak copy and a lock file are not transcripts: nothing to refresh
        (path.parent / (path.name + ".bak.2026-03-01T12-00-00.000Z")).write_text(path.read_text())
        (path.parent / (path.name + ".lock")).write_text("")
        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.SkipReason)

        # /reset renames the live file to an archive: a change
        path.rename(path.parent / (path.name + ".reset.2026-03-01T12-00-00.000Z"))
        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.RunRequest)
        listed = json.loads((tmp_path / "data" / "staging" / "sensor_files.json").read_text())
        assert set(listed) == {f"agents/main/sessions/{path.name}.reset.2026-03-01T12-00-00.000Z"}


def test_transcript_sensor_watches_the_agent_and_state_databases(tmp_path):
    """OpenClaw 2026.8+ writes new calls only into SQLite: a call in the agent database (WAL), a database
    only the state registry lists, a new cold archive each start a refresh; ticks with nothing new do not."""
    from mc_pipeline_tests.openclaw_db import AgentDb, StateDb

    settings = settings_for(tmp_path)
    home = tmp_path / "home"
    db = AgentDb(home, "main")
    sid = "5f0c2a52-1111-4a3e-9c1e-2f0e5d8a9b02"
    now = datetime.now(UTC)
    db.add_session(sid, [h.session_line(sid, now), h.assistant(now, u=h.usage(cost=0.1))])
    with dg.instance_for_test() as instance:
        result, cursor = _tick(settings, instance, None)
        assert isinstance(result, dg.RunRequest)
        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.SkipReason)

        db.append(
            sid, [h.assistant(now, u=h.usage(cost=0.2))]
        )  # goes to the -wal: the main file may not change
        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.RunRequest)
        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.SkipReason)

        db.cold(sid, storage="file")
        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.RunRequest)
        files = tmp_path / "data" / "staging" / "sensor_files.json"
        assert any("/sessions/cold/" in k for k in json.loads(files.read_text()))

        other = AgentDb(home, "ops", path=home / "elsewhere" / "ops.sqlite")
        state = StateDb(home)
        state.register("ops", "elsewhere/ops.sqlite")
        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.RunRequest) and "elsewhere/ops.sqlite" in json.loads(files.read_text())
        other.add_session("6f0c2a52-1111-4a3e-9c1e-2f0e5d8a9b03", [h.assistant(now, u=h.usage(cost=0.3))])
        result, cursor = _tick(settings, instance, cursor)
        assert isinstance(result, dg.RunRequest)
        for x in (db, other, state):
            x.close()


def test_the_first_tick_after_a_run_starts_nothing_when_nothing_changed(tmp_path):
    """`make dev` after `make run`: the sensor has no cursor yet, but the last refresh run read exactly these
    files, so its first tick requests nothing; a change after that run still starts one."""
    settings = settings_for(tmp_path)
    path = write_today(tmp_path / "home", [0.1])
    with dg.instance_for_test() as instance:
        build_defs(settings).resolve_job_def(REFRESH_JOB).execute_in_process(instance=instance)
        result, cursor = _tick(settings, instance, None)
        assert isinstance(result, dg.SkipReason) and "nothing changed" in result.skip_message
        with path.open("a") as f:
            f.write(json.dumps(h.assistant(datetime.now(UTC), u=h.usage(cost=0.2))) + "\n")
        assert isinstance(_tick(settings, instance, None)[0], dg.RunRequest)


def test_no_run_requested_while_a_refresh_waits_in_the_queue(tmp_path):
    settings = settings_for(tmp_path)
    write_today(tmp_path / "home", [0.1])
    with dg.instance_for_test() as instance:
        run = dg.DagsterRun(
            job_name=REFRESH_JOB, run_id=make_new_run_id(), status=dg.DagsterRunStatus.NOT_STARTED
        )
        instance.add_run(run)
        result, cursor = _tick(settings, instance, None)
        assert isinstance(result, dg.SkipReason) and "queued refresh" in result.skip_message
        assert (
            cursor and (tmp_path / "data" / "staging" / "sensor_files.json").exists()
        )  # remembered: the waiting run reads them
        schedule = hourly_refresh.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert schedule.run_requests == []
        # a run that has waited for hours is stuck: it no longer holds refreshes back
        assert refresh_waiting(instance) and not refresh_waiting(
            instance, now=datetime.now(UTC) + STUCK_AFTER
        )
        instance.delete_run(run.run_id)
        schedule = hourly_refresh.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert len(schedule.run_requests) == 1 and schedule.run_requests[0].tags[REFRESH_TAG] == "schedule"


def test_schedule_and_sensors_run_by_default(tmp_path):
    defs = build_defs(settings_for(tmp_path))
    schedule = defs.resolve_schedule_def("hourly_refresh")
    assert schedule.cron_schedule == "0 * * * *" and schedule.execution_timezone == "UTC"
    assert schedule.job_name == REFRESH_JOB
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    for name in ("transcript_changes", "alert_delivery", "run_failure_alerts"):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, name
        assert 15 <= sensor.minimum_interval_seconds <= 60, (
            name
        )  # live (15 s: a call shows within ~20 s), never busy
    assert defs.resolve_sensor_def("transcript_changes").job_name == REFRESH_JOB
    selected = {k.to_user_string() for k in defs.resolve_job_def(REFRESH_JOB).asset_layer.selected_asset_keys}
    assert "budget_alerts" in selected


# -- alerts through Dagster ------------------------------------------------------------------------------
def _materialized_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    mats = list(result.asset_materializations_for_node(asset))
    assert len(mats) == 1
    return {k: v.value for k, v in mats[0].metadata.items()}


def test_daily_limit_raised_once_and_a_recovered_webhook_gets_it_once(tmp_path, monkeypatch):
    tz = zone_far_from_midnight()
    costs = [0.75, 1.5, 0.5]
    write_today(tmp_path / "home", costs)
    today_spend = sum(costs)
    settings = settings_for(tmp_path, tz)
    data = settings.data
    with Receiver() as hook:
        hook.fail = 10**6  # the webhook is down at first
        monkeypatch.setenv("MC_DAILY_LIMIT_USD", str(today_spend - 0.01))
        monkeypatch.setenv("MC_ALERT_WEBHOOKS", hook.url)
        monkeypatch.setenv("MC_FAILURE_RATE_THRESHOLD", "off")
        monkeypatch.setenv("MC_SPIKE_FACTOR", "off")
        monkeypatch.setenv("MC_ALERT_WEBHOOK_TIMEOUT_S", "2")
        defs = build_defs(settings)
        job = defs.resolve_job_def(REFRESH_JOB)
        with dg.instance_for_test() as instance:
            first = job.execute_in_process(instance=instance)
            meta = _materialized_metadata(first, "budget_alerts")
            assert meta["new_alerts"] == 1 and meta["pending_deliveries"] == 1
            today = datetime.now(ZoneInfo(tz)).date().isoformat()
            lines = [json.loads(x) for x in (data / ad.ALERTS_FILE).read_text().splitlines()]
            assert [(a["rule"], a["period"], a["severity"]) for a in lines] == [
                ("daily_limit", today, "critical")
            ]
            assert lines[0]["value"] == pytest.approx(today_spend)
            assert hook.received == []

            second = job.execute_in_process(instance=instance)  # same data: nothing new
            assert _materialized_metadata(second, "budget_alerts")["new_alerts"] == 0
            assert len((data / ad.ALERTS_FILE).read_text().splitlines()) == 1
            table = pl.read_parquet(data / "parquet" / "budget_alerts" / "budget_alerts.parquet")
            assert table.get_column("alert_id").to_list() == [f"daily_limit:{today}"]  # still holds

            hook.fail = 0  # recovers: the delivery sensor sends it on its next tick
            resources = {**settings.resources(), "alert_settings": AlertSettings.from_env()}
            for _ in range(3):  # later ticks find nothing left to send
                tick = alert_delivery(dg.build_sensor_context(instance=instance, resources=resources))
                assert isinstance(tick, dg.SkipReason)
    assert [b["alert"]["alert_id"] for b in hook.received] == [f"daily_limit:{today}"]
    assert "exceeds the limit" in hook.received[0]["text"]


def test_run_failure_sensor_reports_a_failed_run(tmp_path):
    @dg.op
    def explode():
        raise RuntimeError("disk full while writing parquet")

    @dg.job(name="refresh_all")
    def broken():
        explode()

    settings = settings_for(tmp_path)
    with Receiver() as hook, dg.instance_for_test() as instance:
        result = broken.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        resources = {**settings.resources(), "alert_settings": AlertSettings(webhooks=hook.url)}
        for _ in range(2):  # the same failed run reported twice is one alert
            ctx = dg.build_run_status_sensor_context(
                sensor_name="run_failure_alerts",
                dagster_event=result.get_run_failure_event(),
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                resources=resources,
            ).for_run_failure()
            run_failure_alerts(ctx)
    lines = ad.read_alert_log(settings.data)
    assert [(a["rule"], a["scope"], a["period"]) for a in lines] == [
        ("run_failure", "refresh_all", result.run_id)
    ]
    assert [b["alert"]["rule"] for b in hook.received] == ["run_failure"]
    assert hook.received[0]["text"].startswith(":rotating_light: [critical]")


def test_cli_run_writes_the_alert(tmp_path):
    tz = zone_far_from_midnight()
    costs = [2.0, 1.25]
    write_today(tmp_path / "home", costs)
    env = {
        **os.environ,
        "OPENCLAW_HOME": str(tmp_path / "home"),
        "MC_DATA_DIR": str(tmp_path / "data"),
        "MC_TIMEZONE": tz,
        "MC_COST_MODE": "display",
        "MC_DAILY_LIMIT_USD": str(sum(costs) - 0.5),
        "DAGSTER_HOME": str(tmp_path / "dh"),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.pop("MC_ALERT_WEBHOOKS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mc_pipeline", "run", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[critical] Daily spend" in proc.stdout + proc.stderr  # delivered to the log
    today = datetime.now(ZoneInfo(tz)).date().isoformat()
    lines = [json.loads(x) for x in (tmp_path / "data" / ad.ALERTS_FILE).read_text().splitlines()]
    assert [a["alert_id"] for a in lines] == [f"daily_limit:{today}"]
    assert lines[0]["value"] == pytest.approx(sum(costs))
    alerts = json.loads((tmp_path / "data" / "usage-data.json").read_text())["alerts"]
    assert [(a["rule"], a["period"], a["severity"]) for a in alerts] == [("daily_limit", today, "critical")]
    assert alerts[0]["value"] == pytest.approx(sum(costs))
