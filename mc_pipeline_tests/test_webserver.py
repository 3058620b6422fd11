"""The UI as users use it: the real ``dagster-webserver`` (and ``dagster-daemon``, as ``make dev`` runs them).

Starts both on 127.0.0.1 with ``workspace.yaml`` and the instance config mc_pipeline writes (runs tagged
``mc_pipeline/refresh`` are queued one at a time, which is why the daemon must run), reads the asset
graph, schedules and sensors over GraphQL, launches ``refresh_all`` twice at once with the launchRun
mutation, waits for both to succeed (each in its own process), checks that no two runs tagged
``mc_pipeline/refresh`` (the sensor's own run included) overlapped, and checks what the runs wrote.
Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.defs.automation import REFRESH_TAG
from mc_pipeline.runtime.instance import dagster_yaml
from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import homes as h

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "mc_pipeline"
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
    t = (now or datetime.now(UTC)).replace(microsecond=0) - timedelta(hours=3)
    main = [h.session_line("web-1", t), h.user(t)]
    main += [
        h.assistant(t + timedelta(minutes=i), u=h.usage(100 * i, 20, 500, 10, cost=0.01)) for i in range(1, 5)
    ]
    main += [h.mirror(t)]
    h.write_session(home, main, session_id="web-1")
    archived = [
        h.session_line("web-0", t - timedelta(days=2)),
        h.assistant(t - timedelta(days=2), stop="error", error="529 overloaded", u=h.usage(0, 0)),
    ]
    h.write_session(home, archived, session_id="web-0", suffix=".reset.2026-03-01T12-00-00.000Z")
    worker = [
        h.session_line("web-2", t),
        h.assistant(t, provider="openai", model="gpt-5.1-codex", api="openai-responses"),
    ]
    h.write_session(home, worker, agent="worker", session_id="web-2")
    h.write_sessions_index(home, "main", {"agent:main:main": "web-1"})
    # one file holding two days (noon UTC, far from midnight): a rerun of one of them reads it again whole
    d1, d2 = (
        datetime.combine(t.date() - timedelta(days=n), datetime.min.time(), UTC) + timedelta(hours=12)
        for n in (1, 2)
    )
    spanning = [
        h.session_line("web-3", d2),
        h.user(d2),
        h.assistant(d2 + timedelta(minutes=1), u=h.usage(300, 40, 0, 0, cost=0.03)),
        h.user(d1),
        h.assistant(d1 + timedelta(minutes=1), u=h.usage(700, 70, 1000, 0, cost=0.07)),
        h.assistant(d1 + timedelta(minutes=9), u=h.usage(900, 90, 2000, 0, cost=0.11)),
    ]
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
    (dagster_home / "dagster.yaml").write_text(
        dagster_yaml(dagster_home)
    )  # the config `make run`/`make dev` write
    init_instance(dagster_home)
    planted_at = datetime.now(UTC)
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
    with contextlib.ExitStack() as log_files:  # open until the servers are stopped
        logs = {
            name: log_files.enter_context(open(tmp / f"{name}.log", "wb")) for name in ("webserver", "daemon")
        }
        procs = [
            subprocess.Popen(
                [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                cwd=ROOT,
                env=env,
                stdout=logs["webserver"],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
            subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                cwd=ROOT,
                env=env,
                stdout=logs["daemon"],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
        ]
        try:
            yield {
                "port": port,
                "tmp": tmp,
                "planted": planted,
                "days": planted_days(planted_at),
                "procs": procs,
            }
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
    wait_for(
        "code location loaded", lambda: location_loaded(server["port"]), START_TIMEOUT_S, server["procs"]
    )
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
    graph = build_defs(
        McSettings(openclaw_home=str(tmp / "home"), data_dir=str(tmp / "x"))
    ).resolve_asset_graph()
    expected = {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys()}
    assert set(ui) == set(expected)
    for name, node in expected.items():
        assert ui[name]["groupName"] == node.group_name, name
        assert ui[name]["isMaterializable"] == node.is_materializable, name
        assert {"/".join(d["path"]) for d in ui[name]["dependencyKeys"]} == {
            p.to_user_string() for p in node.parent_keys
        }

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
    assert {
        "openclaw_transcripts",
        "openclaw_session_index",
        "openclaw_auth_profiles",
        "transcript_records",
    } <= upstream("llm_calls")
    if "usage_data_json" in ui:
        assert {"llm_calls", "openclaw_transcripts"} <= upstream("usage_data_json")


COLUMNS_QUERY = """
query ($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { __typename ... on AssetNode {
    metadataEntries { label ... on TableSchemaMetadataEntry {
        schema { columns { name type description tags { key value } } } } } } } }
"""


def test_llm_calls_columns_with_descriptions_over_graphql(loaded):
    """The asset page of llm_calls lists its columns with their descriptions, private ones tagged PII:
    the column spec (tables/schemas.py) as the UI receives it."""
    from mc_pipeline.tables.schemas import TABLES

    node = graphql(loaded["port"], COLUMNS_QUERY, {"path": ["llm_calls"]})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    [entry] = [m for m in node["metadataEntries"] if m["label"] == "dagster/column_schema"]
    columns = {c["name"]: c for c in entry["schema"]["columns"]}
    spec = {c.name: c for c in TABLES["llm_calls"]}
    assert list(columns) == list(spec)
    for name, column in columns.items():
        assert column["description"] == spec[name].description, name
        assert ("PII" in {t["key"] for t in column["tags"]}) == spec[name].private, name
    assert {"session_key", "source_file"} <= {n for n, c in spec.items() if c.private}
    assert "cost" in columns["cost_usd"]["description"].lower()


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
query Run($id: ID!) { runOrError(runId: $id) { __typename
  ... on Run { status startTime endTime tags { key value } } } }
"""


def launch(port: int, repo_name: str, run_config: dict, value: str) -> str:
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": repo_name,
            "jobName": "refresh_all",
        },
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
    assert not [r for r in every if REFRESH_TAG not in {t["key"] for t in r["tags"]}], (
        "a run without the refresh tag"
    )
    spans = sorted((r["startTime"], r["endTime"] or float("inf")) for r in tagged)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"runs tagged {REFRESH_TAG} overlapped: {spans}"
    assert all(r["status"] in ("SUCCESS", "STARTED", "STARTING") for r in tagged), [
        r["status"] for r in tagged
    ]

    calls = Tables(tmp / "data").load("llm_calls")
    assert calls.height == loaded["planted"]
    assert set(calls.get_column("agent_id")) == {"main", "worker"}
    assert calls.filter(pl.col("status") == "error").height == 1


# -- the day partitions of llm_calls over GraphQL: status after a refresh, a rerun of one day ----------------
ACTIVE = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
RUNS_FILTERED = """
query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId jobName status startTime endTime tags { key value } } } } }
"""
PARTITIONS_QUERY = """
query Partitions($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename ... on AssetNode {
  isPartitioned
  partitionKeysByDimension { name partitionKeys }
  partitionStats { numMaterialized numPartitions numFailed numMaterializing }
  assetPartitionStatuses { __typename
    ... on TimePartitionStatuses { ranges { startKey endKey status } } } } } }
"""
LATEST_BY_PARTITION = """
query Latest($key: AssetKeyInput!, $partitions: [String!]) { assetNodeOrError(assetKey: $key) { __typename
  ... on AssetNode {
    latestMaterializationByPartition(partitions: $partitions) { partition runId timestamp } } } }
"""
MATERIALIZATIONS = """
query Mats($key: AssetKeyInput!, $partitions: [String!]) { assetOrError(assetKey: $key) { __typename
  ... on Asset { assetMaterializations(partitions: $partitions) { partition runId timestamp } } } }
"""
AUTOMATION_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name }
  schedules { name scheduleState { id status } } sensors { name sensorState { id status } } } } } }
"""
STOP_SCHEDULE = """
mutation Stop($id: String!) { stopRunningSchedule(id: $id) { __typename
  ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }
"""
STOP_SENSOR = """
mutation Stop($id: String!) { stopSensor(id: $id) { __typename
  ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }
"""
RESET_SCHEDULE = """
mutation Reset($s: ScheduleSelector!) { resetSchedule(scheduleSelector: $s) { __typename } }
"""
RESET_SENSOR = """
mutation Reset($s: SensorSelector!) { resetSensor(sensorSelector: $s) { __typename } }
"""
LLM_CALLS_KEY = {"path": ["llm_calls"]}


def runs_where(port: int, **filter_) -> list[dict]:
    got = graphql(port, RUNS_FILTERED, {"filter": filter_})["runsOrError"]
    assert got["__typename"] == "Runs", got
    return got["results"]


def server_logs(tmp: Path) -> str:
    return "".join(
        f"\n--- {n}.log (tail) ---\n" + (tmp / f"{n}.log").read_text(errors="replace")[-3000:]
        for n in ("webserver", "daemon")
    )


def wait_run_success(loaded: dict, run_id: str, what: str) -> dict:
    """Wait (bounded) for a run to end; fail with its failure events and the servers' logs unless it
    succeeded."""
    port = loaded["port"]

    def ended():
        run = graphql(port, RUN_QUERY, {"id": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    run = wait_for(f"{what} (run {run_id}) finished", ended, RUN_TIMEOUT_S, loaded["procs"], every=1.0)
    assert run["status"] == "SUCCESS", (
        f"{what}: run {run_id} ended {run['status']}\n"
        + failure_text(port, run_id)
        + server_logs(loaded["tmp"])
    )
    return run


def wait_no_active_run(loaded: dict) -> None:
    port = loaded["port"]
    wait_for(
        "no run queued or in progress",
        lambda: not runs_where(port, statuses=ACTIVE),
        RUN_TIMEOUT_S,
        loaded["procs"],
        every=1.0,
    )


def stop_automation(port: int) -> list[tuple[str, dict]]:
    """Stop the hourly schedule and the sensor (a refresh run at the top of the hour must not write day files
    while the rerun is measured); returns what to reset afterwards."""
    repo = next(
        r
        for r in graphql(port, AUTOMATION_QUERY)["repositoriesOrError"]["nodes"]
        if r["location"]["name"] == LOCATION
    )
    base = {"repositoryLocationName": LOCATION, "repositoryName": repo["name"]}
    stopped = []
    for s in repo["schedules"]:
        if s["scheduleState"]["status"] == "RUNNING":
            got = graphql(port, STOP_SCHEDULE, {"id": s["scheduleState"]["id"]})["stopRunningSchedule"]
            assert got["__typename"] == "ScheduleStateResult", got
            stopped.append((RESET_SCHEDULE, {**base, "scheduleName": s["name"]}))
    for s in repo["sensors"]:
        if s["sensorState"]["status"] == "RUNNING":
            got = graphql(port, STOP_SENSOR, {"id": s["sensorState"]["id"]})["stopSensor"]
            assert got["__typename"] == "StopSensorMutationResult", got
            stopped.append((RESET_SENSOR, {**base, "sensorName": s["name"]}))
    return stopped


def materialized_partitions(port: int) -> tuple[list[str], dict]:
    """(the llm_calls partitions the UI shows as materialized, the asset node's partition fields)."""
    node = graphql(port, PARTITIONS_QUERY, {"key": LLM_CALLS_KEY})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode" and node["isPartitioned"], node
    keys = node["partitionKeysByDimension"][0]["partitionKeys"]
    statuses = node["assetPartitionStatuses"]
    assert statuses["__typename"] == "TimePartitionStatuses", statuses
    where = {k: i for i, k in enumerate(keys)}
    done = []
    for r in statuses["ranges"]:
        if r["status"] == "MATERIALIZED":  # startKey..endKey, both included
            done += keys[where[r["startKey"]] : where[r["endKey"]] + 1]
    return sorted(done), node


def latest_by_partition(port: int, days: list[str]) -> dict[str, dict | None]:
    node = graphql(port, LATEST_BY_PARTITION, {"key": LLM_CALLS_KEY, "partitions": days})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    return dict(zip(days, node["latestMaterializationByPartition"]))


def day_files(data: Path, table: str = "llm_calls") -> dict[str, tuple[int, int]]:
    """day -> (inode, mtime_ns) of every ``parquet/<table>/day=*/part-0.parquet``."""
    out = {}
    for f in sorted((data / "parquet" / table).glob("day=*/part-0.parquet")):
        st = f.stat()
        out[f.parent.name.removeprefix("day=")] = (st.st_ino, st.st_mtime_ns)
    return out


def launch_partition(port: int, repo_name: str, day: str) -> str:
    """What the UI's "Materialize" of one partition of llm_calls sends: the implicit asset job, the asset
    selected, the partition as the run's tag."""
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": repo_name,
            "jobName": "__ASSET_JOB",
            "assetSelection": [LLM_CALLS_KEY],
            "assetCheckSelection": [],
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
    }
    launched = graphql(port, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def test_llm_calls_partitions_and_rerun_of_one_day_over_graphql(loaded):
    """After a refresh, the UI shows exactly the days with calls (the day folders on disk) as materialized
    partitions of llm_calls, each with its materialisation; rerunning one day from the UI rewrites that
    day's file only, with the figures of the full build."""
    port, tmp = loaded["port"], loaded["tmp"]
    data = tmp / "data"
    repos = graphql(port, REPO_QUERY)["repositoriesOrError"]["nodes"]
    repo_name = next(r["name"] for r in repos if r["location"]["name"] == LOCATION)
    stopped = stop_automation(port)
    try:
        # a refresh run of refresh_all has completed (the test above launches two; alone, launch one)
        if not runs_where(port, pipelineName="refresh_all", statuses=["SUCCESS"]):
            wait_run_success(loaded, launch(port, repo_name, IN_PROCESS, "partitions-test"), "refresh_all")
        wait_no_active_run(loaded)  # the sensor's run included: nothing writes while we measure

        # 1. the materialized partitions are the days with calls, and the day folders on disk
        expected = loaded["days"]
        assert len(expected) == 3
        on_disk = day_files(data)
        assert sorted(on_disk) == expected, f"day folders {sorted(on_disk)} != days with calls {expected}"
        done, node = materialized_partitions(port)
        assert done == expected, (
            f"materialized partitions {done} != days with calls {expected}; {node['assetPartitionStatuses']}"
        )
        stats = node["partitionStats"]
        assert (stats["numMaterialized"], stats["numFailed"], stats["numMaterializing"]) == (3, 0, 0), stats
        keys = node["partitionKeysByDimension"][0]["partitionKeys"]
        assert keys[0] == "2014-12-31" and stats["numPartitions"] == len(keys), (keys[:1], stats)
        assert set(expected) <= set(keys), f"days {expected} not among the partition keys (last: {keys[-3:]})"
        refresh_ids = {r["runId"] for r in runs_where(port, pipelineName="refresh_all", statuses=["SUCCESS"])}
        now_ms = time.time() * 1000
        before = latest_by_partition(port, expected)
        for day, mat in before.items():
            assert mat is not None, (
                f"{day}: no materialization of llm_calls (partition statuses say materialized)"
            )
            assert mat["partition"] == day, mat
            assert mat["runId"] in refresh_ids, (
                f"{day}: materialized by {mat['runId']}, not a refresh run {refresh_ids}"
            )
            assert mat["timestamp"] and 0 < float(mat["timestamp"]) <= now_ms, mat
        history = graphql(port, MATERIALIZATIONS, {"key": LLM_CALLS_KEY, "partitions": expected})[
            "assetOrError"
        ]
        assert history["__typename"] == "Asset", history
        assert {m["partition"] for m in history["assetMaterializations"]} == set(expected), history

        # 2. rerun one day (the middle one: its file also holds the day before) from the UI
        day = expected[1]
        tables = Tables(data)
        old = tables.read_days("llm_calls", [datetime.fromisoformat(day).date()])
        assert old.height == 2, old
        usage_before = day_files(data, "usage_daily")
        run_id = launch_partition(port, repo_name, day)
        run = wait_run_success(loaded, run_id, f"rerun of llm_calls {day}")
        assert {t["key"]: t["value"] for t in run["tags"]}.get("dagster/partition") == day, run["tags"]
        wait_no_active_run(loaded)
        others = [r for r in runs_where(port, createdAfter=run["startTime"] - 60) if r["runId"] != run_id]

        after = day_files(data)
        assert sorted(after) == expected, f"day folders after the rerun: {sorted(after)}"
        assert after[day] != on_disk[day], f"{day}: llm_calls file not rewritten by the rerun {on_disk[day]}"
        changed = [d for d in expected if d != day and after[d] != on_disk[d]]
        assert not changed, f"a rerun of {day} rewrote llm_calls of {changed} too (other runs: {others})"
        usage_after = day_files(data, "usage_daily")
        changed = [d for d in usage_before if d != day and usage_after.get(d) != usage_before[d]]
        assert not changed, f"a rerun of {day} rewrote usage_daily of {changed} too (other runs: {others})"

        new = tables.read_days("llm_calls", [datetime.fromisoformat(day).date()])
        assert new.height == old.height, (old.height, new.height)
        assert new.get_column("cost_usd").sum() == pytest.approx(old.get_column("cost_usd").sum()), (old, new)
        assert new.sort("call_id").equals(old.sort("call_id")), (
            "the rerun's rows differ from the full build's"
        )

        latest = latest_by_partition(port, expected)
        assert latest[day]["runId"] == run_id, (
            f"{day}: latest materialization {latest[day]}, not the rerun {run_id}"
        )
        assert float(latest[day]["timestamp"]) >= float(before[day]["timestamp"]), (before[day], latest[day])
        assert {d: latest[d] for d in expected if d != day} == {d: before[d] for d in expected if d != day}
        done, node = materialized_partitions(port)
        assert done == expected and node["partitionStats"]["numFailed"] == 0, (done, node["partitionStats"])
    finally:
        for mutation, selector in stopped:
            graphql(port, mutation, {"s": selector})
