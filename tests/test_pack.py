"""`pack` and `validate` on aligned simulator output: the exact v1.1 layout."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ssl4eo_build import pipeline
from ssl4eo_build.align.cube import load_cube
from ssl4eo_build.config import Config, load_config, override
from ssl4eo_build.errors import ConfigChangedError
from ssl4eo_build.files import file_sha256
from ssl4eo_build.manifest import Manifest
from ssl4eo_build.modalities import modality as registry_modality
from ssl4eo_build.pack.core import Located, open_shard, plan_shards, spatial_split
from ssl4eo_build.pack.validate import validate_dataset
from ssl4eo_build.sample.cities import write_cities
from ssl4eo_build.workdir import WorkDir

from .conftest import write_toml
from .v11_loaders import DEFAULT_MODALITIES, webdataset_loader, zarr_loader

MODALITIES = DEFAULT_MODALITIES  # v1.1's seven


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path]:
    root = tmp_path_factory.mktemp("pack")
    cities = root / "cities.csv"
    write_cities(
        cities,
        [(1, "Munich", "DE", 48.137, 11.575, 1), (2, "Lima", "PE", -12.05, -77.04, 1),
         (3, "Osaka", "JP", 34.69, 135.5, 1)],
    )  # fmt: skip
    cfg = load_config(
        write_toml(
            root / "p.toml",
            f'[sample]\nn = 16\nseed = 4\nsigma_m = 20000.0\ncities = "{cities}"\n'
            "[download]\nworkers = 3\n[synthetic]\npartial_prob = 0.0\n"
            # The tests compare the shards with the cubes they were packed from.
            "[pack]\nshard_size = 4\nval_fraction = 0.3\nsplit_block_deg = 5.0\n"
            "keep_cubes = true\n",
        )
    )
    work = root / "w"
    pipeline.run_sample(cfg, work)
    pipeline.run_download(cfg, work, progress=False)
    pipeline.run_align(cfg, work, progress=False, workers=2)
    pipeline.run_pack(cfg, work, progress=False, workers=2)
    return cfg, work


def shard_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*/*.zarr.zip"))


def test_exact_schema(packed: tuple[Config, Path]) -> None:
    _, work = packed
    path = work / "dataset/train/S2L2A/ssl4eos12_train_seasonal_data_000001.zarr.zip"
    ds = open_shard(path)
    assert dict(ds.sizes) == {"sample": 4, "time": 4, "band": 12, "y": 264, "x": 264}
    assert ds["bands"].dims == ("sample", "time", "band", "y", "x")
    assert ds["bands"].dtype == np.int16
    assert ds["bands"].encoding["chunks"] == (4, 1, 12, 264, 264)
    assert [str(b) for b in ds["band"].values][:3] == ["B01", "B02", "B03"]
    assert ds["band"].dtype == "<U3" and ds["sample"].dtype == "<U7"
    for name in ("time", "x", "y"):
        assert ds[name].dtype == np.int64
    assert list(ds["x"].values) == list(range(264))
    expected = {
        "center_lat": (("sample",), "float64"),
        "center_lon": (("sample",), "float64"),
        "cloud_mask": (("sample", "time", "y", "x"), "uint8"),
        "crs": (("sample",), "int64"),
        "file_id": (("sample", "time"), "<U38"),
        "sample_id": (("sample", "time"), "<U9"),
        "time_": (("sample", "time"), "datetime64[ns]"),
        "x_": (("sample", "x"), "float64"),
        "y_": (("sample", "y"), "float64"),
    }
    assert set(ds.data_vars) == {"bands", *expected}
    for name, (dims, dtype) in expected.items():
        assert ds[name].dims == dims and str(ds[name].dtype) == dtype, name
    s = str(ds["sample"].values[0])
    assert [str(v) for v in ds["sample_id"].values[0]] == [f"{s}_{t}" for t in range(4)]
    assert np.all(np.diff(ds["time_"].values, axis=1) > np.timedelta64(0))
    s1 = open_shard(str(path).replace("S2L2A", "S1GRD"))
    assert s1["bands"].dtype == np.float16 and "cloud_mask" not in s1
    assert [str(b) for b in s1["band"].values] == ["vv", "vh"] and s1["band"].dtype == "<U2"
    assert s1["file_id"].dtype == "<U67"
    rgb = open_shard(str(path).replace("S2L2A", "S2RGB"))
    assert rgb["bands"].dtype == np.uint8 and rgb.sizes["band"] == 3
    l1c = open_shard(str(path).replace("S2L2A", "S2L1C"))
    assert l1c.sizes["band"] == 13 and "B10" in [str(b) for b in l1c["band"].values]
    # The codecs: Blosc LZ4 for pack.blosc_lz4 (S2L1C), the configured one for the others.
    assert l1c["bands"].encoding["compressors"][0].get_config()["cname"] == "lz4"
    for shard in (ds, s1, rgb):
        compressor = shard["bands"].encoding["compressors"][0].get_config()
        assert (compressor["cname"], compressor["clevel"], compressor["blocksize"]) == (
            "zstd", 1, 4 << 20
        )  # fmt: skip
    for name, dtype, band in (("NDVI", np.float16, "ndvi"), ("LULC", np.uint8, "lulc")):
        extra = open_shard(str(path).replace("S2L2A", name))
        assert extra["bands"].dtype == dtype and "cloud_mask" not in extra
        assert [str(b) for b in extra["band"].values] == [band]
        assert extra.sizes["time"] == 4 and np.array_equal(extra["time_"], ds["time_"])
    ndvi = open_shard(str(path).replace("S2L2A", "NDVI"))["bands"].values
    assert ndvi.min() >= -1.0 and ndvi.max() <= 1.0
    lulc = open_shard(str(path).replace("S2L2A", "LULC"))
    assert set(np.unique(lulc["bands"].values)) <= set(range(10))
    assert all(":20" in str(f) for f in lulc["file_id"].values.ravel()), "image and year"
    # DEM: one timestamp, time value 0, 1970-01-01, the source asset as file id.
    dem = open_shard(str(path).replace("S2L2A", "DEM"))
    assert dict(dem.sizes) == {"sample": 4, "time": 1, "band": 1, "y": 264, "x": 264}
    assert dem["bands"].dtype == np.float32 and list(dem["time"].values) == [0]
    assert (dem["time_"].values == np.datetime64(0, "ns")).all()
    assert [str(v) for v in dem["sample_id"].values[0]] == [f"{s}_0"]
    assert set(dem["file_id"].values.ravel()) == {"COPERNICUS/DEM/GLO30"}


def test_pixels_are_the_aligned_cubes(packed: tuple[Config, Path]) -> None:
    _, work = packed
    ds = open_shard(work / "dataset/train/S1GRD/ssl4eos12_train_seasonal_data_000002.zarr.zip")
    sample = str(ds["sample"].values[2])
    cube = load_cube(WorkDir.at(work).cube(sample))
    assert np.array_equal(ds["bands"].values[2], cube.modalities["S1GRD"].bands)
    assert np.array_equal(ds["x_"].values[2], cube.x)
    assert int(ds["crs"].values[2]) == cube.epsg


def test_same_samples_same_order_in_every_modality(packed: tuple[Config, Path]) -> None:
    _, work = packed
    names = {p.name for p in shard_files(work / "dataset")}
    for name in names:
        split = name.split("_")[1]
        orders = [
            list(open_shard(work / "dataset" / split / m / name)["sample"].values)
            for m in MODALITIES
        ]
        assert all(o == orders[0] for o in orders)


def test_split_is_spatially_disjoint_and_files_listed(packed: tuple[Config, Path]) -> None:
    _, work = packed
    import geopandas

    meta = {
        s: geopandas.read_parquet(work / f"dataset/splits/{s}_metadata.parquet")
        for s in ("train", "val")
    }
    for split, frame in meta.items():
        assert list(frame.columns) == [
            "sample_id",
            "time_id",
            "time",
            "tile_id",
            "geometry",
            "tile_crs",
            "file",
        ]
        assert frame.index.name == "idx"
        assert frame.geometry.iloc[0].geom_type == "Polygon"
        listed = (work / f"dataset/splits/ssl4eos12_{split}.txt").read_text().split()
        assert sorted(set(frame["file"])) == sorted(listed)
        assert set(Counter(frame["sample_id"]).values()) == {4}
    blocks = {
        s: {(int(np.floor(g.centroid.x / 5)), int(np.floor(g.centroid.y / 5))) for g in f.geometry}
        for s, f in meta.items()
    }
    assert len(meta["val"]) > 0
    assert not blocks["train"] & blocks["val"], "no block holds both splits"
    # The footprint's centre is the patch centre (about 1.3 km from each edge).
    row = meta["train"].iloc[0]
    ds = open_shard(work / "dataset/train/S2L2A" / row["file"])
    i = list(ds["sample"].values).index(row["sample_id"])
    assert abs(row.geometry.centroid.x - float(ds["center_lon"].values[i])) < 1e-3


def test_stats_are_train_means(packed: tuple[Config, Path]) -> None:
    _, work = packed
    stats = json.loads((work / "dataset/stats.json").read_text())
    assert set(stats) == set(MODALITIES)
    assert len(stats["S2L1C"]["mean"]) == 13 and len(stats["S1GRD"]["std"]) == 2
    values = np.concatenate(
        [
            open_shard(p)["bands"].values[:, :, 0].astype(np.float64).ravel()
            for p in sorted((work / "dataset/train/S1GRD").glob("*.zarr.zip"))
        ]
    )
    assert stats["S1GRD"]["mean"][0] == pytest.approx(values.mean(), abs=1e-3)
    assert stats["S1GRD"]["std"][0] == pytest.approx(values.std(), abs=1e-3)


def test_zip_entries_written_once(packed: tuple[Config, Path]) -> None:
    _, work = packed
    for path in shard_files(work / "dataset"):
        names = zipfile.ZipFile(path).namelist()
        assert len(names) == len(set(names))
        assert ".zmetadata" in names and "bands/.zarray" in names


ZARR2_SCRIPT = """
import sys, xarray as xr, zarr
assert zarr.__version__.startswith("2.18"), zarr.__version__
for other in sys.argv[2:]:  # every other modality's file opens and decodes too
    xr.open_zarr(other).load()
ds = xr.open_zarr(sys.argv[1])
total = float(ds.bands.values.astype("float64").sum())
print(zarr.__version__, dict(ds.sizes), str(ds.bands.dtype), str(ds.time_.dtype), total)
"""


def test_opens_under_zarr_2_18_with_the_plain_path(packed: tuple[Config, Path]) -> None:
    _, work = packed
    python = os.environ.get("SSL4EO_ZARR2_PYTHON", ".venv-zarr2/bin/python")
    if not Path(python).exists():
        pytest.skip("zarr 2.18 environment not built (make test builds it)")
    path = work / "dataset/train/S2L1C/ssl4eos12_train_seasonal_data_000001.zarr.zip"
    others = [str(path).replace("/S2L1C/", f"/{m}/") for m in MODALITIES if m != "S2L1C"]
    out = subprocess.run(
        [python, "-c", ZARR2_SCRIPT, str(path), *others],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0] == "2.18.0" and "int16" in out and "datetime64[ns]" in out
    assert float(out[-1]) == float(open_shard(path)["bands"].values.astype(np.float64).sum())


def test_rerun_keeps_shards_and_repack_is_byte_identical(packed: tuple[Config, Path], tmp_path):
    cfg, work = packed
    files = shard_files(work / "dataset")
    before = {p: (p.stat().st_mtime_ns, file_sha256(p)) for p in files}
    again = pipeline.run_pack(cfg, work, progress=False)
    assert again.shards_written == 0
    assert {p: (p.stat().st_mtime_ns, file_sha256(p)) for p in files} == before
    other = pipeline.run_pack(cfg, work, out=tmp_path / "copy", progress=False, force=True)
    assert other.shards_written == len(files) // len(MODALITIES)
    for p in files:
        twin = tmp_path / "copy" / p.relative_to(work / "dataset")
        assert file_sha256(twin) == before[p][1], "same inputs and seed: byte-identical shards"


def test_killed_pack_finishes_only_missing_shards(packed: tuple[Config, Path], tmp_path) -> None:
    cfg, work = packed
    out = tmp_path / "resume"
    pipeline.run_pack(cfg, work, out=out, progress=False, force=True)
    victim = sorted(out.glob("train/S2L1C/*.zarr.zip"))[-1]
    victim.unlink()  # as if the process died before this shard was complete
    db = sqlite3.connect(work / "manifest.sqlite")
    n_shards = db.execute("SELECT COUNT(*) FROM pack_shards").fetchone()[0]
    summary = pipeline.run_pack(cfg, work, out=out, progress=False)
    assert summary.shards_written == 1 and summary.shards_kept == n_shards - 1
    assert victim.exists() and validate_dataset(out) == []


def test_changed_settings_are_refused(packed: tuple[Config, Path], tmp_path) -> None:
    cfg, work = packed
    pipeline.run_pack(cfg, work, out=tmp_path / "once", progress=False)
    # The setting that changed is named, with its old and new value.
    with pytest.raises(
        ConfigChangedError, match=r"other settings \(pack\.seed: 0 -> 99\).*--force"
    ):
        pipeline.run_pack(
            override(cfg, "pack.seed", 99), work, out=tmp_path / "once", progress=False
        )
    assert pipeline.run_pack(cfg, work, out=tmp_path / "once", progress=False).shards_written == 0
    # Other inputs with the same settings: one location fewer to pack.
    with Manifest.open(work) as manifest:
        ids = sorted(r[0] for r in manifest.packable())[1:]
    with pytest.raises(ConfigChangedError, match=r"from other inputs .*--force"):
        pipeline.run_pack(cfg, work, out=tmp_path / "once", progress=False, sample_ids=ids)


def test_validate_passes_and_catches_a_broken_shard(packed: tuple[Config, Path], tmp_path) -> None:
    _, work = packed
    assert validate_dataset(work / "dataset") == []
    broken = tmp_path / "broken"
    shutil.copytree(work / "dataset", broken)
    victim = broken / "train/S2L2A/ssl4eos12_train_seasonal_data_000001.zarr.zip"
    ds = open_shard(victim).load()
    from ssl4eo_build.pack.zarr_zip import Variable, write_zarr_zip

    variables = {}  # without the cloud mask, bands as int32
    for name, var in ds.variables.items():
        values = var.values.astype("int32") if name == "bands" else var.values
        dims = tuple(str(d) for d in var.dims)
        if values.dtype.kind == "M":
            variables[str(name)] = Variable.times(dims, values)
        elif name != "cloud_mask":
            variables[str(name)] = Variable(dims, values)
    write_zarr_zip(victim, variables, {})
    (broken / "train/S2RGB/ssl4eos12_train_seasonal_data_000002.zarr.zip").unlink()
    problems = validate_dataset(broken)
    text = "\n".join(problems)
    assert "bands dtype int32, expected int16" in text
    assert "variable 'cloud_mask' missing" in text
    assert "S2RGB/ssl4eos12_train_seasonal_data_000002.zarr.zip: missing" in text


def test_stores_are_the_zips_zipfile_writes_and_fall_back_to_it_past_zip32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from ssl4eo_build.pack import zarr_zip
    from ssl4eo_build.pack.zarr_zip import Variable, write_zarr_zip, zarr_zip_buffer

    rng = np.random.default_rng(3)
    variables = {
        "bands": Variable(("t", "y", "x"), rng.integers(0, 9999, (3, 40, 40), dtype=np.int16),
                          (1, 40, 40)),
        "name": Variable(("t",), np.array(["a", "bc", "def"])),
        "time": Variable.times(("t",), np.array(["2021-01-02T03:04:05"] * 3, "datetime64[s]")),
    }  # fmt: skip
    expected = io.BytesIO()
    zarr_zip._write_with_zipfile(expected, zarr_zip._entries(variables, {"k": 1}))
    assert bytes(zarr_zip_buffer(variables, {"k": 1})) == expected.getvalue()
    sha = write_zarr_zip(tmp_path / "a.zarr.zip", variables, {"k": 1})
    assert (tmp_path / "a.zarr.zip").read_bytes() == expected.getvalue()
    assert sha == hashlib.sha256(expected.getvalue()).hexdigest()
    with zipfile.ZipFile(tmp_path / "a.zarr.zip") as archive:
        assert archive.testzip() is None and ".zmetadata" in archive.namelist()
    assert (
        open_shard(tmp_path / "a.zarr.zip")["bands"].values[2, 5, 7]
        == variables["bands"].data[2, 5, 7]
    )
    # A name that is not ASCII: zipfile's UTF-8 flag.
    accented = {"été": variables["name"]}
    expected_utf8 = io.BytesIO()
    zarr_zip._write_with_zipfile(expected_utf8, zarr_zip._entries(accented, {}))
    assert bytes(zarr_zip_buffer(accented, {})) == expected_utf8.getvalue()
    # Past the zip32 limits (made small here), zipfile writes the store, zip64 where needed.
    monkeypatch.setattr(zarr_zip, "_ZIP32_LIMIT", 1000)
    sha = write_zarr_zip(tmp_path / "b.zarr.zip", variables, {"k": 1})
    assert (tmp_path / "b.zarr.zip").read_bytes() == expected.getvalue()
    assert sha == hashlib.sha256(expected.getvalue()).hexdigest()
    assert bytes(zarr_zip_buffer(variables, {"k": 1})) == expected.getvalue()


def test_an_unknown_modality_for_lz4_is_refused_before_anything_is_recorded(
    packed: tuple[Config, Path], tmp_path: Path
) -> None:
    from ssl4eo_build.errors import ConfigError

    cfg, work = packed

    def recorded() -> tuple[object, ...]:
        with Manifest.open(work, create=False) as manifest:
            return (
                manifest.get_meta("pack.out"),
                manifest.get_meta("pack.plan"),
                manifest.last_runs(),
            )

    before = recorded()
    with pytest.raises(ConfigError, match=r"'pack\.blosc_lz4': unknown modality 'S2X'"):
        pipeline.run_pack(override(cfg, "pack.blosc_lz4", ("S2X",)), work, out=tmp_path / "o")
    assert recorded() == before and not (tmp_path / "o").exists()


def test_split_and_plan_units() -> None:
    items = [Located(f"{i:07d}", (i % 10) * 3.0, 0.5) for i in range(100)]
    splits = spatial_split(items, 0.1, 1.0, seed=0)
    assert len(splits["val"]) == 10 and len(splits["train"]) == 90
    assert spatial_split(items, 0.1, 1.0, seed=0) == splits
    plans, left = plan_shards(splits, 64, keep_partial=False)
    assert [len(p.sample_ids) for p in plans] == [64] and left == {
        "train": splits["train"][64:],
        "val": splits["val"],
    }
    plans, left = plan_shards(splits, 64, keep_partial=True)
    assert [(p.split, p.number, len(p.sample_ids)) for p in plans] == [
        ("train", 1, 64),
        ("train", 2, 26),
        ("val", 1, 10),
    ]


def test_a_tar_and_the_shards_that_are_runs_of_it_are_one_part(tmp_path: Path) -> None:
    from ssl4eo_build.pack.core import Encoding, PackPart, plan_tars, shard_name, tar_name
    from ssl4eo_build.pack.stage import Layout, _part_groups

    ids = [f"{i:07d}" for i in range(23)]
    splits = {"train": ids[:17], "val": ids[17:]}
    shards, _ = plan_shards(splits, 4, keep_partial=True)
    tars = plan_tars(splits, 6)
    layouts = [
        Layout("zarr", tmp_path, "", shards, Encoding({}), shard_name),
        Layout("webdataset", tmp_path, "", tars, Encoding({}), lambda s, n: tar_name(n)),
    ]
    groups = _part_groups([(layouts[0], shards), (layouts[1], tars)])
    numbers = [([(p.split, p.number) for p in z], t and (t.split, t.number)) for z, t in groups]
    assert numbers == [
        ([("train", 1)], ("train", 1)),  # train 4-7 straddles tars 1 and 2: alone, last
        ([("train", 3)], ("train", 2)),
        ([("train", 4), ("train", 5)], ("train", 3)),
        ([("val", 1), ("val", 2)], ("val", 1)),
        ([("train", 2)], None),
    ]
    for z, t in groups:
        PackPart("S2L1C", {}, z, t)  # each shard a run of the part's samples
    # Tars already written: every shard on its own.
    alone = _part_groups([(layouts[0], shards[1:3]), (layouts[1], [])])
    assert alone == [((shards[1],), None), ((shards[2],), None)]
    with pytest.raises(ValueError, match="not a run"):
        PackPart("S2L1C", {}, (shards[1],), tars[0])


def test_band_sums_of_a_layout_follow_its_offset_and_its_saturation() -> None:
    from ssl4eo_build.pack.core import Encoding, RunningStats

    zarr_layout = Encoding({}, s2_offset=1000)
    for top in (20000, 32000):  # 32000 + 1000 saturates at 32767
        values = np.array([[[[0, 7], [top, 31]]]], dtype=np.int16)  # (time, band, y, x)
        before = RunningStats().add(values[None])
        stored = zarr_layout.shift("S2L1C", values.copy())
        peak = float(values.max())  # below 31767: one addition; above: saturated
        assert np.array_equal(
            zarr_layout.shift("S2L1C", values, np.empty_like(values), peak), stored
        )
        direct = RunningStats().add(stored[None])
        derived = zarr_layout.sums("S2L1C", before, float(values.max()), stored)
        assert derived.count is not None and derived.total is not None
        assert derived.squares is not None and direct.squares is not None
        np.testing.assert_array_equal(derived.count, direct.count)
        np.testing.assert_allclose(derived.total, direct.total, rtol=1e-12)
        np.testing.assert_allclose(derived.squares, direct.squares, rtol=1e-12)
    assert stored.max() == 32767
    assert zarr_layout.sums("S1GRD", before, 1e9, stored) is before  # no offset on S-1


def test_webdataset_layout_reads_with_webdataset(packed: tuple[Config, Path], tmp_path) -> None:
    import tarfile

    import webdataset as wds
    import zarr

    cfg, work = packed
    out = tmp_path / "wds"
    wds_cfg = override(override(cfg, "pack.format", "webdataset"), "pack.samples_per_tar", 3)
    pipeline.run_pack(wds_cfg, work, out=out, progress=False)
    from ssl4eo_build.cli.app import app
    from typer.testing import CliRunner

    checked = CliRunner().invoke(app, ["validate", str(out)])
    assert checked.exit_code == 0 and "(WebDataset: " in checked.output, checked.output
    tars = sorted(out.glob("train/S2L2A/*.tar"))
    assert [t.name for t in tars[:2]] == [
        "ssl4eos12_shard_000001.tar",
        "ssl4eos12_shard_000002.tar",
    ]
    keys = {}
    for m in MODALITIES:
        with tarfile.open(out / "train" / m / tars[0].name) as archive:
            keys[m] = archive.getnames()
            members = [(i.name, archive.extractfile(i).read()) for i in archive.getmembers()]
        again = io.BytesIO()  # the same members through tarfile: the same bytes
        with tarfile.open(fileobj=again, mode="w", format=tarfile.USTAR_FORMAT) as archive:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                archive.addfile(info, io.BytesIO(data))
        assert again.getvalue() == (out / "train" / m / tars[0].name).read_bytes()
    assert all(k == keys["S2L2A"] for k in keys.values()), "member keys aligned across modalities"
    seen = 0
    for sample in wds.WebDataset(str(tars[0]), shardshuffle=False):
        member = tmp_path / f"{sample['__key__']}.zarr.zip"
        member.write_bytes(sample["zarr.zip"])
        ds = __import__("xarray").open_zarr(zarr.storage.ZipStore(str(member), mode="r"))
        assert ds["bands"].dims == ("time", "band", "y", "x") and ds["bands"].dtype == np.int16
        assert ds["bands"].encoding["chunks"] == (4, 12, 264, 264), "one chunk"
        assert ds["time"].dtype == np.int64 and ds["cloud_mask"].dims == ("time", "y", "x")
        assert {"center_lon", "center_lat", "file_id"} <= set(ds.data_vars)
        cube = load_cube(WorkDir.at(work).cube(sample["__key__"]))
        assert np.array_equal(ds["bands"].values, cube.modalities["S2L2A"].bands)
        seen += 1
    assert seen == 3
    assert validate_dataset(out) == []
    names = (out / "splits/ssl4eos12_train.txt").read_text().split()
    assert names[0] == "ssl4eos12_shard_000001.tar"
    (out / "train/S1GRD" / tars[0].name).unlink()
    assert any("missing in some modality" in p for p in validate_dataset(out))


def test_metadata_has_the_published_form(packed: tuple[Config, Path], tmp_path: Path) -> None:
    import json
    import shutil

    import geopandas
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    _, work = packed
    path = work / "dataset/splits/train_metadata.parquet"
    frame = geopandas.read_parquet(path)
    assert frame.crs is not None and frame.crs.to_epsg() == 4326
    for geom in frame.geometry:
        assert len(geom.exterior.coords) == 5 and geom.exterior.is_ccw, "five-point, CCW"
    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    column = geo["columns"]["geometry"]
    assert geo["version"] == "1.1.0" and column["crs"]["id"]["code"] == 4326
    np.testing.assert_allclose(column["bbox"], frame.total_bounds)
    # The corners are the shard's pixel-edge corners, in EPSG:4326.
    row = frame.iloc[0]
    ds = open_shard(work / "dataset/train/S2L2A" / row["file"])
    i = list(ds["sample"].values).index(row["sample_id"])
    x, y = ds["x_"].values[i], ds["y_"].values[i]
    from ssl4eo_build.grid import transformer

    lon, lat = transformer(int(ds["crs"].values[i]), 4326).transform(x[0] - 5.0, y[-1] - 5.0)
    np.testing.assert_allclose(row.geometry.exterior.coords[0], (lon, lat), atol=1e-9)
    assert not np.any(ds["time_"].values.astype(np.int64) % 1_000_000_000), "whole seconds"
    # validate names a footprint of the old form (33-point clockwise ring).
    broken = tmp_path / "dataset"
    shutil.copytree(work / "dataset", broken)
    table = pq.read_table(broken / "splits/train_metadata.parquet")
    ring = shapely.Polygon(
        shapely.get_coordinates(shapely.from_wkb(table["geometry"][0].as_py())).tolist()[::-1]
    ).segmentize(0.001)
    column_index = table.column_names.index("geometry")
    values = [shapely.to_wkb(ring), *table["geometry"].to_pylist()[1:]]
    table = table.set_column(column_index, "geometry", pa.array(values))
    pq.write_table(table, broken / "splits/train_metadata.parquet")
    problems = validate_dataset(broken)
    assert any("five-point counter-clockwise" in p for p in problems), problems


@pytest.fixture(scope="module")
def both(packed: tuple[Config, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``--format both`` of the packed locations, the same samples in both layouts. 6
    samples per tar and 4 per shard: some shards are runs of a tar's samples (written from
    the same reads), others straddle two tars (written on their own)."""
    cfg, work = packed
    out = tmp_path_factory.mktemp("both") / "both"
    both = override(override(cfg, "pack.format", "both"), "pack.samples_per_tar", 6)
    pipeline.run_pack(override(both, "pack.keep_partial", True), work, out=out, progress=False)
    return out


def test_both_layouts_each_complete_with_their_own_s2_offset(
    packed: tuple[Config, Path], both: Path, tmp_path: Path
) -> None:
    import tarfile

    import xarray as xr
    import zarr

    cfg, work = packed
    out = both
    wds_root = out / "webdataset"
    for root in (out, wds_root):
        assert validate_dataset(root) == [], root
        for name in ("stats.json", "checksums.sha256", "splits/train_metadata.parquet"):
            assert (root / name).is_file(), (root, name)
    assert not list(out.glob("train/*/*.tar")) and not list(wds_root.glob("train/*/*.zarr.zip"))
    shard = open_shard(sorted(out.glob("train/S2L1C/*.zarr.zip"))[0])
    assert shard["bands"].attrs["dn_offset"] == 1000
    sample = str(shard["sample"].values[0])
    member = None
    for tar in sorted(wds_root.glob("train/S2L1C/*.tar")):
        with tarfile.open(tar) as archive:
            if f"{sample}.zarr.zip" in archive.getnames():
                data = archive.extractfile(f"{sample}.zarr.zip").read()  # type: ignore[union-attr]
                member_path = tmp_path / "member.zarr.zip"
                member_path.write_bytes(data)
                member = xr.open_zarr(zarr.storage.ZipStore(str(member_path), mode="r"))
    assert member is not None and member["bands"].attrs["dn_offset"] == 0
    # Provenance: the same in both layouts but for the offset; the rest of the build in
    # build.json, listed in each root's checksums.
    version = __import__("ssl4eo_build").__version__
    for ds, offset in ((shard, 1000), (member, 0)):
        assert ds.attrs["source"] == "synthetic" and ds.attrs["s2_dn_offset"] == offset
        assert ds.attrs["software"] == f"ssl4eo-build {version}" != "ssl4eo-build unknown"
    assert shard.attrs["config_sha256"] == member.attrs["config_sha256"]
    for root, layout in ((out, "zarr"), (wds_root, "webdataset")):
        build = json.loads((root / "build.json").read_text())
        assert build["layout"] == layout and build["config_sha256"] == shard.attrs["config_sha256"]
        assert build["config"]["pack"]["format"] == "both" and build["source"] == "synthetic"
        assert build["stages"]["align"]["finished"] and build["samples"]["train"] > 0
        assert "build.json" in (root / "checksums.sha256").read_text()
    zarr_values = shard["bands"].values[0].astype(np.int32)
    wds_values = member["bands"].values.astype(np.int32)
    assert np.array_equal(zarr_values, np.minimum(wds_values + 1000, 32767)), "+1000, saturating"
    stats = {r: json.loads((r / "stats.json").read_text()) for r in (out, wds_root)}
    for modality in ("S2L1C", "S2L2A"):
        diff = np.subtract(stats[out][modality]["mean"], stats[wds_root][modality]["mean"])
        np.testing.assert_allclose(diff, 1000.0, atol=0.01)
    assert stats[out]["S1GRD"] == stats[wds_root]["S1GRD"]
    # The Zarr layout is the same packed alone, byte for byte.
    zarr_alone = override(override(cfg, "pack.format", "zarr"), "pack.keep_partial", True)
    pipeline.run_pack(zarr_alone, work, out=tmp_path / "alone", progress=False)
    alone = {p.relative_to(tmp_path / "alone"): p for p in shard_files(tmp_path / "alone")}
    assert sorted(alone) == [p.relative_to(out) for p in shard_files(out)]
    for rel, path in alone.items():
        assert (out / rel).read_bytes() == path.read_bytes(), rel
    assert (tmp_path / "alone/stats.json").read_bytes() == (out / "stats.json").read_bytes()
    assert set(stats[out]) == set(stats[wds_root]) == set(MODALITIES)
    for m in MODALITIES:
        assert stats[out][m]["bands"] == list(registry_modality(m).bands)
        times = registry_modality(m).timestamps
        assert stats[out][m]["count"] == build_samples(out, "train") * times * 264 * 264, m
    # Both published loaders read every modality of their layout, samples aligned.
    by_key = {}
    for split in ("train", "val"):
        for item in zarr_loader(out, split):
            assert item["DEM"].shape[1:] == (1, 1, 264, 264)
            for i, key in enumerate(item["sample"]):
                by_key[key] = {m: item[m][i] for m in MODALITIES}
    seen = 0
    for split in ("train", "val"):
        for sample in webdataset_loader(wds_root, split):
            seen += 1
            published = by_key[sample["__key__"]]
            for m in MODALITIES:
                stored = sample[m].astype(np.int32) + (1000 if m in ("S2L1C", "S2L2A") else 0)
                expected = published[m].astype(np.int32) if m in ("S2L1C", "S2L2A") else None
                if expected is not None:  # the Zarr layout saturates at 32767
                    assert np.array_equal(np.minimum(stored, 32767), expected), m
                else:
                    assert np.array_equal(sample[m], published[m], equal_nan=True), m
            assert "time_DEM" not in sample and sample["time_S2L2A"].shape == (4,)
            assert sample["cloud_mask"].shape == (4, 264, 264)
            assert sample["NDVI"].min() >= -1.0 and sample["NDVI"].max() <= 1.0
            assert sample["LULC"].dtype == np.uint8 and sample["LULC"].max() <= 9
    assert seen == len(by_key) > 0
    # validate holds stats.json against the values.
    published = (out / "stats.json").read_bytes()
    edited = json.loads(published)
    edited["S2L2A"]["mean"][3] -= 1000.0
    (out / "stats.json").write_text(json.dumps(edited))
    problems = validate_dataset(out)
    (out / "stats.json").write_bytes(published)  # the dataset is the module's
    assert any("S2L2A mean of band B04" in p for p in problems), problems


def build_samples(root: Path, split: str) -> int:
    return int(json.loads((root / "build.json").read_text())["samples"][split])


def test_shards_say_their_date_rule_and_validate_holds_them_to_it(
    packed: tuple[Config, Path],
) -> None:
    from ssl4eo_build.pack.validate import _check_date_span

    _, work = packed
    ds = open_shard(sorted((work / "dataset/train/S2L2A").glob("*.zarr.zip"))[0])
    assert ds.attrs["date_rule"] == "v1_shift"
    spans = ds["time_"].values.max(axis=1) - ds["time_"].values.min(axis=1)
    assert spans.max() < np.timedelta64(365, "D")
    year_apart = np.array([["2020-01-01", "2021-01-02"]], dtype="datetime64[ns]")
    assert list(_check_date_span(Path("x"), ds.attrs, year_apart))
    assert not list(_check_date_span(Path("x"), {"date_rule": "fixed_year"}, year_apart))


def test_sample_dataset_reads_both_layouts_as_the_shards_hold_them(both: Path) -> None:
    import pickle

    from ssl4eo_build import SampleDataset
    from ssl4eo_build.reader import DatasetLayoutError

    out = both
    wanted = ("S2L2A", "S1GRD", "DEM", "LULC")
    zarr_ds = SampleDataset(out, modalities=wanted, split="train")
    wds = SampleDataset(out, modalities=wanted, split="train", layout="webdataset")
    assert (zarr_ds.layout, wds.layout) == ("zarr", "webdataset")
    assert SampleDataset(out / "webdataset", modalities=wanted).layout == "webdataset"
    truth = {}
    for shard in sorted(out.glob("train/S2L2A/*.zarr.zip")):
        ds = {m: open_shard(out / "train" / m / shard.name) for m in wanted}
        for i, sid in enumerate(ds["S2L2A"]["sample"].values):
            truth[str(sid)] = {m: ds[m]["bands"].values[i] for m in wanted}
            truth[str(sid)]["cloud_mask"] = ds["S2L2A"]["cloud_mask"].values[i]
            truth[str(sid)]["time"] = ds["S2L2A"]["time_"].values[i]
            truth[str(sid)]["center"] = (
                float(ds["S2L2A"]["center_lon"].values[i]),
                float(ds["S2L2A"]["center_lat"].values[i]),
            )
    assert len(zarr_ds) == len(truth) > 4
    order = zarr_ds.shard_order(seed=3)
    assert sorted(order) == list(range(len(zarr_ds))) and order != sorted(order)
    # Every item is checked after the whole pass: a shard decoded later reuses the buffers of
    # the one before, and the items already handed out must not change with them.
    items = [zarr_ds[i] for i in order]
    assert len({zarr_ds.items[i].file for i in order}) > 1, "more than one shard read"
    for item in items:
        expected = truth[item["sample_id"]]
        for m in wanted:
            assert item[m].shape == expected[m].shape and item[m].ndim == 4, m
            assert np.array_equal(item[m], expected[m], equal_nan=True), m
        assert np.array_equal(item["cloud_mask"], expected["cloud_mask"])
        assert np.array_equal(item["time_S2L2A"], expected["time"])
        assert tuple(item["center"]) == expected["center"]
    # The tars hold the same samples, S-2 without the Zarr layout's +1000: removing each
    # layout's own offset gives the same numbers (below the Zarr layout's saturation).
    assert sorted(wds[i]["sample_id"] for i in range(len(wds))) == sorted(truth)
    again = pickle.loads(pickle.dumps(wds))  # as DataLoader workers receive it
    plain = SampleDataset(out, modalities=wanted, remove_s2_offset=True)
    by_id = {plain[i]["sample_id"]: plain[i] for i in range(len(plain))}
    for i in range(len(again)):
        item = again[i]
        ref = by_id[item["sample_id"]]
        assert item["S2L2A"].dtype == np.int16
        assert np.array_equal(np.minimum(item["S2L2A"], 31767), ref["S2L2A"])
        assert np.array_equal(item["S1GRD"], ref["S1GRD"], equal_nan=True)
        assert np.array_equal(item["LULC"], ref["LULC"])
        assert np.array_equal(item["cloud_mask"], ref["cloud_mask"])
    # normalize: the train split standardised with its own stats.json.
    normed = SampleDataset(out, modalities=("S2L2A",), normalize=True)
    values = np.stack([normed[i]["S2L2A"] for i in range(len(normed))]).astype(np.float64)
    np.testing.assert_allclose(values.mean(axis=(0, 1, 3, 4)), 0.0, atol=1e-3)
    np.testing.assert_allclose(values.std(axis=(0, 1, 3, 4)), 1.0, atol=1e-3)
    with pytest.raises(DatasetLayoutError, match="no packed dataset"):
        SampleDataset(out.parent)  # holds only the dataset directory
    with pytest.raises(DatasetLayoutError, match="expected some of"):
        SampleDataset(out, modalities=("S3",))


def test_reader_decodes_the_pack_chunking_itself_and_leaves_others_to_xarray(tmp_path: Path):
    import zipfile

    import numcodecs

    from ssl4eo_build.reader import _time_major

    values = np.arange(2 * 3 * 2 * 4 * 5, dtype=np.int16).reshape(2, 3, 2, 4, 5)
    codec = numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE)

    def shard(chunks: list[int], times: range) -> zipfile.ZipFile:
        path = tmp_path / f"{chunks}-{len(times)}.zip"
        meta = {"shape": list(values.shape), "chunks": chunks, "dtype": "<i2", "order": "C",
                "filters": None, "compressor": codec.get_config(), "zarr_format": 2}  # fmt: skip
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(".zmetadata", json.dumps({"metadata": {"bands/.zarray": meta}}))
            for t in times:
                chunk = np.ascontiguousarray(values[:, t : t + 1])
                archive.writestr(f"bands/0.{t}.0.0.0", codec.encode(chunk))
        return zipfile.ZipFile(path)

    pool: dict[str, np.ndarray] = {}

    def decoded(archive: zipfile.ZipFile) -> np.ndarray | None:
        metadata = json.loads(archive.read(".zmetadata"))["metadata"]
        return _time_major(archive, metadata, "bands", pool)

    out = decoded(shard([2, 1, 2, 4, 5], range(3)))
    assert out is not None and np.array_equal(out.swapaxes(0, 1), values)
    assert decoded(shard([1, 1, 2, 4, 5], range(3))) is None, "other chunks"
    assert decoded(shard([2, 1, 2, 4, 5], range(2))) is None, "a chunk missing"


def test_reader_reads_stored_members_into_its_buffer_with_their_crc_checked(tmp_path: Path):
    from ssl4eo_build.reader import _member

    path = tmp_path / "shard.zip"
    big, small = os.urandom(5000), b"chunk " * 40
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("big", big)
        with_extra = zipfile.ZipInfo("extra")  # a local extra field moves the data
        with_extra.extra = b"\x99\x99\x04\x00abcd"
        archive.writestr(with_extra, small)
        archive.writestr("deflated", small, compress_type=zipfile.ZIP_DEFLATED)
    pool: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        assert bytes(_member(archive, handle, "big", pool)) == big
        buffer = pool["member"]
        assert bytes(_member(archive, handle, "extra", pool)) == small
        assert pool["member"] is buffer, "a smaller member reuses the buffer"
        assert bytes(_member(archive, handle, "deflated", pool)) == small
        with pytest.raises(KeyError):
            _member(archive, handle, "missing", pool)
    data = bytearray(path.read_bytes())
    data[data.index(big[:64]) + 4000] ^= 0xFF
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        with pytest.raises(zipfile.BadZipFile, match=re.escape(f"{path}: bad CRC-32 for 'big'")):
            _member(archive, handle, "big", pool)
        assert bytes(_member(archive, handle, "extra", pool)) == small
