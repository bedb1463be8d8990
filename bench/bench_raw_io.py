"""Raw GeoTIFF encodings: size, write time, full read and the 264 px crop-window read.

Per encoding, two 384 x 384 files from the simulator: S-2 (the 13 L1C bands and the 13 L2A
bands of one season, int16: whole digital numbers, -32768 for missing) and S-1 (VV and VH,
float32 dB). Sizes and times are of the two files together; the default is what
``download.compress`` and ``download.compress_level`` write (:func:`write_geotiff`).

    .venv/bin/python -m bench.bench_raw_io [--json]
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from ssl4eo_build.geo import LonLat
from ssl4eo_build.grid import centred_grid
from ssl4eo_build.modalities import PRODUCTS
from ssl4eo_build.raster_io import as_dtype, missing_value
from ssl4eo_build.sources.base import TimeWindow
from ssl4eo_build.sources.synthetic import SyntheticSource

OUT = Path("bench-work/raw-io")
# name -> GeoTIFF options (strips of 8 rows, as write_geotiff writes them)
ENCODINGS: dict[str, dict[str, Any]] = {
    "zstd-3, horizontal predictor (default)": dict(compress="zstd", zstd_level=3, predictor=2),
    "zstd-1, horizontal predictor": dict(compress="zstd", zstd_level=1, predictor=2),
    "zstd-1, no predictor (before)": dict(compress="zstd", zstd_level=1),
    "zstd-9, horizontal predictor": dict(compress="zstd", zstd_level=9, predictor=2),
    "zstd-3, floating-point predictor on S-1": dict(compress="zstd", zstd_level=3, predictor=3),
    "deflate-6, horizontal predictor": dict(compress="deflate", zlevel=6, predictor=2),
    "uncompressed": {},
}


def _cubes() -> list[tuple[np.ndarray, Any]]:
    """(stored array, grid) of the S-2 and the S-1 file of one season at Munich."""
    src = SyntheticSource()
    where = LonLat(11.575, 48.137)
    window = [TimeWindow(datetime(2021, 3, 5), datetime(2021, 4, 4))]
    out = []
    s2 = []
    for product in ("S2L1C", "S2L2A"):
        scene = src.search(where, product, window)[0]
        grid = centred_grid(scene.epsg, where, 384, 10.0, 60.0)
        s2.append(src.pixels(scene, grid, PRODUCTS[product].bands))
    out.append((as_dtype(np.concatenate(s2), "int16"), grid))
    s1 = src.search(where, "S1GRD", window)[0]
    out.append((as_dtype(src.pixels(s1, grid, ("VV", "VH")), "float32"), grid))
    return out


def main(repeats: int = 5) -> dict[str, dict[str, float]]:
    cubes = _cubes()
    OUT.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict[str, float]] = {}
    for i, (name, options) in enumerate(ENCODINGS.items()):
        size = write = full = crop = 0.0
        for j, (data, grid) in enumerate(cubes):
            path = OUT / f"encoding-{i}-{j}.tif"
            opts = dict(options)
            if opts.get("predictor") == 3 and data.dtype.kind != "f":
                opts["predictor"] = 2
            profile = dict(
                driver="GTiff", dtype=data.dtype.name, count=len(data), width=384, height=384,
                crs=f"EPSG:{grid.epsg}", transform=grid.transform,
                nodata=missing_value(data.dtype), tiled=False, blockysize=8, **opts,
            )  # fmt: skip
            t0 = time.perf_counter()
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data)
            write += time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(repeats):
                with rasterio.open(path) as f:
                    back = f.read()
            full += (time.perf_counter() - t0) / repeats
            assert np.array_equal(back, data, equal_nan=True), name
            t0 = time.perf_counter()
            for _ in range(repeats):
                with rasterio.open(path) as f:
                    f.read(window=Window(60, 60, 264, 264))
            crop += (time.perf_counter() - t0) / repeats
            size += path.stat().st_size
        print(
            f"raw {name}: {size / 1e6:.2f} MB, write {write * 1000:.0f} ms, "
            f"read {full * 1000:.1f} ms, crop window {crop * 1000:.1f} ms"
        )
        figures[name] = {
            "mb": size / 1e6,
            "write_ms": write * 1000,
            "read_ms": full * 1000,
            "crop_ms": crop * 1000,
        }
    return figures


if __name__ == "__main__":
    figures = main()
    if "--json" in sys.argv[1:]:
        print(json.dumps(figures))
