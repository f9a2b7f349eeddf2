# Two commands set everything up on a fresh machine: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# pytest-xdist workers for `make test`: each starts its own PostgreSQL, broker and services,
# and a test module stays on one worker (--dist loadfile). Most of the suite waits on
# servers, so more workers than cores still help: on two cores, three took pytest from
# 1,022 s to 815-931 s (CI runs of 2026-12-04).
TEST_WORKERS ?= 3
# Python keeps compiled modules (and pytest its rewritten test modules) even where the
# environment says not to: each of the ~150 service processes a test run starts would
# otherwise compile Vigil's sources again (0.3-0.4 s of CPU each), and each pytest worker
# rewrite every test module's asserts. __pycache__/ is ignored by git.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install system-deps run test test-unit lint format docs clean bench bench-store bench-ingest bench-rules bench-judging bench-workspace soak

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## install: create .venv if missing and install Vigil with its dev extras
install: $(STAMP)

## system-deps: install the PostgreSQL server binaries and Chromium (browser tests) when missing
system-deps:
	@bash scripts/ensure-system-packages

## run: the whole stack on this machine with a simulated trial (Ctrl-C stops it)
run: install system-deps
	$(VENV)/bin/vigil dev --demo

## test: the whole suite against real components started by fixtures
# The short soak runs on its own once the rest has passed: it holds a whole stack to latency
# budgets under scheduled faults, which it cannot judge on two cores shared with the
# browser tests' stack.
SOAK_TEST := tests/e2e/test_soak_short.py
test: install system-deps
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=40 --deselect $(SOAK_TEST)
	$(PY) -m pytest $(SOAK_TEST)

## test-unit: only the tests that need no server
test-unit: install
	$(PY) -m pytest tests/unit

## lint: ruff (lint and format check) and mypy in strict mode
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## bench-store: append and verify 200,000 events; prints rates and the ratio to raw COPY
bench-store: install system-deps
	$(PY) benchmarks/bench_store.py

## bench-ingest: MLLP, JSON and FHIR into the ingest service; msg/s, results/s, p50/p99 to ACK, ceiling
bench-ingest: install system-deps
	$(PY) benchmarks/bench_ingest.py

## bench-rules: events through the broker into the rules service; rate, ceiling, latency
bench-rules: install system-deps
	$(PY) benchmarks/bench_rules.py

## bench: ingest, rules and notifier together fed a trial-shaped MLLP/FHIR/JSON mix; results/s
## end to end beside its ceilings, per-stage latency percentiles, paced at 500 and 2,000/s.
## Options: BENCH_ARGS="--help"
bench: install system-deps
	$(PY) benchmarks/bench_e2e.py $(BENCH_ARGS)

## bench-workspace: the workspace's subject page (drawn and cached), eDISH and inbox times
## on a trial-sized study (200 subjects x 50 visits x 6 analytes)
bench-workspace: install system-deps
	$(PY) benchmarks/bench_workspace.py

## bench-judging: the rules service's parse-and-judge work per batch, no broker or database
bench-judging: install
	$(PY) benchmarks/bench_judging.py

## soak: the whole stack under a long mixed stream, poison and scheduled faults; prints a
## report and exits 1 on any loss (not part of `make test`). Options: SOAK_ARGS="--help"
soak: install system-deps
	$(PY) -m soak $(SOAK_ARGS)

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## docs: regenerate what is generated from the code (the event catalogue, the LOINC table,
## the Grafana dashboard); tests fail while any of them is stale
docs: install
	$(PY) -m shared.events.catalogue > docs/events.md
	$(PY) -m shared.analytes > docs/loinc-codes.md
	$(PY) -m deploy.grafana.dashboard

clean:
	rm -rf .vigil .pytest_cache .mypy_cache .ruff_cache
