"""Reading the user's own ``interactions.db``: ``llm_calls`` rows and ``api_calls``
(docs/openclaw-formats.md#interactions-db).

The file belongs to the user and may be written while we read it, so it is opened read-only through a
SQLite URI (``file:...?mode=ro``) with a short busy timeout, both tables are read inside one read
transaction (one consistent snapshot, committed rows only) into memory, and the connection is closed
before any parsing. A writer holding a write transaction (rollback journal or WAL) does not stop the read;
one holding an exclusive lock for longer than the busy timeout makes this run report the database as busy.
Nothing is ever added beside the file: a WAL-mode file without a ``-wal`` is read with ``immutable=1``
(``mode=ro`` alone would create ``-wal``/``-shm`` there), see :func:`open_mode` and :func:`read_snapshot`.

``llm_calls`` schemas vary (docs/openclaw-formats.md#interactions-db): columns are mapped by name
(:data:`LLM_FIELDS`, first name
present wins), unknown columns are ignored and missing ones are null. Prompt, response and preview
columns are never selected, neither are ``api_calls`` request/response bodies. Every value is read as
text (SQLite columns may hold any type) and parsed by Polars; a row that cannot be used is quarantined
with its reason and an excerpt built only from the mapped numeric/identifier columns.

Timestamps: ISO text (``T`` or space, any fraction, ``Z`` or ``+hh:mm``) or epoch seconds/milliseconds.
ISO text without a zone is read in ``naive_tz`` (the reporting zone: the user's scripts run on the
same machine, and ``datetime.now().isoformat()`` writes local time).

Status: ``success``/``ok``/``completed``/... are finished calls (stop reason left null, nothing made up);
``aborted``/``cancelled`` become stop reason ``aborted``; any other status (``rate_limit``, ``error``,
``timeout``, ...) and ``ok = 0`` become stop reason ``error`` with the DB's ``error`` text and status word as
the error message, so :func:`mc_pipeline.costing.error_classes.classify_status` yields ``error`` and the class
(``rate_limit`` for ``rate_limit``). No status at all and no error text: a finished call.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from mc_pipeline.costing.error_classes import classify_status
from mc_pipeline.ingest.readers.batch import SourceBatch
from mc_pipeline.ingest.readers.home import agent_of_caller, known_agents
from mc_pipeline.ingest.readers.sqlite_access import (  # noqa: F401 - re-exported: the reader's own API
    BUSY_TIMEOUT_S,
    DbUnavailable,
    is_wal_file,
    open_mode,
    read_snapshot,
    sidecar,
    table_columns,
)
from mc_pipeline.ingest.readers.transcripts import MAX_TOKENS
from mc_pipeline.tables.schemas import (
    API_CALLS,
    CALL_RECORDS,
    EXCERPT_CHARS,
    FILE_COUNTS,
    QUARANTINE,
    UTC_TS,
    conform,
)

SOURCE = "interactions_db"
DEFAULT_REL = "data/interactions.db"
#: Call times outside [EARLIEST, now + FUTURE_SLACK] are not trusted (same rule as transcripts).
EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)

#: llm_calls field -> column names that hold it, in order of preference (lower-case).
LLM_FIELDS: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "ts", "created_at"),
    "provider": ("provider",),
    "model": ("model", "model_id"),
    "session_id": ("session_id",),
    "caller": ("caller", "agent", "agent_id"),
    "task_type": ("task_type",),
    "input_tokens": ("prompt_tokens", "input_tokens"),
    "output_tokens": ("completion_tokens", "output_tokens"),
    "cache_read_tokens": ("cache_read_tokens",),
    "cache_write_tokens": ("cache_write_tokens",),
    "thinking_tokens": ("thinking_tokens", "reasoning_tokens"),
    "duration_ms": ("duration_ms",),
    "total_cost": ("total_cost",),
    "cost_estimate": ("cost_estimate",),
    "status": ("status",),
    "ok": ("ok",),
    "error": ("error", "error_message"),
}
#: api_calls field -> column names (bodies are never read).
API_FIELDS: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "ts", "created_at"),
    "service": ("service",),
    "endpoint": ("endpoint", "url", "path"),
    "method": ("method",),
    "status_code": ("status_code", "status"),
    "duration_ms": ("duration_ms",),
}
#: Fields safe to show in a quarantine excerpt (no free text that could hold a prompt or an error body).
EXCERPT_FIELDS = ("timestamp", "provider", "model", "input_tokens", "output_tokens", "status")

OK_STATUSES = ("success", "succeeded", "ok", "completed", "complete", "done", "200")
ABORT_STATUSES = ("aborted", "cancelled", "canceled")
#: Status words that say only "it failed" (not added to the error message).
GENERIC_FAILURE = ("error", "failed", "failure", "fail")

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "thinking_tokens")
#: Marks a value whose bytes are not UTF-8 text (a BLOB): its row is quarantined, unless it is the free
#: ``error`` text, which is kept with U+FFFD in place of the bad bytes.
NOT_UTF8 = "\x00not-utf8\x00"


@dataclass
class InteractionsDb:
    batch: SourceBatch  # llm_calls rows as CALL_RECORDS, quarantine, file counts, problems
    api_calls: pl.DataFrame  # API_CALLS
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows read


def default_path(home: Path) -> Path:
    return home / DEFAULT_REL


def relative_name(path: Path, home: Path) -> str:
    """``path`` relative to the home, or its bare file name when it lives elsewhere (never absolute)."""
    try:
        return path.resolve().relative_to(home.resolve()).as_posix()
    except (ValueError, OSError):
        return path.name


def text_or_marked(value: bytes) -> str:
    """sqlite3 ``text_factory``: UTF-8 text as is; other bytes as :data:`NOT_UTF8` + the text with U+FFFD
    (sqlite3's default raises instead, which made one bad cell lose the whole table)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return NOT_UTF8 + value.decode("utf-8", errors="replace")


def _select(
    con: sqlite3.Connection, table: str, fields: dict[str, tuple[str, ...]]
) -> tuple[list[str], list[tuple]]:
    """(mapped field names, rows) with every mapped value as text and the rowid first."""
    present = {c.lower(): c for c in table_columns(con, table) or []}
    chosen: dict[str, str] = {}
    for name, aliases in fields.items():
        for alias in aliases:
            if alias in present:
                chosen[name] = present[alias]
                break
    exprs = ", ".join(f'CAST("{col}" AS TEXT)' for col in chosen.values())
    sel = f"rowid{', ' + exprs if exprs else ''}"
    try:
        rows = con.execute(f'SELECT {sel} FROM "{table}" ORDER BY rowid').fetchall()
    except sqlite3.OperationalError as exc:
        if "rowid" not in str(exc).lower():
            raise
        # WITHOUT ROWID table: number rows in their stored order
        body = con.execute(f'SELECT {exprs or "1"} FROM "{table}"').fetchall()
        rows = [(i, *r) for i, r in enumerate(body, 1)] if exprs else [(i,) for i, _ in enumerate(body, 1)]
    return list(chosen), rows


def read_tables(
    path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> dict[str, tuple[list[str], list[tuple]]]:
    """``llm_calls`` and (when present) ``api_calls``, read in one snapshot; raises DbUnavailable."""

    def query(con: sqlite3.Connection) -> dict[str, tuple[list[str], list[tuple]]]:
        con.text_factory = text_or_marked
        tables = {
            r[0].lower(): r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if "llm_calls" not in tables:
            raise DbUnavailable(f"no llm_calls table (tables: {', '.join(sorted(tables)) or 'none'})")
        out = {"llm_calls": _select(con, tables["llm_calls"], LLM_FIELDS)}
        if "api_calls" in tables:
            out["api_calls"] = _select(con, tables["api_calls"], API_FIELDS)
        return out

    return read_snapshot(path, query, busy_timeout_s)


# ----------------------------------------------------------------------------------------------------
# parsing (pure Polars)


def _frame(names: list[str], rows: list[tuple], fields: dict[str, tuple[str, ...]]) -> pl.DataFrame:
    schema = {"row_no": pl.Int64(), **{n: pl.String() for n in names}}
    df = pl.DataFrame(rows, schema=schema, orient="row")
    return df.with_columns([pl.lit(None, pl.String).alias(n) for n in fields if n not in names])


def _not_utf8(names: tuple[str, ...] | list[str]) -> pl.Expr:
    """The fields among ``names`` holding bytes that are not UTF-8 text (comma-separated), else null."""
    hits = [pl.when(pl.col(n).str.starts_with(NOT_UTF8)).then(pl.lit(n)) for n in names]
    out = pl.concat_str(hits, separator=", ", ignore_nulls=True)
    return pl.when(out != "").then(pl.format("not UTF-8 text (a BLOB) in {}", out))


def parse_timestamp(col: str, naive_tz: str) -> pl.Expr:
    """ISO text (any precision, ``Z``/offset or naive in ``naive_tz``) or epoch s/ms -> UTC; else null."""
    t = pl.col(col).str.strip_chars().str.replace(" ", "T").str.replace(r"(?i)z$", "+00:00")
    aware = t.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us")
    naive = (
        t.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
        .dt.replace_time_zone(naive_tz, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )
    num = pl.col(col).str.strip_chars().cast(pl.Float64, strict=False)
    epoch = (
        pl.when(pl.col(col).str.contains(r"^\s*\d{9,11}(\.\d+)?\s*$"))
        .then((num * 1e6).cast(pl.Int64, strict=False))
        .when(pl.col(col).str.contains(r"^\s*\d{12,14}\s*$"))
        .then((num * 1e3).cast(pl.Int64, strict=False))
    )
    from_epoch = pl.from_epoch(epoch, time_unit="us").dt.replace_time_zone("UTC")
    return pl.coalesce(aware.cast(UTC_TS), naive.cast(UTC_TS), from_epoch.cast(UTC_TS))


def plausible(col: str, now: datetime) -> pl.Expr:
    return pl.col(col).is_between(pl.lit(EARLIEST, UTC_TS), pl.lit(now + FUTURE_SLACK, UTC_TS))


def _int(col: str) -> pl.Expr:
    """Text -> Int64 when it is a whole number (``12``, ``12.0``); else null."""
    f = pl.col(col).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(f.is_finite() & (f == f.round(0))).then(f.cast(pl.Int64, strict=False))


def _bad_number(col: str) -> pl.Expr:
    """A value is there but is not a whole number."""
    return pl.col(col).is_not_null() & (pl.col(col).str.strip_chars() != "") & _int(col).is_null()


def _shown(col: str) -> pl.Expr:
    """A value as an excerpt shows it: ``null``, ``<not UTF-8>`` for a BLOB that is not text, else itself."""
    return (
        pl.when(pl.col(col).str.starts_with(NOT_UTF8))
        .then(pl.lit("<not UTF-8>"))
        .otherwise(pl.col(col).fill_null("null"))
    )


def _excerpt(prefix: str) -> pl.Expr:
    parts = [pl.format(f"{n}={{}}", _shown(n).str.slice(0, 40)) for n in EXCERPT_FIELDS]
    return pl.concat_str(
        [pl.lit(prefix), pl.format("rowid={}", pl.col("row_no")), *parts], separator=" "
    ).str.slice(0, EXCERPT_CHARS)


def _llm_status() -> dict[str, pl.Expr]:
    """Status step: the stop reason from ``status``/``ok``/``error``, the status word and the error text."""
    status = pl.col("status").str.strip_chars().str.to_lowercase()
    status = pl.when(status != "").then(status)
    error_text = pl.col("error").str.strip_prefix(NOT_UTF8)
    error_text = pl.when(error_text.str.strip_chars() != "").then(error_text)
    failed = (
        pl.when(status.is_in(OK_STATUSES))
        .then(pl.lit(None, pl.String))
        .when(status.is_in(ABORT_STATUSES))
        .then(pl.lit("aborted"))
        .when(status.is_not_null() | (_int("ok") == 0) | error_text.is_not_null())
        .then(pl.lit("error"))
    )
    return {"_stop": failed, "_status_word": status, "_error_text": error_text}


def _llm_provider_model() -> dict[str, pl.Expr]:
    """Map step: provider and model, split from a ``provider/model`` id when no provider is given."""
    model_raw = pl.col("model").str.strip_chars()
    provider_raw = pl.col("provider").str.strip_chars()
    split = (provider_raw.is_null() | (provider_raw == "")) & model_raw.str.contains("/")
    return {
        "_provider": pl.when(split).then(model_raw.str.split("/").list.first()).otherwise(provider_raw),
        "_model": pl.when(split)
        .then(model_raw.str.splitn("/", 2).struct.field("field_1"))
        .otherwise(model_raw),
    }


def _llm_numbers() -> dict[str, pl.Expr]:
    """Map step: token counts, duration and recorded cost as numbers (null when not one)."""
    return {
        **{f"_{n}": _int(n) for n in TOKEN_FIELDS},
        "_duration": pl.col("duration_ms")
        .str.strip_chars()
        .cast(pl.Float64, strict=False)
        .round(0)
        .cast(pl.Int64, strict=False),
        "_cost": pl.coalesce(
            pl.col("total_cost").str.strip_chars().cast(pl.Float64, strict=False),
            pl.col("cost_estimate").str.strip_chars().cast(pl.Float64, strict=False),
        ),
    }


def _llm_problem(now: datetime) -> pl.Expr:
    """Quarantine step: why an ``llm_calls`` row cannot be used (null when it can)."""
    bad_tokens = pl.any_horizontal([_bad_number(n) for n in TOKEN_FIELDS])
    # the transcripts' cap; on the text's numeric value, so counts beyond int64 get this reason too
    over_cap = pl.any_horizontal(
        [pl.col(n).str.strip_chars().cast(pl.Float64, strict=False) > MAX_TOKENS for n in TOKEN_FIELDS]
    ).fill_null(False)
    negative = pl.any_horizontal([pl.col(f"_{n}") < 0 for n in TOKEN_FIELDS]).fill_null(False)
    not_text = _not_utf8([n for n in LLM_FIELDS if n != "error"])
    return (
        pl.when(not_text.is_not_null())
        .then(not_text)
        .when(pl.col("timestamp").is_null() | (pl.col("timestamp").str.strip_chars() == ""))
        .then(pl.lit("no timestamp"))
        .when(pl.col("_ts").is_null())
        .then(pl.format("unparseable timestamp {}", pl.col("timestamp").str.slice(0, 40)))
        .when(~plausible("_ts", now))
        .then(pl.lit("implausible timestamp (before 2015 or in the future)"))
        .when(pl.col("_model").fill_null("") == "")
        .then(pl.lit("no model"))
        .when(pl.col("_provider").fill_null("") == "")
        .then(pl.lit("no provider (and the model id names none)"))
        .when(over_cap)
        .then(pl.lit(f"implausible token count (over {MAX_TOKENS:,})"))
        .when(bad_tokens)
        .then(pl.lit("token count is not a whole number"))
        .when(negative)
        .then(pl.lit("negative token count"))
        .when(pl.col("_cost") < 0)
        .then(pl.lit("negative recorded cost"))
        .when(
            pl.col("_stop").is_null() & pl.col("_input_tokens").is_null() & pl.col("_output_tokens").is_null()
        )
        .then(pl.lit("finished call without token counts"))
    )


def _stripped(col: str) -> pl.Expr:
    """Map step: a text column stripped, null when empty."""
    return pl.when(pl.col(col).str.strip_chars() != "").then(pl.col(col).str.strip_chars())


def _llm_records(rel: str, agents: list[str]) -> dict[str, pl.Expr]:
    """Map step: the CALL_RECORDS columns of a usable ``llm_calls`` row."""
    error_message = pl.concat_str(
        [
            pl.col("_error_text"),
            pl.when(~pl.col("_status_word").is_in(GENERIC_FAILURE)).then(pl.col("_status_word")),
        ],
        separator=" | ",
        ignore_nulls=True,
    )
    return {
        "source": pl.lit(SOURCE),
        "source_file": pl.lit(rel),
        "line_no": pl.col("row_no"),
        "agent_id": agent_of_caller(pl.col("caller"), agents),
        "session_id": _stripped("session_id"),
        "entry_id": pl.format("db:{}", pl.col("row_no")),
        "timestamp": pl.col("_ts"),
        "provider": pl.col("_provider"),
        "model": pl.col("_model"),
        "stop_reason": pl.col("_stop"),
        "error_message": pl.when(pl.col("_stop") == "error").then(error_message),
        "input_tokens": pl.col("_input_tokens").fill_null(0),
        "output_tokens": pl.col("_output_tokens").fill_null(0),
        "cache_read_tokens": pl.col("_cache_read_tokens").fill_null(0),
        "cache_write_tokens": pl.col("_cache_write_tokens").fill_null(0),
        "cost_recorded_usd": pl.col("_cost"),
        "duration_ms": pl.col("_duration"),
        "given_task_type": _stripped("task_type"),
        "given_thinking_tokens": pl.col("_thinking_tokens"),
    }


def parse_llm_calls(
    names: list[str],
    rows: list[tuple],
    *,
    rel: str,
    naive_tz: str = "UTC",
    now: datetime | None = None,
    agents: list[str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(CALL_RECORDS, QUARANTINE) from raw ``llm_calls`` rows (every value text, ``row_no`` = rowid).
    ``agent_id`` is the agent the row's ``caller`` names (``agent:<id>`` or one of ``agents``), else null.

    Steps: the schema variant's columns (fields it lacks are null), timestamps, provider/model, status and
    numbers mapped, then each row either quarantined with its reason or made a call record."""
    now = now or datetime.now(UTC)
    raw = _frame(names, rows, LLM_FIELDS)
    df = raw.with_columns(
        _ts=parse_timestamp("timestamp", naive_tz), **_llm_provider_model(), **_llm_status(), **_llm_numbers()
    )
    df = df.with_columns(_reason=_llm_problem(now))
    bad = df.filter(pl.col("_reason").is_not_null()).select(
        source=pl.lit(SOURCE),
        source_file=pl.lit(rel),
        line_no="row_no",
        reason="_reason",
        excerpt=_excerpt("llm_calls"),
    )
    good = df.filter(pl.col("_reason").is_null()).select(**_llm_records(rel, agents or []))
    good = good.with_columns(
        error_message=pl.when(pl.col("error_message") != "").then(pl.col("error_message"))
    )
    return conform(good, CALL_RECORDS), conform(bad, QUARANTINE)


def parse_api_calls(
    names: list[str],
    rows: list[tuple],
    *,
    rel: str,
    tz: str = "UTC",
    naive_tz: str = "UTC",
    now: datetime | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(API_CALLS, QUARANTINE) from raw ``api_calls`` rows. Endpoints lose their query string."""
    now = now or datetime.now(UTC)
    df = _frame(names, rows, API_FIELDS).with_columns(
        _ts=parse_timestamp("timestamp", naive_tz),
        _code=_int("status_code"),
    )
    not_text = _not_utf8(list(API_FIELDS))
    reason = (
        pl.when(not_text.is_not_null())
        .then(not_text)
        .when(pl.col("_ts").is_null())
        .then(pl.format("unparseable timestamp {}", pl.col("timestamp").fill_null("null").str.slice(0, 40)))
        .when(~plausible("_ts", now))
        .then(pl.lit("implausible timestamp (before 2015 or in the future)"))
    )
    df = df.with_columns(_reason=reason)
    bad = df.filter(pl.col("_reason").is_not_null()).select(
        source=pl.lit(SOURCE),
        source_file=pl.lit(rel),
        line_no="row_no",
        reason="_reason",
        excerpt=pl.format(
            "api_calls rowid={} timestamp={} status_code={}",
            "row_no",
            _shown("timestamp").str.slice(0, 40),
            _shown("status_code").str.slice(0, 10),
        ),
    )
    code = pl.col("_code")
    ok = pl.when(code.is_not_null()).then(code.is_between(100, 399))
    good = df.filter(pl.col("_reason").is_null()).select(
        timestamp="_ts",
        day=pl.col("_ts").dt.convert_time_zone(tz).dt.date(),
        service=pl.col("service").str.strip_chars(),
        endpoint=pl.col("endpoint").str.strip_chars().str.split("?").list.first().str.split("#").list.first(),
        method=pl.col("method").str.strip_chars().str.to_uppercase(),
        status_code=code.cast(pl.Int32, strict=False),
        duration_ms=pl.col("duration_ms")
        .str.strip_chars()
        .cast(pl.Float64, strict=False)
        .round(0)
        .cast(pl.Int64, strict=False),
        ok=ok,
        stop_reason=pl.when(ok.not_()).then(pl.lit("error")),
        error_message=pl.when(ok.not_()).then(code.cast(pl.String)),
    )
    good = classify_status(good).with_columns(
        error_class=pl.when(pl.col("ok").not_()).then(pl.col("error_class")),
        duration_ms=pl.when(pl.col("duration_ms") >= 0).then(pl.col("duration_ms")),
    )
    return conform(good, API_CALLS).sort("timestamp"), conform(bad, QUARANTINE)


def read_interactions_db(
    path: Path,
    home: Path,
    *,
    tz: str = "UTC",
    busy_timeout_s: float = BUSY_TIMEOUT_S,
    now: datetime | None = None,
) -> InteractionsDb:
    """Read ``path`` (never written or locked for long). A broken database gives an empty batch whose
    ``problems`` name the file and why; the caller decides what a missing file means."""
    rel = relative_name(path, home)
    try:
        tables = read_tables(path, busy_timeout_s)
    except DbUnavailable as exc:
        return InteractionsDb(SourceBatch.empty([f"{rel}: {exc}"]), pl.DataFrame(schema=API_CALLS))
    names, rows = tables["llm_calls"]
    records, quarantine = parse_llm_calls(
        names, rows, rel=rel, naive_tz=tz, now=now, agents=known_agents(home)
    )
    counts = [
        {
            "source": SOURCE,
            "source_file": rel,
            "lines_read": len(rows),
            "calls": records.height,
            "other_entries": 0,
            "skipped_by_rule": 0,
            "quarantined": quarantine.height,
        }
    ]
    api = pl.DataFrame(schema=API_CALLS)
    read = {"llm_calls": len(rows)}
    if "api_calls" in tables:
        api_names, api_rows = tables["api_calls"]
        api_rel = f"{rel}#api_calls"
        api, api_bad = parse_api_calls(api_names, api_rows, rel=api_rel, tz=tz, naive_tz=tz, now=now)
        quarantine = pl.concat([quarantine, api_bad])
        counts.append(
            {
                "source": SOURCE,
                "source_file": api_rel,
                "lines_read": len(api_rows),
                "calls": 0,
                "other_entries": api.height,  # HTTP calls: their own table, not model calls
                "skipped_by_rule": 0,
                "quarantined": api_bad.height,
            }
        )
        read["api_calls"] = len(api_rows)
    batch = SourceBatch(records, quarantine, pl.DataFrame(counts, schema=FILE_COUNTS), [])
    return InteractionsDb(batch, api, read)
