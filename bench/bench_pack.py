"""`pack`: MB/s of raw array data into shards and compression ratio per Blosc codec, and read
speed of the shards with xarray against the v1 per-band GeoTIFF layout for the same data.

Uses the aligned cubes of the align benchmark (bench-work/align-same-CRS-zstd; run
`python -m bench.bench_align` first, or `make bench`, which runs it before this).

    .venv/bin/python -m bench.bench_pack
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import rasterio
from rasterio.transform import from_origin

from ssl4eo_build.align.cube import load_cube
from ssl4eo_build.modalities import names
from ssl4eo_build.pack.core import blosc, open_shard, shard_dataset, write_zarr_zip

SOURCE = Path("bench-work/align-same-CRS-zstd/aligned")
OUT = Path("bench-work/pack")
MODALITIES = names()
CODECS = (("zstd", 5), ("lz4", 5), ("zlib", 5))


def main(n: int = 32) -> None:
    paths = sorted(SOURCE.rglob("*.cube"))[:n]
    if len(paths) < n:
        raise SystemExit(f"need {n} aligned cubes in {SOURCE}; run python -m bench.bench_align")
    cubes = [load_cube(p) for p in paths]
    shutil.rmtree(OUT, ignore_errors=True)
    for cname, clevel in CODECS:
        for modality in MODALITIES:
            ds = shard_dataset(cubes, modality)
            raw = ds["bands"].nbytes + (ds["cloud_mask"].nbytes if "cloud_mask" in ds else 0)
            target = OUT / cname / modality / "shard.zarr.zip"
            t0 = time.perf_counter()
            write_zarr_zip(ds, target, blosc(cname, clevel))
            seconds = time.perf_counter() - t0
            print(
                f"pack {modality} blosc-{cname}-{clevel}: {raw / 1e6 / seconds:.0f} MB/s raw, "
                f"ratio {raw / target.stat().st_size:.2f} ({n} samples)"
            )
    read_shards(n)
    read_v1_geotiffs(cubes)


def read_shards(n: int) -> None:
    t0 = time.perf_counter()
    for modality in MODALITIES:
        ds = open_shard(OUT / "zstd" / modality / "shard.zarr.zip")
        ds["bands"].values  # noqa: B018 - the read is the point
    seconds = time.perf_counter() - t0
    print(
        f"read zarr shards (xarray, all {len(MODALITIES)} modalities): {n / seconds:.1f} samples/s"
    )


def read_v1_geotiffs(cubes: list) -> None:  # type: ignore[type-arg]
    """v1 layout: one GeoTIFF per band per season per product (uint16/float32, uncompressed)."""
    root = OUT / "v1"
    files = []
    for cube in cubes:
        transform = from_origin(float(cube.x[0]) - 5, float(cube.y[0]) + 5, 10, 10)
        for modality in ("S1GRD", "S2L1C", "S2L2A"):
            m = cube.modalities[modality]
            for t in range(4):
                folder = root / modality / cube.sample_id / str(t)
                folder.mkdir(parents=True, exist_ok=True)
                for b, band in enumerate(m.band_names):
                    path = folder / f"{band}.tif"
                    dtype = "float32" if modality == "S1GRD" else "uint16"
                    with rasterio.open(
                        path, "w", driver="GTiff", width=264, height=264, count=1, dtype=dtype,
                        crs=f"EPSG:{cube.epsg}", transform=transform,
                    ) as dst:  # fmt: skip
                        dst.write(m.bands[t, b].astype(dtype), 1)
                    files.append(path)
    t0 = time.perf_counter()
    for path in files:
        with rasterio.open(path) as src:
            src.read(1)
    seconds = time.perf_counter() - t0
    print(
        f"read v1 per-band GeoTIFFs (rasterio, S1+L1C+L2A, {len(files)} files): "
        f"{len(cubes) / seconds:.1f} samples/s"
    )


if __name__ == "__main__":
    main()
