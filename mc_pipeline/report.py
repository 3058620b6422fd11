"""Small text renderings of frames for Dagster metadata and the command-line summary (no pandas)."""

from __future__ import annotations

import polars as pl


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.2f}"
    if isinstance(value, list):
        value = ", ".join(map(str, value[:5])) + (" …" if len(value) > 5 else "")
    return str(value).replace("|", "\\|").replace("\n", " ")[:80]


def markdown_table(df: pl.DataFrame, limit: int = 10, columns: list[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of the first ``limit`` rows."""
    view = df.select(columns) if columns else df
    if view.width == 0:
        return "_(no columns)_"
    head = "| " + " | ".join(view.columns) + " |"
    rule = "| " + " | ".join("---" for _ in view.columns) + " |"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in view.head(limit).iter_rows()]
    more = [f"\n_{view.height - limit:,} more rows_"] if view.height > limit else []
    if not rows:
        rows = ["| " + " | ".join("" for _ in view.columns) + " |"]
    return "\n".join([head, rule, *rows, *more])
