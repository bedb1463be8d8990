"""The download stage end to end on the simulator."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

from ssl4eo_build import pipeline
from ssl4eo_build.align.worker import _layer
from ssl4eo_build.config import Config, load_config, override
from ssl4eo_build.download.plan import _size, describe_plan
from ssl4eo_build.errors import ConfigChangedError
from ssl4eo_build.grid import PixelGrid, lonlat_of_pixels
from ssl4eo_build.manifest import Manifest
from ssl4eo_build.modalities import fetched_products
from ssl4eo_build.raster_io import read_geotiff
from ssl4eo_build.sample.cities import write_cities
from ssl4eo_build.sources.synthetic import truth

from .conftest import kill_when, write_toml


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    cities = tmp_path / "cities.csv"
    write_cities(
        cities, [(1, "Munich", "DE", 48.137, 11.575, 1), (2, "Border", "DE", 48.1, 11.98, 1)]
    )
    return write_toml(
        tmp_path / "dl.toml",
        f'[sample]\nn = 6\nseed = 3\nsigma_m = 4000.0\ncities = "{cities}"\n'
        "[download]\nworkers = 3\nretry_base_s = 0.001\nretry_max_s = 0.01\n"
        "[synthetic]\npartial_prob = 0.3\n",
    )


def sampled(cfg: Config, work: Path) -> Path:
    pipeline.run_sample(cfg, work)
    return work


def scenes_table(work: Path) -> list[tuple]:
    db = sqlite3.connect(work / "manifest.sqlite")
    rows = db.execute(
        "SELECT sample_id, product, time_index, scene_id, acquired, cloud_pct, crs, gap_days "
        "FROM scenes ORDER BY 1, 2, 3"
    ).fetchall()
    verdicts = db.execute("SELECT sample_id, status, reason FROM downloads ORDER BY 1").fetchall()
    return rows + verdicts


def test_download_writes_georeferenced_geotiffs(tmp_path: Path, cfg_path: Path) -> None:
    cfg = load_config(cfg_path)
    work = sampled(cfg, tmp_path / "w")
    summary = pipeline.run_download(cfg, work, progress=False)
    assert summary.ok + summary.rejected == 6 and summary.failed == 0 and summary.ok >= 3
    with Manifest.open(work) as m:
        rows = m.db.execute(
            "SELECT sample_id, product, time_index, path, scene_id, crs FROM scenes"
        ).fetchall()
        locations = {r.sample_id: r.position for r in m.locations()}
    per_location: dict[str, Counter[str]] = {}
    for r in rows:
        per_location.setdefault(r[0], Counter())[r[1]] += 1
    assert len(per_location) == summary.ok
    for counts in per_location.values():  # Cloud Score+ only where the granule has it
        assert counts["CS"] <= 4 and counts - Counter({"CS": 4}) == Counter(
            {"S2L1C": 4, "S2L2A": 4, "S1GRD": 4, "LULC": 4, "DEM": 1}
        )
    assert sum(c["CS"] for c in per_location.values()) > 2 * summary.ok
    zones = set()
    s2_crs = {(r[0], r[2]): r[5] for r in rows if r[1] == "S2L2A"}
    files = {r[3] for r in rows}
    # One file per pixel request and type: int16 (S-2, land cover) and float32 (S-1, Cloud
    # Score+, DEM) of the request's seasons; a request per pair of seasons in one UTM zone,
    # more near a zone border.
    pixel_requests = summary.requests - summary.ok  # no retries: one scene plan each
    assert len(files) == 2 * pixel_requests and pixel_requests >= 2 * summary.ok
    products = {p.name: p for p in fetched_products(cfg)}
    for sample_id, product, season, relpath, scene_id, crs in rows:
        name = re.fullmatch(rf"raw/{sample_id[:4]}/{sample_id}/([A-Z0-9+]+)_s\d+\.tif", relpath)
        assert name and product in name.group(1).split("+")
        path = work / relpath
        raster = _layer(read_geotiff(path), path, (product, season), products[product])
        with rasterio.open(path) as f:  # one type per file
            assert set(f.dtypes) == {products[product].raw_dtype}
            assert f.tags()["sample_id"] == sample_id
        assert raster.grid.width == raster.grid.height == 384
        assert raster.grid.epsg == crs == s2_crs[sample_id, season], "on the season's S-2 grid"
        assert raster.tags["scene_id"] == scene_id
        assert raster.bands == products[product].bands
        if product not in ("S2L1C", "S2L2A", "S1GRD"):
            continue
        if product != "S1GRD":
            zones.add(crs)
            assert raster.grid.left % 60 == 0 and raster.grid.top % 60 == 0, "60 m lattice"
        scl = None
        if product != "S1GRD":  # L1C has no SCL: use its L2A sibling (same granule and grid)
            scl = _layer(read_geotiff(path), path, ("S2L2A", season), products["S2L2A"]).data[-1]
        assert_pixels_follow_truth(raster.data, raster.grid, raster.tags, product, scl)
        assert_centre_pixel_is_the_locations(raster.grid, locations[sample_id])
    assert zones >= {32632, 32633}, "locations near the zone border use both zones"


def assert_pixels_follow_truth(data, grid: PixelGrid, tags, product: str, scl) -> None:
    """Pixels sit where the file's transform says: truth correlates, a 1-px shift less so."""
    lon, lat = lonlat_of_pixels(grid)
    t = truth(lon, lat, 0)
    band = data[-1] if product == "S1GRD" else data[7]  # VH or B08
    ok = np.isfinite(band) & (t.water >= -0.35)
    if scl is not None:
        ok &= (scl == 4) | (scl == 5)
    # The simulator's texture weights: VH 0.5 B + 0.9 V; B08 0.8 B + 0.7 V.
    expected = 0.5 * t.brightness + 0.9 * t.vegetation
    if product != "S1GRD":
        expected = 0.8 * t.brightness + 0.7 * t.vegetation
    if ok.sum() < 1000:
        return
    r0 = np.corrcoef(band[ok], expected[ok])[0, 1]
    assert r0 > 0.85, (tags["scene_id"], r0)
    # Fine detail (horizontal differences) matches here and not one pixel to the side.
    if product == "S2L1C":
        return  # 20/60 m texture is not in B08's fine detail; L2A and S1 cover the check
    d_band, d_exp = np.diff(band, axis=1), np.diff(expected, axis=1)
    ok_d = ok[:, 1:] & ok[:, :-1]
    here = np.corrcoef(d_band[ok_d], d_exp[ok_d])[0, 1]
    ok_s = ok_d[:, 1:] & ok_d[:, :-1]
    beside = np.corrcoef(d_band[:, 1:][ok_s], d_exp[:, :-1][ok_s])[0, 1]
    assert here > 0.99 and here > beside + 0.03, (tags["scene_id"], here, beside)


def assert_centre_pixel_is_the_locations(grid: PixelGrid, position) -> None:
    from ssl4eo_build.grid import centre_pixel

    col, row = centre_pixel(grid, position)
    assert abs(col - 192) <= 6 and abs(row - 192) <= 6, "centred within the 60 m snap"


def test_nan_is_never_zero_in_files(tmp_path: Path, cfg_path: Path) -> None:
    cfg = override(load_config(cfg_path), "synthetic.partial_prob", 1.0)
    work = sampled(cfg, tmp_path / "w")
    pipeline.run_download(cfg, work, progress=False)
    with Manifest.open(work) as m:
        paths = [
            work / r[0] for r in m.db.execute("SELECT path FROM scenes WHERE product != 'S2L2A'")
        ]
    assert paths
    nan_files = 0
    for path in paths:
        data = read_geotiff(path).data
        nan_files += bool(np.isnan(data).any())
        assert not (data[:, ~np.isnan(data[0])] == 0).all(axis=0).any(), "no all-zero pixels"
    assert nan_files > len(paths) // 2, "most files have a swath edge (some edges miss the area)"


def test_rerun_fetches_nothing(tmp_path: Path, cfg_path: Path) -> None:
    cfg = load_config(cfg_path)
    work = sampled(cfg, tmp_path / "w")
    pipeline.run_download(cfg, work, progress=False)
    files = sorted((work / "raw").rglob("*.tif"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = pipeline.run_download(cfg, work, progress=False)
    assert again.planned == 0 and again.requests == 0
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_transient_errors_at_20_percent_lose_nothing(tmp_path: Path, cfg_path: Path) -> None:
    cfg = load_config(cfg_path)
    clean = sampled(cfg, tmp_path / "clean")
    pipeline.run_download(cfg, clean, progress=False)
    # 10 attempts per request: a location fails for good with probability ~1e-7 per request.
    flaky_cfg = override(override(cfg, "synthetic.error_rate", 0.2), "download.max_attempts", 10)
    flaky = sampled(flaky_cfg, tmp_path / "flaky")
    summary = pipeline.run_download(flaky_cfg, flaky, progress=False)
    assert summary.failed == 0
    assert summary.requests > pipeline.run_download(cfg, clean, progress=False).requests
    assert scenes_table(flaky) == scenes_table(clean)


def test_failed_locations_are_retried_next_run(tmp_path: Path, cfg_path: Path) -> None:
    cfg = load_config(cfg_path)
    broken = override(override(cfg, "synthetic.error_rate", 0.9), "download.max_attempts", 1)
    work = sampled(cfg, tmp_path / "w")
    first = pipeline.run_download(broken, work, progress=False)
    assert first.failed > 0
    report = pipeline.status(work)["stages"]["download"]
    assert report["counts"]["failed"] == first.failed
    assert any(reason.startswith("transient:") for reason in report["reasons"])
    second = pipeline.run_download(cfg, work, progress=False)
    assert second.planned == first.failed and second.failed == 0
    clean = sampled(cfg, tmp_path / "clean")
    pipeline.run_download(cfg, clean, progress=False)
    assert scenes_table(work)[:-6] == scenes_table(clean)[:-6]
    db = sqlite3.connect(work / "manifest.sqlite")
    assert db.execute("SELECT MAX(attempts) FROM downloads").fetchone()[0] == 2


def test_reference_index_mode_picks_scenes_near_reference_times(tmp_path: Path, cfg_path: Path):
    cfg = load_config(cfg_path)
    index = tmp_path / "idx.csv"
    index.write_text(
        "sample_id,lon,lat,t0,t1,t2,t3\n"
        "0000001,11.5,48.1,2020-04-19T10:00:00,2019-07-02T10:00:00,2020-10-10T10:00:00,2021-01-15T10:00:00\n"
    )
    work = tmp_path / "w"
    pipeline.import_index(cfg, work, index)
    pipeline.run_download(cfg, work, progress=False)
    refs = [
        datetime(2020, 4, 19, 10),
        datetime(2019, 7, 2, 10),
        datetime(2020, 10, 10, 10),
        datetime(2021, 1, 15, 10),
    ]
    db = sqlite3.connect(work / "manifest.sqlite")
    status = db.execute("SELECT status, reason FROM downloads").fetchone()
    if status[0] == "ok":
        for season, acquired in db.execute(
            "SELECT time_index, acquired FROM scenes WHERE product='S2L2A' ORDER BY time_index"
        ):
            assert abs((datetime.fromisoformat(acquired) - refs[season]).days) <= 30
    else:
        assert "within 30 d of" in status[1]


def test_dry_run_and_changed_config(tmp_path: Path, cfg_path: Path) -> None:
    cfg = load_config(cfg_path)
    work = sampled(cfg, tmp_path / "w")
    plan = pipeline.run_download(cfg, work, dry_run=True, progress=False)
    assert plan.dry_run and plan.planned == 6 and plan.requests_planned == 6 * 3
    assert not (work / "raw").exists()
    assert not any("measured" in line for line in describe_plan(cfg, 100, work))
    pipeline.run_download(cfg, work, limit=2, progress=False)
    raw = sum(p.stat().st_size for p in (work / "raw").rglob("*.tif"))
    (line,) = [line for line in describe_plan(cfg, 100, work) if "measured" in line]
    assert f"raw files {raw / 2 / 1e6:.1f} MB per location (2 location(s))" in line
    assert f"about {_size(raw / 2 * 100)} more for 100 location(s)" in line
    with pytest.raises(ConfigChangedError, match="years"):
        pipeline.run_download(override(cfg, "download.years", [2020]), work, progress=False)


def test_killed_download_resumes_without_refetching(tmp_path: Path, cfg_path: Path) -> None:
    cfg_text = cfg_path.read_text().replace("[synthetic]\n", "[synthetic]\nlatency_s = 0.03\n")
    slow = write_toml(tmp_path / "slow.toml", cfg_text.replace("n = 6", "n = 14"))
    cmd = [sys.executable, "-m", "ssl4eo_build.cli.app"]
    killed = tmp_path / "killed"
    subprocess.run([*cmd, "sample", "-c", str(slow), "-w", str(killed), "-q"], check=True)
    proc = subprocess.Popen(
        [*cmd, "download", "-c", str(slow), "-w", str(killed), "-q", "--workers", "2"]
    )
    finished = kill_when(
        proc, killed / "manifest.sqlite", "SELECT COUNT(*) FROM downloads WHERE status='ok'", 1
    )
    db = sqlite3.connect(killed / "manifest.sqlite")
    done_paths = [killed / r[0] for r in db.execute("SELECT path FROM scenes")]
    db.close()
    assert done_paths and finished < 14
    before = {p: p.stat().st_mtime_ns for p in done_paths}
    subprocess.run([*cmd, "download", "-c", str(slow), "-w", str(killed), "-q"], check=True)
    assert {p: p.stat().st_mtime_ns for p in done_paths} == before, "finished work not redone"
    assert not (killed / ".tmp").exists(), "the killed run's temporary files are gone"
    clean = tmp_path / "clean"
    subprocess.run([*cmd, "sample", "-c", str(slow), "-w", str(clean), "-q"], check=True)
    subprocess.run([*cmd, "download", "-c", str(slow), "-w", str(clean), "-q"], check=True)
    assert scenes_table(killed) == scenes_table(clean)
