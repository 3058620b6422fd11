"""A home upgraded to OpenClaw 2026.8+ (both eras, every case of
docs/openclaw-formats.md#agent-databases): every call counted once.

The expected figures are the ledger ``upgraded_home.build`` kept while writing the home, not anything the
pipeline computes."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from mc_pipeline.defs.resources import McSettings
from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import upgraded_home


def daily(data) -> dict[str, dict]:
    calls = Tables(data).load("llm_calls")
    agg = calls.group_by("day").agg(
        calls=pl.len(),
        failed=(pl.col("status") != "ok").sum(),
        input=pl.col("input_tokens").sum(),
        output=pl.col("output_tokens").sum(),
        cache_read=pl.col("cache_read_tokens").sum(),
        cache_write=pl.col("cache_write_tokens").sum(),
        cost=pl.col("cost_recorded_usd").sum(),
    )
    return {r.pop("day").isoformat(): r for r in agg.iter_rows(named=True)}


def assert_equal(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for day, exp in expected.items():
        for k, v in exp.items():
            assert got[day][k] == pytest.approx(v, abs=1e-9), (day, k)


def quarantined(data) -> set[tuple]:
    q = Tables(data).load("quarantine")
    return {(r["source_file"], r["line_no"], r["reason"]) for r in q.iter_rows(named=True)}


def matches(planted: set, rows: set) -> bool:
    """Each planted bad row is exactly one quarantine row (its file, line and the start of its reason)."""
    left = set(rows)
    for f, line, reason in planted:
        hit = [r for r in left if r[0] == f and r[1] == line and (r[2].startswith(reason) or reason in r[2])]
        if len(hit) != 1:
            return False
        left -= set(hit)
    return not left


def checks(result) -> dict[str, bool]:
    evaluations = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": c.passed for c in evaluations}


@pytest.mark.parametrize("eras", ["both", "new_only", "old_only"])
def test_every_call_of_an_upgraded_home_is_counted_once(tmp_path, eras, refresh):
    uh = upgraded_home.build(tmp_path / "home", old_era=eras != "new_only", new_era=eras != "old_only")
    data = tmp_path / "data"
    expected = uh.ledger.daily()
    with dg.instance_for_test() as instance:
        first = refresh(uh.home, data, instance)
        assert_equal(daily(data), expected)
        assert matches(uh.quarantined, quarantined(data)), quarantined(data)
        assert checks(first)["source_files:lines_reconcile"] and checks(first)["source_files:unique_call_ids"]

        refresh(uh.home, data, instance)  # nothing new: the same figures
        assert_equal(daily(data), expected)
        if uh.late_archive:  # the identity archive's published copy appears an hour after its row
            uh.publish_late()
            refresh(uh.home, data, instance)
            assert_equal(daily(data), expected)
            assert matches(uh.quarantined, quarantined(data))


def test_session_keys_cron_jobs_forks_and_billing_come_from_the_databases(tmp_path, refresh):
    uh = upgraded_home.build(tmp_path / "home")
    data = tmp_path / "data"
    refresh(uh.home, data)
    calls = Tables(data).load("llm_calls")
    ops = calls.filter(pl.col("agent_id") == "ops")
    # a cron session named by its key, and one a cron run (state database) attributes; both named
    assert sorted(set(ops.select("cron_job_id", "cron_job_name").rows())) == [
        ("job-nightly", "Nightly report"),
        ("job-weekly", "Weekly digest"),
    ]
    assert set(ops.get_column("trigger").to_list()) == {"cron"}
    by_trigger = Tables(data).load("usage_by_trigger")
    cron = by_trigger.filter((pl.col("window") == "all_time") & (pl.col("trigger") == "cron"))
    assert sorted(cron.select("cron_job_id", "cron_job_name").rows()) == [
        ("job-nightly", "Nightly report"),
        ("job-weekly", "Weekly digest"),
    ]
    # the shared auth store (state database) makes anthropic a subscription for every agent
    assert set(calls.filter(pl.col("provider") == "anthropic").get_column("billing").to_list()) == {
        "subscription"
    }
    assert set(calls.filter(pl.col("provider") == "openai").get_column("billing").to_list()) == {"api"}
    # the session key comes from session_windows: a direct chat on telegram
    direct = calls.filter(pl.col("trigger") == "direct")
    assert direct.height and set(direct.get_column("channel").to_list()) == {"telegram"}
    # the fork's copies of its parent's calls are the parent's; the fork keeps only its own call
    fork_sid = (
        calls.filter(pl.col("session_key") == "agent:main:fork-1").get_column("session_id").unique().to_list()
    )
    assert len(fork_sid) == 1 and calls.filter(pl.col("session_id") == fork_sid[0]).height == 1
    # prompt-errors: the one covered by an assistant error of its run is not a call, the other is
    pe = calls.filter(pl.col("entry_kind") == "prompt_error")
    assert pe.select("entry_id", "status", "error_class", "run_id").rows() == [
        ("pe000002", "error", "timeout", "run-b")
    ]
    assert calls.filter(pl.col("run_id") == "run-a").height == 1
    # every transcript source reported, with the database preferred over the leftover file
    assert set(calls.get_column("source").to_list()) == {
        "transcript",
        "transcript_store",
        "transcript_archive",
        "transcript_cold",
    }
    # the summary names every source read, so a user sees at a glance that nothing was left out
    from mc_pipeline.runtime.cli import summary_lines

    kept = dict(calls.group_by("source").len().iter_rows())
    (line,) = [
        x
        for x in summary_lines(McSettings(openclaw_home=str(uh.home), data_dir=str(data), timezone="UTC"))
        if x.startswith("sources:")
    ]
    assert line == (
        f"sources:      transcripts (SQLite) {kept['transcript_store']}; "
        f"archives {kept['transcript_archive']}; "
        f"cold {kept['transcript_cold']}; transcripts (files) {kept['transcript']}"
    )
    files = Tables(data).load("source_files")
    assert files.filter(~pl.col("balanced")).height == 0
    assert not any("session-sqlite-import-archive" in f for f in files.get_column("source_file").to_list())
