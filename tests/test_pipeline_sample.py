from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ssl4eo_build import pipeline
from ssl4eo_build.config import load_config, override
from ssl4eo_build.errors import ConfigChangedError, InputError
from ssl4eo_build.manifest import Manifest

from .conftest import kill_when, write_toml


@pytest.fixture
def cfg_path(tmp_path: Path, few_cities: Path) -> Path:
    return write_toml(
        tmp_path / "small.toml",
        "[sample]\nseed = 11\nn = 300\nsigma_m = 20000.0\nbatch_size = 64\n"
        f'cities = "{few_cities}"\n',
    )


def locations(work: Path) -> list[tuple[str, float, float, str]]:
    with Manifest.open(work, create=False) as m:
        return [(r.sample_id, r.position.lon, r.position.lat, r.city or "") for r in m.locations()]


def test_sample_writes_manifest(tmp_path: Path, cfg_path: Path) -> None:
    summary = pipeline.run_sample(load_config(cfg_path), tmp_path / "w")
    assert summary.added == summary.total == 300
    rows = locations(tmp_path / "w")
    assert [r[0] for r in rows] == [f"{i:07d}" for i in range(300)]
    assert all(r[3].endswith(")") for r in rows)
    report = pipeline.status(tmp_path / "w")
    assert report["stages"]["sample"]["counts"]["ok"] == 300
    db = sqlite3.connect(tmp_path / "w" / "manifest.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rerun_does_nothing_and_top_up_matches_one_run(tmp_path: Path, cfg_path: Path) -> None:
    cfg = load_config(cfg_path)
    pipeline.run_sample(override(cfg, "sample.n", 120), tmp_path / "a")
    before = locations(tmp_path / "a")
    again = pipeline.run_sample(override(cfg, "sample.n", 120), tmp_path / "a")
    assert again.added == 0 and locations(tmp_path / "a") == before
    topped = pipeline.run_sample(cfg, tmp_path / "a")
    assert topped.added == 180
    assert locations(tmp_path / "a")[:120] == before, "existing rows untouched"
    pipeline.run_sample(cfg, tmp_path / "b")
    assert locations(tmp_path / "a") == locations(tmp_path / "b")


def test_changed_config_is_refused_unless_forced(tmp_path: Path, cfg_path: Path) -> None:
    cfg = load_config(cfg_path)
    pipeline.run_sample(cfg, tmp_path / "w")
    changed = override(override(cfg, "sample.seed", 12), "sample.n", 350)
    with pytest.raises(ConfigChangedError, match=r"seed: 11 -> 12"):
        pipeline.run_sample(changed, tmp_path / "w")
    assert len(locations(tmp_path / "w")) == 300, "nothing finished was lost"
    assert pipeline.run_sample(changed, tmp_path / "w", force=True).added == 50


def test_import_then_top_up_avoids_imported(tmp_path: Path, cfg_path: Path) -> None:
    index = tmp_path / "idx.csv"
    index.write_text("sample_id,lon,lat,t0\n0000500,11.6,48.1,2021-03-20T10:00:00\n")
    work = tmp_path / "w"
    summary = pipeline.import_index(load_config(cfg_path), work, index)
    assert summary.added == 1
    with Manifest.open(work) as m:
        assert m.reference_times("0000500") == {0: "2021-03-20T10:00:00"}
    pipeline.run_sample(override(load_config(cfg_path), "sample.n", 50), work)
    ids = [r[0] for r in locations(work)]
    assert len(ids) == 50 and "0000501" in ids and "0000500" in ids
    with pytest.raises(InputError, match="already in"):
        pipeline.import_index(load_config(cfg_path), work, index)


def test_killed_sample_resumes_to_the_same_result(tmp_path: Path, few_cities: Path) -> None:
    """kill -9 mid-stage, rerun: same locations as an uninterrupted run, nothing duplicated."""
    cfg = write_toml(
        tmp_path / "big.toml",
        "[sample]\nseed = 5\nn = 20000\nsigma_m = 60000.0\nbatch_size = 16\n"
        f'cities = "{few_cities}"\n',
    )
    cmd = [sys.executable, "-m", "ssl4eo_build.cli.app"]
    args = ["sample", "--config", str(cfg), "--work-dir"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, *args, str(killed)], stdout=subprocess.DEVNULL)
    partial = kill_when(proc, killed / "manifest.sqlite", "SELECT COUNT(*) FROM locations", 500)
    assert 0 < partial < 20000, "the kill landed mid-stage"
    subprocess.run([*cmd, *args, str(killed)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*cmd, *args, str(tmp_path / "clean")], check=True, stdout=subprocess.DEVNULL)
    assert locations(killed) == locations(tmp_path / "clean")
