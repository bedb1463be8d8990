from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from ssl4eo_build import pipeline
from ssl4eo_build.align.cube import load_cube
from ssl4eo_build.config import load_config, override
from ssl4eo_build.errors import InputError
from ssl4eo_build.grid import transformer
from ssl4eo_build.pack.core import open_shard
from ssl4eo_build.sample.reference_index import read_reference_index
from ssl4eo_build.workdir import WorkDir


def footprint(lon: float, lat: float, half: float = 0.0119) -> bytes:
    return shapely.to_wkb(shapely.box(lon - half, lat - half, lon + half, lat + half))


def write_v11_parquet(path: Path, rows: list[dict]) -> Path:
    frame = pd.DataFrame(rows)
    frame.index = [f"{r['sample_id']}_{r['time_id']}" for r in rows]
    frame.index.name = "idx"
    frame.to_parquet(path)
    return path


def v11_rows(sample_id: str, lon: float, lat: float) -> list[dict]:
    return [
        {
            "sample_id": sample_id,
            "time_id": t,
            "time": pd.Timestamp(f"2020-{3 * t + 1:02d}-19 09:40:31"),
            "tile_id": "T33SWC",
            "geometry": footprint(lon, lat),
            "tile_crs": 32633,
            "file": "ssl4eos12_val_seasonal_data_000022.zarr.zip",
        }
        for t in range(4)
    ]


def test_reads_the_v11_metadata_layout(tmp_path: Path) -> None:
    path = write_v11_parquet(
        tmp_path / "val_metadata.parquet",
        v11_rows("0000173", 15.667, 38.072) + v11_rows("0000174", -70.5, -33.4),
    )
    locations = {loc.sample_id: loc for loc in read_reference_index(path)}
    assert set(locations) == {"0000173", "0000174"}
    first = locations["0000173"]
    assert first.position.lon == pytest.approx(15.667)
    assert first.position.lat == pytest.approx(38.072)
    assert first.seasons[0].time == "2020-01-19T09:40:31"
    assert first.seasons[3].tile_crs == 32633
    assert first.seasons[2].tile_id == "T33SWC"


def test_parquet_bad_rows_are_reported_by_row(tmp_path: Path) -> None:
    rows = v11_rows("0000173", 15.0, 38.0)
    rows[1] = {**rows[1], "time_id": 0}  # duplicate idx
    rows[2] = {**rows[2], "geometry": footprint(200.0, 38.0)}  # centre out of range
    rows[3] = {**rows[3], "sample_id": "17"}
    path = write_v11_parquet(tmp_path / "m.parquet", rows)
    with pytest.raises(InputError) as err:
        read_reference_index(path)
    msg = str(err.value)
    assert "3 bad row(s)" in msg
    assert "row 1" in msg and "duplicate idx 0000173_0 (first at row 0)" in msg
    assert "row 2" in msg and "lon 200.0" in msg and "outside [-180, 180]" in msg
    assert "row 3" in msg and "'17' is not a 7-digit string" in msg


def test_parquet_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pd.DataFrame({"sample_id": ["0000001"]}).to_parquet(path)
    with pytest.raises(InputError, match="missing column"):
        read_reference_index(path)


def test_csv_with_and_without_times(tmp_path: Path) -> None:
    path = tmp_path / "idx.csv"
    path.write_text(
        "sample_id,lon,lat,t0,t1,t2,t3\n"
        "0000001,11.5,48.1,2021-03-20T10:00:00Z,2021-06-21,,2021-12-21T10:00:00\n"
        "0000002,-70.6,-33.4,,,,\n"
    )
    locations = read_reference_index(path)
    assert [loc.sample_id for loc in locations] == ["0000001", "0000002"]
    assert locations[0].seasons[0].time == "2021-03-20T10:00:00"
    assert locations[0].seasons[1].time == "2021-06-21T00:00:00"
    assert 2 not in locations[0].seasons
    assert locations[1].seasons == {}


def test_csv_bad_rows_by_line(tmp_path: Path) -> None:
    path = tmp_path / "idx.csv"
    path.write_text(
        "sample_id,lon,lat,t0\n"
        "0000001,11.5,48.1,2021-03-20\n"
        "0000002,11.5,91.0,\n"
        "0000001,1,1,\n"
        "0000004,1,1,yesterday\n"
        "../../x,1,1,\n"
    )
    with pytest.raises(InputError) as err:
        read_reference_index(path)
    msg = str(err.value)
    assert "line 3: lat 91.0 outside [-90, 90]" in msg
    assert "line 4: duplicate sample_id 0000001 (first on line 2)" in msg
    assert "line 5: time 'yesterday' is not an ISO-8601 timestamp" in msg
    assert "line 6: sample_id '../../x' is not a 7-digit string" in msg


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(InputError, match="unknown reference index format"):
        read_reference_index(path)


def test_index_patches_are_rebuilt_with_the_footprints_edges(tmp_path: Path) -> None:
    """Footprints made from 10 m-lattice patches (as the published ones are) come back with
    exactly those edges, in the index's tile CRS."""
    # Munich, UTM 32N; edges on the 10 m lattice but not on the 60 m one.
    corners = {"0000001": (690_130.0, 5_335_670.0), "0000002": (700_250.0, 5_331_010.0)}
    rows = []
    for sample_id, (left, top) in corners.items():
        right, bottom = left + 2640.0, top - 2640.0
        lon, lat = transformer(32632, 4326).transform(
            [left, right, right, left], [bottom, bottom, top, top]
        )
        ring = shapely.Polygon(list(zip(lon, lat, strict=True)))
        for t in range(4):
            rows.append(
                {
                    "sample_id": sample_id,
                    "time_id": t,
                    "time": pd.Timestamp(f"2021-{3 * t + 2:02d}-15 10:20:31"),
                    "tile_id": "T32UPU",
                    "geometry": shapely.to_wkb(ring),
                    "tile_crs": 32632,
                    "file": "ssl4eos12_val_seasonal_data_000001.zarr.zip",
                }
            )
    index = write_v11_parquet(tmp_path / "index.parquet", rows)
    cfg = override(load_config(None), "synthetic.partial_prob", 0.0)
    cfg = override(cfg, "download.workers", 2)
    work = tmp_path / "w"
    pipeline.import_index(cfg, work, index)
    assert pipeline.run_download(cfg, work, progress=False).ok == 2
    assert pipeline.run_align(cfg, work, progress=False, workers=1).ok == 2
    for sample_id, (left, top) in corners.items():
        cube = load_cube(WorkDir.at(work).cube(sample_id))
        assert cube.epsg == 32632
        assert cube.x[0] - 5.0 == left and cube.y[0] + 5.0 == top
        assert cube.x.shape == (264,) and np.all(np.diff(cube.x) == 10.0)
    # Their dates follow the index's times, not v1's rule: the shards do not claim it.
    pipeline.run_pack(override(cfg, "pack.keep_partial", True), work, progress=False)
    shards = sorted((work / "dataset").glob("*/S2L2A/*.zarr.zip"))
    assert shards and all("date_rule" not in open_shard(p).attrs for p in shards)
