"""Task type of each model call, decided by an ordered, user-editable rule file.

The packaged ``task_rules.toml`` (next to this module) documents the format and holds the default rules;
a user file in the same format can be passed instead. Rules are tried in file order and the first match
decides ``task_type`` and ``task_rule`` (the rule's id); no match gives the file's
``default_task_type`` with ``task_rule = "default"``. Everything runs as Polars expressions.

The file is validated on load; every problem raises :class:`TaskRulesError` naming the file and rule.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mc_pipeline.tables.schemas import LLM_CALLS

DEFAULT_RULES_PATH = Path(__file__).with_name("task_rules.toml")
DEFAULT_RULE_ID = "default"
MATCH_KINDS = ("equals", "any_of", "glob", "regex", "present")
#: Columns a rule may read: every llm_calls column except the outputs, plus the given task type.
RULE_FIELDS = tuple(sorted({*LLM_CALLS, "given_task_type"} - {"task_type", "task_rule"}))
#: Values that ``present`` treats as absent (compared trimmed and lower-cased).
PLACEHOLDERS = ("unknown", "none", "null", "n/a", "na", "-", "?")

_RULE_KEYS = {"id", "field", "match", "value", "task_type", "use_value", "case_sensitive"}
_TOP_KEYS = {"version", "default_task_type", "rules"}
_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_RUST_META = set("\\.+*?()|[]{}^$#&-~")


class TaskRulesError(ValueError):
    """The task rules file is unreadable or invalid."""


@dataclass(frozen=True)
class TaskRule:
    """One validated rule. ``values`` holds the compared strings (one regex per entry for glob/regex)."""

    id: str
    field: str
    match: str
    values: tuple[str, ...]
    task_type: str | None  # None when use_value
    use_value: bool = False
    case_sensitive: bool = False


@dataclass(frozen=True)
class TaskRules:
    """An ordered set of rules plus the task type given when none matches."""

    rules: tuple[TaskRule, ...]
    default_task_type: str = "general"
    source: str = "<rules>"


def _rust_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _RUST_META else ch for ch in text)


def glob_to_regex(glob: str) -> str:
    """Anchored Rust regex for a glob where ``*`` is any run of characters and ``?`` one character."""
    body = "".join(".*" if ch == "*" else "." if ch == "?" else _rust_escape(ch) for ch in glob)
    return f"^(?s:{body})$"


def _check_regex(pattern: str) -> str | None:
    """The Polars (Rust regex) error for ``pattern``, or None when it compiles."""
    try:
        pl.Series([""], dtype=pl.String).str.contains(pattern)
    except pl.exceptions.PolarsError as exc:
        return str(exc).split("\n\nThis error occurred", 1)[0].strip()
    return None


def _string_list(value: Any, *, allow_single: bool) -> list[str] | None:
    if allow_single and isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _parse_rule(raw: Any, index: int, source: str, seen: set[str]) -> TaskRule:
    label = f"rule {index}"
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        label += f" ({raw['id']!r})"

    def fail(problem: str) -> TaskRulesError:
        return TaskRulesError(f"{source}: {label}: {problem}")

    if not isinstance(raw, dict):
        raise fail("must be a table ([[rules]])")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {unknown}; allowed: {sorted(_RULE_KEYS)}")

    rule_id = _rule_id(raw, seen, fail)

    field = raw.get("field")
    if field not in RULE_FIELDS:
        raise fail(f"`field` must be one of {list(RULE_FIELDS)}, got {field!r}")

    match = raw.get("match")
    if match not in MATCH_KINDS:
        raise fail(f"`match` must be one of {list(MATCH_KINDS)}, got {match!r}")

    case_sensitive = raw.get("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise fail("`case_sensitive` must be true or false")

    values = _rule_values(raw, match, fail)
    task_type, use_value = _rule_task_type(raw, field, fail)

    if not case_sensitive and match in ("equals", "any_of"):
        values = [v.lower() for v in values]
    elif not case_sensitive:
        values = [f"(?i){v}" for v in values]
    seen.add(rule_id)
    return TaskRule(
        id=rule_id,
        field=field,
        match=match,
        values=tuple(values),
        task_type=task_type,
        use_value=use_value,
        case_sensitive=case_sensitive,
    )


def _rule_id(raw: dict, seen: set[str], fail: Callable[[str], TaskRulesError]) -> str:
    """A rule's `id`: letters, digits, '_' or '-', not the reserved default, not taken by an earlier rule."""
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _ID_RE.match(rule_id):
        raise fail("needs an `id` of letters, digits, '_' or '-'")
    if rule_id == DEFAULT_RULE_ID:
        raise fail(f"id {DEFAULT_RULE_ID!r} is reserved for calls no rule matches")
    if rule_id in seen:
        raise fail(f"duplicate id {rule_id!r}")
    return rule_id


def _rule_values(raw: dict, match: str, fail: Callable[[str], TaskRulesError]) -> list[str]:
    """A rule's `value` as its match kind needs it: strings, or regexes (globs translated) that compile."""
    value = raw.get("value")
    values: list[str] | None
    if match == "present":
        if "value" in raw:
            raise fail("match 'present' takes no `value`")
        values = []
    elif match == "equals":
        values = [value] if isinstance(value, str) else None
        if values is None:
            raise fail("match 'equals' needs `value` = a string")
    elif match == "any_of":
        values = _string_list(value, allow_single=False)
        if values is None:
            raise fail("match 'any_of' needs `value` = a non-empty list of strings")
    else:
        values = _string_list(value, allow_single=True)
        if values is None:
            raise fail(f"match {match!r} needs `value` = a string or a non-empty list of strings")
        if match == "glob":
            values = [glob_to_regex(v) for v in values]
        for pattern in values:
            error = _check_regex(pattern)
            if error:
                raise fail(f"invalid {match} {pattern!r}: {error}")
    return values


def _rule_task_type(raw: dict, field: str, fail: Callable[[str], TaskRulesError]) -> tuple[str | None, bool]:
    """A rule's outcome: (`task_type`, `use_value`), exactly one of them given."""
    use_value = raw.get("use_value", False)
    if not isinstance(use_value, bool):
        raise fail("`use_value` must be true or false")
    task_type = raw.get("task_type")
    if use_value:
        if task_type is not None:
            raise fail("give either `task_type` or `use_value = true`, not both")
        if isinstance(LLM_CALLS.get(field), pl.List):
            raise fail(f"`use_value` cannot take a task type from list field {field!r}")
    elif not isinstance(task_type, str) or not task_type or task_type != task_type.strip():
        raise fail("needs `task_type` = a non-blank string without surrounding spaces, or `use_value = true`")
    return task_type, use_value


def parse_task_rules(data: dict[str, Any], source: str = "<rules>") -> TaskRules:
    """Validate an already-parsed rules document (the TOML's top-level table)."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise TaskRulesError(f"{source}: unknown top-level key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    if data.get("version", 1) != 1:
        raise TaskRulesError(f"{source}: unsupported version {data.get('version')!r} (this code reads 1)")
    default = data.get("default_task_type", "general")
    if not isinstance(default, str) or not default.strip():
        raise TaskRulesError(f"{source}: `default_task_type` must be a non-blank string")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise TaskRulesError(f"{source}: `rules` must be an array of tables ([[rules]])")
    seen: set[str] = set()
    rules = tuple(_parse_rule(raw, i, source, seen) for i, raw in enumerate(raw_rules, start=1))
    return TaskRules(rules=rules, default_task_type=default.strip(), source=source)


def load_task_rules(path: str | Path | None = None) -> TaskRules:
    """Load and validate a rules file; ``None`` loads the packaged ``task_rules.toml``."""
    file = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskRulesError(f"{file}: cannot read task rules: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaskRulesError(f"{file}: not valid TOML: {exc}") from exc
    return parse_task_rules(data, source=str(file))


def _element_condition(rule: TaskRule, element: pl.Expr) -> pl.Expr:
    """Whether one string value satisfies ``rule`` (null -> null)."""
    if rule.match == "present":
        trimmed = element.str.strip_chars()
        return (trimmed.str.len_chars() > 0) & ~trimmed.str.to_lowercase().is_in(list(PLACEHOLDERS))
    if rule.match in ("equals", "any_of"):
        compared = element if rule.case_sensitive else element.str.to_lowercase()
        return compared.is_in(list(rule.values))
    condition = element.str.contains(rule.values[0])
    for pattern in rule.values[1:]:
        condition = condition | element.str.contains(pattern)
    return condition


def _rule_condition(rule: TaskRule, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(rule.field)
    if isinstance(dtype, pl.List):
        if rule.match == "present":
            condition = column.list.len() > 0
        else:
            element = pl.element().cast(pl.String)
            condition = column.list.eval(_element_condition(rule, element)).list.any()
    else:
        condition = _element_condition(rule, column.cast(pl.String))
        if rule.use_value and rule.match != "present":  # never take a blank or placeholder task type
            present = TaskRule(rule.id, rule.field, "present", (), None)
            condition = condition & _element_condition(present, column.cast(pl.String))
    return condition.fill_null(False)


def assign_task_types(calls: pl.DataFrame, rules: TaskRules) -> pl.DataFrame:
    """Add ``task_type`` and ``task_rule`` (replacing existing ones); first matching rule wins.

    A rule whose field is not a column of ``calls`` never matches; null values never match.
    """
    calls = calls.drop([c for c in ("task_type", "task_rule") if c in calls.columns])
    active = [(i, rule) for i, rule in enumerate(rules.rules) if rule.field in calls.columns]
    if not active:
        return calls.with_columns(
            task_type=pl.lit(rules.default_task_type, dtype=pl.String),
            task_rule=pl.lit(DEFAULT_RULE_ID, dtype=pl.String),
        )

    (i0, r0), *rest = active
    chain = pl.when(_rule_condition(r0, calls.schema[r0.field])).then(pl.lit(i0, dtype=pl.Int32))
    for i, rule in rest:
        chain = chain.when(_rule_condition(rule, calls.schema[rule.field])).then(pl.lit(i, dtype=pl.Int32))
    index = pl.col("__task_rule_index")

    fixed = {i: rule.task_type for i, rule in active if not rule.use_value}
    task_type: pl.Expr = index.replace_strict(
        fixed, default=pl.lit(rules.default_task_type), return_dtype=pl.String
    )
    for i, rule in active:
        if rule.use_value:
            value = pl.col(rule.field).cast(pl.String).str.strip_chars().str.to_lowercase()
            task_type = pl.when(index == i).then(value).otherwise(task_type)
    task_rule = index.replace_strict(
        {i: rule.id for i, rule in active}, default=pl.lit(DEFAULT_RULE_ID), return_dtype=pl.String
    )
    return (
        calls.with_columns(chain.otherwise(pl.lit(None, dtype=pl.Int32)).alias("__task_rule_index"))
        .with_columns(task_type=task_type, task_rule=task_rule)
        .drop("__task_rule_index")
    )
