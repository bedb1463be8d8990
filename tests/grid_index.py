"""The overlap rule one candidate at a time, with a lon/lat grid index: the oracle the
chunked sampler (``ssl4eo_build.sample.sampling``) is tested against.

The index is a lon/lat grid (1-degree cells by default, 360 x 180). A candidate is tested
against every cell that can hold a point within the threshold — its own cell and, near a
border, the neighbouring ones of the 3 x 3 neighbourhood (wrapping at the antimeridian);
towards the poles, where one degree of longitude shrinks, the neighbourhood widens in
longitude until it covers the threshold, up to the whole ring of cells.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ssl4eo_build.geo import (
    EARTH_MEAN_RADIUS_M,
    SPHERE_MARGIN,
    geodesic_distance_m,
    unit_vectors,
)


@dataclass
class _Cell:
    vectors: NDArray[np.float64] = field(default_factory=lambda: np.empty((4, 3)))
    lonlat: NDArray[np.float64] = field(default_factory=lambda: np.empty((4, 2)))
    count: int = 0

    def append(self, vector: NDArray[np.float64], lon: float, lat: float) -> None:
        if self.count == len(self.vectors):
            self.vectors = np.concatenate([self.vectors, np.empty_like(self.vectors)])
            self.lonlat = np.concatenate([self.lonlat, np.empty_like(self.lonlat)])
        self.vectors[self.count] = vector
        self.lonlat[self.count] = (lon, lat)
        self.count += 1


class OverlapIndex:
    """Grid index of accepted patch centres answering "is anything closer than d?"."""

    def __init__(self, min_distance_m: float, cell_deg: float = 1.0) -> None:
        self.min_distance_m = min_distance_m
        self.cell_deg = cell_deg
        self.n_cols = round(360.0 / cell_deg)
        self.n_rows = round(180.0 / cell_deg)
        self._cells: dict[tuple[int, int], _Cell] = {}
        self._size = 0
        # Sphere prefilter: dot products above this are within the threshold plus margin.
        self._cos_prefilter = math.cos(
            min(math.pi, min_distance_m * SPHERE_MARGIN / EARTH_MEAN_RADIUS_M)
        )
        # Half-width of the search neighbourhood along a meridian, in degrees (with margin).
        self._reach_lat_deg = math.degrees(min_distance_m * SPHERE_MARGIN / EARTH_MEAN_RADIUS_M)

    def __len__(self) -> int:
        return self._size

    def cell_of(self, lon: float, lat: float) -> tuple[int, int]:
        col = math.floor((lon + 180.0) / self.cell_deg) % self.n_cols
        row = min(max(math.floor((lat + 90.0) / self.cell_deg), 0), self.n_rows - 1)
        return row, col

    def search_cells(self, lon: float, lat: float) -> list[tuple[int, int]]:
        """Every cell that can hold a point within the threshold of (lon, lat)."""
        lat_lo, lat_hi = lat - self._reach_lat_deg, lat + self._reach_lat_deg
        row_lo, _ = self.cell_of(lon, max(lat_lo, -90.0))
        row_hi, _ = self.cell_of(lon, min(lat_hi, 90.0))
        # Longitude reach at the most poleward latitude of the band (exact on the sphere:
        # sin(d / 2R) = cos(lat) sin(dlon / 2) for the closest point on that parallel).
        pole_lat = min(90.0, max(abs(lat_lo), abs(lat_hi)))
        cos_lat = math.cos(math.radians(pole_lat))
        half_chord = math.sin(min(math.pi / 2, self._reach_lat_deg * math.pi / 360.0))
        if pole_lat >= 90.0 or cos_lat <= half_chord:
            cols: Iterable[int] = range(self.n_cols)
        else:
            reach_lon = math.degrees(2.0 * math.asin(half_chord / cos_lat))
            if reach_lon * 2 >= 360.0 - self.cell_deg:
                cols = range(self.n_cols)
            else:
                lo = math.floor((lon - reach_lon + 180.0) / self.cell_deg)
                hi = math.floor((lon + reach_lon + 180.0) / self.cell_deg)
                cols = sorted({c % self.n_cols for c in range(lo, hi + 1)})
        return [(r, c) for r in range(row_lo, row_hi + 1) for c in cols]

    def is_interior(self, lon: NDArray[np.float64], lat: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Vectorised: True where a point's own cell is the only one it must search."""
        reach_lat = self._reach_lat_deg
        cos_lat = np.cos(np.radians(np.minimum(np.abs(lat) + reach_lat, 90.0)))
        reach_lon = np.where(cos_lat > 1e-9, reach_lat / np.maximum(cos_lat, 1e-9) * 1.01, 360.0)
        fx = np.mod(lon + 180.0, self.cell_deg)
        fy = np.mod(lat + 90.0, self.cell_deg)
        return (
            (fx > reach_lon)
            & (fx < self.cell_deg - reach_lon)
            & (fy > reach_lat)
            & (fy < self.cell_deg - reach_lat)
        )

    def cells_of(self, lon: NDArray[np.float64], lat: NDArray[np.float64]) -> list[tuple[int, int]]:
        """Vectorised :meth:`cell_of`."""
        cols = np.floor((lon + 180.0) / self.cell_deg).astype(np.int64) % self.n_cols
        rows = np.clip(np.floor((lat + 90.0) / self.cell_deg).astype(np.int64), 0, self.n_rows - 1)
        return list(zip(rows.tolist(), cols.tolist(), strict=True))

    def conflicts(
        self,
        lon: float,
        lat: float,
        vector: NDArray[np.float64],
        own_cell: tuple[int, int] | None = None,
    ) -> bool:
        """True when an indexed centre lies closer than the threshold (WGS84 geodesic).

        ``vector`` is the point's unit vector; ``own_cell`` is given only for points where
        :meth:`is_interior` holds: no point within reach can lie in a neighbour cell.
        """
        keys = [own_cell] if own_cell is not None else self.search_cells(lon, lat)
        for key in keys:
            cell = self._cells.get(key)
            if cell is None:
                continue
            close = cell.vectors[: cell.count] @ vector > self._cos_prefilter
            if close.any():
                near = np.flatnonzero(close)
                others = cell.lonlat[near]
                dist = geodesic_distance_m(lon, lat, others[:, 0], others[:, 1])
                if np.any(dist < self.min_distance_m):
                    return True
        return False

    def add(
        self,
        lon: float,
        lat: float,
        vector: NDArray[np.float64] | None = None,
        key: tuple[int, int] | None = None,
    ) -> None:
        key = key or self.cell_of(lon, lat)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell()
        cell.append(unit_vectors(lon, lat) if vector is None else vector, lon, lat)
        self._size += 1
