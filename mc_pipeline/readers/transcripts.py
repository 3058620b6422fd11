"""Reading OpenClaw/pi session transcripts (JSONL, one entry per line; REFERENCE §1.1-§1.4).

Fast path: the whole chunk is parsed by Polars with an explicit, narrow schema. When that fails (a
malformed line, a wrong type, a blank line) the chunk is checked line by line in Python: each bad line
is quarantined with its reason, and the good lines go through the same Polars extraction, so there is
one definition of what a call is.

Every line is accounted for: ``lines_read = calls + other_entries + skipped_by_rule + quarantined``.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import polars as pl

from mc_pipeline.schemas import CALL_RECORDS, EXCERPT_CHARS, QUARANTINE, UTC_TS, conform, empty

SOURCE = "transcript"

_S = pl.Struct
#: The only keys read from a line. Anything else in a line is ignored by rule.
LINE_SCHEMA: dict[str, pl.DataType] = {
    "type": pl.String(),
    "id": pl.String(),
    "timestamp": pl.String(),
    "message": _S(
        {
            "role": pl.String(),
            "api": pl.String(),
            "provider": pl.String(),
            "model": pl.String(),
            "stopReason": pl.String(),
            "errorMessage": pl.String(),
            "timestamp": pl.Int64(),
            "responseId": pl.String(),
            "durationMs": pl.Float64(),
            "usage": _S(
                {
                    "input": pl.Int64(),
                    "output": pl.Int64(),
                    "cacheRead": pl.Int64(),
                    "cacheWrite": pl.Int64(),
                    "totalTokens": pl.Int64(),
                    "reasoning": pl.Int64(),
                    "cost": _S({"total": pl.Float64()}),
                }
            ),
            # user content may be a string or blocks: read as (serialised) text, decoded for assistants only
            "content": pl.String(),
        }
    ),
}
_BLOCKS = pl.List(_S({"type": pl.String(), "name": pl.String(), "thinking": pl.String(), "redacted": pl.Boolean()}))

#: Entry types that are part of the format but are not model calls.
KNOWN_TYPES = frozenset(
    {
        "session",
        "message",
        "model_change",
        "thinking_level_change",
        "compaction",
        "branch_summary",
        "custom",
        "custom_message",
        "label",
        "session_info",
    }
)
#: Provider of assistant rows the gateway writes itself (delivery mirrors, injected text): not model calls.
BOOKKEEPING_PROVIDER = "openclaw"

#: Call times outside [EARLIEST, now + FUTURE_SLACK] are not trusted.
EARLIEST = datetime(2015, 1, 1, tzinfo=timezone.utc)
FUTURE_SLACK = timedelta(days=1)
#: More tokens than this in one call is not a real count (the largest context windows are ~2M).
MAX_TOKENS = 1_000_000_000
_INT64_MAX = 2**63 - 1


@dataclass
class ParsedChunk:
    calls: pl.DataFrame  # CALL_RECORDS
    quarantine: pl.DataFrame  # QUARANTINE
    lines_read: int = 0
    other_entries: int = 0
    skipped_by_rule: int = 0
    session_id: str | None = None  # from the session header, when this chunk holds it
    fast_path: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def n_calls(self) -> int:
        return self.calls.height

    @property
    def n_quarantined(self) -> int:
        return self.quarantine.height


def excerpt(line: bytes | str) -> str:
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    return text.replace("\x00", "\\0")[:EXCERPT_CHARS]


def _split_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


# ----------------------------------------------------------------------------------------------------
# line-by-line checks (slow path)


def _type_problem(value: object, dtype: pl.DataType, path: str) -> str | None:
    """Why ``value`` cannot be read as ``dtype`` (None when it can); mirrors the Polars reader."""
    if value is None:
        return None
    if isinstance(dtype, pl.Struct):
        if not isinstance(value, dict):
            return f"{path}: expected an object, got {type(value).__name__}"
        for fld in dtype.fields:
            problem = _type_problem(value.get(fld.name), fld.dtype, f"{path}.{fld.name}")
            if problem:
                return problem
        return None
    if dtype == pl.Int64:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                return f"{path}: expected an integer, got the float {value!r}"
            return f"{path}: expected an integer, got {type(value).__name__} {str(value)[:40]!r}"
        if abs(value) > _INT64_MAX:
            return f"{path}: integer out of range"
        return None
    if dtype == pl.Float64:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{path}: expected a number, got {type(value).__name__}"
        if not math.isfinite(float(value)):
            return f"{path}: not a finite number ({value!r})"
        return None
    if dtype == pl.String:
        if path.endswith("content"):  # any JSON value is accepted and serialised
            return None
        if isinstance(value, (dict, list)):
            return f"{path}: expected a string, got {type(value).__name__}"
        return None
    return None


def _check_line(line: bytes, is_last: bool, at_eof: bool) -> tuple[object | None, str | None]:
    """(parsed object, None) for a usable line, (None, reason) for a bad one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start}"
    if not text.strip():
        return None, None
    try:
        obj = json.loads(text, parse_constant=lambda c: float(c))
    except (ValueError, RecursionError) as exc:
        if is_last and at_eof:
            return None, f"truncated last line (file still being written?): {exc}"
        return None, f"not valid JSON: {exc}"
    if not isinstance(obj, dict):
        return None, f"not a JSON object (a {type(obj).__name__})"
    for name, dtype in LINE_SCHEMA.items():
        problem = _type_problem(obj.get(name), dtype, name)
        if problem:
            return None, f"wrong type: {problem}"
    return obj, None


# ----------------------------------------------------------------------------------------------------
# extraction (one definition, used by both paths)


def _thinking_of(content: pl.Series) -> pl.DataFrame:
    """tool names, thinking characters and a redaction flag from serialised assistant content."""
    blocks = None
    if content.len():
        looks_like_list = content.str.starts_with("[").fill_null(False)
        safe = pl.when(looks_like_list).then(content).otherwise(None)
        try:
            blocks = pl.select(safe).to_series().str.json_decode(_BLOCKS)
        except pl.exceptions.PolarsError:
            blocks = pl.Series(
                [_decode_blocks(v) for v in content.to_list()], dtype=_BLOCKS
            )  # rare: odd content shapes; decoded one by one
    if blocks is None:
        blocks = pl.Series([], dtype=_BLOCKS)
    frame = pl.DataFrame({"b": blocks})
    kind = pl.element().struct.field("type")
    return frame.select(
        tool_names=pl.col("b").list.eval(pl.element().filter(kind == "toolCall").struct.field("name")),
        thinking_chars=pl.col("b")
        .list.eval(pl.element().filter(kind == "thinking").struct.field("thinking").str.len_chars())
        .list.sum(),
        thinking_redacted=pl.col("b")
        .list.eval(
            (kind == "thinking")
            & (pl.element().struct.field("redacted").fill_null(False))
            & (pl.element().struct.field("thinking").fill_null("") == "")
        )
        .list.any()
        .fill_null(False),
    )


def _decode_blocks(value: str | None) -> list[dict] | None:
    if value is None:
        return None
    try:
        blocks = json.loads(value)
    except ValueError:
        return None
    if not isinstance(blocks, list):
        return None
    out = []
    for b in blocks:
        if isinstance(b, dict):
            out.append(
                {
                    "type": b.get("type") if isinstance(b.get("type"), str) else None,
                    "name": b.get("name") if isinstance(b.get("name"), str) else None,
                    "thinking": b.get("thinking") if isinstance(b.get("thinking"), str) else None,
                    "redacted": b.get("redacted") if isinstance(b.get("redacted"), bool) else None,
                }
            )
    return out


def _call_time(now: datetime) -> pl.Expr:
    """message.timestamp (ms, response start) when plausible, else the entry's ISO time."""
    lo, hi = EARLIEST, now + FUTURE_SLACK
    ms = pl.col("message").struct.field("timestamp")
    from_ms = pl.from_epoch(ms, time_unit="ms").dt.replace_time_zone("UTC").cast(UTC_TS)
    entry = pl.col("timestamp")
    from_iso = entry.str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    from_entry_ms = (
        pl.when(entry.str.contains(r"^\d{12,14}$"))
        .then(pl.from_epoch(entry.cast(pl.Int64, strict=False), time_unit="ms").dt.replace_time_zone("UTC"))
        .cast(UTC_TS)
    )
    from_entry = pl.coalesce(from_iso, from_entry_ms)

    def ok(e: pl.Expr) -> pl.Expr:
        return e.is_between(pl.lit(lo, UTC_TS), pl.lit(hi, UTC_TS))

    return pl.when(ok(from_ms)).then(from_ms).when(ok(from_entry)).then(from_entry).otherwise(None)


def _extract(
    frame: pl.DataFrame,
    line_nos: pl.Series,
    *,
    rel: str,
    agent_id: str,
    session_id: str,
    now: datetime,
    source: str = SOURCE,
) -> tuple[pl.DataFrame, pl.DataFrame, int, int, str | None]:
    """(calls, quarantined rows, other entries, skipped by rule, session id from the header)."""
    df = frame.with_columns(line_no=line_nos)
    header = df.filter(pl.col("type") == "session").get_column("id").drop_nulls()
    sid = header[0] if header.len() else None
    if sid:
        session_id = sid

    msg = pl.col("message")
    role = msg.struct.field("role")
    provider = msg.struct.field("provider")
    is_assistant = (pl.col("type") == "message") & (role == "assistant")
    is_known = pl.col("type").is_in(list(KNOWN_TYPES))
    df = df.with_columns(
        _kind=pl.when(is_assistant & (provider == BOOKKEEPING_PROVIDER))
        .then(pl.lit("skipped"))
        .when(is_assistant)
        .then(pl.lit("call"))
        .when(is_known)
        .then(pl.lit("other"))
        .otherwise(pl.lit("skipped"))
    )
    counts = df.get_column("_kind").value_counts()
    count = dict(zip(counts.get_column("_kind").to_list(), counts.get_column("count").to_list()))

    a = df.filter(pl.col("_kind") == "call")
    usage = msg.struct.field("usage")
    stop = msg.struct.field("stopReason")
    failed = stop.is_in(["error", "aborted"]).fill_null(False)

    def tok(name: str) -> pl.Expr:
        return usage.struct.field(name)

    calls = a.select(
        source=pl.lit(source),
        source_file=pl.lit(rel),
        line_no=pl.col("line_no"),
        agent_id=pl.lit(agent_id),
        session_id=pl.lit(session_id),
        entry_id=pl.col("id"),
        timestamp=_call_time(now),
        provider=provider,
        model=msg.struct.field("model"),
        api=msg.struct.field("api"),
        stop_reason=stop,
        error_message=msg.struct.field("errorMessage"),
        input_tokens=tok("input").fill_null(0),
        output_tokens=tok("output").fill_null(0),
        cache_read_tokens=tok("cacheRead").fill_null(0),
        cache_write_tokens=tok("cacheWrite").fill_null(0),
        reasoning_tokens=tok("reasoning"),
        cost_recorded_usd=tok("cost").struct.field("total"),
        response_id=msg.struct.field("responseId"),
        duration_ms=msg.struct.field("durationMs").round(0).cast(pl.Int64, strict=False),
        _has_usage=usage.is_not_null(),
        _failed=failed,
        _content=msg.struct.field("content"),
    )
    thinking = _thinking_of(calls.get_column("_content"))
    calls = pl.concat([calls.drop("_content"), thinking], how="horizontal")

    reason = (
        pl.when(pl.col("provider").fill_null("") == "")
        .then(pl.lit("assistant entry without a provider"))
        .when(pl.col("model").fill_null("") == "")
        .then(pl.lit("assistant entry without a model"))
        .when(pl.col("timestamp").is_null())
        .then(pl.lit("no plausible timestamp (missing, unparseable, before 2015 or in the future)"))
        .when(~pl.col("_has_usage") & ~pl.col("_failed"))
        .then(pl.lit("assistant entry without usage"))
        .when(
            pl.max_horizontal("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
            > MAX_TOKENS
        )
        .then(pl.lit(f"implausible token count (over {MAX_TOKENS:,})"))
        .when(pl.min_horizontal("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens") < 0)
        .then(pl.lit("negative token count"))
        .when(pl.col("cost_recorded_usd") < 0)
        .then(pl.lit("negative recorded cost"))
    )
    calls = calls.with_columns(_reason=reason)
    bad = calls.filter(pl.col("_reason").is_not_null()).select(
        source=pl.lit(source), source_file=pl.lit(rel), line_no="line_no", reason="_reason"
    )
    good = calls.filter(pl.col("_reason").is_null()).drop("_has_usage", "_failed", "_reason")
    return (
        conform(good, CALL_RECORDS),
        bad,
        count.get("other", 0),
        count.get("skipped", 0),
        sid,
    )


# ----------------------------------------------------------------------------------------------------


def parse_transcript(
    data: bytes,
    *,
    rel: str,
    agent_id: str,
    session_id: str,
    first_line: int = 1,
    at_eof: bool = True,
    now: datetime | None = None,
    source: str = SOURCE,
) -> ParsedChunk:
    """Parse a chunk of a transcript (a whole file, or what was appended since ``first_line``).

    ``source`` names the reader in the rows (``transcript_store`` when the lines came from SQLite)."""
    now = now or datetime.now(timezone.utc)
    lines: list[bytes] | None = None
    n_lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if n_lines == 0:
        return ParsedChunk(empty(CALL_RECORDS), empty(QUARANTINE), session_id=None)

    frame = None
    if b"\n\n" not in data and not data.startswith(b"\n"):
        try:
            frame = pl.read_ndjson(io.BytesIO(data), schema=LINE_SCHEMA)
        except Exception:  # noqa: BLE001 - any failure sends the chunk to the line-by-line path
            frame = None
        if frame is not None and (frame.height != n_lines or frame.get_column("type").null_count()):
            frame = None

    quarantined: list[dict] = []
    skipped_blank = 0
    fast = frame is not None
    if fast:
        line_nos = pl.Series("line_no", range(first_line, first_line + n_lines), dtype=pl.Int64)
    else:
        lines = _split_lines(data)
        good: list[bytes] = []
        good_nos: list[int] = []
        for i, line in enumerate(lines):
            obj, why = _check_line(line, is_last=i == len(lines) - 1, at_eof=at_eof and not data.endswith(b"\n"))
            if why:
                quarantined.append(
                    {
                        "source": source,
                        "source_file": rel,
                        "line_no": first_line + i,
                        "reason": why,
                        "excerpt": excerpt(line),
                    }
                )
            elif obj is None:
                skipped_blank += 1
            else:
                good.append(json.dumps(obj).encode())
                good_nos.append(first_line + i)
        frame = (
            pl.read_ndjson(io.BytesIO(b"\n".join(good)), schema=LINE_SCHEMA)
            if good
            else pl.DataFrame(schema=LINE_SCHEMA)
        )
        line_nos = pl.Series("line_no", good_nos, dtype=pl.Int64)

    calls, bad_rows, other, skipped, sid = _extract(
        frame, line_nos, rel=rel, agent_id=agent_id, session_id=session_id, now=now, source=source
    )
    if bad_rows.height:
        lines = lines if lines is not None else _split_lines(data)
        bad_rows = bad_rows.with_columns(
            excerpt=pl.col("line_no").map_elements(
                lambda n: excerpt(lines[n - first_line]), return_dtype=pl.String
            )
        )
    q = pl.concat([conform(pl.DataFrame(quarantined, schema=QUARANTINE), QUARANTINE), conform(bad_rows, QUARANTINE)])
    return ParsedChunk(
        calls=calls,
        quarantine=q,
        lines_read=n_lines,
        other_entries=other,
        skipped_by_rule=skipped + skipped_blank,
        session_id=sid,
        fast_path=fast,
    )
