"""Cost of each LLM call: genai-prices rates applied as Polars column expressions.

Sources: docs/dashboard-contract.md#prices-and-cost-modes (genai-prices, cost modes),
docs/openclaw-formats.md#assistant-usage (token kinds, recorded cost) and
docs/openclaw-formats.md#providers-and-billing (provider ids).

genai-prices is asked once per distinct (provider, model, UTC day), never per row. From the ``ModelPrice`` it
returns we read per-token rates for the four token kinds we have, following the library's own rules:

- ``Usage.input_tokens`` is TOTAL input. Cache reads/writes are carved out of it only when the model has a
  cache price; otherwise they are billed at the input rate (``compute_leaf_values``). So an unpriced cache
  kind gets the input rate here, and uncached ``input_tokens`` always get the input rate.
- ``TieredPrices`` (e.g. Sonnet 4.5 above 200k prompt tokens) reprice ALL tokens of a request whose prompt
  (input + cache read + cache write) is ``> tier.start`` (``calc_unit_price``). A price row is kept per tier
  band and each call picks its band from its own prompt size.
- Prices by date (``StartDateConstraint``) are UTC-day based, so a price per UTC day is exact. Off-peak
  prices by time of day (``TimeOfDateConstraint``, DeepSeek) are split into UTC time segments.
- A per-request price (``requests_kcount``, Perplexity) is charged once per call, as the library does.

Model matching. genai-prices matches model ids with ``equals``/``starts_with``/``contains``/``ends_with``/
``regex`` clauses and takes the first model that matches, so an id it does not know can get a relative's
price (``gemini-1.5-flash-8b`` -> ``gemini-1.5-flash``). We accept a match only when it is exact
(``equals``, ``regex``, a prefix/needle ending in a separator such as ``gemma-3-``) or when what is left
around the matched text is decoration only: a date or revision (``-20250929``, ``-2025-09-29``, ``-001``,
``@20250929``), ``-v1:0``, ``latest``, ``preview``, ``exp``, ``thinking`` or an OpenRouter variant such as
``:free``; text before a ``contains``/``ends_with`` match must end in a separator (``us.anthropic.``). A
rejected match falls back to a scan of the same provider's models for one accepted by that rule; if there is
none the call is unpriced (``unpriced_reason`` in :func:`price_table` says why).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import polars as pl
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import (
    ClauseAnd,
    ClauseContains,
    ClauseEndsWith,
    ClauseEquals,
    ClauseOr,
    ClauseRegex,
    ClauseStartsWith,
    ModelInfo,
    ModelPrice,
    Provider,
    TieredPrices,
    TimeOfDateConstraint,
    calc_unit_price,
)

from mc_pipeline.tables.schemas import COST_MODES

try:  # the library's own fallback for compact dates (gpt-5.2-20251211 -> gpt-5.2-2025-12-11)
    from genai_prices.types import _normalize_compact_dated_ref as _normalize_ref
except ImportError:  # pragma: no cover - older/newer library without it

    def _normalize_ref(model_ref: str) -> str:
        return model_ref


#: OpenClaw provider id -> genai-prices provider id. Unlisted ids go to genai-prices unchanged (it knows
#: e.g. ``groq``, ``mistral``, ``deepseek``, ``minimax``, ``openrouter`` and matches some ids by substring).
PROVIDER_MAP: dict[str, str] = {
    "anthropic": "anthropic",
    "openai": "openai",
    "openai-codex": "openai",
    "azure-openai-responses": "azure",  # azure falls back to openai/anthropic/... prices itself
    "azure-openai": "azure",
    "azure": "azure",
    "google": "google",
    "google-gemini-cli": "google",
    "google-vertex": "google",
    "google-antigravity": "google",
    "amazon-bedrock": "aws",
    "bedrock": "aws",
    "xai": "x-ai",
    "zai": "zai",
    "github-copilot": "github-copilot",
    "openrouter": "openrouter",
    "moonshot": "moonshotai",
    "kimi-coding": "moonshotai",
}

#: Local runtimes: priced only if genai-prices knows the provider (it does not), never by model id alone,
#: since ``deepseek-r1:14b`` on a laptop is not DeepSeek's API.
LOCAL_PROVIDERS = frozenset({"ollama", "lmstudio", "llama-cpp", "llamacpp", "vllm", "local"})

#: Columns ``price_calls`` reads.
INPUT_COLUMNS = (
    "provider",
    "model",
    "timestamp",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_recorded_usd",
)
#: Columns ``price_calls`` adds or overwrites.
OUTPUT_COLUMNS: dict[str, pl.DataType] = {
    "cost_calculated_usd": pl.Float64(),
    "cost_usd": pl.Float64(),
    "cost_source": pl.String(),
    "price_model_id": pl.String(),
}
#: One row per (provider, model, UTC day, time segment, prompt-size band).
PRICE_TABLE: dict[str, pl.DataType] = {
    "provider": pl.String(),
    "model": pl.String(),
    "utc_day": pl.Date(),
    "utc_time_from": pl.Time(),  # inclusive
    "utc_time_to": pl.Time(),  # exclusive; null = end of day
    "prompt_tokens_over": pl.Int64(),  # band applies when prompt > this; null = no lower bound
    "prompt_tokens_upto": pl.Int64(),  # ... and prompt <= this; null = no upper bound
    "input_usd_per_mtok": pl.Float64(),  # uncached input
    "output_usd_per_mtok": pl.Float64(),
    "cache_read_usd_per_mtok": pl.Float64(),
    "cache_write_usd_per_mtok": pl.Float64(),
    "request_usd": pl.Float64(),  # per call
    "price_provider_id": pl.String(),
    "price_model_id": pl.String(),
    "matched_by": pl.String(),  # provider | model | model-prefix
    "unpriced_reason": pl.String(),
}

_MTOK = 1_000_000
_REQUEST_PER = 1_000  # requests_kcount is per 1000 requests
_ZERO_USAGE = Usage(input_tokens=0, output_tokens=0)
_P = "__mc_price_"  # prefix of temporary columns

# --- model matching --------------------------------------------------------------------------------------

_DECORATION = (
    r"(?:\d{2,8}|v\d+(?::\d+)?|latest|preview|exp|experimental|thinking"
    r"|free|beta|exacto|nitro|floor|online|extended)"
)
_DECORATED_TAIL = re.compile(rf"(?:[-_@:]{_DECORATION}|:\d+)*")  # ":0" is a Bedrock revision
_REVISION_TOKEN = re.compile(r"\d{3,8}")  # "-2025" + "0514", "-0" + "01"
_LEADING_ALNUM = re.compile(r"[a-z0-9]*")
_TRAILING_ALNUM = re.compile(r"[a-z0-9]*$")


def _tail_ok(matched: str, tail: str) -> bool:
    """Whether ``tail``, the text after ``matched``, only decorates the matched model id."""
    if not tail or not matched or not matched[-1].isalnum():
        return True  # exact, or a deliberate family prefix such as "gemma-3-" / "claude-opus-4@"
    if tail[0].isalnum():  # the match ends inside a token: only a split date or revision may continue it
        head = _TRAILING_ALNUM.search(matched).group()  # type: ignore[union-attr]
        rest = _LEADING_ALNUM.match(tail).group()  # type: ignore[union-attr]
        if not _REVISION_TOKEN.fullmatch(head + rest):
            return False
        tail = tail[len(rest) :]
    return _DECORATED_TAIL.fullmatch(tail) is not None


def _head_ok(head: str) -> bool:
    return not head or not head[-1].isalnum()


def _strict(clause: object, ref: str) -> bool:
    """Whether ``clause`` matches ``ref`` (lower case) exactly, up to decoration (see module docstring)."""
    if isinstance(clause, ClauseEquals):
        return ref == clause.equals.lower()
    if isinstance(clause, ClauseRegex):
        return clause.is_match(ref)  # regexes in the table are written deliberately (anchored)
    if isinstance(clause, ClauseStartsWith):
        prefix = clause.starts_with.lower()
        return ref.startswith(prefix) and _tail_ok(prefix, ref[len(prefix) :])
    if isinstance(clause, ClauseEndsWith):
        suffix = clause.ends_with.lower()
        return ref.endswith(suffix) and _head_ok(ref[: len(ref) - len(suffix)])
    if isinstance(clause, ClauseContains):
        needle = clause.contains.lower()
        start = ref.find(needle)
        while start >= 0:
            if _head_ok(ref[:start]) and _tail_ok(needle, ref[start + len(needle) :]):
                return True
            start = ref.find(needle, start + 1)
        return False
    if isinstance(clause, ClauseOr):
        return any(_strict(child, ref) for child in clause.or_)
    if isinstance(clause, ClauseAnd):
        return all(_strict(child, ref) for child in clause.and_)
    return False  # unknown clause type: do not trust it


def _accepts(model: ModelInfo, ref: str) -> bool:
    ref = ref.lower()
    return _strict(model.match, ref) or _strict(model.match, _normalize_ref(ref))


def _strict_scan(provider: Provider, ref: str, every: list[Provider]) -> tuple[Provider, ModelInfo] | None:
    """First model of ``provider``, then of its fallback providers (one step, like the library), we accept."""
    fallbacks = provider.fallback_model_providers or []
    chain = [provider, *(p for pid in fallbacks for p in every if p.id == pid)]
    for prov in chain:
        for model in prov.models:
            if _accepts(model, ref):
                return prov, model
    return None


@dataclass(frozen=True)
class _Resolved:
    provider_id: str | None  # what calc_price is given
    model_ref: str
    model: ModelInfo
    price_provider_id: str
    matched_by: str
    by_scan: bool  # the library's first match was rejected; prices come from ``model`` directly


def _candidates(provider: str | None, model: str) -> Iterator[tuple[str | None, str, str]]:
    if provider:
        key = provider.strip().lower()
        yield PROVIDER_MAP.get(key, key), model, "provider"
        if key in LOCAL_PROVIDERS:
            return
    yield None, model, "model"
    if "/" in model:  # gateway ids such as "anthropic/claude-sonnet-4.5"
        prefix, rest = model.split("/", 1)
        if prefix and rest:
            yield PROVIDER_MAP.get(prefix.lower(), prefix.lower()), rest, "model-prefix"


def _resolve(provider: str | None, model: str | None) -> _Resolved | str:
    """The genai-prices model for an OpenClaw (provider, model), or why there is none."""
    if not model or not model.strip():
        return "no model id"
    snapshot = get_snapshot()
    reasons: list[str] = []
    for provider_id, ref, how in _candidates(provider, model.strip()):
        try:
            prov, info = snapshot.find_provider_model(ref, None, provider_id, None)
        except LookupError as exc:
            reasons.append(str(exc))
            continue
        if _accepts(info, ref):
            return _Resolved(provider_id, ref, info, prov.id, how, by_scan=False)
        if found := _strict_scan(prov, ref, snapshot.providers):
            return _Resolved(provider_id, ref, found[1], found[0].id, how, by_scan=True)
        reasons.append(f"{ref!r} only loosely matches {prov.id}/{info.id}, not accepted")
    if provider and provider.strip().lower() in LOCAL_PROVIDERS:
        reasons.append("local runtime: not priced by model id")
    return "; ".join(dict.fromkeys(reasons))


# --- rates -----------------------------------------------------------------------------------------------


def _to_utc_time(value: time) -> time:
    if value.tzinfo is None:
        return value
    return datetime.combine(date(1970, 1, 1), value).astimezone(UTC).time()


def _segments(model: ModelInfo) -> list[time]:
    """Start times (UTC) of the parts of a day within which the model's prices do not change."""
    bounds = {time(0)}
    if not isinstance(model.prices, ModelPrice):
        for conditional in model.prices:
            if isinstance(conditional.constraint, TimeOfDateConstraint):
                bounds.add(_to_utc_time(conditional.constraint.start_time))
                bounds.add(_to_utc_time(conditional.constraint.end_time))
    return sorted(bounds)


def _bands(price: ModelPrice) -> Iterator[tuple[int | None, int | None, dict[str, float]]]:
    """(prompt over, prompt up to, rates) per prompt-size band, rates decided by ``calc_unit_price``."""
    input_p = price.input_mtok
    cache_read = price.cache_read_mtok if price.cache_read_mtok is not None else input_p
    cache_write = price.cache_write_mtok if price.cache_write_mtok is not None else input_p
    per_kind: dict[str, tuple[Decimal | TieredPrices | None, int, int]] = {  # price, count, per
        "input_usd_per_mtok": (input_p, _MTOK, _MTOK),
        "output_usd_per_mtok": (price.output_mtok, _MTOK, _MTOK),
        "cache_read_usd_per_mtok": (cache_read, _MTOK, _MTOK),
        "cache_write_usd_per_mtok": (cache_write, _MTOK, _MTOK),
        "request_usd": (price.requests_kcount, 1, _REQUEST_PER),
    }
    starts = sorted(
        {tier.start for p, _, _ in per_kind.values() if isinstance(p, TieredPrices) for tier in p.tiers}
    )
    lowers: list[int | None] = [None, *starts]
    for i, lower in enumerate(lowers):
        upper = starts[i] if i < len(starts) else None
        prompt = 0 if lower is None else lower + 1  # any prompt size inside the band
        rates = {
            name: float(calc_unit_price(p, count, prompt, per)) for name, (p, count, per) in per_kind.items()
        }
        yield lower, upper, rates


def _unpriced_row(provider: str | None, model: str | None, day: date | None, reason: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(PRICE_TABLE)
    row.update(provider=provider, model=model, utc_day=day, utc_time_from=time(0), unpriced_reason=reason)
    return row


def _key_rows(
    provider: str | None, model: str | None, day: date | None, res: _Resolved | str
) -> list[dict[str, Any]]:
    if isinstance(res, str):
        return [_unpriced_row(provider, model, day, res)]
    if day is None:
        return [_unpriced_row(provider, model, day, "no timestamp")]
    midnight = datetime.combine(day, time(0), UTC)
    try:
        if res.by_scan:
            first = res.model.get_prices(midnight)
        else:
            first = calc_price(
                _ZERO_USAGE, res.model_ref, provider_id=res.provider_id, genai_request_timestamp=midnight
            ).model_price
    except (LookupError, ValueError) as exc:  # a table entry the library itself cannot use
        return [_unpriced_row(provider, model, day, f"genai-prices failed: {exc}")]
    segments = _segments(res.model)
    rows: list[dict[str, Any]] = []
    for i, start in enumerate(segments):
        end = segments[i + 1] if i + 1 < len(segments) else None
        price = first if i == 0 else res.model.get_prices(datetime.combine(day, start, UTC))
        for lower, upper, rates in _bands(price):
            rows.append(
                {
                    "provider": provider,
                    "model": model,
                    "utc_day": day,
                    "utc_time_from": start,
                    "utc_time_to": end,
                    "prompt_tokens_over": lower,
                    "prompt_tokens_upto": upper,
                    **rates,
                    "price_provider_id": res.price_provider_id,
                    "price_model_id": res.model.id,
                    "matched_by": res.matched_by,
                    "unpriced_reason": None,
                }
            )
    return rows


# --- frames ----------------------------------------------------------------------------------------------


def _utc_timestamp(calls: pl.DataFrame) -> pl.Expr:
    dtype = calls.schema["timestamp"]
    if not isinstance(dtype, pl.Datetime):
        raise ValueError(f"price_calls: 'timestamp' must be a Datetime column, not {dtype}")
    if dtype.time_zone is None:  # naive times are taken as UTC, as genai-prices does
        return pl.col("timestamp").dt.replace_time_zone("UTC")
    return pl.col("timestamp").dt.convert_time_zone("UTC")


def _rate_table(calls: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in INPUT_COLUMNS if c not in calls.columns]
    if missing:
        raise ValueError(f"price_calls: missing column(s) {missing}")
    keys = calls.select(
        pl.col("provider", "model").cast(pl.String), _utc_timestamp(calls).dt.date().alias("utc_day")
    ).unique(maintain_order=True)
    resolved: dict[tuple[str | None, str | None], _Resolved | str] = {}
    rows: list[dict[str, Any]] = []
    for provider, model, day in keys.iter_rows():
        if (provider, model) not in resolved:
            resolved[(provider, model)] = _resolve(provider, model)
        rows.extend(_key_rows(provider, model, day, resolved[(provider, model)]))
    table = pl.DataFrame(rows, schema=PRICE_TABLE, orient="row") if rows else pl.DataFrame(schema=PRICE_TABLE)
    order = ["provider", "model", "utc_day", "utc_time_from", "prompt_tokens_over"]
    return table.sort(order, nulls_last=[True, True, True, False, False])


def price_table(calls: pl.DataFrame) -> pl.DataFrame:
    """The rates used for ``calls``: one row per (provider, model, UTC day, time segment, prompt band)."""
    return _rate_table(calls)


def unpriced_models(table: pl.DataFrame) -> pl.DataFrame:
    """(provider, model, unpriced_reason) that genai-prices cannot price, from a :func:`price_table`."""
    return (
        table.filter(pl.col("price_model_id").is_null())
        .select("provider", "model", "unpriced_reason")
        .unique(subset=["provider", "model"], keep="first", maintain_order=True)
    )


def _cost_columns(mode: str) -> list[pl.Expr]:
    recorded, calculated = pl.col("cost_recorded_usd"), pl.col("cost_calculated_usd")
    if mode == "auto":
        # A recorded 0 for a model we cannot price may mean "the runtime did not know": never a silent $0.
        cost = pl.when(recorded > 0).then(recorded).otherwise(calculated)
        source = (
            pl.when(recorded > 0)
            .then(pl.lit("recorded"))
            .when(calculated.is_not_null())
            .then(pl.lit("calculated"))
            .otherwise(pl.lit("unpriced"))
        )
    elif mode == "calculate":
        cost = calculated
        source = pl.when(calculated.is_not_null()).then(pl.lit("calculated")).otherwise(pl.lit("unpriced"))
    else:
        cost = recorded
        source = pl.when(recorded.is_not_null()).then(pl.lit("recorded")).otherwise(pl.lit("unpriced"))
    return [cost.cast(pl.Float64).alias("cost_usd"), source.cast(pl.String).alias("cost_source")]


def price_calls_and_table(calls: pl.DataFrame, mode: str = "auto") -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`price_calls` and :func:`price_table` from one pass over genai-prices."""
    if mode not in COST_MODES:
        raise ValueError(f"unknown cost mode {mode!r}: expected one of {', '.join(COST_MODES)}")
    table = _rate_table(calls)
    ts = _utc_timestamp(calls)
    tokens = {name: pl.col(name).fill_null(0) for name in INPUT_COLUMNS[3:7]}  # null counts as 0
    # A narrow frame goes through the join, so the wide columns of ``calls`` are never copied.
    narrow = calls.lazy().select(
        pl.col("provider", "model").cast(pl.String),
        ts.dt.date().alias(f"{_P}utc_day"),
        ts.dt.time().alias(f"{_P}tod"),
        pl.sum_horizontal(
            tokens["input_tokens"], tokens["cache_read_tokens"], tokens["cache_write_tokens"]
        ).alias(f"{_P}prompt"),
        *(expr.cast(pl.Float64).alias(f"{_P}{name}") for name, expr in tokens.items()),
        pl.col("cost_recorded_usd").cast(pl.Float64),
    )
    not_needed = ("unpriced_reason", "matched_by", "price_provider_id")
    rates = table.lazy().select(
        "provider", "model", pl.all().exclude("provider", "model", *not_needed).name.prefix(_P)
    )
    joined = narrow.join(
        rates, on=["provider", "model", f"{_P}utc_day"], how="left", nulls_equal=True, maintain_order="left"
    )
    if table.select(pl.struct("provider", "model", "utc_day").n_unique()).item() < table.height:
        # Some key has several time segments or prompt bands: each call keeps the one it falls in.
        tod, prompt = pl.col(f"{_P}tod"), pl.col(f"{_P}prompt")
        joined = joined.filter(
            (tod >= pl.col(f"{_P}utc_time_from")).fill_null(True),
            (tod < pl.col(f"{_P}utc_time_to")).fill_null(True),
            (prompt > pl.col(f"{_P}prompt_tokens_over")).fill_null(True),
            (prompt <= pl.col(f"{_P}prompt_tokens_upto")).fill_null(True),
        )
    calculated = (
        pl.col(f"{_P}input_tokens") * pl.col(f"{_P}input_usd_per_mtok")
        + pl.col(f"{_P}output_tokens") * pl.col(f"{_P}output_usd_per_mtok")
        + pl.col(f"{_P}cache_read_tokens") * pl.col(f"{_P}cache_read_usd_per_mtok")
        + pl.col(f"{_P}cache_write_tokens") * pl.col(f"{_P}cache_write_usd_per_mtok")
    ) / _MTOK + pl.col(f"{_P}request_usd")
    costs = (
        joined.select(
            calculated.cast(pl.Float64).alias("cost_calculated_usd"),
            pl.col("cost_recorded_usd"),
            pl.col(f"{_P}price_model_id").cast(pl.String).alias("price_model_id"),
        )
        .with_columns(_cost_columns(mode))
        .select(list(OUTPUT_COLUMNS))
        .collect()
    )
    if costs.height != calls.height:
        raise RuntimeError("price_calls: price bands do not partition the calls (bug)")
    return calls.with_columns(costs.get_columns()), table


def price_calls(calls: pl.DataFrame, mode: str = "auto") -> pl.DataFrame:
    """``calls`` plus ``cost_calculated_usd``, ``cost_usd``, ``cost_source`` and ``price_model_id``.

    ``mode``: ``auto`` (recorded cost when > 0, else calculated, else unpriced), ``calculate`` (table only)
    or ``display`` (recorded only). Other columns pass through untouched, in order.
    """
    return price_calls_and_table(calls, mode)[0]
