"""An OpenClaw home upgraded to 2026.8+: both eras, every case the format doc names
(docs/openclaw-formats.md#agent-databases), and a ledger of the
calls it holds, kept while writing (the independent count the pipeline's figures are compared with).

Old era (``agents/main/sessions``): a live transcript, a ``.reset`` archive, a ``.bak`` copy (never
counted), a legacy ``.zst`` archive that exists only as a file, a leftover ``<sid>.jsonl`` of a session that
is also in the database (the database wins: its calls once), an ``openclaw doctor`` import-archive copy
(never counted) and a corrupt ``.zst`` archive (quarantined).

New era (``agents/main/agent/openclaw-agent.sqlite``, and ``ops``'s database found only through the
state database's registry): sessions with compressed and plain events, an assistant error and a
prompt-error of the same run (one failed call) and a prompt-error no assistant message covers (a failed
call), a zstd archive row published at once, an identity archive row published later (``publish_late``),
cold archives in a file and in a blob, one restored to the hot table as well, a fork copying its parent's
calls, planted bad rows (a zstd frame that does not decode, a length that does not match, text that is
not JSON), cron sessions named by the state database (by key, and by a cron run only), a shared auth
store making anthropic a subscription.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mc_pipeline_tests import homes as h
from mc_pipeline_tests.openclaw_db import AgentDb, StateDb

D1 = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
D2 = datetime(2026, 9, 2, 10, 0, tzinfo=UTC)
D3 = datetime(2026, 9, 3, 10, 0, tzinfo=UTC)
THINK = "I should look at the failing test first, then the parser. " * 40  # makes lines > 1 KiB: compressed


@dataclass
class Ledger:
    """Every call written, once: (agent, entry id) -> day, tokens, recorded cost, failed."""

    calls: dict[tuple[str, str], dict] = field(default_factory=dict)

    def add(self, agent: str, line: dict, *, failed: bool = False) -> None:
        if line.get("type") == "custom":  # a prompt-error that counts
            d = line["data"]
            day = datetime.fromtimestamp(d["timestamp"] / 1000, tz=UTC).date().isoformat()
            self.calls[(agent, line["id"])] = {
                "day": day,
                "input": 0,
                "output": 0,
                "cache_read": 0,
                "cache_write": 0,
                "cost": 0.0,
                "failed": True,
            }
            return
        m = line["message"]
        u = m["usage"]
        day = datetime.fromtimestamp(m["timestamp"] / 1000, tz=UTC).date().isoformat()
        self.calls[(agent, line["id"])] = {
            "day": day,
            "input": u["input"],
            "output": u["output"],
            "cache_read": u["cacheRead"],
            "cache_write": u["cacheWrite"],
            "cost": u["cost"]["total"],
            "failed": failed,
        }

    def daily(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for c in self.calls.values():
            o = out[c["day"]]
            o["calls"] += 1
            o["failed"] += c["failed"]
            for k in ("input", "output", "cache_read", "cache_write", "cost"):
                o[k] += c[k]
        return {d: dict(v) for d, v in out.items()}


@dataclass
class UpgradedHome:
    home: Path
    ledger: Ledger
    quarantined: set[tuple[str, int | None, str]]  # (source_file, line_no, reason start) planted
    late_archive: tuple[AgentDb, str] | None = None  # (database, archive name) to publish later
    cron_job: str = "job-nightly"
    cron_name: str = "Nightly report"

    def publish_late(self) -> Path:
        old, name = self.late_archive
        db = AgentDb(self.home, old.agent, path=old.path)
        try:
            return db.publish(name)
        finally:
            db.close()


def _session(
    sid: str,
    start: datetime,
    n: int,
    *,
    model="claude-sonnet-4-5",
    cost=0.01,
    parent: str | None = None,
    run: str | None = None,
    provider: str = "anthropic",
) -> list[dict]:
    head = h.session_line(sid, start)
    if parent:
        head["parentSession"] = parent
    lines: list[dict] = [head]
    for i in range(n):
        t = start + timedelta(minutes=3 * i)
        lines.append(h.user(t))
        line = h.assistant(
            t + timedelta(seconds=4),
            provider=provider,
            model=model,
            tools=("exec",),
            thinking=THINK if i % 2 == 0 else None,
            u=h.usage(1000 + i, 200 + i, 300, 20, cost=cost),
        )
        if run:
            line["message"]["__openclaw"] = {"runId": run}
        lines.append(line)
    return lines


def _calls(lines: list[dict]) -> list[dict]:
    return [
        x
        for x in lines
        if x.get("type") == "message"
        and x["message"].get("role") == "assistant"
        and x["message"].get("provider") != "openclaw"
    ]


def build(home: Path, *, old_era: bool = True, new_era: bool = True) -> UpgradedHome:
    ledger = Ledger()
    planted: set[tuple[str, int | None, str]] = set()
    uh = UpgradedHome(home, ledger, planted)
    sessions = h.sessions_dir(home, "main")

    def counted(agent: str, lines: list[dict]) -> list[dict]:
        for c in _calls(lines):
            ledger.add(agent, c, failed=c["message"].get("stopReason") in ("error", "aborted"))
        return lines

    if old_era:
        a, b, r = (str(uuid.uuid4()) for _ in range(3))
        live = counted("main", _session(a, D1, 3))
        h.write_session(home, live, session_id=a)
        h.write_session(home, live, session_id=a, suffix=".bak.2026-09-01T12-00-00.000Z")  # never counted
        h.write_session(
            home,
            counted("main", _session(r, D1 + timedelta(hours=2), 2)),
            session_id=r,
            suffix=".reset.2026-09-01T13-00-00.000Z",
        )
        import zstandard

        data = b"".join(
            json.dumps(x).encode() + b"\n"
            for x in counted("main", _session(b, D2, 2, model="gpt-5.1", provider="openai"))
        )
        (sessions / f"{b}.jsonl.deleted.2026-09-02T12-00-00.000Z.zst").write_bytes(
            zstandard.ZstdCompressor().compress(data)
        )
        corrupt = f"{uuid.uuid4()}.jsonl.reset.2026-09-02T13-00-00.000Z.zst"
        (sessions / corrupt).write_bytes(b"\x28\xb5\x2f\xfd" + b"not really zstd" * 20)
        planted.add((f"agents/main/sessions/{corrupt}", None, "compressed archive does not decompress"))
        imported = home / "agents" / "main" / "session-sqlite-import-archive"
        imported.mkdir(parents=True)
        (imported / f"agent_main_main.{a}.jsonl.imported-1789996400000").write_bytes(
            (sessions / f"{a}.jsonl").read_bytes()
        )

    if not new_era:
        return uh

    state = StateDb(home)
    state.cron_job(uh.cron_job, uh.cron_name, agent="ops")
    state.cron_job("job-weekly", "Weekly digest", agent="ops")
    state.shared_auth({"anthropic:default": {"type": "oauth", "provider": "anthropic"}})
    main = AgentDb(home, "main")
    state.register("main", "agents/main/agent/openclaw-agent.sqlite")

    # a hot session: compressed and plain events; one run failed twice over (assistant error + prompt-error),
    # another failed with a prompt-error only
    h1 = str(uuid.uuid4())
    lines = counted("main", _session(h1, D3, 3, run="run-ok"))
    err = h.assistant(
        D3 + timedelta(minutes=20),
        stop="error",
        error='529 {"type":"error","error":{"type":"overloaded_error"}}',
        u=h.usage(0, 0),
        text="",
    )
    err["message"]["__openclaw"] = {"runId": "run-a"}
    ledger.add("main", err, failed=True)
    covered = {
        "type": "custom",
        "customType": "openclaw:prompt-error",
        "id": "pe000001",
        "parentId": None,
        "timestamp": h.iso(D3 + timedelta(minutes=20, seconds=3)),
        "data": {
            "timestamp": h.ms(D3 + timedelta(minutes=20, seconds=3)),
            "runId": "run-a",
            "sessionId": h1,
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "api": "anthropic-messages",
            "error": "529 overloaded",
        },
    }
    alone = {
        **covered,
        "id": "pe000002",
        "timestamp": h.iso(D3 + timedelta(minutes=40)),
        "data": {
            **covered["data"],
            "runId": "run-b",
            "timestamp": h.ms(D3 + timedelta(minutes=40)),
            "error": "Request timed out.",
        },
    }
    ledger.add("main", alone)
    lines += [err, covered, alone]
    main.add_session(
        h1, lines, key="agent:main:telegram:direct:+4915112345678", channel="telegram", chat_type="direct"
    )

    # a fork copying its parent's first two calls, then one call of its own
    fork = str(uuid.uuid4())
    own = _session(fork, D3 + timedelta(hours=2), 1)[1:]
    counted("main", own)
    main.add_session(
        fork,
        [h.session_line(fork, D3 + timedelta(hours=1)) | {"parentSession": h1}, *lines[1:5], *own],
        key="agent:main:fork-1",
        reason="fork",
        fork_source=h1,
    )

    # the leftover JSONL of a session imported into the database (which has one call more)
    c = str(uuid.uuid4())
    c_lines = counted("main", _session(c, D1 + timedelta(hours=5), 3))
    if old_era:
        h.write_session(home, c_lines[:5], session_id=c)
    main.add_session(c, c_lines)

    # archives: zstd published now, identity published later
    for sid, enc, publish in ((str(uuid.uuid4()), "zstd", True), (str(uuid.uuid4()), "identity", False)):
        main.add_session(
            sid,
            counted("main", _session(sid, D2 + timedelta(hours=1), 3, model="claude-opus-4-6", cost=0.05)),
        )
        name = main.archive(sid, reason="reset" if publish else "deleted", encoding=enc, publish=publish)
        if not publish:
            uh.late_archive = (main, name)

    # cold archives: a file, a blob, and one restored to the hot table as well
    for storage, restore, day in (("file", False, D1), ("sqlite", False, D1), ("file", True, D2)):
        sid = str(uuid.uuid4())
        main.add_session(sid, counted("main", _session(sid, day + timedelta(hours=6), 2)))
        main.cold(sid, storage=storage, restore=restore)

    # planted bad rows beside one good call
    bad = str(uuid.uuid4())
    main.add_session(bad, counted("main", _session(bad, D2 + timedelta(hours=8), 1)))
    db_rel = "agents/main/agent/openclaw-agent.sqlite"
    unit = f"{db_rel}#transcript_events/{bad}"
    main.raw_event(bad, 100, event_zstd=b"\x28\xb5\x2f\xfd" + b"\x00" * 40, utf8_bytes=2000)
    planted.add((unit, 100, "event_zstd does not decompress"))
    good_line = json.dumps(h.assistant(D2 + timedelta(hours=9), thinking=THINK, u=h.usage(7, 7))).encode()
    import zstandard

    main.raw_event(
        bad, 101, event_zstd=zstandard.ZstdCompressor().compress(good_line), utf8_bytes=len(good_line) + 5
    )
    planted.add((unit, 101, "event_zstd decodes to"))
    main.raw_event(
        bad, 102, event_json='{"type": "message", "message": {"role": "assist', navigation_json=None
    )
    planted.add((unit, 102, "not valid JSON"))
    main.close()

    # the ops agent: its database only in the registry (not under agents/ops/agent/); cron sessions
    ops_path = home / "custom-dbs" / "ops.sqlite"
    ops = AgentDb(home, "ops", path=ops_path)
    state.register("ops", "custom-dbs/ops.sqlite")
    nightly, weekly = str(uuid.uuid4()), str(uuid.uuid4())
    ops.add_session(
        nightly,
        counted("ops", _session(nightly, D3 + timedelta(hours=3), 2, model="claude-haiku-4-5")),
        key=f"cron:{uh.cron_job}",
        created_via="cron",
    )
    ops.add_session(
        weekly,
        counted("ops", _session(weekly, D3 + timedelta(hours=4), 1, model="claude-haiku-4-5")),
        key="agent:ops:main",
    )
    state.cron_run("job-weekly", 1, weekly)
    ops.close()
    state.close()
    return uh
