"""The column specs of :mod:`mc_pipeline.tables.schemas` as Dagster sees them: ``dagster/column_schema``
metadata (the UI's column list with descriptions; private columns tagged ``PII``) on the asset definitions and
materialisations of every table that has a spec, and checks that the columns did not change between two
materialisations."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import dagster as dg

from mc_pipeline.tables.schemas import TABLES, Column

# the schema-change checks are "beta" in Dagster 1.13; we use them knowingly: say so once here instead of a
# warning on every load of the code location
warnings.filterwarnings("ignore", message="Function `build_column_schema_change_checks` is currently in beta")

COLUMN_SCHEMA = "dagster/column_schema"
#: How a private column is tagged (the tag the Dagster demo project hooli-data-eng-pipelines puts on PII).
PRIVATE_TAG = {"PII": ""}


def _other_constraints(c: Column) -> list[str]:
    """The spec's checks, in words (shown beside nullable in the UI)."""
    out = []
    if c.isin is not None:
        out.append(f"one of {', '.join(c.isin)}")
    if c.ge is not None:
        out.append(f">= {c.ge:g}")
    if c.in_range is not None:
        out.append(f"between {c.in_range[0]} and {c.in_range[1]}")
    if c.str_min is not None:
        out.append(f"at least {c.str_min} character(s)")
    if c.str_max is not None:
        out.append(f"at most {c.str_max} characters")
    return out


def table_column(c: Column) -> dg.TableColumn:
    return dg.TableColumn(
        name=c.name,
        type=str(c.dtype),  # Polars' own name: String, Int64, Datetime(time_unit='us', time_zone='UTC'), ...
        description=c.description,
        constraints=dg.TableColumnConstraints(
            nullable=c.nullable, unique=c.unique, other=_other_constraints(c) or None
        ),
        tags=PRIVATE_TAG if c.private else None,
    )


def column_schema(table: str) -> dg.TableSchema:
    """The columns of a table (a key of ``schemas.TABLES``) in order, as Dagster's TableSchema."""
    return dg.TableSchema(columns=[table_column(c) for c in TABLES[table]])


def table_metadata(table: str) -> dict[str, dg.TableSchema]:
    """``{"dagster/column_schema": ...}`` of a table, to merge into an asset's definition or materialisation
    metadata; empty for a name without a spec (so it can be merged into any asset's metadata)."""
    return {COLUMN_SCHEMA: column_schema(table)} if table in TABLES else {}


def schema_change_checks(assets: Iterable) -> list[dg.AssetChecksDefinition]:
    """``column_schema_change`` (WARN) on every unpartitioned asset whose definition carries a column schema:
    its latest materialisation has the same columns and types as the one before.

    Not on the day-partitioned ``llm_calls`` and ``usage_daily``: a refresh run does not select them (it
    records their days from ``day_tables``), so the check would never run with them, and "the two latest
    materialisations" are two different days, not two versions of the table."""
    keys = [
        key
        for a in assets
        if isinstance(a, dg.AssetsDefinition)
        for key, spec in a.specs_by_key.items()
        if spec.partitions_def is None and COLUMN_SCHEMA in (spec.metadata or {})
    ]
    return list(dg.build_column_schema_change_checks(assets=keys)) if keys else []
