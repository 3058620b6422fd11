"""Tests of mc_pipeline.costing.pricing against genai-prices itself and a real transcript."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import genai_prices
import polars as pl
import pytest
from genai_prices import Usage

from mc_pipeline.costing import pricing
from mc_pipeline.costing.pricing import price_calls, price_calls_and_table, price_table, unpriced_models
from mc_pipeline_tests import homes as h

SCHEMA: dict[str, pl.DataType] = {
    "provider": pl.String(),
    "model": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "cache_read_tokens": pl.Int64(),
    "cache_write_tokens": pl.Int64(),
    "cost_recorded_usd": pl.Float64(),
}
REAL = h.REAL_DIR  # the one path helper the tests share


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """Rows of (provider, model, timestamp, input, output, cache_read, cache_write[, recorded])."""
    full = [row if len(row) == 8 else (*row, None) for row in rows]
    return pl.DataFrame(full, schema=SCHEMA, orient="row")


def library_cost(
    provider_id: str | None, model: str, when: datetime, i: int, o: int, cr: int, cw: int
) -> float:
    """What genai-prices charges for one call (its input_tokens is TOTAL input)."""
    usage = Usage(input_tokens=i + cr + cw, output_tokens=o, cache_read_tokens=cr, cache_write_tokens=cw)
    calc = genai_prices.calc_price(usage, model, provider_id=provider_id, genai_request_timestamp=when)
    return float(calc.total_price)


class Case(NamedTuple):
    provider: str  # OpenClaw's
    model: str
    when: datetime
    tokens: tuple[int, int, int, int]  # input (uncached), output, cache read, cache write
    genai_provider: str | None = None  # default: same as provider
    price_model_id: str | None = None  # default: same as model


CASES = [
    Case("anthropic", "claude-opus-4-5", ts(2025, 12, 2, 9), (812, 1500, 40_000, 3_000)),
    Case(
        "anthropic", "claude-opus-4-5-20251101", ts(2026, 2, 1), (5, 90, 150_000, 0), None, "claude-opus-4-5"
    ),
    # prompt 199k: base rates; 251k: the >200k tier
    Case("anthropic", "claude-sonnet-4-5", ts(2025, 11, 21, 3), (2_000, 700, 190_000, 7_000)),
    Case("anthropic", "claude-sonnet-4-5", ts(2025, 11, 21, 4), (2_000, 700, 240_000, 9_000)),
    Case(
        "openai-codex", "gpt-5.1-codex", ts(2025, 11, 20, 23), (30_000, 4_000, 6_000, 0), "openai", "gpt-5.1"
    ),
    # no cache-write price: cache writes are billed at the input rate
    Case("openai", "gpt-5.1", ts(2025, 12, 8), (3_000, 500, 1_000, 5_000)),
    Case("openrouter", "minimax/minimax-m2.1", ts(2026, 1, 3), (9_000, 800, 20_000, 0)),
    Case("google-gemini-cli", "gemini-3-pro-preview", ts(2025, 12, 1), (50_000, 900, 0, 0), "google"),
    Case("google", "gemini-3-pro-preview", ts(2026, 1, 10), (150_000, 900, 60_000, 0)),  # 210k: tier
    Case("google-vertex", "gemini-2.5-flash", ts(2025, 10, 1), (10_000, 300, 2_000, 0), "google"),
    Case("xai", "grok-code-fast-1", ts(2025, 12, 5), (10_000, 300, 2_000, 0), "x-ai"),
    Case("zai", "glm-4.7", ts(2026, 1, 5), (10_000, 300, 2_000, 0), None, "GLM-4.7"),
    Case("deepseek", "deepseek-chat", ts(2025, 12, 5, 0, 10), (10_000, 300, 2_000, 0)),  # off-peak
    Case("deepseek", "deepseek-chat", ts(2025, 12, 5, 12), (10_000, 300, 2_000, 0)),  # peak
    Case("openai", "o3", ts(2025, 6, 9, 23, 59), (10_000, 3_000, 0, 0)),  # the day before the price cut
    Case("openai", "o3", ts(2025, 6, 10, 0, 1), (10_000, 3_000, 0, 0)),
]


def test_costs_equal_calc_price_per_row() -> None:
    out = price_calls(frame([(c.provider, c.model, c.when, *c.tokens) for c in CASES]), mode="calculate")
    for case, got, model_id in zip(CASES, out["cost_calculated_usd"], out["price_model_id"], strict=True):
        assert model_id == (case.price_model_id or case.model), case
        want = library_cost(case.genai_provider or case.provider, case.model, case.when, *case.tokens)
        assert got == pytest.approx(want, rel=1e-12), case
    assert out["cost_source"].to_list() == ["calculated"] * len(CASES)


def test_price_as_of_the_call_day() -> None:
    out = price_calls(frame([(c.provider, c.model, c.when, *c.tokens) for c in CASES]), mode="calculate")
    o3_before, o3_after = out["cost_calculated_usd"][-2], out["cost_calculated_usd"][-1]
    assert o3_after == pytest.approx(o3_before / 5)  # o3 was cut by 80% on 2025-06-10
    peak, off_peak = out["cost_calculated_usd"][-3], out["cost_calculated_usd"][-4]
    assert off_peak == pytest.approx(peak / 2)  # DeepSeek off-peak (16:30-00:30 UTC) is half price


def test_sonnet_tier_is_decided_per_row_from_the_prompt_size() -> None:
    when = ts(2025, 11, 21, 12)
    # prompt = input + cache read + cache write: 200_000 is on the base rate, 200_001 is over the tier
    rows = [
        ("anthropic", "claude-sonnet-4-5", when, 1_000, 1_000, 199_000, 0),
        ("anthropic", "claude-sonnet-4-5", when, 1_001, 1_000, 199_000, 0),
        ("anthropic", "claude-sonnet-4-5", when, 1_000, 1_000, 150_000, 0),
        ("anthropic", "claude-sonnet-4-5", when, 1_000, 1_000, 150_000, 0),
    ]
    costs = price_calls(frame(rows), mode="calculate")["cost_calculated_usd"].to_list()
    base = (1_000 * 3 + 1_000 * 15 + 199_000 * 0.3) / 1e6
    tier = (1_001 * 6 + 1_000 * 22.5 + 199_000 * 0.6) / 1e6
    assert costs[0] == pytest.approx(base)
    assert costs[1] == pytest.approx(tier)
    for cost, row in zip(costs, rows, strict=True):
        assert cost == pytest.approx(library_cost("anthropic", row[1], when, *row[3:7]))
    # two 151k-prompt calls are two base-rate calls, never one 302k-prompt call on the tier
    assert costs[2] + costs[3] == pytest.approx(2 * (1_000 * 3 + 1_000 * 15 + 150_000 * 0.3) / 1e6)


def test_price_table_has_a_row_per_band() -> None:
    table = price_table(frame([("anthropic", "claude-sonnet-4-5", ts(2025, 11, 21), 1, 1, 0, 0)]))
    assert table.select("prompt_tokens_over", "prompt_tokens_upto", "input_usd_per_mtok").rows() == [
        (None, 200_000, 3.0),
        (200_000, None, 6.0),
    ]
    assert table["cache_read_usd_per_mtok"].to_list() == [0.3, 0.6]
    assert table["matched_by"].to_list() == ["provider", "provider"]


def test_unknown_models_are_unpriced_not_priced_by_a_relative() -> None:
    when = ts(2025, 12, 1)
    rows = [
        ("anthropic", "claude-opus-4-9", when, 1000, 100, 0, 0, 0.0),
        ("google", "gemini-1.5-flash-8b", when, 1000, 100, 0, 0, 0.0),  # the library says gemini-1.5-flash
        ("anthropic", "claude-sonnet-4-5-foo", when, 1000, 100, 0, 0, None),  # ... says claude-sonnet-4-5
        ("ollama", "deepseek-r1:14b", when, 1000, 100, 0, 0, 0.0),  # ... says the DeepSeek API's R1
        ("my-gateway", "totally-new-model", when, 1000, 100, 0, 0, None),
        (None, None, when, 1000, 100, 0, 0, None),
    ]
    # genai-prices on its own prices three of them with another model's price
    assert library_cost("google", "gemini-1.5-flash-8b", when, 1000, 100, 0, 0) > 0
    assert library_cost("anthropic", "claude-sonnet-4-5-foo", when, 1000, 100, 0, 0) > 0
    assert library_cost(None, "deepseek-r1:14b", when, 1000, 100, 0, 0) > 0
    out = price_calls(frame(rows))
    assert out["cost_calculated_usd"].null_count() == len(rows)
    assert out["cost_usd"].null_count() == len(rows)
    assert out["price_model_id"].null_count() == len(rows)
    assert out["cost_source"].to_list() == ["unpriced"] * len(rows)
    unpriced = unpriced_models(price_table(frame(rows)))
    assert unpriced.height == len(rows)
    assert unpriced["unpriced_reason"].null_count() == 0
    reasons = dict(zip(unpriced["model"], unpriced["unpriced_reason"], strict=True))
    assert "only loosely matches google/gemini-1.5-flash" in reasons["gemini-1.5-flash-8b"]
    assert "local runtime" in reasons["deepseek-r1:14b"]


def test_gateway_and_copilot_ids_fall_back_to_the_model() -> None:
    when = ts(2025, 12, 1)
    rows = [
        ("github-copilot", "claude-sonnet-4.5", when, 1000, 100, 0, 0),  # not in Copilot's table
        ("vercel-ai-gateway", "anthropic/claude-sonnet-4.5", when, 1000, 100, 0, 0),
        ("amazon-bedrock", "us.anthropic.claude-opus-4-5-20251101-v1:0", when, 1000, 100, 0, 0),
        ("google-vertex", "claude-sonnet-4-5@20250929", when, 1000, 100, 0, 0),
    ]
    out, table = price_calls_and_table(frame(rows), mode="calculate")
    assert out["price_model_id"].to_list() == [
        "claude-sonnet-4-5",
        "claude-sonnet-4-5",
        "regional.anthropic.claude-opus-4-5-v1:0",
        "claude-sonnet-4-5",
    ]
    matched_by = dict(zip(table["model"], table["matched_by"], strict=True))
    assert matched_by == {
        "claude-sonnet-4.5": "model",
        "anthropic/claude-sonnet-4.5": "model-prefix",
        "us.anthropic.claude-opus-4-5-20251101-v1:0": "provider",
        "claude-sonnet-4-5@20250929": "provider",
    }
    sonnet = library_cost("anthropic", "claude-sonnet-4-5", when, 1000, 100, 0, 0)
    assert out["cost_calculated_usd"][0] == pytest.approx(sonnet)
    assert out["cost_calculated_usd"][1] == pytest.approx(sonnet)


# (recorded, priced?) -> (cost_usd, cost_source) per mode; the priced model costs PRICED_COST
PRICED_COST = (1_000 * 5 + 100 * 25) / 1e6  # claude-opus-4-5: $5 in, $25 out per MTok
MODE_CASES = [
    # recorded, priced, auto, calculate, display
    (0.5, True, (0.5, "recorded"), (PRICED_COST, "calculated"), (0.5, "recorded")),
    (0.0, True, (PRICED_COST, "calculated"), (PRICED_COST, "calculated"), (0.0, "recorded")),
    (None, True, (PRICED_COST, "calculated"), (PRICED_COST, "calculated"), (None, "unpriced")),
    (0.5, False, (0.5, "recorded"), (None, "unpriced"), (0.5, "recorded")),
    (0.0, False, (None, "unpriced"), (None, "unpriced"), (0.0, "recorded")),
    (None, False, (None, "unpriced"), (None, "unpriced"), (None, "unpriced")),
]


@pytest.mark.parametrize(("mode", "column"), [("auto", 2), ("calculate", 3), ("display", 4)])
def test_cost_modes(mode: str, column: int) -> None:
    rows = [
        (
            "anthropic",
            "claude-opus-4-5" if priced else "claude-opus-4-9",
            ts(2025, 12, 1),
            1_000,
            100,
            0,
            0,
            rec,
        )
        for rec, priced, *_ in MODE_CASES
    ]
    out = price_calls(frame(rows), mode=mode)
    for case, cost, source in zip(MODE_CASES, out["cost_usd"], out["cost_source"], strict=True):
        want_cost, want_source = case[column]
        assert source == want_source, (mode, case)
        assert cost == (None if want_cost is None else pytest.approx(want_cost)), (mode, case)
    assert out["cost_calculated_usd"].to_list()[:3] == [pytest.approx(PRICED_COST)] * 3


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown cost mode 'cheap'"):
        price_calls(frame([]), mode="cheap")


def test_library_is_called_once_per_provider_model_day(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None, datetime]] = []

    def counting(usage: Any, model_ref: str, **kwargs: Any) -> Any:
        seen.append((model_ref, kwargs.get("provider_id"), kwargs["genai_request_timestamp"]))
        return genai_prices.calc_price(usage, model_ref, **kwargs)

    monkeypatch.setattr(pricing, "calc_price", counting)
    models = [
        ("anthropic", "claude-sonnet-4-5"),
        ("openai-codex", "gpt-5.1-codex"),
        ("google", "gemini-2.5-pro"),
    ]
    rows = [
        (provider, model, ts(2025, 11, day, hour), 1_000 * hour, 10, 50_000 * hour, 0)
        for provider, model in models
        for day in (20, 21)
        for hour in range(1, 8)  # prompts from 51k to 357k: both sides of the 200k tiers
    ]
    out = price_calls(frame(rows * 50))
    assert out.height == len(rows) * 50
    assert len(seen) == len(models) * 2
    assert len(set(seen)) == len(seen)
    assert {when for _, _, when in seen} == {ts(2025, 11, 20), ts(2025, 11, 21)}


def test_empty_frame_gives_typed_columns() -> None:
    out = price_calls(frame([]).with_columns(pl.lit("x").alias("call_id")))
    assert out.height == 0
    assert out.schema == {**SCHEMA, "call_id": pl.String(), **pricing.OUTPUT_COLUMNS}
    assert price_table(frame([])).schema == pricing.PRICE_TABLE


def test_null_tokens_count_as_zero() -> None:
    when = ts(2025, 12, 1)
    out = price_calls(
        frame(
            [
                ("anthropic", "claude-opus-4-5", when, 1_000, 100, None, None),
                ("anthropic", "claude-opus-4-5", when, None, None, None, None),
            ]
        )
    )
    assert out["cost_calculated_usd"].to_list() == [pytest.approx(PRICED_COST), 0.0]


def test_other_columns_pass_through_and_outputs_are_overwritten_in_place() -> None:
    base = frame([("anthropic", "claude-opus-4-5", ts(2025, 12, 1), 1_000, 100, 0, 0, 9.0)] * 2)
    calls = base.with_columns(
        pl.Series("call_id", ["a", "b"]),
        pl.Series("tool_names", [["read"], []]),
        pl.lit("stale").alias("cost_source"),
        pl.Series("day", [datetime(2025, 12, 1).date()] * 2),  # the local-time day of the contract
    )
    out = price_calls(calls, mode="calculate")
    assert out.columns == [*calls.columns, "cost_calculated_usd", "cost_usd", "price_model_id"]
    untouched = [c for c in calls.columns if c != "cost_source"]
    assert out.select(untouched).equals(calls.select(untouched))
    assert out["cost_source"].to_list() == ["calculated", "calculated"]
    assert out["cost_recorded_usd"].to_list() == [9.0, 9.0]


def real_calls(path: Path) -> pl.DataFrame:
    rows = []
    for line in path.read_text().splitlines():
        entry = json.loads(line) if line.strip() else {}
        message = entry.get("message") or {}
        if entry.get("type") != "message" or message.get("role") != "assistant":
            continue
        usage = message.get("usage") or {}
        rows.append(
            (
                message.get("provider"),
                message.get("model"),
                datetime.fromtimestamp(message["timestamp"] / 1000, UTC),
                usage.get("input"),
                usage.get("output"),
                usage.get("cacheRead"),
                usage.get("cacheWrite"),
                (usage.get("cost") or {}).get("total"),
            )
        )
    return frame(rows)


@pytest.mark.parametrize("name", ["large-session.jsonl", "before-compaction.jsonl"])
def test_real_transcript_matches_the_cost_the_runtime_recorded(name: str) -> None:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    calls = real_calls(path)
    assert calls.height > 400
    out = price_calls(calls, mode="calculate")
    assert out["cost_source"].to_list() == ["calculated"] * calls.height
    recorded, calculated = calls["cost_recorded_usd"].sum(), out["cost_usd"].sum()
    assert recorded > 10
    assert calculated == pytest.approx(recorded, rel=0.01)
    # The runtime priced these models (Sonnet 4.5 / Opus 4.5, no prompt over 200k) at the same list
    # prices as genai-prices: every call agrees, not only the total.
    diff = out.select((pl.col("cost_usd") - pl.col("cost_recorded_usd")).abs().max()).item()
    assert diff < 1e-9
