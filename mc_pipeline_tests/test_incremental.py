"""Incremental reading equals a full rebuild, step after step, on real-format homes.

Each step changes the home the way OpenClaw and its users do (appends, a half-written last line that is
finished later, new sessions and topics, /reset renames, deletions, a file edited in place and shrunk, a
file rewritten with the same inode) and then checks that reading only what changed gives exactly what
reading everything gives, and that only what changed was read.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mc_pipeline.ingest.readers.home import discover_transcripts
from mc_pipeline.ingest.readers.manifest import MANIFEST, plan_reads
from mc_pipeline.ingest.readers.staged import SourceState
from mc_pipeline.ingest.readers.transcript_files import stage_transcript_files
from mc_pipeline_tests import homes as h

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 20, tzinfo=UTC)
RESET = ".reset.2026-03-05T10-00-00.000Z"


def line(obj: dict | str) -> bytes:
    return (json.dumps(obj) if isinstance(obj, dict) else obj).encode() + b"\n"


def turn(ts: datetime, tools=("read",)) -> list[dict]:
    return [
        h.user(ts, "fix the parser"),
        h.assistant(
            ts + timedelta(seconds=5),
            u=h.usage(120, 40, 1000, 200, cost=0.01),
            tools=tools,
            thinking="hmm " * 30,
        ),
        h.tool_result(ts + timedelta(seconds=9)),
        h.assistant(ts + timedelta(seconds=20), u=h.usage(10, 300, 1200, 0, cost=0.02)),
    ]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def assert_same(a, b) -> None:
    assert_frame_equal(a.records, b.records)
    assert_frame_equal(a.quarantine, b.quarantine)
    assert_frame_equal(a.file_counts, b.file_counts)
    assert a.problems == b.problems


class Runs:
    """Stages a home incrementally; every step is compared with a fresh full read (records by day, day
    digests, quarantine, file counts, manifest)."""

    def __init__(self, home: Path, tmp: Path, **kw):
        self.home, self.tmp, self.kw, self.n = home, tmp, kw, 0
        self.inc = SourceState(tmp / "inc", "UTC")
        self.last = stage_transcript_files(home, self.inc, now=NOW, **kw)
        self.state = self.inc.batch()

    def full(self) -> SourceState:
        self.n += 1
        full = SourceState(self.tmp / f"full-{self.n}", "UTC")
        stage_transcript_files(self.home, full, now=NOW)
        return full

    def step(self):
        inc = stage_transcript_files(self.home, self.inc, now=NOW, **self.kw)
        full = self.full()
        assert_same(self.inc.batch(), full.batch())
        assert self.inc.store.index().equals(full.store.index())
        assert self.inc.store.day_sessions().equals(full.store.day_sessions())
        key = "source_file"
        assert self.inc.manifest(MANIFEST, "").sort(key).equals(full.manifest(MANIFEST, "").sort(key))
        self.state, self.last = self.inc.batch(), inc
        return inc


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    h.write_session(home, [h.session_line("s-live", T0), *turn(T0)], session_id="s-live")
    h.write_session(home, [h.session_line("s-old", T0), *turn(T0 + timedelta(days=1))], session_id="s-old")
    h.write_session(
        home, [h.session_line("s-ops", T0), *turn(T0, tools=("exec",))], agent="ops", session_id="s-ops"
    )
    h.write_session(home, [h.session_line("s-3", T0), *turn(T0 + timedelta(days=3))], session_id="s-3")
    if h.REAL_DIR.exists():
        h.copy_real_home(home, agent="real")
    return home


@pytest.mark.parametrize("kw", [{}, {"workers": 2, "unit_bytes": 16_384}], ids=["default", "tiny-units"])
def test_every_kind_of_change_reads_only_what_changed_and_equals_a_full_rebuild(home, tmp_path, kw):
    d = h.sessions_dir(home)
    live = d / "s-live.jsonl"
    runs = Runs(home, tmp_path / "staging", **kw)
    first = runs.last
    assert first.files_read == len(discover_transcripts(home).files)

    # nothing new: nothing read
    r = runs.step()
    assert r.files_read == 0 and r.bytes_read == 0 and r.plan.summary()["files_unchanged"] == first.files_read

    # an append: only the new bytes are read
    extra = b"".join(line(x) for x in turn(T0 + timedelta(hours=2)))
    append(live, extra)
    r = runs.step()
    assert r.files_read == 1 and r.bytes_read == len(extra)
    assert r.plan.summary()["files_appended"] == 1

    # a half-written last line: quarantined as truncated for now ...
    last = line(h.assistant(T0 + timedelta(hours=3), u=h.usage(7, 8, 0, 0, cost=0.001)))
    append(live, last[:40])
    r = runs.step()
    live_q = runs.state.quarantine.filter(pl.col("source_file") == "agents/main/sessions/s-live.jsonl")
    assert live_q.height == 1 and "truncated" in live_q.item(0, "reason")
    n_calls = runs.state.records.height
    # ... and when the writer finishes it, the line is read again: the quarantine row is replaced by a call
    append(live, last[40:])
    r = runs.step()
    assert runs.state.quarantine.filter(pl.col("source_file").str.ends_with("s-live.jsonl")).height == 0
    assert runs.state.records.height == n_calls + 1
    assert r.bytes_read == len(last)

    # a new session and a topic thread
    h.write_session(home, [h.session_line("s-new", T0), *turn(T0 + timedelta(days=2))], session_id="s-new")
    h.write_lines(
        d / "s-new-topic-7.jsonl", [h.session_line("s-new", T0), *turn(T0 + timedelta(days=2, hours=1))]
    )
    r = runs.step()
    assert r.files_read == 2

    # /reset: the live file is renamed (same inode): not read again, rows keep their call ids
    before = runs.state.records.filter(pl.col("session_id") == "s-old").select("entry_id", "line_no")
    os.rename(d / "s-old.jsonl", d / f"s-old.jsonl{RESET}")
    r = runs.step()
    assert r.files_read == 0 and r.plan.summary()["files_renamed"] == 1
    moved = runs.state.records.filter(pl.col("session_id") == "s-old")
    assert set(moved.get_column("source_file")) == {f"agents/main/sessions/s-old.jsonl{RESET}"}
    assert_frame_equal(moved.select("entry_id", "line_no"), before)

    # a deleted file: its rows go
    (h.sessions_dir(home, "ops") / "s-ops.jsonl").unlink()
    r = runs.step()
    assert runs.state.records.filter(pl.col("agent_id") == "ops").height == 0
    assert r.plan.summary()["files_vanished"] == 1

    # edited in place and shrunk: read whole again
    lines = live.read_bytes().splitlines(keepends=True)
    with open(live, "r+b") as fh:
        fh.truncate(0)
        fh.write(b"".join(lines[:3]))
    r = runs.step()
    assert r.plan.summary()["files_new_or_changed"] == 1 and r.files_read == 1

    # rewritten with the same inode, different content, and grown: the fingerprints catch it
    with open(live, "r+b") as fh:
        fh.truncate(0)
        fh.write(
            b"".join(
                line(x) for x in [h.session_line("s-live", T0), *turn(T0 + timedelta(hours=5)), *turn(T0)]
            )
        )
    r = runs.step()
    assert r.files_read == 1 and r.bytes_read == live.stat().st_size


def test_a_file_with_a_future_call_is_read_again_every_run(tmp_path):
    """Whether a time is "in the future" depends on when the run happens, so such files are re-read."""
    h.write_session(
        tmp_path / "home", [h.session_line("s", T0), *turn(NOW + timedelta(days=3))], session_id="s"
    )
    runs = Runs(tmp_path / "home", tmp_path / "staging")
    assert runs.state.quarantine.height == 2
    assert runs.step().files_read == 1


def test_a_run_that_stopped_while_staging_means_a_full_read(tmp_path, home):
    """A run that died half-way through changing the staged files leaves its marker: the next one reads
    all."""
    state = SourceState(tmp_path / "staging", "UTC")
    first = stage_transcript_files(home, state)
    assert first.report.mode.startswith("full") and state.manifest(MANIFEST, "").height == first.files_read
    good = stage_transcript_files(home, state)
    assert good.report.mode == "incremental" and good.files_read == 0
    expected = state.batch()
    state.begin()  # as if a run had stopped after this
    again = stage_transcript_files(home, state)
    assert (
        again.report.mode == "full: an earlier run stopped while staging"
        and again.files_read == first.files_read
    )
    assert_same(state.batch(), expected)
    forced = stage_transcript_files(home, state, full_rebuild=True)
    assert forced.report.mode.startswith("full") and forced.files_read == first.files_read
    other_zone = stage_transcript_files(home, state, settings_key="tz=Europe/Berlin")
    assert other_zone.report.mode.startswith("full") and other_zone.files_read == first.files_read


def test_a_rename_that_changes_the_session_of_a_headerless_file_is_read_again(tmp_path):
    """Old (v1) files without a header take their session id from the name: a rename then is a new file."""
    d = h.sessions_dir(tmp_path)
    h.write_lines(d / "aaa.jsonl", [h.assistant(T0, v1=True)])
    runs = Runs(tmp_path, tmp_path / "staging")
    os.rename(d / "aaa.jsonl", d / "bbb.jsonl")
    r = runs.step()
    assert r.plan.summary()["files_renamed"] == 0 and r.files_read == 1
    assert runs.state.records.get_column("session_id").to_list() == ["bbb"]


def test_days_not_touched_are_not_rewritten(home, tmp_path):
    """An append on one day rebuilds only that day's llm_calls (and the aggregates of that day)."""
    from mc_pipeline.calls.build_days import build_and_write
    from mc_pipeline.ingest.staging import stage_sources
    from mc_pipeline.runtime.config import Config
    from mc_pipeline.tables.store import Tables

    config = Config(home=home, data=tmp_path / "data", tz="UTC")
    stage_sources(config)
    first = build_and_write(config)
    out = Tables(config.data).table_dir("llm_calls")
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("day=*/*.parquet")}
    assert len(first.days) == len(stamps) >= 3
    day = (T0 + timedelta(days=1)).date()
    append(
        h.sessions_dir(home) / "s-old.jsonl", b"".join(line(x) for x in turn(T0 + timedelta(days=1, hours=3)))
    )
    touched = stage_sources(config).reports["transcript_records"].touched
    assert touched == {day}
    again = build_and_write(config)
    assert [r.day for r in again.days] == [day]
    changed = {p.parent.name for p in stamps if p.stat().st_mtime_ns != stamps[p]}
    assert changed == {f"day={day.isoformat()}"}
    assert build_and_write(config).days == []  # nothing new: no day built


def test_plan_of_an_unchanged_home_reads_nothing(home, tmp_path):
    state = SourceState(tmp_path / "staging", "UTC")
    stage_transcript_files(home, state, now=NOW)
    plan = plan_reads(discover_transcripts(home).files, state.manifest(MANIFEST, ""))
    assert not plan.full and not plan.appended and not plan.renamed and not plan.vanished


def test_the_asset_is_incremental_across_dagster_runs_and_can_be_forced_to_rebuild(
    home, tmp_path, monkeypatch
):
    from mc_pipeline.defs.automation import FULL_REBUILD_TAG
    from mc_pipeline.defs.resources import McSettings
    from mc_pipeline.defs.source_assets import build_reader_assets

    source_records = build_reader_assets()[-1]

    data = tmp_path / "data"
    resources = McSettings(openclaw_home=str(home), data_dir=str(data), timezone="UTC").resources()
    monkeypatch.delenv("MC_FULL_REBUILD", raising=False)

    def run(**kw) -> dict:
        result = dg.materialize(
            [source_records],
            resources=resources,
            instance=dg.DagsterInstance.ephemeral(),
            selection=["transcript_records"],
            **kw,
        )
        mat = result.asset_materializations_for_node("source_records")[0]
        return {k: v.value for k, v in mat.metadata.items()}

    n_files = len(discover_transcripts(home).files)
    assert run()["files_read"] == n_files
    assert run()["files_read"] == 0
    append(h.sessions_dir(home) / "s-live.jsonl", b"".join(line(x) for x in turn(T0 + timedelta(hours=4))))
    meta = run()
    assert meta["files_read"] == 1 and meta["read_mode"] == "incremental" and meta["days_touched"] == 1
    assert run(tags={FULL_REBUILD_TAG: "true"})["files_read"] == n_files
    resources["settings"] = McSettings.from_env(
        {"OPENCLAW_HOME": str(home), "MC_DATA_DIR": str(data), "MC_TIMEZONE": "UTC", "MC_FULL_REBUILD": "1"}
    )
    assert run()["files_read"] == n_files
    fresh = SourceState(tmp_path / "fresh", "UTC")
    stage_transcript_files(home, fresh)
    assert_same(SourceState(data / "staging" / "transcript_records", "UTC").batch(), fresh.batch())


def test_a_file_that_grows_while_it_is_read_is_appended_next_run_not_read_again(tmp_path, monkeypatch):
    """Bytes written between the listing and the read are read now; next run only checks the offset."""
    from mc_pipeline.ingest.readers import transcript_files

    home = tmp_path / "home"
    live = h.write_session(home, [h.session_line("s", T0), *turn(T0)], session_id="s")
    listing = transcript_files.discover_transcripts

    def listed_then_grown(home):
        found = listing(home)
        append(live, b"".join(line(x) for x in turn(T0 + timedelta(hours=1))))
        return found

    monkeypatch.setattr(transcript_files, "discover_transcripts", listed_then_grown)
    runs = Runs(home, tmp_path / "staging")
    monkeypatch.undo()
    assert runs.state.records.height == 4
    r = runs.step()
    assert r.plan.summary()["files_appended"] == 1 and r.bytes_read == 0
