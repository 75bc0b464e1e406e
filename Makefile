# The few entry points, the same locally and in CI. `make test` and `make up` install everything
# they need on a fresh machine (a locked virtualenv in .venv), so they are the only commands a
# newcomer runs.

PYTHON ?= python3
UV_VERSION = 0.13.9
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: setup check test unit integration e2e up bench bench-smoke lock clean system-packages

$(STAMP): requirements.lock pyproject.toml client/pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	uv venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements.lock
	@# xds-protos ships its own, older copy of opentelemetry/proto; the real package must win
	@# (MLflow needs TracesData), whatever order the installer used.
	uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements.lock \
		--reinstall-package opentelemetry-proto
	@# The client first: the server depends on it (hokusai-client, not on any package index).
	uv pip install --quiet --python $(BIN)/python --no-deps -e ./client
	uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) system-packages

# Debian packages the suite runs for real: nginx (it has auth_request; tests/e2e/test_nginx.py),
# wrk (the benchmark harness's smoke run) and chromium (the browser tests drive it through
# Playwright: tests/support/browser.py; Playwright's own browser download is not used).
# Idempotent: nothing happens when all are there; the apt lists are refreshed only when something
# must be installed.
system-packages:
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="nginx"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq; \
		$$sudo env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: check system-packages
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q -m unit

integration: $(STAMP)
	$(BIN)/pytest -q -m integration

e2e: $(STAMP) system-packages
	$(BIN)/pytest -q -m e2e

up: $(STAMP)
	$(BIN)/hokusai gateway up

bench: $(STAMP)
	$(BIN)/python -m bench

bench-smoke: $(STAMP)
	$(BIN)/python -m bench --smoke

# hokusai-client is this repository's ./client (pyproject's tool.uv.sources): a path cannot be
# hash-locked, so the lock holds its dependencies and the install step installs it.
lock:
	uv pip compile pyproject.toml --extra stack --extra dev --generate-hashes \
		--python-version 3.11 --no-header --no-emit-package hokusai-client -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
