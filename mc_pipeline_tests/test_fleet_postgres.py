"""A fleet on a Postgres-backed Dagster instance, run by the real daemon with the multiprocess executor,
against a real PostgreSQL server (``pytest -k postgres``; skipped, saying why, without PostgreSQL's binaries).

One daemon, three homes: the run its sensor starts must write the same tables and dashboard figures as an
in-process run on SQLite over the same homes; runs, materialisations, partitions and checks are visible
through the instance; two refreshes launched at once queue one after the other; a home removed between runs
fails only its own check. No file the pipeline writes holds the database password."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest

from mc_pipeline.runtime.instance import POSTGRES_URL_ENV
from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import upgraded_home
from mc_pipeline_tests.postgres_server import MISSING, PostgresServer, binaries
from mc_pipeline_tests.test_fleet import FIGURES, figures, fleet_settings, recent_home, refresh

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REFRESH_TAG = "mc_pipeline/refresh"
TABLES = ("usage_daily", "sessions_daily", "health_daily", "accounting")


@pytest.fixture(scope="module")
def postgres():
    folder = binaries()
    if folder is None:
        pytest.skip(MISSING)
    server = PostgresServer(folder).start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(what: str, predicate, timeout: float = 240, every: float = 0.5, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    tail = log.read_text()[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def finished(instance: dg.DagsterInstance, after: set[str], *tags: str) -> list[dg.DagsterRun]:
    """The runs created since ``after`` with one of these refresh tags (the hourly schedule may add its own),
    once every one of them has finished."""
    runs = [r for r in instance.get_runs() if r.run_id not in after and r.tags.get(REFRESH_TAG) in tags]
    return runs if runs and all(r.is_finished for r in runs) else []


def launch(env: dict[str, str], tag: str) -> subprocess.CompletedProcess:
    """``dagster job launch``: a run submitted to the instance's queue (the daemon starts it)."""
    return subprocess.run(
        [
            str(BIN / "dagster"),
            "job",
            "launch",
            "-w",
            "workspace.yaml",
            "-j",
            "refresh_all",
            "--tags",
            json.dumps({REFRESH_TAG: tag}),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def check_results(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    out = {}
    for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        data = e.dagster_event.asset_check_evaluation_data
        out[f"{data.asset_key.to_user_string()}:{data.check_name}"] = data.passed
    return out


def test_postgres_fleet_through_the_daemon_equals_an_in_process_sqlite_run(tmp_path, postgres, monkeypatch):
    up = upgraded_home.build(tmp_path / "up")
    homes = {
        "up": up.home,
        "east": recent_home(tmp_path / "east", [0.4, 0.6]).parents[3],
        "west": recent_home(tmp_path / "west", [1.5]).parents[3],
    }
    # the reference: the same homes in process on a SQLite instance
    with dg.instance_for_test() as instance:
        assert refresh(fleet_settings(tmp_path / "sqlite", homes), instance).success

    data = tmp_path / "pg"
    url = postgres.create_database("fleet")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "OPENCLAW_", "DAGSTER_"))}
    env.update(
        {
            POSTGRES_URL_ENV: url,
            "MC_OPENCLAW_HOMES": ",".join(f"{n}={p}" for n, p in homes.items()),
            "MC_DATA_DIR": str(data),
            "DAGSTER_HOME": str(data / "dagster_home"),
            "MC_TIMEZONE": "UTC",
            "OPENCLAW_HOME": str(tmp_path / "none"),
            "MC_MAX_CONCURRENT": "2",
        }
    )
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from mc_pipeline.runtime.instance import create_instance_storage, ensure_dagster_home

    create_instance_storage(ensure_dagster_home(data))  # what `make dev` does first
    yaml = (data / "dagster_home" / "dagster.yaml").read_text()
    assert "postgres_url:\n        env: MC_DAGSTER_POSTGRES_URL" in yaml and postgres.password not in yaml

    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with dg.DagsterInstance.get() as instance:
            from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            # 1. the live sensor's first tick starts a refresh of every home; the run worker uses the
            #    multiprocess executor (a process per step)
            (run,) = wait_for(
                "the sensor's refresh run", lambda: finished(instance, set(), "sensor"), log=log
            )
            assert run.status == dg.DagsterRunStatus.SUCCESS, log.read_text()[-4000:]
            logs = instance.all_logs(run.run_id)
            pids = {
                e.dagster_event.pid for e in logs if e.step_key and e.dagster_event and e.dagster_event.pid
            }
            assert len(pids) >= 3
            sqlite = tmp_path / "sqlite"
            for name in homes:
                for table in TABLES:
                    assert (
                        Tables(data / "homes" / name)
                        .staged(table)
                        .equals(Tables(sqlite / "homes" / name).staged(table))
                    ), (name, table)
                assert figures(data / "homes" / name / "usage-data.json") == figures(
                    sqlite / "homes" / name / "usage-data.json"
                )
            for table in TABLES:
                assert Tables(data).staged(table).equals(Tables(sqlite).staged(table)), table
            assert figures(data / "usage-data.json") == figures(sqlite / "usage-data.json")
            assert set(FIGURES) <= set(json.loads((data / "usage-data.json").read_text()))
            # materialisations and day partitions through the instance
            days = set(up.ledger.daily())  # UTC days, as the partitions (MC_TIMEZONE=UTC)
            partitions = instance.get_materialized_partitions(dg.AssetKey(["up", "llm_calls"]))
            assert days <= partitions
            assert (
                instance.get_latest_materialization_event(dg.AssetKey("usage_data_json")).run_id == run.run_id
            )
            assert all(check_results(instance, run.run_id).values())

            # 2. two refreshes launched at once: queued, one after the other (the refresh tag's limit is 1)
            seen = {r.run_id for r in instance.get_runs()}
            with ThreadPoolExecutor(2) as pool:
                launched = list(pool.map(lambda t: launch(env, t), ["first", "second"]))
            assert all(x.returncode == 0 for x in launched), [x.stderr[-2000:] for x in launched]
            both = wait_for(
                "the two launched runs",
                lambda: (
                    len(finished(instance, seen, "first", "second")) == 2
                    and finished(instance, seen, "first", "second")
                ),
                log=log,
            )
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in both)
            records = sorted(
                instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in both])),
                key=lambda r: r.start_time,
            )
            assert records[1].start_time >= records[0].end_time, "two refresh runs overlapped"
            queued = [
                e for r in both for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
            ]
            assert len(queued) == 2  # both went through the daemon's queue

            # 3. a home removed between runs: the sensor sees it vanish and starts a refresh; only that home's
            #    check fails, the others publish
            before = json.loads((data / "homes" / "east" / "usage-data.json").read_text())["lastUpdated"]
            seen = {r.run_id for r in instance.get_runs()}
            homes["west"].rename(tmp_path / "west-unmounted")
            (after,) = wait_for(
                "the sensor's run after the removal", lambda: finished(instance, seen, "sensor"), log=log
            )
            assert after.status == dg.DagsterRunStatus.SUCCESS
            results = check_results(instance, after.run_id)
            failed = sorted(k for k, ok in results.items() if not ok)
            assert "west/transcript_records:home_reachable" in failed
            assert all(k.startswith("west/") for k in failed), failed
            assert (
                results["up/transcript_records:home_reachable"]
                and results["east/transcript_records:home_reachable"]
            )
            assert (
                json.loads((data / "homes" / "east" / "usage-data.json").read_text())["lastUpdated"] > before
            )
            doc = json.loads((data / "usage-data.json").read_text())
            assert (
                doc["summary"]["totalRequests"]
                == json.loads((sqlite / "usage-data.json").read_text())["summary"]["totalRequests"]
            )  # what west had stays published
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
    # no file the pipeline wrote holds the password (dagster.yaml refers to the variable)
    secret = postgres.password.encode()
    holders = [p for p in data.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert holders == []
