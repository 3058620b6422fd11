"""Alerts in Dagster: the ``budget_alerts`` asset, the delivery sensor and the run-failure sensor.

Deciding is in ``mc_pipeline.alerting.rules``, recording and delivering in ``mc_pipeline.alerting.delivery``;
this module only wires them to settings, the ``llm_calls`` table and the Dagster log.
"""

import os
from datetime import UTC, datetime

import dagster as dg

from mc_pipeline.alerting.delivery import deliver_pending, parse_webhooks, record_alerts
from mc_pipeline.alerting.rules import AlertRules, load_alert_rules, run_failure_alert
from mc_pipeline.defs.resources import DataStore, McSettings
from mc_pipeline.reporting.markdown import markdown_table

ALERTS_GROUP = "alerts"

#: Environment variables that override single values of the rules file (see alert_rules.toml).
RULE_OVERRIDES = (
    "MC_DAILY_LIMIT_USD",
    "MC_WEEKLY_LIMIT_USD",
    "MC_MONTHLY_LIMIT_USD",
    "MC_MODEL_DAILY_LIMITS_USD",
    "MC_FAILURE_RATE_THRESHOLD",
    "MC_FAILURE_MIN_CALLS",
    "MC_SPIKE_FACTOR",
    "MC_ALERTS_INCLUDE_SUBSCRIPTION",
    "MC_ALERT_ACTION",
    "MC_ALERT_ACTION_TIMEOUT_S",
)


class AlertSettings(dg.ConfigurableResource):
    """Alert rules and where alerts go. Build with ``AlertSettings.from_env()``."""

    rules_path: str = ""  # empty: mc_pipeline/alerting/alert_rules.toml
    overrides: dict[str, str] = {}  # RULE_OVERRIDES found in the environment
    webhooks: str = ""  # comma-separated URLs (MC_ALERT_WEBHOOKS)
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 3

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "AlertSettings":
        env = dict(os.environ if env is None else env)
        return cls(
            rules_path=env.get("MC_ALERT_RULES", ""),
            overrides={k: env[k] for k in RULE_OVERRIDES if k in env},
            webhooks=env.get("MC_ALERT_WEBHOOKS", ""),
            webhook_timeout_s=float(env.get("MC_ALERT_WEBHOOK_TIMEOUT_S") or 5.0),
        )

    def rules(self) -> AlertRules:
        return load_alert_rules(self.rules_path or None, self.overrides)

    def webhook_urls(self) -> list[str]:
        return parse_webhooks(self.webhooks)


#: Budgets and subscription windows as they stand (for usage-data.json), written by budget_alerts.
BUDGETS_FILE = "budgets.json"


def _deliver(log, store: DataStore, alert_settings: AlertSettings, deadline_s: float):
    """Deliver what alerts.jsonl holds and was not delivered yet, within ``deadline_s``."""
    rules = alert_settings.rules()
    return deliver_pending(
        store.root,
        alert_settings.webhook_urls(),
        log=log,
        action=list(rules.action),
        action_timeout_s=rules.action_timeout_s,
        retries=alert_settings.webhook_retries,
        timeout=alert_settings.webhook_timeout_s,
        deadline_s=deadline_s,
    )


def build_alert_asset(fleet: bool = False) -> dg.AssetsDefinition:
    """``budget_alerts`` of ``$MC_DATA_DIR`` (a fleet's: all homes; budgets can be scoped to a home)."""

    @dg.asset(
        name="budget_alerts",
        group_name=ALERTS_GROUP,
        kinds={"parquet"},
        # usage_daily and llm_calls are built by day_tables in a refresh run; health_daily (written by the
        # same step) puts this step after it; a fleet's combined tables come from fleet_tables
        deps=["fleet_tables"] if fleet else ["usage_daily", "llm_calls", "health_daily"],
        description=(
            "Alerts that hold now: spend limits, budgets per agent, cron job, model, provider or home with "
            "thresholds and a forecast, subscription windows, the failure rate over the last 24 h, spend "
            "spikes (rules: alert_rules.toml + MC_* overrides). Newly raised ones are appended once to "
            "alerts.jsonl and delivered. Reads the per-day aggregates and the last 8 days of calls only."
        ),
    )
    def budget_alerts(
        context: dg.AssetExecutionContext,
        settings: McSettings,
        store: DataStore,
        alert_settings: AlertSettings,
    ):
        return evaluate(context, settings, store, alert_settings, fleet)

    return budget_alerts


def evaluate(
    context, settings: McSettings, store: DataStore, alert_settings: AlertSettings, fleet: bool
) -> dg.MaterializeResult:
    """The alert rules on the per-day aggregates and recent calls: alerts raised once, budgets written."""
    from datetime import timedelta

    from mc_pipeline.alerting.rules import evaluate_alerts_daily, local_today

    rules = alert_settings.rules()
    now = datetime.now(UTC)
    tables = store.tables()
    today = local_today(now, settings.timezone)
    # the last 8 days of calls: the 24 h failure rate and the weekly subscription windows
    columns = ["timestamp", "status", "provider", "billing", "total_tokens"]
    if fleet:
        from mc_pipeline.reporting.fleet import recent_calls

        recent = recent_calls(store.root, [n for n, _ in settings.fleet()], today, 9, columns)
    else:
        recent = tables.read_days("llm_calls", [today - timedelta(days=i) for i in range(9)], columns=columns)
    usage = tables.staged("usage_daily")
    alerts = evaluate_alerts_daily(usage, recent, rules, now, settings.timezone)
    tables.write("budget_alerts", alerts)
    from mc_pipeline.alerting.budgets import budget_alerts as budgets_now
    from mc_pipeline.alerting.budgets import window_alerts
    from mc_pipeline.tables import storage

    status = {
        "budgets": [b.as_json() for b in budgets_now(usage, rules.budgets, now, settings.timezone)[1]],
        "subscriptionWindows": [w.as_json() for w in window_alerts(recent, rules.budgets, now)[1]],
    }
    storage.write_json(status, store.staging / BUDGETS_FILE)
    new = record_alerts(alerts, store.root)
    if new:
        context.log.info(
            f"{len(new)} new alert(s) recorded in alerts.jsonl: " + ", ".join(a["alert_id"] for a in new)
        )
    # Deliver right away too (a one-shot `make run` has no sensor daemon); the sensor retries what is left.
    report = _deliver(context.log.warning, store, alert_settings, deadline_s=20.0)
    if report.errors:
        context.log.warning(f"alert delivery: {report.summary()}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(alerts.height),
            "new_alerts": dg.MetadataValue.int(len(new)),
            "pending_deliveries": dg.MetadataValue.int(len(report.pending)),
            "alerts": dg.MetadataValue.md(
                markdown_table(alerts, columns=["severity", "rule", "period", "message", "value", "limit"])
                if alerts.height
                else "No alert holds."
            ),
        },
    )


@dg.sensor(
    name="alert_delivery",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Delivers alerts.jsonl entries not yet delivered (log + MC_ALERT_WEBHOOKS); failed ones "
    "retry.",
)
def alert_delivery(context: dg.SensorEvaluationContext, store: DataStore, alert_settings: AlertSettings):
    report = _deliver(context.log.warning, store, alert_settings, deadline_s=40.0)
    for error in report.errors:
        context.log.warning(f"alert delivery failed: {error}")
    return dg.SkipReason(f"alerts: {report.summary()}")


@dg.run_failure_sensor(
    name="run_failure_alerts",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports a failed pipeline run as a critical alert (alerts.jsonl, log, webhooks).",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, store: DataStore, alert_settings: AlertSettings):
    run = context.dagster_run
    error = context.failure_event.message if context.failure_event else None
    alert = run_failure_alert(run.job_name, run.run_id, error, datetime.now(UTC))
    record_alerts([alert], store.root)
    report = _deliver(context.log.warning, store, alert_settings, deadline_s=40.0)
    for problem in report.errors:
        context.log.warning(f"alert delivery failed: {problem}")


defs = dg.Definitions(sensors=[alert_delivery, run_failure_alerts])
