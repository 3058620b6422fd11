"""Whether ``python -m mc_pipeline run`` has anything to do: a fingerprint of all the outputs depend on.

Before Dagster starts, the CLI takes ``current_inputs`` (``stat`` calls, settings, versions and today's
date; nothing here imports Dagster or Polars) and asks ``decide``. The run is skipped only when all of
these hold:

- every input section equals the one taken before the last successful run: the package (version and
  its files' size/mtime), library versions, every setting (``MC_*``/``OPENCLAW_*`` but not
  ``MC_FULL_REBUILD``, ``TZ``, ``HOME``, ``DAGSTER_HOME``, the working directory, the resolved home, data
  dir and zone), today's date in the reporting zone (the dashboard's ``daily`` ends today), the
  transcript files (path, size, mtime, inode, plus what discovery skipped or could not read) and the
  other sources (``sessions.json``,
  ``auth-profiles.json``, transcript stores, ``interactions.db``, ``model-usage.jsonl`` with their
  ``-wal``/``-journal`` files, the rules and overrides files: size, mtime, inode, ctime);
- every output (``parquet/``, ``csv/``, ``staging/`` incl. the transcript manifest, ``usage-data.json`` and
  ``sessions.json`` in each target, ``alerts.jsonl``, ``alert_state.json``; the salt lives in staging/) is
  still the file that run left (size, mtime, inode);
- the transcript manifest's ``plan_reads`` would have nothing to read: the files discovered now are exactly
  the manifest's files (path, size, mtime, inode) and none is re-read every run (the manifest's file list
  is digested when the run is recorded, so this check needs no Polars);
- that run left nothing that depends on the clock alone: no quarantined line whose time may still become
  plausible, no alert delivery pending, and the 24 h failure-rate window has not moved past a call since.

The fingerprint is written (atomically, ``$MC_DATA_DIR/staging/last_run.json``) only after a run that
succeeded with every check passing, and deleted when a run starts: a failed or interrupted run never
leaves one behind. Limit: a file rewritten in place keeping its size and mtime is not noticed (as in the
transcript manifest).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import mc_pipeline
from mc_pipeline.ingest.readers.home import Discovery, discover_transcripts
from mc_pipeline.runtime.defaults import default_home, local_timezone

STATE_FILE = "last_run.json"
STATE_VERSION = 1
#: Environment variables the outputs may depend on (besides every MC_* and OPENCLAW_* one).
ENV_NAMES = ("TZ", "HOME", "DAGSTER_HOME")
ENV_PREFIXES = ("MC_", "OPENCLAW_")
#: Variables that change how a run works, never what it writes (an incremental run equals a full rebuild).
ENV_IGNORED = ("MC_FULL_REBUILD", "MC_BENCH_MB")
LIBRARIES = ("dagster", "polars", "pandera", "pyarrow", "genai-prices", "pydantic", "tzdata")
#: Quarantine reasons whose verdict can change with the clock alone (a time "in the future" becomes valid).
TIME_DEPENDENT_REASONS = ("no plausible timestamp", "implausible timestamp")
#: The failure-rate alert looks at calls in the last 24 h before the run (mc_pipeline.alerting.rules).
FAILURE_WINDOW = timedelta(hours=24)
#: Folders of $MC_DATA_DIR whose files are outputs of a run.
OUTPUT_FOLDERS = ("parquet", "csv", "staging")
OUTPUT_FILES = ("usage-data.json", "sessions.json", "alerts.jsonl", "alert_state.json")
STORE_FILES = ("openclaw-agent.sqlite", "openclaw-agent.sqlite-wal", "openclaw-agent.sqlite-journal")


def _digest(obj: object) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def _stat(path: Path, ctime: bool = True) -> list[int] | str | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:  # unreadable, a loop: say so (a change of that is a change)
        return f"error:{exc.errno}"
    out = [st.st_size, st.st_mtime_ns, st.st_ino]
    return out + [st.st_ctime_ns] if ctime else out


def _setting_path(value: str | None, default: Path) -> Path:
    return Path(value).expanduser().resolve() if value else default


def package_digest(package: Path | None = None) -> str:
    """The package version and the size/mtime of its code, rules and schema files."""
    package = package or Path(mc_pipeline.__file__).parent
    code = {
        str(p.relative_to(package)): _stat(p, ctime=False)
        for p in sorted(package.rglob("*"))
        if p.suffix in (".py", ".toml", ".json") and "__pycache__" not in p.parts
    }
    return _digest([mc_pipeline.__version__, code])


@dataclass
class Inputs:
    """What the outputs of a run depend on, taken before the run."""

    home: Path
    data: Path
    timezone: str
    today: str
    sections: dict[str, str]  # section -> digest (``today`` as the date itself)
    discovery: Discovery


def current_inputs(env: Mapping[str, str], now: datetime) -> Inputs:
    """Stat everything the outputs depend on (raises on a setting that is not usable, e.g. a bad zone)."""
    home = Path(env.get("OPENCLAW_HOME") or default_home()).expanduser()
    data = Path(env.get("MC_DATA_DIR") or "./data").expanduser().resolve()
    zone = env.get("MC_TIMEZONE") or local_timezone()
    today = now.astimezone(ZoneInfo(zone)).date().isoformat()
    libraries = _library_versions()
    settings = {
        "env": {
            k: v
            for k, v in sorted(env.items())
            if (k.startswith(ENV_PREFIXES) or k in ENV_NAMES) and k not in ENV_IGNORED
        },
        "cwd": os.getcwd(),
        "home": str(home.resolve()),
        "data": str(data),
        "timezone": zone,
    }
    found = discover_transcripts(home)
    transcripts = {
        "files": [(tf.rel, tf.size, tf.mtime_ns, tf.inode) for tf in found.files],
        "skipped": sorted(found.skipped.items()),
        "problems": found.problems,
    }
    sources = _source_stats(env, home)
    sections = {
        "package": package_digest(),
        "libraries": _digest([sys.version, libraries]),
        "settings": _digest(settings),
        "today": today,
        "transcripts": _digest(transcripts),
        "sources": _digest(sources),
    }
    return Inputs(home=home, data=data, timezone=zone, today=today, sections=sections, discovery=found)


def _library_versions() -> dict[str, str | None]:
    """The installed version of each library in :data:`LIBRARIES` (None when it is not installed)."""
    from importlib import metadata

    libraries = {}
    for lib in LIBRARIES:
        try:
            libraries[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            libraries[lib] = None
    return libraries


def _source_stats(env: Mapping[str, str], home: Path) -> dict[str, object]:
    """Stat the sources besides the transcripts: agents' files, the databases, the log, the rules files."""
    sources: dict[str, object] = {"home": home.is_dir()}
    agents = home / "agents"
    try:
        agent_names = sorted(p.name for p in agents.iterdir() if p.is_dir()) if agents.is_dir() else []
    except OSError as exc:
        agent_names = [f"error:{exc.errno}"]
    sources["agents"] = agent_names
    for name in agent_names:
        stores = (f"agent/{f}" for f in STORE_FILES)
        for rel in ("sessions/sessions.json", "agent/auth-profiles.json", *stores):
            sources[f"agents/{name}/{rel}"] = _stat(agents / name / rel)
    # OpenClaw 2026.8+: the state and agent databases (also those only the registry lists) and cold files
    from mc_pipeline.ingest.readers.home import watched_files
    from mc_pipeline.ingest.readers.state_db import read_state_db

    sources["databases"] = watched_files(home, read_state_db(home).agent_dbs) if home.is_dir() else {}
    db = _setting_path(env.get("MC_INTERACTIONS_DB"), home / "data" / "interactions.db")
    for suffix in ("", "-wal", "-journal"):
        sources[f"interactions_db{suffix}"] = [str(db), _stat(Path(f"{db}{suffix}"))]
    log = _setting_path(env.get("MC_MODEL_USAGE_LOG"), home / "logs" / "model-usage.jsonl")
    sources["model_usage_log"] = [str(log), _stat(log)]
    for var in ("MC_TASK_RULES", "MC_BILLING_OVERRIDES", "MC_ALERT_RULES"):
        if env.get(var):
            sources[var] = _stat(_setting_path(env[var], Path()))
    return sources


# -- outputs ---------------------------------------------------------------------------------------------
def output_stats(data: Path, extra: list[str]) -> dict[str, object]:
    """Size, mtime and inode of every output file (``extra``: absolute paths outside the data dir)."""
    out: dict[str, object] = {}
    for folder in OUTPUT_FOLDERS:
        for root, dirs, files in os.walk(data / folder):
            dirs.sort()
            for name in sorted(files):
                if name == STATE_FILE or name.endswith(".tmp"):
                    continue
                path = Path(root, name)
                out[str(path.relative_to(data))] = _stat(path, ctime=False)
    for name in OUTPUT_FILES:
        out[name] = _stat(data / name, ctime=False)
    for path in extra:
        out[path] = _stat(Path(path), ctime=False)
    return out


def transcript_files_digest(files: list[tuple[str, int, int, int]]) -> str:
    """(path, size, mtime_ns, inode) of transcript files, in any order."""
    return _digest(sorted([str(rel), int(size), int(mtime), int(inode)] for rel, size, mtime, inode in files))


def manifest_files(data: Path) -> tuple[str, int]:
    """(digest of the transcript manifest's files, how many of them are re-read every run).

    The discovered files have this digest exactly when ``plan_reads`` finds every file unchanged and
    none vanished (``readers/manifest.py``); re-read files are never unchanged.
    """
    import polars as pl

    from mc_pipeline.ingest.readers.staged import MANIFEST_FILE

    path = data / "staging" / "transcript_records" / MANIFEST_FILE
    if not path.exists():
        return transcript_files_digest([]), 0
    manifest = pl.read_parquet(path, columns=["source_file", "size", "mtime_ns", "inode", "reread"])
    rows = manifest.select("source_file", "size", "mtime_ns", "inode").rows()
    return transcript_files_digest(rows), int(manifest.get_column("reread").sum() or 0)


# -- the decision ----------------------------------------------------------------------------------------
@dataclass
class Decision:
    skip: bool
    reason: str  # why the run goes ahead, or "" when skipped
    since: str = ""  # when the last successful run started (skip only), in the reporting zone
    summary: list[str] = field(default_factory=list)  # that run's summary (skip only)


def state_path(data: Path) -> Path:
    return data / "staging" / STATE_FILE


def read_state(data: Path) -> dict | None:
    try:
        doc = json.loads(state_path(data).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("version") == STATE_VERSION else None


def decide(inputs: Inputs, now: datetime) -> Decision:
    """Skip or run (see the module doc): ``stat`` calls and digests only, no Polars, no Dagster."""
    state = read_state(inputs.data)
    if state is None:
        return Decision(False, "no record of an earlier successful run")
    if state.get("no_skip"):
        return Decision(False, state["no_skip"])
    changed = [k for k, v in inputs.sections.items() if state.get("sections", {}).get(k) != v]
    if changed:
        return Decision(False, "changed since the last run: " + ", ".join(changed))
    until = state.get("valid_until")
    if until and now >= datetime.fromisoformat(until):
        return Decision(False, "the failure-rate alert's 24 h window moved past a call since the last run")
    if _digest(output_stats(inputs.data, state.get("extra_outputs", []))) != state.get("outputs"):
        return Decision(False, "outputs changed or missing since the last run")
    found = [(tf.rel, tf.size, tf.mtime_ns, tf.inode) for tf in inputs.discovery.files]
    if transcript_files_digest(found) != state.get("manifest_files"):
        return Decision(False, "transcripts to read: the files are not the ones in the transcript manifest")
    started = datetime.fromisoformat(state["started_at"]).astimezone(ZoneInfo(inputs.timezone))
    since = started.strftime("%Y-%m-%d %H:%M:%S %Z")
    return Decision(True, "", since=since, summary=list(state.get("summary", [])))


def forget(data: Path) -> None:
    """A run is starting: the last fingerprint no longer describes the outputs."""
    try:
        state_path(data).unlink()
    except FileNotFoundError:
        pass


# -- after a successful run ------------------------------------------------------------------------------
def clock_dependence(data: Path, started: datetime, failure_rule: bool) -> tuple[str | None, datetime | None]:
    """(why the next run must not be skipped whatever changes, the time until which a skip is allowed).

    Reads the outputs just written: quarantined lines whose verdict depends on the clock, alert deliveries
    still pending, and (when the failure-rate rule is on) the first moment after ``started`` at which a
    call enters or leaves the rule's 24 h window.
    """
    import polars as pl

    from mc_pipeline.alerting.delivery import read_alert_log
    from mc_pipeline.alerting.delivery import read_state as read_delivery_state

    qfile = data / "parquet" / "quarantine" / "quarantine.parquet"
    if qfile.exists():
        with open(qfile, "rb") as fh:
            reasons = pl.read_parquet(fh, columns=["reason"]).get_column("reason")
        timed = int(reasons.str.starts_with(TIME_DEPENDENT_REASONS[0]).sum()) + int(
            reasons.str.starts_with(TIME_DEPENDENT_REASONS[1]).sum()
        )
        if timed:
            return f"{timed} quarantined line(s) have a time that may become valid later", None
    delivered = read_delivery_state(data)["alerts"]
    for alert in read_alert_log(data):
        entry = delivered.get(alert["alert_id"])
        targets = (entry or {}).get("targets", {})
        if entry is None or any(not (t.get("delivered_at") or t.get("dropped")) for t in targets.values()):
            return "an alert delivery is pending: the next run tries again", None
    if not failure_rule:
        return None, None
    start = started.astimezone(UTC)
    first: datetime | None = None
    for file in sorted((data / "parquet" / "llm_calls").glob("day=*/*.parquet")):
        with open(file, "rb") as fh:
            ts = pl.read_parquet(fh, columns=["timestamp"]).get_column("timestamp")
        ts = ts.dt.convert_time_zone("UTC")
        events = pl.concat([ts, ts + FAILURE_WINDOW]).drop_nulls()
        later = events.filter(events > start)
        if later.len():
            candidate = later.min()
            first = candidate if first is None or candidate < first else first
    return None, first


def record_success(
    inputs: Inputs,
    started: datetime,
    summary: list[str],
    extra_outputs: list[str],
    failure_rule: bool,
) -> None:
    """Store the fingerprint taken before a run that just succeeded with every check passing."""
    from mc_pipeline.tables import storage

    no_skip, until = clock_dependence(inputs.data, started, failure_rule)
    files_digest, rereads = manifest_files(inputs.data)
    if rereads and not no_skip:
        no_skip = f"{rereads} transcript file(s) are re-read every run (a line's time may become valid)"
    extra = sorted(str(Path(p).resolve()) for p in extra_outputs)
    doc = {
        "version": STATE_VERSION,
        "started_at": started.astimezone(UTC).isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "sections": inputs.sections,
        "extra_outputs": extra,
        "outputs": _digest(output_stats(inputs.data, extra)),
        "manifest_files": files_digest,
        "no_skip": no_skip,
        "valid_until": until.isoformat() if until else None,
        "summary": summary,
    }
    storage.write_json(doc, state_path(inputs.data))
