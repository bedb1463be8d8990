"""The modality registry and its derived layers: NDVI's rule, LULC classes, the cloud mask
from Cloud Score+ and SCL, and a new modality added as one registry entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssl4eo_build import modalities as registry
from ssl4eo_build import pipeline
from ssl4eo_build.config import AlignConfig, Config, load_config
from ssl4eo_build.derive import AlignedLayers, cloud_mask, lulc, ndvi
from ssl4eo_build.modalities import CLOUD_SCORE, DEM, LULC_ESRI, S2L2A, Modality
from ssl4eo_build.pack.core import open_shard
from ssl4eo_build.pack.validate import validate_dataset
from ssl4eo_build.sample.cities import write_cities

from .conftest import write_toml
from .v11_loaders import webdataset_loader


def layers(**stacks: np.ndarray) -> AlignedLayers:
    products = {"S2L2A": S2L2A, "LULC": LULC_ESRI, "CS": CLOUD_SCORE, "DEM": DEM}
    n_time = next(iter(stacks.values())).shape[0]
    mask = stacks.pop("mask", np.zeros((n_time, 2, 2), dtype=np.uint8))
    return AlignedLayers(stacks, products, mask, AlignConfig())


def l2a(red: list[int], nir: list[int]) -> np.ndarray:
    stack = np.zeros((1, len(S2L2A.bands), 1, len(red)), dtype=np.int16)
    stack[0, S2L2A.bands.index("B04"), 0] = red
    stack[0, S2L2A.bands.index("B08"), 0] = nir
    return stack


def test_ndvi_is_the_normalised_difference_and_zero_without_reflectance() -> None:
    out = ndvi(layers(S2L2A=l2a([100, 3000, 0, 0, 500], [900, 1000, 0, 40, 0])))
    assert out.dtype == np.float16 and out.shape == (1, 1, 1, 5)
    np.testing.assert_allclose(out[0, 0, 0], [0.8, -0.5, 0.0, 1.0, -1.0], atol=1e-3)


def test_land_cover_classes_with_snow_and_clouds_from_the_mask() -> None:
    esri = np.array([[[[1, 2, 4, 5, 7, 8, 9, 10, 11, 0, 3, 6, -32768]]]], dtype=np.int16)
    mask = np.zeros((1, 1, 13), dtype=np.uint8)
    out = lulc(layers(LULC=esri, mask=mask))
    assert out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0]
    mask[0, 0, :4] = (2, 3, 4, 5)  # snow, thin cloud, thick cloud, shadow
    out = lulc(layers(LULC=esri, mask=mask))
    assert out[0, 0, 0, :4].tolist() == [7, 8, 8, 4], "shadow keeps the yearly class"


def test_cloud_score_decides_clouds_and_scl_the_rest() -> None:
    scl = np.array([[4, 8, 9, 6, 11, 3, 10, 4]], dtype=np.int16)
    score = np.array([[0.9, 0.9, 0.1, 0.5, 0.9, 0.1, np.nan, 0.2]], dtype=np.float32)
    missing = np.zeros(scl.shape, dtype=bool)
    missing[0, 7] = True
    out = cloud_mask(scl, missing, score, AlignConfig(cs_clear=0.6, cs_thick=0.3))
    # clear land; SCL's cloud overruled; thick; thin over water; snow; shadow stays shadow;
    # no score: SCL's thin cirrus; missing before the fill: no data.
    assert out[0].tolist() == [0, 0, 4, 3, 2, 5, 3, 6]
    assert cloud_mask(scl, missing)[0].tolist() == [0, 4, 4, 1, 2, 5, 3, 6], "SCL alone"


def test_registry_describes_seven_modalities_in_the_published_form() -> None:
    assert registry.names() == ("S2L1C", "S2L2A", "S2RGB", "S1GRD", "NDVI", "DEM", "LULC")
    dem = registry.modality("DEM")
    assert dem.timestamps == 1 and dem.dtype == "float32" and not dem.cloud_mask
    assert registry.dn_modalities() == ("S2L1C", "S2L2A")
    assert [m.name for m in registry.MODALITIES if m.cloud_mask] == ["S2L1C", "S2L2A", "S2RGB"]
    with pytest.raises(KeyError, match="not a modality"):
        registry.modality("S3OLCI")


def ndwi(aligned: AlignedLayers) -> np.ndarray:
    """(B03 - B08) / (B03 + B08): the README's example of a new derived modality."""
    green, nir = (aligned.bands("S2L2A", (b,))[:, 0].astype(np.float32) for b in ("B03", "B08"))
    total = green + nir
    out = np.divide(green - nir, total, out=np.zeros_like(total), where=total != 0)
    return out[:, None].astype(np.float16)


def aligned_near_munich(tmp_path: Path, n: int, seed: int, settings: str) -> tuple[Config, Path]:
    """``n`` locations around Munich sampled, downloaded and aligned with the simulator (no
    partial coverage), ``settings`` added to the config (TOML tables)."""
    cities = tmp_path / "cities.csv"
    write_cities(cities, [(1, "Munich", "DE", 48.137, 11.575, 1)])
    text = (
        f'[sample]\nn = {n}\nseed = {seed}\ncities = "{cities}"\n'
        "[synthetic]\npartial_prob = 0.0\n" + settings
    )
    cfg = load_config(write_toml(tmp_path / "c.toml", text))
    work = tmp_path / "w"
    pipeline.run_sample(cfg, work)
    pipeline.run_download(cfg, work, progress=False)
    assert pipeline.run_align(cfg, work, progress=False, workers=1).ok == n
    return cfg, work


def test_an_eighth_modality_is_one_registry_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = Modality("NDWI", ("ndwi",), "float16", ndwi, value_range=(-1.0, 1.0))
    monkeypatch.setattr(registry, "MODALITIES", (*registry.MODALITIES, entry))
    packing = '[pack]\nshard_size = 1\nval_fraction = 0.0\nformat = "both"\n'
    cfg, work = aligned_near_munich(tmp_path, 3, 5, packing)
    summary = pipeline.run_pack(cfg, work, progress=False, workers=1)
    out = Path(summary.out_dir)
    assert summary.samples["train"] >= 2
    for root in (out, out / "webdataset"):
        assert validate_dataset(root) == [], root
        assert sorted(p.name for p in (root / "train").iterdir()) == sorted(registry.names())
    shard = open_shard(next((out / "train/NDWI").glob("*.zarr.zip")))
    assert shard["bands"].dtype == np.float16 and shard.sizes["time"] == 4
    l2a_shard = open_shard(next((out / "train/S2L2A").glob("*.zarr.zip")))
    green, nir = (l2a_shard["bands"].sel(band=b).values.astype(np.float32) - 1000 for b in
                  ("B03", "B08"))  # fmt: skip
    expected = np.divide(green - nir, green + nir, out=np.zeros_like(green), where=green + nir != 0)
    np.testing.assert_array_equal(shard["bands"].values[:, :, 0], expected.astype(np.float16))
    modalities = registry.names()
    samples = list(webdataset_loader(out / "webdataset", "train", modalities))
    assert len(samples) == summary.samples["train"] and samples[0]["NDWI"].shape == (4, 1, 264, 264)


def test_dynamic_world_as_the_land_cover(tmp_path: Path) -> None:
    """The option: each granule's Dynamic World labels (same system:index) instead of the
    ESRI year, mapped to the same classes; the simulator's labels follow its land cover."""
    from ssl4eo_build.align.cube import load_cube
    from ssl4eo_build.manifest import Manifest

    _, work = aligned_near_munich(tmp_path, 2, 3, '[download]\nlulc_source = "dynamic_world"\n')
    with Manifest.open(work) as m:
        rows = m.db.execute("SELECT sample_id, scene_id FROM scenes WHERE product='LULC'")
        lulc_scenes = rows.fetchall()
        granules = set(m.db.execute("SELECT scene_id FROM scenes WHERE product='S2L2A'"))
        paths = [r[0] for r in m.db.execute("SELECT path FROM patches WHERE status='ok'")]
    assert len(lulc_scenes) == 8 and {(s,) for _, s in lulc_scenes} <= granules
    for path in paths:
        cube = load_cube(work / path)
        classes = cube.modalities["LULC"].bands
        assert cube.modalities["LULC"].file_id == cube.modalities["S2L2A"].file_id
        assert set(np.unique(classes)) <= {1, 2, 3, 4, 5, 6, 7, 8, 9}
        # DW has no cloud class of its own: 8 only where the mask says cloud.
        clouds = np.isin(cube.cloud_mask, (3, 4))
        assert np.array_equal(classes[:, 0] == 8, clouds)


def test_hard_limits_name_the_first_corrupt_band_and_skip_missing_pixels() -> None:
    from ssl4eo_build.modalities import INT16_MISSING, S1GRD

    rng = np.random.default_rng(5)
    s2 = rng.integers(0, 12000, (13, 30, 30)).astype(np.int16)
    s2[-1] = rng.integers(0, 12, (30, 30))  # SCL codes
    s2[:, :4, :4] = INT16_MISSING  # missing pixels are not values
    assert S2L2A.value_problem(s2) is None
    s2[-1, 9, 9] = 12  # SCL 12: outside 0..11
    s2[3, 5, 5] = -7
    assert S2L2A.value_problem(s2) == "S2L2A band B04: 1 value(s) outside 0..65535 (e.g. -7)"
    s2[3, 5, 5] = 1
    assert S2L2A.value_problem(s2) == "S2L2A band SCL: 1 value(s) outside 0..11 (e.g. 12)"
    s1 = rng.uniform(-30.0, 5.0, (2, 30, 30)).astype(np.float32)
    s1[0, :3] = np.nan
    s1[1] = np.nan  # a band with no value
    assert S1GRD.value_problem(s1) is None
    s1[0, 7, 7] = np.inf
    assert S1GRD.value_problem(s1) == "S1GRD band VV: 1 value(s) outside -60..40 (e.g. inf)"
    with pytest.raises(ValueError, match="2 bands of data for 1 band names"):
        S1GRD.value_problem(s1, ("VV",))
