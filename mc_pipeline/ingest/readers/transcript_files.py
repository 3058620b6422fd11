"""Reading the transcript files of an OpenClaw home into one SourceBatch, incrementally and in parallel.

``read_transcripts_incremental`` takes the last run's batch and manifest (see ``manifest.py``), reads
only new or changed files (appended files from their last complete line) and returns the batch a full
rebuild would produce, plus the new manifest. ``read_transcripts`` is the same with nothing previous.

Speed and memory: files are grouped into units of about ``UNIT_BYTES``; each unit is read and parsed
by one of ``workers`` threads (Polars releases the GIL while it parses), many small files in one Polars
pass. A big file is streamed in line-aligned pieces of at most ``UNIT_BYTES``, so memory stays flat
however large the history grows; only call records (a few hundred bytes per call) are kept.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import polars as pl

from mc_pipeline.ingest.day_store import Removal
from mc_pipeline.ingest.readers.batch import SourceBatch
from mc_pipeline.ingest.readers.home import TranscriptFile, discover_transcripts
from mc_pipeline.ingest.readers.manifest import (
    CLOCK_REASONS,
    FINGERPRINT_BYTES,
    MANIFEST,
    ReadPlan,
    empty_manifest,
    fingerprint,
    plan_reads,
)
from mc_pipeline.ingest.readers.staged import ReadReport, SourceState, filter_units, unit_days
from mc_pipeline.ingest.readers.transcripts import SOURCE, Piece, PieceStats, parse_pieces
from mc_pipeline.ingest.readers.zstd_frames import ZstdError, stream_lines
from mc_pipeline.tables.schemas import CALL_RECORDS, FILE_COUNTS, QUARANTINE

Progress = Callable[[str], None]

#: Bytes of transcript parsed per Polars pass (and the most a single read holds in memory).
UNIT_BYTES = 8 * 1024 * 1024
#: The most a `.zst` archive may expand to (a hostile stream must not exhaust memory).
MAX_ZST_BYTES = 8 * 1024**3
#: Threads reading and parsing units (the machine's cores, at most 4).
WORKERS = max(1, min(4, os.cpu_count() or 1))


def read_file_bytes(path: Path) -> bytes:
    """Read-only, no lock: a file being appended to is read up to what is there now."""
    with open(path, "rb") as fh:
        return fh.read()


@dataclass
class _Job:
    tf: TranscriptFile
    entry: dict | None = None  # the manifest row when appending


@dataclass
class _FileResult:
    tf: TranscriptFile
    session_id: str
    bytes_consumed: int
    lines_consumed: int
    head_hash: str
    tail_hash: str
    size: int
    body: PieceStats = field(default_factory=PieceStats)  # counts of the complete lines read this run
    tail: PieceStats = field(default_factory=PieceStats)  # counts of a partial last line
    appended_to: dict | None = None  # manifest row the new lines were appended to
    error: str | None = None


@dataclass
class _UnitResult:
    calls: list[pl.DataFrame] = field(default_factory=list)
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    files: list[_FileResult] = field(default_factory=list)
    bytes_read: int = 0
    days: dict[str, set] = field(default_factory=dict)  # source_file -> days of its records (worker-side)


def _header_session_id(first_line: bytes) -> str | None:
    """The session id of a session header line (only a string id counts, as in the parser)."""
    if not first_line.startswith(b"{") or b'"session"' not in first_line:
        return None
    try:
        obj = json.loads(first_line)
    except ValueError:
        return None
    if isinstance(obj, dict) and obj.get("type") == "session" and isinstance(obj.get("id"), str):
        return obj["id"]
    return None


def _piece(tf: TranscriptFile, res: _FileResult, data: bytes, n: int, **kw) -> Piece:
    """Piece step: ``n`` lines of ``tf`` that follow the lines already consumed."""
    return Piece(
        data,
        rel=tf.rel,
        agent_id=tf.agent_id,
        session_id=res.session_id,
        first_line=res.lines_consumed + 1,
        n_lines=n,
        **kw,
    )


def _block_session_id(block: bytes) -> str | None:
    """Header step: the session id of the session header a file's first block starts with, or None."""
    nl = block.find(b"\n")
    return _header_session_id(block if nl < 0 else block[:nl])


def _add(into: PieceStats, st: PieceStats) -> None:
    if st.is_fork is not None:
        into.is_fork = st.is_fork
    into.lines_read += st.lines_read
    into.calls += st.calls
    into.other_entries += st.other_entries
    into.skipped_by_rule += st.skipped_by_rule
    into.quarantined += st.quarantined


class _UnitReader:
    """Reads and parses the files of one unit (runs in a worker thread)."""

    def __init__(self, now: datetime, unit_bytes: int, tz: str | None = None):
        self.now = now
        self.unit_bytes = unit_bytes
        self.tz = tz
        self.out = _UnitResult()
        self.pending: list[tuple[Piece, PieceStats]] = []
        self.pending_bytes = 0

    def queue(self, piece: Piece, into: PieceStats) -> None:
        self.pending.append((piece, into))
        self.pending_bytes += len(piece.data)
        if self.pending_bytes >= self.unit_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        calls, quarantine, stats = parse_pieces([p for p, _ in self.pending], self.now)
        if self.tz is not None and calls.height:
            for rel, days in unit_days(calls, self.tz).items():
                self.out.days.setdefault(rel, set()).update(days)
        self.out.calls.append(calls)
        self.out.quarantine.append(quarantine)
        for (_, into), st in zip(self.pending, stats):
            _add(into, st)
        self.pending, self.pending_bytes = [], 0

    def run(self, jobs: list[_Job]) -> _UnitResult:
        for job in jobs:
            try:
                res = self.read_file(job)
            except OSError as exc:  # its rows (if any were parsed) are dropped by the caller
                tf = job.tf
                res = _FileResult(
                    tf, tf.session_id, 0, 0, "", "", tf.size, error=f"cannot read ({exc.strerror or exc})"
                )
            self.out.files.append(res)
        self.flush()
        return self.out

    def read_compressed(self, tf: TranscriptFile) -> _FileResult:
        """Queue a ``.zst`` archive's lines (decompressed as a stream, pieces of at most ``unit_bytes``).

        A stream that does not decompress (corrupt, truncated while being written, or expanding past
        :data:`MAX_ZST_BYTES`) keeps the lines read so far and one quarantine row saying why."""
        res = _FileResult(tf, tf.session_id, tf.size, 0, "", "", tf.size)
        head = b""
        with open(tf.path, "rb") as fh:
            head = fh.read(FINGERPRINT_BYTES)
            fh.seek(0)
            try:
                for block in stream_lines(fh, MAX_ZST_BYTES, chunk=self.unit_bytes):
                    if res.lines_consumed == 0:
                        res.session_id = _block_session_id(block) or tf.session_id
                    n = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
                    piece = _piece(tf, res, block, n, at_eof=True)
                    res.lines_consumed += n
                    self.queue(piece, res.body)
            except ZstdError as exc:
                self.flush()
                res.lines_consumed += 1  # the unreadable rest, accounted as one quarantined line
                res.body.quarantined += 1
                self.out.quarantine.append(
                    pl.DataFrame(
                        [
                            {
                                "source": SOURCE,
                                "source_file": tf.rel,
                                "line_no": None,
                                "reason": f"compressed archive does not decompress: {exc}",
                                "excerpt": None,
                            }
                        ],
                        schema=QUARANTINE,
                    )
                )
        res.head_hash = fingerprint(head)
        res.tail_hash = fingerprint(head)
        self.out.bytes_read += tf.size
        return res

    def read_file(self, job: _Job) -> _FileResult:
        """Queue one file's complete lines (pieces of at most ``unit_bytes``), then its partial last line.

        Steps: check that what an appended file held before is still there (else read it whole), stream
        its blocks cut at the last newline, keep the fingerprints of its first and last bytes."""
        tf = job.tf
        if tf.compressed:
            return self.read_compressed(tf)
        fp = FINGERPRINT_BYTES
        with open(tf.path, "rb") as fh:
            start, lines, sid, head, recent, entry = _resume_point(fh, job.entry)
            res = _FileResult(tf, sid or tf.session_id, start, lines, "", "", tf.size, appended_to=entry)
            fork = (entry or {}).get("is_fork")
            pos, buf = start, b""
            while True:
                block = fh.read(self.unit_bytes)
                if not block:
                    break
                if pos == 0:
                    res.session_id = _block_session_id(block) or tf.session_id
                pos += len(block)
                buf = buf + block if buf else block
                cut = buf.rfind(b"\n") + 1
                if cut == 0:  # no complete line yet: keep reading
                    continue
                body, buf = buf[:cut], buf[cut:]
                if len(head) < fp:
                    head += body[: fp - len(head)]
                recent = body[-fp:] if len(body) >= fp else (recent + body)[-fp:]
                n = body.count(b"\n")
                piece = _piece(tf, res, body, n, at_eof=False, is_fork=fork)
                res.bytes_consumed += len(body)
                res.lines_consumed += n
                self.queue(piece, res.body)
            if buf:
                self.queue(_piece(tf, res, buf, 1, at_eof=True, is_fork=fork), res.tail)
        # size stays the one seen at discovery: bytes written since make the next run append, not re-read
        res.head_hash = fingerprint(head)
        res.tail_hash = fingerprint(recent)
        self.out.bytes_read += pos - start
        return res


def _resume_point(fh: BinaryIO, entry: dict | None) -> tuple[int, int, str | None, bytes, bytes, dict | None]:
    """Append check step: (offset, lines, session id, head, recent bytes, manifest entry) to read on from,
    ``fh`` left at that offset; from the start (no entry) when the file is new or was rewritten in place."""
    if entry is None:
        return 0, 0, None, b"", b"", None
    fp = FINGERPRINT_BYTES
    consumed = entry["bytes_consumed"]
    head = fh.read(min(fp, consumed))
    fh.seek(max(0, consumed - fp))
    recent = fh.read(consumed - max(0, consumed - fp))
    if fingerprint(head) == entry["head_hash"] and fingerprint(recent) == entry["tail_hash"]:
        fh.seek(consumed)
        return consumed, entry["lines_consumed"], entry["session_id"], head, recent, entry
    fh.seek(0)  # rewritten in place: read it whole
    return 0, 0, None, b"", b"", None


def _units(jobs: list[_Job], unit_bytes: int) -> list[list[_Job]]:
    """Jobs grouped into units of about ``unit_bytes`` (a big file is a unit of its own)."""
    units: list[list[_Job]] = []
    current: list[_Job] = []
    size = 0
    for job in jobs:
        n = job.tf.size - (job.entry["bytes_consumed"] if job.entry else 0)
        if current and size + n > unit_bytes:
            units.append(current)
            current, size = [], 0
        current.append(job)
        size += n
    if current:
        units.append(current)
    return units


@dataclass
class _Collected:
    """Everything the units of one read produced, except the call records (streamed to ``sink``)."""

    quarantine: list[pl.DataFrame] = field(default_factory=list)
    files: list[_FileResult] = field(default_factory=list)
    days: dict[str, set] = field(default_factory=dict)  # source_file -> days of its new records
    bytes_read: int = 0


def _read_jobs(
    jobs: list[_Job],
    sink: Callable[[pl.DataFrame], None],
    *,
    tz: str | None,
    progress: Progress | None,
    every_s: float,
    workers: int,
    unit_bytes: int,
    now: datetime,
) -> _Collected:
    """Read and parse ``jobs`` on a thread pool; each unit's call records go to ``sink`` as it completes,
    so no more than a few units' records are in memory at once."""
    out = _Collected()
    units = _units(jobs, unit_bytes)
    total = sum(j.tf.size for j in jobs)
    done, last = 0, time.monotonic()
    if not units:
        return out
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(units)))) as pool:
        for res in pool.map(lambda u: _UnitReader(now, unit_bytes, tz).run(u), units):
            for calls in res.calls:
                if calls.height:
                    sink(calls)
            for rel, days in res.days.items():
                out.days.setdefault(rel, set()).update(days)
            out.quarantine.extend(res.quarantine)
            out.files.extend(res.files)
            out.bytes_read += res.bytes_read
            done += res.bytes_read
            if progress and time.monotonic() - last > every_s:
                last = time.monotonic()
                progress(
                    f"transcripts: {done / 1e6:.0f}/{total / 1e6:.0f} MB of {len(jobs)} new or changed files"
                )
    return out


def _count_row(f: _FileResult) -> tuple[dict, PieceStats]:
    """(file count row, consumed stats) of a file read this run (appended: added to what was consumed
    before)."""
    base = f.appended_to or {}
    consumed = PieceStats(
        lines_read=f.lines_consumed,
        calls=base.get("calls", 0) + f.body.calls,
        other_entries=base.get("other_entries", 0) + f.body.other_entries,
        skipped_by_rule=base.get("skipped_by_rule", 0) + f.body.skipped_by_rule,
        quarantined=base.get("quarantined", 0) + f.body.quarantined,
    )
    row = {
        "source": SOURCE,
        "source_file": f.tf.rel,
        "lines_read": consumed.lines_read + f.tail.lines_read,
        "calls": consumed.calls + f.tail.calls,
        "other_entries": consumed.other_entries + f.tail.other_entries,
        "skipped_by_rule": consumed.skipped_by_rule + f.tail.skipped_by_rule,
        "quarantined": consumed.quarantined + f.tail.quarantined,
    }
    return row, consumed


def _manifest_entry(f: _FileResult, consumed: PieceStats, days: list) -> dict:
    base = f.appended_to or {}
    fork = f.body.is_fork if f.body.is_fork is not None else base.get("is_fork")
    return {
        "source_file": f.tf.rel,
        "agent_id": f.tf.agent_id,
        "name_session_id": f.tf.session_id,
        "session_id": f.session_id,
        "size": f.size,
        "mtime_ns": f.tf.mtime_ns,
        "inode": f.tf.inode,
        "bytes_consumed": f.bytes_consumed,
        "lines_consumed": f.lines_consumed,
        "head_hash": f.head_hash,
        "tail_hash": f.tail_hash,
        "calls": consumed.calls,
        "other_entries": consumed.other_entries,
        "skipped_by_rule": consumed.skipped_by_rule,
        "quarantined": consumed.quarantined,
        "reread": False,
        "is_fork": bool(fork),
        "days": days,
    }


@dataclass
class FilesRead:
    report: ReadReport
    plan: ReadPlan
    bytes_read: int = 0
    files_read: int = 0

    def summary(self) -> dict[str, int]:
        return {**self.plan.summary(), "files_read": self.files_read, "bytes_read": self.bytes_read}


def _earlier_manifest(
    state: SourceState, settings_key: str, full_rebuild: bool, reread: set[str] | None
) -> tuple[pl.DataFrame, str | None]:
    """Start step: (the last run's manifest, empty when everything is read again, and why it is, or None)."""
    manifest = None if full_rebuild else state.manifest(MANIFEST, settings_key)
    why = "full rebuild requested" if full_rebuild else None
    if why is None and state.interrupted():
        why, manifest = "an earlier run stopped while staging", None
    if why is None and manifest is None:
        why = "no manifest from an earlier run"
    if manifest is None:
        state.reset()
        manifest = empty_manifest()
    if reread:
        manifest = manifest.with_columns(
            reread=pl.col("reread") | pl.col("source_file").is_in(sorted(reread))
        )
    return manifest, why


def _planned_removal(plan: ReadPlan, prev: dict[str, dict]) -> Removal:
    """Plan step: what of the staged records goes (files read whole, appended, renamed or vanished)."""
    removal = Removal()
    for tf in plan.full:
        if tf.rel in prev:
            removal.units.add(tf.rel)
            removal.days.update(prev[tf.rel]["days"] or [])
    for tf, e in plan.appended:
        removal.after_line[tf.rel] = e["lines_consumed"]
        removal.days.update(e["days"] or [])
    for tf, e in plan.renamed:
        removal.relabel[e["source_file"]] = tf.rel
        removal.days.update(e["days"] or [])
    for rel in plan.vanished:
        removal.units.add(rel)
        removal.days.update(prev[rel]["days"] or [])
    return removal


def _planned_jobs(plan: ReadPlan, files: list[TranscriptFile]) -> list[_Job]:
    """Plan step: the files to read (appended ones with their manifest entry), in discovery order."""
    jobs = [_Job(tf, e) for tf, e in plan.appended] + [_Job(tf) for tf in plan.full]
    order = {tf.rel: i for i, tf in enumerate(files)}
    jobs.sort(key=lambda j: order[j.tf.rel])
    return jobs


def _drop_unusable(got: _Collected, removal: Removal, prev: dict[str, dict]) -> set[str]:
    """Merge step: files that could not be read, or were appended to but turned out rewritten, lose every
    staged row (and a failed file its new rows); returns the failed files."""
    failed = {f.tf.rel for f in got.files if f.error}
    rewritten = {
        f.tf.rel
        for f in got.files
        if not f.error and f.appended_to is None and f.tf.rel in removal.after_line
    }
    for rel in rewritten | failed:
        removal.after_line.pop(rel, None)
        removal.units.add(rel)
        removal.days.update(got.days.get(rel, set()) | set((prev.get(rel) or {}).get("days") or []))
    removal.drop_new |= failed
    return failed


def _merged_quarantine(
    state: SourceState, removal: Removal, got: _Collected, failed: set[str]
) -> pl.DataFrame:
    """Merge step: the staged quarantine rows that stay, plus this run's (none of a failed file)."""
    quarantine = filter_units(state.quarantine(), removal.units, removal.after_line, removal.relabel)
    new_q = [q for q in got.quarantine if q.height]
    return pl.concat([quarantine, *[q.cast(QUARANTINE) for q in new_q]]).filter(
        ~pl.col("source_file").is_in(sorted(failed))
    )


def _merged_counts(state: SourceState, plan: ReadPlan, got: _Collected) -> tuple[pl.DataFrame, list[dict]]:
    """Merge step: (file counts, manifest entries) of unchanged, renamed and read files."""
    keep = [tf.rel for tf, _ in plan.unchanged]
    counts = [state.file_counts().filter(pl.col("source_file").is_in(keep))]
    entries = [e for _, e in plan.unchanged]
    if plan.renamed:
        moves = {e["source_file"]: tf.rel for tf, e in plan.renamed}
        counts.append(
            state.file_counts()
            .filter(pl.col("source_file").is_in(list(moves)))
            .with_columns(source_file=pl.col("source_file").replace_strict(moves, return_dtype=pl.String))
        )
        entries += [{**e, "source_file": tf.rel} for tf, e in plan.renamed]
    rows = []
    for f in got.files:
        if f.error:
            continue
        row, consumed = _count_row(f)
        rows.append(row)
        old_days = set((f.appended_to or {}).get("days") or [])
        entries.append(_manifest_entry(f, consumed, sorted(old_days | got.days.get(f.tf.rel, set()))))
    file_counts = pl.concat([c.cast(FILE_COUNTS) for c in counts] + [pl.DataFrame(rows, schema=FILE_COUNTS)])
    return file_counts, entries


def _positions(files: list[TranscriptFile]) -> pl.DataFrame:
    """Order step: each discovered file's place (``source_file``, ``_pos``)."""
    order = {tf.rel: i for i, tf in enumerate(files)}
    return pl.DataFrame(
        {"source_file": list(order), "_pos": list(order.values())},
        schema={"source_file": pl.String, "_pos": pl.Int64},
    )


def _in_file_order(frame: pl.DataFrame, pos: pl.DataFrame, by_line: bool = True) -> pl.DataFrame:
    """Order step: rows in the order of the discovered files (then of their lines), unknown files last."""
    out = frame.join(pos, on="source_file", how="left", maintain_order="left")
    return out.sort(["_pos", "line_no"] if by_line else ["_pos"], maintain_order=True, nulls_last=True).drop(
        "_pos"
    )


def _new_manifest(entries: list[dict], quarantine: pl.DataFrame) -> pl.DataFrame:
    """Manifest step: the entries, files with a clock-dependent quarantine row marked to be read again."""
    clock = set(
        quarantine.filter(pl.col("reason").str.starts_with(CLOCK_REASONS[0]))
        .get_column("source_file")
        .to_list()
    )
    new_manifest = pl.DataFrame(entries, schema=MANIFEST) if entries else empty_manifest()
    if clock:
        new_manifest = new_manifest.with_columns(reread=pl.col("source_file").is_in(sorted(clock)))
    return new_manifest


def stage_transcript_files(
    home: Path,
    state: SourceState,
    *,
    settings_key: str = "",
    full_rebuild: bool = False,
    reread: set[str] | None = None,
    progress: Progress | None = None,
    every_s: float = 2.0,
    workers: int = WORKERS,
    unit_bytes: int = UNIT_BYTES,
    now: datetime | None = None,
) -> FilesRead:
    """Bring the staged transcript records of ``home`` up to date, reading only what changed.

    The day store (``state.store``) then holds what a full read would give, by day; the returned report
    names the days whose records changed. ``reread``: files to read again whole whatever their state (a
    rerun of a day from the raw files). ``settings_key``: what the records depend on besides the files
    (the time zone of the days); a manifest written under another key means a full read.

    Steps: plan the reads against the last manifest, read the new and changed files into the day store,
    merge what stays of the staged quarantine and counts with this run's, write the new manifest."""
    now = now or datetime.now(UTC)
    found = discover_transcripts(home)
    manifest, why = _earlier_manifest(state, settings_key, full_rebuild, reread)
    plan = plan_reads(found.files, manifest)
    prev = {row["source_file"]: row for row in manifest.iter_rows(named=True)}
    removal = _planned_removal(plan, prev)

    state.begin()
    store = state.store
    got = _read_jobs(
        _planned_jobs(plan, found.files),
        store.add,
        tz=state.tz,
        progress=progress,
        every_s=every_s,
        workers=workers,
        unit_bytes=unit_bytes,
        now=now,
    )

    problems = list(found.problems) + [f"{f.tf.rel}: {f.error}" for f in got.files if f.error]
    failed = _drop_unusable(got, removal, prev)
    touched = store.finish(removal)
    pos = _positions(found.files)
    quarantine = _in_file_order(_merged_quarantine(state, removal, got, failed), pos)
    file_counts, entries = _merged_counts(state, plan, got)
    file_counts = _in_file_order(file_counts, pos, by_line=False)

    state.save(quarantine, file_counts, problems)
    state.write_manifest(_new_manifest(entries, quarantine), MANIFEST, settings_key)
    state.end()
    report = ReadReport(touched=touched, problems=problems, mode=f"full: {why}" if why else "incremental")
    read = FilesRead(report, plan, got.bytes_read, len([f for f in got.files if not f.error]))
    report.summary = read.summary()
    return read


def read_transcripts(
    home: Path,
    progress: Progress | None = None,
    every_s: float = 2.0,
    now: datetime | None = None,
    unit_bytes: int = UNIT_BYTES,
    workers: int = WORKERS,
) -> SourceBatch:
    """Parse all live, topic, reset and deleted transcripts under ``home`` (never .bak copies), in memory
    (no staging): for tests and small homes."""
    now = now or datetime.now(UTC)
    found = discover_transcripts(home)
    calls: list[pl.DataFrame] = []
    got = _read_jobs(
        [_Job(tf) for tf in found.files],
        calls.append,
        tz=None,
        progress=progress,
        every_s=every_s,
        workers=workers,
        unit_bytes=unit_bytes,
        now=now,
    )
    problems = list(found.problems) + [f"{f.tf.rel}: {f.error}" for f in got.files if f.error]
    failed = {f.tf.rel for f in got.files if f.error}
    rows = [_count_row(f)[0] for f in got.files if not f.error]
    pos = _positions(found.files)

    def ordered(frame: pl.DataFrame, by_line: bool = True) -> pl.DataFrame:
        return _in_file_order(frame.filter(~pl.col("source_file").is_in(sorted(failed))), pos, by_line)

    records = pl.concat([c.cast(CALL_RECORDS) for c in calls]) if calls else pl.DataFrame(schema=CALL_RECORDS)
    q = [x.cast(QUARANTINE) for x in got.quarantine if x.height]
    return SourceBatch(
        records=ordered(records),
        quarantine=ordered(pl.concat(q)) if q else pl.DataFrame(schema=QUARANTINE),
        file_counts=ordered(pl.DataFrame(rows, schema=FILE_COUNTS), by_line=False),
        problems=problems,
    )


def with_line_excerpts(home: Path, rows: pl.DataFrame) -> pl.DataFrame:
    """Fill ``excerpt`` of quarantine rows that point at a transcript line (re-reads only those files)."""
    from mc_pipeline.ingest.readers.transcripts import excerpt

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
