"""A refresh that works only on what changed gives exactly what a fresh full build gives, table for table.

After each change the way OpenClaw and its users make them (an append, a new session, a /reset rename, a
DB row copying an earlier transcript call an hour later, one that straddles midnight, a late archive
adding calls to an old day, a call in the agent database, a price or setting change), the incremental
data folder is compared with a full build of the same home into a fresh folder: every llm_calls day, the
per-day aggregates, every mart, quarantine, the reconciliation, and both dashboard files.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mc_pipeline.definitions import build_defs
from mc_pipeline.defs.resources import McSettings
from mc_pipeline.tables.store import AGGREGATES, Tables
from mc_pipeline_tests import homes as h
from mc_pipeline_tests.openclaw_db import AgentDb

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
MARTS = (
    "usage_by_provider",
    "usage_by_model",
    "usage_by_task_type",
    "usage_by_agent",
    "usage_by_session",
    "usage_by_trigger",
    "thinking_stats",
    "api_health",
    "quarantine",
    "source_files",
)


def turn(ts: datetime, cost: float = 0.01, model: str = "claude-sonnet-4-5") -> list[dict]:
    return [
        h.user(ts),
        h.assistant(
            ts + timedelta(seconds=4),
            model=model,
            tools=("exec",),
            thinking="hmm " * 40,
            u=h.usage(1200, 300, 5000, 100, cost=cost),
        ),
    ]


def append(path: Path, lines: list[dict]) -> None:
    with open(path, "ab") as fh:
        fh.write(b"".join(json.dumps(x).encode() + b"\n" for x in lines))


def settings(home: Path, data: Path, **kw) -> McSettings:
    return McSettings(
        openclaw_home=str(home), data_dir=str(data), timezone=kw.pop("timezone", "Europe/Berlin"), **kw
    )


def refresh(s: McSettings, instance) -> None:
    result = (
        build_defs(s)
        .resolve_job_def("refresh_all")
        .execute_in_process(instance=instance, raise_on_error=True)
    )
    assert result.success


def tables_of(data: Path) -> dict[str, pl.DataFrame]:
    t = Tables(data)
    out = {"llm_calls": t.load("llm_calls").sort("call_id")}
    for name in AGGREGATES:
        frame = t.staged(name)
        out[name] = frame.sort(frame.columns, nulls_last=True)
        published = t.read_days(name) if name == "usage_daily" else t.read(name)
        out[f"{name} (published)"] = published.sort(published.columns, nulls_last=True)
    for name in MARTS:
        out[name] = t.read(name)
    for name in ("usage-data.json", "sessions.json"):
        doc = json.loads((data / name).read_text())
        doc.pop("lastUpdated", None)
        out[name] = doc
    return out


def assert_same_as_full(home: Path, inc: Path, full: Path, instance, **kw) -> None:
    salt = inc / "staging" / "session_salt"  # the same salt: non-UUID session ids hash alike
    (full / "staging").mkdir(parents=True, exist_ok=True)
    (full / "staging" / "session_salt").write_text(salt.read_text())
    refresh(settings(home, full, **kw), instance)
    a, b = tables_of(inc), tables_of(full)
    for name in a:
        if isinstance(a[name], pl.DataFrame):
            assert_frame_equal(a[name], b[name], check_exact=True), name
        else:
            assert a[name] == b[name], name


def write_db(path: Path, rows: list[tuple]) -> None:
    """interactions.db (the cache-token variant) with (timestamp, session, model, input, output, cache read,
    cost)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE IF NOT EXISTS llm_calls (id INTEGER PRIMARY KEY, timestamp TEXT, provider TEXT,"
        " model TEXT, session_id TEXT, input_tokens INTEGER, output_tokens INTEGER,"
        " cache_read_tokens INTEGER, cache_write_tokens INTEGER, total_cost REAL, status TEXT)"
    )
    con.executemany(
        "INSERT INTO llm_calls (timestamp, provider, model, session_id, input_tokens, output_tokens,"
        " cache_read_tokens, cache_write_tokens, total_cost, status)"
        " VALUES (?, 'anthropic', ?, ?, ?, ?, ?, 100, ?, 'success')",
        rows,
    )
    con.commit()
    con.close()


@pytest.mark.slow
def test_incremental_equals_a_full_rebuild_after_every_kind_of_change(tmp_path):
    home, inc = tmp_path / "home", tmp_path / "inc"
    d = h.sessions_dir(home)
    live = h.write_session(
        home,
        [
            h.session_line("11111111-1111-4111-8111-111111111111", T0),
            *turn(T0),
            *turn(T0 + timedelta(days=1)),
        ],
        session_id="11111111-1111-4111-8111-111111111111",
    )
    h.write_session(
        home,
        [h.session_line("22222222-2222-4222-8222-222222222222", T0), *turn(T0 + timedelta(days=2))],
        session_id="22222222-2222-4222-8222-222222222222",
    )
    n = 0

    def check(**kw):
        nonlocal n
        n += 1
        refresh(settings(home, inc, **kw), instance)
        assert_same_as_full(home, inc, tmp_path / f"full-{n}", instance, **kw)

    with dg.instance_for_test() as instance:
        check()
        # an append on the live transcript
        append(live, turn(T0 + timedelta(days=1, hours=2)))
        check()
        # a new session on a new day
        h.write_session(
            home,
            [h.session_line("33333333-3333-4333-8333-333333333333", T0), *turn(T0 + timedelta(days=3))],
            session_id="33333333-3333-4333-8333-333333333333",
        )
        check()
        # /reset renames the live file (same inode): calls keep their ids, source_file follows
        live.rename(d / f"{live.name}.reset.2026-11-22T10-00-00.000Z")
        check()
        # a DB row copying an earlier transcript call (an hour later, the write time), and one copying a call
        # at 23:59:30 Berlin whose copy is stamped 00:00:40 the next day: counted once each, across midnight
        # too
        late = datetime(2026, 11, 24, 22, 59, 30, tzinfo=UTC)  # 23:59:30 in Berlin
        h.write_session(
            home,
            [
                h.session_line("44444444-4444-4444-8444-444444444444", late),
                h.assistant(late, u=h.usage(900, 90, 0, 0, cost=0.02)),
            ],
            session_id="44444444-4444-4444-8444-444444444444",
        )
        check()
        write_db(
            home / "data" / "interactions.db",
            [
                (
                    (T0 + timedelta(seconds=4, minutes=2)).isoformat(),
                    "claude-sonnet-4-5",
                    "11111111-1111-4111-8111-111111111111",
                    1200,
                    300,
                    5000,
                    0.01,
                ),
                (
                    (late + timedelta(seconds=70)).isoformat(),
                    "claude-sonnet-4-5",
                    "44444444-4444-4444-8444-444444444444",
                    900,
                    90,
                    0,
                    0.02,
                ),
                (
                    (T0 + timedelta(days=2, hours=5)).isoformat(),
                    "gpt-5.1",
                    "db-own",
                    400,
                    40,
                    0,
                    0.003,
                ),  # its own call
            ],
        )
        check()
        calls = Tables(inc).load("llm_calls")
        assert calls.filter(pl.col("source") == "interactions_db").height == 1  # only the DB's own call
        # a late archive: a deleted session holding calls of an old day appears
        old = T0 - timedelta(days=5)
        h.write_session(
            home,
            [h.session_line("55555555-5555-4555-8555-555555555555", old), *turn(old, cost=0.5)],
            session_id="55555555-5555-4555-8555-555555555555",
            suffix=".deleted.2026-11-25T08-00-00.000Z",
        )
        check()
        # a call in the agent database (OpenClaw 2026.8+)
        db = AgentDb(home, "main")
        db.add_session(
            "66666666-6666-4666-8666-666666666666",
            [h.session_line("66666666-6666-4666-8666-666666666666", T0), *turn(T0 + timedelta(days=4))],
        )
        check()
        db.append("66666666-6666-4666-8666-666666666666", turn(T0 + timedelta(days=4, hours=1)))
        check()
        db.close()
        # a setting that changes every figure (cost mode), and one that changes every day (the zone)
        check(cost_mode="calculate")
        check(cost_mode="calculate", timezone="UTC")


@pytest.mark.slow
def test_cli_rerun_of_one_day_rewrites_that_day_only_with_the_same_figures(tmp_path, monkeypatch):
    from mc_pipeline.runtime import cli

    home, data = tmp_path / "home", tmp_path / "data"
    for i, sid in enumerate(("77777777-7777-4777-8777-777777777777", "88888888-8888-4888-8888-888888888888")):
        h.write_session(
            home,
            [h.session_line(sid, T0), *turn(T0 + timedelta(days=i)), *turn(T0 + timedelta(days=i + 1))],
            session_id=sid,
        )
    for k in [k for k in __import__("os").environ if k.startswith(("MC_", "OPENCLAW_"))]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("OPENCLAW_HOME", str(home))
    monkeypatch.setenv("MC_DATA_DIR", str(data))
    monkeypatch.setenv("MC_TIMEZONE", "UTC")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    assert cli.run(["--quiet"]) == 0
    files = sorted((data / "parquet" / "llm_calls").glob("day=*/part-0.parquet"))
    assert len(files) == 3
    before = {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files}
    calls = Tables(data).load("llm_calls").sort("call_id")
    day = (T0 + timedelta(days=1)).date()
    assert cli.rerun(["--day", day.strftime("%Y%m%d"), "--quiet"]) == 0
    changed = {f.parent.name for f in files if (f.stat().st_ino, f.stat().st_mtime_ns) != before[f]}
    assert changed == {f"day={day.isoformat()}"}
    assert_frame_equal(Tables(data).load("llm_calls").sort("call_id"), calls)
    with pytest.raises(SystemExit) as bad:
        cli.rerun(["--day", "2026-13-01"])
    assert bad.value.code == 2
