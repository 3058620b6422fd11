"""Small text renderings of frames for Dagster metadata and the command-line summary (no pandas)."""

from __future__ import annotations

import polars as pl

#: money columns: shown in dollars and cents (a preview is for reading; the tables keep every digit)
MONEY = ("cost", "_usd", "limit", "spend", "value_usd")


def is_money(column: str) -> bool:
    return column == "cost" or any(m in column for m in MONEY if m != "cost") or column.startswith("cost_")


def _cell(value: object, money: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and money:
        return f"${value:,.2f}"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.2f}"
    if isinstance(value, list):
        value = ", ".join(map(str, value[:5])) + (" …" if len(value) > 5 else "")
    return str(value).replace("|", "\\|").replace("\n", " ")[:80]


#: what a reader of a preview looks for first, after the columns that say what a row is
FIRST = (
    "calls",
    "requests",
    "cost_usd",
    "cost",
    "total_tokens",
    "tokens",
    "failed_calls",
    "error_rate",
    "success_rate",
)


def reader_order(frame: pl.DataFrame) -> list[str]:
    """Columns for a preview: the columns that say what a row is (text and dates, in their order), then the
    measures a reader wants (calls, cost, tokens, failures), then the other numbers in their order."""
    lead = [c for c, t in frame.schema.items() if not t.is_numeric() and c not in FIRST]
    wanted = [c for c in FIRST if c in frame.columns and c not in lead]
    return lead + wanted + [c for c in frame.columns if c not in lead and c not in wanted]


def markdown_table(df: pl.DataFrame, limit: int = 10, columns: list[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of the first ``limit`` rows."""
    view = df.select(columns) if columns else df
    if view.width == 0:
        return "_(no columns)_"
    head = "| " + " | ".join(view.columns) + " |"
    rule = "| " + " | ".join("---" for _ in view.columns) + " |"
    money = [is_money(c) for c in view.columns]
    rows = [
        "| " + " | ".join(_cell(v, m) for v, m in zip(row, money)) + " |"
        for row in view.head(limit).iter_rows()
    ]
    more = [f"\n_{view.height - limit:,} more rows_"] if view.height > limit else []
    if not rows:
        rows = ["| " + " | ".join("" for _ in view.columns) + " |"]
    return "\n".join([head, rule, *rows, *more])
