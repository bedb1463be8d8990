"""Products, their bands and the season calendar (SPEC section 4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Product:
    name: str
    collection: str  # Earth Engine collection id
    bands: tuple[str, ...]  # as stored, in the v1.1 spelling
    native_res_m: dict[str, int]
    # Type of the raw GeoTIFFs and of the aligned arrays: S-2 digital numbers as int16 (the
    # output's own type; missing is INT16_MISSING), S-1 backscatter in dB as float32 (NaN).
    raw_dtype: str = "int16"
    # Hard limits (SPEC section 8): values outside are corrupt data, not a quality verdict.
    # S-2 digital numbers above 32767 are legitimate and clipped when stored.
    valid_range: tuple[float, float] = (0.0, 65535.0)
    band_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def value_problem(self, data: NDArray[Any], bands: Sequence[str] | None = None) -> str | None:
        """Why ``data`` (``bands``, default all, by y, x; missing as NaN or INT16_MISSING) is
        corrupt, or None."""
        for values, band in zip(data, bands or self.bands, strict=True):
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


INT16_MISSING = -32768  # not a value: S-2 numbers (never negative) are clipped to -32767..32767


_S2_RES = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20, "SCL": 20,
}  # fmt: skip

S2L1C = Product(
    "S2L1C",
    "COPERNICUS/S2_HARMONIZED",
    ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"),
    _S2_RES,
)
S2L2A = Product(
    "S2L2A",
    "COPERNICUS/S2_SR_HARMONIZED",
    ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12", "SCL"),
    _S2_RES,
    band_ranges={"SCL": (0.0, 11.0)},  # the scene classification's class codes
)
S1GRD = Product(
    "S1GRD", "COPERNICUS/S1_GRD", ("VV", "VH"), {"VV": 10, "VH": 10}, "float32", (-60.0, 40.0)
)

PRODUCTS: dict[str, Product] = {p.name: p for p in (S2L1C, S2L2A, S1GRD)}
FETCH_PRODUCTS = tuple(PRODUCTS)  # fetched per location and season, in this order
N_SEASONS = 4


def season_reference(season: int, year: int, dates: tuple[str, ...]) -> datetime:
    """Reference date of ``season`` (0..3) in ``year``; ``dates`` are "MM-DD" strings."""
    month, day = (int(part) for part in dates[season].split("-"))
    return datetime(year, month, day, 12, 0, 0)


def window(centre: datetime, half_days: float) -> tuple[datetime, datetime]:
    return centre - timedelta(days=half_days), centre + timedelta(days=half_days)
