"""mc_pipeline running live as ``make dev`` runs it, for the browser and freshness tests.

:class:`LiveStack` starts ``dagster-webserver`` and ``dagster-daemon`` (``workspace.yaml``, the instance
config mc_pipeline writes, the instance's storages made once beforehand, as in ``test_webserver.py``) and the
usage API (``python -m mc_pipeline serve``) on 127.0.0.1 ports of their own, all with the same
``OPENCLAW_HOME``, ``MC_DATA_DIR`` and ``MC_TIMEZONE``. Every process is started in a session of its own and
ended by its process group. :func:`plant_home` writes a home in the real format with calls today, yesterday
and the day before. Not a test module: helpers only.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

from mc_pipeline.runtime.instance import dagster_yaml
from mc_pipeline_tests import homes as h
from mc_pipeline_tests.test_webserver import (
    BIN,
    ROOT,
    free_port,
    graphql,
    init_instance,
    location_loaded,
    wait_for,
)

START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 150
ACTIVE = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
RUNS_FILTERED = """
query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId jobName status startTime endTime tags { key value } } } } }
"""


def reporting_zone(now: datetime) -> str:
    """MC_TIMEZONE for a test whose "today" must have calls and stay today while it runs: UTC unless UTC
    midnight is less than two hours away (before or after), else a fixed-offset zone where it is about
    noon."""
    now = now.astimezone(UTC)
    if 2 <= now.hour <= 21:
        return "UTC"
    offset = 12 - now.hour  # hours east of UTC
    if offset > 12:
        offset -= 24
    return f"Etc/GMT{-offset:+d}"  # POSIX sign: Etc/GMT-12 is UTC+12


def plant_home(home: Path, now: datetime, agent_db: bool = False) -> dict:
    """Calls in the real format on the reporting day of ``now`` and the two before it (``now`` must be at
    least an hour from midnight in the reporting zone: see :func:`reporting_zone`).

    - agent ``main``, live session ``live-1``: five calls in the last half hour (four anthropic, one openai),
      a delivery mirror (not a call); the transcript the freshness test appends to;
    - agent ``main``, ``hist-1`` yesterday (two calls), ``hist-2`` the day before (a call and a 529 failure);
    - agent ``worker``, ``work-1``: one openai call today;
    - with ``agent_db``: agent ``ops`` in an OpenClaw 2026.8+ agent database, session ``ops-1``, one call
      today.

    Returns ``{"live": <path of live-1>, "today_calls": n, "agent_db_session": sid or None}``.
    """
    now = now.astimezone(UTC).replace(microsecond=0)
    t = now - timedelta(minutes=30)
    live = [h.session_line("live-1", t), h.user(t)]
    live += [
        h.assistant(t + timedelta(minutes=i), u=h.usage(200 * i, 40, 1000, 20, cost=0.01 * i))
        for i in range(1, 5)
    ]
    live += [
        h.assistant(
            t + timedelta(minutes=6),
            provider="openai",
            model="gpt-5.1",
            api="openai-responses",
            u=h.usage(800, 120, cost=0.02),
        ),
        h.mirror(t + timedelta(minutes=6)),
    ]
    path = h.write_session(home, live, session_id="live-1")
    y = now - timedelta(days=1)
    h.write_session(
        home,
        [
            h.session_line("hist-1", y),
            h.user(y),
            h.assistant(y + timedelta(minutes=1), u=h.usage(3000, 300, 5000, 0, cost=0.09)),
            h.assistant(y + timedelta(minutes=2), u=h.usage(1500, 150, 0, 0, cost=0.05)),
        ],
        session_id="hist-1",
    )
    d = now - timedelta(days=2)
    h.write_session(
        home,
        [
            h.session_line("hist-2", d),
            h.user(d),
            h.assistant(d + timedelta(minutes=1), u=h.usage(900, 90, cost=0.03)),
            h.assistant(d + timedelta(minutes=2), stop="error", error="529 overloaded", u=h.usage(0, 0)),
        ],
        session_id="hist-2",
    )
    h.write_session(
        home,
        [
            h.session_line("work-1", t),
            h.assistant(
                t + timedelta(minutes=3),
                provider="openai",
                model="gpt-5.1-codex",
                api="openai-responses",
                u=h.usage(400, 80, cost=0.015),
            ),
        ],
        agent="worker",
        session_id="work-1",
    )
    h.write_sessions_index(home, "main", {"agent:main:main": "live-1"})
    today = 5 + 1
    sid = None
    if agent_db:
        from mc_pipeline_tests.openclaw_db import AgentDb

        sid = "0c1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5"
        db = AgentDb(home, "ops")
        db.add_session(
            sid,
            [
                h.session_line(sid, t),
                h.user(t + timedelta(minutes=2)),
                h.assistant(t + timedelta(minutes=2, seconds=5), u=h.usage(600, 60, cost=0.012)),
            ],
        )
        db.close()
        today += 1
    return {"live": path, "today_calls": today, "agent_db_session": sid}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of the servers: this one without the user's MC_*/OPENCLAW_*/DAGSTER_HOME (an API token
    or MC_USAGE_JSON_PATHS of the developer's own must not leak into a test), plus ``extra``."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MC_", "OPENCLAW_")) and k not in ("DAGSTER_HOME", "PYTHONPATH")
    }
    return {**keep, "PYTHONPATH": str(ROOT), **extra}


class LiveStack:
    """``make dev`` in a temporary folder: webserver + daemon + usage API (each optional)."""

    def __init__(
        self, tmp: Path, home: Path, tz: str, *, webserver: bool = True, daemon: bool = True, api: bool = True
    ):
        self.tmp, self.home, self.tz = tmp, home, tz
        self.data = tmp / "data"
        self.dagster_home = tmp / "dagster_home"
        self.port = free_port() if webserver else None
        self.api_port = free_port() if api else None
        self.want = {"webserver": webserver, "daemon": daemon, "api": api}
        self.procs: list[subprocess.Popen] = []
        self._logs: dict[str, object] = {}

    @property
    def env(self) -> dict[str, str]:
        extra = {
            "DAGSTER_HOME": str(self.dagster_home),
            "OPENCLAW_HOME": str(self.home),
            "MC_DATA_DIR": str(self.data),
            "MC_TIMEZONE": self.tz,
        }
        if self.api_port:
            extra["MC_API_PORT"] = str(self.api_port)
        return clean_env(**extra)

    def _start(self, name: str, argv: list[str]) -> None:
        log = self._logs[name] = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed by stop()
        self.procs.append(
            subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    def start(self) -> LiveStack:
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        (self.dagster_home / "dagster.yaml").write_text(
            dagster_yaml(self.dagster_home)
        )  # what `make dev` writes
        init_instance(self.dagster_home)
        if self.want["api"]:
            self._start("api", [str(BIN / "python"), "-m", "mc_pipeline", "serve"])
        if self.want["webserver"]:
            self._start(
                "webserver",
                [
                    str(BIN / "dagster-webserver"),
                    "-w",
                    "workspace.yaml",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                ],
            )
        if self.want["daemon"]:
            self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        return self

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, 15)  # the process group we started (a server and its code server, a run)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait(timeout=5)
        for f in self._logs.values():
            f.close()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- reading it --------------------------------------------------------------------------------------
    def logs(self, tail: int = 3000) -> str:
        return "".join(
            f"\n--- {name}.log (tail) ---\n" + (self.tmp / f"{name}.log").read_text(errors="replace")[-tail:]
            for name in self._logs
        )

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ui_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str) -> dict:
        with urllib.request.urlopen(self.api_base + path, timeout=10) as resp:
            return json.loads(resp.read())

    def runs(self, **filter_) -> list[dict]:
        got = graphql(self.port, RUNS_FILTERED, {"filter": filter_})["runsOrError"]
        assert got["__typename"] == "Runs", got
        return got["results"]

    def wait_ready(self) -> None:
        """The code location loaded in the webserver and the API answering."""
        if self.port:
            wait_for("code location loaded", lambda: location_loaded(self.port), START_TIMEOUT_S, self.procs)
        if self.api_port:
            wait_for("usage API answering", lambda: self.api("/healthz"), START_TIMEOUT_S, self.procs)

    def wait_refreshed(self, timeout: float = RUN_TIMEOUT_S) -> list[dict]:
        """Wait until a ``refresh_all`` run succeeded and no run is queued or in progress; fail on a failed
        one."""

        def settled():
            done = self.runs(pipelineName="refresh_all", statuses=["SUCCESS", "FAILURE", "CANCELED"])
            bad = [r for r in done if r["status"] != "SUCCESS"]
            assert not bad, f"refresh_all run(s) failed: {bad}" + self.logs()
            return done if done and not self.runs(statuses=ACTIVE) else None

        return wait_for(
            "a refresh_all run succeeded and none is active", settled, timeout, self.procs, every=1.0
        )


def local_today(tz: str):
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(tz)).date()
