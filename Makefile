# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench validate clean

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
	@echo "管理后台 /admin; 第一个管理员: $(BIN)/gridpolicy user create NAME --superuser"
	$(BIN)/gridpolicy serve --host 127.0.0.1 --port 8000

# The suite runs every store/API test on SQLite and on a throwaway PostgreSQL (installed if missing);
# the admin UI tests drive Debian's Chromium (installed if missing; `playwright install` cannot work offline),
# with a CJK font so the screenshots show Chinese.
test: lint $(STAMP) /usr/bin/chromium
	GRIDPOLICY_TEST_DATABASE_URL="$$(scripts/test-postgres.sh)" $(BIN)/python -m pytest

# ruff (style and likely bugs) and mypy (types); their settings are in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

/usr/bin/wrk:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk

/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei

# geo_bench: point → grid lookups on a generated lattice of Hefei's 1,649 units; events_bench: webhook delivery
# rate and lag to a local receiver. The assessment bench simulates 100,000 Hefei cases per backend first (tens of
# minutes), then times one quarter. scale_bench: Hefei with 20,000 named units (`--big` adds 200,000, minutes). The HTTP bench drives a real server with wrk (installed if missing).
bench: $(STAMP) /usr/bin/wrk
	$(BIN)/python bench/route_bench.py --out bench/results.json
	$(BIN)/python bench/http_bench.py --out bench/http_results.json
	$(BIN)/python bench/admin_bench.py --out bench/admin_results.json
	$(BIN)/python bench/search_bench.py --out bench/search_results.json
	$(BIN)/python bench/geo_bench.py --out bench/geo_results.json
	$(BIN)/python bench/events_bench.py --pg-url "$$(scripts/test-postgres.sh)" --out bench/events_results.json
	$(BIN)/python bench/assess_bench.py --backend both --pg-url "$$(scripts/test-postgres.sh)" --out bench/assess_results.json
	$(BIN)/python bench/ledger_bench.py --backend both --pg-url "$$(scripts/test-postgres.sh)" --out bench/ledger_results.json
	$(BIN)/python bench/scale_bench.py --out bench/scale_results.json

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
