"""The settings of one pipeline, Dagster-free: where to read, where to write, how to count.

``defs/resources.py`` (``McSettings``) fills this from environment variables for the Dagster layer; the
domain code (readers, builders, the CLI's report) takes a :class:`Config` so it runs without Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    home: Path  # the OpenClaw home (read-only)
    data: Path  # MC_DATA_DIR, resolved
    tz: str = "UTC"
    cost_mode: str = "auto"
    task_rules_path: str = ""
    billing_overrides_path: str = ""
    interactions_db: Path | None = None  # default: <home>/data/interactions.db
    model_usage_log: Path | None = None  # default: <home>/logs/model-usage.jsonl
    usage_json_paths: str = ""

    @property
    def interactions_db_path(self) -> Path:
        return self.interactions_db or self.home / "data" / "interactions.db"

    @property
    def model_usage_log_path(self) -> Path:
        return self.model_usage_log or self.home / "logs" / "model-usage.jsonl"

    @property
    def staging(self) -> Path:
        return self.data / "staging"
