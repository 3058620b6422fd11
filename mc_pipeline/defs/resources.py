"""Settings as a Dagster resource, fed by environment variables with defaults (listed in the README)."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
from pydantic import field_validator

from mc_pipeline.runtime.config import parse_bool
from mc_pipeline.runtime.defaults import LEGACY_HOMES, default_home, local_timezone  # noqa: F401 - Dagster-free home
from mc_pipeline.tables.schemas import COST_MODES


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

    def paths(self, home: str | None = None):
        """The settings as a plain :class:`mc_pipeline.runtime.config.Config` for the Dagster-free domain
        code; ``home``: one home of the fleet (its outputs under ``$MC_DATA_DIR/homes/<name>``)."""
        from mc_pipeline.runtime.config import Config

        if home is None:
            return Config(
                home=self.home,
                data=self.data,
                tz=self.timezone,
                cost_mode=self.cost_mode,
                task_rules_path=self.task_rules_path,
                billing_overrides_path=self.billing_overrides_path,
                interactions_db=self.interactions_db,
                model_usage_log=self.model_usage_log,
                usage_json_paths=self.usage_json_paths,
            )
        path = dict(self.fleet())[home]
        return Config(
            home=path,
            data=self.data / "homes" / home,
            tz=self.timezone,
            cost_mode=self.cost_mode,
            task_rules_path=self.task_rules_path,
            billing_overrides_path=self.billing_overrides_path,
            name=home,
        )

    @property
    def interactions_db(self) -> Path:
        """The user's own call log: MC_INTERACTIONS_DB, else $OPENCLAW_HOME/data/interactions.db."""
        return (
            Path(self.interactions_db_path).expanduser()
            if self.interactions_db_path
            else self.home / "data" / "interactions.db"
        )

    @property
    def model_usage_log(self) -> Path:
        """The user's backup log: MC_MODEL_USAGE_LOG, else $OPENCLAW_HOME/logs/model-usage.jsonl."""
        return (
            Path(self.model_usage_log_path).expanduser()
            if self.model_usage_log_path
            else self.home / "logs" / "model-usage.jsonl"
        )
