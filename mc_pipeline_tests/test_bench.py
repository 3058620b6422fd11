"""scripts/bench.py's own logic, without running a benchmark (no Dagster, no generated homes): its options
(``--only``), its result rules (MET / MISSED / INFO / SKIPPED), the fleet case's totals check and step
profile, and the process-tree memory sampler."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("mc_bench", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mc_bench"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("mc_bench", None)


def test_help_names_the_new_options():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in (
        "--only",
        "--fleet-mb",
        "--fleet-homes",
        "--fleet-repeats",
        "--fleet-concurrent",
        "--pg-repeats",
    ):
        assert option in out


def test_only_refuses_an_unknown_group(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--only", "core,nonsense"])
    assert exc.value.code == 2
    assert "nonsense" in capsys.readouterr().err


def test_results(bench):
    case = bench.Case("fleet", "fleet")
    case.ratios = [("vs sequential", 0.5, 0.65), ("vs MC_MAX_CONCURRENT=1", 0.9, None)]
    assert case.result == "MET"  # a ratio without a target never misses
    case.ratios = [("vs sequential", 0.7, 0.65), ("vs MC_MAX_CONCURRENT=1", 0.6, None)]
    assert case.result == "MISSED (vs sequential)"
    info = bench.Case("postgres_single", "single")
    info.ratios = [("fixed cost", 3.0, None)]
    assert info.result == "INFO" and info.target_text() == "- (reported)"
    skipped = bench.Case("postgres_fleet", "fleet", failed="skipped: no PostgreSQL binaries")
    assert skipped.result == "SKIPPED"
    failed = bench.Case("fleet", "fleet", failed="TOTALS DIFFER in 1 of 3 repeat(s)")
    assert failed.result == "FAILED"


def test_totals_must_match_exactly_up_to_float_noise(bench):
    assert bench.same_totals((175_088, 6352.516196), (175_088, 6352.516196 + 1e-9))
    assert not bench.same_totals((175_087, 6352.516196), (175_088, 6352.516196))
    assert not bench.same_totals((175_088, 6352.52), (175_088, 6352.516196))
    assert not bench.same_totals(None, (1, 1.0))


def test_usage_totals_reads_the_summary(bench, tmp_path):
    (tmp_path / "usage-data.json").write_text('{"summary": {"totalRequests": 12, "totalCost": 3.5}}')
    assert bench.usage_totals(tmp_path) == (12, 3.5)
    assert bench.usage_totals(tmp_path / "missing") is None


def test_fleet_env(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENCLAW_HOME", "/somewhere/else")
    monkeypatch.setenv("MC_DAGSTER_POSTGRES_URL", "postgresql://left/over")
    env = bench.fleet_env([("h1", Path("/a")), ("h2", Path("/b"))], tmp_path, 2)
    assert env["MC_OPENCLAW_HOMES"] == "h1=/a,h2=/b" and env["MC_MAX_CONCURRENT"] == "2"
    assert env["DAGSTER_HOME"] == str(tmp_path / "dagster_home") and env["MC_TIMEZONE"] == "UTC"
    assert "OPENCLAW_HOME" not in env and "MC_DAGSTER_POSTGRES_URL" not in env
    assert "MC_MAX_CONCURRENT" not in bench.fleet_env([("h1", Path("/a"))], tmp_path, None)


def test_step_profile(bench):
    t = bench.Timed("fleet", [], wall_s=10.0, cpu_s=1.0, peak_mib=1.0, returncode=0, started_at=1000.0)
    doc = {
        "first_event": 1001.0,
        "last_event": 1009.5,
        "steps": {
            "h1__source_records": {
                "STEP_WORKER_STARTING": 1001.5,
                "STEP_START": 1002.0,
                "STEP_SUCCESS": 1005.0,
            },
            "h2__source_records": {
                "STEP_WORKER_STARTING": 1001.5,
                "STEP_START": 1002.0,
                "STEP_SUCCESS": 1006.0,
            },
            "marts": {"STEP_WORKER_STARTING": 1006.0, "STEP_START": 1006.5, "STEP_SUCCESS": 1009.0},
        },
    }
    p = bench.step_profile(doc, t)
    assert p["before_first_event_s"] == 1.0 and p["after_last_event_s"] == 0.5
    assert p["step_s"] == 9.5 and p["step_startup_s"] == 1.5
    assert p["by_kind"]["source_records"] == {"n": 2, "total_s": 7.0}
    assert [r["step"] for r in p["steps"]] == ["h1__source_records", "h2__source_records", "marts"]
    assert "3 steps" in bench.profile_text(p)
    assert bench.step_profile({}, t) == {}


def test_summed_runs(bench):
    a = bench.Timed("a", ["x"], wall_s=2.0, cpu_s=1.0, peak_mib=100, returncode=0, tree_peak_mib=120)
    b = bench.Timed("b", ["y"], wall_s=3.0, cpu_s=2.0, peak_mib=300, returncode=1, tree_peak_mib=310)
    t = bench.summed([a, b], "both")
    assert (t.wall_s, t.cpu_s, t.peak_mib, t.tree_peak_mib, t.returncode) == (5.0, 3.0, 300, 310, 1)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc")
def test_tree_memory_counts_children(bench):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)",
        ]
    )
    try:
        sampler = bench.TreeMemory(os.getpid())
        for _ in range(50):  # until the child has touched its 64 MiB
            if sampler.sample() - bench.pss_kib(os.getpid()) > 60 * 1024:
                break
            time.sleep(0.1)
        assert sampler.sample() - bench.pss_kib(os.getpid()) > 60 * 1024
    finally:
        proc.kill()
        proc.wait()
