"""A hostile OpenClaw home: every kind of bad input at once, and not one good call lost.

The home is built in the real on-disk format with good calls planted among invalid UTF-8, NUL bytes, a
30 MB line, a half-written last line, JSON that is not an object, wrong types, negative/NaN/huge token
counts, NaN/Infinity in keys that are not read, a byte-order mark, timestamps in ms, ISO, 1970 and the
future, empty files, files that cannot be read (a FIFO, a folder and links named like transcripts, a
symlink loop, a link to /proc/self/mem that fails with EIO even for root), a corrupt sessions.json and
auth-profiles.json;
and, in a second home, a corrupt interactions.db, a transcript store without its table, one locked by
another program for the whole run, a WAL store with a bad event, and a backup log with garbage lines.
``python -m mc_pipeline run`` must succeed, put exactly the planted good calls in ``llm_calls``, quarantine
exactly the planted bad lines with a reason, name every unusable file with why, and leave the home as it
found it (checksums and mtimes before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import homes as h

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
BIG_LINE_BYTES = 30 * 1024 * 1024


@dataclass
class Planted:
    good: dict[str, dict] = field(default_factory=dict)  # call_id -> tokens it must carry
    bad: dict[tuple[str, int], str] = field(default_factory=dict)  # (file, line) -> words of the reason
    unusable: dict[str, str] = field(default_factory=dict)  # file -> words of why, in the run's output
    empty: list[str] = field(default_factory=list)


class Transcript:
    """Lines of one transcript file, tracking which are planted good calls and which are planted bad."""

    def __init__(self, planted: Planted, home: Path, name: str, session_id: str, agent: str = "main"):
        self.planted, self.agent, self.sid = planted, agent, session_id
        self.path = h.sessions_dir(home, agent) / name
        self.rel = f"agents/{agent}/sessions/{name}"
        self.lines: list[bytes] = []

    def raw(self, line: bytes | dict) -> int:
        self.lines.append(line if isinstance(line, bytes) else json.dumps(line).encode())
        return len(self.lines)

    def good(self, line: dict) -> None:
        self.raw(line)
        u = line["message"]["usage"]
        self.planted.good[f"{self.agent}/{self.sid}/{line['id']}"] = {
            "input_tokens": u["input"],
            "output_tokens": u["output"],
            "cache_read_tokens": u["cacheRead"],
            "cache_write_tokens": u["cacheWrite"],
        }

    def bad(self, line: bytes | dict, why: str) -> None:
        self.planted.bad[(self.rel, self.raw(line))] = why

    def write(self, tail: bytes = b"\n") -> None:
        self.path.write_bytes(b"\n".join(self.lines) + tail)


_n = iter(range(1, 10_000))


def call(ts: datetime, inp: int | None = None, **kw) -> dict:
    i = next(_n)
    line = h.assistant(
        ts, u=h.usage(inp if inp is not None else 100 + i, 7 * i, 1000 + i, i, cost=0.001 * i), **kw
    )
    line["id"] = f"{i:08x}"
    return line


def with_usage(ts: datetime, **fields) -> dict:
    line = call(ts)
    line["message"]["usage"].update(fields)
    return line


def build_hostile_home(home: Path) -> Planted:
    p = Planted()
    t = T0

    # 1. one live file with every kind of bad line among good calls
    f = Transcript(p, home, "s-mixed.jsonl", "s-mixed")
    f.raw(h.session_line("s-mixed", t))
    f.good(call(t))
    f.raw(h.user(t, "hello"))
    f.bad(b'{"type":"message","id":"\xff\xfe\xfd","message":{}}', "invalid UTF-8")
    f.good(call(t + timedelta(minutes=1), tools=("read", "exec")))
    f.bad(b"\x00\x00\x00\x00", "not valid JSON")
    f.bad(b'{"type":"message","id":"ab\x00cd"}', "not valid JSON")
    for value in ([1, 2, 3], 42, "just a string", None, True):
        f.bad(json.dumps(value).encode(), "not a JSON object")
    f.good(
        call(
            t + timedelta(minutes=2),
            stop="error",
            error='429 {"type":"error","error":{"type":"rate_limit_error"}}',
            inp=0,
        )
    )
    f.bad({**call(t), "message": "a message that is a string"}, "wrong type")
    f.bad(with_usage(t, input="100"), "wrong type")
    f.bad(with_usage(t, output=[1]), "wrong type")
    f.bad(with_usage(t, input=-5), "negative token count")
    f.bad(json.dumps(with_usage(t, output=0.5)).replace("0.5", "NaN").encode(), "expected an integer")
    f.bad(with_usage(t, input=10**30), "out of range")
    f.bad(with_usage(t, cacheRead=5_000_000_000), "implausible token count")
    f.bad(call(datetime(1970, 1, 2, tzinfo=UTC)), "no plausible timestamp")
    f.bad(call(datetime(2099, 6, 1, tzinfo=UTC)), "no plausible timestamp")
    # timestamps in ms or ISO, with or without the message's ms time: all good
    ms_only = call(t + timedelta(minutes=3))
    ms_only["timestamp"] = h.ms(t + timedelta(minutes=3))  # entry time in ms
    del ms_only["message"]["timestamp"]
    f.good(ms_only)
    iso_offset = call(t + timedelta(minutes=4))
    iso_offset["timestamp"] = "2026-03-01T11:04:00+02:00"
    del iso_offset["message"]["timestamp"]
    f.good(iso_offset)
    bad_ms_good_iso = call(t + timedelta(minutes=5))
    bad_ms_good_iso["message"]["timestamp"] = 0  # 1970 in the message, a sound entry time: the entry's wins
    f.good(bad_ms_good_iso)
    # NaN/Infinity (Python's json writes them) in keys that are not read: the call is kept
    nan_extra = call(t + timedelta(minutes=8))
    nan_extra["message"]["content"].append({"type": "text", "score": 1.0})
    nan_extra["latency"] = 0.5
    f.good(nan_extra)
    f.lines[-1] = (
        f.lines[-1]
        .replace(b'"score": 1.0', b'"score": Infinity')
        .replace(b'"latency": 0.5', b'"latency": NaN')
    )
    big_float = call(t + timedelta(minutes=9))
    big_float["meta"] = {"weight": 2.5}
    f.good(big_float)
    f.lines[-1] = f.lines[-1].replace(b'"weight": 2.5', b'"weight": 1e400')
    f.raw(b"")  # a blank line: skipped by rule
    f.raw(h.mirror(t))  # gateway bookkeeping: skipped by rule
    f.good(call(t + timedelta(minutes=6)))
    half = json.dumps(call(t + timedelta(minutes=7))).encode()
    f.bad(half[: len(half) // 2], "truncated last line")  # the runtime is still writing it
    f.write(tail=b"")

    # 2. a 30 MB line (a pasted log) between good calls, and a 30 MB line of garbage
    f = Transcript(p, home, "s-big.jsonl", "s-big")
    f.raw(h.session_line("s-big", t))
    f.good(call(t + timedelta(hours=1)))
    f.raw(h.user(t, "x" * BIG_LINE_BYTES))
    f.good(call(t + timedelta(hours=1, minutes=1)))
    f.bad(b"{" + b"y" * BIG_LINE_BYTES, "not valid JSON")
    f.good(call(t + timedelta(hours=1, minutes=2)))
    f.write()

    # 3. archives count, backups never do; a file of pure binary junk
    f = Transcript(p, home, "s-old.jsonl.reset.2026-03-01T10-00-00.000Z", "s-old")
    f.raw(h.session_line("s-old", t))
    f.good(call(t - timedelta(days=1)))
    f.good(call(t - timedelta(days=1, minutes=-1)))
    f.write()
    (f.path.parent / "s-old.jsonl.bak.2026-03-01T09-00-00.000Z").write_bytes(f.path.read_bytes())
    f = Transcript(p, home, "s-bom.jsonl", "s-bom")  # saved by an editor that adds a byte-order mark
    f.good(call(t + timedelta(hours=3)))
    f.lines[0] = b"\xef\xbb\xbf" + f.lines[0]
    f.good(call(t + timedelta(hours=3, minutes=1)))
    f.write()
    f = Transcript(p, home, "s-junk.jsonl", "s-junk")
    f.bad(bytes(range(256)).replace(b"\n", b""), "invalid UTF-8")
    f.bad(b"\x89PNG\r\x1a\x00\x00", "invalid UTF-8")
    f.write()

    # 4. files that hold nothing or cannot be read
    sessions = h.sessions_dir(home)
    (sessions / "s-empty.jsonl").write_bytes(b"")
    p.empty.append("agents/main/sessions/s-empty.jsonl")
    os.mkfifo(sessions / "s-fifo.jsonl")  # reading it would block forever
    p.unusable["agents/main/sessions/s-fifo.jsonl"] = "not a regular file"
    (sessions / "s-folder.jsonl").mkdir()
    p.unusable["agents/main/sessions/s-folder.jsonl"] = "not a regular file"
    os.symlink("s-loop.jsonl", sessions / "s-loop.jsonl")
    p.unusable["agents/main/sessions/s-loop.jsonl"] = "cannot stat"
    os.symlink("/nonexistent/target.jsonl", sessions / "s-dangling.jsonl")
    p.unusable["agents/main/sessions/s-dangling.jsonl"] = "cannot stat"
    if Path("/proc/self/mem").exists():  # a regular file that fails to read (EIO), even for root
        os.symlink("/proc/self/mem", sessions / "s-unreadable.jsonl")
        p.unusable["agents/main/sessions/s-unreadable.jsonl"] = "cannot read"
    if not IS_ROOT:  # root reads a chmod 000 file anyway
        locked = sessions / "s-locked.jsonl"
        locked.write_text(json.dumps(call(t)) + "\n")
        locked.chmod(0)
        p.unusable["agents/main/sessions/s-locked.jsonl"] = "cannot read"
    # a second agent whose sessions folder is a symlink loop, and broken side files of the main agent
    (home / "agents" / "looped").mkdir(parents=True)
    os.symlink("sessions", home / "agents" / "looped" / "sessions")
    p.unusable["agents/looped/sessions"] = "not a folder"
    (sessions / "sessions.json").write_bytes(b'{"agent:main:main": {"sessionId": "s-mixed", "upd')
    p.unusable["agents/main/sessions/sessions.json"] = "unreadable"
    (home / "agents" / "main" / "agent").mkdir(parents=True, exist_ok=True)
    (home / "agents" / "main" / "agent" / "auth-profiles.json").write_bytes(b"\xff not json")
    p.unusable["agents/main/agent/auth-profiles.json"] = ""

    # 5. a healthy second agent
    f = Transcript(p, home, "w1.jsonl", "w1", agent="worker")
    f.raw(h.session_line("w1", t))
    for k in range(3):
        f.good(
            call(
                t + timedelta(hours=2, minutes=k),
                provider="openai",
                model="gpt-5.1-codex",
                api="openai-responses",
            )
        )
    f.write()
    return p


def snapshot(home: Path) -> dict[str, tuple]:
    """Every path under ``home`` (links not followed): type, size, mtime, and the sha256 of regular files."""
    out: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(home, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            st = os.lstat(path)
            digest = None
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o444:
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                except PermissionError:
                    digest = "unreadable"
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(path)
            key = str(path.relative_to(home))
            out[key] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, digest)
    return out


def run_cli(home: Path, data: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OPENCLAW_HOME": str(home),
        "MC_DATA_DIR": str(data),
        "MC_TIMEZONE": "UTC",
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    return subprocess.run(
        [sys.executable, "-m", "mc_pipeline", "run", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
    )


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    home = tmp / "home"
    planted = build_hostile_home(home)
    if h.REAL_DIR.exists():  # real files beside the hostile ones: their calls must all survive too
        h.copy_real_home(home, agent="real")
    before = snapshot(home)
    proc = run_cli(home, tmp / "data", tmp)
    after = snapshot(home)
    io = Tables(tmp / "data")
    yield {
        "home": home,
        "planted": planted,
        "proc": proc,
        "before": before,
        "after": after,
        "io": io,
        "calls": io.load("llm_calls"),
        "quarantine": pl.read_parquet(io.table_dir("quarantine") / "quarantine.parquet"),
        "files": pl.read_parquet(io.table_dir("source_files") / "source_files.parquet"),
    }
    for path in home.rglob("*"):  # let pytest clean up the unreadable file
        if path.is_file() and not path.is_symlink():
            path.chmod(0o644)


def test_run_succeeds_and_every_planted_good_call_is_in_llm_calls(hostile):
    proc, planted, calls = hostile["proc"], hostile["planted"], hostile["calls"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    hostile_calls = calls.filter(pl.col("agent_id") != "real")
    got = {r["call_id"]: r for r in hostile_calls.iter_rows(named=True)}
    assert set(got) == set(planted.good), (
        f"missing: {sorted(set(planted.good) - set(got))}, unexpected: {sorted(set(got) - set(planted.good))}"
    )
    for call_id, tokens in planted.good.items():
        assert {k: got[call_id][k] for k in tokens} == tokens, call_id
    # the .bak copy of the reset archive is never read
    assert not any(".bak." in f for f in calls.get_column("source_file").to_list())


@pytest.mark.skipif(not h.REAL_DIR.exists(), reason="shared/real not present")
def test_real_calls_survive_beside_the_hostile_files(hostile):
    from mc_pipeline.ingest.readers.transcripts import parse_transcript

    expected = sum(
        parse_transcript(f.read_bytes(), rel=f.name, agent_id="real", session_id=f.stem).n_calls
        for f in sorted(h.REAL_DIR.glob("*.jsonl"))
    )
    assert expected > 0
    assert hostile["calls"].filter(pl.col("agent_id") == "real").height == expected


def test_each_bad_line_is_quarantined_with_its_reason(hostile):
    planted, q = hostile["planted"], hostile["quarantine"]
    got = {(r["source_file"], r["line_no"]): r for r in q.iter_rows(named=True)}
    assert set(got) == set(planted.bad), (
        f"not quarantined: {sorted(set(planted.bad) - set(got))}; "
        f"unexpected: {sorted(set(got) - set(planted.bad))}"
    )
    for key, words in planted.bad.items():
        assert words.lower() in got[key]["reason"].lower(), (key, got[key]["reason"])
        assert got[key]["excerpt"] is None or len(got[key]["excerpt"]) <= 200
    assert q.get_column("excerpt").str.len_chars().max() <= 200  # the 30 MB line is not copied
    assert not q.get_column("excerpt").str.contains("\x00", literal=True).any()


def test_every_file_reconciles_and_empty_files_are_read(hostile):
    files = hostile["files"]
    assert files.get_column("balanced").all(), files.filter(~pl.col("balanced"))
    read = set(files.get_column("source_file").to_list())
    for rel in hostile["planted"].empty:
        assert rel in read
        assert files.filter(pl.col("source_file") == rel).get_column("lines_read").to_list() == [0]
    for rel in hostile["planted"].unusable:
        assert rel not in read


def test_each_unusable_file_is_named_with_why_in_the_run_output(hostile):
    out = hostile["proc"].stdout + hostile["proc"].stderr
    missing = []
    for rel, why in hostile["planted"].unusable.items():
        hits = [line for line in out.splitlines() if rel in line]
        if not hits or not any(why.lower() in line.lower() for line in hits):
            missing.append((rel, why))
    assert not missing, f"not named (with why) in the run's output: {missing}\n---\n{out[-4000:]}"


def test_the_home_is_unchanged_by_a_run(hostile):
    before, after = hostile["before"], hostile["after"]
    assert set(after) == set(before), (
        f"added: {set(after) - set(before)}, removed: {set(before) - set(after)}"
    )
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed
    assert any(v[4] and len(v[4]) == 64 for v in before.values())  # checksums were really taken


def test_snapshot_detects_a_change(tmp_path):
    """The unchanged-home check is not vacuous: one byte or a touched mtime is seen."""
    f = tmp_path / "agents" / "main" / "sessions" / "a.jsonl"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"{}\n")
    first = snapshot(tmp_path)
    st = f.stat()
    f.write_bytes(b"[]\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime, other bytes
    assert snapshot(tmp_path) != first
    f.write_bytes(b"{}\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same bytes, other mtime
    assert snapshot(tmp_path) != first


# -- the SQLite sources and the backup log --------------------------------------------------------------


def store(path: Path, events: list[dict] | None, wal: bool = False) -> Path:
    """A transcript store in the real shape; ``events=None`` leaves out the transcript_events table."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    if events is None:
        con.execute("CREATE TABLE something_else (x INTEGER)")
    else:
        con.execute(
            "CREATE TABLE transcript_events (session_id TEXT, seq INTEGER, event_json TEXT, created_at TEXT)"
        )
        con.executemany(
            "INSERT INTO transcript_events VALUES (?, ?, ?, ?)",
            [
                (e["_sid"], i, json.dumps({k: v for k, v in e.items() if k != "_sid"}), None)
                for i, e in enumerate(events, 1)
            ],
        )
    con.commit()
    con.close()
    return path


@pytest.fixture(scope="module")
def hostile_dbs(tmp_path_factory):
    import sqlite3

    tmp = tmp_path_factory.mktemp("hostile_dbs")
    home = tmp / "home"
    t = T0
    expected = {"transcript": 0, "transcript_store": 0, "model_usage_log": 0}
    unusable: dict[str, str] = {}

    f = Transcript(Planted(), home, "plain.jsonl", "plain")  # a normal transcript beside the broken sources
    f.raw(h.session_line("plain", t))
    f.good(call(t))
    f.write()
    expected["transcript"] += 1

    # a corrupt interactions.db: bytes that are not SQLite
    (home / "data").mkdir(parents=True)
    (home / "data" / "interactions.db").write_bytes(b"SQLite format 2\x00" + os.urandom(4096))
    unusable["data/interactions.db"] = ""
    # a store without its table; a store locked by another program; a healthy WAL store
    store(home / "agents" / "main" / "agent" / "openclaw-agent.sqlite", None)
    unusable["agents/main/agent/openclaw-agent.sqlite"] = ""
    locked = store(home / "agents" / "busy" / "agent" / "openclaw-agent.sqlite", [{"_sid": "b1", **call(t)}])
    unusable["agents/busy/agent/openclaw-agent.sqlite"] = "busy"
    events = [{"_sid": "w1", **h.session_line("w1", t)}]
    events += [{"_sid": "w1", **call(t + timedelta(minutes=k))} for k in range(4)]
    events += [{"_sid": "w1", "type": "message", "broken": float("inf")}]
    store(home / "agents" / "walstore" / "agent" / "openclaw-agent.sqlite", events, wal=True)
    expected["transcript_store"] += 4
    # the backup log: good lines among garbage
    log = home / "logs" / "model-usage.jsonl"
    log.parent.mkdir(parents=True)
    good = {
        "timestamp": h.iso(t),
        "model": "anthropic/claude-opus-4-6",
        "tokens_in": 900,
        "tokens_out": 80,
        "task_type": "coding",
        "description": "secret text",
        "estimated_cost": 0.02,
    }
    log.write_bytes(
        b"\n".join(
            [
                json.dumps(good).encode(),
                b"\xff\xfe garbage",
                b"[1, 2]",
                json.dumps({**good, "tokens_in": "many"}).encode(),
                json.dumps({**good, "timestamp": h.iso(t + timedelta(minutes=1))}).encode(),
                b'{"timestamp": "2026-03-01T0',
            ]
        )
    )
    expected["model_usage_log"] += 2

    before = snapshot(home)
    holder = sqlite3.connect(locked, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the store for the whole run
    try:
        proc = run_cli(home, tmp / "data", tmp)
    finally:
        holder.rollback()
        holder.close()
    after = snapshot(home)
    io = Tables(tmp / "data")
    return {
        "proc": proc,
        "before": before,
        "after": after,
        "expected": expected,
        "unusable": unusable,
        "calls": io.load("llm_calls"),
    }


def test_broken_databases_do_not_stop_the_run(hostile_dbs):
    proc = hostile_dbs["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = dict(hostile_dbs["calls"].group_by("source").len().iter_rows())
    assert got == {k: v for k, v in hostile_dbs["expected"].items() if v}


def test_each_broken_database_is_named_with_why(hostile_dbs):
    out = hostile_dbs["proc"].stdout + hostile_dbs["proc"].stderr
    for rel, why in hostile_dbs["unusable"].items():
        hits = [
            line for line in out.splitlines() if rel in line and len(line.split(rel, 1)[1].strip(" :")) > 3
        ]
        assert hits, f"{rel} not named with a reason in the run's output\n{out[-3000:]}"
        assert any(why in line.lower() for line in hits), (rel, why, hits)


def test_reading_databases_leaves_the_home_files_unchanged(hostile_dbs):
    """Checksums, sizes, modes and mtimes of every path, the locked and the WAL stores included."""
    before, after = hostile_dbs["before"], hostile_dbs["after"]
    assert set(after) == set(before), (
        f"added: {set(after) - set(before)}, removed: {set(before) - set(after)}"
    )
    assert {k for k in before if before[k] != after[k]} == set()


def test_reading_a_wal_database_adds_no_files_to_the_home(hostile_dbs):
    added = set(hostile_dbs["after"]) - set(hostile_dbs["before"])
    assert not added, f"files created in the user's home: {sorted(added)}"


def test_a_half_written_last_line_is_counted_once_the_runtime_finishes_it(tmp_path):
    """Run while the runtime is mid-write: the cut line is quarantined; the next run, after the line is
    finished, counts the call and the quarantine entry is gone (incremental reading included)."""
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    home, data = tmp_path / "home", tmp_path / "data"
    first, second = call(t), call(t + timedelta(minutes=1))
    whole = json.dumps(second).encode()
    path = h.sessions_dir(home) / "s-live.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                json.dumps(h.session_line("s-live", t)).encode(),
                json.dumps(first).encode(),
                whole[: len(whole) // 2],
            ]
        )
    )
    io = Tables(data)

    def state():
        calls = io.load("llm_calls").filter(pl.col("source") == "transcript")
        q = pl.read_parquet(io.table_dir("quarantine") / "quarantine.parquet")
        return sorted(calls.get_column("entry_id").to_list()), q.select(
            "source_file", "line_no", "reason"
        ).rows()

    assert run_cli(home, data, tmp_path).returncode == 0
    ids, quarantined = state()
    assert ids == [first["id"]]
    assert [(f, n) for f, n, _ in quarantined] == [("agents/main/sessions/s-live.jsonl", 3)]
    assert "truncated last line" in quarantined[0][2]

    with open(path, "ab") as fh:  # the runtime finishes the line
        fh.write(whole[len(whole) // 2 :] + b"\n")
    assert run_cli(home, data, tmp_path).returncode == 0
    ids, quarantined = state()
    assert ids == sorted([first["id"], second["id"]])
    assert quarantined == []


def _interactions_db(home: Path, rows: list[tuple]) -> Path:
    import sqlite3

    path = home / "data" / "interactions.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE llm_calls (id INTEGER PRIMARY KEY, timestamp, provider, model, session_id,"
        " prompt_tokens, completion_tokens, total_tokens, duration_ms, cost_estimate, status)"
    )
    con.executemany(
        "INSERT INTO llm_calls (timestamp, provider, model, session_id, prompt_tokens, completion_tokens,"
        " total_tokens, duration_ms, cost_estimate, status) VALUES (?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    con.commit()
    con.close()
    return path


def _db_row(tokens) -> tuple:
    return (h.iso(T0), "anthropic", "claude-opus-4-6", "db-s", tokens, 10, None, 500, 0.01, "success")


def test_interactions_db_bad_values_are_quarantined_rows(tmp_path):
    from mc_pipeline.ingest.readers.interactions_db import read_interactions_db

    rows = [
        _db_row(100),
        _db_row("12345678901234567890123"),
        _db_row(1e308),
        _db_row(-5),
        _db_row("many"),
        (0, "anthropic", "claude-opus-4-6", "db-s", 1, 1, None, 1, 0.0, "success"),
        (None,) * 10,
        _db_row(200),
    ]
    read = read_interactions_db(
        _interactions_db(tmp_path, rows), tmp_path, now=datetime(2026, 3, 10, tzinfo=UTC)
    )
    assert not read.batch.problems
    assert sorted(read.batch.records.get_column("input_tokens").to_list()) == [100, 200]
    assert sorted(read.batch.quarantine.get_column("line_no").to_list()) == [2, 3, 4, 5, 6, 7]


def test_interactions_db_one_binary_cell_costs_only_its_row(tmp_path):
    from mc_pipeline.ingest.readers.interactions_db import read_interactions_db

    rows = [_db_row(100), _db_row(b"\x00\xff\xfe"), _db_row(200)]
    read = read_interactions_db(
        _interactions_db(tmp_path, rows), tmp_path, now=datetime(2026, 3, 10, tzinfo=UTC)
    )
    assert sorted(read.batch.records.get_column("input_tokens").to_list()) == [100, 200]


def test_interactions_db_implausible_token_count_is_quarantined(tmp_path):
    from mc_pipeline.ingest.readers.interactions_db import read_interactions_db

    rows = [_db_row(100), _db_row(9 * 10**18)]
    read = read_interactions_db(
        _interactions_db(tmp_path, rows), tmp_path, now=datetime(2026, 3, 10, tzinfo=UTC)
    )
    assert read.batch.records.get_column("input_tokens").to_list() == [100]


@pytest.mark.parametrize(
    "ddl, row, problem, reason",
    [
        ("CREATE TABLE other (x)", None, "no llm_calls table", None),
        (
            "CREATE TABLE llm_calls (id INTEGER PRIMARY KEY, foo TEXT)",
            "INSERT INTO llm_calls (foo) VALUES ('x')",
            None,
            "no timestamp",
        ),
        (
            "CREATE TABLE llm_calls (timestamp TEXT, model TEXT)",
            "INSERT INTO llm_calls VALUES ('2026-03-01T00:00:00Z', 'claude')",
            None,
            "no provider",
        ),
    ],
)
def test_interactions_db_missing_table_or_columns(tmp_path, ddl, row, problem, reason):
    """A missing table is a problem naming the file; missing columns quarantine the rows that need them."""
    import sqlite3

    from mc_pipeline.ingest.readers.interactions_db import read_interactions_db

    path = tmp_path / "data" / "interactions.db"
    path.parent.mkdir()
    con = sqlite3.connect(path)
    con.execute(ddl)
    if row:
        con.execute(row)
    con.commit()
    con.close()
    read = read_interactions_db(path, tmp_path, now=datetime(2026, 3, 10, tzinfo=UTC))
    assert read.batch.records.height == 0
    if problem:
        assert any(p.startswith("data/interactions.db") and problem in p for p in read.batch.problems)
    else:
        assert not read.batch.problems
        assert [reason in r for r in read.batch.quarantine.get_column("reason").to_list()] == [True]
