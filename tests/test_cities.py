from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssl4eo_build.config import DEFAULT_CITIES
from ssl4eo_build.errors import InputError
from ssl4eo_build.sample.cities import load_cities


def test_shipped_table_is_the_top_10k() -> None:
    cities = load_cities(DEFAULT_CITIES)
    assert len(cities) == 10_000
    assert len(set(cities.geonameid.tolist())) == 10_000
    assert np.all(np.diff(cities.population) <= 0), "sorted by population, descending"
    assert cities.population[-1] >= 15_000
    assert "Shanghai" in cities.name[:10]


def test_bad_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "geonameid,name,country,lat,lon,population\n"
        "1,A,XX,10,10,100\n"
        "2,B,XX,95,10,100\n"
        "1,C,XX,10,10,100\n"
        "4,D,XX,abc,10,100\n"
    )
    with pytest.raises(InputError) as err:
        load_cities(path)
    msg = str(err.value)
    assert "3 bad row(s)" in msg
    assert "line 3: lat 95.0 outside [-90, 90]" in msg
    assert "line 4: duplicate geonameid 1 (first on line 2)" in msg
    assert "line 5: lat 'abc' is not a number" in msg


def test_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,name\n1,A\n")
    with pytest.raises(InputError, match="missing column"):
        load_cities(path)
