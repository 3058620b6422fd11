"""Raised once, delivered once (mc_pipeline/alerting/delivery.py): alerts.jsonl, the state file and webhooks
posted to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest

from mc_pipeline.alerting import delivery as ad
from mc_pipeline.alerting.rules import AlertRules, evaluate_alerts
from mc_pipeline.tables.schemas import ALERTS, LLM_CALLS, conform

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


class Receiver:
    """``with Receiver() as hook:`` -> ``hook.url``; ``hook.fail = N`` answers the next N posts with 500,
    ``hook.stall = seconds`` delays answers; ``hook.received`` holds the JSON bodies answered with 200."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.attempts = 0
        self.fail = 0
        self.stall = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.fail > 0
                    if failing:
                        receiver.fail -= 1
                if receiver.stall:
                    time.sleep(receiver.stall)
                if failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client that gave up (timeout test)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/secret-token"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def alert(aid: str = "daily_limit:2026-03-04", severity: str = "critical", value: float = 12.5) -> dict:
    return {
        "alert_id": aid,
        "rule": aid.split(":", 1)[0],
        "scope": None,
        "period": aid.rsplit(":", 1)[1],
        "severity": severity,
        "message": f"{aid} is over its limit",
        "value": value,
        "limit": 10.0,
        "raised_at": NOW,
    }


def log_lines(data_dir) -> list[str]:
    return (data_dir / ad.ALERTS_FILE).read_text().splitlines()


class Logged(list):
    def __call__(self, text: str) -> None:
        self.append(text)


FAST = {"retries": 2, "timeout": 2.0, "backoff": 0.01}


# -- recording -------------------------------------------------------------------------------------------
def test_an_alert_is_recorded_once_however_many_runs(tmp_path):
    frame = pl.DataFrame([alert(), alert("weekly_limit:2026-W10", "warning")], schema=ALERTS)
    assert [a["alert_id"] for a in ad.record_alerts(frame, tmp_path)] == [
        "daily_limit:2026-03-04",
        "weekly_limit:2026-W10",
    ]
    for _ in range(3):
        assert ad.record_alerts(frame, tmp_path) == []
    lines = [json.loads(line) for line in log_lines(tmp_path)]
    assert [line["alert_id"] for line in lines] == ["daily_limit:2026-03-04", "weekly_limit:2026-W10"]
    assert lines[0]["raised_at"] == "2026-03-04T12:00:00Z" and lines[0]["value"] == 12.5
    # the next period is a new alert
    assert len(ad.record_alerts([alert("daily_limit:2026-03-05")], tmp_path)) == 1
    assert len(log_lines(tmp_path)) == 3


def test_concurrent_recorders_write_each_alert_once(tmp_path):
    rows = [alert(f"daily_limit:2026-03-{d:02d}") for d in range(1, 21)]
    barrier = threading.Barrier(6)

    def worker():
        barrier.wait()
        ad.record_alerts(rows, tmp_path)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    ids = [json.loads(line)["alert_id"] for line in log_lines(tmp_path)]
    assert sorted(ids) == sorted(r["alert_id"] for r in rows)


def test_a_torn_last_line_is_skipped_and_not_glued_to_the_next(tmp_path):
    ad.record_alerts([alert()], tmp_path)
    with (tmp_path / ad.ALERTS_FILE).open("a") as f:
        f.write('{"alert_id": "half')
    assert [a["alert_id"] for a in ad.read_alert_log(tmp_path)] == ["daily_limit:2026-03-04"]
    ad.record_alerts([alert("weekly_limit:2026-W10")], tmp_path)
    assert [a["alert_id"] for a in ad.read_alert_log(tmp_path)] == [
        "daily_limit:2026-03-04",
        "weekly_limit:2026-W10",
    ]


def test_evaluated_alerts_round_trip_through_the_log(tmp_path):
    ts = datetime(2026, 3, 4, 11, 0, tzinfo=UTC)
    calls = conform(
        pl.DataFrame(
            {
                "timestamp": [ts],
                "day": [ts.date()],
                "model": ["m"],
                "billing": ["api"],
                "status": ["ok"],
                "cost_usd": [3.0],
                "cost_source": ["recorded"],
            },
            schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
        ),
        LLM_CALLS,
    )
    alerts = evaluate_alerts(calls, AlertRules(daily_limit_usd=2.0), NOW, "UTC")
    ad.record_alerts(alerts, tmp_path)
    back = pl.DataFrame(ad.read_alert_log(tmp_path)).with_columns(
        pl.col("raised_at").str.to_datetime(time_zone="UTC", time_unit="us")
    )
    assert conform(back, ALERTS).equals(alerts)


# -- delivery --------------------------------------------------------------------------------------------
def test_delivered_to_the_log_and_a_webhook_exactly_once(tmp_path):
    ad.record_alerts([alert()], tmp_path)
    log = Logged()
    with Receiver() as hook:
        report = ad.deliver_pending(tmp_path, [hook.url], log=log, **FAST)
        assert sorted(t for _, t in report.delivered) == sorted(["log", ad.webhook_key(hook.url)])
        again = ad.deliver_pending(tmp_path, [hook.url], log=log, **FAST)
        assert again.delivered == [] and again.pending == []
    assert len(hook.received) == 1 and hook.attempts == 1
    body = hook.received[0]
    assert body["text"].startswith(":rotating_light: [critical]") and "daily_limit:2026-03-04" in body["text"]
    assert body["alert"]["alert_id"] == "daily_limit:2026-03-04"
    assert len(log) == 1 and "[critical]" in log[0]
    state = (tmp_path / ad.STATE_FILE).read_text()
    assert "secret-token" not in state and "127.0.0.1" not in state  # webhook URLs are secrets


def test_a_failing_webhook_gets_the_alert_once_after_it_recovers(tmp_path):
    ad.record_alerts([alert()], tmp_path)
    log = Logged()
    with Receiver() as hook:
        hook.fail = 10**6  # down
        first = ad.deliver_pending(tmp_path, [hook.url], log=log, **FAST)
        assert [t for _, t in first.delivered] == ["log"]
        assert first.pending == [("daily_limit:2026-03-04", ad.webhook_key(hook.url))]
        assert hook.attempts == FAST["retries"] and hook.received == []
        assert "HTTP 500" in first.errors[0] and "secret-token" not in first.errors[0]
        # still down on the next tick: still pending, the log is not written twice
        ad.deliver_pending(tmp_path, [hook.url], log=log, **FAST)
        assert hook.received == [] and len(log) == 1
        hook.fail = 0  # recovers
        second = ad.deliver_pending(tmp_path, [hook.url], log=log, **FAST)
        assert [t for _, t in second.delivered] == [ad.webhook_key(hook.url)] and second.pending == []
        for _ in range(2):
            ad.deliver_pending(tmp_path, [hook.url], log=log, **FAST)
    assert [b["alert"]["alert_id"] for b in hook.received] == ["daily_limit:2026-03-04"]
    assert len(log) == 1


def test_a_retry_within_one_tick_recovers(tmp_path):
    ad.record_alerts([alert()], tmp_path)
    with Receiver() as hook:
        hook.fail = 1
        report = ad.deliver_pending(tmp_path, [hook.url], log=Logged(), **FAST)
    assert report.pending == [] and hook.attempts == 2 and len(hook.received) == 1


def test_one_webhook_down_does_not_hold_back_or_double_the_other(tmp_path):
    ad.record_alerts([alert(), alert("weekly_limit:2026-W10", "warning")], tmp_path)
    with Receiver() as good, Receiver() as bad:
        bad.fail = 10**6
        hooks = [good.url, bad.url]
        report = ad.deliver_pending(tmp_path, hooks, log=Logged(), **FAST)
        assert len(good.received) == 2
        assert bad.attempts == FAST["retries"]  # a target that failed is not retried for the next alert
        assert sorted(a for a, _ in report.pending) == ["daily_limit:2026-03-04", "weekly_limit:2026-W10"]
        bad.fail = 0
        ad.deliver_pending(tmp_path, hooks, log=Logged(), **FAST)
    assert len(good.received) == 2 and len(bad.received) == 2
    assert bad.received[1]["text"].startswith(":warning: [warning]")


def test_a_stalled_webhook_times_out_and_stays_pending(tmp_path):
    ad.record_alerts([alert()], tmp_path)
    with Receiver() as hook:
        hook.stall = 1.0
        report = ad.deliver_pending(tmp_path, [hook.url], log=Logged(), retries=1, timeout=0.2, backoff=0.01)
        assert report.pending and "time" in report.errors[0].lower()
        hook.stall = 0.0
        ad.deliver_pending(tmp_path, [hook.url], log=Logged(), **FAST)
    # the stalled request may have been answered after the client gave up; it is never counted as delivered
    state = ad.read_state(tmp_path)["alerts"]["daily_limit:2026-03-04"]["targets"][ad.webhook_key(hook.url)]
    assert state["delivered_at"]


def test_webhooks_added_later_do_not_receive_the_history_and_removed_ones_are_dropped(tmp_path):
    ad.record_alerts([alert()], tmp_path)
    with Receiver() as old, Receiver() as new:
        old.fail = 10**6
        ad.deliver_pending(tmp_path, [old.url], log=Logged(), **FAST)
        ad.record_alerts([alert("weekly_limit:2026-W10", "warning")], tmp_path)
        report = ad.deliver_pending(tmp_path, [new.url], log=Logged(), **FAST)  # old one removed
    assert [b["alert"]["alert_id"] for b in new.received] == ["weekly_limit:2026-W10"]
    assert report.pending == []
    targets = ad.read_state(tmp_path)["alerts"]["daily_limit:2026-03-04"]["targets"]
    assert "no longer" in targets[ad.webhook_key(old.url)]["dropped"]


def test_delivery_skips_a_tick_while_another_process_delivers(tmp_path):
    ad.record_alerts([alert()], tmp_path)
    with ad._locked(tmp_path):
        report = ad.deliver_pending(tmp_path, [], log=Logged(), **FAST)
    assert report.busy and report.delivered == []
    assert [t for _, t in ad.deliver_pending(tmp_path, [], log=Logged(), **FAST).delivered] == ["log"]


def test_webhook_settings():
    assert ad.parse_webhooks(" http://a/x , https://b/y,http://a/x,") == ["http://a/x", "https://b/y"]
    with pytest.raises(ValueError):
        ad.parse_webhooks("file:///etc/passwd")
    assert "tok" not in ad.redact_url("https://hooks.slack.com/services/T/B/tok")
