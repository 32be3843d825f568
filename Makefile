# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench validate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

validate: $(STAMP)
	$(BIN)/gridpolicy validate

# Validates the rules, migrates var/gridpolicy.db, imports the bundled jurisdictions on first start
# and serves on 127.0.0.1:8000 (GRIDPOLICY_DATABASE_URL selects PostgreSQL instead).
run: validate
	$(BIN)/gridpolicy serve --host 127.0.0.1 --port 8000

# The suite runs every store/API test on SQLite and on a throwaway PostgreSQL (installed if missing).
test: $(STAMP)
	GRIDPOLICY_TEST_DATABASE_URL="$$(scripts/test-postgres.sh)" $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/route_bench.py --out bench/results.json

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
