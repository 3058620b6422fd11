"""Reading every counted transcript file of an OpenClaw home into one SourceBatch."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import polars as pl

from mc_pipeline.readers.batch import SourceBatch
from mc_pipeline.readers.home import TranscriptFile, discover_transcripts
from mc_pipeline.readers.transcripts import SOURCE, ParsedChunk, parse_transcript
from mc_pipeline.schemas import CALL_RECORDS, FILE_COUNTS, QUARANTINE

Progress = Callable[[str], None]


def read_file_bytes(path: Path) -> bytes:
    """Read-only, no lock: a file being appended to is read up to what is there now."""
    with open(path, "rb") as fh:
        return fh.read()


def parse_file(tf: TranscriptFile, now: datetime) -> ParsedChunk:
    return parse_transcript(
        read_file_bytes(tf.path), rel=tf.rel, agent_id=tf.agent_id, session_id=tf.session_id, now=now
    )


def file_count_row(tf: TranscriptFile, chunk: ParsedChunk) -> dict:
    return {
        "source": SOURCE,
        "source_file": tf.rel,
        "lines_read": chunk.lines_read,
        "calls": chunk.n_calls,
        "other_entries": chunk.other_entries,
        "skipped_by_rule": chunk.skipped_by_rule,
        "quarantined": chunk.n_quarantined,
    }


def read_transcripts(home: Path, progress: Progress | None = None, every_s: float = 2.0) -> SourceBatch:
    """Parse all live, topic, reset and deleted transcripts under ``home`` (never .bak copies)."""
    found = discover_transcripts(home)
    problems = list(found.problems)
    now = datetime.now(timezone.utc)
    calls, quarantine, counts = [], [], []
    total_bytes = sum(f.size for f in found.files)
    done_bytes, last = 0, time.monotonic()
    for i, tf in enumerate(found.files, 1):
        try:
            chunk = parse_file(tf, now)
        except OSError as exc:
            problems.append(f"{tf.rel}: cannot read ({exc.strerror or exc})")
            continue
        calls.append(chunk.calls)
        quarantine.append(chunk.quarantine)
        counts.append(file_count_row(tf, chunk))
        done_bytes += tf.size
        if progress and time.monotonic() - last > every_s:
            last = time.monotonic()
            progress(f"transcripts: {i}/{len(found.files)} files, {done_bytes / 1e6:.0f}/{total_bytes / 1e6:.0f} MB")
    return SourceBatch(
        records=pl.concat(calls) if calls else pl.DataFrame(schema=CALL_RECORDS),
        quarantine=pl.concat(quarantine) if quarantine else pl.DataFrame(schema=QUARANTINE),
        file_counts=pl.DataFrame(counts, schema=FILE_COUNTS),
        problems=problems,
    )


def with_line_excerpts(home: Path, rows: pl.DataFrame) -> pl.DataFrame:
    """Fill ``excerpt`` of quarantine rows that point at a transcript line (re-reads only those files)."""
    from mc_pipeline.readers.transcripts import excerpt

    missing = rows.filter(pl.col("excerpt").is_null() & (pl.col("source") == SOURCE))
    if missing.height == 0:
        return rows
    found: dict[tuple[str, int], str] = {}
    for (rel,), part in missing.partition_by("source_file", as_dict=True).items():
        wanted = set(part.get_column("line_no").to_list())
        try:
            with open(home / rel, "rb") as fh:
                for no, line in enumerate(fh, 1):
                    if no in wanted:
                        found[(rel, no)] = excerpt(line.rstrip(b"\n"))
        except OSError:
            continue
    lookup = pl.DataFrame(
        [{"source_file": k[0], "line_no": k[1], "_ex": v} for k, v in found.items()],
        schema={"source_file": pl.String, "line_no": pl.Int64, "_ex": pl.String},
    )
    return (
        rows.join(lookup, on=["source_file", "line_no"], how="left", maintain_order="left")
        .with_columns(excerpt=pl.coalesce("excerpt", "_ex"))
        .drop("_ex")
    )
