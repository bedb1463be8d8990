"""Stage `align`, pure part: one UTM grid per location (SPEC section 5). No file I/O here.

1. Majority CRS over the S-2 L2A timestamps; a tie goes to the zone holding the centre
   (:func:`ssl4eo_build.geo.majority_crs`, which the download stage uses too).
2. Reference grid: 264 x 264 px at 10 m centred on the location, edges on the ``lattice_m``
   lattice of that CRS (10 m, the native pixel lattice, by default; the raw files' 60 m
   lattice is a sub-lattice of it, so timestamps in that CRS are still sliced).
3. Timestamps on the same lattice are sliced (no resampling); others, and S-1, are reprojected
   onto the reference grid (nearest by default).
4. NaN policy: a location is rejected when any (modality, timestamp, band) has more than
   ``nan_threshold`` missing pixels; otherwise each missing pixel takes the value of the nearest
   valid pixel of its band and timestamp (Euclidean distance transform).
5. Derived layers (cloud mask, S2RGB, NDVI, LULC classes) are in :mod:`ssl4eo_build.derive`.

Arrays are float (missing: NaN) or int16 (missing: ``INT16_MISSING``); S-2 stays int16 from the
raw file to the cube, as the output stores it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject
from scipy import ndimage

from ..geo import LonLat
from ..grid import PixelGrid, centred_grid, transformer
from ..raster_io import is_missing, missing_value

RESAMPLING = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear}


def reference_grid(epsg: int, centre: LonLat, size_px: int, res_m: float, lattice_m: float):
    """The 264 x 264 crop: centred on the location, edges on the lattice of ``epsg``."""
    return centred_grid(epsg, centre, size_px, res_m, lattice_m)


def footprint_grid(wkb: bytes, epsg: int, res_m: float, lattice_m: float) -> PixelGrid:
    """The patch a published footprint describes: its corners transformed to ``epsg`` (the
    index's tile CRS) give the edges, snapped to the ``lattice_m`` lattice (a footprint made
    from a patch on that lattice comes back exactly)."""
    import shapely

    corners = shapely.get_coordinates(shapely.from_wkb(wkb))
    xs, ys = transformer(4326, epsg).transform(corners[:, 0], corners[:, 1])
    left = round(float(np.min(xs)) / lattice_m) * lattice_m
    right = round(float(np.max(xs)) / lattice_m) * lattice_m
    top = round(float(np.max(ys)) / lattice_m) * lattice_m
    bottom = round(float(np.min(ys)) / lattice_m) * lattice_m
    width, height = round((right - left) / res_m), round((top - bottom) / res_m)
    return PixelGrid(epsg, float(left), float(top), res_m, res_m, width, height)


def onto_grid(
    data: NDArray[Any],
    src: PixelGrid,
    dst: PixelGrid,
    resampling: str = "nearest",
    out: NDArray[Any] | None = None,
) -> NDArray[Any]:
    """``data`` (bands, h, w) on ``src`` brought onto ``dst``: a slice when the lattices match,
    a GDAL reprojection otherwise. Pixels without a source are missing. Written into ``out`` (a
    C-contiguous (bands, h, w) array of ``data``'s dtype) when given.

    Nearest neighbour takes GDAL's choice of source pixel from :func:`nearest_source` (one warp
    per pair of grids, shared by every band and timestamp on them) and gathers the values.
    """
    if out is None:
        out = np.empty((data.shape[0], dst.height, dst.width), dtype=data.dtype)
    if src.contains_grid(dst):
        col, row = dst.offset_in(src)
        out[...] = data[:, row : row + dst.height, col : col + dst.width]
        return out
    nodata = missing_value(data.dtype)
    if resampling == "nearest":
        index = nearest_source(src, dst)
        np.take(data.reshape(data.shape[0], -1), index, axis=1, out=out, mode="clip")
        out[:, index < 0] = nodata
        return out
    out.fill(nodata)
    reproject(
        source=np.ascontiguousarray(data),
        destination=out,
        src_transform=src.transform,
        src_crs=CRS.from_epsg(src.epsg),
        src_nodata=nodata,
        dst_transform=dst.transform,
        dst_crs=CRS.from_epsg(dst.epsg),
        dst_nodata=nodata,
        resampling=RESAMPLING[resampling],
    )
    return out


@lru_cache(maxsize=16)
def nearest_source(src: PixelGrid, dst: PixelGrid) -> NDArray[np.intp]:
    """(h, w) flat index into ``src`` of the pixel GDAL's nearest-neighbour reprojection takes
    for each pixel of ``dst``; -1 where there is none. Found by warping the index itself."""
    index = np.arange(src.height * src.width, dtype=np.int32).reshape(1, src.height, src.width)
    taken = np.full((1, dst.height, dst.width), -1, dtype=np.int32)
    reproject(
        source=index,
        destination=taken,
        src_transform=src.transform,
        src_crs=CRS.from_epsg(src.epsg),
        src_nodata=-1,
        dst_transform=dst.transform,
        dst_crs=CRS.from_epsg(dst.epsg),
        dst_nodata=-1,
        resampling=Resampling.nearest,
    )
    found = taken[0].astype(np.intp)
    found.flags.writeable = False  # shared through the cache
    return found


def nan_fractions(missing: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Missing fraction per leading index of a (..., h, w) missing-pixel mask."""
    plane = missing.shape[-2] * missing.shape[-1]
    return np.count_nonzero(missing, axis=(-2, -1)) / plane


def worst_nan(missing: dict[str, NDArray[np.bool_]]) -> tuple[float, tuple[str, int, int]]:
    """Largest missing fraction over every (modality, timestamp, band) of (time, band, y, x)
    missing-pixel masks, and where it is."""
    worst, where = -1.0, ("", 0, 0)
    for name, mask in missing.items():
        fractions = nan_fractions(mask)
        t, b = np.unravel_index(int(np.argmax(fractions)), fractions.shape)
        if fractions[t, b] > worst:
            worst, where = float(fractions[t, b]), (name, int(t), int(b))
    return worst, where


def fill_nearest(image: NDArray[Any], missing: NDArray[np.bool_] | None = None) -> NDArray[Any]:
    """Each missing pixel of a 2-D image (``missing``, found when not given) takes the value
    of the nearest valid pixel (ties: scipy's)."""
    if missing is None:
        missing = is_missing(image)
    if not missing.any():
        return image
    if missing.all():
        raise ValueError("cannot fill an image without valid pixels")
    indices = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
    return image[tuple(indices)]


def fill_cube(cube: NDArray[Any], missing: NDArray[np.bool_]) -> NDArray[Any]:
    """:func:`fill_nearest` on every (..., h, w) plane of ``cube`` that has a pixel
    ``missing`` (its mask, the cube's shape; in place)."""
    flat = cube.reshape(-1, *cube.shape[-2:])
    masks = missing.reshape(flat.shape)
    for i in np.flatnonzero(masks.any(axis=(1, 2))):
        flat[i] = fill_nearest(flat[i], masks[i])
    return cube
