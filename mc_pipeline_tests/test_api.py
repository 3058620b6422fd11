"""The read-only usage API, served by a real uvicorn on 127.0.0.1 over the tables a refresh wrote."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
import uvicorn

from mc_pipeline.defs.resources import McSettings
from mc_pipeline.reporting.api import ApiSettings, build_app
from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import homes as h


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, settings: ApiSettings):
        self.config = uvicorn.Config(
            build_app(settings), host="127.0.0.1", port=settings.port, log_level="error"
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base = f"http://127.0.0.1:{settings.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(100):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("the API did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory, refresh):
    """A home with calls minutes ago (two providers, one failure) and one yesterday, refreshed once."""
    tmp = tmp_path_factory.mktemp("api")
    now = datetime.now(UTC)
    home, data = tmp / "home", tmp / "data"
    sid = "0b7c6a52-2222-4a3e-9c1e-2f0e5d8a9b01"
    lines = [h.session_line(sid, now), h.user(now - timedelta(minutes=5))]
    lines.append(h.assistant(now - timedelta(minutes=4), u=h.usage(1000, 200, cost=0.25)))
    lines.append(
        h.assistant(
            now - timedelta(minutes=3),
            provider="openai",
            model="gpt-5.1",
            api="openai-responses",
            u=h.usage(500, 50, cost=0.05),
        )
    )
    lines.append(
        h.assistant(
            now - timedelta(minutes=2), stop="error", error="429 Rate limit exceeded", u=h.usage(0, 0)
        )
    )
    h.write_session(home, lines, session_id=sid)
    h.write_sessions_index(home, "main", {"agent:main:whatsapp:direct:+4915112345678": sid})
    settings = McSettings(openclaw_home=str(home), data_dir=str(data), timezone="UTC")
    refresh(home, data)
    return ApiSettings(data=data.resolve(), tz="UTC", port=free_port()), settings


def test_today_latest_and_the_dashboard_files(refreshed):
    api, settings = refreshed
    with Server(api) as s:
        status, _, body = s.get("/api/usage/today")
        today = json.loads(body)
        assert status == 200
        calls = Tables(settings.data).read_days("llm_calls", [datetime.now(UTC).date()])
        assert today["requests"] == calls.height == 3 and today["failures"] == 1
        assert today["cost"] == pytest.approx(0.30)
        assert [p["name"] for p in today["byProvider"]] == ["anthropic", "openai"]
        assert today["asOf"] == calls.get_column("timestamp").max().isoformat(
            timespec="milliseconds"
        ).replace("+00:00", "Z")
        # equal to usage_daily's today row
        usage = Tables(settings.data).staged("usage_daily").filter(pl.col("day") == datetime.now(UTC).date())
        assert today["requests"] == usage.get_column("calls").sum() and today["cost"] == pytest.approx(
            usage.get_column("cost_usd").sum()
        )

        status, _, body = s.get("/api/usage/latest?limit=2")
        latest = json.loads(body)["calls"]
        assert (
            status == 200
            and len(latest) == 2
            and latest[0]["status"] == "error"
            and latest[1]["model"] == "gpt-5.1"
        )
        text = body.decode()
        assert (
            "4915112345678" not in text and "0b7c6a52" not in text and "whatsapp" not in text
        )  # no personal ids

        status, headers, body = s.get("/usage-data.json")
        assert status == 200 and json.loads(body)["summary"]["totalRequests"] == 3
        etag = headers["etag"]
        assert s.get("/usage-data.json", {"If-None-Match": etag})[0] == 304
        assert s.get("/sessions.json")[0] == 200

        health = json.loads(s.get("/healthz")[2])
        assert health["status"] == "ok" and health["dataAgeSeconds"] < 600 and health["sources"]


def test_bad_query_strings_are_400_with_a_message(refreshed):
    api, _ = refreshed
    with Server(api) as s:
        for path, said in (
            ("/api/usage/latest?limit=abc", "limit must be a whole number"),
            ("/api/usage/latest?limit=0", "limit must be a whole number"),
            ("/api/usage/latest?limit=9999", "from 1 to 500"),
            ("/api/usage/today?day=2026-01-01", "unknown query parameter(s): day"),
        ):
            status, _, body = s.get(path)
            assert status == 400 and said in json.loads(body)["error"], path


def test_a_token_is_required_when_set_and_cors_is_limited(refreshed):
    api, _ = refreshed
    from dataclasses import replace

    locked = replace(api, token="s3cret", port=free_port(), cors_origins=("http://localhost:5173",))
    with Server(locked) as s:
        assert s.get("/api/usage/today")[0] == 401
        assert s.get("/api/usage/today", {"Authorization": "Bearer wrong"})[0] == 401
        assert s.get("/api/usage/today", {"Authorization": "Bearer s3cret"})[0] == 200
        ok = s.get("/healthz", {"Authorization": "Bearer s3cret", "Origin": "http://localhost:5173"})
        assert ok[1].get("access-control-allow-origin") == "http://localhost:5173"
        other = s.get("/healthz", {"Authorization": "Bearer s3cret", "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other[1]


def test_no_data_yet_says_so(tmp_path):
    api = ApiSettings(data=tmp_path, tz="UTC", port=free_port())
    with Server(api) as s:
        assert json.loads(s.get("/api/usage/today")[2])["requests"] == 0
        status, _, body = s.get("/usage-data.json")
        assert status == 404 and "make run" in json.loads(body)["error"]
        assert "no data yet" in json.loads(s.get("/healthz")[2])["status"]
