"""Whether a source went silent or changed shape (pure; the Dagster checks are in ``defs/source_assets.py``).

Other tools broke silently when OpenClaw moved calls into SQLite (ccusage #1700): a reader that still
finds files, reads nothing from them and reports a confident, short total. Two rules, per source
(``schemas.SOURCES``), each a WARN check on ``llm_calls`` and a ``warning:`` line of the ``make run`` summary:

- **silent**: the source's files or databases were written in the last :data:`WINDOW` (7 days) and either
  the last run read calls dated in that window from it and this run reads none, or at least
  :data:`NEW_LINES_MIN` (20) lines arrived since the last run without a single new call (lines of a shape
  the reader does not know);
- **quarantine jump**: the share of its lines that went to quarantine is at least :data:`JUMP_MIN_SHARE`
  (5%) of at least :data:`JUMP_MIN_LINES` lines, and at least twice the last run's share plus one point.

The last run's figures are kept in ``staging/source_health.json`` (:func:`read_history`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from mc_pipeline.tables.schemas import SOURCE_LABELS

WINDOW = timedelta(days=7)
JUMP_MIN_SHARE = 0.05
JUMP_MIN_LINES = 20
NEW_LINES_MIN = 20
HISTORY_FILE = "source_health.json"


@dataclass
class SourceStats:
    source: str
    lines_read: int = 0
    quarantined: int = 0
    calls_read: int = 0  # calls the reader found (before de-duplication)
    calls_recent: int = 0  # ... dated within WINDOW of now
    last_write: str | None = None  # newest write of its files/databases (ISO), None when unknown
    had_calls: bool = False  # this run or an earlier one read calls from it

    @property
    def share(self) -> float:
        return self.quarantined / self.lines_read if self.lines_read else 0.0


def source_stats(
    records: pl.DataFrame,
    file_counts: pl.DataFrame,
    last_writes: dict[str, datetime | None],
    now: datetime,
    history: dict[str, dict],
) -> list[SourceStats]:
    """Per source that has files, records or history: what this run read of it."""
    since = now - WINDOW
    read = records.group_by("source").agg(calls=pl.len(), recent=(pl.col("timestamp") >= since).sum())
    counts = file_counts.group_by("source").agg(pl.col("lines_read").sum(), pl.col("quarantined").sum())
    by_read = {r["source"]: r for r in read.iter_rows(named=True)}
    by_count = {r["source"]: r for r in counts.iter_rows(named=True)}
    sources = set(by_read) | set(by_count) | {s for s, t in last_writes.items() if t} | set(history)
    out = []
    for s in sorted(sources):
        r, c, w = by_read.get(s, {}), by_count.get(s, {}), last_writes.get(s)
        calls = int(r.get("calls") or 0)
        out.append(
            SourceStats(
                source=s,
                lines_read=int(c.get("lines_read") or 0),
                quarantined=int(c.get("quarantined") or 0),
                calls_read=calls,
                calls_recent=int(r.get("recent") or 0),
                last_write=w.isoformat() if w else None,
                had_calls=calls > 0 or bool(history.get(s, {}).get("had_calls")),
            )
        )
    return out


def source_stats_from_counts(
    source_files: pl.DataFrame,
    recent: pl.DataFrame,
    last_writes: dict[str, datetime | None],
    now: datetime,
    history: dict[str, dict],
) -> list[SourceStats]:
    """:func:`source_stats` from the line reconciliation (calls read = kept + dropped as duplicates) and the
    staged records of the last days (``source``, ``timestamp``)."""
    per = source_files.group_by("source").agg(
        pl.col("lines_read").sum(),
        pl.col("quarantined").sum(),
        calls=(pl.col("calls") + pl.col("duplicates")).sum(),
    )
    since = now - WINDOW
    rec = (
        dict(recent.filter(pl.col("timestamp") >= since).group_by("source").len().iter_rows())
        if recent.height
        else {}
    )
    by = {r["source"]: r for r in per.iter_rows(named=True)}
    sources = set(by) | set(rec) | {s for s, t in last_writes.items() if t} | set(history)
    out = []
    for s in sorted(sources):
        r, w = by.get(s, {}), last_writes.get(s)
        calls = int(r.get("calls") or 0)
        out.append(
            SourceStats(
                source=s,
                lines_read=int(r.get("lines_read") or 0),
                quarantined=int(r.get("quarantined") or 0),
                calls_read=calls,
                calls_recent=int(rec.get(s, 0)),
                last_write=w.isoformat() if w else None,
                had_calls=calls > 0 or bool(history.get(s, {}).get("had_calls")),
            )
        )
    return out


def silent(stats: list[SourceStats], now: datetime, history: dict[str, dict] | None = None) -> list[str]:
    """Sources written lately whose calls stopped (see the module doc): one line each, saying why."""
    out = []
    for s in stats:
        before = (history or {}).get(s.source)
        if before is None or not s.last_write or datetime.fromisoformat(s.last_write) < now - WINDOW:
            continue
        label = SOURCE_LABELS.get(s.source, s.source)
        # usable lines only: quarantined ones are the other rule's
        new_lines = (s.lines_read - s.quarantined) - (
            int(before.get("lines_read") or 0) - int(before.get("quarantined") or 0)
        )
        if before.get("calls_recent") and s.calls_recent == 0:
            out.append(
                f"{label}: written in the last {WINDOW.days} days (last at {s.last_write[:16]}Z) and "
                f"{before['calls_recent']:,} calls of that window were read last run, none now; "
                f"has its format changed?"
            )
        elif new_lines >= NEW_LINES_MIN and s.calls_read <= int(before.get("calls_read") or 0):
            out.append(
                f"{label}: {new_lines:,} new lines since the last run and no new call among them "
                f"(last written at {s.last_write[:16]}Z); has its format changed?"
            )
    return out


def quarantine_jumps(stats: list[SourceStats], history: dict[str, dict]) -> list[str]:
    out = []
    for s in stats:
        before = history.get(s.source)
        if before is None or s.lines_read < JUMP_MIN_LINES or s.share < JUMP_MIN_SHARE:
            continue
        old = before["quarantined"] / before["lines_read"] if before.get("lines_read") else 0.0
        if s.share >= 2 * old + 0.01:
            out.append(
                f"{SOURCE_LABELS.get(s.source, s.source)}: {s.share:.1%} of its lines quarantined "
                f"({s.quarantined:,} of {s.lines_read:,}), {old:.1%} in the last run; "
                f"see the quarantine table"
            )
    return out


def read_history(staging: Path) -> dict[str, dict]:
    try:
        doc = json.loads((staging / HISTORY_FILE).read_text())
        return doc.get("sources", {}) if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def history_doc(stats: list[SourceStats], warnings: list[str]) -> dict:
    return {"sources": {s.source: asdict(s) for s in stats}, "warnings": warnings}
