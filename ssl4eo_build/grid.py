"""Pixel grids: an immutable (CRS, transform, shape) value with explicit axis order.

A grid is north-up: ``left``/``top`` are the outer edges of the top-left pixel, ``res_x`` and
``res_y`` are positive pixel sizes in CRS units. Operations return new grids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from affine import Affine
from numpy.typing import NDArray
from pyproj import CRS, Transformer

from .geo import LonLat

METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class PixelGrid:
    epsg: int
    left: float
    top: float
    res_x: float
    res_y: float
    width: int
    height: int

    @property
    def transform(self) -> Affine:
        return Affine(self.res_x, 0.0, self.left, 0.0, -self.res_y, self.top)

    @property
    def shape_yx(self) -> tuple[int, int]:
        return self.height, self.width

    def x_centres(self) -> NDArray[np.float64]:
        return np.asarray(self.left + (np.arange(self.width) + 0.5) * self.res_x, dtype=np.float64)

    def y_centres(self) -> NDArray[np.float64]:
        return np.asarray(self.top - (np.arange(self.height) + 0.5) * self.res_y, dtype=np.float64)

    def crop(self, col_off: int, row_off: int, width: int, height: int) -> PixelGrid:
        """Sub-grid starting at pixel (col_off, row_off); must lie inside this grid."""
        if (
            col_off < 0
            or row_off < 0
            or col_off + width > self.width
            or row_off + height > self.height
        ):
            raise ValueError(
                f"crop ({col_off}, {row_off}, {width}x{height}) outside {self.width}x{self.height}"
            )
        return replace(
            self,
            left=self.left + col_off * self.res_x,
            top=self.top - row_off * self.res_y,
            width=width,
            height=height,
        )

    def offset_in(self, outer: PixelGrid) -> tuple[int, int]:
        """(col, row) of this grid's top-left pixel in ``outer``; both must share the lattice."""
        if outer.epsg != self.epsg or outer.res_x != self.res_x or outer.res_y != self.res_y:
            raise ValueError("grids differ in CRS or resolution")
        col = (self.left - outer.left) / self.res_x
        row = (outer.top - self.top) / self.res_y
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            raise ValueError("grids are not on the same pixel lattice")
        return round(col), round(row)

    def contains_grid(self, inner: PixelGrid) -> bool:
        try:
            col, row = inner.offset_in(self)
        except ValueError:
            return False
        return (
            col >= 0
            and row >= 0
            and col + inner.width <= self.width
            and row + inner.height <= self.height
        )

    def covering(self, other: PixelGrid, margin: int = 2) -> PixelGrid | None:
        """The smallest sub-grid of this grid holding ``other``'s footprint (its edges traced in
        this CRS) plus ``margin`` pixels; None when they do not overlap (the caller then reads the
        whole file)."""
        edge = np.linspace(0.0, 1.0, 21)
        u = np.concatenate([edge, np.ones_like(edge), edge[::-1], np.zeros_like(edge)])
        v = np.concatenate([np.zeros_like(edge), edge, np.ones_like(edge), edge[::-1]])
        xs = other.left + u * other.width * other.res_x
        ys = other.top - v * other.height * other.res_y
        if other.epsg != self.epsg:
            xs, ys = (np.asarray(a) for a in transformer(other.epsg, self.epsg).transform(xs, ys))
        cols, rows = (xs - self.left) / self.res_x, (self.top - ys) / self.res_y
        if not (np.isfinite(cols).all() and np.isfinite(rows).all()):
            return None  # the footprint does not map into this CRS
        col0 = max(int(np.floor(cols.min())) - margin, 0)
        row0 = max(int(np.floor(rows.min())) - margin, 0)
        col1 = min(int(np.ceil(cols.max())) + margin, self.width)
        row1 = min(int(np.ceil(rows.max())) + margin, self.height)
        if col1 <= col0 or row1 <= row0:
            return None
        return self.crop(col0, row0, col1 - col0, row1 - row0)


@lru_cache(maxsize=256)
def transformer(src_epsg: int, dst_epsg: int) -> Transformer:
    return Transformer.from_crs(CRS.from_epsg(src_epsg), CRS.from_epsg(dst_epsg), always_xy=True)


def is_geographic(epsg: int) -> bool:
    return epsg == 4326


def centred_grid(
    epsg: int, centre: LonLat, size_px: int, res_m: float, lattice_m: float
) -> PixelGrid:
    """``size_px`` square grid around ``centre`` in ``epsg``, edges on the ``lattice_m`` lattice.

    In a projected CRS the edges are multiples of ``lattice_m`` metres so 10/20/60 m pixels
    nest. In EPSG:4326 the pixel size is ``res_m`` expressed in degrees at the centre's latitude
    and edges snap to multiples of ``lattice_m / res_m`` pixels from the origin.
    """
    if is_geographic(epsg):
        res_y = res_m / METRES_PER_DEGREE
        res_x = res_y / max(math.cos(math.radians(centre.lat)), 1e-6)
        x, y = centre.lon, centre.lat
        step_x, step_y = res_x * lattice_m / res_m, res_y * lattice_m / res_m
    else:
        res_x = res_y = res_m
        x, y = transformer(4326, epsg).transform(centre.lon, centre.lat)
        step_x = step_y = lattice_m
    half_x, half_y = size_px * res_x / 2.0, size_px * res_y / 2.0
    left = round((x - half_x) / step_x) * step_x
    top = round((y + half_y) / step_y) * step_y
    return PixelGrid(epsg, float(left), float(top), res_x, res_y, size_px, size_px)


def centre_pixel(grid: PixelGrid, centre: LonLat) -> tuple[float, float]:
    """(col, row) position of ``centre`` in ``grid``, in fractional pixels."""
    x, y = transformer(4326, grid.epsg).transform(centre.lon, centre.lat)
    return (x - grid.left) / grid.res_x, (grid.top - y) / grid.res_y


def lonlat_of_pixels(grid: PixelGrid) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """lon/lat of every pixel centre, each of shape (height, width)."""
    xs, ys = np.meshgrid(grid.x_centres(), grid.y_centres())
    if is_geographic(grid.epsg):
        return xs, ys
    lon, lat = transformer(grid.epsg, 4326).transform(xs, ys)
    return np.asarray(lon), np.asarray(lat)
