"""A fleet of OpenClaw homes (MC_OPENCLAW_HOMES): each home read by its own steps into its own folder, one
combined view with agents qualified by home, a home that cannot be read failing only its own check.

The reference for every figure is the same home run alone (one-home mode, in process), and for the upgraded
home the ledger ``upgraded_home.build`` kept while writing it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mc_pipeline.definitions import build_defs
from mc_pipeline.defs.automation import transcript_changes
from mc_pipeline.defs.resources import McSettings
from mc_pipeline.runtime.config import HomesError, parse_homes
from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import homes as h
from mc_pipeline_tests import upgraded_home
from mc_pipeline_tests.test_automation import zone_far_from_midnight
from mc_pipeline_tests.test_upgraded_home import assert_equal, checks, daily

ROOT = Path(__file__).resolve().parents[1]
#: the parts of usage-data.json that do not depend on when or where it was written (session ids are salted
#: per data folder, lastUpdated is the clock)
FIGURES = (
    "summary",
    "daily",
    "providers",
    "models",
    "taskTypes",
    "triggers",
    "cronJobs",
    "health",
    "costSources",
)


# -- the setting ------------------------------------------------------------------------------------------
def test_homes_are_read_from_the_variable_and_a_toml_file(tmp_path):
    f = tmp_path / "homes.toml"
    f.write_text('[homes]\nlab = "~/lab-openclaw"\nci_runner = "/srv/openclaw"\n')
    homes = parse_homes("office=/mnt/office/.openclaw, home2 = /data/h2", str(f))
    assert homes == [
        ("office", Path("/mnt/office/.openclaw")),
        ("home2", Path("/data/h2")),
        ("lab", Path("~/lab-openclaw").expanduser()),
        ("ci_runner", Path("/srv/openclaw")),
    ]
    settings = McSettings.from_env({"MC_OPENCLAW_HOMES": "a=/x,b=/y", "MC_DATA_DIR": str(tmp_path)})
    assert settings.fleet() == [("a", Path("/x")), ("b", Path("/y"))]
    assert (
        settings.paths("b").home == Path("/y")
        and settings.paths("b").data == tmp_path.resolve() / "homes" / "b"
    )
    assert McSettings.from_env({"OPENCLAW_HOME": "/z"}).fleet() == []  # OPENCLAW_HOME alone: the one home


@pytest.mark.parametrize(
    "value, message",
    [
        ("a=/x,a=/y", "given twice"),
        ("a/b=/x", "letters, digits and _ only"),
        ("just-a-path", "is not name=path"),
        ("a=", "is not name=path"),
    ],
)
def test_a_bad_homes_setting_is_named(value, message):
    with pytest.raises(HomesError, match=message):
        parse_homes(value)


def test_a_bad_homes_file_is_named(tmp_path):
    f = tmp_path / "homes.toml"
    f.write_text("[homes]\na = 3\n")
    with pytest.raises(HomesError, match=r"needs a \[homes\] table"):
        parse_homes("", str(f))
    with pytest.raises(HomesError, match="cannot read"):
        parse_homes("", str(tmp_path / "missing.toml"))


# -- homes --------------------------------------------------------------------------------------------------
def recent_home(home: Path, costs: list[float], agent: str = "main") -> Path:
    """A one-era (JSONL) home whose calls were made in the last hours, so today's budgets see them."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=2)
    sid = str(uuid.uuid4())  # a UUID is published as it is (other ids are salted per data folder)
    lines: list = [h.session_line(sid, start)]
    for i, cost in enumerate(costs):
        t = start + timedelta(minutes=10 * i)
        lines += [h.user(t), h.assistant(t + timedelta(seconds=3), u=h.usage(900 + i, 120, cost=cost))]
    return h.write_session(home, lines, agent=agent, session_id=sid)


def fleet_settings(data: Path, homes: dict[str, Path], zone: str = "UTC") -> McSettings:
    spec = ",".join(f"{n}={p}" for n, p in homes.items())
    return McSettings(openclaw_home="/nonexistent", data_dir=str(data), timezone=zone, openclaw_homes=spec)


def refresh(settings: McSettings, instance) -> dg.ExecuteInProcessResult:
    return build_defs(settings).resolve_job_def("refresh_all").execute_in_process(instance=instance)


def figures(path: Path) -> dict:
    doc = json.loads(path.read_text())
    return {k: doc[k] for k in FIGURES}


@pytest.fixture
def two_homes(tmp_path):
    up = upgraded_home.build(tmp_path / "up")  # both eras, every case of the 2026.8+ layout
    recent = recent_home(tmp_path / "recent", [0.25, 0.5, 0.75]).parents[3]
    return up, recent


def test_each_home_of_a_fleet_equals_the_home_run_alone_and_the_fleet_is_their_sum(tmp_path, two_homes):
    up, recent = two_homes
    data = tmp_path / "fleet"
    with dg.instance_for_test() as instance:
        result = refresh(fleet_settings(data, {"up": up.home, "recent": recent}), instance)
        for name, home in (("up", up.home), ("recent", recent)):  # each home alone, one-home mode
            refresh(
                McSettings(openclaw_home=str(home), data_dir=str(tmp_path / f"alone_{name}"), timezone="UTC"),
                instance,
            )
    assert result.success
    assert_equal(daily(data / "homes" / "up"), up.ledger.daily())  # every call of the upgraded home, once
    for name in ("up", "recent"):
        alone, ours = Tables(tmp_path / f"alone_{name}"), Tables(data / "homes" / name)
        for table in ("usage_daily", "sessions_daily", "health_daily", "accounting"):
            assert ours.staged(table).equals(alone.staged(table)), (name, table)
        assert figures(data / "homes" / name / "usage-data.json") == figures(
            tmp_path / f"alone_{name}" / "usage-data.json"
        )
    # the fleet's usage-data.json: the sum of its homes, agents qualified (both homes have an agent "main")
    fleet = json.loads((data / "usage-data.json").read_text())
    homes = [json.loads((data / "homes" / n / "usage-data.json").read_text()) for n in ("up", "recent")]
    for k in ("totalRequests", "totalTokens", "failedRequests", "totalSessions"):
        assert fleet["summary"][k] == sum(x["summary"][k] for x in homes), k
    assert fleet["summary"]["totalCost"] == pytest.approx(
        sum(x["summary"]["totalCost"] for x in homes), abs=1e-9
    )
    agents = {a["name"] for a in fleet["agents"]}  # the last 30 days: the recent home's
    assert "recent/main" in agents and not any("/" not in a for a in agents)
    usage = Tables(data).staged("usage_daily")
    assert set(usage.get_column("agent_id").unique().to_list()) >= {"up/main", "up/ops", "recent/main"}
    files = Tables(data).read("source_files").get_column("source_file").to_list()
    assert any(f.startswith("up:") for f in files) and any(f.startswith("recent:") for f in files)
    assert all(checks(result).values()), checks(result)


def test_a_home_that_cannot_be_read_fails_only_its_own_check_and_is_named(tmp_path, two_homes):
    from mc_pipeline.runtime.cli import summary_lines

    up, recent = two_homes
    data = tmp_path / "fleet"
    settings = fleet_settings(data, {"up": up.home, "recent": recent})
    with dg.instance_for_test() as instance:
        refresh(settings, instance)
        before = json.loads((data / "homes" / "up" / "usage-data.json").read_text())
        recent_home(recent, [2.0])  # a new session with one call in the home that stays
        moved = up.home.with_name("unmounted")
        up.home.rename(moved)
        result = refresh(settings, instance)
        assert result.success  # the other home publishes
        got = checks(result)
        assert got["up/transcript_records:home_reachable"] is False
        assert got["recent/transcript_records:home_reachable"] is True
        failed = {k for k, v in got.items() if not v}
        assert all(k.startswith("up/") for k in failed), failed
        fleet = json.loads((data / "usage-data.json").read_text())
        recent_doc = json.loads((data / "homes" / "recent" / "usage-data.json").read_text())
        assert recent_doc["summary"]["totalRequests"] == 4  # the new call is published
        # what was read from the unreachable home before stays (it may only be unmounted)
        assert fleet["summary"]["totalRequests"] == before["summary"]["totalRequests"] + 4
        lines = summary_lines(settings)
        assert any(
            x.startswith("home up:") and "NOT READ this run" in x and "not there" in x for x in lines
        ), lines
        assert any(x.startswith("home recent:") and "4 calls" in x for x in lines), lines
        moved.rename(up.home)  # back: read again, named no more
        refresh(settings, instance)
        assert not any("NOT READ" in x for x in summary_lines(settings))


def test_a_budget_can_be_scoped_to_one_home(tmp_path, monkeypatch):
    a = recent_home(tmp_path / "a", [1.0, 1.0]).parents[3]
    b = recent_home(tmp_path / "b", [3.0, 3.0]).parents[3]
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[budgets.budget]]\nscope = "home"\nname = "a"\nperiod = "daily"\nlimit_usd = 10\n'
        '[[budgets.budget]]\nscope = "home"\nname = "b"\nperiod = "daily"\nlimit_usd = 10\n'
    )
    monkeypatch.setenv("MC_ALERT_RULES", str(rules))
    data = tmp_path / "fleet"
    with dg.instance_for_test() as instance:  # a zone where it is about noon: the calls are today's
        refresh(fleet_settings(data, {"a": a, "b": b}, zone=zone_far_from_midnight()), instance)
    raised = pl.read_parquet(data / "parquet" / "budget_alerts" / "budget_alerts.parquet")
    budget = raised.filter(pl.col("rule") == "budget")
    # b spent 6 of 10 today (50% reached), a spent 2 (20%: nothing)
    assert budget.get_column("scope").to_list() == ["home:b"], budget
    doc = json.loads((data / "usage-data.json").read_text())
    spent = {(x["scope"], x["name"]): x for x in doc["budgets"]}
    assert set(spent) == {("home", "a"), ("home", "b")}


def test_the_live_sensor_watches_every_home_of_a_fleet(tmp_path):
    a = recent_home(tmp_path / "a", [0.1]).parents[3]
    b_file = recent_home(tmp_path / "b", [0.1])
    settings = fleet_settings(tmp_path / "fleet", {"a": a, "b": b_file.parents[3]})

    def tick(instance, cursor):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings})
        return transcript_changes(ctx), ctx.cursor

    with dg.instance_for_test() as instance:
        refresh(settings, instance)
        result, cursor = tick(instance, None)  # first tick: compared with what each home's last read saw
        assert isinstance(result, dg.SkipReason) and "nothing changed" in result.skip_message
        with b_file.open("a") as f:
            f.write(json.dumps(h.assistant(datetime.now(UTC), u=h.usage(cost=0.2))) + "\n")
        assert isinstance(tick(instance, cursor)[0], dg.RunRequest)
        shutil.rmtree(a)  # a home that vanished is a change too
        assert isinstance(tick(instance, None)[0], dg.RunRequest)


def test_make_run_reads_a_fleet_with_the_multiprocess_executor(tmp_path):
    """`python -m mc_pipeline run` for a fleet: each step in its own process, recorded in the instance."""
    a = recent_home(tmp_path / "a", [0.5]).parents[3]
    b = recent_home(tmp_path / "b", [0.25, 0.25]).parents[3]
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "OPENCLAW_", "DAGSTER_"))}
    env.update(
        MC_OPENCLAW_HOMES=f"a={a},b={b},gone={tmp_path / 'gone'}",
        MC_DATA_DIR=str(data),
        MC_TIMEZONE="UTC",
        MC_MAX_CONCURRENT="2",
    )
    out = subprocess.run(
        [sys.executable, "-m", "mc_pipeline", "run", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"home a:\s+1 calls, \$0\.50", out.stdout) and re.search(
        r"home b:\s+2 calls, \$0\.50", out.stdout
    )
    assert "home gone:" in out.stdout and "NOT READ this run" in out.stdout
    assert "checks failed: home_reachable" in out.stdout
    for folder in (data, data / "homes" / "a", data / "homes" / "b"):
        assert (folder / "usage-data.json").exists() and (folder / "sessions.json").exists()
    assert json.loads((data / "usage-data.json").read_text())["summary"]["totalRequests"] == 3
    with dg.DagsterInstance.from_config(str(data / "dagster_home")) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        pids = {
            e.dagster_event.pid
            for e in instance.all_logs(run.run_id)
            if e.step_key and e.dagster_event and e.dagster_event.pid
        }
        assert len(pids) >= 3  # steps ran in processes of their own, not in the CLI's
        assert instance.get_latest_materialization_event(dg.AssetKey(["b", "transcript_records"])) is not None
