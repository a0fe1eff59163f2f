# The README's two commands: `make run` (set up and run the product) and `make test` (set up and test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test test-fast lint typecheck pytest fuzz services bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,export]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/trainyard serve $(if $(PORT),--port $(PORT))

services:
	scripts/ensure-services.sh

lint: $(STAMP)
	$(BIN)/ruff check app workers trainyard_sdk tests bench examples
	$(BIN)/ruff format --check app workers trainyard_sdk tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) services
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck pytest

# Everything but the slow end-to-end tests (real worker processes, real training): a few minutes.
test-fast: $(STAMP) services
	$(BIN)/pytest -q -p no:cacheprovider -m "not slow"

# The OpenAPI fuzz test of `make test`, with a budget far past CI's (examples per operation and mode).
FUZZ_EXAMPLES ?= 200
fuzz: $(STAMP) services
	TRAINYARD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider --timeout=0 tests/auth/test_fuzz.py

bench: $(STAMP) services
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
