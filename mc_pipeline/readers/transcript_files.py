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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import polars as pl

from mc_pipeline.readers.batch import SourceBatch
from mc_pipeline.readers.home import TranscriptFile, discover_transcripts
from mc_pipeline.readers.manifest import (
    CLOCK_REASONS,
    FINGERPRINT_BYTES,
    MANIFEST,
    ReadPlan,
    batch_digest,
    empty_manifest,
    fingerprint,
    plan_reads,
    read_manifest,
    write_manifest,
)
from mc_pipeline.readers.transcripts import SOURCE, Piece, PieceStats, parse_pieces
from mc_pipeline.readers.zstd_frames import ZstdError, stream_lines
from mc_pipeline.schemas import CALL_RECORDS, FILE_COUNTS, QUARANTINE

Progress = Callable[[str], None]

#: Bytes of transcript parsed per Polars pass (and the most a single read holds in memory).
UNIT_BYTES = 16 * 1024 * 1024
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


def _add(into: PieceStats, st: PieceStats) -> None:
    into.lines_read += st.lines_read
    into.calls += st.calls
    into.other_entries += st.other_entries
    into.skipped_by_rule += st.skipped_by_rule
    into.quarantined += st.quarantined


class _UnitReader:
    """Reads and parses the files of one unit (runs in a worker thread)."""

    def __init__(self, now: datetime, unit_bytes: int):
        self.now = now
        self.unit_bytes = unit_bytes
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
                res = _FileResult(tf, tf.session_id, 0, 0, "", "", tf.size, error=f"cannot read ({exc.strerror or exc})")
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
                        nl = block.find(b"\n")
                        res.session_id = _header_session_id(block if nl < 0 else block[:nl]) or tf.session_id
                    n = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
                    piece = Piece(block, rel=tf.rel, agent_id=tf.agent_id, session_id=res.session_id,
                                  first_line=res.lines_consumed + 1, at_eof=True, n_lines=n)  # fmt: skip
                    res.lines_consumed += n
                    self.queue(piece, res.body)
            except ZstdError as exc:
                self.flush()
                res.lines_consumed += 1  # the unreadable rest, accounted as one quarantined line
                res.body.quarantined += 1
                self.out.quarantine.append(pl.DataFrame(
                    [{"source": SOURCE, "source_file": tf.rel, "line_no": None,
                      "reason": f"compressed archive does not decompress: {exc}", "excerpt": None}],
                    schema=QUARANTINE))  # fmt: skip
        res.head_hash = fingerprint(head)
        res.tail_hash = fingerprint(head)
        self.out.bytes_read += tf.size
        return res

    def read_file(self, job: _Job) -> _FileResult:
        """Queue one file's complete lines (pieces of at most ``unit_bytes``), then its partial last line."""
        tf, entry = job.tf, job.entry
        if tf.compressed:
            return self.read_compressed(tf)
        fp = FINGERPRINT_BYTES
        with open(tf.path, "rb") as fh:
            start, lines, sid, head, recent = 0, 0, None, b"", b""
            if entry is not None:  # appended: check that what was read before is still there
                consumed = entry["bytes_consumed"]
                head = fh.read(min(fp, consumed))
                fh.seek(max(0, consumed - fp))
                recent = fh.read(consumed - max(0, consumed - fp))
                if fingerprint(head) == entry["head_hash"] and fingerprint(recent) == entry["tail_hash"]:
                    start, lines, sid = consumed, entry["lines_consumed"], entry["session_id"]
                else:  # rewritten in place: read it whole
                    entry, head, recent = None, b"", b""
                fh.seek(start)
            res = _FileResult(tf, sid or tf.session_id, start, lines, "", "", tf.size, appended_to=entry)
            pos, buf = start, b""
            while True:
                block = fh.read(self.unit_bytes)
                if not block:
                    break
                if pos == 0:
                    nl = block.find(b"\n")
                    res.session_id = _header_session_id(block if nl < 0 else block[:nl]) or tf.session_id
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
                piece = Piece(body, rel=tf.rel, agent_id=tf.agent_id, session_id=res.session_id,
                              first_line=res.lines_consumed + 1, at_eof=False, n_lines=n)  # fmt: skip
                res.bytes_consumed += len(body)
                res.lines_consumed += n
                self.queue(piece, res.body)
            if buf:
                tail = Piece(buf, rel=tf.rel, agent_id=tf.agent_id, session_id=res.session_id,
                             first_line=res.lines_consumed + 1, at_eof=True, n_lines=1)  # fmt: skip
                self.queue(tail, res.tail)
        # size stays the one seen at discovery: bytes written since make the next run append, not re-read
        res.head_hash = fingerprint(head)
        res.tail_hash = fingerprint(recent)
        self.out.bytes_read += pos - start
        return res


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
class IncrementalRead:
    batch: SourceBatch
    manifest: pl.DataFrame  # MANIFEST
    plan: ReadPlan
    bytes_read: int
    files_read: int
    mode: str = "full"  # "incremental", or "full: <why>"

    def summary(self) -> dict[str, int]:
        return {**self.plan.summary(), "files_read": self.files_read, "bytes_read": self.bytes_read}


def _previous_rows(frame: pl.DataFrame, plan: ReadPlan) -> pl.DataFrame:
    """Rows of the last batch that stay: unchanged files, renamed files (relabelled), the complete
    lines of appended files (rows of a former partial last line are dropped: it is read again)."""
    keep_all = [tf.rel for tf, _ in plan.unchanged]
    if not frame.height:
        return frame
    parts = [frame.filter(pl.col("source_file").is_in(keep_all))]
    if plan.renamed:
        moves = {e["source_file"]: tf.rel for tf, e in plan.renamed}
        parts.append(
            frame.filter(pl.col("source_file").is_in(list(moves))).with_columns(
                source_file=pl.col("source_file").replace_strict(moves, return_dtype=pl.String)
            )
        )
    if plan.appended and "line_no" in frame.columns:
        upto = pl.DataFrame(
            {"source_file": [tf.rel for tf, _ in plan.appended], "_upto": [e["lines_consumed"] for _, e in plan.appended]},
            schema={"source_file": pl.String, "_upto": pl.Int64},
        )
        parts.append(
            frame.join(upto, on="source_file", how="inner", maintain_order="left")
            .filter(pl.col("line_no").is_null() | (pl.col("line_no") <= pl.col("_upto")))
            .drop("_upto")
        )
    return pl.concat(parts)


def read_transcripts_incremental(
    home: Path,
    previous: SourceBatch | None = None,
    manifest: pl.DataFrame | None = None,
    *,
    progress: Progress | None = None,
    every_s: float = 2.0,
    workers: int = WORKERS,
    unit_bytes: int = UNIT_BYTES,
    now: datetime | None = None,
) -> IncrementalRead:
    """The transcript batch of ``home`` as a full read would give it, reading only what changed."""
    found = discover_transcripts(home)
    now = now or datetime.now(timezone.utc)
    if previous is None or manifest is None:
        previous, manifest = SourceBatch.empty(), empty_manifest()
    plan = plan_reads(found.files, manifest)
    # an appended file whose former partial line is gone (shrunk between runs) was planned "full"
    jobs = [_Job(tf, e) for tf, e in plan.appended] + [_Job(tf) for tf in plan.full]
    order = {tf.rel: i for i, tf in enumerate(found.files)}
    jobs.sort(key=lambda j: order[j.tf.rel])
    units = _units(jobs, unit_bytes)
    total = sum(j.tf.size for j in jobs)

    results: list[_UnitResult] = []
    done, last = 0, time.monotonic()
    if units:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(units)))) as pool:
            for res in pool.map(lambda u: _UnitReader(now, unit_bytes).run(u), units):
                results.append(res)
                done += res.bytes_read
                if progress and time.monotonic() - last > every_s:
                    last = time.monotonic()
                    progress(f"transcripts: {done / 1e6:.0f}/{total / 1e6:.0f} MB of {len(jobs)} new or changed files")

    problems = list(found.problems)
    file_results = [f for r in results for f in r.files]
    failed = {f.tf.rel for f in file_results if f.error}
    for f in file_results:
        if f.error:
            problems.append(f"{f.tf.rel}: {f.error}")
    # an appended file that turned out rewritten was read whole: none of its old rows stay
    rewritten = {f.tf.rel for f in file_results if not f.error and f.appended_to is None}
    plan.appended = [(tf, e) for tf, e in plan.appended if tf.rel not in rewritten and tf.rel not in failed]

    if not jobs and not plan.renamed and not plan.vanished and len(plan.unchanged) == previous.file_counts.height:
        # nothing new: the last batch is the answer (no copies, no re-sorting)
        return IncrementalRead(
            batch=SourceBatch(previous.records, previous.quarantine, previous.file_counts, problems),
            manifest=manifest.filter(pl.col("source_file").is_in([tf.rel for tf, _ in plan.unchanged])),
            plan=plan,
            bytes_read=0,
            files_read=0,
        )

    new_calls = [c for r in results for c in r.calls]
    new_q = [q for r in results for q in r.quarantine]
    records = pl.concat([_previous_rows(previous.records, plan)] + new_calls) if new_calls else _previous_rows(previous.records, plan)
    quarantine = pl.concat([_previous_rows(previous.quarantine, plan)] + new_q) if new_q else _previous_rows(previous.quarantine, plan)
    if failed:
        records = records.filter(~pl.col("source_file").is_in(list(failed)))
        quarantine = quarantine.filter(~pl.col("source_file").is_in(list(failed)))

    # per-file counts and the new manifest
    kept_counts = previous.file_counts.filter(pl.col("source_file").is_in([tf.rel for tf, _ in plan.unchanged]))
    if plan.renamed:
        moves = {e["source_file"]: tf.rel for tf, e in plan.renamed}
        kept_counts = pl.concat([
            kept_counts,
            previous.file_counts.filter(pl.col("source_file").is_in(list(moves))).with_columns(
                source_file=pl.col("source_file").replace_strict(moves, return_dtype=pl.String)
            ),
        ])
    rows, entries = [], []
    for tf, e in plan.unchanged:
        entries.append(e)
    for tf, e in plan.renamed:
        entries.append({**e, "source_file": tf.rel})
    for f in file_results:
        if f.error:
            continue
        base = f.appended_to or {}
        consumed = PieceStats(
            lines_read=f.lines_consumed,
            calls=base.get("calls", 0) + f.body.calls,
            other_entries=base.get("other_entries", 0) + f.body.other_entries,
            skipped_by_rule=base.get("skipped_by_rule", 0) + f.body.skipped_by_rule,
            quarantined=base.get("quarantined", 0) + f.body.quarantined,
        )
        rows.append({
            "source": SOURCE, "source_file": f.tf.rel,
            "lines_read": consumed.lines_read + f.tail.lines_read,
            "calls": consumed.calls + f.tail.calls,
            "other_entries": consumed.other_entries + f.tail.other_entries,
            "skipped_by_rule": consumed.skipped_by_rule + f.tail.skipped_by_rule,
            "quarantined": consumed.quarantined + f.tail.quarantined,
        })  # fmt: skip
        entries.append({
            "source_file": f.tf.rel, "agent_id": f.tf.agent_id, "name_session_id": f.tf.session_id,
            "session_id": f.session_id, "size": f.size, "mtime_ns": f.tf.mtime_ns, "inode": f.tf.inode,
            "bytes_consumed": f.bytes_consumed, "lines_consumed": f.lines_consumed,
            "head_hash": f.head_hash, "tail_hash": f.tail_hash,
            "calls": consumed.calls, "other_entries": consumed.other_entries,
            "skipped_by_rule": consumed.skipped_by_rule, "quarantined": consumed.quarantined, "reread": False,
        })  # fmt: skip
    file_counts = pl.concat([kept_counts.cast(FILE_COUNTS), pl.DataFrame(rows, schema=FILE_COUNTS)])

    # one order, whatever was read when: discovery order of files, then line order
    pos = pl.DataFrame(
        {"source_file": list(order), "_pos": list(order.values())}, schema={"source_file": pl.String, "_pos": pl.Int64}
    )

    def ordered(frame: pl.DataFrame, by_line: bool = True) -> pl.DataFrame:
        out = frame.join(pos, on="source_file", how="left", maintain_order="left")
        return out.sort(["_pos", "line_no"] if by_line else ["_pos"], maintain_order=True, nulls_last=True).drop("_pos")

    records = ordered(records.cast(CALL_RECORDS))
    quarantine = ordered(quarantine.cast(QUARANTINE))
    file_counts = ordered(file_counts, by_line=False)

    clock = (
        quarantine.filter(pl.col("reason").str.starts_with(CLOCK_REASONS[0]))
        .get_column("source_file")
        .unique()
        .to_list()
    )
    new_manifest = pl.DataFrame(entries, schema=MANIFEST) if entries else empty_manifest()
    if clock:
        new_manifest = new_manifest.with_columns(reread=pl.col("source_file").is_in(clock))
    return IncrementalRead(
        batch=SourceBatch(records=records, quarantine=quarantine, file_counts=file_counts, problems=problems),
        manifest=new_manifest,
        plan=plan,
        bytes_read=sum(r.bytes_read for r in results),
        files_read=len([f for f in file_results if not f.error]),
    )


def read_transcripts_since_last_run(
    home: Path,
    staging: Path,
    load_previous: Callable[[], SourceBatch],
    *,
    full_rebuild: bool = False,
    progress: Progress | None = None,
    **kw,
) -> IncrementalRead:
    """Read what changed since the batch staged in ``staging`` (its manifest beside it); write the new manifest.

    The manifest is written before the batch is staged (the IO manager stages it after the asset
    returns); it carries a digest of its batch, so a batch that was never staged is noticed next run and
    answered with a full rebuild. ``full_rebuild`` ignores the manifest and reads everything.
    """
    manifest, digest = read_manifest(staging)
    previous, why = None, "full rebuild requested" if full_rebuild else None
    if why is None and (digest is None or manifest.height == 0):
        why = "no manifest from an earlier run"
    if why is None:
        previous = load_previous()
        if batch_digest(previous.records, previous.quarantine, previous.file_counts) != digest:
            previous, why = None, "the staged batch does not match the manifest (an earlier run stopped early?)"
    read = read_transcripts_incremental(
        home, previous, manifest if previous is not None else None, progress=progress, **kw
    )
    read.mode = f"full: {why}" if why else "incremental"
    b = read.batch
    write_manifest(read.manifest, staging, batch_digest(b.records, b.quarantine, b.file_counts))
    return read


def read_transcripts(home: Path, progress: Progress | None = None, every_s: float = 2.0) -> SourceBatch:
    """Parse all live, topic, reset and deleted transcripts under ``home`` (never .bak copies)."""
    return read_transcripts_incremental(home, progress=progress, every_s=every_s).batch


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
