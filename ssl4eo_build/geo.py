"""Geodesy helpers: metric offsets, distances, UTM zones.

Distances are WGS84 geodesics (pyproj.Geod); the unit-sphere vectors are only a fast filter in
front of the exact computation, with a margin larger than the sphere/ellipsoid discrepancy.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyproj import Geod

WGS84 = Geod(ellps="WGS84")
EARTH_MEAN_RADIUS_M = 6_371_008.8
# Sphere great-circle and WGS84 geodesic distances differ by less than 0.6 %; candidates inside
# this relative margin of a threshold get the exact geodesic.
SPHERE_MARGIN = 1.02


@dataclass(frozen=True, order=True)
class LonLat:
    """A point in EPSG:4326, longitude first (the order GIS APIs use)."""

    lon: float
    lat: float

    def __post_init__(self) -> None:
        if not (-180.0 <= self.lon <= 180.0 and -90.0 <= self.lat <= 90.0):
            raise ValueError(f"not a lon/lat position: lon={self.lon}, lat={self.lat}")


def wrap_lon(lon: NDArray[np.float64]) -> NDArray[np.float64]:
    """Longitudes folded into [-180, 180)."""
    return (np.asarray(lon) + 180.0) % 360.0 - 180.0


def offset_by_metres(
    lon: ArrayLike, lat: ArrayLike, east_m: ArrayLike, north_m: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Move points by a metric (east, north) offset along the WGS84 geodesic.

    A Gaussian offset drawn in metres therefore stays a 50 km Gaussian at every latitude, and
    offsets across a pole or the antimeridian land where they should.
    """
    east = np.asarray(east_m, dtype=np.float64)
    north = np.asarray(north_m, dtype=np.float64)
    azimuth = np.degrees(np.arctan2(east, north))
    distance = np.hypot(east, north)
    lon2, lat2, _ = WGS84.fwd(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64), azimuth, distance
    )
    return wrap_lon(np.asarray(lon2)), np.clip(np.asarray(lat2), -90.0, 90.0)


def geodesic_distance_m(
    lon1: ArrayLike, lat1: ArrayLike, lon2: ArrayLike, lat2: ArrayLike
) -> NDArray[np.float64]:
    """WGS84 geodesic distance in metres (broadcasting)."""
    a, b, c, d = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (lon1, lat1, lon2, lat2))
    )
    _, _, dist = WGS84.inv(a.ravel(), b.ravel(), c.ravel(), d.ravel())
    return np.asarray(dist, dtype=np.float64).reshape(a.shape)


def unit_vectors(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.float64]:
    """Unit vectors on the sphere, shape (..., 3)."""
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    cos_phi = np.cos(phi)
    return np.stack([cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)], axis=-1)


def pairs_within(points: NDArray[np.float64], radius: float) -> NDArray[np.int64]:
    """Every pair ``(i, j)``, ``i < j``, of ``points`` (rows) closer than ``radius``, shape (m, 2).

    The points go into a grid of cubic cells with side ``radius`` (or more), so a close pair
    shares a cell or lies in two neighbouring ones. All points are searched at once: the
    occupied cells are sorted by key. The last axis has stride 1, so the three neighbours of a
    cell along it in another row of cells are consecutive keys: one ``searchsorted`` per
    forward row finds all three. Cheap when cells hold few points, as sampled locations do.
    """
    n = len(points)
    if n == 0:
        return np.empty((0, 2), dtype=np.int64)
    side = radius  # a cell no smaller than the radius; larger when keys would overflow int64
    while np.prod(np.floor(np.ptp(points, axis=0) / side) + 3.0) > 2.0**62:
        side *= 2.0
    cell = np.floor(points / side).astype(np.int64)
    cell -= cell.min(axis=0)
    # One spare cell past the largest in each axis: a neighbour key off the grid's edge lands
    # on that spare layer, where no point lies, instead of aliasing another cell.
    strides = np.cumprod(np.r_[1, cell.max(axis=0)[:0:-1] + 2])[::-1]
    key = cell @ strides
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    cells, count = sorted_key[first], np.diff(np.r_[first, n])
    found = []
    multi = np.flatnonzero(count > 1)  # cells whose points pair among themselves
    for a, b in itertools.chain([(multi, multi)], _forward_neighbours(cells, strides)):
        size = count[a] * count[b]
        owner = np.repeat(np.arange(len(a)), size)
        rank = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
        i = first[a][owner] + rank // count[b][owner]
        j = first[b][owner] + rank % count[b][owner]
        if a is b:  # pairs within a cell
            i, j = i[i < j], j[i < j]
        found.append(np.column_stack([order[i], order[j]]))
    pairs = np.concatenate(found)
    close = np.square(points[pairs[:, 0]] - points[pairs[:, 1]]).sum(axis=1) < radius * radius
    return np.sort(pairs[close], axis=1)


def _forward_neighbours(
    cells: NDArray[np.int64], strides: NDArray[np.int64]
) -> Iterator[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """For the sorted, distinct cell keys ``cells``, each neighbour of a larger key: the
    indices ``a`` of the cells that have it and ``b`` of that neighbour."""
    last = len(cells) - 1
    index = np.arange(len(cells))
    ahead = index[:-1][cells[1:] == cells[:-1] + 1]  # the next cell along the last axis
    yield ahead, ahead + 1
    for offset in itertools.product((-1, 0, 1), repeat=len(strides) - 1):
        row = int(np.dot(offset, strides[:-1]))
        if row <= 0:
            continue  # each neighbouring pair of cells is visited once, from its lower key
        # Keys row-1, row, row+1 ahead of each cell: where the first would sit, then the
        # next positions, each one further only when the key before it is there.
        at = np.searchsorted(cells, cells + (row - 1))
        for step in (-1, 0, 1):
            clipped = np.minimum(at, last)
            hit = cells[clipped] == cells + (row + step)
            yield index[hit], clipped[hit]
            at = at + hit


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the standard UTM zone containing the point (WGS84 / UTM, no exceptions)."""
    zone = math.floor((lon + 180.0) / 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def majority_crs(epsgs: Sequence[int], centre: LonLat) -> int:
    """The EPSG code most timestamps share; a tie goes to the UTM zone holding ``centre``."""
    counts = Counter(epsgs)
    best = max(counts.values())
    tied = sorted(e for e, n in counts.items() if n == best)
    own = utm_epsg(centre.lon, centre.lat)
    return own if own in tied else tied[0]
