"""Live freshness as under ``make dev``: how long a call appended to a live transcript takes to reach the
usage API.

The real ``dagster-daemon`` (the ``transcript_changes`` sensor, every 15 s, and the run queue) and
``dagster-webserver`` run with the usage API beside them (:mod:`mc_pipeline_tests.live_stack`) on a home with
history; after the first refresh has settled, one assistant call at a time (the real format, timestamped now,
a distinctive cost, each a little later in the sensor's cycle: :data:`STAGGER_S`) is appended to the live
transcript, and ``/api/usage/today`` is polled every 0.5 s until its ``requests`` grows by one. Then the same
for one call appended to an OpenClaw 2026.8+ agent database. Each call must be seen within
:data:`SEEN_TIMEOUT_S` (a bound, not a speed target); the seconds from each append to the API answering with
it are printed (``pytest -s``) with their max, the figure for the engineer's note.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest

from mc_pipeline_tests import homes as h
from mc_pipeline_tests.live_stack import LiveStack, local_today, plant_home, reporting_zone
from mc_pipeline_tests.openclaw_db import AgentDb
from mc_pipeline_tests.test_webserver import wait_for

pytestmark = pytest.mark.slow

APPENDS = 5
#: Seconds to wait after a call was seen before appending the next. Right after a call is seen, the sensor's
#: next tick is about 15 s minus the run's duration away; appending then every time would measure that same
#: phase five times. Spread over the cycle, the samples range from a call caught by the next tick to one just
#: missed.
STAGGER_S = [2.0 * i for i in range(APPENDS)]
SEEN_TIMEOUT_S = 120
POLL_S = 0.5


def test_appended_calls_reach_the_usage_api(tmp_path):
    now = datetime.now(UTC)
    tz = reporting_zone(now)
    planted = plant_home(tmp_path / "home", now, agent_db=True)
    t_start = time.monotonic()
    with LiveStack(tmp_path, tmp_path / "home", tz) as stack:
        stack.wait_ready()
        t_ready = time.monotonic()
        stack.wait_refreshed()  # the sensor's first run (the home is new to it) and nothing queued after it
        t_refreshed = time.monotonic()
        today = local_today(tz)
        doc = wait_for(
            "the planted calls in /api/usage/today",
            lambda: (d := stack.api("/api/usage/today"))["requests"] == planted["today_calls"] and d,
            60,
            stack.procs,
        )
        assert doc["date"] == today.isoformat(), doc

        def append_and_wait(what: str, append, cost: float) -> float:
            nonlocal doc
            before = doc
            t0 = time.monotonic()
            append()
            try:
                doc = wait_for(
                    f"{what} in /api/usage/today",
                    lambda: (d := stack.api("/api/usage/today"))["requests"] > before["requests"] and d,
                    SEEN_TIMEOUT_S,
                    stack.procs,
                    every=POLL_S,
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{stack.logs()}") from None
            seen = time.monotonic() - t0
            assert doc["requests"] == before["requests"] + 1, (before, doc)
            assert doc["cost"] == pytest.approx(before["cost"] + cost, abs=1e-9), (before, doc, cost)
            newest = stack.api("/api/usage/latest?limit=1")["calls"][0]
            assert newest["cost"] == pytest.approx(cost, abs=1e-12), newest
            return seen

        latencies = []
        for i in range(APPENDS):
            time.sleep(STAGGER_S[i])
            cost = round(0.0101 * (i + 1) + 0.000037, 6)  # distinctive: 0.010137, 0.020237, ...
            call = h.assistant(
                datetime.now(UTC) - timedelta(seconds=3),
                u=h.usage(1111 * (i + 1), 77, cost=cost),
                text=f"append {i}",
            )

            def append(line=call):
                with open(
                    planted["live"], "ab"
                ) as f:  # as OpenClaw appends: one JSON line, newline-terminated
                    f.write(json.dumps(line).encode() + b"\n")

            latencies.append(append_and_wait(f"transcript append {i + 1}", append, cost))

        db_cost = 0.031337
        db_call = h.assistant(
            datetime.now(UTC) - timedelta(seconds=3),
            provider="openai",
            model="gpt-5.1",
            api="openai-responses",
            u=h.usage(4242, 99, cost=db_cost),
            text="db append",
        )

        def append_db():
            db = AgentDb(stack.home, "ops")
            try:
                db.append(planted["agent_db_session"], [db_call])
            finally:
                db.close()

        db_latency = append_and_wait("agent database append", append_db, db_cost)

    report = (
        f"\nlive freshness (append -> /api/usage/today), {len(latencies)} transcript appends: "
        + ", ".join(f"{s:.1f}" for s in latencies)
        + f" s; median {statistics.median(latencies):.1f} s, max {max(latencies):.1f} s"
        + f"\nagent database append: {db_latency:.1f} s (zone {tz}; "
        f"servers ready in {t_ready - t_start:.1f} s, "
        f"first refresh settled {t_refreshed - t_ready:.1f} s later)"
    )
    print(report)
