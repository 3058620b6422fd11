"""The resources of the Dagster layer: an OpenClaw home resolves its own sources, a data store its tables, and
the settings build both (one home, or a home and a store per home of a fleet)."""

from __future__ import annotations

from pathlib import Path

from mc_pipeline.defs.resources import DataStore, McSettings, OpenClawHome, home_key, store_key
from mc_pipeline_tests import upgraded_home


def test_a_home_resolves_its_sources(tmp_path):
    home = tmp_path / "home"
    upgraded_home.build(home)
    resource = OpenClawHome(path=str(home))
    assert resource.problem() is None
    assert resource.interactions_db == home / "data" / "interactions.db"
    assert resource.model_usage_log == home / "logs" / "model-usage.jsonl"
    assert resource.state_database == home / "state" / "openclaw.sqlite"
    assert resource.state_database.is_file()
    files = resource.transcript_files().files
    assert files, "the old era's transcript files"
    assert all(f.path.is_relative_to(home) for f in files)
    assert not any(".bak." in f.path.name for f in files)  # never counted
    databases = {d.agent_id: d.path for d in resource.agent_databases()}
    # found by globbing, and one only the state database's agent_databases registry names
    assert databases == {
        "main": home / "agents" / "main" / "agent" / "openclaw-agent.sqlite",
        "ops": home / "custom-dbs" / "ops.sqlite",
    }
    states = resource.file_states()
    assert any(name.endswith("openclaw-agent.sqlite") for name in states)


def test_a_home_with_its_own_log_paths(tmp_path):
    own = OpenClawHome(
        path=str(tmp_path), interactions_db_path="~/calls.db", model_usage_log_path=str(tmp_path / "u.jsonl")
    )
    assert own.interactions_db == Path("~/calls.db").expanduser()
    assert own.model_usage_log == tmp_path / "u.jsonl"


def test_an_unreachable_home_says_why(tmp_path):
    assert "not there" in OpenClawHome(path=str(tmp_path / "unmounted")).problem()
    (tmp_path / "file").write_text("")
    assert "cannot be listed" in OpenClawHome(path=str(tmp_path / "file")).problem()


def test_a_store_holds_the_tables(tmp_path):
    store = DataStore(data_dir=str(tmp_path / "data"))
    assert store.root == (tmp_path / "data").resolve()
    assert store.staging == store.root / "staging"
    assert store.tables().root == store.root


def test_settings_build_one_home_and_its_store(tmp_path):
    settings = McSettings(
        openclaw_home=str(tmp_path / "home"),
        data_dir=str(tmp_path / "data"),
        timezone="Europe/Berlin",
        interactions_db_path=str(tmp_path / "i.db"),
        usage_json_paths=str(tmp_path / "public"),
    )
    resources = settings.resources()
    assert set(resources) == {"settings", "openclaw_home", "store"}
    config = settings.config(resources["openclaw_home"], resources["store"])
    assert config.home == tmp_path / "home"
    assert config.data == (tmp_path / "data").resolve()
    assert config.interactions_db_path == tmp_path / "i.db"
    assert config.model_usage_log_path == tmp_path / "home" / "logs" / "model-usage.jsonl"
    assert config.usage_json_paths == str(tmp_path / "public")
    assert config.tz == "Europe/Berlin" and config.name == ""
    assert settings.paths() == config


def test_settings_build_a_home_and_a_store_per_home_of_a_fleet(tmp_path):
    settings = McSettings(
        data_dir=str(tmp_path / "data"),
        openclaw_homes=f"office={tmp_path / 'a'},lab={tmp_path / 'b'}",
        usage_json_paths=str(tmp_path / "public"),
    )
    resources = settings.resources()
    assert set(resources) == {
        "settings",
        "store",
        home_key("office"),
        store_key("office"),
        home_key("lab"),
        store_key("lab"),
    }
    lab = settings.config(resources["openclaw_home_lab"], resources["store_lab"])
    assert lab.home == tmp_path / "b" and lab.name == "lab"
    assert lab.data == (tmp_path / "data" / "homes" / "lab").resolve()
    assert lab.usage_json_paths == ""  # only the combined files go to MC_USAGE_JSON_PATHS
    assert resources["store"].usage_json_paths == str(tmp_path / "public")
