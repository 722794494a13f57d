# wirekit: everything a fresh machine with Python 3.11 needs.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[fast,ssh,capture,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wirekit tour

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# Every benchmark, one table each (wirekit and the peer tools side by side, as ratios);
# `make bench BENCH=inspect BENCH_ARGS='--packets 200000'` runs one.  dpkt and scapy are
# the inspect benchmark's comparison loops: installed here, not in the package's extras.
BENCH ?= all tls forward_tls ssh inspect record capture
bench: $(STAMP)
	$(BIN)/pip install -q dpkt scapy
	set -e; for b in $(BENCH); do $(BIN)/python -m bench $$b $(BENCH_ARGS); done

# Coverage-guided fuzzing of every parser (atheris); not part of CI.
fuzz: $(STAMP)
	$(BIN)/pip install -q atheris
	set -e; for h in fuzz/fuzz_*.py; do $(BIN)/python $$h -max_total_time=$${FUZZ_SECONDS:-60} -rss_limit_mb=2048; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
