"""The pandera contracts of the tables mc_pipeline validates, generated from their column specs in
:mod:`mc_pipeline.tables.schemas` (so a contract cannot drift from its table: every column of the spec is
checked for its dtype, its nullability and the checks its :class:`~mc_pipeline.tables.schemas.Column` names).

Rows of ``llm_calls`` that fail :data:`LlmCallsModel` are quarantined with the failed check as the reason
(:func:`mc_pipeline.calls.llm_calls.validate`); ``api_calls`` and ``quarantine`` are checked whole.
"""

from __future__ import annotations

import pandera.polars as pa

from mc_pipeline.tables.schemas import API_CALLS_SPEC, LLM_CALLS_SPEC, QUARANTINE_SPEC, Column, Spec


def checks(column: Column) -> list[pa.Check]:
    """The value checks a column's spec names (dtype and nullability are the pandera Column's own)."""
    out = []
    if column.isin is not None:
        out.append(pa.Check.isin(column.isin))
    if column.ge is not None:
        out.append(pa.Check.ge(column.ge))
    if column.in_range is not None:
        out.append(pa.Check.in_range(*column.in_range))
    if column.str_min is not None or column.str_max is not None:
        out.append(pa.Check.str_length(min_value=column.str_min, max_value=column.str_max))
    return out


def contract(spec: Spec, name: str, *, strict: bool) -> pa.DataFrameSchema:
    """The pandera schema of a spec. ``strict``: a column the spec does not name fails it (else allowed: the
    contract only grows). Types are never coerced: a frame of the wrong types is a bug, not bad data."""
    return pa.DataFrameSchema(
        {
            c.name: pa.Column(
                c.dtype,
                checks=checks(c),
                nullable=c.nullable,
                unique=c.unique,
                description=c.description,
            )
            for c in spec
        },
        strict=strict,
        coerce=False,
        name=name,
    )


#: ``LLM_CALLS``: rows failing it go to quarantine, the rest are the table. Extra columns are allowed.
LlmCallsModel = contract(LLM_CALLS_SPEC, "LlmCallsModel", strict=False)
#: ``QUARANTINE``, exactly its columns.
QuarantineModel = contract(QUARANTINE_SPEC, "QuarantineModel", strict=True)
#: ``API_CALLS``, exactly its columns.
ApiCallsModel = contract(API_CALLS_SPEC, "ApiCallsModel", strict=True)

#: Table name -> its contract (the tables that have one).
CONTRACTS: dict[str, pa.DataFrameSchema] = {
    "llm_calls": LlmCallsModel,
    "quarantine": QuarantineModel,
    "api_calls": ApiCallsModel,
}
