"""records -> llm_calls: identity, day, thinking, billing, task type, price, de-duplication, validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from mc_pipeline.calls.llm_calls import build_llm_calls, with_thinking
from mc_pipeline.costing.billing import read_auth_profiles
from mc_pipeline.costing.task_types import load_task_rules
from mc_pipeline.ingest.readers.session_index import parse_session_key, read_session_index
from mc_pipeline.ingest.readers.transcript_files import read_transcripts
from mc_pipeline.ingest.readers.transcripts import parse_transcript
from mc_pipeline.tables.schemas import LLM_CALLS
from mc_pipeline_tests import homes as h

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def build(home, tz="UTC", mode="auto"):
    batch = read_transcripts(home)
    index, _ = read_session_index(home)
    auth = read_auth_profiles(home)
    return build_llm_calls(
        batch.records, session_index=index, auth=auth, task_rules=load_task_rules(), tz=tz, cost_mode=mode
    )


def records(lines):
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    return parse_transcript(data, rel="agents/main/sessions/s.jsonl", agent_id="main", session_id="s").calls


def test_schema_and_types_follow_the_contract(tmp_path):
    h.write_session(
        tmp_path, [h.session_line("s1", T0), h.user(T0), h.assistant(T0, u=h.usage(10, 20, 30, 40))]
    )
    calls = build(tmp_path).calls
    assert calls.schema == pl.Schema(LLM_CALLS)
    row = calls.row(0, named=True)
    assert row["total_tokens"] == 100
    assert row["call_id"].startswith("main/s1/")
    assert row["status"] == "ok" and row["error_class"] is None


def test_day_is_in_the_reporting_zone(tmp_path):
    late = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    h.write_session(tmp_path, [h.session_line("s1", late), h.assistant(late)])
    assert build(tmp_path, tz="UTC").calls.get_column("day").to_list() == [late.date()]
    assert build(tmp_path, tz="Europe/Berlin").calls.get_column("day").to_list() == [
        late.date() + timedelta(days=1)
    ]
    assert build(tmp_path, tz="America/New_York").calls.get_column("day").to_list() == [late.date()]


def test_a_call_in_a_live_file_and_its_reset_archive_is_counted_once(tmp_path):
    lines = [h.session_line("s1", T0), h.assistant(T0), h.assistant(T0 + timedelta(minutes=1))]
    h.write_session(tmp_path, lines, session_id="s1")
    h.write_session(tmp_path, lines, session_id="s1", suffix=".reset.2026-03-02T00-00-00.000Z")
    built = build(tmp_path)
    assert built.calls.height == 2
    assert built.duplicates.get_column("duplicates").sum() == 2


def test_v1_calls_without_ids_get_stable_distinct_ids(tmp_path):
    lines = [h.session_line("s1", T0, v1=True)] + [
        h.assistant(T0 + timedelta(seconds=i), v1=True) for i in range(3)
    ]
    h.write_session(tmp_path, lines, session_id="s1")
    first = build(tmp_path).calls.get_column("call_id").to_list()
    assert len(set(first)) == 3
    assert build(tmp_path).calls.get_column("call_id").to_list() == first


def test_thinking_recorded_estimated_redacted_and_absent():
    rec = records(
        [
            h.assistant(T0, u=h.usage(1, 300, reasoning=120), thinking="x" * 40),
            h.assistant(T0, u=h.usage(1, 300), thinking="y" * 401),
            h.assistant(T0, u=h.usage(1, 50), thinking="z" * 4000),  # estimate capped at output
            h.assistant(T0, u=h.usage(1, 300), redacted=True),
            h.assistant(T0, u=h.usage(1, 300)),
        ]
    )
    out = with_thinking(rec).select("thinking_tokens", "thinking_estimated").rows()
    assert out == [(120, False), (101, True), (50, True), (None, False), (0, False)]


def test_failed_calls_carry_class_and_http_status(tmp_path):
    lines = [
        h.session_line("s1", T0),
        h.assistant(
            T0,
            stop="error",
            u=h.usage(0, 0),
            text="",
            error='529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
        ),
        h.assistant(
            T0 + timedelta(seconds=1),
            stop="error",
            u=h.usage(0, 0),
            text="",
            error="You have hit your ChatGPT usage limit (plus plan). Try again in ~12 min.",
            provider="openai-codex",
            model="gpt-5.1-codex",
            api="openai-codex-responses",
        ),
        h.assistant(
            T0 + timedelta(seconds=2), stop="aborted", u=h.usage(0, 0), text="", error="Request was aborted."
        ),
    ]
    h.write_session(tmp_path, lines, session_id="s1")
    calls = build(tmp_path).calls.sort("timestamp")
    assert calls.select("status", "error_class", "http_status").rows() == [
        ("error", "overloaded", 529),
        ("error", "rate_limit", None),
        ("aborted", "aborted", None),
    ]


def test_session_keys_decide_trigger_and_task_type(tmp_path):
    h.write_session(tmp_path, [h.session_line("c1", T0), h.assistant(T0, tools=("exec",))], session_id="c1")
    h.write_session(tmp_path, [h.session_line("d1", T0), h.assistant(T0, tools=("exec",))], session_id="d1")
    h.write_sessions_index(
        tmp_path, "main", {"cron:nightly-report": "c1", "agent:main:telegram:direct:+4915112345678": "d1"}
    )
    calls = build(tmp_path).calls.sort("session_id")
    assert calls.select("session_id", "trigger", "channel", "cron_job_id", "task_type").rows() == [
        ("c1", "cron", None, "nightly-report", "automation"),
        ("d1", "direct", "telegram", None, "coding"),
    ]


@pytest.mark.parametrize(
    "key, expected",
    [
        ("agent:main:main", ("main", None, None)),
        ("agent:main:whatsapp:direct:+4915112345678", ("direct", "whatsapp", None)),
        ("agent:main:discord:group:123", ("group", "discord", None)),
        ("cron:job-7", ("cron", None, "job-7")),
        ("agent:main:cron:job-7", ("cron", None, "job-7")),
        ("hook:0f8b", ("hook", None, None)),
        ("agent:main:main:heartbeat", ("heartbeat", None, None)),
        ("something-else", ("other", None, None)),
    ],
)
def test_session_key_parsing(key, expected):
    assert parse_session_key(key) == expected


def test_billing_follows_auth_profiles(tmp_path):
    h.write_session(
        tmp_path,
        [
            h.session_line("s1", T0),
            h.assistant(T0),
            h.assistant(T0 + timedelta(seconds=1), provider="openai-codex", model="gpt-5.1-codex"),
        ],
        session_id="s1",
    )
    assert sorted(build(tmp_path).calls.get_column("billing").to_list()) == ["subscription", "unknown"]
    h.write_auth_profiles(tmp_path, "main", {"anthropic:default": {"type": "oauth", "provider": "anthropic"}})
    assert build(tmp_path).calls.get_column("billing").to_list() == ["subscription", "subscription"]
    h.write_auth_profiles(
        tmp_path, "main", {"anthropic:default": {"type": "api_key", "provider": "anthropic"}}
    )
    assert sorted(build(tmp_path).calls.get_column("billing").to_list()) == ["api", "subscription"]


def test_cost_modes_and_unpriced_models(tmp_path):
    priced = h.assistant(T0, u=h.usage(1000, 1000, cost=0.5))
    unpriced = h.assistant(
        T0 + timedelta(seconds=1), provider="my-gateway", model="house-model-9", u=h.usage(1000, 1000)
    )
    zero_priced = h.assistant(T0 + timedelta(seconds=2), u=h.usage(1000, 1000))
    h.write_session(tmp_path, [h.session_line("s1", T0), priced, unpriced, zero_priced], session_id="s1")
    auto = build(tmp_path, mode="auto").calls.sort("timestamp")
    assert auto.get_column("cost_source").to_list() == ["recorded", "unpriced", "calculated"]
    assert auto.get_column("cost_usd").to_list()[0] == 0.5
    assert auto.get_column("cost_usd").to_list()[1] is None  # never a silent $0
    assert auto.get_column("cost_usd").to_list()[2] > 0
    display = build(tmp_path, mode="display").calls.sort("timestamp")
    assert display.get_column("cost_usd").to_list() == [0.5, 0.0, 0.0]
    calc = build(tmp_path, mode="calculate").calls.sort("timestamp")
    assert calc.get_column("cost_source").to_list() == ["calculated", "unpriced", "calculated"]
    assert calc.get_column("cost_usd").to_list()[0] == calc.get_column("cost_usd").to_list()[2]


def test_rows_breaking_the_contract_are_rejected_with_the_failed_check(tmp_path):
    h.write_session(tmp_path, [h.session_line("s1", T0), h.assistant(T0)], session_id="s1")
    batch = read_transcripts(tmp_path)
    bad = batch.records.with_columns(source=pl.lit("somewhere-else"))
    both = pl.concat([batch.records, bad.with_columns(entry_id=pl.lit("other"))])
    index, _ = read_session_index(tmp_path)
    built = build_llm_calls(
        both, session_index=index, auth={}, task_rules=load_task_rules(), tz="UTC", cost_mode="auto"
    )
    assert built.calls.height == 1
    assert built.rejected.height == 1
    assert (
        "isin" in built.rejected.get_column("reason")[0]
        and "source" in built.rejected.get_column("reason")[0]
    )
