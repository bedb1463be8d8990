"""Shared fixtures: tiny city tables and configs built by the tests themselves."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from ssl4eo_build.cities import write_cities
from ssl4eo_build.config import REPO_ROOT

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
