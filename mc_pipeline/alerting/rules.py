"""Where an alert is decided: budget, per-model, failure-rate and spike rules evaluated on ``llm_calls``.

Pure: frames in, a frame out (``schemas.ALERTS``). Rules come from ``alert_rules.toml`` (or the file in
``MC_ALERT_RULES``) with environment overrides; see ``load_alert_rules``. Only the current period of each
rule is evaluated (today, this ISO week, this month, the last 24 hours), in the time zone of the ``day``
column. ``alert_id`` is ``<rule>[:<scope>]:<period>``, stable across runs, so an alert that keeps firing
all day is one alert, not one per run (delivery de-duplicates on it).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from mc_pipeline.alerting.budgets import BudgetRules, BudgetRulesError, budget_alerts, window_alerts
from mc_pipeline.alerting.budgets import rules_from_doc as budget_rules_from_doc
from mc_pipeline.runtime.config import parse_bool
from mc_pipeline.tables.schemas import ALERTS

DEFAULT_RULES_FILE = Path(__file__).with_name("alert_rules.toml")

#: Severity per rule (seed plan, Phase 6: daily = critical, weekly = warning).
SEVERITY = {
    "daily_limit": "critical",
    "model_daily_limit": "critical",
    "weekly_limit": "warning",
    "monthly_limit": "warning",
    "failure_rate": "warning",
    "spend_spike": "warning",
    "run_failure": "critical",
    "budget": "warning (critical at 100%)",
    "subscription_window": "warning (critical at 100%)",
}

FAILED_STATUSES = ("error", "aborted")


@dataclass(frozen=True)
class AlertRules:
    daily_limit_usd: float | None = None
    weekly_limit_usd: float | None = None
    monthly_limit_usd: float | None = None
    model_daily_limit_usd: dict[str, float] = field(default_factory=dict)
    include_subscription: bool = False
    failure_rate_threshold: float | None = None  # percent
    failure_min_calls: int = 20
    spike_factor: float | None = None
    spike_min_usd: float = 0.0
    spike_baseline_days: int = 7
    spike_min_active_days: int = 3  # days with spend among the baseline days, else no baseline
    budgets: BudgetRules = field(default_factory=BudgetRules)  # per agent/cron job/model budgets, windows
    action: tuple[str, ...] = ()  # a command run once per critical alert (the alert as JSON on stdin)
    action_timeout_s: float = 30.0


class AlertRulesError(ValueError):
    """A rules file or environment value that cannot be used, named with why."""


def _number(value: object, what: str, *, allow_off: bool = True) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if allow_off and text in ("", "off", "none", "0"):
            return None
        try:
            value = float(text)
        except ValueError as exc:
            raise AlertRulesError(f"{what}: {value!r} is not a number") from exc
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AlertRulesError(f"{what}: {value!r} is not a number")
    number = float(value)
    if math.isnan(number) or number < 0:
        raise AlertRulesError(f"{what}: {value!r} must be a number >= 0")
    if allow_off and number == 0:
        return None
    return number


def _bool(value: str, what: str) -> bool:
    flag = parse_bool(value)
    if flag is None and value.strip():
        raise AlertRulesError(f"{what}: {value!r} is not true/false")
    return bool(flag)  # empty: off


def _model_limits(text: str, what: str) -> dict[str, float]:
    limits: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        model, sep, usd = part.rpartition("=")
        if not sep or not model.strip():
            raise AlertRulesError(f"{what}: {part!r} is not model=usd")
        limit = _number(usd, f"{what} {model.strip()}")
        if limit is not None:
            limits[model.strip()] = limit
    return limits


def _whole(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AlertRulesError(f"{what} must be a whole number >= 1, not {value!r}")
    return value


def rules_from_doc(doc: Mapping, where: str = "alert rules") -> AlertRules:
    spend = doc.get("spend", {}) or {}
    failure = doc.get("failure_rate", {}) or {}
    spike = doc.get("spike", {}) or {}
    models = spend.get("model_daily_limit_usd", {}) or {}
    if not isinstance(models, Mapping):
        raise AlertRulesError(f"{where}: spend.model_daily_limit_usd must be a table of model = usd")
    include = spend.get("include_subscription", False)
    if not isinstance(include, bool):
        raise AlertRulesError(f"{where}: spend.include_subscription must be true or false")
    min_calls = _whole(failure.get("min_calls", 20), f"{where}: failure_rate.min_calls")
    model_limits = {}
    for model, usd in models.items():
        limit = _number(usd, f"{where}: spend.model_daily_limit_usd.{model}")
        if limit is not None:
            model_limits[str(model)] = limit
    try:
        budgets = budget_rules_from_doc(doc, where, include)
    except BudgetRulesError as exc:
        raise AlertRulesError(str(exc)) from exc
    action = (doc.get("action", {}) or {}).get("command", [])
    if isinstance(action, str):
        import shlex

        action = shlex.split(action)
    if not isinstance(action, list) or not all(isinstance(a, str) for a in action):
        raise AlertRulesError(f"{where}: action.command must be a command line or a list of strings")
    timeout = _number(
        (doc.get("action", {}) or {}).get("timeout_s", 30), f"{where}: action.timeout_s", allow_off=False
    )
    return AlertRules(
        budgets=budgets,
        action=tuple(action),
        action_timeout_s=timeout or 30.0,
        daily_limit_usd=_number(spend.get("daily_limit_usd"), f"{where}: spend.daily_limit_usd"),
        weekly_limit_usd=_number(spend.get("weekly_limit_usd"), f"{where}: spend.weekly_limit_usd"),
        monthly_limit_usd=_number(spend.get("monthly_limit_usd"), f"{where}: spend.monthly_limit_usd"),
        model_daily_limit_usd=model_limits,
        include_subscription=include,
        failure_rate_threshold=_number(
            failure.get("threshold_percent"), f"{where}: failure_rate.threshold_percent"
        ),
        failure_min_calls=min_calls,
        spike_factor=_number(spike.get("factor"), f"{where}: spike.factor"),
        spike_min_usd=_number(spike.get("min_usd", 0), f"{where}: spike.min_usd", allow_off=False) or 0.0,
        spike_min_active_days=_whole(spike.get("min_active_days", 3), f"{where}: spike.min_active_days"),
    )


def load_alert_rules(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> AlertRules:
    """Rules from ``path`` (default: the shipped ``alert_rules.toml``), then environment overrides.

    An override set to ``0``/``off``/empty switches that rule off. Unknown keys in the file are ignored.
    """
    file = Path(path).expanduser() if path else DEFAULT_RULES_FILE
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AlertRulesError(f"alert rules file {file}: cannot read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise AlertRulesError(f"alert rules file {file}: not valid TOML ({exc})") from exc
    rules = rules_from_doc(doc, where=file.name)
    env = env or {}
    changes: dict[str, object] = {}
    for var, attr in (
        ("MC_DAILY_LIMIT_USD", "daily_limit_usd"),
        ("MC_WEEKLY_LIMIT_USD", "weekly_limit_usd"),
        ("MC_MONTHLY_LIMIT_USD", "monthly_limit_usd"),
        ("MC_FAILURE_RATE_THRESHOLD", "failure_rate_threshold"),
        ("MC_SPIKE_FACTOR", "spike_factor"),
    ):
        if var in env:
            changes[attr] = _number(env[var], var)
    if "MC_MODEL_DAILY_LIMITS_USD" in env:
        changes["model_daily_limit_usd"] = _model_limits(
            env["MC_MODEL_DAILY_LIMITS_USD"], "MC_MODEL_DAILY_LIMITS_USD"
        )
    if env.get("MC_FAILURE_MIN_CALLS", "").strip():
        try:
            changes["failure_min_calls"] = max(1, int(env["MC_FAILURE_MIN_CALLS"]))
        except ValueError as exc:
            raise AlertRulesError(
                f"MC_FAILURE_MIN_CALLS: {env['MC_FAILURE_MIN_CALLS']!r} is not a whole number"
            ) from exc
    if "MC_ALERTS_INCLUDE_SUBSCRIPTION" in env:
        changes["include_subscription"] = _bool(
            env["MC_ALERTS_INCLUDE_SUBSCRIPTION"], "MC_ALERTS_INCLUDE_SUBSCRIPTION"
        )
        changes["budgets"] = replace(rules.budgets, include_subscription=changes["include_subscription"])
    if env.get("MC_ALERT_ACTION", "").strip():
        import shlex

        changes["action"] = tuple(shlex.split(env["MC_ALERT_ACTION"]))
    if env.get("MC_ALERT_ACTION_TIMEOUT_S", "").strip():
        changes["action_timeout_s"] = _number(
            env["MC_ALERT_ACTION_TIMEOUT_S"], "MC_ALERT_ACTION_TIMEOUT_S", allow_off=False
        )
    return replace(rules, **changes)


# -- periods ---------------------------------------------------------------------------------------------
def week_period(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def month_period(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def local_today(now: datetime, tz: str) -> date:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(ZoneInfo(tz)).date()


def _usd(x: float) -> str:
    return f"${x:,.2f}"


# -- evaluation ------------------------------------------------------------------------------------------
def _spend_frame(calls: pl.DataFrame, rules: AlertRules) -> pl.DataFrame:
    if rules.include_subscription:
        return calls
    return calls.filter(pl.col("billing").fill_null("unknown") != "subscription")


def _alert(
    rule: str, period: str, message: str, value: float, limit: float, now: datetime, scope: str | None = None
) -> dict:
    alert_id = f"{rule}:{scope}:{period}" if scope else f"{rule}:{period}"
    return {
        "alert_id": alert_id,
        "rule": rule,
        "scope": scope,
        "period": period,
        "severity": SEVERITY[rule],
        "message": message,
        "value": float(value),
        "limit": float(limit),
        "raised_at": now,
    }


def evaluate_alerts(calls: pl.DataFrame, rules: AlertRules, now: datetime, tz: str) -> pl.DataFrame:
    """The alerts that hold at ``now`` for ``calls`` (an ``llm_calls`` frame whose ``day`` is in ``tz``)."""
    from mc_pipeline.calls.daily import usage_daily

    return evaluate_alerts_daily(usage_daily(calls), calls, rules, now, tz)


def evaluate_alerts_daily(
    usage: pl.DataFrame, recent: pl.DataFrame, rules: AlertRules, now: datetime, tz: str
) -> pl.DataFrame:
    """The alerts that hold at ``now``, from the per-day aggregate ``usage`` (``usage_daily`` rows: spend per
    day, model, agent, billing) and the ``recent`` calls (``llm_calls`` rows of at least the last 24 h:
    the failure rate).

    Spend is ``cost_usd`` summed (unpriced calls have no cost and add nothing; messages say how many
    there were), subscription calls left out unless ``rules.include_subscription``.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    now = now.astimezone(UTC)
    today = local_today(now, tz)
    out: list[dict] = []
    calls = recent
    spend = _spend_frame(usage, rules).select("day", "model", "cost_usd", "unpriced_calls")

    out.extend(_period_limit_alerts(spend, rules, today, now))
    if rules.model_daily_limit_usd:
        out.extend(_model_limit_alerts(spend, rules, today, now))
    if rules.failure_rate_threshold is not None:
        out.extend(_failure_rate_alerts(calls, rules, today, now))
    if rules.spike_factor is not None:
        out.extend(_spike(spend, rules, today, now))

    out.extend(budget_alerts(usage, rules.budgets, now, tz)[0])
    if rules.budgets.windows and "billing" in calls.columns:
        out.extend(window_alerts(calls, rules.budgets, now)[0])

    if not out:
        return pl.DataFrame(schema=ALERTS)
    return pl.DataFrame(out, schema=ALERTS)


def _period_limit_alerts(spend: pl.DataFrame, rules: AlertRules, today: date, now: datetime) -> list[dict]:
    """The daily, weekly and monthly limits: spend of today, this ISO week and this month over its limit."""
    out: list[dict] = []
    week_start = today - timedelta(days=today.weekday())
    month_start = today.replace(day=1)
    sums = spend.select(
        today=pl.col("cost_usd").filter(pl.col("day") == today).sum(),
        week=pl.col("cost_usd").filter(pl.col("day").is_between(week_start, today)).sum(),
        month=pl.col("cost_usd").filter(pl.col("day").is_between(month_start, today)).sum(),
        unpriced_today=pl.col("unpriced_calls").filter(pl.col("day") == today).sum(),
    ).row(0, named=True)
    unpriced_note = (
        f" ({sums['unpriced_today']} unpriced call(s) today not included)" if sums["unpriced_today"] else ""
    )
    for rule, limit, value, period, label in (
        ("daily_limit", rules.daily_limit_usd, sums["today"], today.isoformat(), f"Daily spend on {today}"),
        (
            "weekly_limit",
            rules.weekly_limit_usd,
            sums["week"],
            week_period(today),
            f"Weekly spend in {week_period(today)}",
        ),
        (
            "monthly_limit",
            rules.monthly_limit_usd,
            sums["month"],
            month_period(today),
            f"Monthly spend in {month_period(today)}",
        ),
    ):
        if limit is not None and (value or 0.0) > limit:
            note = unpriced_note if rule == "daily_limit" else ""
            out.append(
                _alert(
                    rule,
                    period,
                    f"{label} {_usd(value)} exceeds the limit {_usd(limit)}{note}",
                    value,
                    limit,
                    now,
                )
            )
    return out


def _model_limit_alerts(spend: pl.DataFrame, rules: AlertRules, today: date, now: datetime) -> list[dict]:
    """The per-model daily limits: today's spend on each limited model over its limit."""
    out: list[dict] = []
    by_model = (
        spend.filter(pl.col("day") == today)
        .group_by("model")
        .agg(pl.col("cost_usd").sum().alias("usd"))
        .filter(pl.col("model").is_in(list(rules.model_daily_limit_usd)))
    )
    for model, usd in sorted(by_model.iter_rows()):
        limit = rules.model_daily_limit_usd[model]
        if (usd or 0.0) > limit:
            out.append(
                _alert(
                    "model_daily_limit",
                    today.isoformat(),
                    f"Daily spend on {model} on {today} {_usd(usd)} exceeds its limit {_usd(limit)}",
                    usd,
                    limit,
                    now,
                    scope=model,
                )
            )
    return out


def _failure_rate_alerts(calls: pl.DataFrame, rules: AlertRules, today: date, now: datetime) -> list[dict]:
    """The failure rate: the share of failed calls in the last 24 h over the threshold (with enough calls)."""
    window = calls.filter(pl.col("timestamp") > now - timedelta(hours=24), pl.col("timestamp") <= now)
    total = window.height
    failed = window.filter(pl.col("status").is_in(FAILED_STATUSES)).height
    if total >= rules.failure_min_calls:
        rate = 100.0 * failed / total
        if rate > rules.failure_rate_threshold:
            return [
                _alert(
                    "failure_rate",
                    today.isoformat(),
                    f"{rate:.1f}% of calls failed in the last 24 h ({failed} of {total}), "
                    f"above {rules.failure_rate_threshold:g}%",
                    rate,
                    rules.failure_rate_threshold,
                    now,
                )
            ]
    return []


def _spike(spend: pl.DataFrame, rules: AlertRules, today: date, now: datetime) -> list[dict]:
    """Today against the median spend of the active days (days with spend) among the previous n days.

    Quiet days are left out of the median: with them, anyone who uses agents two days a week would get
    a "spike" on every working day (seen on the real transcripts). Too few active days: no baseline.
    """
    n = rules.spike_baseline_days
    start = today - timedelta(days=n)
    daily = (
        spend.filter(pl.col("day").is_between(start, today))
        .group_by("day")
        .agg(pl.col("cost_usd").sum().alias("usd"))
    )
    before = daily.filter(pl.col("day") < today, pl.col("usd") > 0).get_column("usd")
    if before.len() < rules.spike_min_active_days:
        return []  # not enough history to know what normal is
    baseline = float(before.median())
    today_usd = daily.filter(pl.col("day") == today).get_column("usd").sum() or 0.0
    limit = rules.spike_factor * baseline
    if today_usd >= rules.spike_min_usd and today_usd > limit:
        return [
            _alert(
                "spend_spike",
                today.isoformat(),
                f"Spend today {_usd(today_usd)} is more than {rules.spike_factor:g}x the median of the "
                f"{before.len()} active day(s) among the previous {n} ({_usd(baseline)})",
                today_usd,
                limit,
                now,
            )
        ]
    return []


def run_failure_alert(job_name: str, run_id: str, error: str | None, now: datetime) -> dict:
    """The alert for a failed pipeline run (one per run): its job, short run id and the error's first line."""
    first = (error or "").strip().splitlines()[0][:200] if (error or "").strip() else "no error message"
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return _alert(
        "run_failure",
        run_id,
        f"Pipeline run {run_id[:8]} of {job_name} failed: {first}",
        1.0,
        0.0,
        now.astimezone(UTC),
        scope=job_name,
    )
