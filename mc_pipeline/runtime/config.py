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
    name: str = ""  # the home's name in a fleet (MC_OPENCLAW_HOMES); empty for the one home

    @property
    def interactions_db_path(self) -> Path:
        return self.interactions_db or self.home / "data" / "interactions.db"

    @property
    def model_usage_log_path(self) -> Path:
        return self.model_usage_log or self.home / "logs" / "model-usage.jsonl"

    @property
    def staging(self) -> Path:
        return self.data / "staging"


class HomesError(ValueError):
    """MC_OPENCLAW_HOMES or its file cannot be used, named with why."""


def parse_homes(value: str = "", file: str = "") -> list[tuple[str, Path]]:
    """(name, path) of each named home: ``name=path,name=path`` and/or a TOML file with a ``[homes]`` table
    (``name = "path"``). Names are what agent ids are qualified with (``<name>/<agent>``) and Dagster asset
    key prefixes: letters, digits and ``_`` only."""
    import re
    import tomllib

    pairs: list[tuple[str, str]] = []
    for part in [p.strip() for p in value.split(",") if p.strip()]:
        name, sep, path = part.partition("=")
        if not sep or not path.strip():
            raise HomesError(f"MC_OPENCLAW_HOMES: {part!r} is not name=path")
        pairs.append((name.strip(), path.strip()))
    if file:
        try:
            doc = tomllib.loads(Path(file).expanduser().read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise HomesError(f"MC_OPENCLAW_HOMES_FILE {file}: cannot read ({exc})") from exc
        table = doc.get("homes")
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise HomesError(f'MC_OPENCLAW_HOMES_FILE {file}: needs a [homes] table of name = "path"')
        pairs += list(table.items())
    seen: set[str] = set()
    out = []
    for name, path in pairs:
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise HomesError(f"home name {name!r}: use letters, digits and _ only")
        if name in seen:
            raise HomesError(f"home name {name!r} given twice")
        seen.add(name)
        out.append((name, Path(path).expanduser()))
    return out


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(text: str | None) -> bool | None:
    """A yes/no setting or run tag: ``1``/``true``/``yes``/``on`` -> True, ``0``/``false``/``no``/``off`` ->
    False (any case, surrounding spaces ignored); None for anything else, empty or missing included, so the
    caller decides between a default and an error."""
    word = (text or "").strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None
