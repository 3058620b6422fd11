"""Property-based tests of the transcript line parser (``parse_transcript``) with hypothesis.

Whatever bytes a transcript holds, the parser must not raise, must account for every line
(lines_read = calls + other + skipped + quarantined) and must keep every well-formed model call that
sits among the garbage, with the tokens it recorded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mc_pipeline.ingest.readers.transcripts import parse_transcript
from mc_pipeline_tests import homes as h

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 10, tzinfo=UTC)
REL = "agents/main/sessions/fuzz.jsonl"

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run and in CI: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large],
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=12,
)

# keys the parser reads, so that wrong types land exactly where they hurt
FIELDS = [
    ("type",),
    ("id",),
    ("timestamp",),
    ("message",),
    ("message", "role"),
    ("message", "provider"),
    ("message", "model"),
    ("message", "timestamp"),
    ("message", "durationMs"),
    ("message", "stopReason"),
    ("message", "errorMessage"),
    ("message", "content"),
    ("message", "usage"),
    ("message", "usage", "input"),
    ("message", "usage", "output"),
    ("message", "usage", "cacheRead"),
    ("message", "usage", "cost"),
    ("message", "usage", "cost", "total"),
]
odd_values = json_values | st.sampled_from(
    [-1, 2**70, -(2**70), 1.5, 1e308, "NaN", "", "2026-03-01T12:00:00Z", 0, 1772366400000, [], {}, True]
)


@st.composite
def good_call(draw, n: int) -> tuple[dict, dict]:
    """A well-formed assistant entry (unique id ``good<n>``) and the tokens it must be read with."""
    tokens = {
        "input_tokens": draw(st.integers(0, 300_000)),
        "output_tokens": draw(st.integers(0, 64_000)),
        "cache_read_tokens": draw(st.integers(0, 300_000)),
        "cache_write_tokens": draw(st.integers(0, 100_000)),
    }
    ts = T0 + timedelta(seconds=draw(st.integers(0, 86_400 * 5)))
    line = h.assistant(
        ts,
        u=h.usage(
            tokens["input_tokens"],
            tokens["output_tokens"],
            tokens["cache_read_tokens"],
            tokens["cache_write_tokens"],
            cost=draw(st.floats(0, 5)),
        ),
        stop=draw(st.sampled_from(["stop", "toolUse", "length"])),
        tools=tuple(draw(st.lists(st.sampled_from(["read", "exec", "edit"]), max_size=3))),
        thinking=draw(st.none() | st.text(max_size=40)),
        text=draw(st.text(max_size=40)),
    )
    line["id"] = f"good{n:04d}"
    if draw(st.booleans()):  # an ISO entry time only, no ms time in the message
        del line["message"]["timestamp"]
    return line, tokens


@st.composite
def garbage_line(draw, n: int) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "truncated", "other", "blank"]))
    if kind == "bytes":
        return draw(st.binary(max_size=80)).replace(b"\n", b" ")
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    base = h.assistant(T0, u=h.usage(10, 10))
    base["id"] = f"junk{n:04d}"  # never a planted good id
    if kind == "mutated":  # one field the parser reads gets a random, often wrong-typed, value
        path = draw(st.sampled_from(FIELDS))
        target = base
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[path[-1]] = draw(odd_values)
        return json.dumps(base).encode()
    if kind == "truncated":  # a proper prefix of a JSON object is never valid JSON
        text = json.dumps(base).encode()
        return text[: draw(st.integers(1, len(text) - 1))]
    if kind == "other":
        return json.dumps(draw(st.sampled_from([h.user(T0), h.tool_result(T0), h.mirror(T0)]))).encode()
    return draw(st.sampled_from([b"", b"   ", b"\t"]))


@st.composite
def transcript(draw) -> tuple[bytes, dict[str, dict]]:
    n = draw(st.integers(0, 25))
    lines: list[bytes] = []
    planted: dict[str, dict] = {}
    if draw(st.booleans()):
        lines.append(json.dumps(h.session_line("fuzz-session", T0)).encode())
    for i in range(n):
        if draw(st.booleans()):
            line, tokens = draw(good_call(i))
            planted[line["id"]] = tokens
            raw = json.dumps(line).encode()
            if draw(st.integers(0, 9)) == 0:
                raw += b"\r"  # CRLF line endings
            lines.append(raw)
        else:
            lines.append(draw(garbage_line(i)))
    data = b"\n".join(lines)
    ending = draw(st.sampled_from(["newline", "none", "half-written"]))
    if ending == "newline" and lines:
        data += b"\n"
    elif ending == "half-written":  # the runtime is appending: the last line is cut mid-way
        partial = json.dumps(h.assistant(T0)).encode()
        data += (b"\n" if lines else b"") + partial[: draw(st.integers(1, len(partial) - 1))]
    return data, planted


def reconciles(chunk) -> bool:
    return (
        chunk.lines_read == chunk.n_calls + chunk.other_entries + chunk.skipped_by_rule + chunk.n_quarantined
    )


def lines_in(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


@FUZZ
@given(transcript())
def test_parser_never_raises_reconciles_and_keeps_every_good_call(case):
    data, planted = case
    chunk = parse_transcript(data, rel=REL, agent_id="main", session_id="fuzz", now=NOW)

    assert chunk.lines_read == lines_in(data)
    assert reconciles(chunk)
    q = chunk.quarantine
    assert q.get_column("reason").null_count() == 0 and (q.get_column("reason").str.len_chars() > 0).all()
    assert set(q.get_column("line_no").to_list()) <= set(range(1, chunk.lines_read + 1))

    got = {row["entry_id"]: row for row in chunk.calls.iter_rows(named=True) if row["entry_id"] in planted}
    assert set(got) == set(planted), f"lost good calls: {sorted(set(planted) - set(got))}"
    for entry, tokens in planted.items():
        assert {k: got[entry][k] for k in tokens} == tokens
    # a call is never also quarantined
    call_lines = set(chunk.calls.get_column("line_no").to_list())
    assert not call_lines & set(q.get_column("line_no").to_list())


@FUZZ
@given(st.binary(max_size=2000))
def test_parser_survives_arbitrary_bytes(data):
    chunk = parse_transcript(data, rel=REL, agent_id="main", session_id="fuzz", now=NOW)
    assert chunk.lines_read == lines_in(data)
    assert reconciles(chunk)


@FUZZ
@given(transcript(), st.integers(0, 40))
def test_line_numbers_follow_first_line(case, offset):
    """A chunk read from the middle of a file (``first_line``) reports the file's own line numbers."""
    data, planted = case
    whole = parse_transcript(data, rel=REL, agent_id="main", session_id="fuzz", now=NOW)
    moved = parse_transcript(
        data, rel=REL, agent_id="main", session_id="fuzz", now=NOW, first_line=1 + offset
    )
    assert reconciles(moved)
    assert (moved.calls.get_column("line_no") - offset).to_list() == whole.calls.get_column(
        "line_no"
    ).to_list()
    assert (moved.quarantine.get_column("line_no") - offset).to_list() == whole.quarantine.get_column(
        "line_no"
    ).to_list()


def test_non_finite_numbers_in_unread_keys_do_not_cost_the_call():
    """Found by the fuzzer: one ``NaN``/``Infinity``/``1e400`` anywhere in a line made Polars reject the
    file."""
    lines = []
    for i, token in enumerate([b"NaN", b"Infinity", b"-Infinity", b"1e400"]):
        line = h.assistant(T0 + timedelta(minutes=i))
        line["id"] = f"nf{i}"
        line["extra"] = {"x": 0.25}
        lines.append(json.dumps(line).encode().replace(b"0.25", token))
    lines.append(b'{"": Infinity}')
    chunk = parse_transcript(b"\n".join(lines) + b"\n", rel=REL, agent_id="main", session_id="fuzz", now=NOW)
    assert sorted(chunk.calls.get_column("entry_id").to_list()) == ["nf0", "nf1", "nf2", "nf3"]
    assert reconciles(chunk) and chunk.n_quarantined == 0


def test_a_line_polars_rejects_after_the_checks_is_quarantined_not_fatal(monkeypatch):
    """Last resort: should Python accept a line Polars cannot read, that line alone is quarantined."""
    from mc_pipeline.ingest.readers import transcripts

    real = transcripts._reserialise

    def poisoned(obj):
        return b'{"type": "message", "x": Infinity}' if obj.get("id") == "poison" else real(obj)

    monkeypatch.setattr(transcripts, "_reserialise", poisoned)
    good = h.assistant(T0)
    good["id"] = "fine"
    bad = h.assistant(T0)
    bad["id"] = "poison"
    data = b"\n".join([json.dumps(good).encode(), b"not json", json.dumps(bad).encode()]) + b"\n"
    chunk = parse_transcript(data, rel=REL, agent_id="main", session_id="fuzz", now=NOW)
    assert chunk.calls.get_column("entry_id").to_list() == ["fine"]
    reasons = dict(
        zip(chunk.quarantine.get_column("line_no").to_list(), chunk.quarantine.get_column("reason").to_list())
    )
    assert set(reasons) == {2, 3} and reasons[3].startswith("unreadable by the Polars reader")
    assert reconciles(chunk)


# -- the backup log's line parser (logs/model-usage.jsonl) ------------------------------------------------

LOG_REL = "logs/model-usage.jsonl"


@st.composite
def usage_log(draw) -> tuple[bytes, dict[int, tuple[int, int]]]:
    """Log lines: good ones (line number -> tokens) among garbage and wrong-typed fields."""
    lines: list[bytes] = []
    good: dict[int, tuple[int, int]] = {}
    for i in range(draw(st.integers(0, 20))):
        base = {
            "timestamp": h.iso(T0 + timedelta(minutes=i)),
            "model": draw(st.sampled_from(["anthropic/claude-opus-4-6", "openrouter/minimax/minimax-m2.1"])),
            "tokens_in": draw(st.integers(0, 10**6)),
            "tokens_out": draw(st.integers(0, 10**5)),
            "task_type": draw(st.sampled_from(["coding", "", "research"])),
            "description": draw(st.text(max_size=30)),
            "estimated_cost": draw(st.floats(0, 1)),
        }
        kind = draw(st.sampled_from(["good", "good", "bytes", "json", "mutated", "truncated"]))
        if kind == "good":
            good[len(lines) + 1] = (base["tokens_in"], base["tokens_out"])
            lines.append(json.dumps(base).encode())
        elif kind == "bytes":
            lines.append(draw(st.binary(max_size=60)).replace(b"\n", b" "))
        elif kind == "json":
            lines.append(json.dumps(draw(json_values)).encode())
        elif kind == "mutated":
            base[draw(st.sampled_from(["timestamp", "model", "tokens_in", "tokens_out", "task_type"]))] = (
                draw(
                    odd_values  # 2**70, 1e308 included: beyond int64 (see the test below)
                )
            )
            lines.append(json.dumps(base).encode())
        else:
            text = json.dumps(base).encode()
            lines.append(text[: draw(st.integers(1, len(text) - 1))])
    return b"\n".join(lines) + (b"\n" if lines and draw(st.booleans()) else b""), good


@FUZZ
@given(usage_log())
def test_usage_log_parser_never_raises_reconciles_and_keeps_good_lines(case):
    from mc_pipeline.ingest.readers.model_usage_log import parse_log

    data, good = case
    batch = parse_log(data, rel=LOG_REL, now=NOW)
    counts = batch.file_counts.row(0, named=True)
    assert counts["lines_read"] == lines_in(data)
    assert counts["lines_read"] == batch.records.height + counts["skipped_by_rule"] + batch.quarantine.height
    got = {r["line_no"]: (r["input_tokens"], r["output_tokens"]) for r in batch.records.iter_rows(named=True)}
    assert {n: got.get(n) for n in good} == good


@pytest.mark.parametrize("tokens", ["1180591620717411303424", "1e308"])
def test_usage_log_token_count_beyond_int64_is_quarantined_not_fatal(tokens):
    from mc_pipeline.ingest.readers.model_usage_log import parse_log

    good = json.dumps(
        {"timestamp": h.iso(T0), "model": "anthropic/claude-opus-4-6", "tokens_in": 5, "tokens_out": 1}
    )
    data = (good + "\n" + good.replace('"tokens_in": 5', f'"tokens_in": {tokens}') + "\n").encode()
    batch = parse_log(data, rel=LOG_REL, now=NOW)
    assert batch.records.height == 1 and batch.quarantine.height == 1
