"""Read an existing location index (``sample --from-index``): v1.1 metadata parquet or CSV.

Parquet: the published v1.1 ``{split}_metadata.parquet`` layout — one row per (sample, season)
with ``sample_id`` (7 digits), ``time_id`` (0..3), ``time``, ``tile_id``, ``geometry`` (WKB
footprint in EPSG:4326), ``tile_crs`` (or ``crs``) and ``file``. The location is the centre of
the footprint; ``time`` becomes the season's reference timestamp.

CSV: ``sample_id,lon,lat[,t0,t1,t2,t3]`` with ISO-8601 timestamps. A season without a reference
time falls back to fresh-mode scene choice in `download`.

Every bad row is reported (by CSV line or parquet row) in one error; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..geo import LonLat

SAMPLE_ID = re.compile(r"^[0-9]{7}$")
N_SEASONS = 4
MAX_REPORTED_ERRORS = 10


@dataclass(frozen=True)
class ReferenceTime:
    time: str  # ISO 8601, UTC, seconds
    tile_id: str | None = None
    tile_crs: int | None = None


@dataclass(frozen=True)
class IndexedLocation:
    sample_id: str
    position: LonLat
    seasons: dict[int, ReferenceTime] = field(default_factory=dict)
    footprint: bytes | None = None  # WKB polygon (EPSG:4326) of the published patch


def read_reference_index(path: Path) -> list[IndexedLocation]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: reference index not found.")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; expected a reference index file.")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        found = _read_parquet(path)
    elif suffix in (".csv", ".txt"):
        try:
            found = _read_csv(path)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path}: not a text CSV (byte {exc.start} is not UTF-8); expected a header "
                "sample_id,lon,lat[,t0,t1,t2,t3]."
            ) from None
        except csv.Error as exc:
            raise InputError(f"{path}: not a readable CSV ({exc}).") from None
    else:
        raise InputError(
            f"{path}: unknown reference index format {suffix!r}; expected a .parquet "
            "(v1.1 metadata layout) or a .csv with sample_id,lon,lat[,t0,t1,t2,t3]."
        )
    if not found:
        raise InputError(f"{path}: the reference index has no rows; nothing to import.")
    return found


class _Errors:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = "; ".join(self.items[:MAX_REPORTED_ERRORS])
        more = len(self.items) - MAX_REPORTED_ERRORS
        tail = f" (and {more} more)" if more > 0 else ""
        raise InputError(f"{self.path}: {len(self.items)} bad row(s): {shown}{tail}.")


def parse_time(value: Any) -> str:
    """Any timestamp-like value -> ISO 8601 in UTC with second precision."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("missing time")
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("missing time")
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"time {text!r} is not an ISO-8601 timestamp") from None
    if not isinstance(value, datetime):
        raise ValueError(f"time {value!r} is not a timestamp")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.replace(microsecond=0).isoformat()


def _check_sample_id(raw: Any) -> str:
    text = str(raw).strip() if raw is not None else ""
    if not SAMPLE_ID.match(text):
        raise ValueError(f"sample_id {raw!r} is not a 7-digit string like '0080717'")
    return text


def _check_position(lon: float, lat: float) -> LonLat:
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise ValueError(f"lon {lon} outside [-180, 180]")
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ValueError(f"lat {lat} outside [-90, 90]")
    return LonLat(lon, lat)


def _read_csv(path: Path) -> list[IndexedLocation]:
    errors = _Errors(path)
    out: list[IndexedLocation] = []
    seen: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:  # a UTF-8 BOM is fine
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in ("sample_id", "lon", "lat") if c not in header]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {', '.join(missing)}; "
                "expected a header sample_id,lon,lat[,t0,t1,t2,t3]."
            )
        time_cols = [f"t{i}" for i in range(N_SEASONS) if f"t{i}" in header]
        for line, row in enumerate(reader, start=2):
            where = f"line {line}"
            try:
                sample_id = _check_sample_id(row["sample_id"])
                position = _check_position(_number(row["lon"], "lon"), _number(row["lat"], "lat"))
                seasons = {
                    int(c[1:]): ReferenceTime(parse_time(row[c]))
                    for c in time_cols
                    if (row.get(c) or "").strip()
                }
            except ValueError as exc:
                errors.add(where, str(exc))
                continue
            if sample_id in seen:
                errors.add(
                    where, f"duplicate sample_id {sample_id} (first on line {seen[sample_id]})"
                )
                continue
            seen[sample_id] = line
            out.append(IndexedLocation(sample_id, position, seasons))
    errors.raise_if_any()
    return out


def _number(text: str | None, key: str) -> float:
    try:
        return float((text or "").strip())
    except ValueError:
        raise ValueError(f"{key} {text!r} is not a number") from None


def _read_parquet(path: Path) -> list[IndexedLocation]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise InputError(f"{path}: cannot read parquet ({exc}).") from None
    names = set(table.column_names)
    crs_col = "tile_crs" if "tile_crs" in names else "crs" if "crs" in names else None
    missing = [c for c in ("sample_id", "time_id", "time", "geometry") if c not in names]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; expected the v1.1 metadata layout "
            "(sample_id, time_id, time, tile_id, geometry, tile_crs, file)."
        )
    cols = {c: table.column(c).to_pylist() for c in names if c != "__index_level_0__"}
    errors = _Errors(path)
    centres: dict[str, tuple[LonLat, int]] = {}  # sample id -> (centre, first row)
    footprints: dict[str, bytes] = {}
    seasons: dict[str, dict[int, ReferenceTime]] = {}
    first_row: dict[tuple[str, int], int] = {}
    get: Callable[[str, int], Any] = lambda c, i: cols[c][i] if c in cols else None  # noqa: E731
    for i in range(table.num_rows):
        where = f"row {i}" + (f" (idx {get('idx', i)})" if "idx" in cols else "")
        try:
            sample_id = _check_sample_id(get("sample_id", i))
            time_id = get("time_id", i)
            if not isinstance(time_id, int) or not 0 <= time_id < N_SEASONS:
                raise ValueError(f"time_id {time_id!r} is not an integer 0..3")
            when = parse_time(get("time", i))
            wkb = get("geometry", i)
            if not isinstance(wkb, bytes | bytearray):
                raise ValueError("geometry is not WKB bytes")
            position = footprint_centre(bytes(wkb))
            crs = get(crs_col, i) if crs_col else None
            if crs is not None and not isinstance(crs, int):
                raise ValueError(f"{crs_col} {crs!r} is not an EPSG integer")
        except ValueError as exc:
            errors.add(where, str(exc))
            continue
        key = (sample_id, time_id)
        if key in first_row:
            errors.add(
                where, f"duplicate idx {sample_id}_{time_id} (first at row {first_row[key]})"
            )
            continue
        first_row[key] = i
        first = centres.setdefault(sample_id, (position, i))
        footprints.setdefault(sample_id, bytes(wkb))
        if distance_m(first[0], position) > MAX_FOOTPRINT_DISAGREEMENT_M:
            errors.add(
                where,
                f"footprint of {sample_id} season {time_id} is centred "
                f"{distance_m(first[0], position):.0f} m from the one at row {first[1]}; every "
                "season of a sample must have the same footprint",
            )
            continue
        seasons.setdefault(sample_id, {})[time_id] = ReferenceTime(when, get("tile_id", i), crs)
    errors.raise_if_any()
    return [
        IndexedLocation(sample_id, position, seasons[sample_id], footprints[sample_id])
        for sample_id, (position, _) in centres.items()
    ]


# Footprints of one sample's seasons are one patch: centres further apart than two 10 m
# pixels are different patches, not rounding.
MAX_FOOTPRINT_DISAGREEMENT_M = 20.0


def distance_m(a: LonLat, b: LonLat) -> float:
    """Great-circle distance (spherical; exact enough to tell 20 m from rounding)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlon = math.radians((b.lon - a.lon + 180.0) % 360.0 - 180.0)
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h)))


def footprint_centre(wkb: bytes) -> LonLat:
    """Centre of a footprint polygon in lon/lat; one that crosses the antimeridian (its
    longitudes span more than 180 degrees) is unwrapped first, so its centre stays on it."""
    import shapely

    try:
        geometry = shapely.from_wkb(wkb)
    except (shapely.errors.GEOSException, TypeError, ValueError) as exc:
        raise ValueError(f"geometry is not valid WKB ({exc})") from None
    if geometry.is_empty:
        raise ValueError("geometry is empty (no footprint)")
    coords = shapely.get_coordinates(geometry)
    if not np.isfinite(coords).all():
        raise ValueError("geometry has non-finite coordinates")
    unwrap = bool(np.ptp(coords[:, 0]) > 180.0)
    if unwrap:
        geometry = shapely.transform(
            geometry,
            lambda xy: np.column_stack(
                [np.where(xy[:, 0] < 0, xy[:, 0] + 360, xy[:, 0]), xy[:, 1]]
            ),
        )
    centroid = geometry.centroid
    lon = float(centroid.x)
    centre = _check_position(lon - 360.0 if unwrap and lon > 180.0 else lon, float(centroid.y))
    low, high = coords.min(axis=0), coords.max(axis=0)
    if low[0] < -180 or high[0] > 180 or low[1] < -90 or high[1] > 90:
        raise ValueError(
            f"footprint reaches lon {low[0]:g}..{high[0]:g}, lat {low[1]:g}..{high[1]:g}, "
            "outside [-180, 180] x [-90, 90]"
        )
    return centre
