"""The whole code location run in process, on the real transcripts laid out as an OpenClaw home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import homes as h

ROOT = Path(__file__).resolve().parents[1]
needs_real = pytest.mark.skipif(not h.REAL_DIR.exists(), reason="shared/real not present")


def independent_daily(files: list[Path]) -> dict[str, dict[str, float]]:
    """Per UTC day sums straight from the JSON, without any project code."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for f in files:
        for line in f.read_text().splitlines():
            d = json.loads(line)
            m = d.get("message") or {}
            if d.get("type") != "message" or m.get("role") != "assistant" or m.get("provider") == "openclaw":
                continue
            day = datetime.fromtimestamp(m["timestamp"] / 1000, tz=UTC).date().isoformat()
            u = m["usage"]
            o = out[day]
            o["calls"] += 1
            o["input"] += u["input"]
            o["output"] += u["output"]
            o["cache_read"] += u["cacheRead"]
            o["cache_write"] += u["cacheWrite"]
            o["cost"] += u["cost"]["total"]
    return out


@needs_real
def test_real_home_end_to_end(tmp_path, refresh):
    home = h.copy_real_home(tmp_path / "home")
    sessions = home / "agents" / "main" / "sessions"
    # an archived copy of one session under another agent counts; a .bak copy never does
    shutil.copy(
        h.REAL_DIR / "large-session.jsonl", sessions / "large-session.jsonl.bak.2025-12-01T00-00-00.000Z"
    )
    result = refresh(home, tmp_path / "data")
    assert result.success
    checks = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.asset_key
        in (dg.AssetKey("source_files"), dg.AssetKey("quarantine"))
    }
    assert checks == {
        "matches_schema": True,
        "unique_call_ids": True,
        "lines_reconcile": True,
        "sources_not_silent": True,
        "quarantine_share_stable": True,
        "column_schema_change": True,  # quarantine's (mc_pipeline/defs/columns.py)
    }

    io = Tables(tmp_path / "data")
    calls = io.load("llm_calls")
    expected = independent_daily(sorted(h.REAL_DIR.glob("*.jsonl")))
    got = {
        r["day"].isoformat(): r
        for r in calls.group_by("day")
        .agg(
            calls=pl.len(),
            input=pl.col("input_tokens").sum(),
            output=pl.col("output_tokens").sum(),
            cache_read=pl.col("cache_read_tokens").sum(),
            cache_write=pl.col("cache_write_tokens").sum(),
            cost=pl.col("cost_recorded_usd").sum(),
        )
        .iter_rows(named=True)
    }
    assert set(got) == set(expected)
    for day, e in expected.items():
        g = got[day]
        assert (g["calls"], g["input"], g["output"], g["cache_read"], g["cache_write"]) == (
            e["calls"],
            e["input"],
            e["output"],
            e["cache_read"],
            e["cache_write"],
        ), day
        assert g["cost"] == pytest.approx(e["cost"], rel=1e-9)
    files = pl.read_parquet(io.table_dir("source_files") / "source_files.parquet")
    assert files.height == 2 and files.get_column("balanced").all()
    assert not any(str(tmp_path) in v for v in files.get_column("source_file").to_list())


def test_no_home_gives_valid_empty_outputs(tmp_path, refresh):
    result = refresh(tmp_path / "missing", tmp_path / "data")
    assert result.success
    io = Tables(tmp_path / "data")
    assert io.load("llm_calls").height == 0
    assert pl.read_parquet(io.table_dir("quarantine") / "quarantine.parquet").height == 0


def test_quarantined_lines_reach_the_quarantine_table(tmp_path, refresh):
    t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    h.write_lines(
        h.sessions_dir(tmp_path / "home") / "s1.jsonl",
        [h.session_line("s1", t), h.assistant(t), "not json at all", h.assistant(t.replace(minute=5))],
    )
    refresh(tmp_path / "home", tmp_path / "data")
    io = Tables(tmp_path / "data")
    q = pl.read_parquet(io.table_dir("quarantine") / "quarantine.parquet")
    assert q.select("source_file", "line_no").rows() == [("agents/main/sessions/s1.jsonl", 3)]
    assert io.load("llm_calls").height == 2


def _ccusage() -> str | None:
    for candidate in (
        os.environ.get("CCUSAGE"),
        shutil.which("ccusage"),
        str(ROOT / ".tools/node_modules/.bin/ccusage"),
    ):
        if candidate and Path(candidate).exists():
            probe = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            if probe.returncode == 0:
                return candidate
    return None


@needs_real
@pytest.mark.skipif(
    _ccusage() is None, reason="ccusage not installed (make test installs it when npm is available)"
)
def test_daily_tokens_and_recorded_cost_equal_ccusage(tmp_path, refresh):
    home = h.copy_real_home(tmp_path / "home")
    out = subprocess.run(
        [_ccusage(), "openclaw", "daily", "--json", "--offline", "-z", "UTC", "--open-claw-path", str(home)],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = {d["date"]: d for d in json.loads(out.stdout)["daily"]}
    refresh(home, tmp_path / "data", timezone="UTC")
    calls = Tables(tmp_path / "data").load("llm_calls")
    ours = {
        r["day"].isoformat(): r
        for r in calls.group_by("day")
        .agg(
            pl.col(
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "cost_recorded_usd",
            ).sum()
        )
        .iter_rows(named=True)
    }
    assert set(ours) == set(theirs)
    for day, t in theirs.items():
        o = ours[day]
        assert o["input_tokens"] == t["inputTokens"], day
        assert o["output_tokens"] == t["outputTokens"], day
        assert o["cache_read_tokens"] == t["cacheReadTokens"], day
        assert o["cache_write_tokens"] == t["cacheCreationTokens"], day
        assert o["cost_recorded_usd"] == pytest.approx(t["totalCost"], rel=1e-9), day


def test_cli_run_prints_a_summary(tmp_path):
    t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    h.write_session(
        tmp_path / "home", [h.session_line("s1", t), h.assistant(t, u=h.usage(10, 10, cost=0.25))]
    )
    env = {
        **os.environ,
        "OPENCLAW_HOME": str(tmp_path / "home"),
        "MC_DATA_DIR": str(tmp_path / "data"),
        "MC_TIMEZONE": "UTC",
        "DAGSTER_HOME": str(tmp_path / "dh"),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mc_pipeline", "run"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "calls:        1 (0 failed, 0 unpriced)" in proc.stdout
    assert "cost:         $0.25" in proc.stdout
    assert str(tmp_path / "data") in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "mc_pipeline", "run"],
        capture_output=True,
        text=True,
        env={**env, "MC_COST_MODE": "guess"},
        cwd=tmp_path,
        timeout=120,
    )
    assert bad.returncode == 2 and "MC_COST_MODE must be one of" in bad.stderr
