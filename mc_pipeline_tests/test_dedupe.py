"""Each call counted once: across sources (migration copies) and within a source (re-runs)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.calls.dedupe import dedupe_calls
from mc_pipeline.calls.llm_calls import with_identity
from mc_pipeline.tables.schemas import CALL_RECORDS, conform
from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import homes as h
from mc_pipeline_tests.test_source_interactions_db import PLAN, make_db

T0 = datetime(2026, 1, 10, 12, 0, 0, 123000, tzinfo=UTC)


def rec(
    source,
    ts,
    *,
    session="s1",
    model="claude-sonnet-4-5",
    inp=1000,
    out=200,
    cr=0,
    cw=0,
    entry=None,
    agent=None,
    line=1,
    stop=None,
    src_file=None,
) -> dict:
    return {
        "source": source,
        "source_file": src_file or f"{source}.file",
        "line_no": line,
        "agent_id": agent,
        "session_id": session,
        "entry_id": entry or f"{source}:{line}",
        "timestamp": ts,
        "provider": "anthropic",
        "model": model,
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_tokens": cr,
        "cache_write_tokens": cw,
        "stop_reason": stop,
    }


def run(rows: list[dict]):
    frame = with_identity(conform(pl.DataFrame(rows), CALL_RECORDS), "UTC")
    return dedupe_calls(frame)


def kept_lines(result, source):
    return sorted(result.calls.filter(pl.col("source") == source).get_column("line_no").to_list())


def test_migration_copies_of_a_transcript_call_are_dropped_however_the_time_was_written():
    t = rec("transcript", T0, agent="main", entry="a1b2c3d4", cr=5000, cw=40)
    copies = [
        rec("interactions_db", T0.replace(microsecond=0), cr=5000, cw=40, line=1),  # second precision
        rec("interactions_db", T0.replace(microsecond=0), cr=5000, cw=40, line=2),  # appended again on re-run
        rec(
            "interactions_db", T0 + timedelta(seconds=150), line=3
        ),  # the entry's write time, no cache columns
        rec("interactions_db", T0 + timedelta(seconds=3), inp=6040, line=4),  # whole prompt as prompt_tokens
    ]
    own = [
        rec("interactions_db", T0, session="other", line=5),  # same tokens, other session
        rec("interactions_db", T0, out=201, line=6),  # other output count
        rec("interactions_db", T0, model="gpt-5", line=7),  # other model
        rec("interactions_db", T0 + timedelta(minutes=6), line=8),  # outside the tolerance
    ]
    result = run([t, *copies, *own])
    assert kept_lines(result, "transcript") == [1]
    assert kept_lines(result, "interactions_db") == [5, 6, 7, 8]
    # the re-run's second copy is an exact repeat inside the DB (rule 2 comes first); the rest are copies
    assert dict(result.dropped.select("rule", "duplicates").iter_rows()) == {
        "copy_of_richer": 3,
        "exact_repeat": 1,
    }
    assert result.per_source() == {"interactions_db": 4}


def test_exact_repeats_inside_a_source_are_kept_once():
    a = rec("interactions_db", T0, session="own", line=1)
    again = [{**a, "line_no": n, "entry_id": f"db:{n}"} for n in (2, 3)]  # each row its own rowid
    result = run([a, *again, rec("interactions_db", T0, session="own", inp=999, line=4)])
    assert kept_lines(result, "interactions_db") == [1, 4]
    assert result.dropped.get_column("rule").to_list() == ["exact_repeat"]
    assert result.dropped.get_column("duplicates").to_list() == [2]


def test_retries_without_tokens_match_only_a_copy_at_the_same_moment():
    tries = [
        rec(
            "transcript",
            T0 + timedelta(seconds=20 * i),
            agent="main",
            entry=f"e{i}",
            inp=0,
            out=0,
            stop="error",
            line=i + 1,
        )
        for i in range(3)
    ]
    db = [
        rec("interactions_db", T0 + timedelta(seconds=1), inp=0, out=0, line=1),  # copy of try 0
        rec("interactions_db", T0 + timedelta(seconds=41), inp=0, out=0, line=2),  # copy of try 2
        rec("interactions_db", T0 + timedelta(seconds=10), inp=0, out=0, line=3),  # the DB's own failure
    ]
    result = run([*tries, *db])
    assert kept_lines(result, "transcript") == [1, 2, 3]
    assert kept_lines(result, "interactions_db") == [3]


def test_the_log_repeats_the_db_and_the_transcripts_without_session_ids():
    rows = [
        rec("transcript", T0, agent="main", entry="aaaa0001", inp=10, out=900, cr=20000),
        rec("interactions_db", T0 + timedelta(hours=1), session="own", inp=300, out=30),
        rec(
            "model_usage_log", T0 + timedelta(seconds=30), session=None, inp=20010, out=900, line=1
        ),  # transcript's
        rec(
            "model_usage_log", T0 + timedelta(hours=1, seconds=2), session=None, inp=300, out=30, line=2
        ),  # DB's
        rec("model_usage_log", T0 + timedelta(hours=2), session=None, inp=300, out=30, line=3),  # its own
        rec(
            "model_usage_log", T0 + timedelta(hours=1), session=None, inp=0, out=0, line=4
        ),  # no tokens: kept
    ]
    result = run(rows)
    assert kept_lines(result, "model_usage_log") == [3, 4]
    assert result.calls.height == 4


def test_the_same_entry_from_the_jsonl_and_the_store_is_one_call():
    a = rec("transcript", T0, agent="main", entry="abcd0001")
    b = {
        **a,
        "source": "transcript_store",
        "source_file": "agents/main/agent/openclaw-agent.sqlite",
        "line_no": 7,
    }
    c = rec("transcript", T0 + timedelta(seconds=5), agent="main", entry="abcd0002")
    result = run([b, a, c])  # order of the input does not matter: the preferred source wins
    assert sorted(result.calls.get_column("source").to_list()) == ["transcript", "transcript_store"]
    assert result.dropped.get_column("rule").to_list() == ["same_call_id"]


# ----------------------------------------------------------------------------------------------------
# must show: a home whose interactions.db copies a third of the transcript calls and adds its own


def transcript_calls(files: list[Path]) -> list[dict]:
    """Every model call straight from the JSON, without project code."""
    out = []
    for f in files:
        lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        sid = next(x["id"] for x in lines if x.get("type") == "session")
        for x in lines:
            m = x.get("message") or {}
            if x.get("type") != "message" or m.get("role") != "assistant" or m.get("provider") == "openclaw":
                continue
            u = m["usage"]
            out.append(
                {
                    "session": sid,
                    "ms": m["timestamp"],
                    "entry_iso": x["timestamp"],
                    "provider": m["provider"],
                    "model": m["model"],
                    "stop": m.get("stopReason"),
                    "input": u["input"],
                    "output": u["output"],
                    "cache": u["cacheRead"] + u["cacheWrite"],
                }
            )
    return out


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def build_migrated_home(home: Path) -> dict[str, int]:
    """Real transcripts + an interactions.db that copies every third call (some twice, times written three
    ways, prompt tokens as uncached input or whole prompt) and logs calls of its own, + a backup log that
    repeats some DB calls and has its own. Returns the expected per-day token totals of distinct calls."""
    h.copy_real_home(home)
    calls = transcript_calls(sorted(h.REAL_DIR.glob("*.jsonl")))
    expected: dict[str, int] = defaultdict(int)
    for c in calls:
        expected[utc(c["ms"]).date().isoformat()] += c["input"] + c["output"] + c["cache"]
    rows = []
    for i, c in enumerate(calls[::3]):
        t = utc(c["ms"])
        ts = [c["entry_iso"], t.strftime("%Y-%m-%d %H:%M:%S"), t.isoformat()][i % 3]
        status = {"error": "error", "aborted": "aborted"}.get(c["stop"], "success")
        copy = {
            "timestamp": ts,
            "provider": c["provider"],
            "model": c["model"],
            "session_id": c["session"],
            "prompt_tokens": c["input"] + (c["cache"] if i % 2 else 0),
            "completion_tokens": c["output"],
            "status": status,
            "created_at": "2026-01-20T00:00:00Z",
        }
        rows.append(copy)
        if i % 4 == 0:
            rows.append(dict(copy))  # the script ran again
    days = sorted(expected)
    own = []
    for i in range(24):
        t = datetime.fromisoformat(days[i % len(days)]).replace(hour=(i * 5) % 24, minute=i, tzinfo=UTC)
        own.append(
            {
                "timestamp": t.isoformat().replace("+00:00", "Z"),
                "provider": "anthropic",
                "model": "claude-haiku-4-5",
                "session_id": f"cron-{i % 3}",
                "prompt_tokens": 500 + 37 * i,
                "completion_tokens": 40 + i,
                "status": "rate_limit" if i % 7 == 0 else "success",
                "task_type": "automation",
            }
        )
        expected[t.date().isoformat()] += (500 + 37 * i) + (40 + i)
    rows += own + [dict(own[1]), dict(own[2])]  # exact repeats inside the DB
    make_db(home / "data" / "interactions.db", PLAN, rows)
    log = []
    for o in own[:6]:  # the backup log saw six of the DB's own calls, a few seconds later
        t = datetime.fromisoformat(o["timestamp"].replace("Z", "+00:00")) + timedelta(seconds=2)
        log.append(
            {
                "timestamp": t.isoformat(),
                "model": f"anthropic/{o['model']}",
                "tokens_in": o["prompt_tokens"],
                "tokens_out": o["completion_tokens"],
                "task_type": "automation",
                "description": "x",
                "estimated_cost": 0.001,
            }
        )
    for i in range(5):  # and five calls nobody else knows
        t = datetime.fromisoformat(days[-1]).replace(hour=20, minute=i, tzinfo=UTC)
        log.append(
            {
                "timestamp": t.isoformat(),
                "model": "openai/gpt-5.1",
                "tokens_in": 1234 + i,
                "tokens_out": 56,
                "task_type": "planning",
                "description": "y",
                "estimated_cost": 0.01,
            }
        )
        expected[t.date().isoformat()] += 1234 + i + 56
    (home / "logs").mkdir()
    (home / "logs" / "model-usage.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log))
    return {
        "transcript": len(calls),
        "db_copies": len(calls[::3]),
        "db_rows": len(rows),
        "db_own": len(own),
        "log_own": 5,
        "log_rows": len(log),
        **{f"day:{d}": n for d, n in expected.items()},
    }


@pytest.mark.skipif(not h.REAL_DIR.exists(), reason="shared/real not present")
def test_every_call_exactly_once_and_daily_tokens_equal_the_sum_over_distinct_calls(tmp_path, refresh):
    home, data = tmp_path / "home", tmp_path / "data"
    want = build_migrated_home(home)
    result = refresh(home, data, raise_on_error=False)
    for step in ("source_records", "day_tables"):
        assert result.is_node_success(step), step
    io = Tables(data)
    calls = io.load("llm_calls")

    by_source = dict(calls.group_by("source").agg(pl.len()).iter_rows())
    assert by_source == {
        "transcript": want["transcript"],
        "interactions_db": want["db_own"],
        "model_usage_log": want["log_own"],
    }
    assert calls.get_column("call_id").n_unique() == calls.height
    daily = {d.isoformat(): n for d, n in calls.group_by("day").agg(pl.col("total_tokens").sum()).iter_rows()}
    assert daily == {k.split(":", 1)[1]: v for k, v in want.items() if k.startswith("day:")}
    # the DB's own rate-limited calls are calls with their class
    own = calls.filter(pl.col("source") == "interactions_db")
    assert own.filter(pl.col("error_class") == "rate_limit").height == len(
        [i for i in range(24) if i % 7 == 0]
    )

    files = pl.read_parquet(data / "parquet" / "source_files" / "source_files.parquet")
    assert files.get_column("balanced").all()
    db = files.filter(pl.col("source_file") == "data/interactions.db").row(0, named=True)
    assert db["lines_read"] == want["db_rows"]
    assert db["duplicates"] == want["db_rows"] - want["db_own"]
    log = files.filter(pl.col("source") == "model_usage_log").row(0, named=True)
    assert (log["lines_read"], log["duplicates"]) == (want["log_rows"], want["log_rows"] - want["log_own"])

    meta = {m.asset_key.to_user_string(): m for m in result.asset_materializations_for_node("day_tables")}[
        "source_files"
    ].metadata
    assert meta["duplicates_dropped_interactions_db"].value == want["db_rows"] - want["db_own"]
    assert meta["duplicates_dropped_model_usage_log"].value == want["log_rows"] - want["log_own"]


@pytest.mark.skipif(not h.REAL_DIR.exists(), reason="shared/real not present")
def test_a_broken_database_fails_its_check_and_the_run_goes_on(tmp_path, refresh):
    home, data = tmp_path / "home", tmp_path / "data"
    h.copy_real_home(home)
    (home / "data").mkdir()
    (home / "data" / "interactions.db").write_bytes(b"SQLite format 3\x00" + b"\x13" * 4000)
    result = refresh(home, data, raise_on_error=False)
    assert result.is_node_success("source_records") and result.is_node_success("day_tables")
    checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    readable = {c.asset_key.path[-1]: c for c in checks if c.check_name == "source_readable"}
    assert readable["interactions_db_records"].passed is False
    assert readable["model_usage_log_records"].passed is True  # absent: skipped, not broken
    problems = json.loads((data / "staging" / "interactions_db_records" / "problems.json").read_text())
    assert len(problems) == 1 and problems[0].startswith("data/interactions.db: ")
    calls = Tables(data).load("llm_calls")
    assert calls.height == len(transcript_calls(sorted(h.REAL_DIR.glob("*.jsonl"))))
