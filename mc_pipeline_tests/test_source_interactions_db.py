"""interactions.db: every llm_calls schema variant, api_calls, a concurrent writer, broken databases."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.costing.error_classes import classify_status
from mc_pipeline.ingest.readers.interactions_db import is_wal_file, open_mode, read_interactions_db, sidecar
from mc_pipeline.tables.contracts import ApiCallsModel
from mc_pipeline.tables.schemas import API_CALLS, CALL_RECORDS

SECRET = "MY SECRET PROMPT about +4915112345678"

#: docs/openclaw-formats.md#interactions-db: the plan's table, the widespread cost-split variant, the
#: ok/error variant.
PLAN = (
    "id INTEGER PRIMARY KEY, timestamp TEXT, provider TEXT, model TEXT, caller TEXT, session_id TEXT,"
    " task_type TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, thinking_tokens INTEGER,"
    " total_tokens INTEGER, duration_ms INTEGER, cost_estimate REAL, status TEXT, prompt_preview TEXT,"
    " response_preview TEXT, created_at TEXT"
)
COST_SPLIT = (
    "id INTEGER PRIMARY KEY, timestamp TEXT, provider TEXT, model TEXT, caller TEXT, session_id TEXT,"
    " task_type TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, thinking_tokens INTEGER,"
    " total_tokens INTEGER, cache_read_tokens INTEGER, cache_write_tokens INTEGER, duration_ms INTEGER,"
    " input_cost REAL, output_cost REAL, cache_cost REAL, total_cost REAL, status TEXT, prompt_preview TEXT,"
    " response_preview TEXT, created_at TEXT"
)
OK_ERROR = (
    "id INTEGER PRIMARY KEY, timestamp TEXT, provider TEXT, model TEXT, session_id TEXT,"
    " input_tokens INTEGER, output_tokens INTEGER, prompt TEXT, response TEXT, ok INTEGER, error TEXT"
)
API = (
    "id INTEGER PRIMARY KEY, timestamp TEXT, service TEXT, endpoint TEXT, method TEXT, request_body TEXT,"
    " response_body TEXT, status_code INTEGER, duration_ms INTEGER"
)
TEXT_COLUMNS = ("prompt_preview", "response_preview", "prompt", "response", "caller")


def make_db(
    path: Path, ddl: str, rows: list[dict], api_rows: list[dict] | None = None, wal: bool = False
) -> Path:
    """An interactions.db with ``llm_calls`` (columns from ``ddl``) and optionally ``api_calls``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"CREATE TABLE llm_calls ({ddl})")
    cols = {c.split()[0] for c in ddl.split(",")}
    for row in rows:
        row = {**{c: SECRET for c in TEXT_COLUMNS if c in cols}, **row}
        row = {k: v for k, v in row.items() if k in cols}
        con.execute(
            f"INSERT INTO llm_calls ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )
    if api_rows is not None:
        con.execute(f"CREATE TABLE api_calls ({API})")
        for row in api_rows:
            row = {"request_body": SECRET, "response_body": SECRET, **row}
            con.execute(
                f"INSERT INTO api_calls ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
    con.commit()
    con.close()
    return path


def row(
    ts="2026-01-05T10:00:00Z", model="claude-sonnet-4-5", provider="anthropic", session="s1", **kw
) -> dict:
    return {"timestamp": ts, "provider": provider, "model": model, "session_id": session, **kw}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(home: Path, **kw):
    return read_interactions_db(home / "data" / "interactions.db", home, **kw)


@pytest.mark.parametrize("variant", ["plan", "cost_split", "ok_error"])
def test_every_schema_variant_is_mapped_by_column_name(tmp_path, variant):
    if variant == "plan":
        ddl = PLAN
        rows = [
            row(
                prompt_tokens=1200,
                completion_tokens=300,
                thinking_tokens=120,
                cost_estimate=0.02,
                status="success",
                task_type="coding",
                duration_ms=2300,
            ),
            row(ts="2026-01-05 11:00:00", prompt_tokens=0, completion_tokens=0, status="rate_limit"),
        ]
        expect_in, expect_out, expect_cost = [1200, 0], [300, 0], [0.02, None]
    elif variant == "cost_split":
        ddl = COST_SPLIT
        rows = [
            row(
                prompt_tokens=800,
                completion_tokens=90,
                cache_read_tokens=5000,
                cache_write_tokens=40,
                total_cost=0.011,
                input_cost=0.004,
                status="success",
                task_type="design",
            ),
            row(
                ts="2026-01-05T11:00:00.123456+00:00",
                prompt_tokens=0,
                completion_tokens=0,
                status="rate_limit",
            ),
        ]
        expect_in, expect_out, expect_cost = [800, 0], [90, 0], [0.011, None]
    else:
        ddl = OK_ERROR
        rows = [
            row(input_tokens=70, output_tokens=7, ok=1),
            row(ts="1767610800", input_tokens=0, output_tokens=0, ok=0, error="429 Too Many Requests"),
        ]
        expect_in, expect_out, expect_cost = [70, 0], [7, 0], [None, None]
    make_db(tmp_path / "data" / "interactions.db", ddl, rows)
    got = read(tmp_path)
    rec = got.batch.records.sort("line_no")
    assert rec.columns == list(CALL_RECORDS)
    assert rec.get_column("source").unique().to_list() == ["interactions_db"]
    assert rec.get_column("source_file").unique().to_list() == ["data/interactions.db"]
    assert rec.get_column("line_no").to_list() == [1, 2]
    assert rec.get_column("input_tokens").to_list() == expect_in
    assert rec.get_column("output_tokens").to_list() == expect_out
    assert rec.get_column("cost_recorded_usd").to_list() == expect_cost
    assert rec.get_column("timestamp").to_list() == [
        datetime(2026, 1, 5, 10, tzinfo=UTC),
        datetime(2026, 1, 5, 11, 0, 0, 123456 if variant == "cost_split" else 0, tzinfo=UTC),
    ]
    classified = classify_status(rec)
    assert classified.get_column("status").to_list() == ["ok", "error"]
    assert classified.get_column("error_class").to_list() == [None, "rate_limit"]
    if variant == "plan":
        assert rec.get_column("given_task_type").to_list() == ["coding", None]
        assert rec.get_column("given_thinking_tokens").to_list() == [120, None]
        assert rec.get_column("duration_ms").to_list() == [2300, None]
    if variant == "cost_split":
        assert rec.get_column("cache_read_tokens").to_list() == [5000, 0]
        assert rec.get_column("cache_write_tokens").to_list() == [40, 0]
    counts = got.batch.file_counts.row(0, named=True)
    assert counts["lines_read"] == 2 == counts["calls"] + counts["quarantined"]
    # no free text column is ever read
    for frame in (got.batch.records, got.batch.quarantine):
        assert not any(SECRET in str(v) for v in frame.rows())


def test_status_words_and_error_text_map_to_status_and_class(tmp_path):
    statuses = [
        ("success", None),
        ("ok", None),
        ("rate_limit", None),
        ("error", "529 overloaded_error"),
        ("timeout", None),
        ("aborted", None),
        ("error", None),
        (None, None),
    ]
    rows = [
        row(ts=f"2026-01-05T10:00:{i:02d}Z", prompt_tokens=1, completion_tokens=1, status=s)
        for i, (s, _) in enumerate(statuses)
    ]
    make_db(
        tmp_path / "data" / "interactions.db",
        OK_ERROR.replace("ok INTEGER", "status TEXT")
        .replace("input_tokens", "prompt_tokens")
        .replace("output_tokens", "completion_tokens"),
        [{**r, "error": e} for r, (_, e) in zip(rows, statuses)],
    )
    got = classify_status(read(tmp_path).batch.records.sort("line_no"))
    assert got.get_column("status").to_list() == [
        "ok",
        "ok",
        "error",
        "error",
        "error",
        "aborted",
        "error",
        "ok",
    ]
    assert got.get_column("error_class").to_list() == [
        None,
        None,
        "rate_limit",
        "overloaded",
        "timeout",
        "aborted",
        "other",
        None,
    ]


def test_bad_rows_are_quarantined_with_reason_and_no_text(tmp_path):
    rows = [
        row(prompt_tokens=10, completion_tokens=5, status="success"),
        row(ts="next tuesday", prompt_tokens=10, completion_tokens=5),
        row(prompt_tokens=-3, completion_tokens=5),
        row(model=None, prompt_tokens=10, completion_tokens=5),
        row(model="", prompt_tokens=10, completion_tokens=5),
        row(prompt_tokens="lots", completion_tokens=5),
        row(ts="1999-01-01T00:00:00Z", prompt_tokens=1, completion_tokens=1),
        row(provider=None, model="openai/gpt-5.1", prompt_tokens=3, completion_tokens=4),
    ]
    make_db(tmp_path / "data" / "interactions.db", PLAN, rows)
    got = read(tmp_path)
    q = got.batch.quarantine.sort("line_no")
    assert q.get_column("line_no").to_list() == [2, 3, 4, 5, 6, 7]
    reasons = q.get_column("reason").to_list()
    assert "timestamp" in reasons[0] and "negative" in reasons[1]
    assert reasons[2] == reasons[3] == "no model"
    assert "whole number" in reasons[4] and "implausible" in reasons[5]
    assert all(len(e) <= 200 and "rowid=" in e and SECRET not in e for e in q.get_column("excerpt").to_list())
    rec = got.batch.records.sort("line_no")
    assert rec.select("provider", "model").rows() == [
        ("anthropic", "claude-sonnet-4-5"),
        ("openai", "gpt-5.1"),
    ]
    counts = got.batch.file_counts.row(0, named=True)
    assert counts["lines_read"] == len(rows) == rec.height + q.height


def test_api_calls_table_without_bodies_or_query_strings(tmp_path):
    api = [
        {
            "timestamp": "2026-01-05T10:00:00Z",
            "service": "github",
            "endpoint": "/repos/x?access_token=abc",
            "method": "get",
            "status_code": 200,
            "duration_ms": 120,
        },
        {
            "timestamp": "2026-01-05T23:30:00-02:00",
            "service": "slack",
            "endpoint": "/api/chat.postMessage",
            "method": "POST",
            "status_code": 429,
            "duration_ms": 80,
        },
        {
            "timestamp": "2026-01-05T10:00:01Z",
            "service": "x",
            "endpoint": "/",
            "method": "GET",
            "status_code": 503,
        },
        {
            "timestamp": "2026-01-05T10:00:02Z",
            "service": "x",
            "endpoint": "/",
            "method": "GET",
            "status_code": None,
        },
        {"timestamp": "soon", "service": "x", "endpoint": "/", "method": "GET", "status_code": 200},
    ]
    make_db(tmp_path / "data" / "interactions.db", PLAN, [], api_rows=api)
    got = read(tmp_path, tz="Europe/Berlin")
    calls = got.api_calls.sort("timestamp")
    assert calls.columns == list(API_CALLS)
    ApiCallsModel.validate(calls)
    assert not any(SECRET in str(v) or "access_token" in str(v) for v in calls.rows())
    by_service = {r["service"]: r for r in calls.iter_rows(named=True)}
    assert by_service["github"]["endpoint"] == "/repos/x" and by_service["github"]["ok"] is True
    assert by_service["github"]["method"] == "GET" and by_service["github"]["error_class"] is None
    slack = by_service["slack"]
    assert (slack["ok"], slack["error_class"], slack["status_code"]) == (False, "rate_limit", 429)
    # 23:30 at -02:00 is 01:30 UTC on the 6th, 02:30 in Berlin: the day follows MC_TIMEZONE
    assert slack["day"].isoformat() == "2026-01-06"
    assert calls.filter(pl.col("status_code") == 503).get_column("error_class").to_list() == ["server_error"]
    assert calls.filter(pl.col("status_code").is_null()).get_column("ok").to_list() == [None]
    q = got.batch.quarantine
    assert q.get_column("source_file").to_list() == ["data/interactions.db#api_calls"]
    api_counts = got.batch.file_counts.filter(pl.col("source_file").str.ends_with("#api_calls")).row(
        0, named=True
    )
    assert api_counts["lines_read"] == 5 == api_counts["other_entries"] + api_counts["quarantined"]


@pytest.mark.parametrize("wal", [False, True])
def test_read_while_another_connection_holds_a_write_transaction(tmp_path, wal):
    path = make_db(
        tmp_path / "data" / "interactions.db",
        PLAN,
        [row(ts=f"2026-01-05T10:00:0{i}Z", prompt_tokens=i, completion_tokens=1) for i in range(3)],
        wal=wal,
    )
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock (RESERVED / the WAL write lock)
    writer.execute(
        "INSERT INTO llm_calls (timestamp, provider, model, prompt_tokens, completion_tokens)"
        " VALUES ('2026-01-05T11:00:00Z', 'anthropic', 'x', 9, 9)"
    )
    try:
        got = read(tmp_path, busy_timeout_s=0.5)
        assert got.batch.problems == []
        assert sorted(got.batch.records.get_column("input_tokens").to_list()) == [
            0,
            1,
            2,
        ]  # committed rows only
        writer.execute("COMMIT")  # our read left no lock behind: the writer commits at once
    finally:
        writer.close()
    assert read(tmp_path).batch.records.height == 4


def test_an_exclusive_lock_longer_than_the_timeout_is_a_named_problem(tmp_path):
    path = make_db(tmp_path / "data" / "interactions.db", PLAN, [row(prompt_tokens=1, completion_tokens=1)])
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        got = read(tmp_path, busy_timeout_s=0.2)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert got.batch.records.height == 0
    assert len(got.batch.problems) == 1 and got.batch.problems[0].startswith("data/interactions.db: busy")


def test_the_database_is_never_written(tmp_path):
    path = make_db(tmp_path / "data" / "interactions.db", PLAN, [row(prompt_tokens=1, completion_tokens=1)])
    before, files_before = digest(path), sorted(p.name for p in path.parent.iterdir())
    read(tmp_path)
    assert digest(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == files_before  # no journal, wal or shm left behind


def folder_state(folder: Path) -> dict[str, str]:
    return {p.name: digest(p) for p in folder.iterdir()}


def test_an_idle_wal_database_is_read_without_adding_files(tmp_path):
    """No connection open: no -wal; mode=ro alone would create -wal/-shm beside the user's file."""
    path = make_db(
        tmp_path / "data" / "interactions.db",
        PLAN,
        [row(prompt_tokens=i, completion_tokens=1) for i in range(1, 4)],
        wal=True,
    )
    assert is_wal_file(path) and open_mode(path) == "immutable"
    before = folder_state(path.parent)
    assert sorted(read(tmp_path).batch.records.get_column("input_tokens").to_list()) == [1, 2, 3]
    assert folder_state(path.parent) == before


def test_a_wal_database_with_an_open_writer_is_read_through_its_wal(tmp_path):
    """Committed rows still only in the writer's -wal are read; the writer's -wal/-shm are the only
    sidecars."""
    path = make_db(
        tmp_path / "data" / "interactions.db", PLAN, [row(prompt_tokens=1, completion_tokens=1)], wal=True
    )
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # keep the new row in the -wal only
        writer.execute(
            "INSERT INTO llm_calls (timestamp, provider, model, prompt_tokens, completion_tokens)"
            " VALUES ('2026-01-05T11:00:00Z', 'anthropic', 'x', 2, 2)"
        )
        assert open_mode(path) == "ro"
        names = sorted(p.name for p in path.parent.iterdir())
        assert sorted(read(tmp_path).batch.records.get_column("input_tokens").to_list()) == [1, 2]
        assert sorted(p.name for p in path.parent.iterdir()) == names
    finally:
        writer.close()


def test_a_wal_file_without_its_shm_is_read_from_a_private_copy(tmp_path):
    """A database and its -wal copied by hand (no -shm): every committed row, nothing added to the folder."""
    src = make_db(
        tmp_path / "src" / "interactions.db", PLAN, [row(prompt_tokens=1, completion_tokens=1)], wal=True
    )
    writer = sqlite3.connect(src, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute(
            "INSERT INTO llm_calls (timestamp, provider, model, prompt_tokens, completion_tokens)"
            " VALUES ('2026-01-05T11:00:00Z', 'anthropic', 'x', 2, 2)"
        )
        dst = tmp_path / "data" / "interactions.db"
        dst.parent.mkdir()
        dst.write_bytes(src.read_bytes())
        sidecar(dst, "-wal").write_bytes(sidecar(src, "-wal").read_bytes())
    finally:
        writer.close()
    assert open_mode(dst) == "copy"
    before = folder_state(dst.parent)
    assert sorted(read(tmp_path).batch.records.get_column("input_tokens").to_list()) == [1, 2]
    assert folder_state(dst.parent) == before


def test_a_hot_journal_left_by_a_crashed_writer_is_rolled_back_in_a_private_copy(tmp_path):
    """mode=ro may not roll back a hot -journal ("attempt to write a readonly database", the whole DB lost);
    the committed rows are read from a rolled-back private copy and the user's files stay as they are."""
    src = make_db(
        tmp_path / "src" / "interactions.db",
        PLAN,
        [row(prompt_tokens=1, completion_tokens=1, prompt_preview="p" * 3000) for _ in range(300)],
    )
    crashed = sqlite3.connect(src, isolation_level=None)
    try:
        crashed.execute(
            "PRAGMA cache_size = 5"
        )  # spill: uncommitted pages reach the file, originals in the journal
        crashed.execute("BEGIN")
        crashed.execute("UPDATE llm_calls SET prompt_tokens = 999, prompt_preview = prompt_preview || 'x'")
        dst = tmp_path / "data" / "interactions.db"
        dst.parent.mkdir()
        dst.write_bytes(src.read_bytes())  # the state a crash leaves: half-written file + hot journal
        sidecar(dst, "-journal").write_bytes(sidecar(src, "-journal").read_bytes())
    finally:
        crashed.close()
    assert sidecar(dst, "-journal").stat().st_size > 0
    before = folder_state(dst.parent)
    got = read(tmp_path)
    assert got.batch.problems == []
    assert got.batch.records.get_column("input_tokens").to_list() == [1] * 300
    assert folder_state(dst.parent) == before


def test_a_wal_that_vanishes_before_it_is_copied_is_read_again(tmp_path, monkeypatch):
    """Its writer closed (deleting -wal) between the look at the folder and the copy: read again, no
    problem."""
    from mc_pipeline.ingest.readers import sqlite_access as interactions_db

    make_db(
        tmp_path / "data" / "interactions.db", PLAN, [row(prompt_tokens=1, completion_tokens=1)], wal=True
    )
    real, modes = interactions_db.open_mode, []

    def stale_first_look(p):
        modes.append("copy" if not modes else real(p))  # the first look saw a -wal that is gone now
        return modes[-1]

    monkeypatch.setattr(interactions_db, "open_mode", stale_first_look)
    got = read(tmp_path)
    assert modes == ["copy", "immutable"]
    assert got.batch.problems == [] and got.batch.records.get_column("input_tokens").to_list() == [1]


def test_a_lock_free_read_torn_by_a_checkpoint_is_read_again(tmp_path, monkeypatch):
    """A writer opens, commits and closes (checkpointing into the main file) during an immutable read:
    that read is thrown away and the next one sees the new row."""
    from mc_pipeline.ingest.readers import sqlite_access as interactions_db

    path = make_db(
        tmp_path / "data" / "interactions.db", PLAN, [row(prompt_tokens=1, completion_tokens=1)], wal=True
    )
    real, modes = interactions_db._run, []

    def run_during_a_write(p, query, busy, immutable):
        modes.append(immutable)
        out = real(p, query, busy, immutable)
        if len(modes) == 1:
            os.utime(path, ns=(0, 0))  # so the checkpoint's mtime differs even on a coarse clock
            w = sqlite3.connect(path)
            w.execute(
                "INSERT INTO llm_calls (timestamp, provider, model, prompt_tokens, completion_tokens)"
                " VALUES ('2026-01-05T11:00:00Z', 'anthropic', 'x', 2, 2)"
            )
            w.commit()
            w.close()  # last connection: checkpoint into the main file, -wal removed
        return out

    monkeypatch.setattr(interactions_db, "_run", run_during_a_write)
    got = read(tmp_path)
    assert modes == [True, True]
    assert sorted(got.batch.records.get_column("input_tokens").to_list()) == [1, 2]


def test_a_cell_that_is_not_utf8_costs_only_its_row(tmp_path):
    """sqlite3 raises on such a cell while fetching; here only its row is quarantined, naming the column. A
    bad error text keeps its (failed) call, with U+FFFD in place of the bad bytes."""
    blob = b"\x00\xff\xfe"
    make_db(
        tmp_path / "data" / "interactions.db",
        OK_ERROR,
        [
            row(input_tokens=1, output_tokens=1, ok=1),
            row(input_tokens=blob, output_tokens=1, ok=1),
            row(model=blob, input_tokens=3, output_tokens=1, ok=1),
            row(input_tokens=0, output_tokens=0, ok=0, error=b"429 rate limit \xff"),
            row(input_tokens=5, output_tokens=1, ok=1),
        ],
        api_rows=[
            {"timestamp": "2026-01-05T10:00:00Z", "service": "github", "endpoint": "/a", "status_code": 200},
            {"timestamp": "2026-01-05T10:00:01Z", "service": blob, "endpoint": "/b", "status_code": 200},
        ],
    )
    got = read(tmp_path)
    assert got.batch.problems == []
    rec = got.batch.records.sort("line_no")
    assert rec.get_column("line_no").to_list() == [1, 4, 5]
    assert rec.get_column("error_message").to_list()[1] == "429 rate limit \ufffd"
    assert classify_status(rec).get_column("error_class").to_list() == [None, "rate_limit", None]
    q = got.batch.quarantine.sort("source_file", "line_no")
    assert q.select("source_file", "line_no", "reason").rows() == [
        ("data/interactions.db", 2, "not UTF-8 text (a BLOB) in input_tokens"),
        ("data/interactions.db", 3, "not UTF-8 text (a BLOB) in model"),
        ("data/interactions.db#api_calls", 2, "not UTF-8 text (a BLOB) in service"),
    ]
    assert not any("\x00" in e for e in q.get_column("excerpt").to_list())
    assert "input_tokens=<not UTF-8>" in q.get_column("excerpt")[0]
    assert got.api_calls.get_column("endpoint").to_list() == ["/a"]


def test_token_counts_over_the_transcripts_cap_are_quarantined(tmp_path):
    """The same plausibility cap as transcript lines (MAX_TOKENS), for every token column, also for text
    beyond int64 (which is not "not a whole number" but too big)."""
    from mc_pipeline.ingest.readers.transcripts import MAX_TOKENS

    make_db(
        tmp_path / "data" / "interactions.db",
        COST_SPLIT,
        [
            row(prompt_tokens=MAX_TOKENS, completion_tokens=1),
            row(prompt_tokens=MAX_TOKENS + 1, completion_tokens=1),
            row(prompt_tokens=1, completion_tokens=1, cache_read_tokens=9 * 10**18),
            row(prompt_tokens=1, completion_tokens=1, thinking_tokens=str(2**64)),
            row(prompt_tokens=1, completion_tokens=MAX_TOKENS * 10.0),
            row(prompt_tokens=7, completion_tokens=1),
        ],
    )
    got = read(tmp_path)
    assert got.batch.records.get_column("input_tokens").to_list() == [MAX_TOKENS, 7]
    q = got.batch.quarantine
    assert q.get_column("line_no").to_list() == [2, 3, 4, 5]
    assert set(q.get_column("reason").to_list()) == {f"implausible token count (over {MAX_TOKENS:,})"}


@pytest.mark.parametrize(
    "content, why",
    [(b"this is not sqlite at all" * 100, "not a readable SQLite database"), (None, "truncated")],
)
def test_a_corrupt_database_gives_a_problem_and_no_rows(tmp_path, content, why):
    path = tmp_path / "data" / "interactions.db"
    if content is None:  # a real database cut in half (a copy interrupted mid-way)
        make_db(path, PLAN, [row(prompt_tokens=i, completion_tokens=1) for i in range(2000)])
        data = path.read_bytes()
        path.write_bytes(data[:100] + b"\xff" * 200 + data[300 : len(data) // 2])
    else:
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    got = read(tmp_path)
    assert got.batch.records.height == 0 and got.api_calls.height == 0
    assert len(got.batch.problems) == 1
    assert got.batch.problems[0].startswith("data/interactions.db: ")
    assert str(tmp_path) not in got.batch.problems[0]


def test_a_missing_llm_calls_table_is_a_problem(tmp_path):
    path = tmp_path / "data" / "interactions.db"
    path.parent.mkdir(parents=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE calls (x)")
    con.close()
    got = read(tmp_path)
    assert got.batch.problems == ["data/interactions.db: no llm_calls table (tables: calls)"]


def test_a_database_outside_the_home_is_named_by_its_file_name(tmp_path):
    path = make_db(tmp_path / "elsewhere" / "my-calls.db", PLAN, [row(prompt_tokens=1, completion_tokens=1)])
    got = read_interactions_db(path, tmp_path / "home")
    assert got.batch.records.get_column("source_file").to_list() == ["my-calls.db"]


def test_a_row_gets_the_agent_its_caller_names_else_none(tmp_path):
    """``caller`` = ``agent:<id>[:...]`` or the name of one of the home's agents -> that agent; anything else
    (a script, a person, the planted secret text) -> no agent (shown as "unknown")."""
    (tmp_path / "agents" / "coder" / "sessions").mkdir(parents=True)
    make_db(
        tmp_path / "data" / "interactions.db",
        PLAN,
        [
            row(caller="agent:ops:cron:nightly", prompt_tokens=1),
            row(caller="coder", prompt_tokens=2),
            row(caller="backup-script", prompt_tokens=3),
            row(prompt_tokens=4),
            row(caller="agent:", prompt_tokens=5),
        ],
    )
    got = read(tmp_path).batch.records.sort("input_tokens")
    assert got.get_column("agent_id").to_list() == ["ops", "coder", None, None, None]
