"""Tests of mc_pipeline.costing.billing with fixture OpenClaw homes in tmp_path."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.costing.billing import (
    AuthProfiles,
    BillingOverridesError,
    assign_billing,
    load_billing_overrides,
    read_auth_profiles,
)

SECRET = "sk-ant-oat01-SECRET-DO-NOT-LEAK"


def _write_store(home: Path, agent: str, profiles: dict, **extra: object) -> Path:
    path = home / "agents" / agent / "agent" / "auth-profiles.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "profiles": profiles, **extra}))
    return path


def _oauth(provider: str) -> dict:
    return {"type": "oauth", "provider": provider, "access": SECRET, "refresh": SECRET, "expires": 1}


def _key(provider: str) -> dict:
    return {"type": "api_key", "provider": provider, "key": SECRET}


def _token(provider: str) -> dict:
    return {"type": "token", "provider": provider, "token": SECRET}


def _billing(rows: list[tuple[str | None, str | None]], auth: object, overrides: dict | None = None) -> list:
    df = pl.DataFrame(rows, schema={"agent_id": pl.String, "provider": pl.String}, orient="row")
    return assign_billing(df, auth, overrides)["billing"].to_list()  # type: ignore[arg-type]


# --- read_auth_profiles ---------------------------------------------------------------------------------


def test_read_real_shaped_store(tmp_path: Path) -> None:
    _write_store(
        tmp_path,
        "main",
        {
            "anthropic:default": _oauth("anthropic"),
            "openai:default": _key("openai"),
            "openai-codex:me@example.com": _oauth("openai-codex"),
        },
        lastGood={"anthropic": "anthropic:default"},
        usageStats={"anthropic:default": {"lastUsed": 1, "errorCount": 0}},
    )
    profiles, problems = read_auth_profiles(tmp_path)
    assert problems == []
    main = {"anthropic": "oauth", "openai": "api_key", "openai-codex": "oauth"}
    assert profiles == {"main": main, "*": main}  # "*": what an agent without a store of its own inherits


def test_default_profile_first_then_last_good_then_order(tmp_path: Path) -> None:
    _write_store(
        tmp_path,
        "a",
        {"anthropic:work": _key("anthropic"), "anthropic:default": _token("anthropic")},
        lastGood={"anthropic": "anthropic:work"},
    )
    _write_store(
        tmp_path,
        "b",
        {"anthropic:x": _key("anthropic"), "anthropic:y": _oauth("anthropic")},
        lastGood={"anthropic": "anthropic:y"},
    )
    _write_store(
        tmp_path,
        "c",
        {"anthropic:x": _key("anthropic"), "anthropic:y": _oauth("anthropic")},
        order={"anthropic": ["anthropic:y", "anthropic:x"]},
    )
    _write_store(tmp_path, "d", {"anthropic:x": _key("anthropic"), "anthropic:y": _oauth("anthropic")})
    profiles = read_auth_profiles(tmp_path).profiles
    assert {a: p["anthropic"] for a, p in profiles.items()} == {
        "a": "token",
        "b": "oauth",
        "c": "oauth",
        "d": "api_key",
    }


def test_provider_from_profile_id_and_mode_key(tmp_path: Path) -> None:
    _write_store(tmp_path, "main", {"google:default": {"mode": "api_key", "key": SECRET}})
    assert read_auth_profiles(tmp_path).profiles == {
        "main": {"google": "api_key"},
        "*": {"google": "api_key"},
    }


def test_non_main_agents_inherit_main_profiles(tmp_path: Path) -> None:
    main = {"anthropic:default": _oauth("anthropic"), "openai:default": _key("openai")}
    _write_store(tmp_path, "main", main)
    _write_store(tmp_path, "work", {"anthropic:default": _key("anthropic")})  # own profile id wins
    (tmp_path / "agents" / "bare" / "sessions").mkdir(parents=True)  # agent without a store
    profiles = read_auth_profiles(tmp_path).profiles
    assert profiles["main"] == {"anthropic": "oauth", "openai": "api_key"}
    assert profiles["work"] == {"anthropic": "api_key", "openai": "api_key"}
    assert profiles["bare"] == {"anthropic": "oauth", "openai": "api_key"}


def test_missing_home_and_missing_files(tmp_path: Path) -> None:
    assert read_auth_profiles(tmp_path / "nowhere") == AuthProfiles({}, [])
    (tmp_path / "agents" / "main" / "sessions").mkdir(parents=True)
    assert read_auth_profiles(tmp_path) == AuthProfiles({"main": {}}, [])


def test_malformed_files_are_problems_not_crashes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "agents" / "broken" / "agent" / "auth-profiles.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"version":1,"profiles":{"anthropic:default":{"type":"oauth","access":"' + SECRET)
    _write_store(tmp_path, "listy", [])  # type: ignore[arg-type]
    (tmp_path / "agents" / "array" / "agent").mkdir(parents=True)
    (tmp_path / "agents" / "array" / "agent" / "auth-profiles.json").write_text("[1, 2]")
    _write_store(
        tmp_path,
        "partial",
        {
            "anthropic:me@example.com": {"type": "OAuth", "provider": "anthropic", "access": SECRET},
            "bad": "not an object",
            "openai:default": {"provider": "openai", "key": SECRET},
            "x:default": {"type": "magic", "provider": "x"},
        },
    )
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "agents").rglob("*.json")}
    with caplog.at_level(logging.DEBUG):
        profiles, problems = read_auth_profiles(tmp_path)
    assert profiles["broken"] == {} and profiles["listy"] == {} and profiles["array"] == {}
    assert profiles["partial"] == {"anthropic": "oauth", "x": "magic"}
    text = "\n".join(problems)
    assert "agents/broken/agent/auth-profiles.json: malformed JSON" in text
    assert "agents/listy/agent/auth-profiles.json: not an auth profile store" in text
    assert "agents/array/agent/auth-profiles.json: not an auth profile store" in text
    assert "profile #2 is not an object" in text
    assert "profile #3 (provider openai) has no type" in text
    assert "unknown type 'magic'" in text
    # Never a secret, a profile id (may hold an e-mail) or an absolute path in problems or logs.
    for leak in (SECRET, "me@example.com", str(tmp_path)):
        assert leak not in text
        assert leak not in caplog.text
    # Read-only: nothing was rewritten.
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "agents").rglob("*.json")}


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions")
def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    path = _write_store(tmp_path, "main", {"anthropic:default": _oauth("anthropic")})
    path.chmod(0)
    try:
        profiles, problems = read_auth_profiles(tmp_path)
    finally:
        path.chmod(0o600)
    assert profiles == {"main": {}}
    assert problems and "cannot read auth profiles" in problems[0]


def test_undecodable_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "agents" / "main" / "agent" / "auth-profiles.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"profiles": {"\xff\xfe": 1}}')
    profiles, problems = read_auth_profiles(tmp_path)
    assert profiles == {"main": {}}
    assert problems == [
        "agents/main/agent/auth-profiles.json: cannot read auth profiles (UnicodeDecodeError); "
        "billing may be unknown"
    ]


# --- assign_billing -------------------------------------------------------------------------------------


def test_subscription_providers_whatever_the_profiles(tmp_path: Path) -> None:
    _write_store(tmp_path, "main", {"github-copilot:default": _key("github-copilot")})
    auth = read_auth_profiles(tmp_path)
    rows = [("main", "openai-codex"), ("main", "github-copilot"), (None, "google-gemini-cli")]
    assert _billing(rows, auth) == ["subscription"] * 3


def test_anthropic_follows_the_agents_profile(tmp_path: Path) -> None:
    _write_store(tmp_path, "oauth", {"anthropic:default": _oauth("anthropic")})
    _write_store(tmp_path, "token", {"anthropic:default": _token("anthropic")})
    _write_store(tmp_path, "key", {"anthropic:default": _key("anthropic")})
    _write_store(tmp_path, "other", {"openai:default": _key("openai")})
    auth = read_auth_profiles(tmp_path)
    rows = [
        ("oauth", "anthropic"),
        ("token", "anthropic"),
        ("key", "anthropic"),
        ("other", "anthropic"),  # no anthropic profile
        ("ghost", "anthropic"),  # no such agent
        (None, "anthropic"),
    ]
    assert _billing(rows, auth) == ["subscription", "subscription", "api", "unknown", "unknown", "unknown"]


def test_other_providers(tmp_path: Path) -> None:
    _write_store(
        tmp_path,
        "main",
        {
            "custom-llm:default": _key("custom-llm"),
            "ollama:default": _key("ollama"),  # OpenClaw's dummy key for Ollama
            "zai:default": _key("zai"),
            "minimax-portal:default": _oauth("minimax-portal"),
            "openai:default": _token("openai"),
        },
    )
    auth = read_auth_profiles(tmp_path)
    rows = [
        ("main", "openai"),  # token profile: not decisive, pay-per-token provider
        ("main", "openrouter"),  # no profile: known pay-per-token
        ("main", "custom-llm"),  # user-defined with an api_key profile
        ("main", "my-proxy"),  # user-defined, nothing known
        ("main", "ollama"),
        ("main", "zai"),  # api key could be a coding plan
        ("main", "minimax-portal"),  # oauth
        ("main", "openclaw"),  # delivery-mirror rows
        ("main", None),
        ("main", " OpenRouter "),
    ]
    assert _billing(rows, auth) == [
        "api",
        "api",
        "api",
        "unknown",
        "unknown",
        "unknown",
        "subscription",
        "unknown",
        "unknown",
        "api",
    ]


def test_overrides_win_agent_provider_first(tmp_path: Path) -> None:
    _write_store(tmp_path, "main", {"anthropic:default": _oauth("anthropic")})
    _write_store(tmp_path, "work", {"anthropic:default": _oauth("anthropic")})
    auth = read_auth_profiles(tmp_path).profiles  # the plain dict works too
    overrides = {"anthropic": "api", "Work:Anthropic": "subscription", "ollama": "subscription", "zai": "api"}
    rows = [("main", "anthropic"), ("work", "anthropic"), ("x", "ollama"), ("x", "zai")]
    rows.append(("x", "openai-codex"))
    assert _billing(rows, auth, overrides) == ["api", "subscription", "subscription", "api", "subscription"]


def test_missing_columns_empty_frame_and_vectorised() -> None:
    out = assign_billing(pl.DataFrame({"x": [1]}), {})
    assert out["billing"].to_list() == ["unknown"]
    empty = assign_billing(pl.DataFrame(schema={"agent_id": pl.String, "provider": pl.String}), {})
    assert empty.height == 0 and empty.schema["billing"] == pl.String
    big = pl.DataFrame({"agent_id": ["main", "main"] * 50_000, "provider": ["anthropic", "openai"] * 50_000})
    out = assign_billing(big, {"main": {"anthropic": "oauth"}})
    assert out["billing"].value_counts().sort("billing").rows() == [("api", 50_000), ("subscription", 50_000)]


def test_assign_billing_rejects_bad_override_values() -> None:
    with pytest.raises(BillingOverridesError, match="billing must be one of"):
        _billing([("main", "openai")], {}, {"openai": "free"})


# --- load_billing_overrides -----------------------------------------------------------------------------


def test_load_overrides_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "billing.toml"
    toml.write_text('[billing]\nanthropic = "api"\n"work:Anthropic" = "Subscription"\n')
    assert load_billing_overrides(toml) == {"anthropic": "api", "work:anthropic": "subscription"}
    flat = tmp_path / "flat.toml"
    flat.write_text('ollama = "unknown"\n')
    assert load_billing_overrides(str(flat)) == {"ollama": "unknown"}
    js = tmp_path / "billing.json"
    js.write_text(json.dumps({"zai": "subscription", "main:anthropic": "api"}))
    assert load_billing_overrides(js) == {"zai": "subscription", "main:anthropic": "api"}


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("o.toml", "anthropic = ", "not valid TOML"),
        ("o.json", "{", "not valid JSON"),
        ("o.json", "[1]", "expected a table"),
        ("o.toml", 'anthropic = "free"', "billing must be one of"),
        ("o.toml", "anthropic = 1", "billing must be one of"),
        ("o.toml", '"work:" = "api"', "must be 'provider' or 'agent:provider'"),
    ],
)
def test_load_overrides_errors(tmp_path: Path, name: str, body: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(BillingOverridesError, match=message):
        load_billing_overrides(path)


def test_load_overrides_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BillingOverridesError, match="cannot read billing overrides"):
        load_billing_overrides(tmp_path / "none.toml")
