"""Pure align functions on small synthetic arrays and grids."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssl4eo_build.align.core import (
    fill_nearest,
    is_missing,
    missing_value,
    onto_grid,
    reference_grid,
    worst_nan,
)
from ssl4eo_build.derive import NO_DATA, cloud_mask, s2_rgb
from ssl4eo_build.geo import LonLat, majority_crs, utm_epsg
from ssl4eo_build.grid import PixelGrid, centre_pixel, centred_grid


def test_majority_and_tie_rules() -> None:
    centre = LonLat(11.99, 48.1)  # in zone 32
    assert majority_crs([32633, 32633, 32632, 32633], centre) == 32633
    assert majority_crs([32632, 32633, 32632, 32633], centre) == 32632, "tie: centre's zone"
    assert majority_crs([32633, 32633, 32632, 32632], LonLat(12.01, 48.1)) == 32633


@settings(max_examples=200, deadline=None)
@given(lon=st.floats(-179.9, 179.9), lat=st.floats(-79.0, 83.0))
def test_reference_crop_is_on_the_lattice_and_centred(lon: float, lat: float) -> None:
    centre = LonLat(lon, lat)
    grid = reference_grid(utm_epsg(lon, lat), centre, 264, 10.0, 60.0)
    assert (grid.width, grid.height) == (264, 264)
    assert grid.left % 60 == 0 and grid.top % 60 == 0
    col, row = centre_pixel(grid, centre)
    assert abs(col - 132) <= 3 and abs(row - 132) <= 3, "centre within the 30 m snap"
    raw = centred_grid(grid.epsg, centre, 384, 10.0, 60.0)
    assert raw.contains_grid(grid), "the crop lies inside the buffered download"


def test_same_lattice_is_sliced_without_resampling() -> None:
    src = PixelGrid(32632, 600_000.0, 5_000_020.0, 10.0, 10.0, 12, 10)
    data = np.arange(2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12)
    dst = src.crop(3, 2, 6, 5)
    assert np.array_equal(onto_grid(data, src, dst), data[:, 2:7, 3:9])


def test_reprojection_puts_values_where_they_belong() -> None:
    # A ramp in x on a UTM 33 grid, read onto a UTM 32 grid: each value matches its easting.
    src = centred_grid(32633, LonLat(12.01, 48.1), 120, 10.0, 60.0)
    xs = src.x_centres()
    data = np.broadcast_to(xs, (1, src.height, src.width)).astype(np.float32).copy()
    dst = centred_grid(32632, LonLat(12.01, 48.1), 40, 10.0, 60.0)
    out = onto_grid(data, src, dst)
    from ssl4eo_build.grid import transformer

    gx, gy = np.meshgrid(dst.x_centres(), dst.y_centres())
    ex, _ = transformer(32632, 32633).transform(gx, gy)
    assert np.nanmax(np.abs(out[0] - ex)) <= 10.0 * 0.75, "nearest: within a pixel"
    outside = centred_grid(32632, LonLat(13.5, 48.1), 20, 10.0, 60.0)
    assert np.isnan(onto_grid(data, src, outside)).all(), "no source: NaN"


@pytest.mark.parametrize("dtype", ["float32", "int16"])
@pytest.mark.parametrize(("missing", "rejected"), [(0, False), (100, False), (101, True)])
def test_nan_threshold_edges(missing: int, rejected: bool, dtype: str) -> None:
    cube = np.ones((4, 2, 100, 100), dtype=dtype)
    cube[2, 1].flat[:missing] = missing_value(cube.dtype)
    masks = {"S2L2A": is_missing(cube), "S1GRD": np.zeros((4, 2, 100, 100), bool)}
    worst, where = worst_nan(masks)
    assert (worst > 0.01) == rejected
    assert worst == missing / 10_000
    if missing:
        assert where == ("S2L2A", 2, 1)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(3, 9),
    st.integers(3, 9),
    st.integers(0, 2**32 - 1),
    st.floats(0.05, 0.9),
    st.sampled_from(["float32", "int16"]),
)
def test_fill_equals_brute_force_nearest(
    h: int, w: int, seed: int, p_missing: float, dtype: str
) -> None:
    """Float images mark missing pixels with NaN, int16 ones (S-2) with -32768."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 1000, size=(h, w)).astype(dtype)
    image[rng.random((h, w)) < p_missing] = missing_value(image.dtype)
    gone = np.isnan(image) if dtype == "float32" else image == -32768
    valid = np.argwhere(~gone)
    if len(valid) == 0:
        with pytest.raises(ValueError):
            fill_nearest(image)
        return
    filled = fill_nearest(image.copy())
    assert filled.dtype == image.dtype and not is_missing(filled).any()
    for r, c in np.argwhere(gone):
        d = np.hypot(valid[:, 0] - r, valid[:, 1] - c)
        nearest = valid[np.isclose(d, d.min())]
        assert filled[r, c] in {image[a, b] for a, b in nearest}
    assert np.array_equal(filled[~gone], image[~gone])


def test_rgb_mapping_properties() -> None:
    rng = np.random.default_rng(1)
    bright = rng.uniform(1500, 6000, size=(3, 64, 64))
    out = s2_rgb(bright)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    dim = rng.uniform(500, 900, size=(3, 64, 64))  # median < 1000: lower limit 0
    out = s2_rgb(dim)
    # lower limit 0 and upper clamped to 2000: 500..900 map to about 64..115, not 0..255
    assert 60 <= out.min() <= 66 and 110 <= out.max() <= 116
    mid = rng.uniform(1100, 1500, size=(3, 64, 64))  # median >= 1000: lower from the 0.2 %
    out = s2_rgb(mid)
    assert out.min() == 0 and out.max() <= 255 * 1500 / 2000
    flat = np.full((3, 8, 8), 3000.0)
    assert s2_rgb(flat).min() >= 0


def _rgb_by_the_report(rgb: np.ndarray) -> np.ndarray:
    """The v1.1 report's recipe written out with np.quantile, step by step."""
    v = rgb.astype(np.float64)
    lo, median, hi = np.quantile(v, [0.02, 0.5, 0.98])
    squeezed = np.where(v > hi, hi + 0.5 * (v - hi), v)
    squeezed = np.where(v < lo, lo - 0.5 * (lo - v), squeezed)
    lower, upper = np.quantile(squeezed, [0.002, 0.998])
    upper = max(upper, 2000.0)
    lower = 0.0 if median < 1000.0 else lower
    scaled = np.rint((squeezed - lower) * 255.0 / max(upper - lower, 1e-9))
    return np.clip(scaled, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_rgb_equals_the_report_recipe(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scale = [300.0, 1200.0, 4000.0][seed % 3]
    img = rng.gamma(2.0, scale, size=(3, 37, 53)).round()
    img[:, :3] = rng.uniform(8000, 20000, size=(3, 3, 53)).round()  # bright outliers
    np.testing.assert_array_equal(s2_rgb(img), _rgb_by_the_report(img))
    # Whole numbers, as align has them: histogram and table, the same bytes.
    for whole in (np.minimum(img, 32767.0), np.minimum(img, 32767.0) - 500.0):  # and negatives
        np.testing.assert_array_equal(s2_rgb(whole.astype(np.int16)), _rgb_by_the_report(whole))


def test_rgb_compresses_extremes_by_half() -> None:
    values = np.concatenate([np.linspace(1000, 2000, 980), np.full(20, 10_000.0)])
    img = values.reshape(1, 10, 100).repeat(3, axis=0)
    out = s2_rgb(img).astype(float)
    # The outliers are pulled towards the 98 % bound, so they do not flatten the rest.
    assert out[0, 0, 50] < out[0, 9, 50] and out[0, 9, 99] == 255


def test_cloud_mask_classes() -> None:
    scl = np.array([[0, 3, 4, 5], [6, 8, 9, 10], [11, 2, 7, 1]], dtype=np.float32)
    missing = np.zeros_like(scl, dtype=bool)
    missing[2, 3] = True
    expected = np.array([[6, 5, 0, 0], [1, 4, 4, 3], [2, 0, 0, NO_DATA]], dtype=np.uint8)
    assert np.array_equal(cloud_mask(scl, missing), expected)


@pytest.mark.parametrize(
    ("src", "dst"),
    [  # UTM 33 onto UTM 32 (two-zone S-2), and lon/lat onto UTM (S-1)
        (
            centred_grid(32633, LonLat(12.01, 48.1), 96, 10.0, 60.0),
            centred_grid(32632, LonLat(12.01, 48.1), 66, 10.0, 60.0),
        ),
        (
            PixelGrid(4326, 11.99, 48.11, 1.2e-4, 0.9e-4, 300, 260),
            centred_grid(32632, LonLat(12.0, 48.1), 80, 10.0, 60.0),
        ),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_nearest_takes_gdals_pixels(src: PixelGrid, dst: PixelGrid, dtype: str) -> None:
    """The gathered nearest-neighbour result equals GDAL's own nearest warp, missing pixels
    included, also where the target reaches beyond the source."""
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    rng = np.random.default_rng(5)
    data = rng.normal(1000, 300, (3, src.height, src.width)).astype(dtype)
    nodata = missing_value(data.dtype)
    data[:, 40:60, 30:50] = nodata
    data[1, ::7, ::5] = nodata
    wider = centred_grid(32632, LonLat(12.0, 48.1), 200, 10.0, 60.0)
    for target in (dst, wider):
        expected = np.full((3, target.height, target.width), nodata, dtype=dtype)
        reproject(
            data, expected, src_transform=src.transform, src_crs=CRS.from_epsg(src.epsg),
            src_nodata=nodata, dst_transform=target.transform,
            dst_crs=CRS.from_epsg(target.epsg), dst_nodata=nodata,
            resampling=Resampling.nearest,
        )  # fmt: skip
        out = onto_grid(data, src, target)
        assert out.dtype == data.dtype
        assert is_missing(out).any() and not is_missing(out).all()
        np.testing.assert_array_equal(out, expected)
    assert is_missing(out[:, 0, 0]).all(), "beyond the source: missing"


def test_bilinear_keeps_int16_missing_pixels() -> None:
    src = centred_grid(32633, LonLat(12.01, 48.1), 96, 10.0, 60.0)
    dst = centred_grid(32632, LonLat(12.01, 48.1), 66, 10.0, 60.0)
    data = np.full((1, 96, 96), 1234, dtype=np.int16)
    data[0, :, :20] = -32768
    out = onto_grid(data, src, dst, "bilinear")
    values = set(np.unique(out).tolist())
    assert values == {-32768, 1234}, "no blend of a value with the missing marker"


@settings(max_examples=100, deadline=None)
@given(lon=st.floats(-179.0, 179.0), lat=st.floats(-75.0, 75.0))
def test_covering_holds_the_target_footprint(lon: float, lat: float) -> None:
    from ssl4eo_build.grid import transformer

    centre = LonLat(lon, lat)
    s1 = centred_grid(4326, centre, 384, 10.0, 60.0)
    reference = reference_grid(utm_epsg(lon, lat), centre, 264, 10.0, 60.0)
    part = s1.covering(reference)
    assert part is not None and s1.contains_grid(part)
    xs, ys = np.meshgrid(reference.x_centres(), reference.y_centres())
    plon, plat = transformer(reference.epsg, 4326).transform(xs, ys)
    cols = (np.asarray(plon) - part.left) / part.res_x
    rows = (part.top - np.asarray(plat)) / part.res_y
    inside = (cols >= 1) & (cols <= part.width - 1) & (rows >= 1) & (rows <= part.height - 1)
    assert inside.all(), "every target pixel centre lies in the part, a pixel from its edge"
    assert part.width * part.height < 0.7 * s1.width * s1.height
    away = centred_grid(4326, LonLat(lon + 0.5, lat), 100, 10.0, 60.0)
    assert away.covering(reference) is None
