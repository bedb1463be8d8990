"""Raw GeoTIFFs: the stored types, nodata and the NaN round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from ssl4eo_build.grid import PixelGrid
from ssl4eo_build.modalities import INT16_MISSING
from ssl4eo_build.raster_io import read_geotiff, write_geotiff

GRID = PixelGrid(32632, 600_000.0, 5_300_040.0, 10.0, 10.0, 6, 4)


def sample() -> np.ndarray:
    data = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6) * 1000.5 - 7.0
    data[0, 1, 2] = np.nan
    data[1, 3, :] = np.nan
    return data


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_int16_files_store_nodata_and_read_back_nan(tmp_path: Path, compress: str) -> None:
    data = sample()
    path = tmp_path / "s2.tif"
    write_geotiff(path, data, GRID, ("B01", "B02"), {"k": "v"}, compress, dtype="int16")
    with rasterio.open(path) as f:
        assert f.dtypes == ("int16", "int16") and f.nodata == INT16_MISSING
        stored = f.read()
    assert stored[0, 1, 2] == INT16_MISSING and (stored[1, 3] == INT16_MISSING).all()
    raster = read_geotiff(path)
    assert raster.data.dtype == np.float32 and raster.bands == ("B01", "B02")
    expected = np.clip(np.rint(data), -32767, 32767)  # NaN stays NaN
    np.testing.assert_array_equal(raster.data, expected)
    assert np.nanmax(data) > 32767 and raster.data[1, 2, 5] == 32767, "clipped, not wrapped"
    assert np.nanmin(data) == -7.0 and raster.data[0, 0, 0] == -7.0
    as_stored = read_geotiff(path, dtype="int16").data
    assert as_stored.dtype == np.int16
    np.testing.assert_array_equal(as_stored, stored)


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_compressed_files_use_the_predictor_at_the_level_given(tmp_path: Path, dtype: str) -> None:
    data = np.tile(np.arange(6, dtype=np.float32) * 100, (2, 4, 1))
    sizes = {}
    for level in (1, 9):
        path = tmp_path / f"{level}.tif"
        write_geotiff(path, data, GRID, ("a", "b"), {}, "zstd", dtype=dtype, level=level)
        with rasterio.open(path) as f:
            structure = f.tags(ns="IMAGE_STRUCTURE")
            assert f.compression.name == "zstd" and structure["PREDICTOR"] == "2"
            np.testing.assert_array_equal(f.read(), data.astype(dtype))
        sizes[level] = path.stat().st_size
    assert sizes[9] <= sizes[1]


def test_float32_files_keep_values_and_nan(tmp_path: Path) -> None:
    data = sample() / 1000.0
    path = tmp_path / "s1.tif"
    write_geotiff(path, data, GRID, ("VV", "VH"), {}, "zstd", dtype="float32")
    with rasterio.open(path) as f:
        assert f.dtypes == ("float32", "float32") and np.isnan(f.nodata)
    np.testing.assert_array_equal(read_geotiff(path).data, data)
    as_int = read_geotiff(path, dtype="int16").data  # an S-2 file written as float32
    assert as_int.dtype == np.int16 and as_int[0, 1, 2] == INT16_MISSING
    np.testing.assert_array_equal(as_int[1, 0], np.rint(data[1, 0]))


def test_window_read_of_an_int16_file(tmp_path: Path) -> None:
    data = sample()
    path = tmp_path / "s2.tif"
    write_geotiff(path, data, GRID, ("B01", "B02"), {}, "zstd", dtype="int16")
    inner = PixelGrid(32632, 600_010.0, 5_300_030.0, 10.0, 10.0, 4, 3)
    raster = read_geotiff(path, within=inner)
    assert raster.grid == inner
    np.testing.assert_array_equal(raster.data, np.clip(np.rint(data), -32767, 32767)[:, 1:4, 1:5])


def test_unknown_raw_dtype_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_geotiff(tmp_path / "x.tif", sample(), GRID, ("a", "b"), {}, "none", dtype="uint8")


def test_a_file_in_another_crs_reads_only_the_part_under_the_target(tmp_path: Path) -> None:
    """S-1 in lon/lat under a UTM reference grid: the part read reprojects to exactly what the
    whole file does."""
    from ssl4eo_build.align.core import onto_grid
    from ssl4eo_build.geo import LonLat
    from ssl4eo_build.grid import centred_grid

    centre = LonLat(11.575, 48.137)
    s1_grid = centred_grid(4326, centre, 384, 10.0, 60.0)
    rng = np.random.default_rng(2)
    data = rng.normal(-12, 3, (2, 384, 384)).astype(np.float32)
    data[:, 100:140, 150:200] = np.nan
    path = tmp_path / "s1.tif"
    write_geotiff(path, data, s1_grid, ("VV", "VH"), {}, "zstd", dtype="float32")
    reference = centred_grid(32632, centre, 264, 10.0, 60.0)
    part = read_geotiff(path, within=reference)
    assert s1_grid.contains_grid(part.grid)
    assert part.grid.width * part.grid.height < 0.7 * 384 * 384
    np.testing.assert_array_equal(
        onto_grid(part.data, part.grid, reference), onto_grid(data, s1_grid, reference)
    )
    far = centred_grid(32632, LonLat(13.5, 48.1), 264, 10.0, 60.0)
    assert read_geotiff(path, within=far).grid == s1_grid, "no overlap: the whole file"
