"""A source that goes silent or changes shape is noticed: WARN checks on llm_calls and the summary says
why."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from mc_pipeline.definitions import build_defs
from mc_pipeline.defs.resources import McSettings
from mc_pipeline.ingest import source_health as sh
from mc_pipeline.runtime.cli import summary_lines
from mc_pipeline.tables.schemas import CALL_RECORDS, FILE_COUNTS
from mc_pipeline_tests import homes as h
from mc_pipeline_tests.openclaw_db import AgentDb

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def records(source: str, times: list[datetime]) -> pl.DataFrame:
    return pl.DataFrame([{"source": source, "timestamp": t} for t in times], schema=CALL_RECORDS)


def counts(source: str, lines: int, quarantined: int) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "source": source,
                "source_file": "x",
                "lines_read": lines,
                "calls": 0,
                "other_entries": 0,
                "skipped_by_rule": 0,
                "quarantined": quarantined,
            }
        ],
        schema=FILE_COUNTS,
    )


def test_a_source_written_lately_whose_calls_stopped_is_silent():
    recent = [NOW - timedelta(days=2)] * 3
    last_run = {"transcript_store": {"calls_recent": 3, "calls_read": 3, "lines_read": 10, "quarantined": 0}}
    written = {"transcript_store": NOW - timedelta(hours=2)}
    # the last run read 3 calls of the last 7 days; now none (e.g. the rows went where the reader does not
    # look)
    stats = sh.source_stats(
        records("transcript_store", []), counts("transcript_store", 0, 0), written, NOW, last_run
    )
    (found,) = sh.silent(stats, NOW, last_run)
    assert (
        found.startswith("transcripts (SQLite): written in the last 7 days")
        and "3 calls of that window" in found
    )
    # 25 new lines and not one new call among them
    stats = sh.source_stats(
        records("transcript_store", recent), counts("transcript_store", 35, 0), written, NOW, last_run
    )
    (found,) = sh.silent(stats, NOW, last_run)
    assert found.startswith(
        "transcripts (SQLite): 25 new lines since the last run and no new call among them"
    )
    # ... but new lines with a new call, a source not written lately, or no earlier run: not silent
    grown = records("transcript_store", recent + [NOW])
    assert not sh.silent(
        sh.source_stats(grown, counts("transcript_store", 35, 0), written, NOW, last_run), NOW, last_run
    )
    old = {"transcript_store": NOW - timedelta(days=9)}
    assert not sh.silent(
        sh.source_stats(
            records("transcript_store", []), counts("transcript_store", 0, 0), old, NOW, last_run
        ),
        NOW,
        last_run,
    )
    assert not sh.silent(
        sh.source_stats(records("transcript_store", []), counts("transcript_store", 0, 0), written, NOW, {}),
        NOW,
        {},
    )


def test_a_jump_in_the_quarantined_share_is_reported():
    history = {"transcript": {"lines_read": 1000, "quarantined": 5}}
    stats = sh.source_stats(records("transcript", []), counts("transcript", 1000, 300), {}, NOW, history)
    (found,) = sh.quarantine_jumps(stats, history)
    assert found == (
        "transcripts (files): 30.0% of its lines quarantined (300 of 1,000), 0.5% in the last run; "
        "see the quarantine table"
    )
    steady = sh.source_stats(records("transcript", []), counts("transcript", 1000, 6), {}, NOW, history)
    assert not sh.quarantine_jumps(steady, history)
    assert not sh.quarantine_jumps(stats, {})  # no earlier run: nothing to compare with


def _run(home, data, instance):
    settings = McSettings(openclaw_home=str(home), data_dir=str(data), timezone="UTC")
    result = build_defs(settings).resolve_job_def("refresh_all").execute_in_process(instance=instance)
    found = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    return found, summary_lines(settings)


def test_a_database_that_changes_shape_fails_the_checks_and_the_summary_says_so(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    then = datetime.now(UTC) - timedelta(days=2)
    db = AgentDb(home, "main")
    sid = str(uuid.uuid4())
    db.add_session(
        sid,
        [h.session_line(sid, then)]
        + [h.assistant(then + timedelta(minutes=i), u=h.usage(cost=0.1)) for i in range(30)],
    )
    with dg.instance_for_test() as instance:
        checks, lines = _run(home, data, instance)
        assert checks["sources_not_silent"] and checks["quarantine_share_stable"]
        assert not any(x.startswith("warning:") for x in lines)
        assert any(x.startswith("sources:      transcripts (SQLite) 30") for x in lines)

        # a newer OpenClaw writes its calls as entries of a type this reader does not know
        later = datetime.now(UTC)
        unknown = [
            {**h.assistant(later + timedelta(seconds=i), u=h.usage(cost=0.1)), "type": "message_v2"}
            for i in range(25)
        ]
        db.append(sid, unknown)
        checks, lines = _run(home, data, instance)
        assert not checks["sources_not_silent"]
        assert any(
            x.startswith(
                "warning:      transcripts (SQLite): 25 new lines since the last run and no new call"
            )
            for x in lines
        ), lines

        # ... or lines the reader cannot decode: the quarantined share jumps
        for seq in range(100, 140):
            db.raw_event(sid, seq, event_zstd=b"\x28\xb5\x2f\xfd" + b"\x01" * 30, utf8_bytes=500)
        checks, lines = _run(home, data, instance)
        assert not checks["quarantine_share_stable"] and checks["sources_not_silent"]
        assert any("transcripts (SQLite): 41.7% of its lines quarantined (40 of 96)" in x for x in lines), (
            "\n".join(lines)
        )
    db.close()
