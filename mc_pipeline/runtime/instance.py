"""The Dagster instance mc_pipeline runs against: its ``dagster.yaml``, its storages made once, and an
event log storage that costs ~2 ms per event instead of ~10.

Every run records its events (steps, materialisations, check results) in the instance the UI reads;
Dagster's SQLite event log opens a new SQLAlchemy engine and SQLite connection for every event it
stores (measured: ~9.6 ms per materialisation event; a run stores dozens, a full build one or two per
day of history). :class:`CachedSqliteEventLogStorage` is that same storage, same files and schema,
keeping one connection per database file open instead (~1.9 ms per event, measured side by side in one
process). ``dagster.yaml`` written by :func:`ensure_dagster_home` selects it for ``make run``, ``make dev``,
the webserver and the daemon alike.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as db
from dagster._config import Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy.pool import StaticPool

#: Run shards kept open besides the index (a long-lived webserver or daemon sees many runs).
OPEN_SHARDS = 8

#: The variable that selects Postgres for every storage (run, event log, schedule): its value is a URL such
#: as ``postgresql://user:password@host:5432/dagster``; dagster.yaml refers to the variable, never holds the
#: URL.
POSTGRES_URL_ENV = "MC_DAGSTER_POSTGRES_URL"

_HEAD = (
    "# written by mc_pipeline on first run (v2); edit freely,"
    " mc_pipeline will not overwrite an edited file\n"
    """telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 2
  tag_concurrency_limits:
    - key: mc_pipeline/refresh
      limit: 1
"""
)
DAGSTER_YAML = (
    _HEAD
    + """# the stock SQLite event log storage, keeping its connections open (mc_pipeline/runtime/instance.py)
event_log_storage:
  module: mc_pipeline.runtime.instance
  class: CachedSqliteEventLogStorage
  config:
    base_dir: {runs}
"""
)
POSTGRES_YAML = (
    _HEAD
    + "# runs, event logs and schedules in Postgres: dagster-postgres's storages"
    + " (mc_pipeline/runtime/postgres_storage.py);\n"
    + """# the URL is read from the environment
storage:
  custom:
    module: mc_pipeline.runtime.postgres_storage
    class: Storage
    config:
      postgres_url:
        env: """
    + POSTGRES_URL_ENV
    + "\n"
)


def postgres_url(env: dict | None = None) -> str:
    """The Postgres URL the instance uses, or "" for the SQLite files under $DAGSTER_HOME."""
    return ((os.environ if env is None else env).get(POSTGRES_URL_ENV) or "").strip()


def dagster_yaml(home: Path, postgres: bool = False) -> str:
    """The ``dagster.yaml`` mc_pipeline writes for the instance in ``home``: SQLite files (event logs where
    Dagster keeps them, through :class:`CachedSqliteEventLogStorage`) or, with ``postgres``, every storage in
    the database named by $MC_DAGSTER_POSTGRES_URL (an ``env:`` reference: no URL or password in the file)."""
    if postgres:
        return POSTGRES_YAML
    return DAGSTER_YAML.format(runs=(Path(home).resolve() / "history" / "runs").as_posix() + "/")


_OURS = "# written by mc_pipeline on first run"


class CachedSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with one open connection per shard (the run's file, the index) instead of
    a new engine and connection per event. Same files, same schema, same locking (``_db_lock``)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, db.engine.Engine] = OrderedDict()
        super().__init__(base_dir, inst_data=inst_data)
        self._db_lock = threading.RLock()

    @classmethod
    def config_type(cls):
        return {"base_dir": Field(StringSource, is_required=True)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value) -> CachedSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> db.engine.Engine:
        engine = self._engines.get(shard)
        if engine is None:
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            db.event.listen(engine, "connect", _no_fsync_per_commit)
            self._engines[shard] = engine
            while len(self._engines) > OPEN_SHARDS + 1:
                oldest = next(iter(self._engines))
                self._engines.pop(oldest).dispose()
        else:
            self._engines.move_to_end(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str):
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def delete_events(self, run_id: str) -> None:
        with self._db_lock:
            engine = self._engines.pop(run_id, None)
            if engine is not None:
                engine.dispose()
        super().delete_events(run_id)

    def wipe(self) -> None:
        self._close_all()
        super().wipe()

    def _close_all(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()


def _no_fsync_per_commit(dbapi_connection, _record) -> None:
    """WAL databases with ``synchronous=NORMAL``: a commit no longer waits for an fsync (SQLite still syncs at
    each checkpoint; a power cut, not a crash, may lose the last events). Event logs are run history."""
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def ensure_dagster_home(data_dir: Path) -> Path:
    """``$DAGSTER_HOME`` (default ``$MC_DATA_DIR/dagster_home``) with mc_pipeline's ``dagster.yaml`` for the
    storage chosen now (SQLite files, or Postgres when $MC_DAGSTER_POSTGRES_URL is set). A file mc_pipeline
    wrote and nobody edited (any of its versions) is brought up to date; an edited one is left alone."""
    home = Path(os.environ.get("DAGSTER_HOME") or data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    try:
        text = cfg.read_text()
    except OSError:
        text = None
    wanted = dagster_yaml(home, postgres=bool(postgres_url()))
    ours = (
        text is not None
        and text.startswith(_OURS)
        and (
            _unedited_v1(text)
            or _before_layout(text) in (dagster_yaml(home), dagster_yaml(home, postgres=True))
            or ("CachedSqliteEventLogStorage" in text and "base_dir" not in text)
        )
    )
    if text != wanted and (text is None or ours):
        storage_write_text(cfg, wanted)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def storage_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _unedited_v1(text: str) -> bool:
    v1 = """# written by mc_pipeline on first run; edit freely
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 2
  tag_concurrency_limits:
    - key: mc_pipeline/refresh
      limit: 1
"""
    return text == v1


def _before_layout(text: str) -> str:
    """A file written before the modules moved into packages, with the module names of now."""
    for old, new in (
        ("mc_pipeline.instance", "mc_pipeline.runtime.instance"),
        ("mc_pipeline.postgres_storage", "mc_pipeline.runtime.postgres_storage"),
    ):
        text = text.replace(f"module: {old}\n", f"module: {new}\n")
    return text


def storage_identity() -> str:
    """Which storage the instance uses, without secrets: ``sqlite``, or ``postgres://host:port/db``."""
    url = postgres_url()
    if not url:
        return "sqlite"
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"postgres://{parts.hostname or ''}:{parts.port or ''}{parts.path}"


def create_instance_storage(home: Path) -> None:
    """Create the instance's storages once per storage (SQLite files, or a Postgres database), under a lock.

    Two processes creating a fresh instance's storages at the same instant race on the schema migration
    ("alembic_version has more than one head"); whoever holds the lock creates them, the other finds them. The
    marker holds which storage was made (host, port and database for Postgres; never the user or password).
    """
    import fcntl

    import dagster as dg

    marker = home / ".storage-ready"
    identity = storage_identity()

    def ready() -> bool:
        try:
            return (
                marker.read_text().strip() or "sqlite"
            ) == identity  # an empty marker: an older SQLite one
        except OSError:
            return False

    if ready():
        return
    with open(home / ".storage.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)  # run storage
            instance.all_instigator_state()  # schedule storage
            instance.get_latest_materialization_events([dg.AssetKey("llm_calls")])  # event storage
        marker.write_text(identity + "\n")
