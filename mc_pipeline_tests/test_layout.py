"""The module map in the README is the tree: every module of mc_pipeline/ is named in it, every module it
names exists, and no module name is used twice (a newcomer finds a module in one guess)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mc_pipeline"


def layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1].split("\nmc_pipeline_tests/", 1)[0]  # the package's part


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))


def test_every_module_is_in_the_readme_map_and_every_named_one_exists():
    block = layout_block()
    named = set(re.findall(r"\b([a-z_]+\.py)\b", block))
    names = {p.name for p in modules()}
    assert names - named == set(), "modules missing from the README's Layout"
    assert named - names == set(), "the README's Layout names modules that do not exist"
    for package in sorted(p.parent for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE):
        assert f"{package.name}/" in block, package


def test_no_module_name_twice():
    twice = [name for name, n in Counter(p.stem for p in modules()).items() if n > 1]
    assert twice == []


def test_the_domain_code_is_dagster_free():
    """Readers, calls, tables, costing, reporting and alerting never import Dagster; the Dagster layer is
    defs/ and definitions.py, and runtime/ runs it (the CLI launching runs, the instance's storages)."""
    domain = ("ingest", "calls", "tables", "costing", "reporting", "alerting")
    importing = [
        str(p.relative_to(ROOT))
        for p in modules()
        if p.relative_to(PACKAGE).parts[0] in domain
        and re.search(r"^\s*(import dagster|from dagster)", p.read_text(), re.M)
    ]
    assert importing == []
