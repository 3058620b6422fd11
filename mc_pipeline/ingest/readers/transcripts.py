"""Reading OpenClaw/pi session transcripts (JSONL, one entry per line).

Format: docs/openclaw-formats.md#transcript-lines, docs/openclaw-formats.md#message-entries,
docs/openclaw-formats.md#assistant-usage and docs/openclaw-formats.md#stop-reasons-and-failures.

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
from datetime import UTC, datetime, timedelta

import polars as pl

from mc_pipeline.tables.schemas import CALL_RECORDS, EXCERPT_CHARS, QUARANTINE, UTC_TS, conform, empty

SOURCE = "transcript"

_S = pl.Struct
#: The only keys read from a line. Anything else in a line is ignored by rule.
LINE_SCHEMA: dict[str, pl.DataType] = {
    "type": pl.String(),
    "id": pl.String(),
    "timestamp": pl.String(),
    "customType": pl.String(),
    # any JSON value: read as (serialised) text, decoded only for openclaw:prompt-error entries
    "data": pl.String(),
    # a session header's parent (a fork): any JSON value, only its presence is used
    "parentSession": pl.String(),
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
            # OpenClaw's own stamp on a message ({runId, ...}): serialised text, runId read when a string
            "__openclaw": pl.String(),
        }
    ),
}
#: Keys of LINE_SCHEMA read as serialised text whatever JSON value they hold (never a wrong type).
ANY_JSON = frozenset({"message.content", "data", "parentSession", "message.__openclaw"})
#: The custom entry OpenClaw appends when a prompt throws, times out or is rolled back
#: (docs/openclaw-formats.md#prompt-errors).
PROMPT_ERROR = "openclaw:prompt-error"
_BLOCKS = pl.List(
    _S({"type": pl.String(), "name": pl.String(), "thinking": pl.String(), "redacted": pl.Boolean()})
)

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
EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)
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
    is_fork: bool | None = None  # the header names a parent session
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
        if path in ANY_JSON:  # any JSON value is accepted and serialised
            return None
        if isinstance(value, (dict, list)):
            return f"{path}: expected a string, got {type(value).__name__}"
        return None
    return None


def _check_line(line: bytes, is_last: bool, at_eof: bool) -> tuple[object | None, str | None]:
    """(parsed object, None) for a usable line, (None, reason) for a bad one."""
    try:
        text = line.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark left by an editor
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


def _call_time(now: datetime, ms: pl.Expr) -> pl.Expr:
    """``ms`` (message.timestamp: the response's start; a prompt-error's data.timestamp) when plausible,
    else the entry's ISO time."""
    lo, hi = EARLIEST, now + FUTURE_SLACK
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


#: Among the call rows of :func:`_extract`: a prompt-error entry (else an assistant message).
_PE = pl.col("_kind") == "prompt_error"
_MSG = pl.col("message")
_USAGE = _MSG.struct.field("usage")
_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _from_data(key: str) -> pl.Expr:
    """A field of a prompt-error's ``data`` (strings only)."""
    return pl.col("data").str.json_path_match(f"$.{key}")


def _pick(data_key: str, message_field: str) -> pl.Expr:
    """A prompt-error's ``data`` field, else the assistant message's own field."""
    return pl.when(_PE).then(_from_data(data_key)).otherwise(_MSG.struct.field(message_field))


def _line_kinds(frame: pl.DataFrame) -> pl.DataFrame:
    """Classify step: each line's ``_kind`` (``call``, ``prompt_error``, ``other`` or ``skipped``)."""
    is_assistant = (pl.col("type") == "message") & (_MSG.struct.field("role") == "assistant")
    is_prompt_error = (pl.col("type") == "custom") & (pl.col("customType") == PROMPT_ERROR)
    is_known = pl.col("type").is_in(list(KNOWN_TYPES))
    return frame.with_columns(
        _kind=pl.when(is_assistant & (_MSG.struct.field("provider") == BOOKKEEPING_PROVIDER))
        .then(pl.lit("skipped"))
        .when(is_assistant)
        .then(pl.lit("call"))
        .when(is_prompt_error)
        .then(pl.lit("prompt_error"))
        .when(is_known)
        .then(pl.lit("other"))
        .otherwise(pl.lit("skipped"))
    )


def _piece_counts(df: pl.DataFrame, meta: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Header step: (per-piece counts with the header's session id and fork flag, the pieces' identity)."""
    header = (
        df.filter(pl.col("type") == "session")
        .group_by("_f")
        .agg(
            header_sid=pl.col("id").filter(pl.col("id").is_not_null()).first(),
            header_fork=pl.col("parentSession").is_not_null().any(),
        )
    )
    counts = (
        df.group_by("_f")
        .agg(other=(pl.col("_kind") == "other").sum(), skipped=(pl.col("_kind") == "skipped").sum())
        .join(header, on="_f", how="left")
    )
    pieces = meta.join(header, on="_f", how="left", maintain_order="left").select(
        "_f",
        "source",
        "rel",
        "agent_id",
        session_id=pl.coalesce("header_sid", "session_id"),
        session_is_fork=pl.coalesce("header_fork", "is_fork", pl.lit(False)),
    )
    return counts, pieces


def _identity(now: datetime) -> dict[str, pl.Expr]:
    """Identity step: where a call is, its session and run, when and how long, its provider/model/api."""
    started_ms = (
        pl.when(_PE)
        .then(_from_data("timestamp").cast(pl.Int64, strict=False))
        .otherwise(_MSG.struct.field("timestamp"))
    )
    return {
        "source": pl.col("source"),
        "source_file": pl.col("rel"),
        "line_no": pl.col("line_no"),
        "agent_id": pl.col("agent_id"),
        "session_id": pl.col("session_id"),
        "entry_id": pl.col("id"),
        "timestamp": _call_time(now, started_ms),
        "provider": _pick("provider", "provider"),
        "model": _pick("model", "model"),
        "api": _pick("api", "api"),
        "response_id": _MSG.struct.field("responseId"),
        "duration_ms": _MSG.struct.field("durationMs").round(0).cast(pl.Int64, strict=False),
        "entry_kind": pl.when(_PE).then(pl.lit("prompt_error")).otherwise(pl.lit("assistant")),
        "run_id": pl.when(_PE)
        .then(_from_data("runId"))
        .otherwise(_MSG.struct.field("__openclaw").str.json_path_match("$.runId")),
        "session_is_fork": pl.col("session_is_fork"),
    }


def _usage() -> dict[str, pl.Expr]:
    """Usage step: the token counts (missing ones 0, reasoning left null) and whether usage is there."""

    def tok(name: str) -> pl.Expr:
        return _USAGE.struct.field(name)

    return {
        "input_tokens": tok("input").fill_null(0),
        "output_tokens": tok("output").fill_null(0),
        "cache_read_tokens": tok("cacheRead").fill_null(0),
        "cache_write_tokens": tok("cacheWrite").fill_null(0),
        "reasoning_tokens": tok("reasoning"),
        "_has_usage": _USAGE.is_not_null(),
    }


def _cost() -> dict[str, pl.Expr]:
    """Cost step: the cost the runtime recorded (``usage.cost.total``)."""
    return {"cost_recorded_usd": _USAGE.struct.field("cost").struct.field("total")}


def _failure() -> dict[str, pl.Expr]:
    """Failure step: the stop reason (``error`` for a prompt-error), the error message, a failed flag."""
    stop = pl.when(_PE).then(pl.lit("error")).otherwise(_MSG.struct.field("stopReason"))
    return {
        "stop_reason": stop,
        "error_message": _pick("error", "errorMessage"),
        "_failed": stop.is_in(["error", "aborted"]).fill_null(False),
    }


def _with_tools(calls: pl.DataFrame) -> pl.DataFrame:
    """Tools step: tool names, thinking characters and redaction from each assistant's content."""
    thinking = _thinking_of(calls.get_column("_content"))
    return pl.concat([calls.drop("_content"), thinking], how="horizontal")


def _problem() -> pl.Expr:
    """Quarantine step: why a call row cannot be used (null when it can)."""
    what = (
        pl.when(pl.col("entry_kind") == "prompt_error")
        .then(pl.lit("prompt-error"))
        .otherwise(pl.lit("assistant"))
    )
    return (
        pl.when(pl.col("provider").fill_null("") == "")
        .then(pl.format("{} entry without a provider", what))
        .when(pl.col("model").fill_null("") == "")
        .then(pl.format("{} entry without a model", what))
        .when(pl.col("timestamp").is_null())
        .then(pl.lit("no plausible timestamp (missing, unparseable, before 2015 or in the future)"))
        .when(~pl.col("_has_usage") & ~pl.col("_failed"))
        .then(pl.lit("assistant entry without usage"))
        .when(pl.max_horizontal(*_TOKEN_COLUMNS) > MAX_TOKENS)
        .then(pl.lit(f"implausible token count (over {MAX_TOKENS:,})"))
        .when(pl.min_horizontal(*_TOKEN_COLUMNS) < 0)
        .then(pl.lit("negative token count"))
        .when(pl.col("cost_recorded_usd") < 0)
        .then(pl.lit("negative recorded cost"))
    )


def _extract(
    frame: pl.DataFrame, meta: pl.DataFrame, *, now: datetime
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Calls, quarantined rows and per-piece counts of the lines of one or more pieces.

    ``frame`` holds parsed lines with ``_f`` (which piece) and ``line_no``; ``meta`` one row per piece
    (``_f``, ``source``, ``rel``, ``agent_id``, ``session_id``, ``is_fork``). Returns (calls with ``_f``,
    bad rows with ``_f``, per ``_f``: ``other``, ``skipped``, ``header_sid`` = the session id from the
    header line, ``header_fork`` = the header names a parent session).

    A call is an assistant message (not the gateway's bookkeeping rows) or an ``openclaw:prompt-error``
    custom entry (a failed prompt, ``entry_kind = prompt_error``); whether such an entry stays a call
    (no assistant error of the same run) is decided across sources (:mod:`mc_pipeline.calls.dedupe`).
    Steps: classify the lines, read the headers, then per call its identity, usage, cost, failure and
    tools, and last the rows to quarantine.
    """
    df = _line_kinds(frame)
    counts, pieces = _piece_counts(df, meta)
    a = df.filter(pl.col("_kind").is_in(["call", "prompt_error"])).join(
        pieces, on="_f", how="left", maintain_order="left"
    )
    content = pl.when(_PE).then(None).otherwise(_MSG.struct.field("content"))
    calls = a.select("_f", **_identity(now), **_usage(), **_cost(), **_failure(), _content=content)
    calls = _with_tools(calls).with_columns(_reason=_problem())
    bad = calls.filter(pl.col("_reason").is_not_null()).select(
        "_f", source="source", source_file="source_file", line_no="line_no", reason="_reason"
    )
    good = calls.filter(pl.col("_reason").is_null()).drop("_has_usage", "_failed", "_reason")
    return good, bad, counts


# ----------------------------------------------------------------------------------------------------


@dataclass
class Piece:
    """Whole lines of one transcript: a file, or what was appended to it from line ``first_line`` on."""

    data: bytes
    rel: str
    agent_id: str
    session_id: str
    first_line: int = 1
    at_eof: bool = True  # the last line may still be being written (only matters when it lacks a newline)
    source: str = SOURCE
    n_lines: int | None = None  # when the caller already counted them
    is_fork: bool | None = None  # known from an earlier read of the session header (appended pieces)


@dataclass
class PieceStats:
    lines_read: int = 0
    calls: int = 0
    other_entries: int = 0
    skipped_by_rule: int = 0
    quarantined: int = 0
    session_id: str | None = None  # from the session header, when this piece holds it
    is_fork: bool | None = None  # the session header names a parentSession (when this piece holds it)
    fast_path: bool = True


def _n_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _fast_frame(datas: list[bytes], n_lines: int) -> pl.DataFrame | None:
    """All lines parsed by Polars in one pass, or None when any line needs the line-by-line path."""
    buf = datas[0] if len(datas) == 1 else b"".join(d if d.endswith(b"\n") else d + b"\n" for d in datas)
    try:
        frame = pl.read_ndjson(buf, schema=LINE_SCHEMA)
    except Exception:  # noqa: BLE001 - any failure sends the pieces to the line-by-line path
        return None
    if frame.height != n_lines or frame.get_column("type").null_count():
        return None
    return frame


def _slow_frame(piece: Piece) -> tuple[pl.DataFrame, pl.Series, list[dict], int]:
    """(good lines parsed, their line numbers, quarantine rows, blank lines) checked one line at a time."""
    data = piece.data
    lines = _split_lines(data)
    quarantined: list[dict] = []
    good: list[bytes] = []
    good_nos: list[int] = []
    blank = 0
    partial_end = piece.at_eof and not data.endswith(b"\n")
    for i, line in enumerate(lines):
        obj, why = _check_line(line, is_last=i == len(lines) - 1, at_eof=partial_end)
        if why:
            quarantined.append(
                {
                    "source": piece.source,
                    "source_file": piece.rel,
                    "line_no": piece.first_line + i,
                    "reason": why,
                    "excerpt": excerpt(line),
                }
            )
        elif obj is None:
            blank += 1
        else:
            good.append(_reserialise(obj))
            good_nos.append(piece.first_line + i)
    try:
        frame = (
            pl.read_ndjson(io.BytesIO(b"\n".join(good)), schema=LINE_SCHEMA)
            if good
            else pl.DataFrame(schema=LINE_SCHEMA)
        )
    except Exception:  # noqa: BLE001 - a line Python accepts but Polars does not: find it, never fail the file
        frame, good_nos = _frame_line_by_line(good, good_nos, piece, quarantined)
    return frame, pl.Series("line_no", good_nos, dtype=pl.Int64), quarantined, blank


def _finite(value: object) -> object:
    """``value`` with NaN/Infinity (accepted by Python's json, not by Polars) replaced by null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _reserialise(obj: dict) -> bytes:
    """A checked line as strict JSON. Non-finite numbers can only be in keys that are not read (the read
    ones were type-checked), so they become null rather than costing the line."""
    try:
        return json.dumps(obj, allow_nan=False).encode()
    except ValueError:
        return json.dumps(_finite(obj), allow_nan=False).encode()


def _frame_line_by_line(
    good: list[bytes], good_nos: list[int], piece: Piece, quarantined: list[dict]
) -> tuple[pl.DataFrame, list[int]]:
    """Last resort: each line read by Polars alone; a line it rejects is quarantined with its error."""
    frames, nos = [], []
    for raw, no in zip(good, good_nos):
        try:
            frames.append(pl.read_ndjson(io.BytesIO(raw), schema=LINE_SCHEMA))
            nos.append(no)
        except Exception as exc:  # noqa: BLE001 - the reason is kept with the line
            quarantined.append(
                {
                    "source": piece.source,
                    "source_file": piece.rel,
                    "line_no": no,
                    "reason": f"unreadable by the Polars reader: {str(exc)[:120]}",
                    "excerpt": excerpt(raw),
                }
            )
    return (pl.concat(frames) if frames else pl.DataFrame(schema=LINE_SCHEMA)), nos


def _numbered(frame: pl.DataFrame, idx: list[int], pieces: list[Piece], n: list[int]) -> pl.DataFrame:
    """``frame`` (the lines of pieces ``idx``, in order) with ``_f`` and ``line_no`` columns."""
    spans = pl.DataFrame(
        {
            "_f": pl.Series(idx, dtype=pl.Int64),
            "_n": pl.Series([n[i] for i in idx], dtype=pl.Int64),
            "_first": pl.Series([pieces[i].first_line for i in idx], dtype=pl.Int64),
        }
    ).select(
        pl.col("_f").repeat_by("_n").explode(),
        (pl.col("_first").repeat_by("_n").explode() + pl.int_ranges(0, pl.col("_n")).explode()).alias(
            "line_no"
        ),
    )
    return pl.concat([frame, spans], how="horizontal")


def _fast_parts(pieces: list[Piece], n: list[int]) -> tuple[list[pl.DataFrame], list[int]]:
    """Fast path step: (the numbered lines of the pieces Polars parses as they are, the other pieces)."""
    parts: list[pl.DataFrame] = []
    slow: list[int] = []
    # a blank line makes Polars return fewer rows than lines: caught by _fast_frame's row count
    clean = [i for i in range(len(pieces)) if n[i]]
    if not clean:
        return parts, slow
    frame = _fast_frame([pieces[i].data for i in clean], sum(n[i] for i in clean))
    if frame is not None:
        parts.append(_numbered(frame, clean, pieces, n))
    elif len(clean) > 1:  # find the piece(s) at fault: each on its own
        for i in clean:
            one = _fast_frame([pieces[i].data], n[i])
            if one is None:
                slow.append(i)
            else:
                parts.append(_numbered(one, [i], pieces, n))
    else:
        slow.extend(clean)
    return parts, slow


def _slow_parts(
    pieces: list[Piece], slow: list[int], stats: list[PieceStats]
) -> tuple[list[pl.DataFrame], list[dict]]:
    """Slow path step: (the good lines of pieces ``slow``, checked line by line, their quarantine rows)."""
    parts: list[pl.DataFrame] = []
    quarantined: list[dict] = []
    for i in sorted(slow):
        frame, line_nos, q, blank = _slow_frame(pieces[i])
        stats[i].fast_path = False
        stats[i].skipped_by_rule += blank
        stats[i].quarantined += len(q)
        quarantined.extend(q)
        parts.append(frame.with_columns(_f=pl.lit(i, pl.Int64), line_no=line_nos))
    return parts, quarantined


def _pieces_meta(pieces: list[Piece]) -> pl.DataFrame:
    """Identity step: one row per piece: ``_f`` and its source, file, agent, session and fork flag."""
    return pl.DataFrame(
        {
            "_f": pl.Series(range(len(pieces)), dtype=pl.Int64),
            "source": [p.source for p in pieces],
            "rel": [p.rel for p in pieces],
            "agent_id": [p.agent_id for p in pieces],
            "session_id": [p.session_id for p in pieces],
            "is_fork": [p.is_fork for p in pieces],
        },
        schema={
            "_f": pl.Int64,
            "source": pl.String,
            "rel": pl.String,
            "agent_id": pl.String,
            "session_id": pl.String,
            "is_fork": pl.Boolean,
        },
    )


def _add_counts(stats: list[PieceStats], counts: pl.DataFrame, calls: pl.DataFrame) -> None:
    """Accounting step: each piece's other entries, lines skipped, header facts and calls into ``stats``."""
    for f, other, skipped, sid, fork in counts.iter_rows():
        stats[f].other_entries += other
        stats[f].skipped_by_rule += skipped
        stats[f].session_id = sid
        stats[f].is_fork = fork
    for f, k in calls.group_by("_f").len().iter_rows():
        stats[f].calls = k


def _with_excerpts(bad: pl.DataFrame, pieces: list[Piece], stats: list[PieceStats]) -> pl.DataFrame:
    """Quarantine step: the rejected call rows with the excerpt of their line, counted in ``stats``."""
    if not bad.height:
        return bad
    excerpts = []
    split: dict[int, list[bytes]] = {}
    for f, line_no in bad.select("_f", "line_no").iter_rows():
        if f not in split:
            split[f] = _split_lines(pieces[f].data)
        excerpts.append(excerpt(split[f][line_no - pieces[f].first_line]))
        stats[f].quarantined += 1
    return bad.with_columns(excerpt=pl.Series(excerpts, dtype=pl.String))


def _in_piece_order(q: pl.DataFrame, pieces: list[Piece]) -> pl.DataFrame:
    """Order step: quarantine rows in piece order, then line order, like reading the pieces one by one."""
    order = {p.rel: i for i, p in reversed(list(enumerate(pieces)))}
    return q.sort(
        pl.col("source_file").replace_strict(order, default=len(pieces)), "line_no", maintain_order=True
    )


def parse_pieces(
    pieces: list[Piece], now: datetime | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, list[PieceStats]]:
    """(CALL_RECORDS, QUARANTINE, stats per piece) of several transcript pieces, parsed together.

    The common case (no bad line anywhere) is a single Polars pass over all pieces; a piece with a bad
    or blank line is re-read on its own, line by line. Results do not depend on how pieces are grouped.
    """
    now = now or datetime.now(UTC)
    n = [_n_lines(p.data) if p.n_lines is None else p.n_lines for p in pieces]
    stats = [PieceStats(lines_read=k) for k in n]
    parts, slow = _fast_parts(pieces, n)
    slow_parts, quarantined = _slow_parts(pieces, slow, stats)
    parts += slow_parts
    if not parts:
        return empty(CALL_RECORDS), conform(pl.DataFrame(quarantined, schema=QUARANTINE), QUARANTINE), stats

    lines = pl.concat(parts)
    if len(parts) > 1:
        lines = lines.sort("_f", "line_no", maintain_order=True)
    calls, bad, counts = _extract(lines, _pieces_meta(pieces), now=now)
    _add_counts(stats, counts, calls)
    bad = _with_excerpts(bad, pieces, stats)
    q = pl.concat(
        [conform(pl.DataFrame(quarantined, schema=QUARANTINE), QUARANTINE), conform(bad, QUARANTINE)]
    )
    if slow and q.height:
        q = _in_piece_order(q, pieces)
    return _compact(conform(calls, CALL_RECORDS)), _compact(q), stats


def _compact(frame: pl.DataFrame) -> pl.DataFrame:
    """A copy that owns its strings: Polars string columns are views into the buffers they were parsed
    from, so a few kept records would otherwise hold every parsed line (all the message text) in memory."""
    return pl.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()), schema=frame.schema)


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
    piece = Piece(
        data,
        rel=rel,
        agent_id=agent_id,
        session_id=session_id,
        first_line=first_line,
        at_eof=at_eof,
        source=source,
    )
    calls, q, (st,) = parse_pieces([piece], now)
    return ParsedChunk(
        calls=calls,
        quarantine=q,
        lines_read=st.lines_read,
        other_entries=st.other_entries,
        skipped_by_rule=st.skipped_by_rule,
        session_id=st.session_id,
        is_fork=st.is_fork,
        fast_path=st.fast_path,
    )
