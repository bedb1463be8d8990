"""One location through `align`: read the raw GeoTIFFs, align, write the cube.

Runs in a worker process; returns a small :class:`AlignResult` for the coordinator, which alone
writes the manifest. Every raw file is checked before use: its checksum against the one recorded
at download, and its values against the product's hard limits. A damaged file yields a
``failed`` result naming it, so that file alone is fetched again by the next `download` run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.errors import RasterioError

from .. import modalities as registry
from ..config import AlignConfig, Config
from ..derive import AlignedLayers, cloud_mask
from ..files import file_checksum
from ..geo import LonLat, majority_crs
from ..grid import PixelGrid, transformer
from ..modalities import (
    CLOUD_SCORE,
    N_SEASONS,
    Product,
    fetched_products,
    resampling,
)
from ..modalities import Modality as ModalitySpec
from ..raster_io import Raster, RawFileError, is_missing, missing_value, read_geotiff
from ..workdir import WorkDir, cube_relpath
from .core import fill_cube, onto_grid, reference_grid, worst_nan
from .cube import AlignedCube, Modality, save_cube


@dataclass(frozen=True)
class AlignTask:
    sample_id: str
    position: LonLat
    # (product, season) -> (raw GeoTIFF relative to the work dir, EPSG, checksum or None)
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
    checksum: str | None = None  # of the cube
    damaged: tuple[tuple[str, int], ...] = ()  # raw files to fetch again: (product, season)
    seconds: dict[str, float] = field(default_factory=dict)  # read, reproject, fill, derive, write


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


def required_keys(
    products: Mapping[str, Product], files: Collection[tuple[str, int]]
) -> list[tuple[str, int]]:
    """The (product, season) raw layers a location must have: every season of the
    four-timestamp products, one season of the single-timestamp ones; optional companions
    (Cloud Score+) where they were fetched."""
    missing: list[tuple[str, int]] = []
    for name, product in products.items():
        if product.optional:
            continue
        if product.timestamps == 1:
            if not any(key[0] == name for key in files):
                missing.append((name, 0))
            continue
        missing.extend((name, s) for s in range(N_SEASONS) if (name, s) not in files)
    return missing


def _read_all(
    task: AlignTask, work: WorkDir, grid: PixelGrid, products: Mapping[str, Product]
) -> dict[tuple[str, int], Raster]:
    """Every (product, season) raster, each file read once and only where it lies under the
    reference grid (a file holds the layers of one pixel request)."""
    for key in required_keys(products, task.files):
        raise DamagedRawFile(f"{task.sample_id}: no raw file for {key[0]} season {key[1]}", (key,))
    by_file: dict[str, list[tuple[str, int]]] = {}
    for key, (rel, _, _) in task.files.items():
        if key[0] in products:
            by_file.setdefault(rel, []).append(key)
    _prefetch(work.path(rel) for rel in by_file)
    rasters = {}
    # One GDAL environment for all files; raw files have no side-car files to look for.
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        for rel, keys in by_file.items():
            _, epsg, recorded = task.files[keys[0]]
            try:
                raster = _read_one(work.path(rel), products[keys[0][0]], epsg, recorded, grid)
                for key in keys:
                    rasters[key] = _layer(raster, work.path(rel), key, products[key[0]])
            except (RawFileError, RasterioError) as exc:
                raise DamagedRawFile(str(exc), tuple(keys)) from None
    return rasters


def _read_one(
    path: Path, product: Product, epsg: int, recorded: str | None, grid: PixelGrid
) -> Raster:
    if recorded is not None:
        try:
            actual = file_checksum(path, recorded)
        except OSError as exc:
            raise RawFileError(f"{path}: unreadable ({exc.strerror})") from None
        if actual != recorded:
            raise RawFileError(f"{path}: checksum differs from the one recorded at download")
    raster = read_geotiff(path, within=grid, dtype=product.raw_dtype)
    if raster.grid.epsg != epsg:
        raise RawFileError(f"{path}: EPSG:{raster.grid.epsg}, manifest says EPSG:{epsg}")
    return raster


def _layer(raster: Raster, path: Path, key: tuple[str, int], product: Product) -> Raster:
    """The bands and tags of one (product, season) in a raw file, checked against the
    product's bands and hard limits. Files of one product and season (work dirs from before
    the batched requests) name their bands plainly."""
    prefix = f"{key[0]}_{key[1]}_"
    if raster.bands == product.bands:
        return raster
    index = [i for i, name in enumerate(raster.bands) if name.startswith(prefix)]
    bands = tuple(raster.bands[i][len(prefix) :] for i in index)
    if bands != product.bands:
        raise RawFileError(f"{path}: bands {bands} for {prefix[:-1]}, expected {product.bands}")
    data = raster.data[_as_slice(index)]
    problem = product.value_problem(data)
    if problem is not None:
        raise RawFileError(f"{path}: corrupt values ({problem})")
    tags = {k[len(prefix) :]: v for k, v in raster.tags.items() if k.startswith(prefix)}
    return Raster(data, raster.grid, bands, tags)


def _as_slice(index: list[int]) -> slice | list[int]:
    """``index`` as a slice where it is a run of consecutive bands (a view, not a copy)."""
    if index and index == list(range(index[0], index[-1] + 1)):
        return slice(index[0], index[-1] + 1)
    return index


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


def align_location(cfg: Config, work: WorkDir, task: AlignTask, sync: bool = True) -> AlignResult:
    """Align one location and write its cube (fsynced unless ``sync`` is false: then the
    caller makes it durable before recording it)."""
    a = cfg.align
    products = {p.name: p for p in fetched_products(cfg)}
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
        rasters = _read_all(task, work, grid, products)
    except DamagedRawFile as exc:
        return AlignResult(task.sample_id, "failed", f"raw file: {exc}", damaged=exc.keys)
    watch.lap("read")
    acquired = [
        datetime.fromisoformat(rasters["S2L2A", s].tags["acquired"]) for s in range(N_SEASONS)
    ]
    order = sorted(range(N_SEASONS), key=lambda s: acquired[s])  # timestamps by date
    seasons = {name: _seasons(name, p, rasters, order) for name, p in products.items()}
    stacks = {
        name: _stack(rasters, name, p, seasons[name], grid, resampling(p, a))
        for name, p in products.items()
    }
    watch.lap("reproject")
    # One missing-pixel mask per stack: the threshold, the fill and the cloud mask use it.
    missing = {
        name: is_missing(stacks[name]) for name, p in products.items() if p.missing != "keep"
    }
    worst, where = worst_nan(
        {name: missing[name] for name, p in products.items() if p.missing == "reject"}
    )
    if worst > a.nan_threshold:
        band = products[where[0]].bands[where[2]]
        season = seasons[where[0]][where[1]]
        return AlignResult(
            task.sample_id,
            "rejected",
            f"nan_fraction: {worst:.4f} in {where[0]} season {season} band {band}",
            epsg,
            worst,
            seconds=watch.seconds,
        )
    missing_l2a = missing["S2L2A"][:, -1]  # SCL, before the fill (the fill keeps masks)
    for name, product in products.items():
        if product.missing == "reject":
            fill_cube(stacks[name], missing[name])
        elif product.missing != "keep":
            stacks[name][missing[name]] = product.missing
    watch.lap("fill")
    layers = AlignedLayers(stacks, products, _cloud_masks(stacks, missing_l2a, a), a)
    modalities = {m.name: _modality(m, layers, rasters, seasons) for m in registry.MODALITIES}
    mid_x, mid_y = grid.left + grid.width * grid.res_x / 2, grid.top - grid.height * grid.res_y / 2
    lon, lat = transformer(epsg, 4326).transform(mid_x, mid_y)
    l2a = [rasters["S2L2A", s] for s in order]
    cube = AlignedCube(
        sample_id=task.sample_id,
        epsg=epsg,
        center_lon=float(lon),
        center_lat=float(lat),
        x=grid.x_centres(),
        y=grid.y_centres(),
        modalities=modalities,
        cloud_mask=layers.cloud_mask,
        tile_id=tuple(r.tags.get("tile_id", "") for r in l2a),
        tile_crs=tuple(r.grid.epsg for r in l2a),
        season=tuple(order),
    )
    watch.lap("derive")
    relpath = cube_relpath(task.sample_id)
    checksum = save_cube(work.path(relpath), cube, work.scratch, sync)
    watch.lap("write")
    return AlignResult(
        task.sample_id, "ok", None, epsg, worst, relpath, checksum, seconds=watch.seconds
    )


def _seasons(
    name: str, product: Product, rasters: Mapping[tuple[str, int], Raster], order: list[int]
) -> list[int]:
    """The seasons of ``product``'s timestamps in date order (one for a single-timestamp
    product: the season it was fetched with)."""
    if product.timestamps == 1:
        return [min(s for p, s in rasters if p == name)]
    return order


def _stack(
    rasters: Mapping[tuple[str, int], Raster],
    name: str,
    product: Product,
    seasons: list[int],
    grid: PixelGrid,
    method: str,
) -> NDArray[Any]:
    """(time, band, y, x) of ``product`` on the reference grid; missing where a season has no
    layer (an optional companion the granule lacks)."""
    shape = (len(seasons), len(product.bands), grid.height, grid.width)
    dtype = np.dtype(product.raw_dtype)
    stack = np.empty(shape, dtype=dtype)  # onto_grid writes every pixel
    for t, season in enumerate(seasons):
        raster = rasters.get((name, season))
        if raster is None:
            stack[t] = missing_value(dtype)
        else:
            onto_grid(raster.data, raster.grid, grid, method, stack[t])
    return stack


def _cloud_masks(
    stacks: Mapping[str, NDArray[Any]], missing: NDArray[np.bool_], a: AlignConfig
) -> NDArray[np.uint8]:
    """The cloud mask of every timestamp: SCL, with Cloud Score+ where it was fetched."""
    score = None
    if "CS" in stacks:
        score = stacks["CS"][:, CLOUD_SCORE.bands.index(a.cs_band)]
    return np.stack([
        cloud_mask(stacks["S2L2A"][t, -1], missing[t], None if score is None else score[t], a)
        for t in range(missing.shape[0])
    ])  # fmt: skip


def _modality(
    m: ModalitySpec,
    layers: AlignedLayers,
    rasters: Mapping[tuple[str, int], Raster],
    seasons: Mapping[str, list[int]],
) -> Modality:
    """One modality as the registry derives it, with its timestamps and file ids."""

    def tags(product: str, key: str) -> list[str]:
        return [rasters[product, s].tags[key] for s in seasons[product]]

    if m.timestamps == 1:
        time = np.zeros(1, dtype="datetime64[ns]")  # time value 0, as the 2026 release stores
    else:
        times = [datetime.fromisoformat(t) for t in tags(m.times_from, "acquired")]
        time = np.array(times, dtype="datetime64[ns]")
    bands = m.derive(layers).astype(m.dtype, copy=False)
    return Modality(bands, m.bands, time, tuple(tags(m.file_id_from, "scene_id")))
