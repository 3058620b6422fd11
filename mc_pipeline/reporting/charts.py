"""Small pictures for Dagster metadata: a hand-written SVG (no plotting library) as a markdown data URI.

``daily_cost_svg`` draws daily cost stacked by provider; ``markdown_image`` wraps any SVG so the Dagster
UI shows it inline in an asset's materialisation metadata. Pure: frames in, text out.
"""

from __future__ import annotations

import base64
from datetime import date, timedelta
from html import escape

import polars as pl

PALETTE = ("#6366f1", "#14b8a6", "#f97316", "#22c55e", "#eab308", "#ef4444", "#a855f7", "#64748b")
WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 130, 16, 36


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** len(str(int(value))) / 10 if value >= 1 else 0.1
    while step * 10 < value:
        step *= 10
    top = step
    while top < value:
        top += step / 2 if step >= 1 else step
    return top


def _costs_by_provider(
    usage_daily: pl.DataFrame, start: date, today: date
) -> tuple[dict[tuple[date, str], float], list[str]]:
    """Cost per (day, provider) of the days shown, providers past the seventh as "other"; and the legend."""
    frame = (
        usage_daily.filter(pl.col("day").is_between(start, today))
        .group_by("day", "provider")
        .agg(cost=pl.col("cost_usd").sum())
    )
    totals = (
        frame.group_by("provider")
        .agg(pl.col("cost").sum())
        .sort(["cost", "provider"], descending=[True, False])
    )
    names = totals.get_column("provider").to_list()
    keep = names[: len(PALETTE) - 1]
    frame = frame.with_columns(
        provider=pl.when(pl.col("provider").is_in(keep)).then(pl.col("provider")).otherwise(pl.lit("other"))
    )
    legend = keep + (["other"] if len(names) > len(keep) else [])
    cost = {(d, p): c for d, p, c in frame.group_by("day", "provider").agg(pl.col("cost").sum()).iter_rows()}
    return cost, legend


def _y_axis(top: float, plot_w: float, plot_h: float) -> list[str]:
    """The horizontal grid lines and their dollar labels, from $0 to ``top``."""
    parts = []
    for i in range(5):
        v = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end" fill="#374151">${v:,.2f}</text>'
        )
    return parts


def _bars(
    cost: dict[tuple[date, str], float], legend: list[str], start: date, days: int, top: float, plot_h: float
) -> list[str]:
    """One stack of provider rectangles per day (a tooltip each), and a date label every seventh day."""
    parts = []
    bar_w = (WIDTH - LEFT - RIGHT) / days
    for i in range(days):
        day = start + timedelta(days=i)
        x = LEFT + i * bar_w
        y = TOP + plot_h
        for j, provider in enumerate(legend):
            c = cost.get((day, provider), 0.0)
            if c <= 0:
                continue
            h = plot_h * c / top
            y -= h
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{day} {escape(provider)}: ${c:,.4f}</title></rect>"
            )
        if i % 7 == (days - 1) % 7:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{TOP + plot_h + 14}" text-anchor="middle" fill="#374151">'
                f"{day.strftime('%m-%d')}</text>"
            )
    return parts


def _legend(legend: list[str]) -> list[str]:
    """A colour swatch and the name (cut to 18 characters) of each provider, right of the plot."""
    parts = []
    for j, provider in enumerate(legend):
        y = TOP + 4 + j * 16
        colour = PALETTE[j % len(PALETTE)]
        parts.append(f'<rect x="{WIDTH - RIGHT + 10}" y="{y}" width="10" height="10" fill="{colour}"/>')
        parts.append(
            f'<text x="{WIDTH - RIGHT + 24}" y="{y + 9}" fill="#111827">{escape(provider[:18])}</text>'
        )
    return parts


def daily_cost_svg(
    usage_daily: pl.DataFrame, today: date, days: int = 30, title: str = "Daily cost by provider (USD)"
) -> str:
    """Stacked bars: one per calendar day of the last ``days`` (ending today), one colour per provider.

    Unpriced calls have no cost and add nothing; the legend names providers by total cost, largest first
    (beyond seven, the rest are drawn as "other").
    """
    start = today - timedelta(days=days - 1)
    cost, legend = _costs_by_provider(usage_daily, start, today)
    day_totals = [sum(cost.get((start + timedelta(days=i), p), 0.0) for p in legend) for i in range(days)]
    top = _nice_max(max(day_totals, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="10">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
    ]
    parts += _y_axis(top, plot_w, plot_h)
    parts += _bars(cost, legend, start, days, top, plot_h)
    parts += _legend(legend)
    if not legend:
        parts.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" fill="#6b7280">'
            "no priced calls in these days</text>"
        )
    parts.append(
        f'<text x="{LEFT}" y="{HEIGHT - 6}" fill="#6b7280">{escape(title)}, {start} to {today}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def markdown_image(svg: str, alt: str = "chart") -> str:
    """Markdown showing ``svg`` inline (a base64 data URI: no file, no network)."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f"![{alt}](data:image/svg+xml;base64,{data})"
