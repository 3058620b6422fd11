"""Finding the files of an OpenClaw home: which transcripts count, which never do
(docs/openclaw-formats.md#home-layout).

Counted: ``<sid>.jsonl``, ``<sid>-topic-<id>.jsonl``, their ``.reset.<ts>``/``.deleted.<ts>`` archives, and
since OpenClaw 2026.8 the published archive copies ``<sid>.jsonl.<reason>.<ts>.<generation>[.zst]`` (a
``.zst`` file is zstd-compressed JSONL; a copy of an agent database archive row is the same calls, counted
once by :mod:`mc_pipeline.calls.dedupe`). Never: ``.bak.<ts>`` copies, ``.lock`` files, ``sessions.json``,
half-written temporary files, the ``cold/`` folder (read through its database rows,
:mod:`mc_pipeline.ingest.readers.agent_db`) and ``agents/<id>/session-sqlite-import-archive/`` (copies
``openclaw doctor`` already imported).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: `<sessionId>.jsonl`, `<sessionId>-topic-<id>.jsonl`, and their `.reset.<ts>` / `.deleted.<ts>` archives,
#: optionally with a 32-hex generation and `.zst` (2026.8+ published copies of database archive rows).
_TRANSCRIPT = re.compile(
    r"^(?P<stem>.+?)\.jsonl(?:\.(?P<archive>reset|deleted)\.(?P<ts>\d[\dT:\-]*(?:\.\d+)?Z?)"
    r"(?:\.(?P<gen>[0-9a-f]{32}))?(?P<zst>\.zst)?)?$"
)
_BACKUP = re.compile(r"\.jsonl\.bak\.")


@dataclass(frozen=True)
class TranscriptFile:
    path: Path  # absolute, for reading only
    rel: str  # relative to the home, the only form that leaves the reader
    agent_id: str
    session_id: str  # from the file name; the session header may refine it
    kind: str  # live | topic | reset | deleted
    size: int
    mtime_ns: int
    inode: int
    compressed: bool = False  # a `.zst` archive: zstd-compressed JSONL, read whole


@dataclass
class Discovery:
    files: list[TranscriptFile]
    skipped: dict[str, int]  # reason -> number of files passed over on purpose
    problems: list[str]  # unreadable folders, loops: named with why


def _session_id(stem: str) -> str:
    return stem.split("-topic-", 1)[0]


def classify_name(name: str) -> tuple[str, str] | None:
    """(kind, session_id) for a transcript file name that counts, None for one that never does."""
    if _BACKUP.search(name) or name.endswith(".lock") or name.startswith("sessions.json"):
        return None
    m = _TRANSCRIPT.match(name)
    if not m:
        return None
    stem = m.group("stem")
    kind = m.group("archive") or ("topic" if "-topic-" in stem else "live")
    return kind, _session_id(stem)


def is_compressed(name: str) -> bool:
    return name.endswith(".zst")


def _skip_reason(name: str) -> str:
    if _BACKUP.search(name):
        return "backup copy (.bak)"
    if name.endswith(".lock"):
        return "lock file"
    if name.startswith("sessions.json"):
        return "session index"
    return "not a transcript"


def discover_transcripts(home: Path) -> Discovery:
    """Every counted transcript under ``home/agents/*/sessions``, sorted by relative path."""
    files: list[TranscriptFile] = []
    skipped: dict[str, int] = {}
    problems: list[str] = []
    agents_dir = home / "agents"
    if not agents_dir.is_dir():
        return Discovery(files, skipped, problems)
    try:
        agents = sorted(p for p in agents_dir.iterdir() if p.is_dir())
    except OSError as exc:
        return Discovery(files, skipped, [f"agents/: cannot list ({exc.strerror or exc})"])
    for agent in agents:
        sessions = agent / "sessions"
        if not sessions.is_dir():
            if sessions.is_symlink() or sessions.exists():  # a loop, a dangling link, a file
                problems.append(
                    f"agents/{agent.name}/sessions: not a folder (a broken link or a file); not read"
                )
            continue
        try:
            entries = sorted(os.scandir(sessions), key=lambda e: e.name)
        except OSError as exc:
            problems.append(f"agents/{agent.name}/sessions: cannot list ({exc.strerror or exc})")
            continue
        for entry in entries:
            rel = f"agents/{agent.name}/sessions/{entry.name}"
            kind_sid = classify_name(entry.name)
            if kind_sid is None:
                if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                    reason = _skip_reason(entry.name)
                    skipped[reason] = skipped.get(reason, 0) + 1
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:  # dangling link, symlink loop, permission
                problems.append(f"{rel}: cannot stat ({exc.strerror or exc})")
                continue
            if not entry.is_file(follow_symlinks=True):  # a folder, FIFO or socket named like a transcript
                skipped["not a regular file"] = skipped.get("not a regular file", 0) + 1
                problems.append(f"{rel}: not a regular file (a folder, FIFO or socket); not read")
                continue
            kind, sid = kind_sid
            files.append(
                TranscriptFile(
                    path=Path(entry.path),
                    rel=rel,
                    agent_id=agent.name,
                    session_id=sid,
                    kind=kind,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    inode=st.st_ino,
                    compressed=is_compressed(entry.name),
                )
            )
    return Discovery(files, skipped, problems)


# -- OpenClaw 2026.8+ databases -----------------------------------------------------------------------------
STORE_NAME = "openclaw-agent.sqlite"
STATE_DB = "state/openclaw.sqlite"


@dataclass(frozen=True)
class AgentDatabase:
    agent_id: str
    path: Path  # absolute, for reading only
    rel: str  # relative to the home, the only form that leaves the reader

    @property
    def sessions_dir(self) -> Path:
        """Where OpenClaw publishes archives and keeps cold files: ``agents/<id>/sessions`` beside
        ``agent/``."""
        return self.path.parent.parent / "sessions"


#: ``caller`` values naming an agent: ``agent:<id>`` (OpenClaw's session keys start so) ...
_AGENT_CALLER = r"^agent:([A-Za-z0-9_.-]+)"


def known_agents(home: Path) -> list[str]:
    """The agent folders of a home (``agents/<id>``), sorted; none when it cannot be listed."""
    try:
        return sorted(p.name for p in (home / "agents").iterdir() if p.is_dir())
    except OSError:
        return []


def agent_of_caller(caller, agents: list[str]):
    """A Polars expression: the agent a user-built row names in its ``caller`` (or ``agent``) field,
    ``agent:<id>[:...]`` or the exact name of one of ``agents``; null when it names none (reported as
    ``unknown``). A caller such as ``cron``, ``script`` or a person's name is never taken for an agent."""
    import polars as pl

    text = caller.str.strip_chars()
    return (
        pl.when(text.str.contains(_AGENT_CALLER))
        .then(text.str.extract(_AGENT_CALLER, 1))
        .when(text.is_in(agents))
        .then(text)
        .otherwise(pl.lit(None, pl.String))
    )


def discover_agent_dbs(home: Path, registry: list[tuple[str, Path]] | None = None) -> list[AgentDatabase]:
    """Every agent database: ``agents/*/agent/openclaw-agent.sqlite`` and those the state database lists."""
    found: dict[Path, AgentDatabase] = {}
    agents = home / "agents"
    if agents.is_dir():
        for agent in sorted(p for p in agents.iterdir() if p.is_dir()):
            path = agent / "agent" / STORE_NAME
            if path.is_file():
                found[path.resolve()] = AgentDatabase(
                    agent.name, path, f"agents/{agent.name}/agent/{STORE_NAME}"
                )
    for agent_id, path in registry or []:
        try:
            real = path.resolve()
        except OSError:
            continue
        if real in found or not path.is_file():
            continue
        try:
            rel = real.relative_to(home.resolve()).as_posix()
        except ValueError:
            rel = f"db:{agent_id}/{path.name}"  # outside the home: named without the machine's path
        found[real] = AgentDatabase(agent_id, path, rel)
    return sorted(found.values(), key=lambda d: d.rel)


def watched_files(home: Path, registry: list[tuple[str, Path]] | None = None) -> dict[str, list[int] | None]:
    """What changes when OpenClaw writes its databases, by path relative to the home: the state database,
    every agent database and their ``-wal``/``-journal`` (size, mtime, inode), and every cold archive file
    (``agents/*/sessions/cold/``). ``stat`` calls only: for the sensor and the CLI's no-op check."""
    out: dict[str, list[int] | None] = {}

    def stat(rel: str, path: Path) -> None:
        try:
            st = os.stat(path)
            out[rel] = [st.st_size, st.st_mtime_ns, st.st_ino]
        except OSError:
            out[rel] = None

    for suffix in ("", "-wal", "-journal"):
        stat(STATE_DB + suffix, home / (STATE_DB + suffix))
    for db in discover_agent_dbs(home, registry):
        for suffix in ("", "-wal", "-journal"):
            stat(db.rel + suffix, db.path.with_name(db.path.name + suffix))
    agents = home / "agents"
    if agents.is_dir():
        for cold in sorted(agents.glob("*/sessions/cold")):
            try:
                names = sorted(os.listdir(cold))
            except OSError:
                continue
            for name in names:
                stat(cold.relative_to(home).as_posix() + "/" + name, cold / name)
    return {k: v for k, v in out.items() if v is not None}


def last_writes(
    home: Path, interactions_db: Path, model_usage_log: Path, registry: list[tuple[str, Path]] | None = None
) -> dict[str, datetime | None]:
    """Newest modification time of each live source's files (``stat`` only), by ``schemas.SOURCES`` name:
    the transcript files, the agent databases with their ``-wal`` (``transcript_store``), the user's
    ``interactions.db`` (+ ``-wal``) and ``model-usage.jsonl``. Archives and cold archives are not live:
    an old session archived today holds old calls."""

    def newest(paths) -> datetime | None:
        times = []
        for p in paths:
            try:
                times.append(os.stat(p).st_mtime)
            except OSError:
                continue
        return datetime.fromtimestamp(max(times), tz=UTC) if times else None

    dbs = [
        q
        for db in discover_agent_dbs(home, registry)
        for q in (db.path, db.path.with_name(db.path.name + "-wal"))
    ]
    return {
        "transcript": newest(f.path for f in discover_transcripts(home).files),
        "transcript_store": newest(dbs),
        "interactions_db": newest(
            [interactions_db, interactions_db.with_name(interactions_db.name + "-wal")]
        ),
        "model_usage_log": newest([model_usage_log]),
    }
