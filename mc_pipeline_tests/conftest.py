"""Fixtures shared by the test files: running the code location's refresh job in process over one home.

Dagster is imported when a refresh runs, not when this file loads, so tests of the Dagster-free paths stay so.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def run_refresh(home: Path, data: Path, instance=None, *, raise_on_error: bool = True, **settings):
    """The ``refresh_all`` job of ``build_defs(McSettings(openclaw_home=home, data_dir=data, ...))`` run in
    process; ``settings``: other McSettings fields (``timezone`` defaults to UTC). ``instance``: the Dagster
    instance to record the run in (a throwaway test instance when None). Returns the
    ExecuteInProcessResult."""
    import dagster as dg

    from mc_pipeline.definitions import build_defs
    from mc_pipeline.defs.automation import REFRESH_JOB
    from mc_pipeline.defs.resources import McSettings

    settings.setdefault("timezone", "UTC")
    job = build_defs(McSettings(openclaw_home=str(home), data_dir=str(data), **settings)).resolve_job_def(
        REFRESH_JOB
    )
    if instance is not None:
        return job.execute_in_process(instance=instance, raise_on_error=raise_on_error)
    with dg.instance_for_test() as fresh:
        return job.execute_in_process(instance=fresh, raise_on_error=raise_on_error)


@pytest.fixture(scope="session")
def refresh():
    """``refresh(home, data, instance=None, *, raise_on_error=True, **settings)``: see :func:`run_refresh`."""
    return run_refresh
