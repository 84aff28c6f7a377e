# Footprint: `make run` to try it, `make test` for the whole suite, `make bench` for figures.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
TRACKER := build/tracker.json

.PHONY: install run test lint bench stop clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The JS tracker, minified into build/static/ (served before static/; not committed).
$(TRACKER): static/footprint.js tracking/build_tracker.mjs $(NODE_STAMP)
	npm run --silent build:tracker

install: $(STAMP) $(NODE_STAMP) $(TRACKER)

run: install
	$(PY) manage.py serve

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: install lint
	bash .ci/ensure-chromium || true
	$(VENV)/bin/pytest

bench: install
	$(PY) manage.py bench

stop: $(STAMP)
	$(PY) -c "from config import embedded; embedded.stop()"

clean:
	rm -rf $(VENV) node_modules .data build
