"""Which days need building, and building them: staged records -> ``llm_calls`` and the per-day aggregates.

A day's calls depend on its staged records (every source), the first hour of the next day and the last
hour of the previous one (de-duplication looks across midnight: a copy within 5 minutes, a prompt-error
and the failed message of its run), the session index rows of the sessions on that day, and settings
that apply to every day (time zone, cost mode, task rules, billing overrides, auth profiles, the price
table's version, this package's code). :func:`build_keys` digests exactly that per day; a day is built
when its key differs from the one it was last built with, so an hourly run builds today (and yesterday
near midnight), a late archive builds the old day it lands on, and a changed price or setting builds
every day. The result of building a day does not depend on which other days are built with it.

Days are built in chunks of about :data:`CHUNK_ROWS` records (consecutive days together), so memory stays
flat however long the history is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from mc_pipeline.calls.daily import DailyTables, daily_tables
from mc_pipeline.calls.llm_calls import build_llm_calls
from mc_pipeline.costing.billing import AuthProfiles
from mc_pipeline.costing.task_types import DEFAULT_RULES_PATH, TaskRules
from mc_pipeline.ingest.day_store import MARGIN, DayStore, day_bounds
from mc_pipeline.tables import storage
from mc_pipeline.tables.schemas import CALL_RECORDS, LLM_CALLS, QUARANTINE, conform

if TYPE_CHECKING:
    from mc_pipeline.tables.store import Tables

#: Records built together (the days of a chunk and their neighbours' margins are in memory at once).
CHUNK_ROWS = 120_000
BUILT_FILE = "_built.parquet"
BUILT: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "key": pl.String(),
    "calls": pl.Int64(),
    "cost_usd": pl.Float64(),
}
#: Per day and unit: what became of its call records (for the line reconciliation).
ACCOUNTING: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "source": pl.String(),
    "source_file": pl.String(),
    "calls": pl.Int64(),  # rows in llm_calls
    "duplicates": pl.Int64(),  # dropped as repeats of a call
    "rejected": pl.Int64(),  # failed the llm_calls contract (in quarantine)
}


@dataclass
class Enrichment:
    """Everything besides its records that a day's calls depend on."""

    session_index: pl.DataFrame
    auth: AuthProfiles | dict
    task_rules: TaskRules
    tz: str
    cost_mode: str
    billing_overrides: dict | None = None
    salt: str = ""
    task_rules_path: str | None = None
    code: str = ""  # a digest of this package's code (run_fingerprint.package_digest)

    def digest(self) -> str:
        """What applies to every day: a change here builds every day again."""
        rules = Path(self.task_rules_path) if self.task_rules_path else DEFAULT_RULES_PATH
        try:
            rules_text = rules.read_text()
        except OSError:
            rules_text = str(rules)
        profiles = self.auth.profiles if isinstance(self.auth, AuthProfiles) else self.auth
        try:
            prices = metadata.version("genai-prices")
        except metadata.PackageNotFoundError:
            prices = ""
        return _hash(
            [
                self.tz,
                self.cost_mode,
                rules_text,
                self.billing_overrides or {},
                profiles,
                self.salt,
                prices,
                self.code,
                pl.__version__,
            ]
        )


def _hash(obj: object) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()


def _index_digests(stores: list[DayStore], session_index: pl.DataFrame) -> dict[date, str]:
    """Per day: a digest of the session index rows of the sessions with records that day."""
    parts = [s.day_sessions() for s in stores]
    ds = pl.concat(parts).unique() if parts else pl.DataFrame()
    if ds.height == 0:
        return {}
    cols = [
        c
        for c in ("session_key", "trigger", "channel", "cron_job_id", "cron_job_name", "is_fork")
        if c in session_index.columns
    ]
    idx = session_index.select("agent_id", "session_id", *cols)
    by_agent = idx.filter(pl.col("agent_id").is_not_null()).unique(["agent_id", "session_id"], keep="first")
    by_sid = idx.filter(pl.col("agent_id").is_null()).drop("agent_id").unique("session_id", keep="first")
    joined = ds.join(by_agent, on=["agent_id", "session_id"], how="left")
    if by_sid.height:
        joined = joined.join(by_sid, on="session_id", how="left", suffix="_s")
    h = pl.struct(pl.all().exclude("day")).hash(seed=3)
    out = joined.group_by("day").agg(h.sum().alias("h"))
    return {d: f"{v:x}" for d, v in out.iter_rows()}


def build_keys(stores: list[DayStore], enrich: Enrichment) -> dict[date, str]:
    """The key of every day with staged records (see the module doc)."""
    indices = [(s.root.parent.name, {r["day"]: r for r in s.index().iter_rows(named=True)}) for s in stores]
    days = sorted({d for _, idx in indices for d in idx})
    sessions = _index_digests(stores, enrich.session_index)
    base = enrich.digest()
    one = timedelta(days=1)
    keys = {}
    for day in days:
        parts: list[object] = [base, sessions.get(day, "")]
        for name, idx in indices:
            own, before, after = idx.get(day), idx.get(day - one), idx.get(day + one)
            parts.append([name, own and own["digest"], before and before["tail"], after and after["head"]])
        keys[day] = _hash(parts)
    return keys


def read_built(folder: Path) -> pl.DataFrame:
    path = folder / BUILT_FILE
    if not path.exists():
        return pl.DataFrame(schema=BUILT)
    return storage.read_parquet(path).cast(BUILT)


def stale(keys: dict[date, str], built: pl.DataFrame) -> tuple[list[date], list[date]]:
    """(days to build, days built before that have no records any more)."""
    have = dict(built.select("day", "key").iter_rows())
    return sorted(d for d, k in keys.items() if have.get(d) != k), sorted(d for d in have if d not in keys)


def chunks(days: list[date], stores: list[DayStore], chunk_rows: int = CHUNK_ROWS) -> list[list[date]]:
    """``days`` in order, grouped so a group's records stay under ``chunk_rows`` (a bigger day is a group
    alone)."""
    rows: dict[date, int] = {}
    for s in stores:
        for d, n in s.index().select("day", "rows").iter_rows():
            rows[d] = rows.get(d, 0) + n
    out: list[list[date]] = []
    size = 0
    for day in sorted(days):
        n = rows.get(day, 0)
        if out and size + n <= chunk_rows and out[-1][-1] == day - timedelta(days=1):
            out[-1].append(day)
            size += n
        else:
            out.append([day])
            size = n
    return out


def chunk_records(days: list[date], stores: list[DayStore], tz: str) -> pl.DataFrame:
    """The staged records of ``days`` and of the margins of their neighbours, every source, preferred
    first."""
    from mc_pipeline.tables.schemas import SOURCES

    wanted = set(days)
    parts = []
    for store in stores:
        for day in days:
            parts.append(store.read_day(day))
        for day in days:
            start, end = day_bounds(day, tz)
            if day - timedelta(days=1) not in wanted:
                parts.append(store.read_window(start - MARGIN, start))
            if day + timedelta(days=1) not in wanted:
                parts.append(store.read_window(end, end + MARGIN))
    parts = [p.cast(CALL_RECORDS) for p in parts if p.height]
    if not parts:
        return pl.DataFrame(schema=CALL_RECORDS)
    frame = pl.concat(parts)
    rank = {s: i for i, s in enumerate(SOURCES)}
    return frame.sort(
        pl.col("source").replace_strict(rank, default=len(SOURCES), return_dtype=pl.Int32),
        maintain_order=True,
    )


@dataclass
class DayBuild:
    day: date
    calls: pl.DataFrame  # LLM_CALLS of the day
    daily: DailyTables
    accounting: pl.DataFrame  # ACCOUNTING
    rejected: pl.DataFrame  # QUARANTINE rows of the day's calls that failed the contract
    rejected_rows: int = 0


@dataclass
class BuildReport:
    built: list[date] = field(default_factory=list)
    removed: list[date] = field(default_factory=list)
    rows: int = 0


def build_days(
    days: list[date], stores: list[DayStore], enrich: Enrichment, chunk_rows: int = CHUNK_ROWS
) -> Iterator[DayBuild]:
    """Build ``days`` chunk by chunk; one :class:`DayBuild` per day, in order. The per-day aggregates are
    computed once per chunk (their keys include the day) and split by day."""
    from mc_pipeline.calls.daily import DailyTables

    empty = DailyTables.empty()
    for group in chunks(days, stores, chunk_rows):
        records = chunk_records(group, stores, enrich.tz)
        built = build_llm_calls(
            records,
            session_index=enrich.session_index,
            auth=enrich.auth,
            task_rules=enrich.task_rules,
            tz=enrich.tz,
            cost_mode=enrich.cost_mode,
            billing_overrides=enrich.billing_overrides,
            days=set(group),
        )
        del records
        by_day = _split(built.calls)
        tables = daily_tables(built.calls, enrich.salt)
        split = {name: _split(frame) for name, frame in tables.items()}
        rejected_by_day, dupes_by_day = _split(built.rejected), _split(built.duplicates)
        for day in group:
            calls = by_day.get(day, pl.DataFrame(schema=LLM_CALLS))
            daily = DailyTables(*(split[name].get(day, getattr(empty, name)) for name, _ in tables.items()))
            rejected = rejected_by_day.get(day, built.rejected.clear())
            dupes = dupes_by_day.get(day, built.duplicates.clear())
            yield DayBuild(
                day,
                calls,
                daily,
                accounting(day, calls, dupes, rejected),
                conform(rejected, QUARANTINE),
                rejected_rows=rejected.height,
            )


def _split(frame: pl.DataFrame) -> dict[date, pl.DataFrame]:
    if frame.height == 0 or "day" not in frame.columns:
        return {}
    return {d: p for (d,), p in frame.partition_by("day", as_dict=True).items()}


def accounting(
    day: date, calls: pl.DataFrame, duplicates: pl.DataFrame, rejected: pl.DataFrame
) -> pl.DataFrame:
    key = ["source", "source_file"]
    parts = [
        calls.group_by(key).agg(calls=pl.len().cast(pl.Int64)),
        duplicates.group_by(key).agg(duplicates=pl.col("duplicates").sum().cast(pl.Int64)),
        rejected.group_by(key).agg(rejected=pl.len().cast(pl.Int64)),
    ]
    out = pl.concat(parts, how="diagonal_relaxed")
    if out.height == 0:
        return pl.DataFrame(schema=ACCOUNTING)
    out = out.group_by(key).agg(pl.col("calls", "duplicates", "rejected").sum()).with_columns(day=pl.lit(day))
    return conform(out, ACCOUNTING).sort("source", "source_file")


def load_enrichment(
    home: Path,
    *,
    tz: str,
    cost_mode: str,
    task_rules_path: str = "",
    billing_overrides_path: str = "",
    salt: str = "",
) -> tuple[Enrichment, list[str]]:
    """What the calls of every day are enriched with, read from the home now (session keys of both eras,
    auth profiles, cron jobs; the task rules and billing overrides files), and the problems seen."""
    from mc_pipeline.costing.billing import load_billing_overrides, read_auth_profiles
    from mc_pipeline.costing.task_types import load_task_rules
    from mc_pipeline.ingest.readers.agent_db import read_agent_facts
    from mc_pipeline.ingest.readers.session_index import read_sessions
    from mc_pipeline.ingest.readers.state_db import read_state_db
    from mc_pipeline.runtime.fingerprint import package_digest

    state = read_state_db(home)
    facts = read_agent_facts(home, state.agent_dbs)
    index, problems = read_sessions(home, state, facts)
    auth, auth_problems = read_auth_profiles(home, facts.auth_stores, state.shared_auth)
    enrich = Enrichment(
        session_index=index,
        auth=auth,
        task_rules=load_task_rules(task_rules_path or None),
        tz=tz,
        cost_mode=cost_mode,
        billing_overrides=load_billing_overrides(billing_overrides_path) if billing_overrides_path else None,
        salt=salt,
        task_rules_path=task_rules_path or None,
        code=package_digest(),
    )
    return enrich, problems + auth_problems


# -- a run: build what changed, write every table it touches -------------------------------------------------
@dataclass
class DayResult:
    day: date
    calls: int
    cost_usd: float
    key: str
    removed: bool = False


@dataclass
class DaysRun:
    """What one build wrote: per day (for the Dagster materialisations), and the checks' evidence."""

    days: list[DayResult] = field(default_factory=list)
    schema_errors: list[str] = field(default_factory=list)
    rejected_rows: int = 0  # rows of the days built that failed the contract (quarantined)
    duplicate_ids: int = 0
    quarantine: pl.DataFrame | None = None
    source_files: pl.DataFrame | None = None
    problems: list[str] = field(default_factory=list)
    total_days: int = 0


def build_and_write(
    config,
    *,
    days: list[date] | None = None,
    aggregates_only: bool = False,
    progress=None,
    chunk_rows: int = CHUNK_ROWS,
) -> DaysRun:
    """Build the stale days (``days`` None) or exactly ``days`` (a rerun), write ``llm_calls`` and the
    per-day aggregates of each, the all-days copies, the quarantine and the line reconciliation.

    ``aggregates_only``: rebuild the aggregates of ``days`` from ``llm_calls`` as written (no records
    read)."""
    import time

    from mc_pipeline.ingest.staging import states
    from mc_pipeline.tables.store import AGGREGATES, Tables

    tables = Tables(config.data)
    salt = session_salt(config.data)
    st = states(config)
    stores = [s.store for s in st.values()]
    run = DaysRun()
    built = read_built(tables.table_dir("llm_calls"))
    todo, removed, keys, enrich = _plan_days(config, run, built, stores, salt, days, aggregates_only)
    run.total_days = len(keys)
    outputs = {name: [] for name in (*AGGREGATES, "accounting", "rejected")}
    last = time.monotonic()

    def keep(b: DayBuild) -> None:
        nonlocal last
        _keep_day(tables, run, outputs, b, keys, write_calls=not aggregates_only)
        if progress and time.monotonic() - last > 2.0:
            last = time.monotonic()
            progress(f"llm_calls: {len(run.days)}/{len(todo)} days built")

    if aggregates_only:
        for day in todo:
            calls = tables.read_days("llm_calls", [day])
            keep(DayBuild(day, calls, daily_tables(calls, salt), None, None))
    else:
        for b in build_days(todo, stores, enrich, chunk_rows):
            keep(b)
    for day in removed:
        for name in ("llm_calls", "usage_daily"):
            tables.remove_day(name, day)
        run.days.append(DayResult(day, 0, 0.0, "", removed=True))

    changed = sorted(set(todo) | set(removed))
    if changed:
        _write_changed_days(tables, run, outputs, built, changed, aggregates_only)
    if not aggregates_only:
        _write_quarantine(config, tables, st, run)
    return run


def _plan_days(
    config,
    run: DaysRun,
    built: pl.DataFrame,
    stores: list[DayStore],
    salt: str,
    days: list[date] | None,
    aggregates_only: bool,
) -> tuple[list[date], list[date], dict[date, str], Enrichment | None]:
    """Plan the run: (days to build, days to remove, every day's key, the enrichment or None)."""
    if aggregates_only:
        return sorted(days or []), [], dict(built.select("day", "key").iter_rows()), None
    enrich, run.problems = load_enrichment(
        config.home,
        tz=config.tz,
        cost_mode=config.cost_mode,
        task_rules_path=config.task_rules_path,
        billing_overrides_path=config.billing_overrides_path,
        salt=salt,
    )
    keys = build_keys(stores, enrich)
    todo, removed = stale(keys, built)
    if days is not None:  # a rerun of these days, whatever their state
        todo = sorted(d for d in days if d in keys)
        removed = sorted(d for d in days if d not in keys and d in set(built.get_column("day").to_list()))
    return todo, removed, keys, enrich


def _keep_day(
    tables: Tables,
    run: DaysRun,
    outputs: dict[str, list[pl.DataFrame]],
    b: DayBuild,
    keys: dict[date, str],
    *,
    write_calls: bool,
) -> None:
    """Keep one built day: write its partitions, collect its aggregates, record its checks' evidence."""
    if write_calls:
        tables.write_day("llm_calls", b.day, b.calls)
    tables.write_day("usage_daily", b.day, b.daily.usage_daily)  # the day-partitioned aggregate
    for name, frame in b.daily.items():
        outputs[name].append(frame)
    if b.accounting is not None:
        outputs["accounting"].append(b.accounting)
        outputs["rejected"].append(b.rejected.with_columns(day=pl.lit(b.day)))
    cost = float(b.calls.get_column("cost_usd").sum() or 0.0)
    run.days.append(DayResult(b.day, b.calls.height, cost, keys.get(b.day, "")))
    # every row was validated by build_llm_calls (rows failing LlmCallsModel are quarantined, never
    # written); what is written must still have the contract's columns and types
    wrong = {c: str(t) for c, t in LLM_CALLS.items() if b.calls.schema.get(c) != t}
    if wrong:
        run.schema_errors.append(f"{b.day}: columns not as in schemas.LLM_CALLS: {wrong}")
    run.rejected_rows += b.rejected_rows
    run.duplicate_ids += b.calls.height - b.calls.get_column("call_id").n_unique()


def _write_changed_days(
    tables: Tables,
    run: DaysRun,
    outputs: dict[str, list[pl.DataFrame]],
    built: pl.DataFrame,
    changed: list[date],
    aggregates_only: bool,
) -> None:
    """Write the all-days tables of the changed days: aggregates, accounting, rejected rows, built index."""
    from mc_pipeline.tables.store import AGGREGATES

    for name in AGGREGATES:
        frames = outputs[name]
        every = tables.replace_staged_days(name, changed, pl.concat(frames) if frames else pl.DataFrame())
        if name != "usage_daily":  # unpartitioned tables: all days in one file
            tables.write(name, every)
    if aggregates_only:
        return
    for name in ("accounting", "rejected"):
        frames = [f for f in outputs[name] if f.height]
        tables.replace_staged_days(name, changed, pl.concat(frames) if frames else pl.DataFrame())
    new_built = pl.DataFrame(
        [
            {"day": r.day, "key": r.key, "calls": r.calls, "cost_usd": r.cost_usd}
            for r in run.days
            if not r.removed
        ],
        schema=BUILT,
    )
    built = pl.concat([built.filter(~pl.col("day").is_in(changed)), new_built]).sort("day")
    storage.write_parquet(built, tables.table_dir("llm_calls") / BUILT_FILE)


def _write_quarantine(config, tables: Tables, st: dict, run: DaysRun) -> None:
    """Write the quarantine (readers' and rejected lines) and the line reconciliation of the source files."""
    from mc_pipeline.ingest.reconcile import reconcile_accounting

    readers_q = pl.concat([s.quarantine() for s in st.values()])
    rejected = tables.staged("rejected").drop("day")
    if rejected.height:
        from mc_pipeline.ingest.readers.transcript_files import with_line_excerpts

        rejected = with_line_excerpts(config.home, rejected)
    quarantine = pl.concat([readers_q, rejected.cast(QUARANTINE)]).sort(
        "source", "source_file", "line_no", nulls_last=True
    )
    run.quarantine = quarantine
    run.source_files = reconcile_accounting(
        pl.concat([s.file_counts() for s in st.values()]), tables.staged("accounting"), quarantine
    )
    tables.write("quarantine", quarantine)
    tables.write("source_files", run.source_files)


def session_salt(data_dir: Path) -> str:
    """A random salt kept in ``$MC_DATA_DIR/staging/session_salt`` (made once): hashed ids cannot be
    guessed back."""
    import secrets

    path = data_dir / "staging" / "session_salt"
    try:
        salt = path.read_text().strip()
        if salt:
            return salt
    except OSError:
        pass
    storage.write_text(secrets.token_hex(16) + "\n", path)
    return path.read_text().strip()
