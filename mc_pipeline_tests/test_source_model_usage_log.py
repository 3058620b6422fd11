"""logs/model-usage.jsonl: provider/model split, tokens, task type, malformed lines, line accounting."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from mc_pipeline.ingest.readers.model_usage_log import read_model_usage_log

DESCRIPTION = "summarise the email from +4915112345678 about the contract"


def entry(
    ts="2026-03-01T08:00:00Z", model="anthropic/claude-opus-4-6", tin=1000, tout=100, task="coding", cost=0.05
):
    return {
        "timestamp": ts,
        "model": model,
        "tokens_in": tin,
        "tokens_out": tout,
        "task_type": task,
        "description": DESCRIPTION,
        "estimated_cost": cost,
    }


def write_log(home: Path, lines: list) -> Path:
    path = home / "logs" / "model-usage.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_entries_become_call_records(tmp_path):
    path = write_log(
        tmp_path,
        [
            entry(),
            entry(ts="2026-03-01 10:15:00", model="openrouter/minimax/minimax-m2.1", tin=50, tout=5, task=""),
            entry(
                ts="2026-03-01T11:00:00.5+01:00",
                model="openai/gpt-5.1-codex",
                tin=7.0,
                tout=3,
                task="testing",
            ),
        ],
    )
    batch = read_model_usage_log(path, tmp_path, tz="UTC")
    rec = batch.records.sort("line_no")
    assert batch.quarantine.height == 0 and batch.problems == []
    assert rec.select("provider", "model").rows() == [
        ("anthropic", "claude-opus-4-6"),
        ("openrouter", "minimax/minimax-m2.1"),
        ("openai", "gpt-5.1-codex"),
    ]
    assert rec.get_column("input_tokens").to_list() == [1000, 50, 7]
    assert rec.get_column("output_tokens").to_list() == [100, 5, 3]
    assert rec.get_column("given_task_type").to_list() == ["coding", None, "testing"]
    assert rec.get_column("timestamp").to_list() == [
        datetime(2026, 3, 1, 8, tzinfo=UTC),
        datetime(2026, 3, 1, 10, 15, tzinfo=UTC),
        datetime(2026, 3, 1, 10, 0, 0, 500000, tzinfo=UTC),
    ]
    # the script's estimate is not a recorded cost: the price table decides
    assert rec.get_column("cost_recorded_usd").null_count() == 3
    assert rec.get_column("source").unique().to_list() == ["model_usage_log"]
    assert rec.get_column("source_file").unique().to_list() == ["logs/model-usage.jsonl"]
    assert not any(DESCRIPTION in str(v) for v in rec.rows())


def test_naive_times_are_read_in_the_reporting_zone(tmp_path):
    path = write_log(tmp_path, [entry(ts="2026-03-01 10:15:00")])
    rec = read_model_usage_log(path, tmp_path, tz="America/New_York").records
    assert rec.get_column("timestamp").to_list() == [datetime(2026, 3, 1, 15, 15, tzinfo=UTC)]


def test_malformed_lines_are_quarantined_and_every_line_is_accounted_for(tmp_path):
    lines = [
        entry(),
        "",
        '{"timestamp": "2026-03-01T08:00:00Z", "model": "anthropic/x", "description": "'
        + DESCRIPTION
        + '", "tok',
        entry(model="claude-opus-4-6"),
        entry(tin=-5),
        entry(tin="many"),
        entry(ts="yesterday"),
        "[1, 2]",
        {
            "timestamp": "2026-03-01T09:00:00Z",
            "model": "anthropic/claude-opus-4-6",
            "description": DESCRIPTION,
        },
        entry(tin=None, tout=0, ts="2026-03-01T12:00:00Z"),
    ]
    path = write_log(tmp_path, lines)
    batch = read_model_usage_log(path, tmp_path)
    q = batch.quarantine
    assert q.get_column("line_no").to_list() == [3, 4, 5, 6, 7, 8, 9]
    reasons = dict(zip(q.get_column("line_no").to_list(), q.get_column("reason").to_list()))
    assert reasons[3].startswith("not valid JSON")
    assert reasons[4] == "model has no provider/ prefix"
    assert reasons[5] == "negative token count"
    assert "tokens_in" in reasons[6]
    assert "timestamp" in reasons[7]
    assert "not a JSON object" in reasons[8]
    assert reasons[9] == "no token counts"
    assert not any(DESCRIPTION in e for e in q.get_column("excerpt").to_list())
    assert batch.records.get_column("line_no").to_list() == [1, 10]
    c = batch.file_counts.row(0, named=True)
    assert c["lines_read"] == len(lines)
    assert c["lines_read"] == c["calls"] + c["skipped_by_rule"] + c["quarantined"] + c["other_entries"]
    assert c["skipped_by_rule"] == 1


def test_token_counts_outside_zero_to_the_cap_are_quarantined(tmp_path):
    """The transcripts' cap (MAX_TOKENS) applies; counts beyond int64 (which made the run fail) are
    quarantined like any implausible count; written as floats too."""
    from mc_pipeline.ingest.readers.transcripts import MAX_TOKENS

    over = f"implausible token count (over {MAX_TOKENS:,})"
    cases = [
        (MAX_TOKENS, None),
        (MAX_TOKENS + 1, over),
        (float(MAX_TOKENS) * 2, over),
        (2**70, over),
        (1e308, over),
        (-(2**70), "negative token count"),
        (-1.0, "negative token count"),
        (0, None),
    ]
    pairs = [(1, v) if i % 2 else (v, 1) for i, (v, _) in enumerate(cases)]  # the odd value in either field
    batch = read_model_usage_log(write_log(tmp_path, [entry(tin=a, tout=b) for a, b in pairs]), tmp_path)
    q = batch.quarantine
    assert dict(zip(q.get_column("line_no").to_list(), q.get_column("reason").to_list())) == {
        n: why for n, (_, why) in enumerate(cases, 1) if why
    }
    assert batch.records.select("line_no", "input_tokens", "output_tokens").rows() == [
        (n, *pairs[n - 1]) for n, (_, why) in enumerate(cases, 1) if not why
    ]


def test_an_unreadable_log_is_a_problem(tmp_path):
    path = tmp_path / "logs" / "model-usage.jsonl"
    path.mkdir(parents=True)  # a directory where the file should be
    batch = read_model_usage_log(path, tmp_path)
    assert batch.records.height == 0
    assert len(batch.problems) == 1 and batch.problems[0].startswith("logs/model-usage.jsonl: cannot read")
    assert pl.DataFrame(batch.file_counts).height == 0


def test_a_line_gets_the_agent_its_caller_or_agent_field_names(tmp_path):
    (tmp_path / "agents" / "coder" / "sessions").mkdir(parents=True)
    path = write_log(
        tmp_path,
        [
            {**entry(tin=1), "caller": "agent:ops:main"},
            {**entry(tin=2), "agent": "coder"},
            {**entry(tin=3), "caller": "nightly.sh"},
            entry(tin=4),
        ],
    )
    got = read_model_usage_log(path, tmp_path).records.sort("input_tokens")
    assert got.get_column("agent_id").to_list() == ["ops", "coder", None, None]
