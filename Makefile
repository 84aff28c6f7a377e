# Footprint: `make run` to try it, `make test` for the whole suite, `make bench` for figures.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp

.PHONY: install run test lint bench stop clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) $(NODE_STAMP)

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
	rm -rf $(VENV) node_modules .data
