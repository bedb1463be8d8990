"""`align` end to end on the simulator: alignment against ground truth, damage, resume."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ssl4eo_build import pipeline
from ssl4eo_build.align.cube import AlignedCube, load_cube
from ssl4eo_build.config import Config, load_config
from ssl4eo_build.derive import SCL_TO_CLOUD
from ssl4eo_build.download.core import fetch_grid
from ssl4eo_build.grid import PixelGrid, transformer
from ssl4eo_build.manifest import Manifest
from ssl4eo_build.sample.cities import write_cities
from ssl4eo_build.sources.base import Scene, TimeWindow
from ssl4eo_build.sources.synthetic import SyntheticSource, truth

from .conftest import write_toml


@pytest.fixture(scope="module")
def aligned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path]:
    """Locations in UTM 32 and straddling the 32/33 border, downloaded and aligned once."""
    root = tmp_path_factory.mktemp("align")
    cities = root / "cities.csv"
    write_cities(
        cities, [(1, "Munich", "DE", 48.137, 11.575, 1), (2, "Border", "DE", 48.1, 11.99, 1)]
    )
    cfg = load_config(
        write_toml(
            root / "a.toml",
            f'[sample]\nn = 14\nseed = 2\nsigma_m = 3000.0\ncities = "{cities}"\n'
            "[download]\nworkers = 3\n[synthetic]\npartial_prob = 0.15\n",
        )
    )
    work = root / "w"
    pipeline.run_sample(cfg, work)
    pipeline.run_download(cfg, work, progress=False)
    pipeline.run_align(cfg, work, progress=False, workers=2)
    return cfg, work


def patches(work: Path) -> list[tuple]:
    db = sqlite3.connect(work / "manifest.sqlite")
    return db.execute(
        "SELECT sample_id, status, reason, crs, nan_fraction_max, path FROM patches ORDER BY 1"
    ).fetchall()


def shift_px(image: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(dy, dx) of ``image`` relative to ``reference`` by FFT cross-correlation, sub-pixel by a
    parabola through the peak and its neighbours."""

    def prep(a: np.ndarray) -> np.ndarray:
        a = np.gradient(a.astype(np.float64), axis=1) + np.gradient(a.astype(np.float64), axis=0)
        a = (a - a.mean()) / (a.std() + 1e-12)
        return a * np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))

    c = np.fft.ifft2(np.fft.fft2(prep(image)) * np.conj(np.fft.fft2(prep(reference)))).real
    peak = np.unravel_index(int(np.argmax(c)), c.shape)
    out = []
    for axis in (0, 1):
        n = c.shape[axis]
        idx = list(peak)
        vals = []
        for d in (-1, 0, 1):
            idx[axis] = (peak[axis] + d) % n
            vals.append(c[tuple(idx)])
        denom = vals[0] - 2 * vals[1] + vals[2]
        frac = 0.5 * (vals[0] - vals[2]) / denom if denom != 0 else 0.0
        p = peak[axis] + frac
        out.append(p - n if p > n / 2 else p)
    return out[0], out[1]


def test_every_timestamp_and_s1_agree_with_truth(aligned: tuple[Config, Path]) -> None:
    _, work = aligned
    rows = [r for r in patches(work) if r[1] == "ok"]
    assert len(rows) >= 6
    offsets, two_zone = [], 0
    for _, _, _, crs, _, path in rows:
        cube = load_cube(work / path)
        assert cube.epsg == crs
        xs, ys = np.meshgrid(cube.x, cube.y)
        lon, lat = transformer(crs, 4326).transform(xs, ys)
        t = truth(lon, lat, 0)
        two_zone += len(set(cube.tile_crs)) > 1
        water = t.water < -0.35
        l2a = cube.modalities["S2L2A"]
        b08 = l2a.band_names.index("B08")
        for ti in range(4):
            image = l2a.bands[ti, b08].astype(np.float32)
            cloudy = np.isin(cube.cloud_mask[ti], (3, 4))  # clouds hide the ground: neutralise
            image[cloudy] = np.median(image[~cloudy])
            expected = np.where(water, -1.5, 0.8 * t.brightness + 0.7 * t.vegetation)
            offsets.append(shift_px(image, expected))
        s1 = cube.modalities["S1GRD"]
        for ti in range(4):
            vv = s1.bands[ti, 0].astype(np.float32)
            expected = np.where(water, -1.5, 0.8 * t.brightness + 0.6 * t.vegetation)
            offsets.append(shift_px(vv, expected))
    offsets = np.abs(np.array(offsets))
    assert two_zone >= 1, "some locations have timestamps in two UTM zones"
    print(f"mean |offset| {offsets.mean():.3f} px, max {offsets.max():.3f} px over {len(offsets)}")
    assert offsets.mean() < 0.5, offsets.mean()
    assert offsets.max() < 1.0, offsets.max()


class Simulated:
    """The simulator's own pixels of a cube's timestamp, on the cube's reference grid: the
    layer evaluated on the season's fetch grid (as the download asked for it) and cropped."""

    def __init__(self, cfg: Config, work: Path, sample_id: str, cube: AlignedCube) -> None:
        self.cfg, self.cube = cfg, cube
        self.source = SyntheticSource(cfg.synthetic)
        with Manifest.open(work) as m:
            self.position = next(r.position for r in m.locations() if r.sample_id == sample_id)
            self.scenes = {
                (product, int(season)): scene_id
                for product, season, scene_id in m.db.execute(
                    "SELECT product, time_index, scene_id FROM scenes WHERE sample_id=?",
                    (sample_id,),
                )
            }
        x, y = cube.x, cube.y
        self.grid = PixelGrid(cube.epsg, x[0] - 5.0, y[0] + 5.0, 10.0, 10.0, len(x), len(y))

    def layer(self, t: int, product: str, bands: tuple[str, ...]) -> np.ndarray | None:
        """(band, y, x) of ``product`` at timestamp ``t``; None when the granule lacks it."""
        cube = self.cube
        season, epsg = cube.season[t], cube.tile_crs[t]
        scene_id = self.scenes.get((product, season))
        if scene_id is None:
            return None
        acquired = cube.modalities["S2L2A"].time[t].astype("datetime64[s]").item()
        if product == "LULC":
            acquired = datetime(int(scene_id.rsplit(":", 1)[1]), 1, 1)
        day = timedelta(days=1)
        self.source.search(self.position, "S2L2A", [TimeWindow(acquired - day, acquired + day)])
        scene = Scene(scene_id, product, acquired, epsg)
        fetched = fetch_grid(self.cfg, scene, self.position)
        col, row = self.grid.offset_in(fetched)
        data = self.source.pixels(scene, fetched, bands)
        return data[:, row : row + self.grid.height, col : col + self.grid.width]


def same_crs_timestamps(aligned: tuple[Config, Path]) -> list[tuple[Simulated, int]]:
    """(simulated truth, timestamp) of every timestamp aligned without resampling."""
    cfg, work = aligned
    out = []
    for sample_id, status, _, _, _, path in patches(work):
        if status != "ok":
            continue
        cube = load_cube(work / path)
        truth_of = Simulated(cfg, work, sample_id, cube)
        out.extend((truth_of, t) for t in range(4) if cube.tile_crs[t] == cube.epsg)
    assert len(out) >= 20
    return out


def test_ndvi_cloud_classes_and_land_cover_are_the_simulators(
    aligned: tuple[Config, Path],
) -> None:
    """Per timestamp: NDVI from the simulator's L2A, the cloud classes from its Cloud Score+
    (or SCL alone where the granule has none) and SCL, and the year's land cover with snow and
    clouds from the mask; compared where the simulator delivered pixels (align fills the rest
    from the nearest)."""
    thin = with_score = snow = 0
    for sim, t in same_crs_timestamps(aligned):
        cube = sim.cube
        red, nir, scl = sim.layer(t, "S2L2A", ("B04", "B08", "SCL"))
        seen = np.isfinite(scl)
        total = nir + red
        ndvi = np.divide(nir - red, total, out=np.zeros_like(total), where=total != 0)
        got = cube.modalities["NDVI"].bands[t, 0]
        np.testing.assert_array_equal(got[seen], ndvi.astype(np.float16)[seen])
        assert got.dtype == np.float16 and got.min() >= -1.0 and got.max() <= 1.0

        score = sim.layer(t, "CS", ("cs_cdf",))
        classes = SCL_TO_CLOUD[np.nan_to_num(scl, nan=0.0).astype(int)]
        if score is not None:  # Cloud Score+ decides clouds: thin below 0.6, thick below 0.3
            with_score += 1
            cs = score[0]
            classes = np.where(np.isin(classes, (3, 4)), 0, classes)
            classes = np.where(cs < 0.6, 3, classes)
            classes = np.where(cs < 0.3, 4, classes)
        mask = cube.cloud_mask[t]
        np.testing.assert_array_equal(mask[seen], classes[seen])
        thin += int((mask == 3).sum())
        snow += int((mask == 2).sum())

        (esri,) = sim.layer(t, "LULC", ("b1",))
        lulc = np.zeros(esri.shape, dtype=np.uint8)
        for code, label in {1: 1, 2: 2, 4: 3, 5: 4, 7: 5, 8: 6, 9: 7, 10: 8, 11: 9}.items():
            lulc[esri == code] = label
        lulc[mask == 2] = 7  # snow and clouds from the timestamp's mask
        lulc[np.isin(mask, (3, 4))] = 8
        np.testing.assert_array_equal(cube.modalities["LULC"].bands[t, 0], lulc)
    assert with_score and thin and snow, "Cloud Score+, thin clouds and snow all exercised"


def test_dem_is_the_terrain_at_one_timestamp(aligned: tuple[Config, Path]) -> None:
    for sim, t in same_crs_timestamps(aligned):
        if t:
            continue
        cube = sim.cube
        dem = cube.modalities["DEM"]
        assert dem.bands.shape == (1, 1, 264, 264) and dem.bands.dtype == np.float32
        assert dem.time.astype(np.int64).tolist() == [0]
        assert dem.file_id == ("COPERNICUS/DEM/GLO30",)
        season = next(s for (p, s) in sim.scenes if p == "DEM")
        grid = fetch_grid(sim.cfg, Scene("dem", "DEM", datetime(1970, 1, 1), cube.epsg),
                          sim.position)  # fmt: skip
        xs, ys = np.meshgrid(cube.x, cube.y)
        lon, lat = transformer(cube.epsg, 4326).transform(xs, ys)
        terrain = truth(lon, lat, 0).elevation
        # The season the DEM came with is on the majority CRS: sliced, not resampled.
        assert cube.tile_crs[cube.season.index(season)] == cube.epsg and grid.epsg == cube.epsg
        np.testing.assert_allclose(dem.bands[0, 0], terrain, atol=0.05)


def test_cube_layout(aligned: tuple[Config, Path]) -> None:
    _, work = aligned
    _, _, _, _, nan_max, path = next(r for r in patches(work) if r[1] == "ok")
    cube = load_cube(work / path)
    assert cube.modalities["S2L1C"].bands.shape == (4, 13, 264, 264)
    assert cube.modalities["S2L1C"].bands.dtype == np.int16
    assert cube.modalities["S2L2A"].bands.shape == (4, 12, 264, 264)
    assert "SCL" not in cube.modalities["S2L2A"].band_names
    assert cube.modalities["S1GRD"].bands.dtype == np.float16
    assert cube.modalities["S1GRD"].band_names == ("vv", "vh")
    assert cube.modalities["S2RGB"].bands.dtype == np.uint8
    assert cube.cloud_mask.shape == (4, 264, 264)
    times = cube.modalities["S2L2A"].time
    assert np.all(np.diff(times) > np.timedelta64(0)), "timestamps sorted by date"
    assert (cube.x[0] - 5) % 10 == 0 and (cube.y[0] + 5) % 10 == 0, "edges on the 10 m lattice"
    assert np.allclose(np.diff(cube.x), 10) and np.allclose(np.diff(cube.y), -10)
    for m in cube.modalities.values():
        assert not np.isnan(m.bands.astype(np.float32)).any(), "NaNs filled"
    assert 0.0 <= nan_max <= 0.01


def test_nan_rejections_and_rerun(aligned: tuple[Config, Path]) -> None:
    cfg, work = aligned
    rows = patches(work)
    rejected = [r for r in rows if r[1] == "rejected"]
    for r in rejected:
        assert r[2].startswith("nan_fraction: ") and r[4] > 0.01
    again = pipeline.run_align(cfg, work, progress=False)
    assert again.planned == 0 and patches(work) == rows


def test_damaged_raw_file_fails_the_location_and_redownloads(tmp_path: Path) -> None:
    cities = tmp_path / "cities.csv"
    write_cities(cities, [(1, "Munich", "DE", 48.137, 11.575, 1)])
    cfg = load_config(
        write_toml(
            tmp_path / "a.toml",
            f'[sample]\nn = 3\nseed = 9\ncities = "{cities}"\n[synthetic]\npartial_prob = 0.0\n',
        )
    )
    work = tmp_path / "w"
    pipeline.run_sample(cfg, work)
    pipeline.run_download(cfg, work, progress=False)
    db = sqlite3.connect(work / "manifest.sqlite")
    sample_id, path = db.execute(
        "SELECT sample_id, path FROM scenes WHERE product='S2L2A' ORDER BY 1 LIMIT 1"
    ).fetchone()
    data = (work / path).read_bytes()
    (work / path).write_bytes(data[: len(data) // 3])  # truncated
    summary = pipeline.run_align(cfg, work, progress=False, workers=1)
    assert summary.failed == 1 and summary.ok == 2
    status, reason = db.execute(
        "SELECT status, reason FROM downloads WHERE sample_id=?", (sample_id,)
    ).fetchone()
    assert status == "failed" and str(path) in reason
    redo = pipeline.run_download(cfg, work, progress=False)
    assert redo.planned == 1 and redo.ok == 1
    assert pipeline.run_align(cfg, work, progress=False, workers=1).ok == 1


def test_patches_sit_on_the_10_m_lattice_centred_on_the_location(
    aligned: tuple[Config, Path],
) -> None:
    from ssl4eo_build.grid import transformer
    from ssl4eo_build.manifest import Manifest

    _, work = aligned
    with Manifest.open(work) as m:
        where = {r.sample_id: r.position for r in m.locations()}
    rows = [r for r in patches(work) if r[1] == "ok"]
    assert rows
    snapped_finer_than_60 = 0
    for sample_id, _, _, crs, _, path in rows:
        cube = load_cube(work / path)
        left, top = cube.x[0] - 5.0, cube.y[0] + 5.0
        assert left % 10 == 0 and top % 10 == 0, "edges on the native 10 m lattice"
        snapped_finer_than_60 += bool(left % 60 or top % 60)
        x, y = transformer(4326, crs).transform(where[sample_id].lon, where[sample_id].lat)
        centre_x, centre_y = left + 1320.0, top - 1320.0
        assert abs(centre_x - x) <= 5.0 and abs(centre_y - y) <= 5.0, "centred within 5 m"
    assert snapped_finer_than_60, "not the 60 m lattice"
