"""The user's backup log ``logs/model-usage.jsonl`` (docs/openclaw-formats.md#model-usage-log),
one JSON object per line:
``{"timestamp", "model": "provider/model", "tokens_in", "tokens_out", "task_type", "description",
"estimated_cost"}``.

- ``model`` is split at its first ``/``: ``anthropic/claude-opus-4-6`` -> provider ``anthropic``, model
  ``claude-opus-4-6``; ``openrouter/minimax/minimax-m2.1`` -> ``openrouter``, ``minimax/minimax-m2.1``.
  A model without a provider prefix is quarantined (a provider is not guessed from a model name).
- ``tokens_in`` -> input tokens, ``tokens_out`` -> output tokens (the log has no cache counts);
  ``task_type`` -> the given task type. ``description`` is free text and is never read.
- ``estimated_cost`` is NOT used as a recorded cost: it is the user's script's own estimate from its own
  price assumptions, not what a provider or the runtime recorded. ``cost_recorded_usd`` stays null, so the
  call is priced from the price table like any other (or is ``unpriced``).
- Timestamps as in ``interactions.db`` (ISO text, naive ones in the reporting zone, or epoch s/ms).
- Token counts must be whole numbers from 0 to the transcripts' cap (``MAX_TOKENS``, 1e9); others are
  quarantined (``implausible token count``, ``negative token count``), never passed on (a count beyond
  int64 once failed the whole run).
- Every line is accounted for: ``lines_read = calls + skipped (blank lines) + quarantined``. A malformed
  line is quarantined with its line number and reason; the excerpt masks ``description``.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from mc_pipeline.ingest.readers.batch import SourceBatch
from mc_pipeline.ingest.readers.home import agent_of_caller, known_agents
from mc_pipeline.ingest.readers.interactions_db import parse_timestamp, plausible, relative_name
from mc_pipeline.ingest.readers.transcripts import MAX_TOKENS
from mc_pipeline.tables.schemas import CALL_RECORDS, EXCERPT_CHARS, FILE_COUNTS, QUARANTINE, conform

SOURCE = "model_usage_log"
DEFAULT_REL = "logs/model-usage.jsonl"

LOG_SCHEMA: dict[str, pl.DataType] = {
    "timestamp": pl.String(),
    "model": pl.String(),
    "tokens_in": pl.Int64(),
    "tokens_out": pl.Int64(),
    "task_type": pl.String(),
    "caller": pl.String(),  # "caller" or "agent" when the line has one: which agent made the call
}
_DESCRIPTION = re.compile(rb'("description"\s*:\s*)"(?:[^"\\]|\\.)*"?')


def default_path(home: Path) -> Path:
    return home / DEFAULT_REL


def excerpt(line: bytes) -> str:
    masked = _DESCRIPTION.sub(rb'\1"..."', line)
    return masked.decode("utf-8", errors="replace").replace("\x00", "\\0")[:EXCERPT_CHARS]


def _check(line: bytes) -> tuple[dict | None, str | None]:
    """(the fields of a usable line, None) or (None, reason); (None, None) for a blank line."""
    if not line.strip():
        return None, None
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start}"
    except ValueError as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(obj, dict):
        return None, f"not a JSON object (a {type(obj).__name__})"
    out: dict = {}
    for name in ("tokens_in", "tokens_out"):
        v = obj.get(name)
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            v = int(v)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            return None, f"{name} is not a whole number ({str(v)[:30]!r})"
        if v is not None and v > MAX_TOKENS:  # also keeps counts beyond int64 out of the Int64 frame
            return None, f"implausible token count (over {MAX_TOKENS:,})"
        if v is not None and v < 0:
            return None, "negative token count"
        out[name] = v
    obj.setdefault("caller", obj.get("agent"))
    for name in ("timestamp", "model", "task_type", "caller"):
        v = obj.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and name == "timestamp":
            v = str(v)
        if v is not None and not isinstance(v, str):
            return None, f"{name} is not a string"
        out[name] = v
    return out, None


def _bad_line(rel: str, no: int, reason: str, line: bytes) -> dict:
    """Quarantine step: the row of one unusable line, its description masked."""
    return {"source": SOURCE, "source_file": rel, "line_no": no, "reason": reason, "excerpt": excerpt(line)}


def _checked_lines(lines: list[bytes], rel: str) -> tuple[list[dict], list[dict], int]:
    """Check step: (the fields of each usable line with its ``line_no``, quarantine rows, blank lines)."""
    good: list[dict] = []
    bad: list[dict] = []
    blank = 0
    for no, line in enumerate(lines, 1):
        obj, why = _check(line)
        if why:
            bad.append(_bad_line(rel, no, why, line))
        elif obj is None:
            blank += 1
        else:
            good.append({**obj, "line_no": no})
    return good, bad, blank


def _log_provider_model() -> dict[str, pl.Expr]:
    """Map step: provider and model, split at the model id's first ``/`` (no prefix: no provider)."""
    model = pl.col("model").str.strip_chars()
    return {
        "_provider": pl.when(model.str.contains("/")).then(model.str.split("/").list.first()),
        "_model": pl.when(model.str.contains("/"))
        .then(model.str.splitn("/", 2).struct.field("field_1"))
        .otherwise(model),
    }


def _log_problem(now: datetime) -> pl.Expr:
    """Quarantine step: why a checked line cannot be used (null when it can)."""
    return (
        pl.when(pl.col("_ts").is_null())
        .then(pl.format("unparseable timestamp {}", pl.col("timestamp").fill_null("null").str.slice(0, 40)))
        .when(~plausible("_ts", now))
        .then(pl.lit("implausible timestamp (before 2015 or in the future)"))
        .when(pl.col("_model").fill_null("") == "")
        .then(pl.lit("no model"))
        .when(pl.col("_provider").fill_null("") == "")
        .then(pl.lit("model has no provider/ prefix"))
        .when(pl.col("tokens_in").is_null() & pl.col("tokens_out").is_null())
        .then(pl.lit("no token counts"))
    )


def _log_records(rel: str, agents: list[str]) -> dict[str, pl.Expr]:
    """Map step: the CALL_RECORDS columns of a usable line."""
    return {
        "source": pl.lit(SOURCE),
        "source_file": pl.lit(rel),
        "line_no": pl.col("line_no"),
        "entry_id": pl.format("log:{}", pl.col("line_no")),
        "agent_id": agent_of_caller(pl.col("caller"), agents),
        "timestamp": pl.col("_ts"),
        "provider": pl.col("_provider"),
        "model": pl.col("_model"),
        "input_tokens": pl.col("tokens_in").fill_null(0),
        "output_tokens": pl.col("tokens_out").fill_null(0),
        "cache_read_tokens": pl.lit(0, pl.Int64),
        "cache_write_tokens": pl.lit(0, pl.Int64),
        "given_task_type": pl.when(pl.col("task_type").str.strip_chars() != "").then(
            pl.col("task_type").str.strip_chars()
        ),
    }


def parse_log(
    data: bytes,
    *,
    rel: str,
    naive_tz: str = "UTC",
    now: datetime | None = None,
    agents: list[str] | None = None,
) -> SourceBatch:
    """The log's calls; ``agent_id`` is the agent a line's ``caller``/``agent`` names (``agent:<id>`` or one
    of ``agents``), else null.

    Steps: each line checked in Python, the usable ones mapped by Polars (timestamp, provider/model),
    rows that still cannot be used quarantined, the rest made call records, every line accounted for."""
    now = now or datetime.now(UTC)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    good, bad, blank = _checked_lines(lines, rel)
    frame = pl.DataFrame(good, schema={**LOG_SCHEMA, "line_no": pl.Int64()})
    df = frame.with_columns(_ts=parse_timestamp("timestamp", naive_tz), **_log_provider_model())
    df = df.with_columns(_reason=_log_problem(now))
    rejected = df.filter(pl.col("_reason").is_not_null())
    if rejected.height:
        nos = rejected.get_column("line_no").to_list()
        bad += [
            _bad_line(rel, n, r, lines[n - 1]) for n, r in zip(nos, rejected.get_column("_reason").to_list())
        ]
    calls = df.filter(pl.col("_reason").is_null()).select(**_log_records(rel, agents or []))
    quarantine = pl.DataFrame(bad, schema=QUARANTINE).sort("line_no")
    counts = pl.DataFrame(
        [
            {
                "source": SOURCE,
                "source_file": rel,
                "lines_read": len(lines),
                "calls": calls.height,
                "other_entries": 0,
                "skipped_by_rule": blank,
                "quarantined": quarantine.height,
            }
        ],
        schema=FILE_COUNTS,
    )
    return SourceBatch(conform(calls, CALL_RECORDS), quarantine, counts, [])


def read_model_usage_log(
    path: Path, home: Path, *, tz: str = "UTC", now: datetime | None = None
) -> SourceBatch:
    """Read the log (read-only, no lock; a line being appended is quarantined as malformed until complete)."""
    rel = relative_name(path, home)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return SourceBatch.empty([f"{rel}: cannot read ({exc.strerror or exc})"])
    return parse_log(data, rel=rel, naive_tz=tz, now=now, agents=known_agents(home))
