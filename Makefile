# ssl4eo-build: every target creates .venv when missing and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/demo.toml
WORK ?= work
DEMO_WORK ?= demo-work
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench cities sample download align status clean install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ssl4eo-build sample --config configs/demo.toml --work-dir $(DEMO_WORK)
	$(BIN)/ssl4eo-build download --config configs/demo.toml --work-dir $(DEMO_WORK)
	$(BIN)/ssl4eo-build align --config configs/demo.toml --work-dir $(DEMO_WORK)
	$(BIN)/ssl4eo-build status --work-dir $(DEMO_WORK)
	@echo "demo: work directory (manifest and outputs) is $(abspath $(DEMO_WORK))"

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check ssl4eo_build cli tests bench
	$(BIN)/ruff format --check ssl4eo_build cli tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

cities: $(STAMP)
	$(BIN)/python -m ssl4eo_build.cities data/cities/top10k_cities.csv

sample: $(STAMP)
	$(BIN)/ssl4eo-build sample --config $(CONFIG) --work-dir $(WORK)

download: $(STAMP)
	$(BIN)/ssl4eo-build download --config $(CONFIG) --work-dir $(WORK)

align: $(STAMP)
	$(BIN)/ssl4eo-build align --config $(CONFIG) --work-dir $(WORK)

status: $(STAMP)
	$(BIN)/ssl4eo-build status --work-dir $(WORK)

clean:
	rm -rf $(DEMO_WORK) .pytest_cache .mypy_cache .ruff_cache
