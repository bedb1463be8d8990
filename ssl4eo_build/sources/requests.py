"""Pixel requests: which scenes' bands travel together, on which grid, and how a request that
is too big for the server is cut.

Per location and season the download stage needs every fetched layer (L1C, L2A + SCL, S-1,
Cloud Score+, land cover; the DEM once), all on that season's S-2 grid. Seasons whose S-2
granules share an EPSG code share the grid, so one request can stack them:
:func:`plan_requests` groups the layers by grid, up to ``max_seasons`` seasons per request
(SPEC section 4: two, so a typical location needs two pixel requests beside its one metadata
request).

A request must fit the server's limits (Earth Engine: 48 MB uncompressed, 32,768 px per side,
1,024 bands). :func:`pieces` cuts one that does not — seasons apart first, then products, then
bands, then rows and columns — and a :class:`RequestShape` remembers a cut that a memory or
time-out answer forced, so later requests of the run are planned that small from the start.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..grid import PixelGrid
from ..modalities import INT16_MISSING, Product
from .base import Scene

VALUE_BYTES = {"int16": 2, "float32": 4}
# Room for the NPY header and the structured dtype's description of every band.
HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class ResponseLimits:
    max_bytes: int
    max_side_px: int
    max_bands: int

    @classmethod
    def from_mb(cls, max_mb: float, max_side_px: int, max_bands: int) -> ResponseLimits:
        return cls(round(max_mb * 2**20), max_side_px, max_bands)


# Earth Engine's computePixels limits; the simulator plays by the same ones.
EARTH_ENGINE_LIMITS = ResponseLimits.from_mb(48.0, 32_768, 1024)


@dataclass(frozen=True)
class Layer:
    """Bands of one product's image in a request, for one season."""

    spec: Product  # the registry entry: collection, how the image is found, resampling, type
    season: int
    scene: Scene
    bands: tuple[str, ...]

    @property
    def product(self) -> str:
        return self.spec.name

    @property
    def key(self) -> tuple[str, int]:
        return self.product, self.season

    @property
    def dtype(self) -> str:
        return self.spec.raw_dtype


def band_id(layer: Layer, band: str) -> str:
    """A band's name where layers are stacked (requests, raw files): ``S2L1C_0_B01``."""
    return f"{layer.product}_{layer.season}_{band}"


@dataclass(frozen=True)
class PixelRequest:
    """Layers on one grid (a whole fetch grid, or a tile of one after a cut)."""

    grid: PixelGrid
    layers: tuple[Layer, ...]

    @property
    def seasons(self) -> list[int]:
        return sorted({layer.season for layer in self.layers})

    @property
    def n_bands(self) -> int:
        return sum(len(layer.bands) for layer in self.layers)

    @property
    def nbytes(self) -> int:
        """Size of the uncompressed answer, as the server counts it (plus the header)."""
        per_pixel = sum(len(layer.bands) * VALUE_BYTES[layer.dtype] for layer in self.layers)
        return self.grid.width * self.grid.height * per_pixel + HEADER_BYTES


class RequestShape:
    """The largest request the server has accepted so far: seasons and bands per request.

    Shared by the threads of a process; it only ever shrinks, so a cut forced by a memory or
    time-out answer holds for the rest of the run.
    """

    def __init__(self, max_seasons: int, max_bands: int) -> None:
        self.max_seasons = max_seasons
        self.max_bands = max_bands
        self._lock = threading.Lock()

    def allows(self, request: PixelRequest) -> bool:
        return len(request.seasons) <= self.max_seasons and request.n_bands <= self.max_bands

    def shrink(self, request: PixelRequest) -> bool:
        """Make requests like ``request`` smaller from now on; False when it cannot be cut."""
        with self._lock:
            if len(request.seasons) > 1:
                self.max_seasons = min(self.max_seasons, len(request.seasons) // 2)
                return True
            if request.n_bands > 1:
                self.max_bands = min(self.max_bands, request.n_bands // 2)
                return True
        return False


def plan_requests(
    layers: Iterable[Layer], grids: dict[int, PixelGrid], max_seasons: int
) -> list[PixelRequest]:
    """Layers of the seasons that share a grid stacked, ``max_seasons`` seasons at most."""
    by_grid: dict[PixelGrid, dict[int, list[Layer]]] = {}
    for layer in layers:
        by_grid.setdefault(grids[layer.season], {}).setdefault(layer.season, []).append(layer)
    requests = []
    for grid, seasons in by_grid.items():
        order = sorted(seasons)
        for start in range(0, len(order), max_seasons):
            group = order[start : start + max_seasons]
            requests.append(PixelRequest(grid, tuple(x for s in group for x in seasons[s])))
    return requests


def _fits(request: PixelRequest, shape: RequestShape, limits: ResponseLimits) -> bool:
    side = max(request.grid.width, request.grid.height)
    return (
        shape.allows(request)
        and request.n_bands <= limits.max_bands
        and request.nbytes <= limits.max_bytes
        and side <= limits.max_side_px
    )


def _halves(items: Sequence[Any]) -> tuple[Sequence[Any], Sequence[Any]]:
    middle = (len(items) + 1) // 2
    return items[:middle], items[middle:]


def _cut(request: PixelRequest) -> list[PixelRequest]:
    """``request`` in two: by season, else by product, else by band, else by the longer side."""
    seasons = request.seasons
    if len(seasons) > 1:
        first, _ = _halves(seasons)
        parts = [[x for x in request.layers if (x.season in first) == inside] for inside in (1, 0)]
        return [PixelRequest(request.grid, tuple(p)) for p in parts]
    if len(request.layers) > 1:
        return [PixelRequest(request.grid, tuple(h)) for h in _halves(request.layers)]
    (layer,) = request.layers
    if len(layer.bands) > 1:
        return [
            PixelRequest(request.grid, (replace(layer, bands=tuple(h)),))
            for h in _halves(layer.bands)
        ]
    return [PixelRequest(tile, request.layers) for tile in _split_grid(request.grid)]


def _split_grid(grid: PixelGrid) -> list[PixelGrid]:
    if grid.width >= grid.height:
        w = (grid.width + 1) // 2
        return [grid.crop(0, 0, w, grid.height), grid.crop(w, 0, grid.width - w, grid.height)]
    h = (grid.height + 1) // 2
    return [grid.crop(0, 0, grid.width, h), grid.crop(0, h, grid.width, grid.height - h)]


def pieces(
    request: PixelRequest, shape: RequestShape, limits: ResponseLimits
) -> list[PixelRequest]:
    """``request`` cut until every piece fits the limits and the remembered shape."""
    if _fits(request, shape, limits) or (
        len(request.layers) == 1
        and len(request.layers[0].bands) == 1
        and request.grid.width * request.grid.height == 1
    ):
        return [request]
    return [p for part in _cut(request) for p in pieces(part, shape, limits)]


class Assembly:
    """The pieces of one request put together: one array per (product, season)."""

    def __init__(self, request: PixelRequest) -> None:
        self.grid = request.grid
        self.arrays: dict[tuple[str, int], NDArray[Any]] = {}
        self.bands: dict[tuple[str, int], tuple[str, ...]] = {}
        for layer in request.layers:
            fill = np.nan if layer.dtype == "float32" else INT16_MISSING
            shape = (len(layer.bands), self.grid.height, self.grid.width)
            self.arrays[layer.key] = np.full(shape, fill, dtype=layer.dtype)
            self.bands[layer.key] = layer.bands

    def add(self, piece: PixelRequest, pixels: dict[tuple[str, int], NDArray[Any]]) -> None:
        col0 = round((piece.grid.left - self.grid.left) / self.grid.res_x)
        row0 = round((self.grid.top - piece.grid.top) / self.grid.res_y)
        rows = slice(row0, row0 + piece.grid.height)
        cols = slice(col0, col0 + piece.grid.width)
        for layer in piece.layers:
            index = [self.bands[layer.key].index(b) for b in layer.bands]
            self.arrays[layer.key][index, rows, cols] = pixels[layer.key]
