"""The pandera contracts of the tables mc_pipeline validates (columns are defined in
:mod:`mc_pipeline.tables.schemas`).

Rows of ``llm_calls`` that fail :class:`LlmCallsModel` are quarantined with the failed check as the reason
(:func:`mc_pipeline.calls.llm_calls.validate`); ``api_calls`` and ``quarantine`` are checked whole.
"""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl

from mc_pipeline.tables.schemas import (
    BILLINGS,
    COST_SOURCES,
    ENTRY_KINDS,
    ERROR_CLASSES,
    EXCERPT_CHARS,
    SOURCES,
    STATUSES,
)

_NON_NEG = {"ge": 0}


class LlmCallsModel(pa.DataFrameModel):
    """pandera model of ``LLM_CALLS``: rows failing it go to quarantine, the rest are the table."""

    call_id: str = pa.Field(unique=True)
    source: str = pa.Field(isin=SOURCES)
    entry_kind: str = pa.Field(nullable=True, isin=ENTRY_KINDS)
    agent_id: str = pa.Field(nullable=True)
    session_id: str = pa.Field(nullable=True)
    timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field()
    day: pl.Date = pa.Field()
    provider: str = pa.Field(str_length={"min_value": 1})
    model: str = pa.Field(str_length={"min_value": 1})
    task_type: str = pa.Field()
    task_rule: str = pa.Field()
    billing: str = pa.Field(isin=BILLINGS)
    input_tokens: int = pa.Field(**_NON_NEG)
    output_tokens: int = pa.Field(**_NON_NEG)
    cache_read_tokens: int = pa.Field(**_NON_NEG)
    cache_write_tokens: int = pa.Field(**_NON_NEG)
    thinking_tokens: int = pa.Field(nullable=True, **_NON_NEG)
    thinking_estimated: bool = pa.Field()
    total_tokens: int = pa.Field(**_NON_NEG)
    cost_recorded_usd: float = pa.Field(nullable=True, ge=0)
    cost_calculated_usd: float = pa.Field(nullable=True, ge=0)
    cost_usd: float = pa.Field(nullable=True, ge=0)
    cost_source: str = pa.Field(isin=COST_SOURCES)
    status: str = pa.Field(isin=STATUSES)
    error_class: str = pa.Field(nullable=True, isin=ERROR_CLASSES)
    tool_calls: int = pa.Field(**_NON_NEG)

    class Config:
        strict = False  # extra columns are allowed (the contract only grows)
        coerce = False


class QuarantineModel(pa.DataFrameModel):
    source: str = pa.Field()
    source_file: str = pa.Field(nullable=True)
    line_no: int = pa.Field(nullable=True, ge=0)
    reason: str = pa.Field(str_length={"min_value": 1})
    excerpt: str = pa.Field(nullable=True, str_length={"max_value": EXCERPT_CHARS})

    class Config:
        strict = True


class ApiCallsModel(pa.DataFrameModel):
    """pandera model of ``API_CALLS``."""

    timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field()
    day: pl.Date = pa.Field()
    service: str = pa.Field(nullable=True)
    endpoint: str = pa.Field(nullable=True)
    method: str = pa.Field(nullable=True)
    status_code: pl.Int32 = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 999})
    duration_ms: int = pa.Field(nullable=True, ge=0)
    ok: bool = pa.Field(nullable=True)
    error_class: str = pa.Field(nullable=True, isin=ERROR_CLASSES)

    class Config:
        strict = True
        coerce = False
