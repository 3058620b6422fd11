"""The transcript reader on real and real-format files: what counts, what is skipped, what is quarantined."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from mc_pipeline.ingest.readers.home import classify_name, discover_transcripts
from mc_pipeline.ingest.readers.transcript_files import read_transcripts
from mc_pipeline.ingest.readers.transcripts import parse_transcript
from mc_pipeline_tests import homes as h

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
needs_real = pytest.mark.skipif(not h.REAL_DIR.exists(), reason="shared/real not present")


def parse(lines, **kw):
    data = b"".join((json.dumps(x).encode() if isinstance(x, dict) else x) + b"\n" for x in lines)
    return parse_transcript(data, rel="agents/main/sessions/s.jsonl", agent_id="main", session_id="s", **kw)


def balanced(chunk) -> bool:
    return (
        chunk.lines_read == chunk.n_calls + chunk.other_entries + chunk.skipped_by_rule + chunk.n_quarantined
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("abc.jsonl", ("live", "abc")),
        ("abc-topic-42.jsonl", ("topic", "abc")),
        ("abc.jsonl.reset.2026-03-01T12-00-00.000Z", ("reset", "abc")),
        ("abc.jsonl.deleted.2026-03-01T12-00-00.000Z", ("deleted", "abc")),
        ("abc.jsonl.bak.2026-03-01T12-00-00.000Z", None),
        ("abc.jsonl.lock", None),
        ("sessions.json", None),
        ("sessions.json.bak", None),
        ("notes.txt", None),
    ],
)
def test_file_names_decide_what_counts(name, expected):
    assert classify_name(name) == expected


def test_discovery_counts_archives_and_skips_backups(tmp_path):
    d = h.sessions_dir(tmp_path)
    for name in [
        "a.jsonl",
        "a-topic-1.jsonl",
        "b.jsonl.reset.2026-03-01T12-00-00.000Z",
        "c.jsonl.deleted.2026-03-01T12-00-00.000Z",
        "a.jsonl.bak.2026-03-01T12-00-00.000Z",
        "a.jsonl.lock",
        "sessions.json",
    ]:
        (d / name).write_text("")
    found = discover_transcripts(tmp_path)
    assert sorted(f.kind for f in found.files) == ["deleted", "live", "reset", "topic"]
    assert found.skipped == {"backup copy (.bak)": 1, "lock file": 1, "session index": 1}
    assert all(not f.rel.startswith("/") and f.rel.startswith("agents/main/sessions/") for f in found.files)


@needs_real
def test_real_transcripts_match_their_readme():
    big = parse_transcript(
        (h.REAL_DIR / "before-compaction.jsonl").read_bytes(), rel="x", agent_id="a", session_id="s"
    )
    assert big.fast_path and balanced(big) and big.n_quarantined == 0
    assert big.n_calls == 484
    stops = dict(big.calls.group_by("stop_reason").len().iter_rows())
    assert stops["aborted"] == 18 and stops["error"] == 1
    assert set(big.calls.get_column("model")) == {"claude-opus-4-5"}

    large = parse_transcript(
        (h.REAL_DIR / "large-session.jsonl").read_bytes(), rel="x", agent_id="a", session_id="s"
    )
    assert large.n_calls == 453 and balanced(large)
    models = dict(large.calls.group_by("model").len().iter_rows())
    assert models == {"claude-sonnet-4-5": 452, "gpt-5.1-codex": 1}
    # v1 files: no entry ids, no totalTokens; the session id comes from the header line
    assert large.calls.get_column("entry_id").null_count() == 453
    assert large.session_id == "d703a1a9-1b7b-4fb1-b512-c9738b1fe617"


@needs_real
def test_slow_path_reads_the_same_calls_as_the_fast_path():
    data = (h.REAL_DIR / "before-compaction.jsonl").read_bytes()
    fast = parse_transcript(data, rel="x", agent_id="a", session_id="s")
    lines = data.split(b"\n")
    lines.insert(5, b"")  # a blank line forces the line-by-line path
    slow = parse_transcript(b"\n".join(lines), rel="x", agent_id="a", session_id="s")
    assert fast.fast_path and not slow.fast_path
    assert slow.skipped_by_rule == 1 and balanced(slow)
    assert slow.calls.drop("line_no").equals(fast.calls.drop("line_no"))


def test_bookkeeping_rows_are_skipped_not_counted():
    chunk = parse([h.session_line("s1", T0), h.user(T0), h.mirror(T0), h.assistant(T0)])
    assert chunk.n_calls == 1 and chunk.skipped_by_rule == 1 and chunk.other_entries == 2
    assert chunk.calls.get_column("provider").to_list() == ["anthropic"]
    assert chunk.session_id == "s1"


def test_unknown_entry_types_and_keys_are_skipped_by_rule():
    odd = {"type": "future_thing", "id": "abcd1234", "timestamp": h.iso(T0), "payload": {"x": 1}}
    extra = h.assistant(T0)
    extra["message"]["brandNewKey"] = {"nested": [1, 2]}
    chunk = parse([odd, extra])
    assert chunk.n_calls == 1 and chunk.skipped_by_rule == 1 and balanced(chunk)


def test_failed_and_aborted_calls_are_calls():
    chunk = parse(
        [
            h.assistant(
                T0,
                stop="error",
                u=h.usage(0, 0),
                error='429 {"type":"error","error":{"type":"rate_limit_error"}}',
                text="",
            ),
            h.assistant(
                T0 + timedelta(seconds=5),
                stop="aborted",
                u=h.usage(0, 0),
                error="Request was aborted.",
                text="",
            ),
        ]
    )
    assert chunk.calls.get_column("stop_reason").to_list() == ["error", "aborted"]
    assert chunk.calls.get_column("error_message").to_list()[0].startswith("429")


def test_tools_and_thinking_are_read_from_content():
    chunk = parse([h.assistant(T0, tools=("read", "exec", "exec"), thinking="x" * 401, u=h.usage(10, 500))])
    row = chunk.calls.row(0, named=True)
    assert row["tool_names"] == ["read", "exec", "exec"]
    assert row["thinking_chars"] == 401 and row["thinking_redacted"] is False
    red = parse([h.assistant(T0, redacted=True)]).calls.row(0, named=True)
    assert red["thinking_redacted"] is True and red["thinking_chars"] == 0


def test_user_content_as_string_or_blocks_stays_on_the_fast_path():
    chunk = parse([h.user(T0, as_string=True), h.user(T0, as_string=False), h.assistant(T0)])
    assert chunk.fast_path and chunk.n_calls == 1


def test_call_time_prefers_message_timestamp_and_falls_back_to_entry_time():
    a = h.assistant(T0, entry_ts=T0 + timedelta(seconds=7))
    b = h.assistant(T0 + timedelta(minutes=1))
    del b["message"]["timestamp"]
    c = h.assistant(T0 + timedelta(minutes=2))
    c["message"]["timestamp"] = 12  # 1970: implausible, so the entry time is used
    ts = parse([a, b, c]).calls.get_column("timestamp").to_list()
    assert ts[0] == T0
    assert ts[1] == T0 + timedelta(minutes=1, seconds=2)
    assert ts[2] == T0 + timedelta(minutes=2, seconds=2)


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b'{"type":"message","message":{"role":"assist', "truncated last line"),
        (b"this is not json", "not valid JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"just a string"', "not a JSON object"),
        (b'{"type":"message","message":{"role":"assistant","usage":{"input":"12"}}}', "expected an integer"),
        (b'{"type":"message","message":{"role":"assistant","usage":{"input":NaN}}}', "expected an integer"),
        (b'{"type":"message","message":{"role":"assistant","usage":{"input":1.5}}}', "expected an integer"),
        (
            b'{"type":"message","message":{"role":"assistant","usage":{"output":1e300}}}',
            "expected an integer",
        ),
        (b'{"type":"message","message":"hello"}', "expected an object"),
        (b'{"type":"message","message":{"role":"assistant"}}\xff\xfe', "invalid UTF-8"),
    ],
)
def test_malformed_lines_are_quarantined_with_file_line_and_reason(bad, reason):
    good = json.dumps(h.assistant(T0)).encode()
    data = (
        good
        + b"\n"
        + bad
        + (b"" if reason.startswith("truncated") else b"\n" + good.replace(b'"id": "', b'"id": "z'))
    )
    chunk = parse_transcript(data, rel="agents/main/sessions/s.jsonl", agent_id="main", session_id="s")
    assert chunk.n_quarantined == 1, chunk.quarantine
    q = chunk.quarantine.row(0, named=True)
    assert q["line_no"] == 2 and q["source_file"] == "agents/main/sessions/s.jsonl"
    assert reason in q["reason"]
    assert len(q["excerpt"]) <= 200
    assert chunk.n_calls == (1 if reason.startswith("truncated") else 2)
    assert balanced(chunk)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda a: a["message"]["usage"].update(input=-5), "negative token count"),
        (lambda a: a["message"]["usage"].update(output=5_000_000_000), "implausible token count"),
        (lambda a: a["message"].pop("model"), "without a model"),
        (
            lambda a: (a["message"].pop("timestamp"), a.update(timestamp="yesterday")),
            "no plausible timestamp",
        ),
        (lambda a: a["message"].pop("usage"), "without usage"),
    ],
)
def test_semantically_bad_calls_are_quarantined_on_the_fast_path(mutate, reason):
    bad = h.assistant(T0)
    mutate(bad)
    chunk = parse([h.assistant(T0), bad])
    assert chunk.fast_path
    assert chunk.n_calls == 1 and chunk.n_quarantined == 1 and balanced(chunk)
    q = chunk.quarantine.row(0, named=True)
    assert q["line_no"] == 2 and reason in q["reason"] and q["excerpt"].startswith("{")


def test_failed_call_without_usage_is_still_a_call():
    failed = h.assistant(T0, stop="error", error="fetch failed", text="")
    del failed["message"]["usage"]
    chunk = parse([failed])
    assert chunk.n_calls == 1 and chunk.calls.get_column("input_tokens").to_list() == [0]


def test_empty_file_and_offsets(tmp_path):
    assert parse_transcript(b"", rel="x", agent_id="a", session_id="s").lines_read == 0
    chunk = parse([h.assistant(T0)], first_line=41)
    assert chunk.calls.get_column("line_no").to_list() == [41]


def test_read_transcripts_over_a_home(tmp_path):
    h.write_session(tmp_path, [h.session_line("s1", T0), h.assistant(T0)], session_id="s1")
    h.write_session(
        tmp_path,
        [h.session_line("s2", T0), h.assistant(T0)],
        session_id="s2",
        suffix=".reset.2026-03-02T00-00-00.000Z",
    )
    h.write_session(
        tmp_path,
        [h.session_line("s1", T0), h.assistant(T0)],
        session_id="s1",
        suffix=".bak.2026-03-02T00-00-00.000Z",
    )
    h.write_session(tmp_path, [h.session_line("s3", T0), h.assistant(T0)], agent="ops", session_id="s3")
    batch = read_transcripts(tmp_path)
    assert batch.records.height == 3
    assert sorted(batch.records.get_column("agent_id").unique()) == ["main", "ops"]
    counts = batch.file_counts
    assert counts.height == 3
    assert (
        counts["lines_read"]
        == counts["calls"] + counts["other_entries"] + counts["skipped_by_rule"] + counts["quarantined"]
    ).all()
    assert batch.records.schema["timestamp"] == pl.Datetime("us", "UTC")
