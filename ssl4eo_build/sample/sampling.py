"""Stage `sample`, pure part: overlap-free Gaussian sampling around cities.

Candidates form one deterministic stream: candidate ``k`` belongs to block ``k // batch_size``,
and each block draws from ``numpy.random.default_rng([seed, block])``. A run that stops after
``k`` candidates can therefore resume (or top up) at candidate ``k`` and continue exactly the
stream an uninterrupted run would have drawn.

Overlap: two patches overlap when their centres are closer than ``overlap_fraction * patch_m``
(WGS84 geodesic). A candidate is accepted when no earlier accepted location lies within that
distance. The rule is decided for many blocks at once (:func:`_accept`): a grid over unit
vectors finds every pair within the threshold's chord (with a margin), the exact geodesic keeps
the pairs really closer, and candidates with an earlier neighbour are decided in stream order —
the same result as testing one candidate at a time, across the antimeridian and at the poles.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..config import SampleConfig
from ..geo import (
    EARTH_MEAN_RADIUS_M,
    SPHERE_MARGIN,
    LonLat,
    geodesic_distance_m,
    offset_by_metres,
    pairs_within,
    unit_vectors,
)
from .cities import CityTable


@dataclass(frozen=True)
class CandidateBlock:
    """One block of the candidate stream: city index and position of each candidate."""

    first: int
    city: NDArray[np.int64]
    lon: NDArray[np.float64]
    lat: NDArray[np.float64]


def candidate_block(cities: CityTable, cfg: SampleConfig, block: int) -> CandidateBlock:
    """Candidates ``block * batch_size ...`` of the stream: uniform city, Gaussian metric offset."""
    rng = np.random.default_rng([cfg.seed, block])
    size = cfg.batch_size
    city = rng.integers(0, len(cities), size=size)
    east, north = rng.normal(0.0, cfg.sigma_m, size=(2, size))
    lon, lat = offset_by_metres(cities.lon[city], cities.lat[city], east, north)
    return CandidateBlock(first=block * size, city=city, lon=lon, lat=lat)


@dataclass(frozen=True)
class SampleProgress:
    """What one chunk of the stream produced, as parallel arrays of the accepted candidates
    (stream index, city index, position); ``next_candidate`` is where to resume."""

    candidate: NDArray[np.int64]
    city: NDArray[np.int64]
    lon: NDArray[np.float64]
    lat: NDArray[np.float64]
    next_candidate: int
    overlaps: int

    def __len__(self) -> int:
        return len(self.candidate)


def sample_locations(
    cities: CityTable,
    cfg: SampleConfig,
    existing: Iterable[LonLat],
    n_new: int,
    start_candidate: int = 0,
) -> Iterator[SampleProgress]:
    """Draw candidates from ``start_candidate`` until ``n_new`` more locations are accepted.

    Yields after each chunk of blocks so the caller can persist progress; ``existing``
    locations are indexed first and never overlapped. The rule is sequential — a candidate is
    accepted when no earlier accepted location (or existing one) lies within the threshold —
    and is applied to many blocks at once (:func:`_accept`), with the same result.
    """
    accepted_lonlat = np.array([(p.lon, p.lat) for p in existing], dtype=np.float64).reshape(-1, 2)
    budget = max(n_new, 1) * cfg.max_candidates_per_location
    remaining = n_new
    k = start_candidate
    # Accepted share of candidates, refined after each chunk of blocks. A chunk draws 5 % more
    # than the rate asks: drawing too many wastes little, too few costs another chunk.
    rate = 0.9
    size = cfg.batch_size
    while remaining > 0:
        first = k // size
        skip = k - first * size  # candidates of the first block already drawn
        wanted = min(remaining * 1.05 / rate, start_candidate + budget - k)  # within the budget
        count = min(MAX_CHUNK_BLOCKS, max(1, math.ceil((skip + wanted) / size)))
        with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:  # pyproj frees the GIL
            blocks = list(
                pool.map(lambda b: candidate_block(cities, cfg, b), range(first, first + count))
            )
        lon = np.concatenate([blk.lon for blk in blocks])[skip:]
        lat = np.concatenate([blk.lat for blk in blocks])[skip:]
        city = np.concatenate([blk.city for blk in blocks])[skip:]
        keep = _accept(accepted_lonlat, lon, lat, cfg.min_distance_m)
        taken = np.cumsum(keep)
        end = len(keep)
        if taken[-1] >= remaining:  # the candidate that fills the wanted count ends the run
            end = int(np.searchsorted(taken, remaining)) + 1
        chosen = np.flatnonzero(keep[:end])
        accepted_lonlat = np.concatenate([accepted_lonlat, np.column_stack([lon, lat])[chosen]])
        rate = max(0.02, len(chosen) / end)
        # The budget is checked where each block of the stream ends, as if drawn one by one.
        stop = end
        for hi in [*range(size - skip, end, size), end]:
            if k + hi - start_candidate >= budget and np.searchsorted(chosen, hi) < remaining:
                stop = hi
                break
        picks = chosen[chosen < stop]
        remaining -= len(picks)
        yield SampleProgress(
            picks + k, city[picks], lon[picks], lat[picks], k + stop, stop - len(picks)
        )
        if remaining > 0 and k + stop - start_candidate >= budget:
            raise SaturationError(n_new - remaining, n_new, k + stop - start_candidate)
        k += end


# At most this many blocks are decided together (about a million candidates by default).
MAX_CHUNK_BLOCKS = 256


def _accept(
    accepted_lonlat: NDArray[np.float64],
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
    min_distance_m: float,
) -> NDArray[np.bool_]:
    """Which candidates (in stream order) v1's rule accepts, given the locations accepted so
    far: every pair closer than the threshold is found at once (a grid over unit vectors,
    the sphere distance with a margin, then the exact WGS84 geodesic for those pairs); then,
    in stream order, a candidate is kept unless an earlier kept one is among its pairs
    (:func:`_decide_in_order`)."""
    n_old = len(accepted_lonlat)
    points = np.concatenate([accepted_lonlat, np.column_stack([lon, lat])])
    angle = min(math.pi, min_distance_m * SPHERE_MARGIN / EARTH_MEAN_RADIUS_M)
    radius = 2.0 * math.sin(angle / 2.0)  # the chord of the threshold's angle, with margin
    pairs = pairs_within(unit_vectors(points[:, 0], points[:, 1]), radius)
    pairs = pairs[pairs[:, 1] >= n_old]  # pairs of earlier locations are not in question
    a, b = points[pairs[:, 0]], points[pairs[:, 1]]
    pairs = pairs[geodesic_distance_m(a[:, 0], a[:, 1], b[:, 0], b[:, 1]) < min_distance_m] - n_old
    keep = np.ones(len(lon), dtype=bool)
    keep[pairs[pairs[:, 0] < 0, 1]] = False  # too close to a location accepted before
    inner = pairs[pairs[:, 0] >= 0]
    return _decide_in_order(keep, inner[keep[inner[:, 1]]])


def _decide_in_order(keep: NDArray[np.bool_], pairs: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Apply the sequential rule to ``pairs`` (earlier, later) of still-kept later candidates:
    a candidate stays kept unless an earlier kept one is its pair. Decided in rounds, all
    candidates at once: a candidate goes as soon as one earlier pair is known kept, and stays
    once every earlier pair is known gone. The earliest open candidate is decided in every
    round, and chains are short, so a few rounds settle a million candidates."""
    keep = keep.copy()
    open_ = np.zeros(len(keep), dtype=bool)
    open_[pairs[:, 1]] = True
    while len(pairs):
        earlier, later = pairs[:, 0], pairs[:, 1]
        known = ~open_[earlier]
        goes = np.zeros(len(keep), dtype=bool)
        goes[later[known & keep[earlier]]] = True
        waits = np.zeros(len(keep), dtype=bool)
        waits[later[~known]] = True
        keep[goes] = False
        open_[goes | (open_ & ~waits)] = False
        pairs = pairs[open_[later]]
    return keep


class SaturationError(RuntimeError):
    """The cities cannot hold the requested number of non-overlapping patches."""

    def __init__(self, placed: int, wanted: int, drawn: int) -> None:
        super().__init__(
            f"placed only {placed} of {wanted} new locations after {drawn} candidates; "
            "the areas around the cities are full at this overlap threshold"
        )
        self.placed, self.wanted, self.drawn = placed, wanted, drawn


def v1_same_cell_sample(cities: CityTable, cfg: SampleConfig, n: int) -> list[tuple[float, float]]:
    """A plain re-implementation of the v1 grid scan, for benchmarks and comparison only.

    v1 looked only at the candidate's own 1-degree cell and compared with haversine distances in
    a Python loop, so pairs across a cell border could overlap.
    """
    cells: dict[tuple[int, int], list[tuple[float, float]]] = {}
    out: list[tuple[float, float]] = []
    radius = EARTH_MEAN_RADIUS_M
    k = 0
    while len(out) < n:
        if k >= max(n, 1) * cfg.max_candidates_per_location:
            raise SaturationError(len(out), n, k)
        block = candidate_block(cities, cfg, k // cfg.batch_size)
        k += cfg.batch_size
        for lon, lat in zip(block.lon.tolist(), block.lat.tolist(), strict=True):
            key = (math.floor(lon), math.floor(lat))
            neighbours = cells.setdefault(key, [])
            too_close = False
            for lon2, lat2 in neighbours:
                dphi = math.radians(lat2 - lat)
                dlam = math.radians(lon2 - lon)
                a = (
                    math.sin(dphi / 2) ** 2
                    + math.cos(math.radians(lat))
                    * math.cos(math.radians(lat2))
                    * math.sin(dlam / 2) ** 2
                )
                if 2 * radius * math.asin(math.sqrt(a)) < cfg.min_distance_m:
                    too_close = True
                    break
            if not too_close:
                neighbours.append((lon, lat))
                out.append((lon, lat))
                if len(out) == n:
                    break
    return out
