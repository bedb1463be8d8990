"""GeoTIFF read/write at the edges of the pipeline: atomic writes, clear errors on bad files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .errors import Ssl4eoError
from .files import atomic_target, commit_file, file_checksum
from .grid import PixelGrid
from .modalities import INT16_MISSING


class RawFileError(Ssl4eoError):
    """An intermediate file is missing, truncated or unreadable."""


RAW_DTYPES = ("float32", "int16")


def missing_value(dtype: np.dtype[Any]) -> float:
    """What marks a missing pixel: NaN in float arrays, ``INT16_MISSING`` in int16 ones."""
    if dtype.kind == "f":
        return float("nan")
    if dtype == np.int16:
        return INT16_MISSING
    raise ValueError(f"no missing-pixel value for {dtype}: expected float or int16")


def is_missing(data: NDArray[Any]) -> NDArray[np.bool_]:
    return np.isnan(data) if data.dtype.kind == "f" else data == missing_value(data.dtype)


def as_dtype(data: NDArray[Any], dtype: str) -> NDArray[Any]:
    """``data`` as ``float32`` (NaN for missing) or ``int16`` (rounded, clipped to
    -32767..32767, :data:`INT16_MISSING` for missing), whichever way it is stored."""
    if data.dtype == np.dtype(dtype):
        return data
    missing = is_missing(data)
    if dtype == "float32":
        out = data.astype(np.float32)
        out[missing] = np.nan
        return out
    rounded = np.rint(data)
    rounded[missing] = INT16_MISSING
    np.clip(rounded, INT16_MISSING + 1, np.iinfo(np.int16).max, out=rounded)
    out = rounded.astype(np.int16)
    out[missing] = INT16_MISSING
    return out


def _part_needed(grid: PixelGrid, within: PixelGrid) -> PixelGrid | None:
    return within if grid.contains_grid(within) else grid.covering(within)


@dataclass(frozen=True)
class Raster:
    data: NDArray[Any]  # (bands, height, width), float32 or int16 (see read_geotiff)
    grid: PixelGrid
    bands: tuple[str, ...]
    tags: dict[str, str]


def write_geotiff(
    path: Path,
    data: NDArray[np.float32],
    grid: PixelGrid,
    bands: Sequence[str],
    tags: Mapping[str, str],
    compress: str = "deflate",
    dtype: str = "float32",
    scratch: Path | None = None,
    level: int = 1,
) -> str:
    """GeoTIFF with band descriptions and tags, written atomically (the temporary file in
    ``scratch`` when given); returns the file's checksum (:func:`~ssl4eo_build.files.checksum`).

    ``data`` is float with NaN for missing pixels. Compressed files (``compress`` at
    ``level``) use the horizontal predictor. As ``float32`` it is stored as is (nodata
    NaN); as ``int16`` it is rounded and clipped to -32767..32767, and NaN is stored as
    :data:`INT16_MISSING` (nodata). :func:`read_geotiff` gives either back as either.
    """
    if data.shape != (len(bands), grid.height, grid.width):
        raise ValueError(f"array {data.shape} does not match {len(bands)} bands on {grid.shape_yx}")
    if dtype not in RAW_DTYPES:
        raise ValueError(f"raw dtype {dtype!r}: expected one of {', '.join(RAW_DTYPES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_target(path, scratch)
    profile = {
        "driver": "GTiff",
        "dtype": dtype,
        "count": len(bands),
        "width": grid.width,
        "height": grid.height,
        "crs": CRS.from_epsg(grid.epsg),
        "transform": grid.transform,
        "nodata": missing_value(np.dtype(dtype)),
        # Strips of 8 rows: align reads a 264-row window and decodes only the strips it needs,
        # about twice as fast as 128 px tiles at the same size (BENCHMARKS.md).
        "tiled": False,
        "blockysize": 8,
    }
    if compress != "none":
        # Raw files are kept for the life of the build (pack aligns from them again after it
        # dropped the cubes): the horizontal predictor at zstd level 3 makes them 27 % smaller
        # than level 1 without it, for about 15 % more read time (BENCHMARKS.md). The
        # floating-point predictor (3) was larger and slower on S-1 than the horizontal one.
        profile.update(compress=compress, predictor=2, zlevel=min(level, 9), zstd_level=level)
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(as_dtype(data, dtype))
            for i, name in enumerate(bands, start=1):
                dst.set_band_description(i, name)
            dst.update_tags(**dict(tags))
        return commit_file(tmp, path, file_checksum(tmp))
    finally:
        tmp.unlink(missing_ok=True)


def read_geotiff(path: Path, within: PixelGrid | None = None, dtype: str = "float32") -> Raster:
    """Read a file written by :func:`write_geotiff`; any damage raises :class:`RawFileError`.

    The data come as ``dtype`` (see :func:`as_dtype`), whatever the stored type. With
    ``within``, only the part of the file needed to fill that grid is read, and its grid becomes
    the raster's: exactly ``within`` when it lies on the file's pixel lattice, else the pixels
    under its footprint with a 2-pixel margin (the whole file if they do not overlap).
    """
    try:
        with rasterio.open(path) as src:
            t = src.transform
            if src.crs is None or src.crs.to_epsg() is None:
                raise RawFileError(f"{path}: no EPSG CRS")
            grid = PixelGrid(int(src.crs.to_epsg()), t.c, t.f, t.a, -t.e, src.width, src.height)
            part = None if within is None else _part_needed(grid, within)
            if part is not None:
                col, row = part.offset_in(grid)
                stored = src.read(window=Window(col, row, part.width, part.height))
                grid = part
            else:
                stored = src.read()
            data = as_dtype(stored, dtype)
            bands = tuple(d or f"band{i}" for i, d in enumerate(src.descriptions, start=1))
            tags = dict(src.tags())
    except (RasterioError, OSError) as exc:
        raise RawFileError(f"{path}: unreadable raster ({exc})") from None
    return Raster(data, grid, bands, tags)
