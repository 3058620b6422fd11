"""Tests of mc_pipeline.costing.task_types: the packaged rules, precedence, custom and malformed rule
files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.costing.task_types import (
    DEFAULT_RULES_PATH,
    TaskRulesError,
    assign_task_types,
    glob_to_regex,
    load_task_rules,
)

SCHEMA = {
    "given_task_type": pl.String,
    "session_key": pl.String,
    "tool_names": pl.List(pl.String),
    "agent_id": pl.String,
}


def _calls(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame([{k: row.get(k) for k in SCHEMA} for row in rows], schema=SCHEMA)


def _assign(*rows: dict, rules_path: Path | None = None) -> list[tuple[str, str]]:
    out = assign_task_types(_calls(*rows), load_task_rules(rules_path))
    return out.select("task_type", "task_rule").rows()


def test_packaged_rules_load() -> None:
    rules = load_task_rules()
    assert rules.default_task_type == "general"
    assert rules.source == str(DEFAULT_RULES_PATH)
    ids = [r.id for r in rules.rules]
    assert ids[0] == "given"
    assert ids.index("session_cron") < ids.index("tools_coding") < ids.index("agent_coding")


def test_level1_given_task_type_wins_over_everything() -> None:
    row = {"given_task_type": " Design ", "session_key": "cron:job1", "tool_names": ["edit"]}
    row["agent_id"] = "coder"
    assert _assign(row) == [("design", "given")]


@pytest.mark.parametrize("given", [None, "", "  ", "unknown", "None", "n/a"])
def test_blank_or_placeholder_given_task_type_is_ignored(given: str | None) -> None:
    assert _assign({"given_task_type": given, "agent_id": "coder"}) == [("coding", "agent_coding")]


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("cron:4f1c2a", "session_cron"),
        ("agent:main:cron:4f1c2a:run:77", "session_cron"),
        ("hook:0b8e7a8c-1a2b-4c3d-9e8f-001122334455", "session_hook"),
        ("agent:main:hook:gmail:abc", "session_hook"),
        ("agent:main:main:heartbeat", "session_heartbeat"),
    ],
)
def test_level2_session_keys_are_automation(key: str, rule: str) -> None:
    row = {"session_key": key, "tool_names": ["edit"], "agent_id": "coder"}
    assert _assign(row) == [("automation", rule)]


def test_session_key_that_is_not_automation_falls_through() -> None:
    row = {"session_key": "agent:main:telegram:direct:+15550001111", "tool_names": ["web_fetch"]}
    assert _assign(row) == [("research", "tools_research")]


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        (["edit"], ("coding", "tools_coding")),
        (["read", "exec"], ("coding", "tools_coding")),
        (["apply_patch"], ("coding", "tools_coding")),
        (["browser"], ("research", "tools_research")),
        (["web_search", "web_fetch"], ("research", "tools_research")),
        (["image_generate"], ("design", "tools_design")),
        (["run_tests"], ("testing", "tools_testing")),
        (["runTests"], ("testing", "tools_testing")),
        (["latest_news"], ("general", "default")),  # "test" inside a word is not testing
        (["Edit"], ("coding", "tools_coding")),  # case-insensitive by default
    ],
)
def test_level3_tools(tools: list[str], expected: tuple[str, str]) -> None:
    assert _assign({"tool_names": tools, "agent_id": "main"}) == [expected]


@pytest.mark.parametrize(
    "agent, expected",
    [
        ("coder", ("coding", "agent_coding")),
        ("main", ("general", "default")),
        ("researcher", ("research", "agent_research")),
    ],
)
def test_read_only_tools_leave_the_task_to_the_agent(agent: str, expected: tuple[str, str]) -> None:
    """Reading, searching and listing files is what every kind of agent does: such a turn is coding in a
    coding agent (its id says so), research in a research agent, general elsewhere; never coding by the tools
    alone."""
    assert _assign({"tool_names": ["read", "grep", "glob", "ls", "find"], "agent_id": agent}) == [expected]


def test_several_tools_first_listed_rule_wins() -> None:
    # Packaged order: testing > design > coding > research, whatever the order of the tools in the turn.
    assert _assign({"tool_names": ["web_search", "edit"]}) == [("coding", "tools_coding")]
    assert _assign({"tool_names": ["edit", "web_search"]}) == [("coding", "tools_coding")]
    assert _assign({"tool_names": ["exec", "pytest_run"]}) == [("testing", "tools_testing")]
    assert _assign({"tool_names": ["write", "image"]}) == [("design", "tools_design")]


def test_tools_beat_agent_id() -> None:
    assert _assign({"tool_names": ["web_search"], "agent_id": "coder"}) == [("research", "tools_research")]


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ("coder", ("coding", "agent_coding")),
        ("dev", ("coding", "agent_coding")),
        ("Dev-2", ("coding", "agent_coding")),
        ("designer", ("design", "agent_design")),
        ("planner", ("planning", "agent_planning")),
        ("qa", ("testing", "agent_testing")),
        ("tester", ("testing", "agent_testing")),
        ("device", ("general", "default")),  # "dev" only as a whole word
        ("main", ("general", "default")),
    ],
)
def test_level4_agent_ids(agent: str, expected: tuple[str, str]) -> None:
    assert _assign({"agent_id": agent, "tool_names": ["read"]}) == [expected]


def test_level5_default_and_all_nulls() -> None:
    assert _assign({}) == [("general", "default")]
    assert _assign({"tool_names": []}) == [("general", "default")]


def test_missing_columns_and_replaced_outputs() -> None:
    rules = load_task_rules()
    out = assign_task_types(pl.DataFrame({"agent_id": ["coder", None]}), rules)
    assert out.select("task_type", "task_rule").rows() == [("coding", "agent_coding"), ("general", "default")]
    again = assign_task_types(out, rules)
    assert again.columns == ["agent_id", "task_type", "task_rule"]
    bare = assign_task_types(pl.DataFrame({"x": [1]}), rules)
    assert bare.select("task_type", "task_rule").rows() == [("general", "default")]


def test_empty_frame() -> None:
    out = assign_task_types(_calls(), load_task_rules())
    assert out.height == 0
    assert out.schema["task_type"] == pl.String
    assert out.schema["task_rule"] == pl.String


CUSTOM = """
version = 1
default_task_type = "misc"

[[rules]]
id = "ops-agents"
field = "agent_id"
match = "glob"
value = ["ops-*", "sre?"]
task_type = "operations"

[[rules]]
id = "docs_tools"
field = "tool_names"
match = "equals"
value = "Docs_Write"
case_sensitive = true
task_type = "writing"

[[rules]]
id = "by_channel"
field = "channel"
match = "any_of"
value = ["telegram", "whatsapp"]
task_type = "chat"

[[rules]]
id = "from_label"
field = "given_task_type"
match = "regex"
value = "^(review|triage)$"
use_value = true
"""


def test_custom_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(CUSTOM)
    rules = load_task_rules(str(path))
    df = pl.DataFrame(
        {
            "agent_id": ["ops-eu", "sre1", "sre12", "x", "x", "x", "x", None],
            "tool_names": [None, None, None, ["Docs_Write"], ["docs_write"], None, None, None],
            "channel": [None, None, None, None, None, "Telegram", None, None],
            "given_task_type": [None, None, None, None, None, None, "Review", "other"],
        },
        schema_overrides={"tool_names": pl.List(pl.String)},
    )
    out = assign_task_types(df, rules).select("task_type", "task_rule").rows()
    assert out == [
        ("operations", "ops-agents"),
        ("operations", "ops-agents"),
        ("misc", "default"),  # glob is anchored: "sre?" is one character
        ("writing", "docs_tools"),
        ("misc", "default"),  # case-sensitive rule
        ("chat", "by_channel"),
        ("review", "from_label"),
        ("misc", "default"),
    ]


def test_first_matching_rule_wins_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        "[[rules]]\nid='a'\nfield='agent_id'\nmatch='regex'\nvalue='co'\ntask_type='first'\n"
        "[[rules]]\nid='b'\nfield='agent_id'\nmatch='equals'\nvalue='coder'\ntask_type='second'\n"
    )
    out = assign_task_types(pl.DataFrame({"agent_id": ["coder"]}), load_task_rules(path))
    assert out.select("task_type", "task_rule").row(0) == ("first", "a")


def test_empty_rules_file_gives_default(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("")
    out = assign_task_types(_calls({"agent_id": "coder"}), load_task_rules(path))
    assert out.select("task_type", "task_rule").row(0) == ("general", "default")


def _rule(**keys: object) -> str:
    """One [[rules]] table; by default a valid rule `bad` on agent_id."""
    fields: dict[str, object] = {"id": "bad", "field": "agent_id", "match": "equals", "value": "a"}
    fields.update({"task_type": "t", **keys})
    lines = [f"{k} = {v!r}".replace("True", "true") for k, v in fields.items() if v is not None]
    return "[[rules]]\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[[rules]\nid='x'", "not valid TOML"),
        ("colour = 1", "unknown top-level key"),
        ("version = 2", "unsupported version"),
        ("rules = 3", "array of tables"),
        (_rule(id=None), "rule 1: needs an `id`"),
        (_rule(field="agent"), "rule 1 ('bad'): `field`"),
        (_rule(match="regexp"), "'bad'): `match`"),
        (_rule(match="regex", value="(a"), "invalid regex"),
        (_rule(match="regex", value="(?<=a)b"), "look-around"),
        (_rule(match="any_of"), "non-empty list"),
        (_rule(task_type=None), "needs `task_type`"),
        (_rule(match="present"), "takes no `value`"),
        (_rule(match="present", value=None, use_value=True), "not both"),
        (
            _rule(field="tool_names", match="present", value=None, task_type=None, use_value=True),
            "list field",
        ),
        (_rule(typo=1), "unknown key"),
        (_rule(id="default"), "reserved"),
        (_rule(id="a") + _rule(id="a"), "rule 2 ('a'): duplicate id"),
    ],
)
def test_malformed_rules_file(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad_rules.toml"
    path.write_text(body)
    with pytest.raises(TaskRulesError) as info:
        load_task_rules(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(TaskRulesError, match="cannot read task rules"):
        load_task_rules(tmp_path / "nope.toml")


def test_glob_to_regex_escapes_specials() -> None:
    assert glob_to_regex("a.b*") == r"^(?s:a\.b.*)$"
    assert pl.Series(["a.bc", "axbc"]).str.contains(glob_to_regex("a.b*")).to_list() == [True, False]
