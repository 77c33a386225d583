# The two README commands: `make serve` (set up, train the demo models if missing, serve them)
# and `make test` (set up, run the whole test suite). Both build their own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo serve test lint clean

$(BIN)/surrogate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[all]"
	touch $@

setup: $(BIN)/surrogate

demo: setup
	$(BIN)/surrogate demo --if-missing

serve: demo
	$(BIN)/surrogate serve

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check training service tests bench

clean:
	rm -rf $(VENV) .pytest_cache
