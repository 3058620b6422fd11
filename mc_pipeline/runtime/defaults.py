"""Defaults taken from the machine when the environment does not say: the OpenClaw home and the time zone.

No Dagster here: ``McSettings`` (``defs/resources.py``) and the CLI's no-op check (``run_fingerprint``),
which runs before Dagster is imported, both use these.
"""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Homes of older installs, tried in order when OPENCLAW_HOME is not set and ~/.openclaw is missing.
LEGACY_HOMES = ("~/.clawdbot", "~/.moltbot")


def local_timezone() -> str:
    """The machine's IANA zone (TZ, /etc/timezone, the /etc/localtime link), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    try:
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if name:
            try:
                ZoneInfo(name)
                return name
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return "UTC"


def default_home() -> str:
    """OPENCLAW_HOME, else OPENCLAW_STATE_DIR (OpenClaw's own name for the folder holding ``agents/`` and
    ``state/``), else ``~/.openclaw`` (or an older install's folder when only that exists)."""
    for var in ("OPENCLAW_HOME", "OPENCLAW_STATE_DIR"):
        if os.environ.get(var):
            return os.environ[var]
    home = Path("~/.openclaw").expanduser()
    if not home.exists():
        for legacy in LEGACY_HOMES:
            if Path(legacy).expanduser().exists():
                return legacy
    return "~/.openclaw"
