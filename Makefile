# One entry point for people and CI. `make run` and `make test` are the README's quick start;
# `.ci/run` calls `make check`, which is lint + types + import contracts + the whole test suite.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test lint check fmt clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed  ## install, then serve on the embedded default (SQLite in ./tenantops-data)
	$(BIN)/tenantops serve

# The OIDC provider the web sign-in tests run against (node-oidc-provider, pinned in
# tests/oidc/package-lock.json). Without node/npm those tests skip on a laptop, fail in CI.
OIDC_PROVIDER = tests/oidc/node_modules/.package-lock.json

$(OIDC_PROVIDER): tests/oidc/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the OIDC sign-in tests will skip (apt-get install nodejs npm)"; fi

# One test worker per core (pytest-xdist), a test file's tests on one worker: each
# worker has its own databases, and files that share a server's names stay apart.
test: $(BIN)/.installed $(OIDC_PROVIDER)  ## the whole test suite, on SQLite and PostgreSQL
	$(BIN)/pytest -n auto --dist loadfile

lint: $(BIN)/.installed  ## ruff, mypy (strict), import contracts, the runbook library against its schema
	$(BIN)/ruff check --no-cache src tests bench
	$(BIN)/ruff format --check --no-cache src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/tenantops runbooks validate

check: lint test

fmt: $(BIN)/.installed
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
