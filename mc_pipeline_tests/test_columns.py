"""The column specs (``mc_pipeline/tables/schemas.py``): the tables a refresh writes have exactly the columns
and types their spec says, every column is described, private columns are tagged in Dagster, the pandera
contracts generated from the specs reject each kind of bad row, and the schema-change checks run."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime

import dagster as dg
import polars as pl
import pytest
from pandera.errors import SchemaErrors

from mc_pipeline.calls.llm_calls import validate
from mc_pipeline.definitions import build_defs
from mc_pipeline.defs.columns import COLUMN_SCHEMA, PRIVATE_TAG, column_schema
from mc_pipeline.defs.resources import McSettings
from mc_pipeline.tables import schemas
from mc_pipeline.tables.contracts import CONTRACTS, ApiCallsModel, LlmCallsModel, QuarantineModel
from mc_pipeline.tables.schemas import TABLES, Column, conform, dtypes
from mc_pipeline.tables.store import Tables
from mc_pipeline_tests import upgraded_home

#: Every spec, the readers' staged ones included.
SPECS = {
    **TABLES,
    "call_records": schemas.CALL_RECORDS_SPEC,
    "file_counts": schemas.FILE_COUNTS_SPEC,
    "usage_measures": schemas.USAGE_MEASURES_SPEC,
    "usage_ratios": schemas.USAGE_RATIOS_SPEC,
}
#: Tables without their column schema in Dagster: budget_alerts is defined in defs/alert_assets.py, not
#: wired yet.
NOT_ATTACHED = {"budget_alerts"}
#: Day-partitioned: described in Dagster, but no schema-change check (see defs/columns.py).
PARTITIONED = {"llm_calls", "usage_daily"}
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


# -- the specs ----------------------------------------------------------------------------------------------
def test_every_column_has_a_description_and_a_spec_names_a_column_once():
    for table, spec in SPECS.items():
        assert spec, table
        assert len(dtypes(spec)) == len(spec), table
        for c in spec:
            assert isinstance(c, Column)
            assert c.description.strip() and c.description.strip() != c.name, (table, c.name)


def test_the_dicts_the_code_uses_are_the_specs():
    for name, spec in [
        ("LLM_CALLS", schemas.LLM_CALLS_SPEC),
        ("CALL_RECORDS", schemas.CALL_RECORDS_SPEC),
        ("QUARANTINE", schemas.QUARANTINE_SPEC),
        ("FILE_COUNTS", schemas.FILE_COUNTS_SPEC),
        ("API_CALLS", schemas.API_CALLS_SPEC),
        ("ALERTS", schemas.ALERTS_SPEC),
        ("USAGE_DAILY", schemas.USAGE_DAILY_SPEC),
        ("SESSIONS_DAILY", schemas.SESSIONS_DAILY_SPEC),
        ("API_HEALTH", schemas.API_HEALTH_SPEC),
        ("THINKING_STATS", schemas.THINKING_STATS_SPEC),
        ("USAGE_BY_SESSION", schemas.USAGE_BY_SESSION_SPEC),
    ]:
        assert list(getattr(schemas, name).items()) == list(dtypes(spec).items()), name


def test_private_columns_are_tagged_and_no_public_table_has_one():
    private = {(t, c.name) for t, spec in SPECS.items() for c in spec if c.private}
    assert private == {
        ("llm_calls", "source_file"),
        ("llm_calls", "session_id"),  # the raw id: not a UUID, it can hold a phone number
        ("llm_calls", "session_key"),
        ("quarantine", "source_file"),
        ("quarantine", "excerpt"),
        ("call_records", "source_file"),
        ("call_records", "session_id"),
        ("call_records", "error_message"),
        ("file_counts", "source_file"),
    }
    # whatever the table, a column of these names holds a path or a session key
    for t, spec in SPECS.items():
        for c in spec:
            if c.name in ("source_file", "session_key", "error_message", "excerpt"):
                assert c.private, (t, c.name)
    # the tables published as CSV carry nothing private
    for t in ("usage_daily", "usage_by_provider", "usage_by_model", "usage_by_task_type", "usage_by_agent"):
        assert not [c.name for c in TABLES[t] if c.private], t
    for t in ("usage_by_session", "usage_by_trigger", "thinking_stats", "api_health", "sessions_daily"):
        assert not [c.name for c in TABLES[t] if c.private], t


def test_column_schema_is_the_spec_in_dagster_terms():
    got = {c.name: c for c in column_schema("llm_calls").columns}
    assert list(got) == list(schemas.LLM_CALLS)
    assert got["timestamp"].type == "Datetime(time_unit='us', time_zone='UTC')"
    assert got["tool_names"].type == "List(String)" and got["input_tokens"].type == "Int64"
    assert got["call_id"].constraints.unique and not got["call_id"].constraints.nullable
    assert got["thinking_tokens"].constraints.nullable and got["thinking_tokens"].constraints.other == [
        ">= 0"
    ]
    assert got["session_key"].tags == PRIVATE_TAG == {"PII": ""}
    assert not got["model"].tags
    assert got["call_id"].description.startswith("stable across runs")


# -- Dagster metadata ---------------------------------------------------------------------------------------
def _column_schemas(defs: dg.Definitions) -> dict[dg.AssetKey, dg.TableSchema]:
    out = {}
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        if key.path[-1] not in TABLES:
            continue
        spec = defs.resolve_assets_def(key).specs_by_key[key]
        if COLUMN_SCHEMA in (spec.metadata or {}):
            out[key] = spec.metadata[COLUMN_SCHEMA]
    return out


def _assert_tagged(key: dg.AssetKey, schema: dg.TableSchema) -> None:
    spec = {c.name: c for c in TABLES[key.path[-1]]}
    assert [c.name for c in schema.columns] == list(spec), key
    for col in schema.columns:
        c = spec[col.name]
        assert (col.tags == PRIVATE_TAG) if c.private else not col.tags, (key, col.name)
        assert col.description == c.description and col.constraints.nullable == c.nullable, (key, col.name)


def test_every_table_asset_carries_its_column_schema_with_private_columns_tagged(tmp_path):
    defs = build_defs(McSettings(openclaw_home=str(tmp_path / "home"), data_dir=str(tmp_path / "d")))
    found = _column_schemas(defs)
    assert {k.to_user_string() for k in found} == set(TABLES) - NOT_ATTACHED
    for key, schema in found.items():
        assert schema == column_schema(key.path[-1])
        _assert_tagged(key, schema)
    calls = {c.name: c for c in found[dg.AssetKey("llm_calls")].columns}
    assert calls["session_key"].tags == {"PII": ""} and calls["source_file"].tags == {"PII": ""}
    assert found[dg.AssetKey("quarantine")].columns[-1].tags == {"PII": ""}  # excerpt


def test_a_fleets_home_assets_carry_it_too(tmp_path):
    homes = f"a={tmp_path / 'a'},b={tmp_path / 'b'}"
    defs = build_defs(
        McSettings(openclaw_home="/nonexistent", data_dir=str(tmp_path / "d"), openclaw_homes=homes)
    )
    found = {k.to_user_string() for k in _column_schemas(defs)}
    for home in ("a", "b"):
        for table in (
            "llm_calls",
            "usage_daily",
            "sessions_daily",
            "health_daily",
            "quarantine",
            "api_calls",
        ):
            assert f"{home}/{table}" in found
    assert {"usage_by_provider", "usage_by_session", "api_health"} <= found
    checks = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert ("a/quarantine", "column_schema_change") in checks
    assert ("a/llm_calls", "column_schema_change") not in checks


# -- a refresh ----------------------------------------------------------------------------------------------
def _add_interactions_db(home) -> None:
    """A user's interactions.db with one model call and three HTTP calls (one without a status)."""
    path = home / "data" / "interactions.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE llm_calls (id INTEGER PRIMARY KEY, timestamp TEXT, provider TEXT, model TEXT,"
        " session_id TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, status TEXT)"
    )
    con.execute(
        "INSERT INTO llm_calls (timestamp, provider, model, session_id, prompt_tokens, completion_tokens,"
        " status) VALUES ('2026-01-05T10:00:00Z', 'openai', 'gpt-4o', 'telegram:+4915112345678', 10, 5, 'ok')"
    )
    con.execute(
        "CREATE TABLE api_calls (id INTEGER PRIMARY KEY, timestamp TEXT, service TEXT, endpoint TEXT,"
        " method TEXT, status_code INTEGER, duration_ms INTEGER)"
    )
    con.executemany(
        "INSERT INTO api_calls (timestamp, service, endpoint, method, status_code, duration_ms)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            ("2026-01-05T10:00:00Z", "github", "/repos/x?token=1", "GET", 200, 12),
            ("2026-01-05T11:00:00Z", "slack", "/api/chat.postMessage", "POST", 429, 30),
            ("2026-01-05T12:00:00Z", "x", "/", "GET", None, None),
        ],
    )
    con.commit()
    con.close()


def _checks(result) -> dict[str, tuple[bool, str]]:
    """ "<asset>:<check>" -> (passed, description) of a run's check evaluations."""
    found = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": (c.passed, c.description or "") for c in found}


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory, refresh):
    """An upgraded home (every transcript source, cron jobs, quarantined lines) with an interactions.db:
    refreshed twice, then once more with thinking_stats' spec missing its last column."""
    tmp = tmp_path_factory.mktemp("columns")
    uh = upgraded_home.build(tmp / "home")
    _add_interactions_db(uh.home)
    data = tmp / "data"
    with dg.instance_for_test() as instance:
        first = refresh(uh.home, data, instance)
        second = refresh(uh.home, data, instance)
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(TABLES, "thinking_stats", TABLES["thinking_stats"][:-1])
            third = refresh(uh.home, data, instance)
        latest = {
            name: instance.get_latest_materialization_event(dg.AssetKey(name)).asset_materialization.metadata
            for name in ("api_calls", "quarantine", "usage_by_model")
        }
    assert first.success and second.success and third.success
    return data, [_checks(r) for r in (first, second, third)], latest


def test_every_table_a_refresh_writes_has_the_columns_and_types_of_its_spec(refreshed):
    data, _, _ = refreshed
    tables = Tables(data)
    for name, spec in TABLES.items():
        frame = tables.load(name)
        assert list(frame.schema.items()) == list(dtypes(spec).items()), name
        assert frame.height or name == "budget_alerts", f"{name} is empty: the home exercises nothing"
        for c in spec:
            if not c.nullable:
                assert frame.get_column(c.name).null_count() == 0, f"{name}.{c.name} has nulls"
    # the readers' staged records, line counts and quarantine
    staged = data / "staging"
    records = sorted(staged.glob("*/records/day=*/*.parquet"))
    assert {p.parts[-4] for p in records} >= {"transcript_records", "interactions_db_records"}
    for path in records:
        assert list(pl.read_parquet_schema(path).items()) == list(schemas.CALL_RECORDS.items()), path
    for name, schema in (("file_counts", schemas.FILE_COUNTS), ("quarantine", schemas.QUARANTINE)):
        paths = sorted(staged.glob(f"*/{name}.parquet"))
        assert paths, name
        for path in paths:
            assert list(pl.read_parquet_schema(path).items()) == list(schema.items()), path


def test_the_schema_change_checks_run_and_pass_when_nothing_changed(refreshed):
    _, (first, second, _), latest = refreshed
    checked = set(TABLES) - NOT_ATTACHED - PARTITIONED
    for run in (first, second):
        got = {k.split(":")[0] for k in run if k.endswith(":column_schema_change")}
        assert got == checked
    assert all(passed for k, (passed, _) in first.items() if k.endswith(":column_schema_change"))
    for table in checked:  # the second run compared two materialisations, each with its column schema
        passed, description = second[f"{table}:column_schema_change"]
        assert passed and description.startswith("No changes"), (table, description)
    for name, meta in latest.items():
        assert meta[COLUMN_SCHEMA].value == column_schema(name), name


def test_a_changed_spec_fails_the_schema_change_check_of_its_table_only(refreshed):
    _, (_, _, third), _ = refreshed
    passed, description = third["thinking_stats:column_schema_change"]
    assert not passed and "Removed columns: subscription_share" in description
    failed = [k for k, (ok, _) in third.items() if not ok]
    assert failed == ["thinking_stats:column_schema_change"]


# -- the contracts ------------------------------------------------------------------------------------------
def _calls(n: int = 3) -> pl.DataFrame:
    row = {
        "call_id": "c",
        "source": "transcript",
        "source_file": "agents/main/sessions/s.jsonl",
        "line_no": 1,
        "agent_id": "main",
        "session_id": "s",
        "entry_kind": "assistant",
        "timestamp": T0,
        "day": date(2026, 3, 1),
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "task_type": "coding",
        "task_rule": "default",
        "billing": "api",
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "thinking_tokens": 2,
        "thinking_estimated": False,
        "total_tokens": 15,
        "cost_recorded_usd": 0.1,
        "cost_calculated_usd": 0.1,
        "cost_usd": 0.1,
        "cost_source": "recorded",
        "status": "error",
        "error_class": "rate_limit",
        "http_status": 429,
        "tool_calls": 1,
        "tool_names": ["exec"],
    }
    rows = [{**row, "call_id": f"c{i}", "line_no": i + 1} for i in range(n)]
    return conform(pl.DataFrame(rows, schema={k: schemas.LLM_CALLS[k] for k in row}), schemas.LLM_CALLS)


def _api(n: int = 3) -> pl.DataFrame:
    row = {
        "timestamp": T0,
        "day": date(2026, 3, 1),
        "service": "github",
        "endpoint": "/repos",
        "method": "GET",
        "status_code": 500,
        "duration_ms": 12,
        "ok": False,
        "error_class": "server_error",
    }
    return pl.DataFrame([row] * n, schema=schemas.API_CALLS)


def _quarantine(n: int = 3) -> pl.DataFrame:
    row = {
        "source": "transcript",
        "source_file": "a.jsonl",
        "line_no": 3,
        "reason": "not JSON",
        "excerpt": "{oops",
    }
    return pl.DataFrame([row] * n, schema=schemas.QUARANTINE)


GOOD = {"llm_calls": _calls, "api_calls": _api, "quarantine": _quarantine}


def _violations(c: Column) -> list[tuple[str, object]]:
    """(kind of check, a value of the column that breaks it)."""
    out: list[tuple[str, object]] = []
    if not c.nullable:
        out.append(("not_nullable", None))
    if c.isin is not None:
        out.append(("isin", "not-one-of-them"))
    if c.ge is not None:
        out.append(("greater_than_or_equal_to", c.ge - 1))
    if c.in_range is not None:
        out.append(("in_range", c.in_range[1] + 1))
    if c.str_min is not None:
        out.append(("str_length", "x" * (c.str_min - 1)))
    if c.str_max is not None:
        out.append(("str_length", "x" * (c.str_max + 1)))
    if c.unique:
        out.append(("field_uniqueness", "same"))
    return out


CASES = [
    pytest.param(table, c, kind, value, id=f"{table}.{c.name}.{kind}")
    for table in CONTRACTS
    for c in TABLES[table]
    for kind, value in _violations(c)
]


def test_every_kind_of_check_is_exercised():
    assert {p.values[2] for p in CASES} == {
        "not_nullable",
        "isin",
        "greater_than_or_equal_to",
        "in_range",
        "str_length",
        "field_uniqueness",
    }


@pytest.mark.parametrize("table,column,kind,value", CASES)
def test_the_contract_rejects_a_row_breaking_the_check(table, column, kind, value):
    good = GOOD[table]()
    CONTRACTS[table].validate(good, lazy=True)  # the good rows pass
    rows = [0, 1] if kind == "field_uniqueness" else [1]
    bad = good.with_columns(
        pl.when(pl.int_range(pl.len()).is_in(rows))
        .then(pl.lit(value, dtype=column.dtype))
        .otherwise(pl.col(column.name))
        .alias(column.name)
    )
    with pytest.raises(SchemaErrors) as err:
        CONTRACTS[table].validate(bad, lazy=True)
    cases = err.value.failure_cases
    hits = cases.filter((pl.col("column") == column.name) & pl.col("check").str.starts_with(kind))
    assert sorted(hits.get_column("index").to_list()) == rows, cases
    if table == "llm_calls":  # the rows go to quarantine, the others stay
        kept, quarantined = validate(bad)
        assert kept.get_column("call_id").to_list() == [
            i for n, i in enumerate(bad.get_column("call_id").to_list()) if n not in rows
        ]
        assert sorted(quarantined.get_column("line_no").to_list()) == [r + 1 for r in rows]
        if kind != "not_nullable":  # the reason names the check, the column and the value
            for reason in quarantined.get_column("reason").to_list():
                assert reason.startswith(f"failed {kind}") and f" on {column.name} (value " in reason


def test_llm_calls_reasons_are_as_before():
    bad = _calls().with_columns(
        source=pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("x")).otherwise(pl.col("source")),
        input_tokens=pl.when(pl.int_range(pl.len()) == 1).then(-3).otherwise(pl.col("input_tokens")),
    )
    kept, quarantined = validate(bad)
    assert kept.height == 2 and quarantined.columns == [*schemas.QUARANTINE, "day"]
    assert quarantined.row(0, named=True) == {
        "source": "x",
        "source_file": "agents/main/sessions/s.jsonl",
        "line_no": 2,
        "reason": "failed isin(('transcript_store', 'transcript_archive', 'transcript_cold', 'transcript', "
        "'interactions_db', 'model_usage_log')) on source (value x); failed greater_than_or_equal_to(0) on "
        "input_tokens (value -3)",
        "excerpt": None,
        "day": date(2026, 3, 1),
    }


def test_wrong_types_missing_and_extra_columns():
    for table, good in GOOD.items():
        contract = CONTRACTS[table]
        wrong = good().with_columns(pl.col("day" if "day" in good().columns else "line_no").cast(pl.String))
        with pytest.raises(SchemaErrors, match="dtype"):
            contract.validate(wrong, lazy=True)
        missing = good().drop(good().columns[0])
        with pytest.raises(SchemaErrors, match="column_in_dataframe"):
            contract.validate(missing, lazy=True)
    # llm_calls may grow (extra columns pass); quarantine and api_calls are exactly their spec
    LlmCallsModel.validate(_calls().with_columns(extra=pl.lit(1)), lazy=True)
    for contract, good in ((ApiCallsModel, _api()), (QuarantineModel, _quarantine())):
        with pytest.raises(SchemaErrors, match="column_in_schema"):
            contract.validate(good.with_columns(extra=pl.lit(1)), lazy=True)
    # the timestamp is microseconds in UTC, nothing else
    naive = _calls().with_columns(pl.col("timestamp").dt.replace_time_zone(None))
    with pytest.raises(ValueError, match="does not match its schema"):
        validate(naive)


#: The checks the hand-written pandera models had (kept when they were generated from the specs):
#: column -> (nullable, unique, the checks' names as in a quarantine reason).
KEPT = {
    "llm_calls": {
        "call_id": (False, True, []),
        "source": (False, False, [f"isin({schemas.SOURCES!r})"]),
        "entry_kind": (True, False, [f"isin({schemas.ENTRY_KINDS!r})"]),
        "agent_id": (True, False, []),
        "session_id": (True, False, []),
        "timestamp": (False, False, []),
        "day": (False, False, []),
        "provider": (False, False, ["str_length(1, None)"]),
        "model": (False, False, ["str_length(1, None)"]),
        "task_type": (False, False, []),
        "task_rule": (False, False, []),
        "billing": (False, False, [f"isin({schemas.BILLINGS!r})"]),
        **{
            c: (False, False, ["greater_than_or_equal_to(0)"])
            for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
        },
        "thinking_tokens": (True, False, ["greater_than_or_equal_to(0)"]),
        "thinking_estimated": (False, False, []),
        "total_tokens": (False, False, ["greater_than_or_equal_to(0)"]),
        **{
            c: (True, False, ["greater_than_or_equal_to(0)"])
            for c in ("cost_recorded_usd", "cost_calculated_usd", "cost_usd")
        },
        "cost_source": (False, False, [f"isin({schemas.COST_SOURCES!r})"]),
        "status": (False, False, [f"isin({schemas.STATUSES!r})"]),
        "error_class": (True, False, [f"isin({schemas.ERROR_CLASSES!r})"]),
        "tool_calls": (False, False, ["greater_than_or_equal_to(0)"]),
    },
    "api_calls": {
        "timestamp": (False, False, []),
        "day": (False, False, []),
        "service": (True, False, []),
        "endpoint": (True, False, []),
        "method": (True, False, []),
        "status_code": (True, False, ["in_range(0, 999)"]),
        "duration_ms": (True, False, ["greater_than_or_equal_to(0)"]),
        "ok": (True, False, []),
        "error_class": (True, False, [f"isin({schemas.ERROR_CLASSES!r})"]),
    },
    "quarantine": {
        "source": (False, False, []),
        "source_file": (True, False, []),
        "line_no": (True, False, ["greater_than_or_equal_to(0)"]),
        "reason": (False, False, ["str_length(1, None)"]),
        "excerpt": (True, False, [f"str_length(None, {schemas.EXCERPT_CHARS})"]),
    },
}


def test_the_contracts_keep_every_check_of_the_hand_written_models():
    for table, expected in KEPT.items():
        contract = CONTRACTS[table]
        assert list(contract.columns) == list(dtypes(TABLES[table]))  # every column, its dtype checked
        for name, col in contract.columns.items():
            got = (col.nullable, col.unique, [c.error for c in col.checks])
            assert got == expected.get(name, (True, False, [])), (table, name)
        assert [str(col.dtype) for col in contract.columns.values()] == [str(c.dtype) for c in TABLES[table]]
    assert LlmCallsModel.strict is False and ApiCallsModel.strict is True and QuarantineModel.strict is True
    assert not any(c.coerce for c in CONTRACTS.values())
