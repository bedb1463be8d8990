"""One location through `align`: read the raw GeoTIFFs, align, write the cube.

Runs in a worker process; returns a small :class:`AlignResult` for the coordinator, which alone
writes the manifest. Every raw file is checked before use: its sha256 against the one recorded
at download, and its values against the product's hard limits. A damaged file yields a
``failed`` result naming it, so that file alone is fetched again by the next `download` run.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from .align import (
    cloud_mask,
    fill_cube,
    is_missing,
    majority_crs,
    onto_grid,
    reference_grid,
    s2_rgb,
    worst_nan,
)
from .config import Config
from .cube import AlignedCube, Modality, save_cube
from .files import file_sha256
from .geo import LonLat
from .grid import PixelGrid, transformer
from .products import FETCH_PRODUCTS, N_SEASONS, PRODUCTS
from .raster_io import Raster, RawFileError, read_geotiff
from .workdir import WorkDir, cube_relpath

RGB_BANDS = ("B04", "B03", "B02")


@dataclass(frozen=True)
class AlignTask:
    sample_id: str
    position: LonLat
    # (product, season) -> (raw GeoTIFF relative to the work dir, EPSG, sha256 or None)
    files: dict[tuple[str, int], tuple[str, int, str | None]]
    # Reference-index mode: the published patch to reproduce (its footprint in its tile CRS).
    patch: PixelGrid | None = None


@dataclass(frozen=True)
class AlignResult:
    sample_id: str
    status: str  # ok | rejected | failed
    reason: str | None = None
    epsg: int | None = None
    nan_fraction_max: float | None = None
    path: str | None = None  # the cube, relative to the work dir
    sha256: str | None = None  # of the cube
    damaged: tuple[tuple[str, int], ...] = ()  # raw files to fetch again: (product, season)
    seconds: dict[str, float] = field(
        default_factory=dict
    )  # read, reproject, fill, rgb_mask, write


class _Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now


class DamagedRawFile(RawFileError):
    def __init__(self, message: str, keys: tuple[tuple[str, int], ...]) -> None:
        super().__init__(message)
        self.keys = keys  # every (product, season) the file holds: fetched again together


def _read_all(task: AlignTask, work: WorkDir, grid: PixelGrid) -> dict[tuple[str, int], Raster]:
    """Every (product, season) raster, each file read once and only where it lies under the
    reference grid (a file holds the layers of one pixel request)."""
    for key in itertools.product(FETCH_PRODUCTS, range(N_SEASONS)):
        if key not in task.files:
            raise DamagedRawFile(
                f"{task.sample_id}: no raw file for {key[0]} season {key[1]}", (key,)
            )
    by_file: dict[str, list[tuple[str, int]]] = {}
    for key, (rel, _, _) in task.files.items():
        by_file.setdefault(rel, []).append(key)
    _prefetch(work.path(rel) for rel in by_file)
    rasters = {}
    # One GDAL environment for all files; raw files have no side-car files to look for.
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        for rel, keys in by_file.items():
            _, epsg, sha256 = task.files[keys[0]]
            try:
                raster = _read_one(work.path(rel), keys[0][0], epsg, sha256, grid)
                for key in keys:
                    rasters[key] = _layer(raster, work.path(rel), key)
            except (RawFileError, RasterioError) as exc:
                raise DamagedRawFile(str(exc), tuple(keys)) from None
    return rasters


def _read_one(path: Path, product: str, epsg: int, sha256: str | None, grid: PixelGrid) -> Raster:
    if sha256 is not None:
        try:
            actual = file_sha256(path)
        except OSError as exc:
            raise RawFileError(f"{path}: unreadable ({exc.strerror})") from None
        if actual != sha256:
            raise RawFileError(f"{path}: sha256 differs from the one recorded at download")
    raster = read_geotiff(path, within=grid, dtype=PRODUCTS[product].raw_dtype)
    if raster.grid.epsg != epsg:
        raise RawFileError(f"{path}: EPSG:{raster.grid.epsg}, manifest says EPSG:{epsg}")
    return raster


def _layer(raster: Raster, path: Path, key: tuple[str, int]) -> Raster:
    """The bands and tags of one (product, season) in a raw file, checked against the
    product's bands and hard limits. Files of one product and season (work dirs from before
    the batched requests) name their bands plainly."""
    product = PRODUCTS[key[0]]
    prefix = f"{key[0]}_{key[1]}_"
    if raster.bands == product.bands:
        return raster
    index = [i for i, name in enumerate(raster.bands) if name.startswith(prefix)]
    bands = tuple(raster.bands[i][len(prefix) :] for i in index)
    if bands != product.bands:
        raise RawFileError(f"{path}: bands {bands} for {prefix[:-1]}, expected {product.bands}")
    data = raster.data[index]
    problem = product.value_problem(data)
    if problem is not None:
        raise RawFileError(f"{path}: corrupt values ({problem})")
    tags = {k[len(prefix) :]: v for k, v in raster.tags.items() if k.startswith(prefix)}
    return Raster(data, raster.grid, bands, tags)


def _prefetch(paths: Iterable[Path]) -> None:
    """Ask the kernel to start reading every file now, so that a cold cache costs one wait
    for all of them rather than one per file (a hint; errors surface on the real read)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except (OSError, AttributeError):
            pass
        finally:
            os.close(fd)


def align_location(cfg: Config, work: WorkDir, task: AlignTask) -> AlignResult:
    a = cfg.align
    centre = task.position
    watch = _Stopwatch()
    try:
        l2a_crs = [task.files["S2L2A", s][1] for s in range(N_SEASONS)]
        if task.patch is not None:
            grid, epsg = task.patch, task.patch.epsg
        else:
            epsg = majority_crs(l2a_crs, centre)
            grid = reference_grid(
                epsg, centre, cfg.sample.patch_px, cfg.sample.pixel_m, cfg.align.lattice_m
            )
    except KeyError as exc:
        key = (str(exc.args[0][0]), int(exc.args[0][1]))
        reason = f"raw file: {task.sample_id}: no raw file for {key[0]} season {key[1]}"
        return AlignResult(task.sample_id, "failed", reason, damaged=(key,))
    try:
        rasters = _read_all(task, work, grid)
    except DamagedRawFile as exc:
        return AlignResult(task.sample_id, "failed", f"raw file: {exc}", damaged=exc.keys)
    watch.lap("read")
    l2a = [rasters["S2L2A", s] for s in range(N_SEASONS)]
    acquired = [datetime.fromisoformat(r.tags["acquired"]) for r in l2a]
    order = sorted(range(N_SEASONS), key=lambda s: acquired[s])  # timestamps by date

    aligned: dict[str, np.ndarray] = {}
    for product in FETCH_PRODUCTS:
        method = a.s1_resampling if product == "S1GRD" else a.s2_resampling
        shape = (N_SEASONS, len(PRODUCTS[product].bands), grid.height, grid.width)
        stack = aligned[product] = np.empty(shape, dtype=PRODUCTS[product].raw_dtype)
        for t, s in enumerate(order):
            onto_grid(rasters[product, s].data, rasters[product, s].grid, grid, method, stack[t])
    watch.lap("reproject")
    worst, where = worst_nan(aligned)
    if worst > a.nan_threshold:
        band = PRODUCTS[where[0]].bands[where[2]]
        return AlignResult(
            task.sample_id,
            "rejected",
            f"nan_fraction: {worst:.4f} in {where[0]} season {order[where[1]]} band {band}",
            epsg,
            worst,
            seconds=watch.seconds,
        )
    missing_l2a = is_missing(aligned["S2L2A"][:, -1])  # SCL, before the fill
    filled = {p: fill_cube(cube) for p, cube in aligned.items()}
    watch.lap("fill")
    l2a_bands = PRODUCTS["S2L2A"].bands[:-1]  # SCL is used for the mask, not stored
    rgb_index = [PRODUCTS["S2L2A"].bands.index(b) for b in RGB_BANDS]
    s2_time = np.array([acquired[s] for s in order], dtype="datetime64[ns]")
    s2_ids = tuple(l2a[s].tags["scene_id"] for s in order)
    s1 = [rasters["S1GRD", s] for s in order]
    rgb = np.stack([s2_rgb(filled["S2L2A"][t, rgb_index], a) for t in range(N_SEASONS)])
    masks = np.stack([cloud_mask(filled["S2L2A"][t, -1], missing_l2a[t]) for t in range(N_SEASONS)])
    modalities = {  # S-2 is int16 from the raw files on
        "S2L1C": Modality(filled["S2L1C"], PRODUCTS["S2L1C"].bands, s2_time, s2_ids),
        "S2L2A": Modality(filled["S2L2A"][:, :-1], l2a_bands, s2_time, s2_ids),
        "S1GRD": Modality(
            filled["S1GRD"].astype(np.float16),
            ("vv", "vh"),
            np.array(
                [datetime.fromisoformat(r.tags["acquired"]) for r in s1], dtype="datetime64[ns]"
            ),
            tuple(r.tags["scene_id"] for r in s1),
        ),
        "S2RGB": Modality(rgb, ("R", "G", "B"), s2_time, s2_ids),
    }
    mid_x, mid_y = grid.left + grid.width * grid.res_x / 2, grid.top - grid.height * grid.res_y / 2
    lon, lat = transformer(epsg, 4326).transform(mid_x, mid_y)
    cube = AlignedCube(
        sample_id=task.sample_id,
        epsg=epsg,
        center_lon=float(lon),
        center_lat=float(lat),
        x=grid.x_centres(),
        y=grid.y_centres(),
        modalities=modalities,
        cloud_mask=masks,
        tile_id=tuple(l2a[s].tags.get("tile_id", "") for s in order),
        tile_crs=tuple(l2a[s].grid.epsg for s in order),
        season=tuple(order),
    )
    watch.lap("rgb_mask")
    relpath = cube_relpath(task.sample_id)
    sha256 = save_cube(work.path(relpath), cube, work.scratch)
    watch.lap("write")
    return AlignResult(
        task.sample_id, "ok", None, epsg, worst, relpath, sha256, seconds=watch.seconds
    )
