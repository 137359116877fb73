# Two commands do everything on a fresh machine (see README):
#   make demo   - create .venv (and install Chromium), then run the end-to-end demo on embedded defaults
#   make test   - create/update .venv, install Chromium, then lint (ruff) and run the test suite (pytest)
# .ci/run calls `make test`, then `make demo`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
EDGE_VENV := .venv-edge
EDGE_STAMP := $(EDGE_VENV)/.installed-edge

.PHONY: demo test edge-check debian-tools image format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

# A second, bedside-like environment with only the [edge] extra: proves the runtime needs no TensorFlow.
$(EDGE_STAMP): pyproject.toml
	@test -x $(EDGE_VENV)/bin/python || $(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EDGE_VENV)/bin/python -m pip install --quiet ".[edge]"
	@touch $@

# The JavaScript SR reader of the viewer test (dcmjs from the npm registry, pinned in tests/js/package-lock.json).
JS_STAMP := tests/js/node_modules/.installed
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

edge-check: $(EDGE_STAMP)
	PYTHONPATH=$(CURDIR) $(EDGE_VENV)/bin/python scripts/edge_only_check.py

# The Debian tools the tests and the demo run, each with its reason: scripts/debian_tools.sh.
debian-tools:
	@sh scripts/debian_tools.sh

demo: $(STAMP) debian-tools
	$(BIN)/python scripts/demo.py

test: $(STAMP) $(EDGE_STAMP) debian-tools $(JS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=$(CURDIR) $(EDGE_VENV)/bin/python scripts/edge_only_check.py
	$(BIN)/python -m pytest --durations=15

# The bedside image (deploy/Containerfile) on local Debian bases; size, SBOM and build times in out/image/.
image: debian-tools
	sh deploy/image/build.sh

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(EDGE_VENV) out .pytest_cache .ruff_cache
