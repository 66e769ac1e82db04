# p2p — the two commands a new user needs are `make install` and `make run`
# (or `make test`). Every `p2p run` flag can also be set by environment
# variable (P2P_HOME, P2P_ROOT, P2P_LISTEN, P2P_DISCOVERY, P2P_PEERS,
# P2P_SECRET, P2P_SECRET_FILE, P2P_NAME, P2P_GUI), which `make run` passes through.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PEERS  ?= 5
ARGS   ?=

.PHONY: install run test fuzz simulate bench screenshot clean

install: $(STAMP)

# byte code compiled at install: an editable install leaves it to the first start (and to none at all
# under PYTHONDONTWRITEBYTECODE, where every start compiled p2p again: a quarter of a 3,000-file first scan)
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m compileall -q p2p
	touch $(STAMP)

run: install
	$(BIN)/p2p run $(ARGS)

test: install
	$(BIN)/python -m pytest -q tests

fuzz: install
	P2P_FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q tests -k fuzz

simulate: install
	$(BIN)/python scripts/simulate.py --peers $(PEERS) $(ARGS)

bench: install
	$(BIN)/python scripts/bench.py $(ARGS)

screenshot: install   # docs/dashboard.png, the README's picture (needs chromium and chromium-driver)
	$(BIN)/python scripts/gui_screenshot.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis bench-results sim-results
	find . -name __pycache__ -prune -exec rm -rf {} +
