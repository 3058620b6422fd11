"""Status, error class and HTTP status of model calls, from ``stopReason`` and ``errorMessage``.

One vectorised implementation (:func:`classify_status`); there is no per-value variant on purpose.

status
    ``aborted`` when the stop reason is ``aborted``; ``error`` when it is ``error``, any stop reason not
    known to mean a finished response (e.g. ``timeout``), or when it is missing but an error message is
    there (``openclaw:prompt-error`` entries); ``ok`` otherwise. Stop reasons compare case-insensitively.
error_class
    null for ``ok``; ``aborted`` for ``aborted``; else the first rule of :data:`ERROR_RULES` that matches,
    ``other`` when none does. A rule matches on the HTTP status or on a case-insensitive regex over the
    error message (plus the stop reason itself when that is an unknown one such as ``timeout``).
http_status
    for non-ok calls: the leading 3-digit status (``429 {...}``, ``503 Service Unavailable``), else the
    status in the JSON body (``"code": 429``, ``"status": 503``), else one in prose
    (``status code 502``, ``HTTP 500``). Only 100-599 is accepted.

Rule order (first match wins) and why:

1. billing -- 402 and credit/payment wording. First, because Anthropic reports an empty credit balance
   as ``400 invalid_request_error`` ("credit balance is too low") and OpenRouter as 402/403.
2. rate_limit -- 429, rate limit, too many requests, quota, usage limit. Before the 4xx/5xx rules so a
   429 body mentioning quota, or a subscription "usage limit" message, is a rate limit.
3. overloaded -- 529 and "overloaded" (before server_error: 529 is a 5xx).
4. auth -- 401/403, invalid API key, authentication/permission errors, expired OAuth tokens. Before
   invalid_request because some providers answer a bad key with 400 ("API key not valid").
5. invalid_request -- 400/404/413/422, invalid_request_error, not_found_error, context too long. Before
   the timeout/network wording so a 400 body that merely mentions "timeout" stays a request error.
6. timeout -- 408/504, timeout, timed out, ETIMEDOUT. Before server_error so "504 Gateway Timeout" and
   "upstream timed out" are timeouts.
7. server_error -- any other 5xx, internal server error, bad gateway, service unavailable, api_error.
8. network -- fetch failed, terminated, ECONNRESET, ECONNREFUSED, socket hang up, EAI_AGAIN, ...
9. aborted -- "Request was aborted" on a call whose stop reason is NOT ``aborted`` (an abort the runtime
   recorded as an error, e.g. an internal AbortController); status stays ``error``.
10. other.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from mc_pipeline.tables.schemas import ERROR_CLASSES

#: Stop reasons meaning the provider returned a response (lower-cased). ``toolUse`` is pi's spelling;
#: the rest are raw provider spellings that may leak through older or third-party writers.
OK_STOP_REASONS = (
    "stop",
    "length",
    "tooluse",
    "tool_use",
    "tool_calls",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "pause_turn",
    "refusal",
    "content_filter",
)


class ErrorRule(NamedTuple):
    """One classification rule: matches when the HTTP status is in ``statuses`` or the lower-cased text
    matches ``pattern`` (a Rust regex, written in lower case)."""

    error_class: str
    statuses: tuple[int, ...]
    pattern: str | None


_5XX = tuple(range(500, 600))

#: Ordered: first match wins. See the module docstring for why the order is what it is.
ERROR_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(
        "billing",
        (402,),
        r"credit balance|payment required|insufficient[ _]?credits?|insufficient[ _]balance|billing_error"
        r"|requires more credits|out of credits|insufficient funds",
    ),
    ErrorRule(
        "rate_limit",
        (429,),
        r"rate[ _-]?limit|too many requests|quota|usage[ _]limit|resource[ _]exhausted",
    ),
    ErrorRule("overloaded", (529,), r"overloaded"),
    ErrorRule(
        "auth",
        (401, 403),
        r"invalid[ _-]?(?:x-)?api[ _-]?key|incorrect api key|api key not valid|no api key|missing api key"
        r"|authentication_error|authentication failed|permission_error|permission denied|unauthorized"
        r"|forbidden|oauth token (?:has )?expired|token (?:has )?expired|invalid bearer token"
        r"|invalid access token|invalid authentication",
    ),
    ErrorRule(
        "invalid_request",
        (400, 404, 413, 422),
        r"invalid_request_error|invalid request|not_found_error|request_too_large|context_length_exceeded"
        r"|prompt is too long|maximum context length|context window",
    ),
    ErrorRule("timeout", (408, 504), r"time[ _-]?out|timed out|etimedout|deadline exceeded"),
    ErrorRule(
        "server_error",
        tuple(s for s in _5XX if s not in (504, 529)),
        r"internal server error|bad gateway|service unavailable|api_error|server_error|server error",
    ),
    ErrorRule(
        "network",
        (),
        r"fetch failed|\bterminated\b|econnreset|econnrefused|econnaborted|socket hang up|eai_again"
        r"|enotfound|ehostunreach|enetunreach|epipe|network[ _]?error|connection error|connection reset"
        r"|connection refused|other side closed|und_err",
    ),
    ErrorRule("aborted", (), r"\baborted\b|aborterror"),
)

assert all(r.error_class in ERROR_CLASSES for r in ERROR_RULES)

_LEADING_STATUS = r"^\s*([1-5]\d{2})\b"
_BODY_STATUS = r"""(?i)"(?:status|code|status_?code|http_?status)"\s*:\s*"?([1-5]\d{2})\b"""
_PROSE_STATUS = r"(?i)\b(?:status(?: code)?|http(?:/\d(?:\.\d)?)?)[\s:=]+([1-5]\d{2})\b"


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.strip_chars().str.len_chars() > 0).then(expr)


def _rule_matches(rule: ErrorRule, http: pl.Expr, text: pl.Expr) -> pl.Expr:
    cond = pl.lit(False)
    if rule.statuses:
        cond = cond | http.is_in(list(rule.statuses)).fill_null(False)
    if rule.pattern:
        cond = cond | text.str.contains(rule.pattern).fill_null(False)
    return cond


def _classify_distinct(keys: pl.DataFrame) -> pl.DataFrame:
    """Classify a frame of distinct (``_sr``, ``_em``) pairs; every step is a column, computed once."""
    reason, message, text, http = pl.col("_reason"), pl.col("_message"), pl.col("_text"), pl.col("_http")
    is_unknown_reason = pl.col("_unknown_reason")

    first, *rest = ERROR_RULES
    chain = pl.when(_rule_matches(first, http, text)).then(pl.lit(first.error_class))
    for rule in rest:
        chain = chain.when(_rule_matches(rule, http, text)).then(pl.lit(rule.error_class))

    return (
        keys.with_columns(
            _reason=_blank_to_null(pl.col("_sr").str.strip_chars().str.to_lowercase()),
            _message=_blank_to_null(pl.col("_em")),
        )
        .with_columns(
            _unknown_reason=reason.is_not_null() & ~reason.is_in([*OK_STOP_REASONS, "error", "aborted"]),
        )
        .with_columns(
            status=pl.when(reason == "aborted")
            .then(pl.lit("aborted"))
            .when((reason == "error") | is_unknown_reason | (reason.is_null() & message.is_not_null()))
            .then(pl.lit("error"))
            .otherwise(pl.lit("ok")),
            # The rules read the message plus an unknown stop reason (so "timeout" classifies itself).
            _text=pl.concat_str(
                [message, pl.when(is_unknown_reason).then(reason)], separator="\n", ignore_nulls=True
            ).str.to_lowercase(),
            _http=pl.coalesce(
                message.str.extract(_LEADING_STATUS, 1),
                message.str.extract(_BODY_STATUS, 1),
                message.str.extract(_PROSE_STATUS, 1),
            ).cast(pl.Int32),
        )
        .select(
            "_sr",
            "_em",
            "status",
            error_class=pl.when(pl.col("status") == "ok")
            .then(pl.lit(None, dtype=pl.String))
            .when(pl.col("status") == "aborted")
            .then(pl.lit("aborted"))
            .otherwise(chain.otherwise(pl.lit("other"))),
            http_status=pl.when(pl.col("status") != "ok").then(http).cast(pl.Int32),
        )
    )


_OUTPUTS = ("status", "error_class", "http_status")


def classify_status(calls: pl.DataFrame) -> pl.DataFrame:
    """Add ``status``, ``error_class`` and ``http_status`` from ``stop_reason`` and ``error_message``.

    Both inputs may be null; missing columns are treated as all-null. Existing output columns are
    replaced. Each distinct (stop_reason, error_message) pair is classified once and joined back, so
    millions of mostly-ok rows cost a hash join, not nine regex passes.
    """
    keyed = calls.drop([c for c in _OUTPUTS if c in calls.columns]).with_columns(
        (pl.col(name) if name in calls.columns else pl.lit(None)).cast(pl.String).alias(key)
        for name, key in (("stop_reason", "_sr"), ("error_message", "_em"))
    )
    classified = _classify_distinct(keyed.select("_sr", "_em").unique())
    return keyed.join(
        classified, on=["_sr", "_em"], how="left", nulls_equal=True, maintain_order="left"
    ).drop("_sr", "_em")
