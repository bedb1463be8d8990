"""The offline archive simulator: determinism, tiling, truth as a function of the world."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from ssl4eo_build.config import SyntheticConfig
from ssl4eo_build.errors import FinalSourceError, RetryableSourceError
from ssl4eo_build.geo import LonLat
from ssl4eo_build.grid import centred_grid, lonlat_of_pixels
from ssl4eo_build.modalities import PRODUCTS
from ssl4eo_build.sources.base import SceneQuery, TimeWindow
from ssl4eo_build.sources.requests import Layer, PixelRequest
from ssl4eo_build.sources.synthetic import SyntheticSource, mgrs_tile, truth

MUNICH = LonLat(11.575, 48.137)
NEAR_BORDER = LonLat(11.97, 48.1)  # ~2 km west of the zone 32/33 border at 12 E
SPRING = [TimeWindow(datetime(2021, 3, 5), datetime(2021, 4, 4))]


def test_search_is_deterministic_and_realistic() -> None:
    a = SyntheticSource().search(MUNICH, "S2L2A", SPRING)
    b = SyntheticSource().search(MUNICH, "S2L2A", SPRING)
    assert a == b and 5 <= len(a) <= 7, "revisit ~5 days"
    assert all(s.epsg == 32632 and s.tile_id == "T32UPU" for s in a)
    assert all(s.scene_id.endswith("_T32UPU") and len(s.scene_id) == 38 for s in a)
    assert all(9 <= s.acquired.hour <= 11 for s in a), "~10:30 local solar time"
    l1c = SyntheticSource().search(MUNICH, "S2L1C", SPRING)
    assert [s.scene_id for s in l1c] == [s.scene_id for s in a], "L1C and L2A share granules"
    other = SyntheticSource(SyntheticConfig(seed=1)).search(MUNICH, "S2L2A", SPRING)
    assert [s.cloud_pct for s in other] != [s.cloud_pct for s in a]


def test_s1_scenes() -> None:
    scenes = SyntheticSource().search(MUNICH, "S1GRD", SPRING)
    assert 2 <= len(scenes) <= 6, "every 6-12 days"
    assert all(
        s.epsg == 4326 and s.scene_id.startswith(("S1A_IW_GRDH_1SDV_", "S1B_IW")) for s in scenes
    )
    assert all(len(s.scene_id) == 67 for s in scenes)


def test_zone_border_has_granules_of_both_zones() -> None:
    scenes = SyntheticSource().search(NEAR_BORDER, "S2L2A", SPRING)
    assert {s.epsg for s in scenes} == {32632, 32633}
    assert {s.tile_id[:3] for s in scenes} == {"T32", "T33"}  # type: ignore[index]


def test_mgrs_tiles_match_known_ones() -> None:
    assert mgrs_tile(11.575, 48.137, 32632) == "T32UPU"  # Munich
    assert mgrs_tile(15.655, 38.07, 32633) == "T33SWC"  # the v1.1 README example


def test_fetch_matches_truth_in_any_crs() -> None:
    """The same ground looks the same from two UTM zones and from EPSG:4326."""
    src = SyntheticSource(SyntheticConfig(partial_prob=0.0))
    s1 = src.search(NEAR_BORDER, "S1GRD", SPRING)[0]
    for epsg in (32632, 32633, 4326):
        grid = centred_grid(epsg, NEAR_BORDER, 96, 10.0, 60.0)
        scene = (
            s1
            if epsg == 4326
            else min(
                (s for s in src.search(NEAR_BORDER, "S2L2A", SPRING) if s.epsg == epsg),
                key=lambda s: s.cloud_pct or 0.0,
            )
        )
        lon, lat = lonlat_of_pixels(grid)
        t = truth(lon, lat, 0)
        land = t.water >= -0.35
        if epsg == 4326:
            values = src.pixels(scene, grid, ("VV",))[0]
        else:
            values, scl = src.pixels(scene, grid, ("B08", "SCL"))
            land &= (scl == 4) | (scl == 5)  # clear land only
        expected = t.brightness + (0.75 if epsg == 4326 else 0.875) * t.vegetation
        r = np.corrcoef(values[land], expected[land])[0, 1]
        assert r > 0.9, (epsg, r)


def test_values_have_realistic_ranges() -> None:
    src = SyntheticSource(SyntheticConfig(partial_prob=0.0))
    rng = np.random.default_rng(0)
    vv, vh = [], []
    for lon, lat in zip(rng.uniform(-120, 140, 12), rng.uniform(-40, 60, 12), strict=True):
        where = LonLat(float(lon), float(lat))
        s1 = src.search(where, "S1GRD", SPRING)[0]
        cube = src.pixels(s1, centred_grid(4326, where, 96, 10.0, 60.0), ("VV", "VH"))
        vv.append(cube[0])
        vh.append(cube[1])
    assert -12.6 - 3 < np.mean(vv) < -12.6 + 3 and 3 < np.std(vv) < 8
    assert -20.3 - 3 < np.mean(vh) < -20.3 + 3 and 3 < np.std(vh) < 9
    clear = min(src.search(MUNICH, "S2L2A", SPRING), key=lambda s: s.cloud_pct or 0)
    grid = centred_grid(clear.epsg, MUNICH, 384, 10.0, 60.0)
    cube = src.pixels(clear, grid, PRODUCTS["S2L2A"].bands)
    assert np.all((cube[:-1] >= 0) & (cube[:-1] <= 10_000))
    assert set(np.unique(cube[-1]).tolist()) <= {3.0, 4.0, 5.0, 6.0, 8.0, 9.0, 10.0, 11.0}


def test_coarse_bands_are_nested_blocks() -> None:
    src = SyntheticSource(SyntheticConfig(partial_prob=0.0))
    scene = src.search(MUNICH, "S2L1C", SPRING)[0]
    grid = centred_grid(scene.epsg, MUNICH, 384, 10.0, 60.0)
    b01, b05 = src.pixels(scene, grid, ("B01", "B05"))
    assert np.all(b01.reshape(64, 6, 64, 6) == b01.reshape(64, 6, 64, 6)[:, :1, :, :1])
    assert np.all(b05.reshape(192, 2, 192, 2) == b05.reshape(192, 2, 192, 2)[:, :1, :, :1])


def test_partial_coverage_is_nan_never_zero() -> None:
    src = SyntheticSource(SyntheticConfig(partial_prob=1.0))
    scene = src.search(MUNICH, "S2L2A", SPRING)[0]
    cube = src.pixels(scene, centred_grid(scene.epsg, MUNICH, 384, 10.0, 60.0), ("B02", "B03"))
    assert np.isnan(cube).any()
    assert np.isnan(cube[0]).sum() == np.isnan(cube[1]).sum()


def test_errors() -> None:
    flaky = SyntheticSource(SyntheticConfig(error_rate=0.95))
    with pytest.raises(RetryableSourceError):
        for _ in range(50):
            flaky.plan(SceneQuery(MUNICH, tuple(SPRING), tuple(SPRING), 10.0, 15.0))
    src = SyntheticSource()
    scene = src.search(MUNICH, "S2L2A", SPRING)[0]
    layer = Layer(PRODUCTS["S2L2A"], 0, scene, ("B02",))
    request = PixelRequest(centred_grid(32633, MUNICH, 12, 10.0, 60.0), (layer,))
    with pytest.raises(FinalSourceError, match="native is EPSG:32632"):
        src.fetch(request)
