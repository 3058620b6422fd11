"""Tests of mc_pipeline.costing.error_classes.classify_status (messages shaped like
docs/openclaw-formats.md#stop-reasons-and-failures)."""

from __future__ import annotations

import polars as pl
import pytest

from mc_pipeline.costing.error_classes import classify_status
from mc_pipeline.tables.schemas import ERROR_CLASSES


def _one(stop_reason: str | None, error_message: str | None) -> dict:
    df = pl.DataFrame(
        {"stop_reason": [stop_reason], "error_message": [error_message]},
        schema={"stop_reason": pl.String, "error_message": pl.String},
    )
    return classify_status(df).row(0, named=True)


ANTHROPIC_400 = (
    '400 {"type":"error","error":{"type":"invalid_request_error","message":"messages.236: `tool_use` ids '
    "were found without `tool_result` blocks immediately after: toolu_01. Each `tool_use` block must have "
    'a corresponding `tool_result` block in the next message."}, "request_id":"req_011CV1abcdef"}'
)


@pytest.mark.parametrize(
    ("message", "error_class", "http_status"),
    [
        # rate_limit
        (
            '429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the '
            'rate limit for your organization of 30,000 input tokens per minute."}}',
            "rate_limit",
            429,
        ),
        ("429 Rate limit exceeded", "rate_limit", 429),
        ("Too Many Requests", "rate_limit", None),
        ("You have hit your ChatGPT usage limit (plus plan). Try again in ~42 min.", "rate_limit", None),
        (
            "429 You exceeded your current quota, please check your plan and billing details.",
            "rate_limit",
            429,
        ),
        (
            '{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).",'
            '"status":"RESOURCE_EXHAUSTED"}}',
            "rate_limit",
            429,
        ),
        # overloaded
        (
            '529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            "overloaded",
            529,
        ),
        ("Overloaded", "overloaded", None),
        # server_error
        ("500 Internal Server Error", "server_error", 500),
        ("503 Service Unavailable", "server_error", 503),
        ("502 Bad Gateway", "server_error", 502),
        (
            '500 {"type":"error","error":{"type":"api_error","message":"Internal server error"}}',
            "server_error",
            500,
        ),
        ("Request failed with status code 502", "server_error", 502),
        # timeout
        ("Request timed out.", "timeout", None),
        ("connect ETIMEDOUT 104.18.0.1:443", "timeout", None),
        ("504 Gateway Timeout", "timeout", 504),
        # network
        ("fetch failed", "network", None),
        ("read ECONNRESET", "network", None),
        ("connect ECONNREFUSED 127.0.0.1:11434", "network", None),
        ("socket hang up", "network", None),
        ("getaddrinfo EAI_AGAIN api.anthropic.com", "network", None),
        # billing
        ("402 Payment Required: insufficient credits", "billing", 402),
        (
            '400 {"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance '
            "is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase "
            'credits."}}',
            "billing",
            400,
        ),
        # auth
        (
            '401 {"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
            "auth",
            401,
        ),
        (
            '403 {"type":"error","error":{"type":"permission_error","message":"Your API key does not have '
            'permission to use the specified resource."}}',
            "auth",
            403,
        ),
        (
            '401 {"type":"error","error":{"type":"authentication_error","message":"OAuth token has expired. '
            'Please obtain a new token or refresh your existing token."}}',
            "auth",
            401,
        ),
        ("400 API key not valid. Please pass a valid API key.", "auth", 400),
        # invalid_request
        (ANTHROPIC_400, "invalid_request", 400),
        (
            '404 {"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}',
            "invalid_request",
            404,
        ),
        ("413 Request Entity Too Large", "invalid_request", 413),
        # other
        ("Something odd happened", "other", None),
        (None, "other", None),
    ],
)
def test_error_messages(message: str | None, error_class: str, http_status: int | None) -> None:
    row = _one("error", message)
    assert row["status"] == "error"
    assert row["error_class"] == error_class
    assert row["http_status"] == http_status


def test_every_class_is_in_the_contract() -> None:
    assert {"rate_limit", "overloaded", "server_error", "timeout", "network", "billing", "auth"} <= set(
        ERROR_CLASSES
    )


def test_real_invalid_request_message() -> None:
    row = _one("error", ANTHROPIC_400)
    assert row == {
        "stop_reason": "error",
        "error_message": ANTHROPIC_400,
        "status": "error",
        "error_class": "invalid_request",
        "http_status": 400,
    }


def test_terminated_is_network() -> None:
    assert _one("error", "terminated")["error_class"] == "network"


def test_aborted_by_stop_reason() -> None:
    row = _one("aborted", "Request was aborted.")
    assert (row["status"], row["error_class"], row["http_status"]) == ("aborted", "aborted", None)


def test_aborted_text_on_an_error_stays_error() -> None:
    row = _one("error", "Request was aborted.")
    assert (row["status"], row["error_class"]) == ("error", "aborted")


def test_unknown_stop_reason_timeout() -> None:
    row = _one("timeout", None)
    assert (row["status"], row["error_class"]) == ("error", "timeout")


def test_unknown_stop_reason_classified_by_message_first() -> None:
    row = _one("weird_failure", "429 Too Many Requests")
    assert (row["status"], row["error_class"], row["http_status"]) == ("error", "rate_limit", 429)


@pytest.mark.parametrize("reason", ["stop", "length", "toolUse", "TOOLUSE", "end_turn", None, ""])
def test_ok_calls_have_no_error_fields(reason: str | None) -> None:
    row = _one(reason, None)
    assert (row["status"], row["error_class"], row["http_status"]) == ("ok", None, None)


def test_ok_stop_reason_wins_over_a_stray_message() -> None:
    assert _one("stop", "503 Service Unavailable")["status"] == "ok"


def test_missing_stop_reason_with_message_is_error() -> None:
    row = _one(None, "fetch failed")
    assert (row["status"], row["error_class"]) == ("error", "network")


def test_400_mentioning_timeout_stays_invalid_request() -> None:
    body = '{"type":"error","error":{"type":"invalid_request_error","message":"timeout: bad"}}'
    row = _one("error", "400 " + body)
    assert row["error_class"] == "invalid_request"


def test_types_missing_columns_and_existing_columns() -> None:
    out = classify_status(pl.DataFrame({"x": [1, 2]}))
    assert out.schema["status"] == pl.String
    assert out.schema["error_class"] == pl.String
    assert out.schema["http_status"] == pl.Int32
    assert out["status"].to_list() == ["ok", "ok"]
    again = classify_status(classify_status(pl.DataFrame({"stop_reason": ["error"], "error_message": ["x"]})))
    assert again.columns == ["stop_reason", "error_message", "status", "error_class", "http_status"]


def test_empty_frame() -> None:
    empty = pl.DataFrame(schema={"stop_reason": pl.String, "error_message": pl.String})
    out = classify_status(empty)
    assert out.height == 0
    assert out.schema["http_status"] == pl.Int32


def test_vectorised_mix_keeps_row_order() -> None:
    df = pl.DataFrame(
        {
            "stop_reason": ["stop", "error", "aborted", "error", "timeout"] * 1000,
            "error_message": [None, "529 Overloaded", "Request was aborted.", "fetch failed", None] * 1000,
        }
    )
    out = classify_status(df)
    assert out["error_class"].to_list()[:5] == [None, "overloaded", "aborted", "network", "timeout"]
    counts = out["status"].value_counts().sort("status").rows()
    assert counts == [("aborted", 1000), ("error", 3000), ("ok", 1000)]
