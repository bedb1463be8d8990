"""Raw GeoTIFF encodings: size, write time, full read and the 264 px crop-window read.

One 13-band 384 x 384 L1C cube from the simulator, written with each encoding: int16 (how S-2
is stored: whole digital numbers, -32768 for missing) and float32 (how it was stored before).

    .venv/bin/python -m bench.bench_raw_io
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from ssl4eo_build.align.core import missing_value
from ssl4eo_build.geo import LonLat
from ssl4eo_build.grid import centred_grid
from ssl4eo_build.modalities import PRODUCTS
from ssl4eo_build.raster_io import as_dtype
from ssl4eo_build.sources.base import TimeWindow
from ssl4eo_build.sources.synthetic import SyntheticSource

OUT = Path("bench-work/raw-io")
ZSTD = dict(compress="zstd", zstd_level=1)
ENCODINGS = {
    "int16, zstd-1, no predictor, strips of 8 (default)": ("int16", dict(ZSTD, blockysize=8)),
    "int16, zstd-1, horizontal predictor, strips of 8": (
        "int16", dict(ZSTD, predictor=2, blockysize=8)
    ),
    "int16, zstd-1, no predictor, 128 px tiles": (
        "int16", dict(ZSTD, tiled=True, blockxsize=128, blockysize=128)
    ),
    "int16, uncompressed, strips of 8": ("int16", dict(blockysize=8)),
    "float32, zstd-1, no predictor, strips of 8 (before)": ("float32", dict(ZSTD, blockysize=8)),
    "float32, uncompressed, strips of 8": ("float32", dict(blockysize=8)),
}  # fmt: skip


def main(repeats: int = 10) -> dict[str, dict[str, float]]:
    src = SyntheticSource()
    where = LonLat(11.575, 48.137)
    window = [TimeWindow(datetime(2021, 3, 5), datetime(2021, 4, 4))]
    scene = src.search(where, "S2L1C", window)[0]
    grid = centred_grid(scene.epsg, where, 384, 10.0, 60.0)
    data = src.pixels(scene, grid, PRODUCTS["S2L1C"].bands)
    OUT.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict[str, float]] = {}
    for i, (name, (dtype, options)) in enumerate(ENCODINGS.items()):
        path = OUT / f"encoding-{i}.tif"
        profile = dict(
            driver="GTiff", dtype=dtype, count=13, width=384, height=384,
            crs=f"EPSG:{grid.epsg}", transform=grid.transform,
            nodata=missing_value(np.dtype(dtype)), tiled=False,
        )  # fmt: skip
        profile.update(options)
        stored = as_dtype(data, dtype)
        t0 = time.perf_counter()
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(stored)
        write = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(repeats):
            with rasterio.open(path) as f:
                f.read()
        full = (time.perf_counter() - t0) / repeats
        t0 = time.perf_counter()
        for _ in range(repeats):
            with rasterio.open(path) as f:
                f.read(window=Window(60, 60, 264, 264))
        crop = (time.perf_counter() - t0) / repeats
        print(
            f"raw {name}: {path.stat().st_size / 1e6:.2f} MB, write {write * 1000:.0f} ms, "
            f"read {full * 1000:.1f} ms, crop window {crop * 1000:.1f} ms"
        )
        figures[name] = {
            "mb": path.stat().st_size / 1e6,
            "write_ms": write * 1000,
            "read_ms": full * 1000,
            "crop_ms": crop * 1000,
        }
    assert np.isfinite(data).any()
    return figures


if __name__ == "__main__":
    figures = main()
    if "--json" in sys.argv[1:]:
        print(json.dumps(figures))
