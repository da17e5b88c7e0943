# Two commands for a fresh Debian machine: `make demo` and `make test`.
# Each installs only what is missing (venv + pinned Python deps, npm packages, Debian's chromium),
# then does its job. Stamps make repeat runs instant.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: deps demo test lint pg chromium nginx bench-tools dist clean

deps: $(VENV)/.stamp node_modules/.stamp chromium nginx

$(VENV)/.stamp: requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Debian's nginx: the tests serve `browserml export` trees and balance several servers with it.
nginx:
	@test -x /usr/sbin/nginx || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }

bench-tools:  # what benchmarks/bench_serving.py compares against and drives
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk; }

pg:
	bash scripts/ensure-postgres.sh

lint: $(VENV)/.stamp
	$(BIN)/ruff check src tests benchmarks

demo: deps
	$(BIN)/browserml demo

test: deps pg lint
	node --test sdk/test/
	BROWSERML_TEST_DATABASE_URL=$${BROWSERML_TEST_DATABASE_URL:-postgresql://browserml:browserml@127.0.0.1:5432/browserml_test} \
	  $(BIN)/pytest

# The pip wheel + sdist (issue 19): setup.py stages the SDK, the pages and exactly the vendor files
# of src/browserml/vendor.py into the package; `pip install dist/browserml-*.whl` then serves alone.
dist: $(VENV)/.stamp node_modules/.stamp
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist
	@ls -l dist

clean:
	rm -rf runs build .browserml reports dist src/browserml/_bundled
