"""A read-only usage API for live dashboards (``make serve``; ``make dev`` starts it beside the Dagster UI).

Starlette + uvicorn (both come with ``dagster-webserver``); Dagster itself is never imported here. Every
answer is read from the tables a refresh writes (today's ``llm_calls`` day file, the dashboard files): with
the live sensor (every 15 s) and a refresh's incremental run, a call appended to a transcript or an agent
database reaches ``/api/usage/today`` within about 20 s.

- ``GET /api/usage/today``: today's cost, requests, tokens, failures, by provider and by model, in
  ``MC_TIMEZONE``, with ``asOf`` (the newest call included);
- ``GET /api/usage/latest?limit=N`` (1..500, default 20): the newest calls: time, agent, provider, model,
  tokens, cost, status, duration; never text, keys or personal ids (no session ids, no session keys);
- ``GET /usage-data.json``, ``GET /sessions.json``: the dashboard files with ``ETag``/``Last-Modified``
  (``If-None-Match`` / ``If-Modified-Since`` answered with 304), so Mission Control can read this server;
- ``GET /healthz``: the last refresh, how old the newest call is, the sources read.

Binds 127.0.0.1 unless ``MC_API_HOST`` says otherwise; with ``MC_API_TOKEN`` set every request needs
``Authorization: Bearer <token>`` (``/healthz`` too); CORS only for the origins in ``MC_API_CORS_ORIGINS``.
A bad query string is a 400 with a one-line message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEFAULT_PORT = 8765
LATEST_MAX = 500
LATEST_COLUMNS = [
    "timestamp",
    "agent_id",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "total_tokens",
    "cost_usd",
    "cost_source",
    "status",
    "error_class",
    "duration_ms",
]


@dataclass(frozen=True)
class ApiSettings:
    data: Path
    tz: str = "UTC"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str = ""
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ApiSettings:
        from mc_pipeline.runtime.defaults import local_timezone

        env = dict(os.environ if env is None else env)
        port = env.get("MC_API_PORT") or str(DEFAULT_PORT)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"MC_API_PORT must be a port number, not {port!r}")
        origins = tuple(o.strip() for o in env.get("MC_API_CORS_ORIGINS", "").split(",") if o.strip())
        return cls(
            data=Path(env.get("MC_DATA_DIR") or "./data").expanduser().resolve(),
            tz=env.get("MC_TIMEZONE") or local_timezone(),
            host=env.get("MC_API_HOST") or "127.0.0.1",
            port=int(port),
            token=env.get("MC_API_TOKEN", ""),
            cors_origins=origins,
        )


class BadRequest(ValueError):
    pass


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class UsageApi:
    def __init__(self, settings: ApiSettings):
        self.s = settings
        self._cache: dict[str, tuple[tuple, object]] = {}

    # -- data ----------------------------------------------------------------------------------------
    def today(self):
        return datetime.now(ZoneInfo(self.s.tz)).date()

    def _day_calls(self, day):
        """``llm_calls`` of one day (cached on the file's inode, size and mtime), or an empty frame."""
        import polars as pl

        from mc_pipeline.tables.store import Tables

        t = Tables(self.s.data)
        path = t.day_file("llm_calls", day)
        try:
            st = path.stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        hit = self._cache.get(day.isoformat())
        if hit and hit[0] == key:
            return hit[1]
        frame = t.read_days("llm_calls", [day], columns=LATEST_COLUMNS) if key else pl.DataFrame()
        self._cache = {day.isoformat(): (key, frame)}  # only the last day asked for is kept
        return frame

    def usage_today(self) -> dict:
        import polars as pl

        day = self.today()
        calls = self._day_calls(day)

        def totals(frame) -> dict:
            return {
                "cost": float(frame.get_column("cost_usd").sum() or 0.0) if frame.height else 0.0,
                "requests": frame.height,
                "tokens": int(frame.get_column("total_tokens").sum() or 0) if frame.height else 0,
                "failures": frame.filter(pl.col("status") != "ok").height if frame.height else 0,
                "unpricedRequests": frame.filter(pl.col("cost_source") == "unpriced").height
                if frame.height
                else 0,
            }

        def by(key: str) -> list[dict]:
            if not calls.height:
                return []
            out = [
                {"name": name, **totals(part)}
                for (name,), part in calls.partition_by(key, as_dict=True).items()
            ]
            return sorted(out, key=lambda e: (-e["cost"], -e["requests"], str(e["name"])))

        newest = calls.get_column("timestamp").max() if calls.height else None
        return {
            "date": day.isoformat(),
            "timezone": self.s.tz,
            "asOf": _iso(newest),
            **totals(calls),
            "byProvider": by("provider"),
            "byModel": by("model"),
        }

    def latest(self, limit: int) -> dict:
        import polars as pl

        day = self.today()
        frames = [self._day_calls(day)]
        if frames[0].height < limit:  # the newest calls may be yesterday's
            from mc_pipeline.tables.store import Tables

            frames.append(
                Tables(self.s.data).read_days("llm_calls", [day - timedelta(days=1)], columns=LATEST_COLUMNS)
            )
        frames = [f for f in frames if f.height]
        calls = (
            pl.concat(frames, how="diagonal_relaxed").sort("timestamp", descending=True).head(limit)
            if frames
            else None
        )
        rows = []
        for r in calls.iter_rows(named=True) if calls is not None else []:
            rows.append(
                {
                    "time": _iso(r["timestamp"]),
                    "agent": r["agent_id"],
                    "provider": r["provider"],
                    "model": r["model"],
                    "inputTokens": r["input_tokens"],
                    "outputTokens": r["output_tokens"],
                    "cacheReadTokens": r["cache_read_tokens"],
                    "cacheWriteTokens": r["cache_write_tokens"],
                    "tokens": r["total_tokens"],
                    "cost": r["cost_usd"],
                    "costSource": r["cost_source"],
                    "status": r["status"],
                    "errorClass": r["error_class"],
                    "durationMs": r["duration_ms"],
                }
            )
        return {"timezone": self.s.tz, "limit": limit, "calls": rows}

    def health(self) -> dict:
        usage = self.s.data / "usage-data.json"
        try:
            last = json.loads(usage.read_text()).get("lastUpdated")
        except (OSError, ValueError):
            last = None
        calls = self._day_calls(self.today())
        newest = calls.get_column("timestamp").max() if calls.height else None
        try:
            health = json.loads((self.s.data / "staging" / "source_health.json").read_text())
        except (OSError, ValueError):
            health = {}
        sources = [
            {
                "source": name,
                "callsRead": v.get("calls_read"),
                "callsLast7Days": v.get("calls_recent"),
                "linesRead": v.get("lines_read"),
                "quarantined": v.get("quarantined"),
                "lastWrite": v.get("last_write"),
            }
            for name, v in sorted((health.get("sources") or {}).items())
        ]
        age = (datetime.now(UTC) - newest).total_seconds() if newest is not None else None
        return {
            "status": "ok" if last else "no data yet (run `make run`)",
            "lastRefresh": last,
            "newestCallToday": _iso(newest),
            "dataAgeSeconds": None if age is None else round(age, 1),
            "sources": sources,
            "warnings": health.get("warnings", []),
        }


# -- HTTP --------------------------------------------------------------------------------------------------
def _json(doc: object, status: int = 200) -> JSONResponse:
    return JSONResponse(doc, status_code=status, headers={"Cache-Control": "no-store"})


def _error(status: int, message: str) -> JSONResponse:
    return _json({"error": message}, status)


def _file(request: Request, path: Path) -> Response:
    try:
        st = path.stat()
        body = path.read_bytes()
    except OSError:
        return _error(404, f"{path.name} does not exist yet: run `make run`")
    etag = (
        '"'
        + hashlib.blake2b(f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode(), digest_size=8).hexdigest()
        + '"'
    )
    modified = formatdate(st.st_mtime, usegmt=True)
    headers = {"ETag": etag, "Last-Modified": modified, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    since = request.headers.get("if-modified-since")
    if since and "if-none-match" not in request.headers:
        try:
            if int(st.st_mtime) <= parsedate_to_datetime(since).timestamp():
                return Response(status_code=304, headers=headers)
        except (TypeError, ValueError):
            pass
    return Response(body, media_type="application/json", headers=headers)


def build_app(settings: ApiSettings) -> Starlette:
    api = UsageApi(settings)

    def allowed(request: Request, params: tuple[str, ...] = ()) -> JSONResponse | None:
        if settings.token:
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {settings.token}".encode()):
                return _error(401, "missing or wrong bearer token (Authorization: Bearer <MC_API_TOKEN>)")
        unknown = sorted(set(request.query_params) - set(params))
        if unknown:
            return _error(
                400,
                f"unknown query parameter(s): {', '.join(unknown)}"
                + (f"; this endpoint takes {', '.join(params)}" if params else "; this endpoint takes none"),
            )
        return None

    async def today(request: Request):
        return allowed(request) or _json(api.usage_today())

    async def latest(request: Request):
        refused = allowed(request, ("limit",))
        if refused:
            return refused
        raw = request.query_params.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= LATEST_MAX:
            return _error(400, f"limit must be a whole number from 1 to {LATEST_MAX}, not {raw!r}")
        return _json(api.latest(int(raw)))

    async def usage_file(request: Request):
        return allowed(request) or _file(request, settings.data / "usage-data.json")

    async def sessions_file(request: Request):
        return allowed(request) or _file(request, settings.data / "sessions.json")

    async def healthz(request: Request):
        return allowed(request) or _json(api.health())

    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET"],
                allow_headers=["Authorization", "If-None-Match", "If-Modified-Since"],
            )
        )
    return Starlette(
        routes=[
            Route("/api/usage/today", today),
            Route("/api/usage/latest", latest),
            Route("/usage-data.json", usage_file),
            Route("/sessions.json", sessions_file),
            Route("/healthz", healthz),
        ],
        middleware=middleware,
    )


def serve(argv: list[str] | None = None) -> int:
    """``python -m mc_pipeline serve``: the usage API on MC_API_HOST:MC_API_PORT (127.0.0.1:8765)."""
    import sys

    import uvicorn

    try:
        settings = ApiSettings.from_env()
    except ValueError as exc:
        print(f"mc_pipeline: bad setting: {exc}", file=sys.stderr)
        return 2
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
        print(
            f"mc_pipeline: serving on {settings.host} without MC_API_TOKEN: anyone who can reach it can read "
            "your usage (set MC_API_TOKEN to require a bearer token)",
            file=sys.stderr,
        )
    print(
        f"mc_pipeline: usage API on http://{settings.host}:{settings.port} (data: {settings.data})",
        flush=True,
    )
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_level="warning")
    return 0
