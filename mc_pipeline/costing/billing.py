"""How each model call is paid for: ``api`` (pay per token), ``subscription`` (flat-rate plan, OAuth) or
``unknown``.

The transcript does not say. What we use, first decisive step wins (see :func:`assign_billing`):

1. the user's override file, ``agent:provider`` keys before ``provider`` keys;
2. providers that only exist as subscriptions (OAuth logins): ``SUBSCRIPTION_PROVIDERS``;
3. local runtimes (``LOCAL_PROVIDERS``: ollama, lmstudio, ...): ``unknown``. They bill nobody per token and
   are no subscription; OpenClaw even asks for a dummy API key for Ollama, so an ``api_key`` profile
   there proves nothing. Ollama's cloud models are a subscription we cannot tell apart from local ones;
4. the agent's auth profile for the provider (``agents/<id>/agent/auth-profiles.json``, merged over the
   ``main`` agent's file as OpenClaw does for non-main agents): ``oauth`` -> subscription;
5. providers that sell both metered API keys and flat-rate "coding plans" paid with an API key
   (``AMBIGUOUS_PROVIDERS``: zai, minimax, kimi-coding): ``unknown`` -- an ``api_key`` profile does not
   tell which. Set an override when you know;
6. ``token`` profile for anthropic (the Claude subscription setup-token) -> subscription;
7. ``api_key`` profile -> api;
8. known pay-per-token providers (``PAY_PER_TOKEN_PROVIDERS``, e.g. openai, google, openrouter) -> api:
   they have no subscription path in OpenClaw;
9. everything else -> unknown, including anthropic without a profile (it can be either; keys from
   environment variables leave no profile) and user-defined providers.

Profiles of one provider resolve as OpenClaw ranks them for display: ``<provider>:default`` first, then
the store's ``lastGood``, then its ``order``, then file order. Only ``type``/``provider`` are read: no
secret is ever kept, logged or written, and the auth files are opened read-only.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from mc_pipeline.tables.schemas import BILLINGS

SUBSCRIPTION_PROVIDERS = ("openai-codex", "github-copilot", "google-gemini-cli", "google-antigravity")
LOCAL_PROVIDERS = ("ollama", "lmstudio", "lm-studio", "vllm", "llamacpp", "llama-cpp", "local")
AMBIGUOUS_PROVIDERS = ("zai", "minimax", "kimi-coding")
PAY_PER_TOKEN_PROVIDERS = (
    "openai",
    "google",
    "google-vertex",
    "anthropic-vertex",
    "openrouter",
    "xai",
    "groq",
    "mistral",
    "deepseek",
    "cerebras",
    "amazon-bedrock",
    "azure-openai-responses",
    "azure-openai",
    "vercel-ai-gateway",
    "together",
    "fireworks",
    "perplexity",
    "moonshot",
    "huggingface",
)
AUTH_TYPES = ("api_key", "oauth", "token")
MAIN_AGENT_ID = "main"
#: The profiles an agent without its own store inherits (the shared store, else the main agent's).
ANY_AGENT = "*"
_KEY_SEP = "\x1f"


class AuthProfiles(NamedTuple):
    """What :func:`read_auth_profiles` found: agent_id -> provider -> auth type, and problems seen."""

    profiles: dict[str, dict[str, str]]
    problems: list[str]


class BillingOverridesError(ValueError):
    """The billing override file is unreadable or invalid."""


def _read_store(path: Path, rel: str, problems: list[str]) -> dict[str, Any] | None:
    """The parsed store, or None (with a problem noted) when missing, unreadable or malformed."""
    if not path.is_file():
        return None
    try:
        with path.open("r", encoding="utf-8") as handle:  # read-only; never written
            data = json.load(handle)
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{rel}: cannot read auth profiles ({type(exc).__name__}); billing may be unknown")
        return None
    except json.JSONDecodeError as exc:
        problems.append(f"{rel}: malformed JSON at line {exc.lineno} column {exc.colno}; ignored")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("profiles", {}), dict):
        problems.append(f"{rel}: not an auth profile store (expected an object with `profiles`); ignored")
        return None
    return data


def _profile_types(store: dict[str, Any], rel: str, problems: list[str]) -> dict[str, tuple[str, str]]:
    """profile id -> (provider, auth type); never reads anything but ``provider`` and ``type``."""
    out: dict[str, tuple[str, str]] = {}
    for n, (profile_id, profile) in enumerate(store.get("profiles", {}).items(), start=1):
        if not isinstance(profile, dict):
            problems.append(f"{rel}: profile #{n} is not an object; ignored")
            continue
        provider = profile.get("provider")
        if not isinstance(provider, str) or not provider.strip():
            provider = str(profile_id).split(":", 1)[0]
        kind = profile.get("type", profile.get("mode"))  # "mode" in some hand-written files
        if not isinstance(kind, str) or not kind.strip():
            problems.append(f"{rel}: profile #{n} (provider {provider.strip().lower()}) has no type; ignored")
            continue
        kind = kind.strip().lower().replace("-", "_")
        if kind not in AUTH_TYPES:
            problems.append(f"{rel}: profile #{n} has unknown type {kind[:20]!r}; treated as unknown")
        out[str(profile_id)] = (provider.strip().lower(), kind)
    return out


def _by_provider(profiles: dict[str, tuple[str, str]], stores: list[dict[str, Any]]) -> dict[str, str]:
    """provider -> auth type of its preferred profile (default, lastGood, order, file order)."""
    ranked: dict[str, list[str]] = {}
    for profile_id, (provider, _) in profiles.items():
        ranked.setdefault(provider, []).append(profile_id)
    out: dict[str, str] = {}
    for provider, ids in ranked.items():
        preferred: list[str] = [f"{provider}:default"]
        for store in reversed(stores):  # the agent's own file before the inherited main one
            last_good = store.get("lastGood")
            if isinstance(last_good, dict) and isinstance(last_good.get(provider), str):
                preferred.append(last_good[provider])
        for store in reversed(stores):
            order = store.get("order")
            if isinstance(order, dict) and isinstance(order.get(provider), list):
                preferred.extend(p for p in order[provider] if isinstance(p, str))
        chosen = next((p for p in preferred if p in ids), ids[0])
        out[provider] = profiles[chosen][1]
    return out


def read_auth_profiles(
    home: Path,
    db_stores: Mapping[str, tuple[str, object]] | None = None,
    shared_store: dict[str, Any] | None = None,
) -> AuthProfiles:
    """Auth type per agent and provider, from each agent's store: its database's ``auth_profile_store``
    (OpenClaw 2026.8+, ``db_stores``: agent id -> (where, parsed JSON), see
    :func:`mc_pipeline.ingest.readers.agent_db.read_agent_facts`) or else
    ``agents/<id>/agent/auth-profiles.json``.

    Every agent directory (and every agent with a database store) gets an entry (empty when it has no
    profiles). Agents inherit the shared store, their own winning per profile id, as OpenClaw merges them:
    ``shared_store`` when the state database holds it (``auth.sharedStore`` = state-db), else the ``main``
    agent's store. Missing files are normal; unreadable or malformed ones become ``problems`` (paths
    relative to ``home``, no profile ids, no secrets) and never raise. Unpacks as ``profiles, problems``.
    """
    home = Path(home)
    problems: list[str] = []
    agents_dir = home / "agents"
    try:
        agent_dirs = sorted(p for p in agents_dir.iterdir() if p.is_dir()) if agents_dir.is_dir() else []
    except OSError as exc:
        return AuthProfiles({}, [f"agents: cannot list agent directories ({type(exc).__name__})"])

    stores: dict[str, dict[str, Any]] = {}
    types: dict[str, dict[str, tuple[str, str]]] = {}

    def add(agent: str, rel: str, store: object) -> None:
        if not isinstance(store, dict) or not isinstance(store.get("profiles", {}), dict):
            problems.append(f"{rel}: not an auth profile store (expected an object with `profiles`); ignored")
            return
        stores[agent] = store
        types[agent] = _profile_types(store, rel, problems)

    for agent, (rel, store) in (db_stores or {}).items():
        add(agent, rel, store)
    for agent_dir in agent_dirs:
        if agent_dir.name in stores:  # the database's store is the current one
            continue
        rel = f"agents/{agent_dir.name}/agent/auth-profiles.json"
        store = _read_store(agent_dir / "agent" / "auth-profiles.json", rel, problems)
        if store is not None:
            add(agent_dir.name, rel, store)
    shared_key = "\x00shared"
    if shared_store is not None:
        add(shared_key, "state/openclaw.sqlite#config_machine_state", shared_store)
    base = shared_key if shared_store is not None else MAIN_AGENT_ID

    result: dict[str, dict[str, str]] = {}
    if (
        base in stores
    ):  # an agent known only from its calls (e.g. a database the state registry lists) inherits the base
        result[ANY_AGENT] = _by_provider(types[base], [stores[base]])
    for agent in sorted({d.name for d in agent_dirs} | set(db_stores or {})):
        chain = [a for a in dict.fromkeys([base, agent]) if a in stores]
        merged: dict[str, tuple[str, str]] = {}
        for a in chain:
            merged.update(types[a])
        result[agent] = _by_provider(merged, [stores[a] for a in chain])
    return AuthProfiles(result, problems)


def _normalise_overrides(raw: Mapping[str, Any], source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in raw.items():
        agent, sep, provider = str(key).strip().lower().partition(":")
        if not isinstance(key, str) or not agent.strip() or (sep and not provider.strip()):
            raise BillingOverridesError(f"{source}: key {key!r} must be 'provider' or 'agent:provider'")
        if not isinstance(value, str) or value.strip().lower() not in BILLINGS:
            allowed = list(BILLINGS)
            raise BillingOverridesError(f"{source}: {key!r} = {value!r}: billing must be one of {allowed}")
        norm = f"{agent.strip()}:{provider.strip()}" if sep else agent.strip()
        out[norm] = value.strip().lower()
    return out


def load_billing_overrides(path: str | Path) -> dict[str, str]:
    """Read a TOML or JSON override file: ``{provider | "agent:provider": "api"|"subscription"|"unknown"}``.

    The mapping may be the whole document or its ``billing`` table. Keys are lower-cased. Any problem
    raises :class:`BillingOverridesError` (the user asked for this file, so silence would mislead).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise BillingOverridesError(f"{file}: cannot read billing overrides: {exc.strerror or exc}") from exc
    data: Any
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if file.suffix.lower() == ".json" else "TOML"
        raise BillingOverridesError(f"{file}: not valid {kind}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("billing"), dict):
        data = data["billing"]
    if not isinstance(data, dict):
        raise BillingOverridesError(f"{file}: expected a table/object of provider -> billing")
    return _normalise_overrides(data, str(file))


def _text(calls: pl.DataFrame, name: str) -> pl.Expr:
    column = pl.col(name).cast(pl.String) if name in calls.columns else pl.lit(None, dtype=pl.String)
    return column.str.strip_chars().str.to_lowercase()


def assign_billing(
    calls: pl.DataFrame,
    auth: Mapping[str, Mapping[str, str]] | AuthProfiles,
    overrides: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Add ``billing`` from ``provider`` and ``agent_id`` (missing columns count as null).

    ``auth`` is :func:`read_auth_profiles`' result (or just its ``profiles``); ``overrides`` what
    :func:`load_billing_overrides` returns. The order of the decision is in the module docstring.
    """
    profiles = auth.profiles if isinstance(auth, AuthProfiles) else auth
    flat_auth = {
        f"{agent.lower()}{_KEY_SEP}{provider.lower()}": kind
        for agent, by_provider in profiles.items()
        for provider, kind in by_provider.items()
    }
    norm = _normalise_overrides(overrides or {}, "overrides")
    agent_overrides = {k.replace(":", _KEY_SEP, 1): v for k, v in norm.items() if ":" in k}
    provider_overrides = {k: v for k, v in norm.items() if ":" not in k}

    provider = _text(calls, "provider")
    agent_provider = pl.concat_str([_text(calls, "agent_id"), provider], separator=_KEY_SEP)

    def lookup(key: pl.Expr, mapping: dict[str, str]) -> pl.Expr:
        if not mapping:
            return pl.lit(None, dtype=pl.String)
        return key.replace_strict(mapping, default=None, return_dtype=pl.String)

    any_agent = pl.concat_str([pl.lit(ANY_AGENT), provider], separator=_KEY_SEP)
    kind = pl.coalesce(lookup(agent_provider, flat_auth), lookup(any_agent, flat_auth))
    billing = pl.coalesce(
        lookup(agent_provider, agent_overrides),
        lookup(provider, provider_overrides),
        pl.when(provider.is_in(list(SUBSCRIPTION_PROVIDERS))).then(pl.lit("subscription")),
        pl.when(provider.is_in(list(LOCAL_PROVIDERS))).then(pl.lit("unknown")),
        pl.when(kind == "oauth").then(pl.lit("subscription")),
        pl.when(provider.is_in(list(AMBIGUOUS_PROVIDERS))).then(pl.lit("unknown")),
        pl.when((kind == "token") & (provider == "anthropic")).then(pl.lit("subscription")),
        pl.when(kind == "api_key").then(pl.lit("api")),
        pl.when(provider.is_in(list(PAY_PER_TOKEN_PROVIDERS))).then(pl.lit("api")),
        pl.lit("unknown"),
    )
    return calls.with_columns(billing=billing)
