# ssl4eo-build: every target creates .venv when missing and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/demo.toml
WORK ?= work
DEMO_WORK ?= demo-work
STAMP := $(VENV)/.installed
# A second environment with the versions the v1.1 docs tell users to pin, so the tests can open
# our shards exactly as those users do (tests/test_pack.py).
ZARR2_VENV ?= .venv-zarr2
ZARR2_STAMP := $(ZARR2_VENV)/.installed

.PHONY: demo test lint bench cities sample download align pack run status clean install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ssl4eo-build run --config configs/demo.toml --work-dir $(DEMO_WORK)
	$(BIN)/ssl4eo-build status --work-dir $(DEMO_WORK)
	$(BIN)/ssl4eo-build validate $(DEMO_WORK)/dataset
	@echo "demo: dataset is $(abspath $(DEMO_WORK))/dataset (work directory $(abspath $(DEMO_WORK)))"

$(ZARR2_STAMP):
	test -x $(ZARR2_VENV)/bin/python || $(PYTHON) -m venv $(ZARR2_VENV)
	$(ZARR2_VENV)/bin/python -m pip install --quiet "zarr==2.18.0" "numcodecs<0.16" \
		"xarray==2024.6.0" "numpy<2" "pandas<2.3" "dask[array]<2025"
	touch $(ZARR2_STAMP)

test: $(STAMP) $(ZARR2_STAMP)
	SSL4EO_ZARR2_PYTHON=$(abspath $(ZARR2_VENV))/bin/python $(BIN)/python -m pytest -q -n auto --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check ssl4eo_build cli tests bench
	$(BIN)/ruff format --check ssl4eo_build cli tests bench
	$(BIN)/mypy

bench: $(STAMP) $(ZARR2_STAMP)
	$(BIN)/python -m bench

cities: $(STAMP)
	$(BIN)/python -m ssl4eo_build.cities data/cities/top10k_cities.csv

sample: $(STAMP)
	$(BIN)/ssl4eo-build sample --config $(CONFIG) --work-dir $(WORK)

download: $(STAMP)
	$(BIN)/ssl4eo-build download --config $(CONFIG) --work-dir $(WORK)

align: $(STAMP)
	$(BIN)/ssl4eo-build align --config $(CONFIG) --work-dir $(WORK)

pack: $(STAMP)
	$(BIN)/ssl4eo-build pack --config $(CONFIG) --work-dir $(WORK)

run: $(STAMP)
	$(BIN)/ssl4eo-build run --config $(CONFIG) --work-dir $(WORK) $(if $(TARGET),--target $(TARGET),)

status: $(STAMP)
	$(BIN)/ssl4eo-build status --work-dir $(WORK)

clean:
	rm -rf $(DEMO_WORK) .pytest_cache .mypy_cache .ruff_cache
