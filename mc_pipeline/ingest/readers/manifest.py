"""What the last run read of each transcript file, so the next run reads only what is new.

One row per transcript file: where it is, how big it was, its inode and mtime, how many bytes and lines
of it are consumed (up to its last complete line), the session id its header gave, two fingerprints
(the first and the last KiB before the consumed offset) and the line counts of the consumed part.

``plan_reads`` compares a fresh discovery with the manifest and says, per file, what to do:

- ``unchanged``: same inode, size and mtime: its rows from the last run are kept as they are;
- ``appended``: same inode, grown: read from the consumed offset (the fingerprints are checked first;
  a file rewritten in place is read again whole); rows of its former partial last line are replaced;
- ``renamed``: a file that vanished reappears under another name with the same inode, size and mtime
  (``x.jsonl`` -> ``x.jsonl.reset.<ts>``): its rows are kept, relabelled with the new ``source_file``;
- ``full``: new, shrunk, replaced or otherwise changed: read whole;
- ``vanished``: gone: its rows are dropped.

Files whose rows depend on the clock (a call time "in the future" is quarantined) are always re-read,
so an incremental result stays identical to a full rebuild.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mc_pipeline.ingest.readers.home import TranscriptFile
from mc_pipeline.tables import storage

MANIFEST_FILE = "manifest.parquet"
MANIFEST_VERSION = "2"
#: Bytes fingerprinted at the start of a file and just before its consumed offset.
FINGERPRINT_BYTES = 1024
#: Quarantine reasons that depend on when the run happens: such files are re-read every run.
CLOCK_REASONS = ("no plausible timestamp",)

MANIFEST: dict[str, pl.DataType] = {
    "source_file": pl.String(),  # relative to the OpenClaw home
    "agent_id": pl.String(),
    "name_session_id": pl.String(),  # from the file name
    "session_id": pl.String(),  # from the header line when there is one, else the file name's
    "size": pl.Int64(),
    "mtime_ns": pl.Int64(),
    "inode": pl.Int64(),
    "bytes_consumed": pl.Int64(),  # offset just after the last complete line read
    "lines_consumed": pl.Int64(),  # complete lines up to that offset
    "head_hash": pl.String(),
    "tail_hash": pl.String(),
    # line counts of the consumed (complete) lines; a partial last line is counted again next run
    "calls": pl.Int64(),
    "other_entries": pl.Int64(),
    "skipped_by_rule": pl.Int64(),
    "quarantined": pl.Int64(),
    "reread": pl.Boolean(),  # re-read every run (clock-dependent quarantine)
    "is_fork": pl.Boolean(),  # its session header names a parentSession
    "days": pl.List(pl.Date()),  # the days (reporting zone) its call records are on
}


def fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def batch_digest(records: pl.DataFrame, quarantine: pl.DataFrame, file_counts: pl.DataFrame) -> str:
    """A cheap identity of a staged batch, to notice a manifest that does not match its batch."""
    counts = int(file_counts.sort("source_file").hash_rows(seed=11).sum()) if file_counts.height else 0
    return f"{records.height}:{quarantine.height}:{file_counts.height}:{counts}"


def empty_manifest() -> pl.DataFrame:
    return pl.DataFrame(schema=MANIFEST)


def read_manifest(folder: Path) -> tuple[pl.DataFrame, str | None]:
    """(manifest, batch digest it was written with); an empty manifest when missing or unreadable."""
    path = folder / MANIFEST_FILE
    if not path.exists():
        return empty_manifest(), None
    try:
        meta = pl.read_parquet_metadata(path)
        if meta.get("mc_pipeline.manifest_version") != MANIFEST_VERSION:
            return empty_manifest(), None
        frame = pl.read_parquet(path)
        return frame.select([pl.col(c).cast(t) for c, t in MANIFEST.items()]), meta.get(
            "mc_pipeline.batch_digest"
        )
    except Exception:  # noqa: BLE001 - an unreadable manifest only means a full rebuild
        return empty_manifest(), None


def write_manifest(manifest: pl.DataFrame, folder: Path, digest: str) -> None:
    with storage.atomic_path(folder / MANIFEST_FILE) as tmp:
        manifest.select([pl.col(c).cast(t) for c, t in MANIFEST.items()]).write_parquet(
            tmp,
            compression="zstd",
            metadata={"mc_pipeline.manifest_version": MANIFEST_VERSION, "mc_pipeline.batch_digest": digest},
        )


@dataclass
class ReadPlan:
    unchanged: list[tuple[TranscriptFile, dict]] = field(default_factory=list)
    appended: list[tuple[TranscriptFile, dict]] = field(default_factory=list)
    renamed: list[tuple[TranscriptFile, dict]] = field(default_factory=list)  # entry holds the old name
    full: list[TranscriptFile] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "files_unchanged": len(self.unchanged),
            "files_appended": len(self.appended),
            "files_renamed": len(self.renamed),
            "files_new_or_changed": len(self.full),
            "files_vanished": len(self.vanished),
        }


def plan_reads(files: list[TranscriptFile], manifest: pl.DataFrame) -> ReadPlan:
    """Per discovered file, what this run must read (see the module doc)."""
    plan = ReadPlan()
    entries = {row["source_file"]: row for row in manifest.iter_rows(named=True)}
    present = {tf.rel: tf for tf in files}
    # entries whose file is gone or was replaced by another inode may have been renamed
    movable: dict[tuple, dict] = {}
    for rel, e in entries.items():
        now = present.get(rel)
        if now is None or now.inode != e["inode"]:
            movable.setdefault((e["inode"], e["size"], e["mtime_ns"], e["agent_id"]), e)
    moved_from: set[str] = set()
    for tf in files:
        e = entries.get(tf.rel)
        if e is not None and e["inode"] == tf.inode and not e["reread"]:
            if tf.size == e["size"] and tf.mtime_ns == e["mtime_ns"]:
                plan.unchanged.append((tf, e))
                continue
            if tf.size > e["size"] and tf.size >= e["bytes_consumed"] and not tf.compressed:
                plan.appended.append((tf, e))
                continue
            plan.full.append(tf)
            continue
        old = movable.get((tf.inode, tf.size, tf.mtime_ns, tf.agent_id))
        if (
            old is not None
            and not old["reread"]
            and old["source_file"] not in moved_from
            and old["name_session_id"] == tf.session_id
        ):
            moved_from.add(old["source_file"])
            plan.renamed.append((tf, old))
            continue
        plan.full.append(tf)
    plan.vanished = sorted(rel for rel in entries if rel not in present and rel not in moved_from)
    return plan
