"""The CLI's no-op fast path: an unchanged home skips the run, every kind of change runs it for real."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.runtime import cli
from mc_pipeline.runtime import fingerprint as run_fingerprint
from mc_pipeline.tables import storage
from mc_pipeline_tests import homes as h

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def make_db(path: Path, rows: list[tuple[str, int]]) -> None:
    """An interactions.db (the ok/error variant) with one call per (timestamp, input tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE IF NOT EXISTS llm_calls (id INTEGER PRIMARY KEY, timestamp TEXT, provider TEXT,"
        " model TEXT, session_id TEXT, input_tokens INTEGER, output_tokens INTEGER, ok INTEGER, error TEXT)"
    )
    for ts, tokens in rows:
        con.execute(
            "INSERT INTO llm_calls (timestamp, provider, model, session_id, input_tokens, output_tokens, ok)"
            " VALUES (?, 'anthropic', 'claude-sonnet-4-5', 'db-session', ?, 5, 1)",
            (ts, tokens),
        )
    con.commit()
    con.close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A small home with one transcript call and one interactions.db call; the CLI's environment set."""
    home = tmp_path / "home"
    session = h.write_session(home, [h.session_line("s1", T0), h.assistant(T0, u=h.usage(10, 10, cost=0.25))])
    make_db(home / "data" / "interactions.db", [("2026-03-02T10:00:00Z", 100)])
    for k in list(os.environ):
        if k.startswith(("MC_", "OPENCLAW_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("OPENCLAW_HOME", str(home))
    monkeypatch.setenv("MC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MC_TIMEZONE", "UTC")
    monkeypatch.setenv("DAGSTER_HOME", str((tmp_path / "dh").resolve()))
    monkeypatch.chdir(tmp_path)
    # the package's own files may be edited while the suite runs (a shared working tree): held fixed here,
    # test_an_edit_of_the_package_changes_its_digest covers that section
    monkeypatch.setattr(run_fingerprint, "package_digest", lambda: "fixed")
    return {"home": home, "data": tmp_path / "data", "session": session, "tmp": tmp_path}


def cli_run(capsys, *argv: str, clock=None) -> tuple[int, str]:
    rc = cli.run(["--quiet", *argv], clock=clock)
    out = capsys.readouterr().out
    return rc, out


def calls_in(out: str) -> int:
    m = re.search(r"calls:\s+([\d,]+) ", out)
    assert m, out
    return int(m.group(1).replace(",", ""))


def skipped(out: str) -> bool:
    return "nothing changed since" in out and "outputs are current" in out


def ran(out: str) -> bool:
    return "mc_pipeline: reading " in out and not skipped(out)


def test_unchanged_home_skips_with_the_last_summary(env, capsys):
    rc, first = cli_run(capsys)
    assert rc == 0 and ran(first)
    summary = first[first.index("mc_pipeline summary") :]
    assert calls_in(first) == 2  # one transcript call, one database call
    rc, second = cli_run(capsys)
    assert rc == 0 and skipped(second)
    assert second[second.index("mc_pipeline summary") :] == summary  # the usual summary, same figures
    # --force and MC_FULL_REBUILD bypass the fast path
    rc, forced = cli_run(capsys, "--force")
    assert rc == 0 and ran(forced) and "forced" in forced
    os.environ["MC_FULL_REBUILD"] = "1"
    try:
        rc, forced = cli_run(capsys)
    finally:
        del os.environ["MC_FULL_REBUILD"]
    assert rc == 0 and ran(forced)
    rc, again = cli_run(capsys)
    assert rc == 0 and skipped(again)


def _append(env):
    with open(env["session"], "ab") as fh:
        line = h.assistant(T0 + timedelta(minutes=5), u=h.usage(3, 3, cost=0.01))
        fh.write((json.dumps(line) + "\n").encode())
    return 1, "transcripts"


def _new_session(env):
    h.write_session(env["home"], [h.session_line("s2", T0), h.assistant(T0, u=h.usage(7, 7, cost=0.02))])
    return 1, "transcripts"


def _db_row(env):
    make_db(env["home"] / "data" / "interactions.db", [("2026-03-03T10:00:00Z", 200)])
    return 1, "sources"


def _agent_db_call(env):
    """A call written only to the 2026.8+ agent database (the -wal of a WAL database)."""
    from mc_pipeline_tests.openclaw_db import AgentDb

    db = AgentDb(env["home"], "main")
    db.add_session(
        "7d0c2a52-1111-4a3e-9c1e-2f0e5d8a9b04",
        [
            h.session_line("7d0c2a52-1111-4a3e-9c1e-2f0e5d8a9b04", T0),
            h.assistant(T0, u=h.usage(9, 9, cost=0.03)),
        ],
    )
    db.close()
    return 1, "sources"


def _setting(env):
    os.environ["MC_COST_MODE"] = "calculate"
    return 0, "settings"


def _alert_rules_file(env):
    rules = env["tmp"] / "rules.toml"
    rules.write_text("[spend]\ndaily_limit_usd = 10.0\n")
    os.environ["MC_ALERT_RULES"] = str(rules)
    return 0, "settings"


def _sessions_index(env):
    h.write_sessions_index(env["home"], "main", {"agent:main:cron:nightly": "s1"})
    return 0, "sources"


def _output_deleted(env):
    (env["data"] / "usage-data.json").unlink()
    return 0, "outputs"


@pytest.mark.parametrize(
    "change",
    [
        _append,
        _new_session,
        _db_row,
        _agent_db_call,
        _setting,
        _alert_rules_file,
        _sessions_index,
        _output_deleted,
    ],
)
def test_each_kind_of_change_triggers_a_real_run(env, capsys, change, monkeypatch):
    monkeypatch.setenv("MC_COST_MODE", "auto")  # restored after the test whatever the change sets
    monkeypatch.setenv("MC_ALERT_RULES", "")  # empty: the shipped rules
    rc, first = cli_run(capsys)
    assert rc == 0 and ran(first)
    before = calls_in(first)
    state = run_fingerprint.read_state(env["data"].resolve())
    assert state and state["no_skip"] is None
    assert skipped(cli_run(capsys)[1])

    new_calls, what = change(env)
    rc, second = cli_run(capsys)
    assert rc == 0 and ran(second), second
    assert what in second  # the reason names what changed
    assert calls_in(second) == before + new_calls
    assert run_fingerprint.read_state(env["data"].resolve())["started_at"] != state["started_at"]
    assert (env["data"] / "usage-data.json").exists()
    rc, third = cli_run(capsys)
    assert skipped(third), third  # and then it is current again


def test_a_new_day_triggers_a_real_run(env, capsys):
    now = datetime.now(UTC)
    rc, first = cli_run(capsys, clock=lambda: now)
    assert rc == 0 and ran(first)
    assert skipped(cli_run(capsys, clock=lambda: now)[1])
    tomorrow = now + timedelta(days=1)
    rc, second = cli_run(capsys, clock=lambda: tomorrow)
    assert rc == 0 and ran(second) and "today" in second
    state = run_fingerprint.read_state(env["data"].resolve())
    assert state["sections"]["today"] == tomorrow.date().isoformat()
    rc, third = cli_run(capsys, clock=lambda: tomorrow)
    assert skipped(third), third


def test_a_line_whose_time_may_become_valid_never_skips(env, capsys):
    future = datetime.now(UTC) + timedelta(days=30)  # beyond the parser's one-day slack
    h.write_session(env["home"], [h.session_line("s3", future), h.assistant(future, u=h.usage(1, 1))])
    rc, first = cli_run(capsys)
    assert rc == 0 and ran(first)
    state = run_fingerprint.read_state(env["data"].resolve())
    assert state["no_skip"] and "quarantined" in state["no_skip"]
    rc, second = cli_run(capsys)
    assert rc == 0 and ran(second) and "quarantined" in second


def test_a_bad_setting_is_reported_not_skipped(env, capsys, monkeypatch):
    rc, _ = cli_run(capsys)
    assert rc == 0 and run_fingerprint.read_state(env["data"].resolve())
    monkeypatch.setenv("MC_COST_MODE", "guess")
    rc = cli.run(["--quiet"])
    assert rc == 2 and "MC_COST_MODE must be one of" in capsys.readouterr().err


def test_a_run_that_dies_leaves_no_fingerprint(env, capsys, monkeypatch):
    import mc_pipeline.definitions as definitions

    rc, _ = cli_run(capsys)
    assert rc == 0 and run_fingerprint.read_state(env["data"].resolve())
    _append(env)

    def boom(settings=None):
        raise RuntimeError("killed mid-run")

    monkeypatch.setattr(definitions, "build_defs", boom)
    with pytest.raises(RuntimeError):
        cli.run(["--quiet"])
    assert run_fingerprint.read_state(env["data"].resolve()) is None
    monkeypatch.undo()


def test_an_edit_of_the_package_changes_its_digest(tmp_path):
    import shutil

    import mc_pipeline

    copy = tmp_path / "pkg"
    shutil.copytree(Path(mc_pipeline.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = run_fingerprint.package_digest(copy)
    assert run_fingerprint.package_digest(copy) == before
    rules = copy / "costing" / "task_rules.toml"
    rules.write_text(rules.read_text() + "\n# edited\n")
    assert run_fingerprint.package_digest(copy) != before


def test_the_manifest_digest_agrees_with_plan_reads(tmp_path):
    """The fast path compares the discovered files with a digest of the manifest's files instead of running
    ``plan_reads`` (no Polars): both must say "nothing to read" in exactly the same cases."""
    from mc_pipeline.ingest.readers.home import discover_transcripts
    from mc_pipeline.ingest.readers.manifest import MANIFEST, empty_manifest, plan_reads
    from mc_pipeline.ingest.readers.staged import SourceState
    from mc_pipeline.ingest.readers.transcript_files import stage_transcript_files

    home, data = tmp_path / "home", tmp_path / "data"
    state = SourceState(data / "staging" / "transcript_records", "UTC")
    a = h.write_session(home, [h.session_line("a", T0), h.assistant(T0)])
    b = h.write_session(home, [h.session_line("b", T0), h.assistant(T0)])

    def read():
        stage_transcript_files(home, state)

    def nothing_to_read() -> bool:
        found = discover_transcripts(home).files
        manifest = state.manifest(MANIFEST, "")
        plan = plan_reads(found, manifest if manifest is not None else empty_manifest())
        by_plan = not (plan.appended or plan.full or plan.renamed or plan.vanished)
        digest, rereads = run_fingerprint.manifest_files(data)
        stats = [(f.rel, f.size, f.mtime_ns, f.inode) for f in found]
        found_digest = run_fingerprint.transcript_files_digest(stats)
        assert (found_digest == digest and rereads == 0) == by_plan
        return by_plan

    assert not nothing_to_read()  # no manifest yet
    read()
    assert nothing_to_read()
    with open(a, "ab") as fh:  # an append
        fh.write((json.dumps(h.assistant(T0 + timedelta(minutes=1))) + "\n").encode())
    assert not nothing_to_read()
    read()
    assert nothing_to_read()
    b.rename(b.with_name(b.name + ".reset.2026-03-01T12-00-00.000Z"))  # a /reset archive
    assert not nothing_to_read()
    read()
    assert nothing_to_read()
    a.unlink()
    assert not nothing_to_read()
    read()
    assert nothing_to_read()
    future = datetime.now(UTC) + timedelta(days=30)  # quarantined by the clock: re-read every run
    h.write_session(home, [h.session_line("c", future), h.assistant(future)])
    read()
    assert not nothing_to_read()


def test_failure_window_bounds_how_long_a_skip_is_valid(tmp_path):
    """valid_until = the first moment after the run's start when a call enters or leaves the 24 h window."""
    start = datetime(2026, 5, 10, 12, tzinfo=UTC)
    stamps = [
        start - timedelta(hours=30),
        start - timedelta(hours=20),
        start - timedelta(hours=2),
        start + timedelta(hours=5),
        None,
    ]
    frame = pl.DataFrame({"timestamp": stamps}, schema={"timestamp": pl.Datetime("us", "UTC")}).with_columns(
        day=pl.col("timestamp").dt.date().fill_null(start.date())
    )
    storage.write_partitioned_by_day(frame, tmp_path / "parquet" / "llm_calls")
    # independent expectation: every time a call enters (its time) or leaves (+24 h) after the start
    events = [t for s in stamps if s is not None for t in (s, s + timedelta(hours=24)) if t > start]
    assert run_fingerprint.clock_dependence(tmp_path, start, failure_rule=True) == (None, min(events))
    assert run_fingerprint.clock_dependence(tmp_path, start, failure_rule=False) == (None, None)


def test_pending_alert_delivery_never_skips(tmp_path):
    from mc_pipeline.alerting import delivery as ad

    alert = {
        "alert_id": "daily_limit:2026-05-10",
        "rule": "daily_limit",
        "scope": None,
        "period": "2026-05-10",
        "severity": "critical",
        "message": "m",
        "value": 2.0,
        "limit": 1.0,
        "raised_at": datetime.now(UTC),
    }
    ad.record_alerts([alert], tmp_path)
    why, _ = run_fingerprint.clock_dependence(tmp_path, datetime.now(UTC), failure_rule=False)
    assert why and "pending" in why
    ad.deliver_pending(tmp_path, [], log=lambda _: None)
    now = datetime.now(UTC)
    assert run_fingerprint.clock_dependence(tmp_path, now, failure_rule=False) == (None, None)


def test_the_fast_path_does_not_import_dagster(env, capsys):
    assert ran(cli_run(capsys)[1])
    code = (
        "import sys; import mc_pipeline.runtime.fingerprint as rf; rf.package_digest = lambda: 'fixed'; "
        "from mc_pipeline.runtime.cli import run; rc = run(['--quiet']); "
        "print('DAGSTER_IMPORTED' if 'dagster' in sys.modules else 'NO_DAGSTER'); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=env["tmp"],
        env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert skipped(proc.stdout) and "NO_DAGSTER" in proc.stdout
