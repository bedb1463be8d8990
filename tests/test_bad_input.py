"""Every bad input a user can give: exit code 2, one paragraph naming what is wrong, no
traceback, no hang, and nothing finished lost."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from ssl4eo_build.cli.app import app
from typer.testing import CliRunner

from ssl4eo_build.errors import InputError
from ssl4eo_build.sample.reference_index import read_reference_index

runner = CliRunner()


def index_parquet(path: Path, rows: list[tuple[str, int, bytes]]) -> Path:
    table = pa.table(
        {
            "sample_id": [r[0] for r in rows],
            "time_id": pa.array([r[1] for r in rows], pa.int64()),
            "time": pa.array(["2021-03-20T10:00:00"] * len(rows)).cast(pa.timestamp("s")),
            "tile_id": ["T60KYF"] * len(rows),
            "geometry": [r[2] for r in rows],
            "tile_crs": pa.array([32760] * len(rows), pa.int64()),
            "file": ["x.zarr.zip"] * len(rows),
        }
    )
    pq.write_table(table, path)
    return path


def square(lon: float, lat: float, half: float = 0.012) -> bytes:
    ring = [(lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half),
            (lon - half, lat + half)]  # fmt: skip
    wrapped = [(((x + 180) % 360) - 180, y) for x, y in ring]
    return bytes(shapely.to_wkb(shapely.Polygon(wrapped)))


Case = Callable[[Path], list[str]]


def config_directory(tmp: Path) -> list[str]:
    (tmp / "cfgdir").mkdir()
    return ["sample", "-c", str(tmp / "cfgdir"), "-w", str(tmp / "w")]


def config_not_utf8(tmp: Path) -> list[str]:
    (tmp / "bad.toml").write_bytes(b"[sample]\nn = 3\n\xff\xfe\x00garbage")
    return ["sample", "-c", str(tmp / "bad.toml"), "-w", str(tmp / "w")]


def config_nan(tmp: Path) -> list[str]:
    (tmp / "nan.toml").write_text("[sample]\nsigma_m = nan\n")
    return ["sample", "-c", str(tmp / "nan.toml"), "-w", str(tmp / "w")]


def config_inf(tmp: Path) -> list[str]:
    (tmp / "inf.toml").write_text("[download]\nwindow_days = inf\n")
    return ["download", "-c", str(tmp / "inf.toml"), "-w", str(tmp / "w")]


def cities_binary(tmp: Path) -> list[str]:
    (tmp / "cities.csv").write_bytes(bytes(range(256)) * 8)
    (tmp / "c.toml").write_text(f'[sample]\ncities = "{tmp / "cities.csv"}"\n')
    return ["sample", "-c", str(tmp / "c.toml"), "-w", str(tmp / "w"), "--n", "3"]


def index_csv_binary(tmp: Path) -> list[str]:
    (tmp / "index.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    return ["sample", "-w", str(tmp / "w"), "--from-index", str(tmp / "index.csv")]


def index_parquet_binary(tmp: Path) -> list[str]:
    (tmp / "index.parquet").write_bytes(b"PAR1" + bytes(range(256)))
    return ["sample", "-w", str(tmp / "w"), "--from-index", str(tmp / "index.parquet")]


def index_empty_wkb(tmp: Path) -> list[str]:
    empty = bytes(shapely.to_wkb(shapely.Polygon()))
    index_parquet(tmp / "i.parquet", [("0000001", 0, empty)])
    return ["sample", "-w", str(tmp / "w"), "--from-index", str(tmp / "i.parquet")]


def index_zero_rows(tmp: Path) -> list[str]:
    (tmp / "i.csv").write_text("sample_id,lon,lat\n")
    return ["sample", "-w", str(tmp / "w"), "--from-index", str(tmp / "i.csv")]


def index_disagreeing_footprints(tmp: Path) -> list[str]:
    rows = [("0000001", 0, square(10.0, 45.0)), ("0000001", 1, square(10.3, 45.0))]
    index_parquet(tmp / "i.parquet", rows)
    return ["sample", "-w", str(tmp / "w"), "--from-index", str(tmp / "i.parquet")]


def schema_version_abc(tmp: Path) -> list[str]:
    assert runner.invoke(app, ["sample", "-w", str(tmp / "w"), "--n", "1", "-q"]).exit_code == 0
    with sqlite3.connect(tmp / "w" / "manifest.sqlite") as db:
        db.execute("UPDATE meta SET value='abc' WHERE key='schema_version'")
    return ["sample", "-w", str(tmp / "w"), "--n", "2"]


def manifest_garbage(tmp: Path) -> list[str]:
    (tmp / "w").mkdir()
    (tmp / "w" / "manifest.sqlite").write_bytes(b"not a database at all" * 100)
    return ["status", "-w", str(tmp / "w")]


def work_dir_is_a_file(tmp: Path) -> list[str]:
    (tmp / "w").write_text("x")
    return ["sample", "-w", str(tmp / "w"), "--n", "2"]


def out_is_a_file(tmp: Path) -> list[str]:
    assert runner.invoke(app, ["sample", "-w", str(tmp / "w"), "--n", "1", "-q"]).exit_code == 0
    (tmp / "out").write_text("x")
    return ["pack", "-w", str(tmp / "w"), "--out", str(tmp / "out")]


def scheduler_garbage(tmp: Path) -> list[str]:
    return ["align", "-w", str(tmp / "w"), "--scheduler", "foo bar"]


def scheduler_no_workers(tmp: Path) -> list[str]:
    return ["align", "-w", str(tmp / "w"), "--scheduler", "local:0"]


def limit_negative(tmp: Path) -> list[str]:
    return ["download", "-w", str(tmp / "w"), "--limit", "-1"]


def n_zero(tmp: Path) -> list[str]:
    return ["sample", "-w", str(tmp / "w"), "--n", "0"]


def target_zero(tmp: Path) -> list[str]:
    return ["run", "-w", str(tmp / "w"), "--target", "0"]


def target_negative(tmp: Path) -> list[str]:
    return ["run", "-w", str(tmp / "w"), "--target", "-3"]


def workers_zero(tmp: Path) -> list[str]:
    return ["align", "-w", str(tmp / "w"), "--workers", "0"]


def validate_missing(tmp: Path) -> list[str]:
    return ["validate", str(tmp / "nowhere")]


def validate_work_dir(tmp: Path) -> list[str]:
    assert runner.invoke(app, ["sample", "-w", str(tmp / "w"), "--n", "1", "-q"]).exit_code == 0
    return ["validate", str(tmp / "w")]


CASES: dict[str, tuple[Case, str]] = {
    "config is a directory": (config_directory, "is a directory"),
    "config not UTF-8": (config_not_utf8, "not a text file"),
    "config NaN": (config_nan, "sample.sigma_m"),
    "config inf": (config_inf, "download.window_days"),
    "cities binary": (cities_binary, "cities.csv"),
    "index CSV binary": (index_csv_binary, "index.csv"),
    "index parquet binary": (index_parquet_binary, "index.parquet"),
    "index empty WKB": (index_empty_wkb, "geometry is empty"),
    "index zero rows": (index_zero_rows, "no rows"),
    "index disagreeing footprints": (index_disagreeing_footprints, "same footprint"),
    "schema_version abc": (schema_version_abc, "schema_version"),
    "manifest garbage": (manifest_garbage, "not a usable manifest"),
    "work dir is a file": (work_dir_is_a_file, "is a file"),
    "--out is a file": (out_is_a_file, "is a file"),
    "--scheduler foo bar": (scheduler_garbage, "--scheduler"),
    "--scheduler local:0": (scheduler_no_workers, "at least one worker"),
    "--limit -1": (limit_negative, "--limit"),
    "--n 0": (n_zero, "--n"),
    "--target 0": (target_zero, "--target"),
    "--target -3": (target_negative, "--target"),
    "--workers 0": (workers_zero, "--workers"),
    "validate a missing directory": (validate_missing, "no such dataset directory"),
    "validate a work dir": (validate_work_dir, "work directory"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_clear_paragraph(tmp_path: Path, name: str) -> None:
    make, expected = CASES[name]
    result = runner.invoke(app, make(tmp_path))
    assert result.exit_code == 2, (name, result.output)
    assert expected in result.output, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssl4eo_build.config import REPO_ROOT

    work = tmp_path_factory.mktemp("packed") / "w"
    cities = work.parent / "cities.csv"
    cities.write_text("geonameid,name,country,lat,lon,population\n1,Munich,DE,48.137,11.575,1\n")
    cfg = work.parent / "c.toml"
    cfg.write_text(
        (REPO_ROOT / "configs" / "demo.toml").read_text().replace("n = 32", "n = 3")
        + "\n[synthetic]\npartial_prob = 0.0\n[align]\nworkers = 1\n"
    )
    cfg.write_text(
        cfg.read_text().replace(
            'cities = "../data/cities/top10k_cities.csv"', f'cities = "{cities}"'
        )
    )
    result = runner.invoke(app, ["run", "-c", str(cfg), "-w", str(work), "-q"])
    assert result.exit_code == 0, result.output
    return work


@pytest.mark.parametrize(
    "victim, content",
    [("stats.json", b"{not json"), ("splits/train_metadata.parquet", b"PAR1 garbage PAR1")],
)
def test_validate_names_garbage_sidecar_files(
    tmp_path: Path, packed: Path, victim: str, content: bytes
) -> None:
    dataset = tmp_path / "dataset"
    shutil.copytree(packed / "dataset", dataset)
    (dataset / victim).write_bytes(content)
    result = runner.invoke(app, ["validate", str(dataset)])
    assert result.exit_code == 2 and str(dataset / victim) in result.output
    assert "Traceback" not in result.output


def test_pack_refuses_another_builds_output_unless_forced(tmp_path: Path, packed: Path) -> None:
    other = tmp_path / "other"
    assert runner.invoke(app, ["sample", "-w", str(other), "--n", "1", "-q"]).exit_code == 0
    stats = (packed / "dataset" / "stats.json").read_bytes()
    out = str(packed / "dataset")
    refused = runner.invoke(app, ["pack", "-w", str(other), "--out", out])
    assert refused.exit_code == 2 and "another build" in refused.output
    assert (packed / "dataset" / "stats.json").read_bytes() == stats, "nothing overwritten"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my files")
    refused = runner.invoke(app, ["pack", "-w", str(other), "--out", str(foreign)])
    assert refused.exit_code == 2 and "not empty" in refused.output
    forced = runner.invoke(app, ["pack", "-w", str(other), "--out", str(foreign), "--force", "-q"])
    assert forced.exit_code == 0, forced.output


def test_index_import_keeps_the_true_centre_of_antimeridian_footprints(tmp_path: Path) -> None:
    rows = [("0000001", t, square(179.995, -16.5)) for t in range(4)]
    (found,) = read_reference_index(index_parquet(tmp_path / "i.parquet", rows))
    assert abs(abs(found.position.lon) - 179.995) < 1e-6 and abs(found.position.lat + 16.5) < 1e-9


def test_index_csv_with_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "i.csv"
    path.write_bytes("\ufeffsample_id,lon,lat\n0000001,11.5,48.1\n".encode())
    (found,) = read_reference_index(path)
    assert found.sample_id == "0000001"
    with pytest.raises(InputError, match="no rows"):
        path.write_bytes("\ufeffsample_id,lon,lat\n".encode())
        read_reference_index(path)
