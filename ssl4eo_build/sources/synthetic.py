"""`synthetic`: a deterministic, offline simulator of the Sentinel-1/2 archive.

Ground truth is a function of world coordinates only (seeded multi-octave value noise on a
metric lon/lat frame), so the same ground looks the same in every scene, product and CRS — the
alignment tests compare aligned pixels with :func:`truth` sampled on the reference grid.

The archive:

- S-2 granules on the UTM/MGRS tiling. A location is covered by the granule of its own UTM
  zone and, within ``zone_overlap_m`` of a zone border, also by the neighbouring zone's
  granule (same datatake, other tile, other EPSG). Revisit 5 days, overpass ~10:30 local solar
  time. Scene cloud % follows a per-region climate so some seasons fail the < 10 % rule.
  Granule ids look like ``20201116T023001_20201116T022955_T51SYA``; L1C and L2A share them.
- S-1 IW GRD scenes every 6 or 12 days (EPSG:4326 in the search), evaluated on whatever grid a
  request asks for — the season's S-2 grid, as Earth Engine resamples them — VV/VH in dB
  (VV ~ -12.6 +/- 5.2, VH ~ -20.3 +/- 5.9), ids like
  ``S1A_IW_GRDH_1SDV_20201127T214646_20201127T214711_035456_0424F4_D4F1``.
- Occasional partial coverage: a swath edge crosses the area and the far side is NaN.

Knobs: ``latency_s`` per request, ``error_rate`` of transient failures (raised as
:class:`RetryableSourceError`, as the Earth Engine source does), ``seed``.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..config import SyntheticConfig
from ..errors import FinalSourceError, RetryableSourceError
from ..geo import LonLat, utm_epsg
from ..grid import PixelGrid, lonlat_of_pixels, transformer
from ..modalities import LULC_DYNAMIC_WORLD, PRODUCTS, Product
from ..raster_io import as_dtype
from .base import Scene, SceneQuery, TimeWindow
from .requests import EARTH_ENGINE_LIMITS, PixelRequest

EPOCH = datetime(2015, 6, 27)  # Sentinel-2A launch; acquisition calendars count from here
S2_REVISIT_DAYS = 5
CLOUD_SCORE_SHARE = 0.9  # of granules with a Cloud Score+ image (the rest: SCL alone)
EARTH_R = 6_371_008.8
# Per-band (mean, std) of the v1.1 standardisation values (dataset README), used to scale the
# simulated reflectances so the statistics look like the real archive.
L1C_STATS = dict(
    zip(
        PRODUCTS["S2L1C"].bands,
        zip(
            (2607, 2393, 2320, 2374, 2563, 3110, 3393, 3321, 3584, 1839, 1022, 3205, 2546),
            (787, 850, 875, 1144, 1126, 1162, 1274, 1247, 1343, 577, 46, 1340, 1145),
            strict=True,
        ),
        strict=True,
    )
)
L2A_STATS = dict(
    zip(
        PRODUCTS["S2L2A"].bands[:-1],
        zip(
            (1793, 1925, 2185, 2341, 2671, 3240, 3468, 3563, 3628, 3711, 3417, 2850),
            (1160, 1201, 1220, 1397, 1400, 1373, 1429, 1485, 1448, 1653, 1471, 1365),
            strict=True,
        ),
        strict=True,
    )
)
# How strongly a band follows vegetation (near infrared up, visible down).
VEGETATION_WEIGHT = {
    "B01": -0.3, "B02": -0.4, "B03": -0.2, "B04": -0.5, "B05": 0.1, "B06": 0.5, "B07": 0.6,
    "B08": 0.7, "B8A": 0.7, "B09": 0.5, "B10": 0.0, "B11": -0.1, "B12": -0.3,
}  # fmt: skip
MGRS_BANDS = "CDEFGHJKLMNPQRSTUVWX"
MGRS_COLS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
MGRS_ROWS = "ABCDEFGHJKLMNPQRSTUV"


def _mix(*keys: int | NDArray[np.int64]) -> NDArray[np.uint64]:
    """Integer hash (splitmix64-style) of broadcast integer arrays."""
    with np.errstate(over="ignore"):
        h: NDArray[np.uint64] = np.asarray(np.uint64(0x9E3779B97F4A7C15))
        for k in keys:
            h = (h ^ np.asarray(k).astype(np.int64).view(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
        h = (h ^ (h >> np.uint64(29))) * np.uint64(0x94D049BB133111EB)
        return np.asarray(h ^ (h >> np.uint64(32)))


def _unit(*keys: int | NDArray[np.int64]) -> NDArray[np.float64]:
    """Hash to floats in [0, 1)."""
    return (_mix(*keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _scalar_unit(*keys: int) -> float:
    return float(_unit(*keys))


def _text_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "little")


def value_noise(
    u: NDArray[np.float64],
    v: NDArray[np.float64],
    seed: int,
    wavelength_m: float,
    octaves: int,
    gain: float = 0.6,
) -> NDArray[np.float32]:
    """Multi-octave value noise on metric coordinates; roughly zero mean, values in [-1, 1]."""
    total = np.zeros(u.shape, dtype=np.float64)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        wl = wavelength_m / 2.0**octave
        x, y = u / wl, v / wl
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = x - x0, y - y0
        fx = fx * fx * (3.0 - 2.0 * fx)
        fy = fy * fy * (3.0 - 2.0 * fy)
        ix, iy = x0.astype(np.int64), y0.astype(np.int64)
        c00 = _unit(seed, octave, ix, iy)
        c10 = _unit(seed, octave, ix + 1, iy)
        c01 = _unit(seed, octave, ix, iy + 1)
        c11 = _unit(seed, octave, ix + 1, iy + 1)
        top = c00 + (c10 - c00) * fx
        bottom = c01 + (c11 - c01) * fx
        total += amplitude * (2.0 * (top + (bottom - top) * fy) - 1.0)
        norm += amplitude
        amplitude *= gain
    return (total / norm).astype(np.float32)


def metric_frame(
    lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A local-metric world frame: metres east along the parallel, metres north."""
    phi = np.radians(lat)
    return EARTH_R * np.radians(lon) * np.cos(phi), EARTH_R * phi


@dataclass(frozen=True)
class Truth:
    """Ground-truth fields on some pixels: brightness, vegetation, water (each ~[-1, 1]) and
    the terrain's elevation (metres).

    ``regional`` varies over tens of kilometres and sets a location's overall level, so that
    statistics over many locations look like the archive's while one patch stays coherent.
    """

    regional: NDArray[np.float32]
    brightness: NDArray[np.float32]
    vegetation: NDArray[np.float32]
    water: NDArray[np.float32]
    elevation: NDArray[np.float32]

    @property
    def is_water(self) -> NDArray[np.bool_]:
        return self.water < -0.35

    def land_cover(self, year: int) -> NDArray[np.int16]:
        """ESRI 10 m annual land-cover codes in ``year``: built areas grow a little each
        year, the rest stays."""
        built = self.brightness > 0.5 - 0.01 * (year - 2017)
        choices = [
            (self.is_water, 1),
            ((self.water < -0.28) & (self.vegetation > 0.0), 4),  # flooded vegetation
            (self.elevation > 2800.0, 9),  # snow and ice
            (built, 7),
            (self.vegetation > 0.35, 2),  # trees
            (self.vegetation > 0.1, 5),  # crops
            (self.brightness < -0.45, 8),  # bare ground
        ]
        codes = np.full(self.water.shape, 11, dtype=np.int16)  # rangeland
        for where, code in reversed(choices):  # the first that holds wins
            codes[where] = code
        return codes

    def snow(self, acquired: datetime) -> NDArray[np.bool_]:
        """Snow cover at ``acquired``: above a snow line at 1,000 m in winter, 3,400 m in
        summer (northern seasons)."""
        return self.elevation > 2200.0 - 1200.0 * _winter(acquired)


def _winter(acquired: datetime) -> float:
    """1 at the winter solstice, -1 at the summer one (northern hemisphere)."""
    return -math.cos(2.0 * math.pi * (acquired.timetuple().tm_yday - 172) / 365.0)


def truth(lon: NDArray[np.float64], lat: NDArray[np.float64], seed: int) -> Truth:
    """The simulator's ground truth at world positions (the alignment tests' reference)."""
    u, v = metric_frame(lon, lat)
    regional = value_noise(u, v, seed * 7 + 4, 40_000.0, 2)
    relief = value_noise(u, v, seed * 7 + 5, 12_000.0, 5)
    return Truth(
        regional=regional,
        brightness=value_noise(u, v, seed * 7 + 1, 1600.0, 7),
        vegetation=value_noise(u, v, seed * 7 + 2, 2400.0, 5),
        water=value_noise(u, v, seed * 7 + 3, 6000.0, 3),
        elevation=np.maximum(700.0 + 1500.0 * relief + 700.0 * regional, 0.0).astype(np.float32),
    )


# Dynamic World label of each ESRI land-cover code the simulator draws.
ESRI_TO_DYNAMIC_WORLD = {1: 0, 2: 1, 4: 3, 5: 4, 7: 6, 8: 7, 9: 8, 11: 2}


def cloud_score(thickness: NDArray[np.float32]) -> NDArray[np.float32]:
    """Cloud Score+ ``cs_cdf`` (1 clear .. 0 cloudy) of a cloud thickness: clear sky 0.9, a
    cloud's edge (thickness 0.2) 0.55, thick cloud (above ~0.37) under 0.3."""
    cloudy = np.clip(0.55 - 1.5 * (thickness - 0.2), 0.0, 1.0)
    return np.where(thickness > 0, cloudy, 0.9).astype(np.float32)


def mgrs_tile(lon: float, lat: float, epsg: int) -> str:
    """MGRS tile id (``T51SYA``) of the 100 km square holding the point in zone ``epsg``."""
    zone = epsg % 100
    x, y = transformer(4326, epsg).transform(lon, lat)
    band = MGRS_BANDS[min(max(int((lat + 80.0) // 8.0), 0), len(MGRS_BANDS) - 1)]
    col_letters = MGRS_COLS[(zone - 1) % 3]
    col = col_letters[min(max(int(x // 100_000) - 1, 0), 7)]
    row_offset = 0 if zone % 2 else 5
    row = MGRS_ROWS[(int(y // 100_000) + row_offset) % 20]
    return f"T{zone:02d}{band}{col}{row}"


def _ts(t: datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S")


BANDS: dict[str, tuple[str, ...]] = {
    **{name: p.bands for name, p in PRODUCTS.items()},
    "LULC": (*PRODUCTS["LULC"].bands, *LULC_DYNAMIC_WORLD.bands),
}


def _repeated(values: NDArray[Any], factor: int) -> NDArray[Any]:
    """A coarse (h, w) array onto a grid ``factor`` times finer."""
    if factor == 1:
        return values
    return np.repeat(np.repeat(values, factor, axis=0), factor, axis=1)


def _native_grid_only(product: Product) -> bool:
    """S-2 granules and their companions must be asked for in their own CRS (the simulator's
    rule, so that a wrong grid is caught); S-1 and the DEM and land-cover mosaics are
    evaluated on any grid, as Earth Engine resamples them."""
    return product.image == "granule" or product.name in ("S2L1C", "S2L2A")


class SyntheticSource:
    """The simulator behind the :class:`~ssl4eo_build.sources.base.Source` interface."""

    name = "synthetic"
    limits = EARTH_ENGINE_LIMITS  # the same requests as Earth Engine, so one path

    def __init__(self, params: SyntheticConfig | None = None) -> None:
        self.params = params or SyntheticConfig()
        self._truth_cache: OrderedDict[PixelGrid, Truth] = OrderedDict()
        self._cloud_cache: OrderedDict[tuple[str, PixelGrid], NDArray[np.float32]] = OrderedDict()
        # granule -> its cloud cover before the per-product jitter (filled by searches, which
        # always precede fetches; bounded like the caches)
        self._granule_cover: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.calls = {"search": 0, "fetch": 0}

    # -- request behaviour ---------------------------------------------------------------------

    def _request(self, kind: str) -> None:
        with self._lock:
            self.calls[kind] += 1
            fail = self._rng.random() < self.params.error_rate
        if self.params.latency_s > 0:
            time.sleep(self.params.latency_s)
        if fail:
            raise RetryableSourceError(f"synthetic transient {kind} failure (HTTP 503)")

    # -- search --------------------------------------------------------------------------------

    def plan(self, query: SceneQuery) -> dict[str, list[Scene]]:
        """Every candidate of the location, as Earth Engine's one metadata request answers:
        L1C and L2A granules under the cloud limit in both, with the companions the query asks
        about (Cloud Score+ for about 9 granules in 10, Dynamic World for all), S-1 scenes
        within the gap of one of them."""
        self._request("search")
        found = {p: self.search(query.point, p, query.s2_windows) for p in ("S2L1C", "S2L2A")}
        found = {p: [s for s in v if (s.cloud_pct or 0.0) < query.max_cloud_pct]
                 for p, v in found.items()}  # fmt: skip
        both = {s.scene_id for s in found["S2L1C"]} & {s.scene_id for s in found["S2L2A"]}
        found = {
            p: [replace(s, companions=self._companions(s, query)) for s in v if s.scene_id in both]
            for p, v in found.items()
        }
        times = [s.acquired for s in found["S2L2A"]]
        gap = timedelta(days=query.s1_max_gap_days)
        found["S1GRD"] = [
            s
            for s in self.search(query.point, "S1GRD", query.s1_windows)
            if any(abs(s.acquired - t) <= gap for t in times)
        ]
        return found

    def _companions(self, granule: Scene, query: SceneQuery) -> frozenset[str]:
        present = set()
        for name, _ in query.companions:
            key = _text_key(granule.scene_id + name)
            if name != "CS" or _scalar_unit(self.params.seed, 24, key) < CLOUD_SCORE_SHARE:
                present.add(name)
        return frozenset(present)

    def search(self, point: LonLat, product: str, windows: Sequence[TimeWindow]) -> list[Scene]:
        scenes: list[Scene] = []
        for w in windows:
            if product == "S1GRD":
                scenes.extend(self._s1_scenes(point, w))
            else:
                scenes.extend(self._s2_scenes(point, product, w))
        unique = {s.scene_id: s for s in scenes}
        return sorted(unique.values(), key=lambda s: (s.acquired, s.scene_id))

    def covering_zones(self, point: LonLat) -> list[int]:
        """EPSG codes of the UTM zones whose granules cover ``point``."""
        own = utm_epsg(point.lon, point.lat)
        zones = [own]
        zone = own % 100
        west_edge = -180.0 + (zone - 1) * 6.0
        metres_per_deg = math.pi / 180.0 * EARTH_R * math.cos(math.radians(point.lat))
        to_west = (point.lon - west_edge) * metres_per_deg
        to_east = (west_edge + 6.0 - point.lon) * metres_per_deg
        base = own - zone
        if to_west < self.params.zone_overlap_m:
            zones.append(base + (zone - 2) % 60 + 1)
        if to_east < self.params.zone_overlap_m:
            zones.append(base + zone % 60 + 1)
        return zones

    def _climate(self, point: LonLat) -> float:
        """Cloudiness exponent of the 5-degree cell: 1 (cloudy) .. 3.5 (clear)."""
        cell = (math.floor(point.lon / 5.0), math.floor(point.lat / 5.0))
        return 1.0 + 2.5 * _scalar_unit(self.params.seed, 11, *cell)

    def _s2_scenes(self, point: LonLat, product: str, w: TimeWindow) -> list[Scene]:
        track = math.floor((point.lon + 180.0) / 2.9)  # neighbouring orbits every ~2.9 degrees
        phase = int(_scalar_unit(self.params.seed, 21, track) * S2_REVISIT_DAYS)
        first = math.ceil(((w.start - EPOCH).days - phase) / S2_REVISIT_DAYS)
        last = math.floor(((w.end - EPOCH).days - phase) / S2_REVISIT_DAYS)
        hour = (10.5 - point.lon / 15.0) % 24.0
        gamma = self._climate(point)
        out = []
        for k in range(first, last + 1):
            day = EPOCH + timedelta(days=k * S2_REVISIT_DAYS + phase)
            sensing = day + timedelta(hours=hour, seconds=int(_scalar_unit(track, k) * 40))
            if not w.start <= sensing <= w.end:
                continue
            datatake = f"{_ts(sensing)}_{_ts(sensing - timedelta(seconds=6))}"
            cloud_base = 100.0 * _scalar_unit(self.params.seed, 22, track, k) ** gamma
            self._remember_cover(datatake, cloud_base)
            for epsg in self.covering_zones(point):
                tile = mgrs_tile(point.lon, point.lat, epsg)
                granule = f"{datatake}_{tile}"
                jitter = 0.6 * _scalar_unit(self.params.seed, 23, _text_key(granule + product))
                cloud = min(100.0, cloud_base + jitter)
                out.append(Scene(granule, product, sensing, epsg, round(cloud, 3), granule, tile))
        return out

    def _s1_scenes(self, point: LonLat, w: TimeWindow) -> list[Scene]:
        cell = (math.floor(point.lon / 2.0), math.floor(point.lat / 2.0))
        revisit = 6 if _scalar_unit(self.params.seed, 31, *cell) < 0.6 else 12
        phase = int(_scalar_unit(self.params.seed, 32, *cell) * revisit)
        descending = _scalar_unit(self.params.seed, 33, *cell) < 0.5
        hour = ((6.0 if descending else 18.0) - point.lon / 15.0) % 24.0
        first = math.ceil(((w.start - EPOCH).days - phase) / revisit)
        last = math.floor(((w.end - EPOCH).days - phase) / revisit)
        out = []
        for k in range(first, last + 1):
            day = EPOCH + timedelta(days=k * revisit + phase)
            start = day + timedelta(hours=hour, seconds=int(_scalar_unit(*cell, k) * 50))
            if not w.start <= start <= w.end:
                continue
            platform = "S1A" if k % 2 == 0 or start.year >= 2022 else "S1B"
            orbit = (k * revisit * 15) % 999_999
            datatake = _mix(self.params.seed, 34, *cell, k) % np.uint64(0xFFFFFF)
            crc = _mix(self.params.seed, 35, *cell, k) % np.uint64(0xFFFF)
            scene_id = (
                f"{platform}_IW_GRDH_1SDV_{_ts(start)}_{_ts(start + timedelta(seconds=25))}"
                f"_{orbit:06d}_{int(datatake):06X}_{int(crc):04X}"
            )
            out.append(Scene(scene_id, "S1GRD", start, 4326))
        return out

    # -- pixels --------------------------------------------------------------------------------

    def _truth_on(self, grid: PixelGrid) -> Truth:
        with self._lock:
            cached = self._truth_cache.get(grid)
            if cached is not None:
                self._truth_cache.move_to_end(grid)
                return cached
        lon, lat = lonlat_of_pixels(grid)
        fields = truth(lon, lat, self.params.seed)
        with self._lock:
            self._truth_cache[grid] = fields
            while len(self._truth_cache) > 32:
                self._truth_cache.popitem(last=False)
        return fields

    def fetch(self, request: PixelRequest) -> dict[tuple[str, int], NDArray[Any]]:
        return self.decode(request, self.send(request))

    @staticmethod
    def decode(
        request: PixelRequest, answer: dict[tuple[str, int], NDArray[Any]]
    ) -> dict[tuple[str, int], NDArray[Any]]:
        return answer

    def send(self, request: PixelRequest) -> dict[tuple[str, int], NDArray[Any]]:
        """Every layer on the request's grid, in its stored type. S-2 must be asked for in its
        own CRS; S-1 is evaluated on any grid (Earth Engine resamples it onto the S-2 grid)."""
        self._request("fetch")
        out = {}
        for layer in request.layers:
            if _native_grid_only(layer.spec) and request.grid.epsg != layer.scene.epsg:
                raise FinalSourceError(
                    f"{layer.scene.scene_id}: requested EPSG:{request.grid.epsg}, "
                    f"native is EPSG:{layer.scene.epsg}"
                )
            pixels = self.pixels(layer.scene, request.grid, layer.bands)
            out[layer.key] = as_dtype(pixels, layer.dtype)
        return out

    def pixels(self, scene: Scene, grid: PixelGrid, bands: Sequence[str]) -> NDArray[np.float32]:
        allowed = BANDS.get(scene.product, ())
        if not bands or any(b not in allowed for b in bands):
            raise FinalSourceError(f"{scene.scene_id}: bands {list(bands)} not in {scene.product}")
        key = _text_key(scene.scene_id)
        if scene.product in ("CS", "DEM", "LULC"):
            out = self._layer(scene, grid, bands, key)
        else:
            out = self._measured(scene, grid, bands, key)
        if scene.product in ("S2L1C", "S2L2A", "S1GRD", "CS"):
            self._apply_swath_edge(scene, grid, out, key)
        return out

    def _measured(
        self, scene: Scene, grid: PixelGrid, bands: Sequence[str], key: int
    ) -> NDArray[np.float32]:
        """S-2 and S-1 bands, each at its native resolution repeated onto 10 m."""
        product = PRODUCTS[scene.product]
        out = np.empty((len(bands), grid.height, grid.width), dtype=np.float32)
        by_res: dict[int, list[int]] = {}
        for i, band in enumerate(bands):
            by_res.setdefault(product.native_res_m[band], []).append(i)
        for res, indices in by_res.items():
            factor = max(1, round(res / 10.0)) if scene.product != "S1GRD" else 1
            coarse = self._coarse_grid(grid, factor)
            fields = self._truth_on(coarse)
            clouds = snow = None
            if scene.product != "S1GRD":
                # Clouds and snow on the 60 m lattice, so that every band agrees on them.
                step = 6 // factor
                clouds = _repeated(self._clouds(scene, grid, key), step)
                snow = _repeated(
                    self._truth_on(self._coarse_grid(grid, 6)).snow(scene.acquired), step
                )
            for i in indices:
                values = self._band(scene, bands[i], fields, clouds, snow)
                out[i] = _repeated(values, factor)
        return out

    def _layer(
        self, scene: Scene, grid: PixelGrid, bands: Sequence[str], key: int
    ) -> NDArray[np.float32]:
        """Cloud Score+ of a granule (from its clouds), the DEM (the terrain, evaluated on the
        grid as Earth Engine's bilinear resampling approximates it) or land cover (the year's
        ESRI map, or Dynamic World labels of a granule)."""
        if scene.product == "CS":
            clouds = self._clouds(scene, grid, key)
            score = cloud_score(_repeated(clouds, 6))
            by_band = {"cs_cdf": score, "cs": np.clip(score - 0.05, 0.0, 1.0)}
            return np.stack([by_band[b] for b in bands]).astype(np.float32)
        fields = self._truth_on(grid)
        if scene.product == "DEM":
            return fields.elevation[None].astype(np.float32)
        codes = fields.land_cover(scene.acquired.year)
        if bands[0] == "label":  # Dynamic World
            table = np.zeros(16, dtype=np.int16)
            for esri, label in ESRI_TO_DYNAMIC_WORLD.items():
                table[esri] = label
            codes = table[codes]
        return codes[None].astype(np.float32)

    @staticmethod
    def _coarse_grid(grid: PixelGrid, factor: int) -> PixelGrid:
        if factor == 1:
            return grid
        if grid.width % factor or grid.height % factor:
            raise FinalSourceError(f"grid {grid.width}x{grid.height} not divisible by {factor}")
        return PixelGrid(
            grid.epsg,
            grid.left,
            grid.top,
            grid.res_x * factor,
            grid.res_y * factor,
            grid.width // factor,
            grid.height // factor,
        )

    def _clouds(self, scene: Scene, grid: PixelGrid, key: int) -> NDArray[np.float32]:
        """Cloud thickness on the 60 m lattice, > 0 where cloudy, on about cloud_pct % of pixels.

        L1C and L2A of a granule share the id and the granule's cloud cover (before the small
        per-product jitter of their cloud percentages), hence the same clouds, whichever is
        fetched first.
        """
        cache_key = (scene.scene_id, grid)
        with self._lock:
            cached = self._cloud_cache.get(cache_key)
        if cached is not None:
            return cached
        lon, lat = lonlat_of_pixels(self._coarse_grid(grid, 6))
        u, v = metric_frame(lon, lat)
        field = value_noise(u, v, key % 1_000_003, 3000.0, 4)
        datatake = scene.scene_id.rsplit("_", 1)[0]
        with self._lock:
            pct = self._granule_cover.get(datatake, scene.cloud_pct or 0.0)
        cover = min(pct, 100.0) / 100.0
        # value_noise is roughly uniform-ish with std ~0.3: threshold at the matching quantile.
        threshold = float(np.quantile(field, 1.0 - cover)) if cover > 0 else np.inf
        clouds = np.where(field > threshold, field - threshold + 0.2, 0.0).astype(np.float32)
        with self._lock:
            self._cloud_cache[cache_key] = clouds
            while len(self._cloud_cache) > 64:
                self._cloud_cache.popitem(last=False)
        return clouds

    def _remember_cover(self, datatake: str, cloud_pct: float) -> None:
        with self._lock:
            self._granule_cover[datatake] = cloud_pct
            self._granule_cover.move_to_end(datatake)
            while len(self._granule_cover) > 100_000:
                self._granule_cover.popitem(last=False)

    def _band(
        self,
        scene: Scene,
        band: str,
        fields: Truth,
        clouds: NDArray[np.float32] | None,
        snow: NDArray[np.bool_] | None,
    ) -> NDArray[np.float32]:
        if clouds is None or snow is None:
            water = fields.water < -0.35
            level = 1.6 * fields.regional
            if band == "VV":
                texture = 0.8 * fields.brightness + 0.6 * fields.vegetation + level
                db = -12.6 + 5.2 * 2.0 * texture
                return np.where(water, -24.0 + 2.0 * fields.brightness, db).astype(np.float32)
            texture = 0.5 * fields.brightness + 0.9 * fields.vegetation + level
            db = -20.3 + 5.9 * 2.0 * texture
            return np.where(water, -30.0 + 2.0 * fields.brightness, db).astype(np.float32)
        season = math.cos(2.0 * math.pi * (scene.acquired.timetuple().tm_yday - 200) / 365.0)
        vegetation = fields.vegetation + 0.25 * season
        water = fields.is_water
        snow = snow & ~water
        if band == "SCL":
            scl = np.where(water, 6, np.where(vegetation > 0.0, 4, 5)).astype(np.float32)
            scl[snow] = 11
            scl[clouds > 0] = 8
            scl[clouds > 0.3] = 9
            return scl
        mean, std = (L1C_STATS if scene.product == "S2L1C" else L2A_STATS)[band]
        w_veg = VEGETATION_WEIGHT[band]
        texture = 0.8 * fields.brightness + w_veg * vegetation + 1.2 * fields.regional
        value = mean + std * 1.6 * texture
        value = np.where(water, 0.15 * mean + 0.1 * std * fields.brightness, value)
        value = np.where(snow, value * 0.2 + 7000.0 * (1.0 - 0.5 * max(w_veg, 0.0)), value)
        value = np.where(clouds > 0, value * 0.3 + 6000.0 + 4000.0 * clouds, value)
        # Digital numbers are whole, as in the archive.
        return np.rint(np.clip(value, 0.0, 10_000.0)).astype(np.float32)

    def _apply_swath_edge(
        self, scene: Scene, grid: PixelGrid, out: NDArray[np.float32], key: int
    ) -> None:
        """With probability ``partial_prob`` a swath edge crosses the area: NaN beyond it."""
        if _scalar_unit(self.params.seed, 41, key) >= self.params.partial_prob:
            return
        angle = 2.0 * math.pi * _scalar_unit(self.params.seed, 42, key)
        # Edge distance from the centre, in units of the area's half width: 0.55 .. 1.45, so
        # the edge sometimes only grazes the final crop and sometimes cuts deep into it.
        reach = 0.55 + 0.9 * _scalar_unit(self.params.seed, 43, key)
        rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
        half = grid.width / 2.0
        dx, dy = (cols + 0.5 - half) / half, (rows + 0.5 - half) / half
        beyond = dx * math.cos(angle) + dy * math.sin(angle) > reach
        out[:, beyond] = np.nan
