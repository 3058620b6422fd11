"""dagster-postgres's storages, opening a ``postgresql://`` URL with psycopg2 (what dagster-postgres is
written for), as ``dagster.yaml``'s ``storage: custom:`` when $MC_DAGSTER_POSTGRES_URL is set.

SQLAlchemy 2.1 (installed with dagster 1.13) opens a plain ``postgresql://`` URL with psycopg 3, whose
server-side parameters break dagster-postgres's ``NOTIFY run_events, %(id)s``; a user should not have to
know to write ``postgresql+psycopg2://``. These are the stock classes with that one change to the URL
(made in memory: the URL stays an environment variable reference in ``dagster.yaml``).
"""

from __future__ import annotations

from dagster._serdes import ConfigurableClassData
from dagster_postgres import (
    DagsterPostgresStorage,
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from dagster_postgres.utils import pg_url_from_config

DRIVER = "postgresql+psycopg2://"


def psycopg2_url(url: str) -> str:
    """``postgresql://`` or ``postgres://`` with the psycopg2 driver named; any other URL as it is."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return DRIVER + url[len(prefix) :]
    return url


def _from_config(cls, inst_data: ConfigurableClassData | None, config_value):
    return cls(
        postgres_url=psycopg2_url(pg_url_from_config(config_value)),
        should_autocreate_tables=config_value.get("should_autocreate_tables", True),
        inst_data=inst_data,
    )


class RunStorage(PostgresRunStorage):
    from_config_value = classmethod(_from_config)


class EventLogStorage(PostgresEventLogStorage):
    from_config_value = classmethod(_from_config)


class ScheduleStorage(PostgresScheduleStorage):
    from_config_value = classmethod(_from_config)


class Storage(DagsterPostgresStorage):
    """Runs, event logs and schedules in one Postgres database (``storage: custom:`` in dagster.yaml)."""

    from_config_value = classmethod(_from_config)

    def _part(self, name: str) -> ConfigurableClassData | None:
        return ConfigurableClassData(__name__, name, self.inst_data.config_yaml) if self.inst_data else None

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return self._part("EventLogStorage")

    @property
    def run_storage_data(self) -> ConfigurableClassData | None:
        return self._part("RunStorage")

    @property
    def schedule_storage_data(self) -> ConfigurableClassData | None:
        return self._part("ScheduleStorage")
