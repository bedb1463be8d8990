"""Derived layers, pure numpy: the cloud mask, S2RGB, NDVI and the LULC classes (SPEC sections
5 and 6), and the :class:`AlignedLayers` every modality's ``derive`` function reads.

Cloud-mask classes (v1.1's: land, water, snow, thin cloud, thick cloud, cloud shadow, no data):
water, snow and shadow from the L2A scene classification (SCL); clouds from Cloud Score+ where
the granule has it (``cs_cdf`` by default: below ``cs_clear`` thin cloud, below ``cs_thick``
thick cloud, ``align`` settings) and from SCL alone otherwise; pixels missing before the fill
are "no data".

LULC: the land-cover class of the timestamp's year mapped to 0-9 (the source's table in the
registry), then the timestamp's cloud mask overrides it: snow -> 7, thin or thick cloud -> 8.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .config import AlignConfig

if TYPE_CHECKING:
    from .modalities import Product

CLOUD_CLASSES = {
    0: "land",
    1: "water",
    2: "snow",
    3: "thin cloud",
    4: "thick cloud",
    5: "cloud shadow",
    6: "no data",
}
LAND, WATER, SNOW, THIN_CLOUD, THICK_CLOUD, SHADOW, NO_DATA = range(7)
# SCL code -> cloud-mask class. SCL: 0 no data, 1 saturated/defective, 2 dark area,
# 3 cloud shadow, 4 vegetation, 5 not vegetated, 6 water, 7 unclassified, 8 cloud medium
# probability, 9 cloud high probability, 10 thin cirrus, 11 snow/ice.
SCL_TO_CLOUD = np.array([6, 6, 0, 5, 0, 0, 1, 0, 4, 4, 3, 2], dtype=np.uint8)

LULC_CLASSES = {
    0: "no data",
    1: "water",
    2: "trees",
    3: "flooded vegetation",
    4: "crops",
    5: "built area",
    6: "bare ground",
    7: "snow/ice",
    8: "clouds",
    9: "rangeland",
}
# Source class -> LULC class. ESRI 10 m annual land cover: 1 water, 2 trees, 4 flooded
# vegetation, 5 crops, 7 built area, 8 bare ground, 9 snow/ice, 10 clouds, 11 rangeland.
ESRI_TO_LULC = {1: 1, 2: 2, 4: 3, 5: 4, 7: 5, 8: 6, 9: 7, 10: 8, 11: 9}
# Dynamic World label: 0 water, 1 trees, 2 grass, 3 flooded vegetation, 4 crops, 5 shrub and
# scrub, 6 built, 7 bare, 8 snow and ice (grass and shrub are ESRI's rangeland).
DYNAMIC_WORLD_TO_LULC = {0: 1, 1: 2, 2: 9, 3: 3, 4: 4, 5: 9, 6: 5, 7: 6, 8: 7}


@dataclass(frozen=True)
class AlignedLayers:
    """Every fetched layer on the reference grid, timestamps sorted by date: (time, band, y, x)
    per product, missing pixels filled or set as the product's ``missing`` says."""

    stacks: Mapping[str, NDArray[Any]]
    products: Mapping[str, Product]
    cloud_mask: NDArray[np.uint8]  # (time, y, x)
    settings: AlignConfig

    def bands(self, product: str, names: Sequence[str]) -> NDArray[Any]:
        bands = self.products[product].bands
        index = [bands.index(name) for name in names]
        if index == list(range(len(bands))):
            return self.stacks[product]
        return self.stacks[product][:, index]


Derivation = Callable[[AlignedLayers], NDArray[Any]]


def stored(product: str, names: Sequence[str], dtype: str | None = None) -> Derivation:
    """The fetched bands ``names`` of ``product`` as they are (in ``dtype`` when given)."""

    def take(layers: AlignedLayers) -> NDArray[Any]:
        values = layers.bands(product, names)
        return values if dtype is None else values.astype(dtype)

    return take


def s2rgb(layers: AlignedLayers) -> NDArray[np.uint8]:
    rgb = layers.bands("S2L2A", ("B04", "B03", "B02"))
    return np.stack([s2_rgb(image, layers.settings) for image in rgb])


def ndvi(layers: AlignedLayers) -> NDArray[np.float16]:
    """(B08 - B04) / (B08 + B04) from L2A, in [-1, 1]; 0 where both are 0 (no reflectance
    says nothing about vegetation)."""
    red, nir = (layers.bands("S2L2A", (b,))[:, 0].astype(np.float32) for b in ("B04", "B08"))
    total = nir + red
    out = np.divide(nir - red, total, out=np.zeros_like(total), where=total != 0)
    return np.clip(out, -1.0, 1.0)[:, None].astype(np.float16)


def lulc(layers: AlignedLayers) -> NDArray[np.uint8]:
    """Land-cover classes 0-9 per timestamp, with snow and clouds from the cloud mask."""
    product = layers.products["LULC"]
    table = np.zeros(1 << 16, dtype=np.uint8)  # every int16 value, missing included: no data
    for source, target in (product.class_map or {}).items():
        table[source] = target
    raw = layers.stacks["LULC"][:, 0]
    out = table[raw.astype(np.int64) & 0xFFFF]
    mask = layers.cloud_mask
    out[mask == SNOW] = 7
    out[(mask == THIN_CLOUD) | (mask == THICK_CLOUD)] = 8
    return out[:, None]


def cloud_mask(
    scl: NDArray[Any],
    missing: NDArray[np.bool_],
    score: NDArray[np.floating[Any]] | None = None,
    settings: AlignConfig | None = None,
) -> NDArray[np.uint8]:
    """Cloud-mask classes of one timestamp from SCL and, where given and not NaN, the Cloud
    Score+ band ``score`` (0 cloudy .. 1 clear); pixels ``missing`` before the fill are no
    data."""
    codes = np.clip(np.nan_to_num(scl, nan=0.0), 0, len(SCL_TO_CLOUD) - 1).astype(np.intp)
    out = SCL_TO_CLOUD[codes]
    if score is not None:
        p = settings or AlignConfig()
        known = ~np.isnan(score)
        out[known & ((out == THIN_CLOUD) | (out == THICK_CLOUD))] = LAND  # Cloud Score+ decides
        cloudy = known & (score < p.cs_clear) & (out != SHADOW)
        out[cloudy] = THIN_CLOUD
        out[cloudy & (score < p.cs_thick)] = THICK_CLOUD
    out[missing] = NO_DATA
    return out


V11_RGB = AlignConfig()  # the report's constants are AlignConfig's defaults


def _quantiles(order_stats: dict[int, float], n: int, qs: Sequence[float]) -> list[float]:
    """numpy's default ('linear') quantiles from the order statistics they need."""
    out = []
    for q in qs:
        position = q * (n - 1)
        k = int(np.floor(position))
        a, b = order_stats[k], order_stats[min(k + 1, n - 1)]
        out.append(a + (position - k) * (b - a))
    return out


def _ranks(n: int, qs: Sequence[float]) -> list[int]:
    ks = {int(np.floor(q * (n - 1))) for q in qs}
    return sorted(ks | {min(k + 1, n - 1) for k in ks})


def s2_rgb(rgb: NDArray[Any], p: AlignConfig = V11_RGB) -> NDArray[np.uint8]:
    """8-bit RGB from L2A B04/B03/B02 (3, h, w) per the v1.1 report.

    Values beyond the 2 % / 98 % quantiles (over all three channels) have their excess beyond
    the bound multiplied by 0.5; the result maps linearly to 0-255 between its 0.2 % and
    99.8 % quantiles, the upper limit at least 2,000, the lower limit 0 for dark images
    (median below 1,000).

    The squeeze is monotonic, so the second quantiles are the squeezed order statistics of the
    input: one partial sort serves both. Whole numbers (S-2 DN, as align has them) take their
    order statistics from a histogram and map through a table of every value between the
    smallest and the largest: the same float64 steps, once per distinct value.
    """
    flat = rgb.reshape(-1)
    squeeze_qs, scale_qs = _rgb_quantiles(p)
    ranks = _ranks(flat.size, squeeze_qs + scale_qs)
    if rgb.dtype.kind in "iu":
        low = int(flat.min())
        index = flat.astype(np.intp) - low
        cumulative = np.cumsum(np.bincount(index))
        found = np.searchsorted(cumulative, ranks, side="right")
        stats = {k: float(low + v) for k, v in zip(ranks, found.tolist(), strict=True)}
        table = np.arange(low, low + cumulative.size, dtype=np.float64)
        return _rgb_mapped(table, stats, flat.size, p)[index].reshape(rgb.shape)
    values = np.array(flat, dtype=np.float64)  # a copy: squeezed in place below
    partial = np.partition(values, ranks)
    stats = {k: float(partial[k]) for k in ranks}
    return _rgb_mapped(values, stats, flat.size, p).reshape(rgb.shape)


def _rgb_quantiles(p: AlignConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The quantiles of the squeeze (low bound, median, high bound), then of the scaling."""
    return (p.rgb_clip_low_q, 0.5, p.rgb_clip_high_q), (p.rgb_low_q, p.rgb_high_q)


def _rgb_mapped(
    values: NDArray[np.float64], stats: dict[int, float], n: int, p: AlignConfig
) -> NDArray[np.uint8]:
    """``values`` (float64, changed in place) through the v1.1 mapping whose quantiles come
    from ``stats``, the order statistics of ``n`` values at :func:`_ranks`."""
    squeeze_qs, scale_qs = _rgb_quantiles(p)
    lo, median, hi = _quantiles(stats, n, squeeze_qs)

    def squeeze(v: NDArray[np.float64]) -> NDArray[np.float64]:
        above, below = v > hi, v < lo
        v[above] = hi + p.rgb_compress_factor * (v[above] - hi)
        v[below] = lo - p.rgb_compress_factor * (lo - v[below])
        return v

    ranks = sorted(stats)
    squeezed_stats = squeeze(np.array([stats[k] for k in ranks]))
    squeezed = dict(zip(ranks, squeezed_stats.tolist(), strict=True))
    lower, upper = _quantiles(squeezed, n, scale_qs)
    upper = max(upper, p.rgb_min_upper)
    if median < p.rgb_dark_median:
        lower = 0.0
    scaled = squeeze(values)
    scaled -= lower
    scaled *= 255.0 / max(upper - lower, 1e-9)
    np.rint(scaled, out=scaled)
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
