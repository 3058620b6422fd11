"""The UI as users use it: the real ``dagster-webserver`` (and ``dagster-daemon``, as ``make dev`` runs them).

Starts both on 127.0.0.1 with ``workspace.yaml`` and the instance config mc_pipeline writes (runs tagged
``mc_pipeline/refresh`` are queued one at a time, which is why the daemon must run), reads the asset
graph, schedules and sensors over GraphQL, launches ``refresh_all`` twice at once with the launchRun
mutation, waits for both to succeed (each in its own process), checks that no two runs tagged
``mc_pipeline/refresh`` (the sensor's own run included) overlapped, and checks what the runs wrote.
Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.instance import dagster_yaml
from mc_pipeline.tables import Tables
from mc_pipeline_tests import homes as h

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "mc_pipeline"
REFRESH_TAG = "mc_pipeline/refresh"
START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 150

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=20) as resp:
        doc = json.loads(resp.read())
    assert not doc.get("errors"), doc["errors"]
    return doc["data"]


def small_home(home: Path, now: datetime | None = None) -> int:
    """Two agents, four sessions in the real format, calls on three UTC days (the day of ``t``, the two
    before it: see :func:`planted_days`); returns the number of model calls planted."""
    t = (now or datetime.now(timezone.utc)).replace(microsecond=0) - timedelta(hours=3)
    main = [h.session_line("web-1", t), h.user(t)]
    main += [h.assistant(t + timedelta(minutes=i), u=h.usage(100 * i, 20, 500, 10, cost=0.01)) for i in range(1, 5)]
    main += [h.mirror(t)]
    h.write_session(home, main, session_id="web-1")
    archived = [h.session_line("web-0", t - timedelta(days=2)),
                h.assistant(t - timedelta(days=2), stop="error", error="529 overloaded", u=h.usage(0, 0))]
    h.write_session(home, archived, session_id="web-0", suffix=".reset.2026-03-01T12-00-00.000Z")
    worker = [h.session_line("web-2", t),
              h.assistant(t, provider="openai", model="gpt-5.1-codex", api="openai-responses")]
    h.write_session(home, worker, agent="worker", session_id="web-2")
    h.write_sessions_index(home, "main", {"agent:main:main": "web-1"})
    # one file holding two days (noon UTC, far from midnight): a rerun of one of them reads it again whole
    d1, d2 = (datetime.combine(t.date() - timedelta(days=n), datetime.min.time(), timezone.utc) + timedelta(hours=12)
              for n in (1, 2))
    spanning = [h.session_line("web-3", d2), h.user(d2),
                h.assistant(d2 + timedelta(minutes=1), u=h.usage(300, 40, 0, 0, cost=0.03)),
                h.user(d1),
                h.assistant(d1 + timedelta(minutes=1), u=h.usage(700, 70, 1000, 0, cost=0.07)),
                h.assistant(d1 + timedelta(minutes=9), u=h.usage(900, 90, 2000, 0, cost=0.11))]
    h.write_session(home, spanning, session_id="web-3")
    return 4 + 1 + 1 + 3


def planted_days(now: datetime) -> list[str]:
    """The UTC days :func:`small_home` (called at ``now``) planted calls on."""
    d0 = (now - timedelta(hours=3)).date()
    return sorted((d0 - timedelta(days=n)).isoformat() for n in range(3))


def wait_for(what: str, probe, timeout: float, procs: list[subprocess.Popen], every: float = 0.5):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: {p.args[0]} exited with {p.returncode}")
        try:
            value = probe()
            if value:
                return value
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last_error = exc
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last error: {last_error})")


def init_instance(dagster_home: Path) -> None:
    """Create the instance's SQLite storages once, before two processes open them at the same moment
    (a fresh instance opened by the webserver, its code server and the daemon at once can race on the
    schema migration: "alembic_version has more than one head")."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        instance.get_latest_materialization_events([dg.AssetKey("llm_calls")])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    dagster_home = tmp / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(dagster_yaml(dagster_home))  # the config `make run`/`make dev` write
    init_instance(dagster_home)
    planted_at = datetime.now(timezone.utc)
    planted = small_home(tmp / "home", planted_at)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "OPENCLAW_HOME": str(tmp / "home"),
        "MC_DATA_DIR": str(tmp / "data"),
        "MC_TIMEZONE": "UTC",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    port = free_port()
    logs = {name: open(tmp / f"{name}.log", "wb") for name in ("webserver", "daemon")}
    procs = [
        subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=env, stdout=logs["webserver"], stderr=subprocess.STDOUT, start_new_session=True,
        ),
        subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=ROOT, env=env, stdout=logs["daemon"], stderr=subprocess.STDOUT, start_new_session=True,
        ),
    ]
    try:
        yield {"port": port, "tmp": tmp, "planted": planted, "days": planted_days(planted_at), "procs": procs}
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 15)  # the process group we started (the server and its code server)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait(timeout=5)
        for f in logs.values():
            f.close()


LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def location_loaded(port: int) -> bool:
    entries = graphql(port, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
    entry = next(e for e in entries if e["name"] == LOCATION)
    if entry["loadStatus"] != "LOADED":
        return False
    error = entry["locationOrLoadError"]
    assert error["__typename"] == "RepositoryLocation", error
    return True


@pytest.fixture(scope="module")
def loaded(server):
    wait_for("code location loaded", lambda: location_loaded(server["port"]), START_TIMEOUT_S, server["procs"])
    return server


ASSETS_QUERY = """
{ assetNodes { assetKey { path } groupName isMaterializable dependencyKeys { path } } }
"""
REPO_QUERY = """
{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name location { name }
    jobs { name } schedules { name cronSchedule executionTimezone }
    sensors { name } } } } }
"""


def test_asset_graph_over_graphql(loaded):
    from mc_pipeline.definitions import build_defs
    from mc_pipeline.defs.resources import McSettings

    nodes = graphql(loaded["port"], ASSETS_QUERY)["assetNodes"]
    ui = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    # every asset of the code location (built here independently) is in the UI, in its group
    tmp = loaded["tmp"]
    graph = build_defs(McSettings(openclaw_home=str(tmp / "home"), data_dir=str(tmp / "x"))).resolve_asset_graph()
    expected = {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys()}
    assert set(ui) == set(expected)
    for name, node in expected.items():
        assert ui[name]["groupName"] == node.group_name, name
        assert ui[name]["isMaterializable"] == node.is_materializable, name
        assert {"/".join(d["path"]) for d in ui[name]["dependencyKeys"]} == {p.to_user_string() for p in node.parent_keys}

    def upstream(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            for dep in ui[todo.pop()]["dependencyKeys"]:
                d = "/".join(dep["path"])
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    # lineage from the raw sources through llm_calls (and the marts to usage_data_json when they exist)
    assert {"openclaw_transcripts", "openclaw_session_index", "openclaw_auth_profiles", "transcript_records"} <= upstream(
        "llm_calls"
    )
    if "usage_data_json" in ui:
        assert {"llm_calls", "openclaw_transcripts"} <= upstream("usage_data_json")


def test_jobs_schedules_and_sensors_over_graphql(loaded):
    from mc_pipeline.definitions import defs

    repos = graphql(loaded["port"], REPO_QUERY)["repositoriesOrError"]["nodes"]
    repo = next(r for r in repos if r["location"]["name"] == LOCATION)
    assert "refresh_all" in {j["name"] for j in repo["jobs"]}
    ui_schedules = {s["name"]: s for s in repo["schedules"]}
    assert set(ui_schedules) == {s.name for s in defs.schedules or []}
    if ui_schedules:
        hourly = [s for s in ui_schedules.values() if s["cronSchedule"] == "0 * * * *"]
        assert hourly and all(s["executionTimezone"] in (None, "UTC") for s in hourly)
    assert {s["name"] for s in repo["sensors"]} == {s.name for s in defs.sensors or []}


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""
RUN_QUERY = """
query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status startTime endTime tags { key value } } } }
"""


def launch(port: int, repo_name: str, run_config: dict, value: str) -> str:
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": repo_name, "jobName": "refresh_all"},
        "runConfigData": run_config,
        "executionMetadata": {"tags": [{"key": REFRESH_TAG, "value": value}]},
    }
    launched = graphql(port, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


RUNS_QUERY = """
{ runsOrError { __typename ... on Runs { results { runId status startTime endTime tags { key value } } } } }
"""
LOGS_QUERY = """
query Logs($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events { __typename
  ... on ExecutionStepFailureEvent { stepKey error { message stack } }
  ... on RunFailureEvent { message } ... on EngineEvent { message error { message } } } } } }
"""


def failure_text(port: int, run_id: str) -> str:
    """What went wrong in a run, from its event log (for the assertion message)."""
    events = graphql(port, LOGS_QUERY, {"id": run_id})["logsForRun"].get("events", [])
    bad = [e for e in events if e.get("error") or e["__typename"] == "RunFailureEvent"]
    return f"run {run_id}: " + json.dumps(bad, indent=1)[-4000:] + "\n"


IN_PROCESS: dict = {}  # refresh_all runs in process by definition: no executor config to pass


def test_launch_refresh_all_over_graphql_and_wait_for_success(loaded):
    """Runs launched from the UI succeed; with the sensor's own run, runs tagged for refresh never overlap."""
    port = loaded["port"]
    repos = graphql(port, REPO_QUERY)["repositoriesOrError"]["nodes"]
    repo_name = next(r["name"] for r in repos if r["location"]["name"] == LOCATION)
    # two launches at once, as a user clicking twice. Each run gets its own process from the run launcher
    # and executes its steps in that process (refresh_all's executor). The daemon's sensor launches its
    # own run when it first sees the transcripts.
    run_ids = [launch(port, repo_name, IN_PROCESS, "ui-1"), launch(port, repo_name, IN_PROCESS, "ui-2")]

    def finished():
        runs = [graphql(port, RUN_QUERY, {"id": rid})["runOrError"] for rid in run_ids]
        done = all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)
        return runs if done else None

    runs = wait_for("runs finished", finished, RUN_TIMEOUT_S, loaded["procs"], every=1.0)
    tmp = loaded["tmp"]
    logs = (tmp / "webserver.log").read_text()[-3000:] + (tmp / "daemon.log").read_text()[-3000:]
    failures = "".join(failure_text(port, rid) for rid, r in zip(run_ids, runs) if r["status"] != "SUCCESS")
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"], failures + logs
    for run, value in zip(runs, ("ui-1", "ui-2")):
        assert {t["key"]: t["value"] for t in run["tags"]}.get(REFRESH_TAG) == value

    every = graphql(port, RUNS_QUERY)["runsOrError"]["results"]
    tagged = [r for r in every if REFRESH_TAG in {t["key"] for t in r["tags"]} and r["startTime"]]
    assert not [r for r in every if REFRESH_TAG not in {t["key"] for t in r["tags"]}], "a run without the refresh tag"
    spans = sorted((r["startTime"], r["endTime"] or float("inf")) for r in tagged)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"runs tagged {REFRESH_TAG} overlapped: {spans}"
    assert all(r["status"] in ("SUCCESS", "STARTED", "STARTING") for r in tagged), [r["status"] for r in tagged]

    calls = Tables(tmp / "data").load("llm_calls")
    assert calls.height == loaded["planted"]
    assert set(calls.get_column("agent_id")) == {"main", "worker"}
    assert calls.filter(pl.col("status") == "error").height == 1
