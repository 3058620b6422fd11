"""usage-data.json and sessions.json: figures equal the marts, the dashboard's shape, the JSON Schema,
and nothing private in any public output (a planted-secret home run through the whole code location)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jsonschema
import polars as pl
import pytest

from mc_pipeline import __version__
from mc_pipeline.defs.mart_assets import usage_json_targets
from mc_pipeline.reporting.dashboard import build_sessions_document, build_usage_document
from mc_pipeline.reporting.marts import build_marts
from mc_pipeline_tests import homes as h
from mc_pipeline_tests.test_marts import calls_from_home, mixed_home

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "mc_pipeline" / "reporting" / "usage_data.schema.json").read_text()
)
NOW = datetime(2026, 3, 7, 18, 0, tzinfo=UTC)


def validate(doc: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    calls = calls_from_home(mixed_home(tmp_path_factory.mktemp("home")))
    today = date(2026, 3, 7)
    marts = build_marts(calls, today)
    doc = build_usage_document(calls, today=today, generated_at=NOW, marts=marts)
    return calls, marts, doc, today


def window_cost(frame: pl.DataFrame, window: str) -> float:
    return float(frame.filter(pl.col("window") == window).get_column("cost_usd").sum() or 0.0)


def test_document_figures_equal_the_marts(mixed):
    calls, marts, doc, today = mixed
    s = doc["summary"]
    assert s["weekTotal"] == pytest.approx(window_cost(marts.usage_by_provider, "last_7_days"))
    assert s["monthTotal"] == pytest.approx(window_cost(marts.usage_by_provider, "month_to_date"))
    assert s["todayCost"] == pytest.approx(window_cost(marts.usage_by_provider, "today"))
    assert s["totalRequests"] == calls.height  # failed and aborted included
    assert s["failedRequests"] == calls.filter(pl.col("status") != "ok").height > 0
    assert s["unpricedRequests"] == calls.filter(pl.col("cost_usd").is_null()).height == 1
    assert s["totalSessions"] == calls.select(pl.struct("agent_id", "session_id").n_unique()).item()
    assert s["monthProjected"] == pytest.approx(s["monthTotal"] / 7 * 31)
    assert s["billedCost"] + s["subscriptionValue"] + s["unknownBillingCost"] == pytest.approx(s["totalCost"])
    # providers: the all-time mart, sorted by cost desc
    assert doc["listsWindow"] == "last_30_days"
    mart = marts.usage_by_provider.filter(pl.col("window") == doc["listsWindow"])
    got = {p["name"]: (p["cost"], p["requests"], p["tokens"]) for p in doc["providers"]}
    want = {r["provider"]: (r["cost_usd"], r["calls"], r["total_tokens"]) for r in mart.iter_rows(named=True)}
    assert got.keys() == want.keys()
    for k in got:
        assert got[k] == pytest.approx(want[k])
    costs = [p["cost"] for p in doc["providers"]]
    assert costs == sorted(costs, reverse=True)
    assert sum(m["requests"] for m in doc["models"]) == calls.height
    assert sum(t["requests"] for t in doc["taskTypes"]) == calls.height
    assert doc["thinking"]["total_thinking"] == int(calls.get_column("thinking_tokens").sum())
    assert doc["alerts"] == [] and doc["generatedBy"] == {"name": "mc_pipeline", "version": __version__}
    assert doc["cronJobs"] and doc["cronJobs"][0]["id"] == "nightly-report"


def test_daily_is_30_zero_filled_days_ending_today(mixed):
    calls, marts, doc, today = mixed
    daily = doc["daily"]
    assert [d["date"] for d in daily] == [(today - timedelta(days=29 - i)).isoformat() for i in range(30)]
    by_day = {str(d): c for d, c in calls.group_by("day").agg(pl.col("cost_usd").sum()).iter_rows()}
    req = {str(d): n for d, n in calls.group_by("day").len().iter_rows()}
    for d in daily:
        assert d["cost"] == pytest.approx(by_day.get(d["date"]) or 0.0)
        assert d["requests"] == req.get(d["date"], 0)
        assert d["cost"] == pytest.approx(sum(v["cost"] for v in d["byProvider"].values()))
        assert d["requests"] == sum(v["requests"] for v in d["byModel"].values())
        assert isinstance(d["cost"], float) and isinstance(d["tokens"], int)
    # the dashboard's own arithmetic: last entry = today, last 7 entries = the week
    assert daily[-1]["date"] == today.isoformat()
    assert sum(d["cost"] for d in daily[-7:]) == pytest.approx(doc["summary"]["weekTotal"])
    assert any(d["requests"] == 0 for d in daily)


def test_document_validates_and_the_schema_rejects_what_crashes_the_page(mixed):
    doc = mixed[2]
    validate(doc)
    json.dumps(doc, allow_nan=False)
    for mutate in (
        lambda d: d["summary"].__setitem__("weekTotal", "12.50"),  # numeric string: .toFixed crashes
        lambda d: d["daily"][0].pop("tokens"),
        lambda d: d["providers"][0].__setitem__("cost", None),
        lambda d: d.pop("lastUpdated"),
        lambda d: d["daily"].pop(),
    ):
        bad = copy.deepcopy(doc)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(SCHEMA).validate(bad)


def test_empty_history_is_still_a_valid_document():
    empty = calls_from_home(Path("/nonexistent-home"))
    doc = build_usage_document(empty, today=date(2026, 3, 7), generated_at=NOW)
    validate(doc)
    assert doc["summary"]["weekTotal"] == 0 and len(doc["daily"]) == 30 and doc["providers"] == []
    assert build_sessions_document(empty, generated_at=NOW)["sessions"] == []


@pytest.mark.skipif(not h.REAL_DIR.exists(), reason="shared/real not present")
def test_real_transcripts_document_validates(tmp_path):
    calls = calls_from_home(h.copy_real_home(tmp_path))
    today = calls.get_column("day").max()
    doc = build_usage_document(calls, today=today, generated_at=NOW)
    validate(doc)
    assert doc["summary"]["totalRequests"] == calls.height
    assert doc["daily"][-1]["requests"] == calls.filter(pl.col("day") == today).height
    sessions = build_sessions_document(calls, generated_at=NOW)
    assert sum(s["requests"] for s in sessions["sessions"]) == calls.height
    assert sum(s["totalCost"] for s in sessions["sessions"]) == pytest.approx(doc["summary"]["totalCost"])


def test_sessions_document_shape(mixed):
    calls = mixed[0]
    doc = build_sessions_document(calls, generated_at=NOW, timezone_name="Europe/Berlin")
    s1 = next(s for s in doc["sessions"] if s["id"] == "11111111-1111-4111-8111-111111111111")
    assert s1["hourOfDay"] == 10  # 09:00 UTC in Berlin in March
    assert {t["tool"] for t in s1["toolCalls"]} == {"exec", "read"}
    tools_cost = sum(t["cost"] for t in s1["toolCalls"])
    with_tools = calls.filter((pl.col("session_id") == s1["id"]) & (pl.col("tool_calls") > 0))
    assert tools_cost == pytest.approx(with_tools.get_column("cost_usd").sum())
    assert 0 <= s1["cacheHitRate"] <= 1
    for s in doc["sessions"]:
        assert set(s) >= {
            "id",
            "timestamp",
            "totalCost",
            "tokens",
            "model",
            "provider",
            "hourOfDay",
            "cacheHitRate",
            "toolCalls",
        }


def test_lists_cover_the_last_30_days_and_totals_all_time(mixed):
    calls = mixed[0]
    later = date(2026, 4, 30)  # every call of the mixed home is more than 30 days before this
    doc = build_usage_document(calls, today=later, generated_at=NOW)
    validate(doc)
    assert doc["providers"] == [] and doc["models"] == [] and doc["sessions"] == []
    assert doc["summary"]["weekTotal"] == 0 and doc["summary"]["monthTotal"] == 0
    assert doc["summary"]["totalRequests"] == calls.height
    assert doc["summary"]["totalCost"] == pytest.approx(calls.get_column("cost_usd").sum())
    assert all(d["requests"] == 0 for d in doc["daily"])


def test_usage_json_targets():
    data = Path("/data")
    got = usage_json_targets("/srv/mc/public, /x/y/usage.json:", data)
    assert got == [
        (data / "usage-data.json", data / "sessions.json"),
        (Path("/srv/mc/public/usage-data.json"), Path("/srv/mc/public/sessions.json")),
        (Path("/x/y/usage.json"), Path("/x/y/sessions.json")),
    ]


# -- planted secrets through the whole code location ------------------------------------------------------
PHONE = "+4915112345678"
SECRETS = [
    "4915112345678",
    "whatsapp:direct",
    "sk-ant-api03-PLANTEDSECRET",
    "PLANTED PROMPT",
    "PLANTED ANSWER",
    "/home/alice",
    "alice",
    "cron:",
    "agent:main:",
]


def secret_home(home: Path) -> Path:
    t = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    sid = "44444444-4444-4444-8444-444444444444"
    key = f"agent:main:whatsapp:direct:{PHONE}"
    h.write_session(
        home,
        [
            h.session_line(sid, t),
            h.user(
                t, text="PLANTED PROMPT: my key is sk-ant-api03-PLANTEDSECRET, files in /home/alice/notes"
            ),
            h.assistant(
                t,
                u=h.usage(100, 40, cost=0.02),
                text="PLANTED ANSWER sk-ant-api03-PLANTEDSECRET",
                thinking="PLANTED PROMPT thinking about /home/alice",
                tools=("exec",),
            ),
            h.assistant(
                t + timedelta(minutes=1),
                u=h.usage(0, 0),
                stop="error",
                error="401 invalid x-api-key sk-ant-api03-PLANTEDSECRET for /home/alice",
            ),
        ],
        session_id=sid,
    )
    # a source that used the session key itself as the session id
    h.write_session(
        home,
        [
            {**h.session_line(key, t), "id": key},
            h.assistant(t + timedelta(hours=1), u=h.usage(10, 5, cost=0.001), text="PLANTED ANSWER"),
        ],
        session_id="55555555-5555-4555-8555-555555555555",
    )
    h.write_sessions_index(home, "main", {key: sid})
    return home


def test_planted_secrets_leak_into_no_public_output(tmp_path, refresh):
    home, data, pub = secret_home(tmp_path / "home"), tmp_path / "data", tmp_path / "public"
    result = refresh(home, data, raise_on_error=False, usage_json_paths=str(pub))
    for step in ("marts", "usage_data_json"):
        assert result.is_node_success(step), step
    public = [
        data / "usage-data.json",
        data / "sessions.json",
        pub / "usage-data.json",
        pub / "sessions.json",
        *sorted((data / "csv").glob("usage_*.csv")),
        data / "csv" / "thinking_stats.csv",
        data / "csv" / "api_health.csv",
    ]
    for name in ("usage_by_session", "usage_by_trigger"):
        public.append(data / "parquet" / name / f"{name}.parquet")
    public += sorted((data / "parquet" / "usage_daily").glob("day=*/part-0.parquet"))
    assert any("usage_daily" in str(p) for p in public)
    doc = json.loads((data / "usage-data.json").read_text())
    assert (
        doc["summary"]["totalRequests"] == 3 and doc["summary"]["totalSessions"] == 2
    )  # the calls are there
    validate(doc)
    # the written file agrees with the mart files on disk
    mart = pl.read_parquet(data / "parquet" / "usage_by_provider" / "usage_by_provider.parquet")
    mart = mart.filter(pl.col("window") == doc["listsWindow"])
    assert mart.height and doc["summary"]["weekTotal"] == pytest.approx(
        0.021
    )  # 0.02 + 0.001, the failed call is $0
    assert {p["name"]: (p["requests"], pytest.approx(p["cost"])) for p in doc["providers"]} == {
        r["provider"]: (r["calls"], r["cost_usd"]) for r in mart.iter_rows(named=True)
    }
    csv = pl.read_csv(data / "csv" / "usage_by_provider.csv").filter(pl.col("window") == "all_time")
    assert csv.get_column("calls").sum() == doc["summary"]["totalRequests"]
    for path in public:
        assert path.exists(), path
        text = path.read_text() if path.suffix != ".parquet" else pl.read_parquet(path).write_csv()
        for secret in SECRETS + [str(tmp_path)]:
            assert secret not in text, f"{secret!r} leaked into {path.name}"
    ids = {s["id"] for s in json.loads((data / "sessions.json").read_text())["sessions"]}
    assert "44444444-4444-4444-8444-444444444444" in ids and any(i.startswith("s-") for i in ids)


def test_the_costs_page_contract_on_a_home_with_history_before_this_month(tmp_path, refresh):
    """What Mission Control's Costs page computes from our files (its code is not ours;
    docs/dashboard-contract.md#what-the-costs-page-computes): today is the last `daily` entry, the week and
    the month the last 7 and 30, a provider's or model's share its cost over the view's total (monthTotal for
    the 30-day lists), the day and week views sum daily[].byProvider and byModel. Every share stays at or
    under 100% in every view, required fields are numbers, figures equal the marts."""
    from datetime import datetime, timedelta

    from mc_pipeline.tables.store import Tables

    now = datetime.now(UTC)
    today = now.date()
    before_month = now - timedelta(
        days=min(today.day + 1, 29)
    )  # last month when there is room in the 30 days
    home, data = tmp_path / "home", tmp_path / "data"
    for i, (ts, provider, model, cost) in enumerate(
        [
            (before_month, "anthropic", "claude-opus-4-6", 40.0),
            (now - timedelta(days=3), "openai", "gpt-5.1", 2.0),
            (now - timedelta(minutes=10), "anthropic", "claude-sonnet-4-5", 1.5),
            (now - timedelta(minutes=5), "google", "gemini-2.5-pro", 0.5),
        ]
    ):
        sid = f"0b7c6a52-3333-4a3e-9c1e-2f0e5d8a9b0{i}"
        h.write_session(
            home,
            [
                h.session_line(sid, ts),
                h.assistant(ts, provider=provider, model=model, u=h.usage(1000, 100, cost=cost)),
            ],
            session_id=sid,
        )
    refresh(home, data)
    doc = json.loads((data / "usage-data.json").read_text())
    s, daily = doc["summary"], doc["daily"]
    for key in ("weekTotal", "monthTotal"):
        assert isinstance(s[key], (int, float)) and not isinstance(s[key], bool)
    assert all(isinstance(d[k], (int, float)) for d in daily for k in ("cost", "tokens", "requests"))
    assert all(
        isinstance(e["name"], str)
        and all(isinstance(e[k], (int, float)) for k in ("cost", "tokens", "requests"))
        for e in doc["providers"] + doc["models"]
    )
    assert doc["lastUpdated"] and daily[-1]["date"] == today.isoformat()
    # the page's own arithmetic
    week, month = daily[-7:], daily[-30:]
    assert sum(d["cost"] for d in week) == pytest.approx(s["weekTotal"])
    assert sum(d["cost"] for d in month) == pytest.approx(s["monthTotal"])
    views = {"day": (daily[-1:], daily[-1]["cost"]), "week": (week, s["weekTotal"])}
    for name, (entries, total) in views.items():
        for field in ("byProvider", "byModel"):
            summed: dict[str, float] = {}
            for d in entries:
                for k, v in d[field].items():
                    summed[k] = summed.get(k, 0.0) + v["cost"]
            assert all(v / total <= 1 + 1e-9 for v in summed.values()), (name, field)
    for entry in doc["providers"] + doc["models"]:  # the 30-day lists over monthTotal
        assert entry["cost"] / s["monthTotal"] <= 1 + 1e-9, entry
    # ... and equal to the marts
    by_provider = Tables(data).read("usage_by_provider")
    for window, key in (
        ("last_7_days", "weekTotal"),
        ("last_30_days", "monthTotal"),
        ("month_to_date", "monthToDate"),
    ):
        assert s[key] == pytest.approx(
            by_provider.filter(pl.col("window") == window).get_column("cost_usd").sum()
        )
    if (
        before_month.month != today.month
    ):  # the month so far leaves out last month's 40 USD; the 30 days do not
        assert s["monthToDate"] < 40 <= s["monthTotal"]


def test_the_daily_cost_chart_is_built_once_per_run(tmp_path, refresh, monkeypatch):
    """The chart goes on usage_by_provider's materialisation; usage_data_json does not draw it again."""
    import dagster as dg

    from mc_pipeline.defs import mart_assets

    drawn = []
    draw = mart_assets.daily_cost_svg
    monkeypatch.setattr(mart_assets, "daily_cost_svg", lambda *a, **k: drawn.append(1) or draw(*a, **k))
    home = mixed_home(tmp_path / "home")
    with dg.instance_for_test() as instance:
        refresh(home, tmp_path / "data", instance)

        def latest(asset: str) -> dict:
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            return event.asset_materialization.metadata

        assert "image/svg+xml" in latest("usage_by_provider")["daily_cost_by_provider"].value
        assert "daily_cost_by_provider" not in latest("usage_data_json")
    assert len(drawn) == 1


def test_two_runs_over_the_same_home_write_the_same_dashboard_files(tmp_path, refresh):
    """usage-data.json and sessions.json are byte-identical between a run and a full rebuild of the same
    home, apart from lastUpdated (sums in a fixed order: float totals do not move in the last digit)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    home = tmp_path / "home"
    subprocess.run(
        [sys.executable, str(root / "scripts" / "synth_home.py"), "--out", str(home), "--size-mb", "20"]
        + ["--layout", "upgraded", "--seed", "5"],
        check=True,
        capture_output=True,
        cwd=root,
    )
    data = tmp_path / "data"

    def published() -> dict[str, str]:
        """Each file's bytes with its lastUpdated value blanked."""
        out = {}
        for name in ("usage-data.json", "sessions.json"):
            text = (data / name).read_text()
            stamp = json.loads(text)["lastUpdated"]
            assert text.count(stamp) == 1, name
            out[name] = text.replace(stamp, "")
        return out

    refresh(home, data)
    first = published()
    assert (
        json.loads(first["sessions.json"])["sessions"]
        and '"totalRequests": 0' not in first["usage-data.json"]
    )
    refresh(home, data, full_rebuild=True)
    assert published() == first
