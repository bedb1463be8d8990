"""Raw GeoTIFF encodings: size, write time, full read and the 264 px crop-window read.

One 13-band 384 x 384 float32 L1C cube from the simulator, written with each encoding.

    .venv/bin/python -m bench.bench_raw_io
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from ssl4eo_build.geo import LonLat
from ssl4eo_build.grid import centred_grid
from ssl4eo_build.products import PRODUCTS
from ssl4eo_build.sources.base import TimeWindow
from ssl4eo_build.sources.synthetic import SyntheticSource

OUT = Path("bench-work/raw-io")
ENCODINGS = {
    "zstd-1, no predictor, strips of 8 (default)": dict(
        compress="zstd", zstd_level=1, blockysize=8
    ),
    "zstd-1, predictor 3, strips of 8": dict(
        compress="zstd", zstd_level=1, predictor=3, blockysize=8
    ),
    "zstd-1, no predictor, 128 px tiles": dict(
        compress="zstd", zstd_level=1, tiled=True, blockxsize=128, blockysize=128
    ),
    "deflate-1, predictor 3, strips of 8": dict(
        compress="deflate", zlevel=1, predictor=3, blockysize=8
    ),
    "uncompressed, strips of 8": dict(blockysize=8),
}


def main(repeats: int = 10) -> None:
    src = SyntheticSource()
    where = LonLat(11.575, 48.137)
    window = [TimeWindow(datetime(2021, 3, 5), datetime(2021, 4, 4))]
    scene = src.search(where, "S2L1C", window)[0]
    grid = centred_grid(scene.epsg, where, 384, 10.0, 60.0)
    data = src.fetch(scene, grid, PRODUCTS["S2L1C"].bands)
    OUT.mkdir(parents=True, exist_ok=True)
    for i, (name, options) in enumerate(ENCODINGS.items()):
        path = OUT / f"encoding-{i}.tif"
        profile = dict(
            driver="GTiff", dtype="float32", count=13, width=384, height=384,
            crs=f"EPSG:{grid.epsg}", transform=grid.transform, nodata=float("nan"), tiled=False,
        )  # fmt: skip
        profile.update(options)
        t0 = time.perf_counter()
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
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
    assert np.isfinite(data).any()


if __name__ == "__main__":
    main()
