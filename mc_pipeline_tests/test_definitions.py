"""The code location's graph: every asset has its group, description and lineage, every domain is merged.

Written as invariants and required edges rather than a frozen list, so that it holds while other
domains add assets, and tightens by itself when they land (the marts' ``usage_data_json``, the other
sources, the schedule and sensors).
"""

from __future__ import annotations

import importlib
import pkgutil

import dagster as dg
import pytest

import mc_pipeline.defs as defs_pkg
from mc_pipeline.definitions import build_defs
from mc_pipeline.defs.automation import REFRESH_TAG
from mc_pipeline.defs.resources import McSettings
from mc_pipeline.runtime.config import parse_bool

#: Groups of assets that must not move (the UI, docs and sensors refer to them by group).
KNOWN_GROUPS = {
    "openclaw_transcripts": "sources",
    "openclaw_session_index": "sources",
    "openclaw_auth_profiles": "sources",
    "transcript_records": "ingest",
    "llm_calls": "ingest",
    "quarantine": "ingest",
    "source_files": "ingest",
    "openclaw_interactions_db": "sources",
    "openclaw_transcript_store": "sources",
    "openclaw_model_usage_log": "sources",
    "api_calls": "ingest",
    "usage_daily": "marts",
    "usage_by_provider": "marts",
    "usage_by_model": "marts",
    "budget_alerts": "alerts",
    "usage_data_json": "dashboard",
}
#: Edges that must exist: (upstream, downstream) as direct or transitive lineage.
REQUIRED_LINEAGE = [
    ("openclaw_transcripts", "transcript_records"),
    ("transcript_records", "llm_calls"),
    ("openclaw_session_index", "llm_calls"),
    ("openclaw_auth_profiles", "llm_calls"),
    ("openclaw_interactions_db", "llm_calls"),
    ("openclaw_transcript_store", "llm_calls"),
    ("openclaw_model_usage_log", "llm_calls"),
    ("openclaw_interactions_db", "api_calls"),
    ("llm_calls", "usage_daily"),
    ("usage_daily", "usage_data_json"),
    ("usage_by_provider", "usage_data_json"),
    ("budget_alerts", "usage_data_json"),
    ("openclaw_transcripts", "usage_data_json"),
]


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("defs")
    return build_defs(McSettings(openclaw_home=str(tmp / "home"), data_dir=str(tmp / "data"), timezone="UTC"))


@pytest.fixture(scope="module")
def graph(defs):
    return defs.resolve_asset_graph()


def names(keys) -> set[str]:
    return {k.to_user_string() for k in keys}


def ancestors(graph, name: str) -> set[str]:
    seen: set[str] = set()
    todo = [dg.AssetKey(name)]
    while todo:
        for parent in graph.get(todo.pop()).parent_keys:
            if parent.to_user_string() not in seen:
                seen.add(parent.to_user_string())
                todo.append(parent)
    return seen


def test_definitions_load_and_validate(defs):
    dg.Definitions.validate_loadable(defs)


def test_every_asset_has_a_group_and_a_description(graph):
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.group_name != "default", f"{key.to_user_string()} has no group"
        assert (node.description or "").strip(), f"{key.to_user_string()} has no description"


def test_known_assets_keep_their_groups(graph):
    present = names(graph.get_all_asset_keys())
    missing = set(KNOWN_GROUPS) - present
    assert not missing, f"assets gone from the graph: {missing}"
    for name, group in KNOWN_GROUPS.items():
        assert graph.get(dg.AssetKey(name)).group_name == group, name


def test_required_lineage(graph):
    for up, down in REQUIRED_LINEAGE:
        assert up in ancestors(graph, down), f"{up} -> {down} missing"


def test_raw_sources_are_declared_not_materialised(graph):
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.group_name == "sources":
            assert not node.is_materializable, f"{key.to_user_string()}: raw user files are never written"
            assert not node.parent_keys


def test_every_table_traces_back_to_a_raw_source(graph):
    sources = {k.to_user_string() for k in graph.get_all_asset_keys() if not graph.get(k).is_materializable}
    for key in graph.get_all_asset_keys():
        if graph.get(key).is_materializable:
            assert ancestors(graph, key.to_user_string()) & sources, f"{key.to_user_string()} reads no source"


def test_every_other_source_feeds_llm_calls(graph):
    """interactions.db, the SQLite transcript store and model-usage.jsonl, once they exist, feed llm_calls."""
    upstream = ancestors(graph, "llm_calls")
    for key in graph.get_all_asset_keys():
        name = key.to_user_string()
        if (
            any(word in name for word in ("interactions", "transcript_store", "model_usage"))
            and graph.get(key).is_materializable is False
        ):
            assert name in upstream, f"source {name} does not reach llm_calls"


def test_dashboard_file_is_built_from_llm_calls_when_present(graph):
    present = names(graph.get_all_asset_keys())
    if "usage_data_json" not in present:
        pytest.skip("usage_data_json not in the graph yet (marts issue)")
    up = ancestors(graph, "usage_data_json")
    assert {"llm_calls", "openclaw_transcripts"} <= up
    marts = {n for n in present if n.startswith("usage_by_") or n == "usage_daily"}
    assert marts, "usage_data_json exists but no usage_* marts"
    assert marts & up, "usage_data_json is not built from the marts"


def test_refresh_all_selects_every_materialisable_asset_but_the_day_partitioned_ones(defs, graph):
    """The day-partitioned assets run for reruns of days; a refresh records their days from day_tables."""
    job = defs.resolve_job_def("refresh_all")
    selected = names(job.asset_layer.selected_asset_keys)
    materialisable = {
        k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_materializable
    }
    partitioned = {
        k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None
    }
    assert partitioned == {"llm_calls", "usage_daily"}
    assert materialisable - partitioned == selected


def test_the_calls_built_carry_their_checks(graph):
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {
        ("source_files", "matches_schema"),
        ("source_files", "unique_call_ids"),
        ("source_files", "lines_reconcile"),
        ("source_files", "sources_not_silent"),
        ("quarantine", "quarantine_share_stable"),
    } <= checks


def test_every_domain_module_is_merged(defs, graph):
    """Each ``mc_pipeline/defs/<domain>.py`` exposing ``defs`` is part of the code location."""
    present = names(graph.get_all_asset_keys())
    for info in pkgutil.iter_modules(defs_pkg.__path__):
        module = importlib.import_module(f"mc_pipeline.defs.{info.name}")
        domain = getattr(module, "defs", None)
        if not isinstance(domain, dg.Definitions):
            continue
        own: set[str] = set()
        for a in domain.assets or []:
            own |= names(a.keys) if isinstance(a, dg.AssetsDefinition) else {a.key.to_user_string()}
        assert own <= present, (
            f"mc_pipeline/defs/{info.name}.py is not merged in definitions.py: {own - present}"
        )
        for schedule in domain.schedules or []:
            assert defs.resolve_schedule_def(schedule.name)
        for sensor in domain.sensors or []:
            assert defs.resolve_sensor_def(sensor.name)


def _run_tags(defs, target) -> dict:
    tags = dict(getattr(target, "tags", None) or {})
    job_name = getattr(target, "job_name", None)
    if job_name:
        try:
            tags = {**(defs.resolve_job_def(job_name).tags or {}), **tags}
        except Exception:  # noqa: BLE001 - an unresolved job is caught by validate_loadable
            pass
    return tags


def test_hourly_schedule_when_present(defs):
    schedules = list(defs.schedules or [])
    if not schedules:
        pytest.skip("no schedule yet (alerts/schedule issue)")
    hourly = [s for s in schedules if s.cron_schedule == "0 * * * *"]
    assert hourly, f"no hourly schedule among {[s.cron_schedule for s in schedules]}"
    for s in hourly:
        assert (s.execution_timezone or "UTC") == "UTC"
        assert REFRESH_TAG in _run_tags(defs, s), f"schedule {s.name} runs without the {REFRESH_TAG} tag"


def test_refresh_runs_are_limited_to_one_at_a_time(tmp_path):
    """The instance mc_pipeline writes queues runs tagged ``mc_pipeline/refresh`` one at a time."""
    import os

    from mc_pipeline.runtime.cli import ensure_dagster_home

    old = os.environ.get("DAGSTER_HOME")
    os.environ.pop("DAGSTER_HOME", None)
    try:
        home = ensure_dagster_home(McSettings(data_dir=str(tmp_path / "data")))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            coordinator = instance.run_coordinator
            assert type(coordinator).__name__ == "QueuedRunCoordinator"
            queue = instance.get_concurrency_config().run_queue_config
            limits = {(lim["key"], lim.get("value")): lim["limit"] for lim in queue.tag_concurrency_limits}
            assert limits.get((REFRESH_TAG, None)) == 1
            assert queue.max_concurrent_runs >= 1
    finally:
        if old is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old


def test_the_instance_storage_follows_the_postgres_setting_and_an_edited_yaml_is_kept(tmp_path, monkeypatch):
    """MC_DAGSTER_POSTGRES_URL set: dagster.yaml selects Postgres for every storage, by a reference to the
    variable (never the URL or its password); unset again: back to the SQLite files. An edited file stays."""
    from mc_pipeline.runtime.instance import ensure_dagster_home, storage_identity
    from mc_pipeline.runtime.postgres_storage import psycopg2_url

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("MC_DAGSTER_POSTGRES_URL", "postgresql://mc:s3cret-pw@db.internal:5433/dagster")
    home = ensure_dagster_home(tmp_path / "data")
    text = (home / "dagster.yaml").read_text()
    assert "class: Storage" in text and "env: MC_DAGSTER_POSTGRES_URL" in text and "s3cret" not in text
    assert (
        storage_identity() == "postgres://db.internal:5433/dagster"
    )  # the storage marker: no user, no password
    assert psycopg2_url("postgresql://mc:pw@h/db") == "postgresql+psycopg2://mc:pw@h/db"
    assert psycopg2_url("postgres://h/db") == "postgresql+psycopg2://h/db"
    assert psycopg2_url("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"
    monkeypatch.delenv("MC_DAGSTER_POSTGRES_URL")
    monkeypatch.delenv("DAGSTER_HOME")
    ensure_dagster_home(tmp_path / "data")
    text = (home / "dagster.yaml").read_text()
    assert "CachedSqliteEventLogStorage" in text and "postgres" not in text
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage).__name__ == "CachedSqliteEventLogStorage"
    (home / "dagster.yaml").write_text(text + "# my own change\n")
    monkeypatch.setenv("MC_DAGSTER_POSTGRES_URL", "postgresql://h/db")
    monkeypatch.delenv("DAGSTER_HOME")
    ensure_dagster_home(tmp_path / "data")
    assert (home / "dagster.yaml").read_text().endswith("# my own change\n")  # edited: never overwritten


def test_the_dagster_yaml_templates_limit_the_refresh_tag_the_runs_carry():
    """instance.py spells the tag literally in the dagster.yaml it writes (SQLite and Postgres): it must be
    the REFRESH_TAG the schedule, the sensor and the CLI put on their runs."""
    import yaml

    from mc_pipeline.runtime import instance

    for text in (instance.DAGSTER_YAML.format(runs="/tmp/runs/"), instance.POSTGRES_YAML):
        assert yaml.safe_load(text)["run_queue"]["tag_concurrency_limits"] == [
            {"key": REFRESH_TAG, "limit": 1}
        ]


@pytest.mark.parametrize(
    "text,want",
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        (" ON ", True),
        ("TRUE\n", True),
        ("0", False),
        ("false", False),
        ("NO", False),
        (" off", False),
        ("", None),
        (None, None),
        ("  ", None),
        ("maybe", None),
        ("2", None),
        ("y", None),
        ("truthy", None),
    ],
)
def test_parse_bool(text, want):
    assert parse_bool(text) is want


@pytest.mark.parametrize(
    "text,want",
    [("1", True), ("true", True), ("on", True), ("0", False), ("off", False), ("", False), ("maybe", False)],
)
def test_the_full_rebuild_setting_is_a_yes_no_word(text, want):
    assert McSettings.from_env({"MC_FULL_REBUILD": text}).full_rebuild is want
