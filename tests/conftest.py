"""Shared fixtures: tiny city tables and configs built by the tests themselves."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from ssl4eo_build.config import REPO_ROOT, load_config
from ssl4eo_build.files import file_sha256
from ssl4eo_build.run import run_all
from ssl4eo_build.sample.cities import write_cities

CONFIGS = REPO_ROOT / "configs"


@pytest.fixture
def few_cities(tmp_path: Path) -> Path:
    """Three cities: mid-latitude, on the antimeridian, and close to the North Pole."""
    path = tmp_path / "cities.csv"
    write_cities(
        path,
        [
            (1, "Midtown", "XX", 48.1, 11.6, 1_000_000),
            (2, "Dateline", "FJ", -16.5, 179.99, 500_000),
            (3, "Polar", "SJ", 89.6, 20.0, 2_000),
        ],
    )
    return path


def kill_when(proc: subprocess.Popen[bytes], manifest: Path, sql: str, more_than: int) -> int:
    """kill -9 ``proc`` once ``sql`` (a COUNT) on its manifest exceeds ``more_than``, or when
    60 s have passed; returns the last count seen."""
    deadline, seen = time.monotonic() + 60, 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            db = sqlite3.connect(manifest, timeout=1)
            seen = db.execute(sql).fetchone()[0]
            db.close()
        except sqlite3.Error:
            continue
        if seen > more_than:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return seen


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# A small two-city build (some locations rejected), shared by the run and resume tests.
@pytest.fixture(scope="session")
def cfg_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("run-config")
    cities = tmp_path / "cities.csv"
    write_cities(
        cities, [(1, "Munich", "DE", 48.137, 11.575, 1), (2, "Lima", "PE", -12.05, -77.04, 1)]
    )
    return write_toml(
        tmp_path / "run.toml",
        f'[sample]\nn = 8\nseed = 5\nsigma_m = 20000.0\ncities = "{cities}"\n'
        "[download]\nworkers = 2\nretry_base_s = 0.001\nretry_max_s = 0.01\n"
        "[synthetic]\npartial_prob = 0.3\n"
        "[align]\nworkers = 2\n[pack]\nshard_size = 4\nval_fraction = 0.25\nsplit_block_deg = 5.0\n"
        "workers = 2\nkeep_partial = true\n",
    )


@pytest.fixture(scope="session")
def clean_run(cfg_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run, the reference for the fault tests."""
    work = tmp_path_factory.mktemp("clean-run")
    run_all(load_config(cfg_path), work, target=8, progress=False)
    return work


def shard_digests(dataset: Path) -> dict[str, str]:
    """sha256 of every shard of a dataset, by relative path."""
    return {
        str(p.relative_to(dataset)): file_sha256(p) for p in sorted(dataset.glob("*/*/*.zarr.zip"))
    }
