"""The modality registry: every layer the build fetches and every modality it writes.

Two tables, read by every stage (download, align, pack, validate, stats, the simulator and the
Earth Engine adapter), so that adding a modality is one entry here plus, when it is derived,
one function in :mod:`ssl4eo_build.derive`:

- :data:`PRODUCTS` / :func:`fetched_products`: the *layers* fetched per location, each as an
  Earth Engine collection and bands (SPEC section 4). How its image is found (``image``: the
  chosen scene, the companion of the S-2 granule with the same ``system:index``, a mosaic, or
  the image of the timestamp's year), how it is resampled onto the S-2 grid, its raw type, its
  hard value limits (corrupt data beyond them), how many timestamps it has and what a missing
  pixel means (``missing``: counts against ``align.nan_threshold`` and is filled from the
  nearest valid pixel; kept for the derivation to handle; or a constant).
- :data:`MODALITIES`: the seven v1.1 modalities written (SPEC section 6): bands, stored dtype,
  timestamps (4, or 1 with time value 0), cloud mask or not, the published S-2 offset or not,
  the typical value range ``validate`` holds the output to, and the function that derives the
  stored array from the aligned layers.

Adding an eighth modality, e.g. a normalised difference water index (README, "Adding a
modality"): a function ``ndwi`` in :mod:`ssl4eo_build.derive` and the entry
``Modality("NDWI", ("ndwi",), "float16", derive.ndwi, value_range=(-1.0, 1.0))``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from . import derive

if TYPE_CHECKING:
    from .config import AlignConfig, Config

N_SEASONS = 4
INT16_MISSING = -32768  # not a value: S-2 numbers (never negative) are clipped to -32767..32767


@dataclass(frozen=True)
class Product:
    """A layer fetched per location: bands of one Earth Engine collection."""

    name: str
    collection: str  # Earth Engine collection id
    bands: tuple[str, ...]  # as stored in the raw files (S-2 in the v1.1 spelling)
    # (The mappings do not take part in equality and hashing: layers are hashed in requests.)
    native_res_m: dict[str, int] = field(compare=False)
    # Type of the raw GeoTIFFs and of the aligned arrays: int16 (missing: INT16_MISSING) or
    # float32 (missing: NaN).
    raw_dtype: str = "int16"
    # Hard limits (SPEC section 8): values outside are corrupt data, not a quality verdict.
    valid_range: tuple[float, float] = (0.0, 65535.0)
    band_ranges: dict[str, tuple[float, float]] = field(default_factory=dict, compare=False)
    # scene: the image the scene plan chose (collection/<id>); granule: the image of another
    # collection with the S-2 granule's system:index (Cloud Score+, Dynamic World); mosaic: the
    # whole collection mosaicked (DEM); annual: the collection's images of the timestamp's
    # year, mosaicked (ESRI land cover).
    image: str = "scene"
    # Onto the S-2 grid (by Earth Engine, per image before any mosaic) and onto the reference
    # grid (by align): nearest, bilinear, or the configured align.s1_resampling ("s1") or
    # align.s2_resampling ("s2"; S-2 arrives on its own grid, so only align resamples it).
    resampling: str = "nearest"
    timestamps: int = N_SEASONS  # 1: fetched once, with the first request on the majority CRS
    # A granule companion that may be absent (Cloud Score+): fetched where the plan found it.
    optional: bool = False
    # "reject": counts against align.nan_threshold, then filled from the nearest valid pixel;
    # "keep": left for the derivation (which says what missing means); a number: replaces it.
    missing: str | float = "reject"
    # Class codes: source value -> output class (land cover); None for measurements.
    class_map: Mapping[int, int] | None = field(default=None, compare=False)

    def value_problem(self, data: NDArray[Any], bands: Sequence[str] | None = None) -> str | None:
        """Why ``data`` (``bands``, default all, by y, x; missing as NaN or INT16_MISSING) is
        corrupt, or None. Each band's smallest and largest value decide it when they lie
        within its limits; only the other bands are looked at pixel by pixel."""
        names = tuple(bands or self.bands)
        if len(names) != len(data):
            raise ValueError(f"{len(data)} bands of data for {len(names)} band names")
        limits = np.array([self.band_ranges.get(band, self.valid_range) for band in names])
        flat = data.reshape(len(names), -1)
        if flat.shape[1] == 0:
            return None
        if data.dtype.kind == "f":  # fmin and fmax skip NaN (missing)
            low, high = np.fmin.reduce(flat, axis=1), np.fmax.reduce(flat, axis=1)
            clear = ~((low < limits[:, 0]) | (high > limits[:, 1]))  # all-NaN bands too
        else:  # INT16_MISSING is the smallest value: a band holding it is looked at
            low, high = flat.min(axis=1), flat.max(axis=1)
            clear = (low >= limits[:, 0]) & (high <= limits[:, 1])
        for values, band, ok in zip(data, names, clear, strict=True):
            if ok:
                continue
            valid = ~np.isnan(values) if values.dtype.kind == "f" else values != INT16_MISSING
            lo, hi = self.band_ranges.get(band, self.valid_range)
            bad = valid & ~((values >= lo) & (values <= hi))
            if bad.any():
                worst = values[bad]
                shown = worst[np.argmax(np.abs(worst.astype(np.float64)))]
                return (
                    f"{self.name} band {band}: {int(bad.sum())} value(s) outside {lo:g}..{hi:g} "
                    f"(e.g. {float(shown):g})"
                )
        return None


_S2_RES = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20, "SCL": 20,
}  # fmt: skip
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
            "B12")  # fmt: skip
L2A_BANDS = tuple(b for b in S2_BANDS if b != "B10")
ESRI_LULC = "projects/sat-io/open-datasets/landcover/ESRI_Global-LULC_10m_TS"
DYNAMIC_WORLD = "GOOGLE/DYNAMICWORLD/V1"

S2L1C = Product("S2L1C", "COPERNICUS/S2_HARMONIZED", S2_BANDS, _S2_RES, resampling="s2")
S2L2A = Product(
    "S2L2A",
    "COPERNICUS/S2_SR_HARMONIZED",
    (*L2A_BANDS, "SCL"),
    _S2_RES,
    band_ranges={"SCL": (0.0, 11.0)},  # the scene classification's class codes
    resampling="s2",
)
S1GRD = Product(
    "S1GRD",
    "COPERNICUS/S1_GRD",
    ("VV", "VH"),
    {"VV": 10, "VH": 10},
    "float32",
    (-60.0, 40.0),
    resampling="s1",
)
CLOUD_SCORE = Product(
    "CS",
    "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED",
    ("cs", "cs_cdf"),
    {"cs": 10, "cs_cdf": 10},
    "float32",
    (0.0, 1.0),
    image="granule",
    optional=True,
    missing="keep",  # the cloud mask falls back to SCL there
)
DEM = Product(
    "DEM",
    "COPERNICUS/DEM/GLO30",
    ("DEM",),
    {"DEM": 30},
    "float32",
    (-500.0, 9000.0),
    image="mosaic",
    resampling="bilinear",
    timestamps=1,
    missing=0.0,  # GLO-30 has no tiles over the open sea: sea level
)
LULC_ESRI = Product(
    "LULC",
    ESRI_LULC,
    ("b1",),
    {"b1": 10},
    valid_range=(0.0, 11.0),
    image="annual",
    missing="keep",  # class 0, no data
    class_map=derive.ESRI_TO_LULC,
)
LULC_DYNAMIC_WORLD = Product(
    "LULC", DYNAMIC_WORLD, ("label",), {"label": 10}, valid_range=(0.0, 8.0), image="granule",
    missing="keep", class_map=derive.DYNAMIC_WORLD_TO_LULC,
)  # fmt: skip

PRODUCTS: dict[str, Product] = {
    p.name: p for p in (S2L1C, S2L2A, S1GRD, CLOUD_SCORE, DEM, LULC_ESRI)
}
SCENE_PRODUCTS = ("S2L1C", "S2L2A", "S1GRD")  # what the scene plan chooses per season


def fetched_products(cfg: Config) -> tuple[Product, ...]:
    """The layers this build fetches, in the order they are stacked."""
    d = cfg.download
    layers = [S2L1C, S2L2A, S1GRD]
    if d.cloud_mask == "cloud_score_plus":
        layers.append(CLOUD_SCORE)
    layers.append(DEM)
    if d.lulc_source == "dynamic_world":
        layers.append(LULC_DYNAMIC_WORLD)
    else:
        layers.append(replace(LULC_ESRI, collection=d.lulc_collection))
    return tuple(layers)


def product_named(cfg: Config, name: str) -> Product:
    """The fetched product called ``name`` in this build (land cover depends on the config)."""
    for product in fetched_products(cfg):
        if product.name == name:
            return product
    raise KeyError(f"{name}: not a product this build fetches")


def resampling(product: Product, settings: AlignConfig) -> str:
    """The method ``product`` is resampled with (the configured one for S-1 and S-2)."""
    configured = {"s1": settings.s1_resampling, "s2": settings.s2_resampling}
    return configured.get(product.resampling, product.resampling)


@dataclass(frozen=True)
class Modality:
    """A modality as written (SPEC section 6)."""

    name: str
    bands: tuple[str, ...]  # the band coordinate
    dtype: str  # of ``bands`` in the output
    derive: Callable[[derive.AlignedLayers], NDArray[Any]]  # -> (time, band, y, x)
    timestamps: int = N_SEASONS  # 1: one timestamp, time value 0 (DEM)
    cloud_mask: bool = False  # carries the S-2 cloud mask
    dn_offset: bool = False  # S-2 digital numbers: each layout's published offset is added
    # Typical value range (``validate`` reports stored values outside it); None: no check.
    value_range: tuple[float, float] | None = None
    times_from: str = "S2L2A"  # the product whose acquisition times are ``time_``
    file_id_from: str = "S2L2A"  # the product whose scene ids are ``file_id``


MODALITIES: tuple[Modality, ...] = (
    Modality("S2L1C", S2_BANDS, "int16", derive.stored("S2L1C", S2_BANDS), cloud_mask=True,
             dn_offset=True),
    Modality("S2L2A", L2A_BANDS, "int16", derive.stored("S2L2A", L2A_BANDS), cloud_mask=True,
             dn_offset=True),
    Modality("S2RGB", ("R", "G", "B"), "uint8", derive.s2rgb, cloud_mask=True,
             value_range=(0.0, 255.0)),
    Modality("S1GRD", ("vv", "vh"), "float16", derive.stored("S1GRD", ("VV", "VH"), "float16"),
             value_range=(-60.0, 40.0), times_from="S1GRD", file_id_from="S1GRD"),
    Modality("NDVI", ("ndvi",), "float16", derive.ndvi, value_range=(-1.0, 1.0)),
    Modality("DEM", ("dem",), "float32", derive.stored("DEM", ("DEM",)), timestamps=1,
             value_range=(-500.0, 9000.0), file_id_from="DEM"),
    Modality("LULC", ("lulc",), "uint8", derive.lulc, value_range=(0.0, 9.0),
             file_id_from="LULC"),
)  # fmt: skip


# Looked up when called (not copied at import), so a registry extended at run time is seen.
def names() -> tuple[str, ...]:
    """The written modalities' names, in the registry's order."""
    return tuple(m.name for m in MODALITIES)


def modality(name: str) -> Modality:
    for m in MODALITIES:
        if m.name == name:
            return m
    raise KeyError(f"{name}: not a modality in the registry ({', '.join(names())})")


def dn_modalities() -> tuple[str, ...]:
    """Modalities holding Sentinel-2 digital numbers (each layout's offset applies)."""
    return tuple(m.name for m in MODALITIES if m.dn_offset)
