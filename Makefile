# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CCUSAGE_VERSION := 20.0.24
CCUSAGE := .tools/node_modules/.bin/ccusage

export MC_DATA_DIR ?= ./data
export DAGSTER_HOME ?= $(abspath $(MC_DATA_DIR))/dagster_home

.PHONY: run test lint dev serve report bench check clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "mc_pipeline needs Python 3.11 (set PYTHON=...)"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)  ## materialise every asset once from $$OPENCLAW_HOME into $$MC_DATA_DIR
	$(PY) -m mc_pipeline run

test: $(STAMP) $(CCUSAGE)  ## the whole suite
	$(PY) -m pytest -n 2 -q

# ccusage (npm) is the reference the parity test compares against; optional: skipped when npm is missing.
$(CCUSAGE):
	-@command -v npm >/dev/null && npm install --silent --no-audit --no-fund --prefix .tools ccusage@$(CCUSAGE_VERSION) >/dev/null 2>&1 \
	  || echo "ccusage not installed (no npm or no registry): its parity test will be skipped"

lint: $(STAMP)  ## ruff: the rules and line length in pyproject.toml, and the formatting (ruff format --check)
	$(VENV)/bin/ruff check mc_pipeline mc_pipeline_tests scripts
	$(VENV)/bin/ruff format --check mc_pipeline mc_pipeline_tests scripts

dev: $(STAMP)  ## the Dagster UI with schedules and sensors running, and the usage API beside it
	@mkdir -p $(DAGSTER_HOME)
	$(PY) -c 'from mc_pipeline.runtime.cli import create_instance_storage, ensure_dagster_home; from mc_pipeline.defs.resources import McSettings; create_instance_storage(ensure_dagster_home(McSettings.from_env()))'
	$(PY) -m mc_pipeline serve & api=$$!; trap 'kill $$api' EXIT INT TERM; $(VENV)/bin/dagster dev -w workspace.yaml

serve: $(STAMP)  ## the read-only usage API (MC_API_PORT, default 8765, on 127.0.0.1)
	$(PY) -m mc_pipeline serve

report: $(STAMP)  ## cost/usage tables from the Parquet files: make report ARGS="daily --since 2026-03-01"
	$(PY) -m mc_pipeline report $(or $(ARGS),daily)

bench: $(STAMP) $(CCUSAGE)  ## the issue-12 cases vs ccusage, the fleet and Postgres cases (scripts/bench.py)
	$(PY) scripts/bench.py

check: $(STAMP)  ## the code location loads and validates
	$(VENV)/bin/dagster definitions validate -w workspace.yaml

clean:
	rm -rf $(VENV) data/parquet data/csv data/staging data/dagster_home data/*.json data/*.jsonl
