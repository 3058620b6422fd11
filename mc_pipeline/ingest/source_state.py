"""A digest of each raw source's state from ``stat`` calls only (no file is read): the data version of the
observed source assets, shown in the Dagster UI as how fresh the inputs are."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mc_pipeline.ingest.readers.home import discover_transcripts, watched_files
from mc_pipeline.runtime.config import Config


def _stat(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _digest(obj: object) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=10).hexdigest()


def digests(config: Config) -> dict[str, str]:
    """Observed source asset name -> digest of its files' sizes, mtimes and inodes."""
    from mc_pipeline.ingest.readers.state_db import read_state_db

    home = config.home
    agents = sorted(home.glob("agents/*")) if (home / "agents").is_dir() else []
    found = discover_transcripts(home)
    dbs = watched_files(home, read_state_db(home).agent_dbs) if home.is_dir() else {}
    state = {k: v for k, v in dbs.items() if k.startswith("state/")}
    agent_dbs = {k: v for k, v in dbs.items() if not k.startswith("state/")}
    return {
        "openclaw_transcripts": _digest([(f.rel, f.size, f.mtime_ns, f.inode) for f in found.files]),
        "openclaw_session_index": _digest(
            [(a.name, _stat(a / "sessions" / "sessions.json")) for a in agents]
        ),
        "openclaw_auth_profiles": _digest(
            [(a.name, _stat(a / "agent" / "auth-profiles.json")) for a in agents]
        ),
        "openclaw_transcript_store": _digest(agent_dbs),
        "openclaw_state_db": _digest(state),
        "openclaw_interactions_db": _digest(
            [_stat(Path(f"{config.interactions_db_path}{s}")) for s in ("", "-wal")]
        ),
        "openclaw_model_usage_log": _digest(_stat(config.model_usage_log_path)),
    }


def file_states(home: Path) -> dict[str, list[int]]:
    """Relative path -> [size, mtime_ns] of every counted transcript and of OpenClaw's databases (state and
    agent databases with their ``-wal``, cold archive files): a listing and stats, plus the state
    database's short registry query; never a transcript read. What the live sensor compares."""
    from mc_pipeline.ingest.readers.state_db import read_state_db

    states = {f.rel: [f.size, f.mtime_ns] for f in discover_transcripts(home).files}
    if home.is_dir():
        states.update({rel: st[:2] for rel, st in watched_files(home, read_state_db(home).agent_dbs).items()})
    return states


def states_digest(states: dict[str, list[int]]) -> str:
    return _digest(states)


def fleet_file_states(homes: list[tuple[str, Path]]) -> dict[str, list[int]]:
    """:func:`file_states` of every home of a fleet, keyed ``<home>:<relative path>`` (an unreachable home
    has none: it vanishing is a change, as is it coming back)."""
    out: dict[str, list[int]] = {}
    for name, path in homes:
        try:
            states = file_states(path)
        except OSError:
            states = {}
        out.update({f"{name}:{rel}": st for rel, st in states.items()})
    return out


WATCHED_FILE = "watched.json"


def record_watched(staging: Path, states: dict[str, list[int]]) -> None:
    """What a refresh run read from (taken before reading): the sensor's baseline when it has no cursor
    yet."""
    from mc_pipeline.tables import storage

    storage.write_json(
        {"digest": states_digest(states), "files": states}, staging / WATCHED_FILE, indent=None
    )


def last_read_digest(stagings: dict[str, Path] | Path) -> str | None:
    """The digest of what the last refresh run read (its states as the sensor takes them): one staging
    folder for the one home, or each home's (``{name: staging}``) combined as :func:`fleet_file_states`."""
    if isinstance(stagings, Path):
        last = read_watched(stagings)
        return last.get("digest") if last else None
    combined: dict[str, list[int]] = {}
    for name, staging in stagings.items():
        last = read_watched(staging)
        if last is None or not isinstance(last.get("files"), dict):
            return None
        combined.update({f"{name}:{rel}": st for rel, st in last["files"].items()})
    return states_digest(combined)


def read_watched(staging: Path) -> dict | None:
    try:
        doc = json.loads((staging / WATCHED_FILE).read_text())
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None
