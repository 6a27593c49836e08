# Two commands do all the set-up on a fresh machine (Python 3.11, Node 20):
#   make run    runs Ponte under supervisord (embedded Redis when REDIS_URL is unset)
#   make test   runs the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.ponte-installed
NODE_STAMP := node_modules/.ponte-installed

.PHONY: setup run test test-py test-node lint bench clean browser

setup: $(PY_STAMP) $(NODE_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(PY_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: setup
	$(BIN)/ponte run

test: setup lint test-node test-py

lint: setup
	$(BIN)/ruff check bridge tests
	$(BIN)/mypy

test-node: $(NODE_STAMP)
	node --test --test-reporter=dot sidecar/test/ tests/simulator/test/

test-py: $(PY_STAMP) browser
	$(BIN)/pytest -q

# tests/test_page.py loads the status page in Debian's Chromium: install it when missing (as
# root, or with sudo if it needs no password). If that fails, that test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  echo "make: installing chromium from Debian's packages (for tests/test_page.py)"; \
	  { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq chromium; } >/dev/null \
	  || echo "make: could not install chromium: the browser test will be skipped"; }

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
