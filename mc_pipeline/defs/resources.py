"""The resources of the Dagster layer, fed by environment variables with defaults (listed in the README).

- :class:`McSettings`: how to count (zone, cost mode, rules, homes of a fleet); builds the other resources;
- :class:`OpenClawHome`: one OpenClaw home, read-only, resolving where each of its sources is (transcript
  files, agent databases, the state database, ``interactions.db``, the log) and whether it can be read at all;
- :class:`DataStore`: where mc_pipeline writes (``$MC_DATA_DIR``, or ``homes/<name>`` for a fleet's home): the
  tables, the staging folder, the published dashboard files.

One home: resource keys ``openclaw_home`` and ``store``; a fleet: ``openclaw_home_<name>`` and
``store_<name>`` per home (see :func:`home_key`), ``store`` the fleet's combined outputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
from pydantic import field_validator

from mc_pipeline.runtime.config import parse_bool
from mc_pipeline.runtime.defaults import LEGACY_HOMES, default_home, local_timezone  # noqa: F401 - Dagster-free home
from mc_pipeline.tables.schemas import COST_MODES


def home_key(home: str | None = None) -> str:
    """The resource key of a home: ``openclaw_home`` (one home) or ``openclaw_home_<name>`` (a fleet's)."""
    return f"openclaw_home_{home}" if home else "openclaw_home"


def store_key(home: str | None = None) -> str:
    """The resource key of a home's data store: ``store`` or ``store_<name>``."""
    return f"store_{home}" if home else "store"


class OpenClawHome(dg.ConfigurableResource):
    """One OpenClaw home (observed, never written): where each of its sources is, and whether it can be
    read."""

    path: str
    name: str = ""  # the home's name in a fleet (MC_OPENCLAW_HOMES); empty for the one home
    interactions_db_path: str = ""  # empty: <home>/data/interactions.db (MC_INTERACTIONS_DB)
    model_usage_log_path: str = ""  # empty: <home>/logs/model-usage.jsonl (MC_MODEL_USAGE_LOG)

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser()

    @property
    def interactions_db(self) -> Path:
        """The user's own call log: MC_INTERACTIONS_DB, else <home>/data/interactions.db."""
        if self.interactions_db_path:
            return Path(self.interactions_db_path).expanduser()
        return self.root / "data" / "interactions.db"

    @property
    def model_usage_log(self) -> Path:
        """The user's backup log: MC_MODEL_USAGE_LOG, else <home>/logs/model-usage.jsonl."""
        if self.model_usage_log_path:
            return Path(self.model_usage_log_path).expanduser()
        return self.root / "logs" / "model-usage.jsonl"

    @property
    def state_database(self) -> Path:
        """OpenClaw 2026.8+'s global database (agent database registry, cron jobs and runs, shared auth)."""
        return self.root / "state" / "openclaw.sqlite"

    def transcript_files(self):
        """The transcript files of every agent, classified (live, topic, reset, deleted, archives)."""
        from mc_pipeline.ingest.readers.home import discover_transcripts

        return discover_transcripts(self.root)

    def agent_databases(self) -> list:
        """Every agent database: registered in the state database or found by globbing."""
        from mc_pipeline.ingest.readers.home import discover_agent_dbs
        from mc_pipeline.ingest.readers.state_db import read_state_db

        return discover_agent_dbs(self.root, read_state_db(self.root).agent_dbs)

    def problem(self) -> str | None:
        """Why the home cannot be read at all (unmounted, no permission), or None when it can be listed."""
        from mc_pipeline.ingest.staging import home_problem

        return home_problem(self.root)

    def file_states(self) -> dict[str, list[int]]:
        """size/mtime of every file a reader reads (what the live sensor and the no-op check compare)."""
        from mc_pipeline.ingest.source_state import file_states

        return file_states(self.root)

    def last_writes(self) -> dict:
        """When each source was last written (the sources_not_silent check)."""
        from mc_pipeline.ingest.readers.home import last_writes
        from mc_pipeline.ingest.readers.state_db import read_state_db

        agent_dbs = read_state_db(self.root).agent_dbs
        return last_writes(self.root, self.interactions_db, self.model_usage_log, agent_dbs)


class DataStore(dg.ConfigurableResource):
    """Where mc_pipeline writes: ``$MC_DATA_DIR`` (a fleet's home: ``$MC_DATA_DIR/homes/<name>``)."""

    data_dir: str
    usage_json_paths: str = ""  # extra places for usage-data.json + sessions.json (MC_USAGE_JSON_PATHS)

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def staging(self) -> Path:
        """Each reader's state and staged records, the per-day aggregates (never published)."""
        return self.root / "staging"

    def tables(self):
        """The tables under this store (:class:`mc_pipeline.tables.store.Tables`)."""
        from mc_pipeline.tables.store import Tables

        return Tables(self.root)

    def write_csv(self, name: str) -> Path:
        """A staged per-day aggregate published as ``csv/<name>.csv``."""
        from mc_pipeline.tables import storage

        target = self.root / "csv" / f"{name}.csv"
        storage.write_csv(self.tables().staged(name), target)
        return target


class McSettings(dg.ConfigurableResource):
    """Where to read, where to write and how to count. Build with ``McSettings.from_env()``."""

    openclaw_home: str = "~/.openclaw"
    data_dir: str = "./data"
    timezone: str = "UTC"
    cost_mode: str = "auto"
    task_rules_path: str = ""  # empty: the rules shipped in mc_pipeline/costing/task_rules.toml
    billing_overrides_path: str = ""  # empty: none
    full_rebuild: bool = False  # re-read every transcript instead of only new or changed ones
    interactions_db_path: str = ""  # empty: $OPENCLAW_HOME/data/interactions.db
    model_usage_log_path: str = ""  # empty: $OPENCLAW_HOME/logs/model-usage.jsonl
    usage_json_paths: str = ""  # extra places for usage-data.json + sessions.json (":" or "," separated)
    openclaw_homes: str = ""  # several named homes: name=path,name=path (MC_OPENCLAW_HOMES)
    homes_file: str = ""  # ... or a TOML file with a [homes] table (MC_OPENCLAW_HOMES_FILE)
    max_concurrent: int = (
        0  # a fleet's steps in parallel processes (MC_MAX_CONCURRENT; 0: the machine's cores)
    )

    @field_validator("cost_mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in COST_MODES:
            raise ValueError(f"MC_COST_MODE must be one of {', '.join(COST_MODES)}, not {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"MC_TIMEZONE {value!r} is not an IANA time zone (e.g. Europe/Berlin)") from exc
        return value

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> McSettings:
        env = dict(os.environ if env is None else env)
        return cls(
            openclaw_home=env.get("OPENCLAW_HOME") or default_home(),
            data_dir=env.get("MC_DATA_DIR") or "./data",
            timezone=env.get("MC_TIMEZONE") or local_timezone(),
            cost_mode=env.get("MC_COST_MODE") or "auto",
            task_rules_path=env.get("MC_TASK_RULES", ""),
            billing_overrides_path=env.get("MC_BILLING_OVERRIDES", ""),
            full_rebuild=parse_bool(env.get("MC_FULL_REBUILD")) is True,
            interactions_db_path=env.get("MC_INTERACTIONS_DB", ""),
            model_usage_log_path=env.get("MC_MODEL_USAGE_LOG", ""),
            usage_json_paths=env.get("MC_USAGE_JSON_PATHS", ""),
            openclaw_homes=env.get("MC_OPENCLAW_HOMES", ""),
            homes_file=env.get("MC_OPENCLAW_HOMES_FILE", ""),
            max_concurrent=int(env.get("MC_MAX_CONCURRENT") or 0),
        )

    def fleet(self) -> list[tuple[str, Path]]:
        """The named homes (MC_OPENCLAW_HOMES / MC_OPENCLAW_HOMES_FILE); empty: the one home OPENCLAW_HOME."""
        from mc_pipeline.runtime.config import parse_homes

        return parse_homes(self.openclaw_homes, self.homes_file)

    @property
    def home(self) -> Path:
        return Path(self.openclaw_home).expanduser()

    @property
    def data(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def home_resource(self, home: str | None = None) -> OpenClawHome:
        """The one home (OPENCLAW_HOME, MC_INTERACTIONS_DB, MC_MODEL_USAGE_LOG) or a fleet's home by name."""
        if home is None:
            return OpenClawHome(
                path=str(self.home),
                interactions_db_path=self.interactions_db_path,
                model_usage_log_path=self.model_usage_log_path,
            )
        return OpenClawHome(path=str(dict(self.fleet())[home]), name=home)

    def store_resource(self, home: str | None = None) -> DataStore:
        """$MC_DATA_DIR (publishing to MC_USAGE_JSON_PATHS too), or a fleet's home's ``homes/<name>``."""
        if home is None:
            return DataStore(data_dir=str(self.data), usage_json_paths=self.usage_json_paths)
        return DataStore(data_dir=str(self.data / "homes" / home))

    def resources(self) -> dict[str, dg.ConfigurableResource]:
        """Every resource of the code location: these settings, and a home and a store per home."""
        out: dict[str, dg.ConfigurableResource] = {"settings": self, store_key(): self.store_resource()}
        names = [name for name, _ in self.fleet()]
        for name in names or [None]:
            out[home_key(name)] = self.home_resource(name)
            if name:
                out[store_key(name)] = self.store_resource(name)
        return out

    def config(self, home: OpenClawHome, store: DataStore):
        """A home and its store with these settings, as the plain :class:`mc_pipeline.runtime.config.Config`
        the Dagster-free domain code takes."""
        from mc_pipeline.runtime.config import Config

        return Config(
            home=home.root,
            data=store.root,
            tz=self.timezone,
            cost_mode=self.cost_mode,
            task_rules_path=self.task_rules_path,
            billing_overrides_path=self.billing_overrides_path,
            interactions_db=home.interactions_db,
            model_usage_log=home.model_usage_log,
            usage_json_paths=store.usage_json_paths,
            name=home.name,
        )

    def paths(self, home: str | None = None):
        """:meth:`config` of the one home or a fleet's home by name, outside a run (the CLI, sensors)."""
        return self.config(self.home_resource(home), self.store_resource(home))


def step_resources(context, home: str | None = None) -> tuple[McSettings, OpenClawHome, DataStore]:
    """The settings, home and store of a step of ``home`` (keys: :func:`home_key`, :func:`store_key`)."""
    resources = context.resources
    return resources.settings, getattr(resources, home_key(home)), getattr(resources, store_key(home))


def step_config(context, home: str | None = None):
    """The domain :class:`mc_pipeline.runtime.config.Config` of a step of ``home``, from its resources."""
    settings, openclaw_home, store = step_resources(context, home)
    return settings.config(openclaw_home, store)


def step_resource_keys(home: str | None = None) -> set[str]:
    """What a step of ``home`` requires: the settings, the home and its store."""
    return {"settings", home_key(home), store_key(home)}
