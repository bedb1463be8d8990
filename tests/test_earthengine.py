"""The `earthengine` source, offline: the real `ee` client against a fake REST transport."""

from __future__ import annotations

import http.server
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import ee
import numpy as np
import pytest
from ssl4eo_build.cli.app import app
from typer.testing import CliRunner

from ssl4eo_build import pipeline
from ssl4eo_build.align.worker import _layer
from ssl4eo_build.config import Config, EarthEngineConfig, load_config, override
from ssl4eo_build.download import core as download
from ssl4eo_build.download.core import (
    DownloadTask,
    LimitedCaller,
    SeasonPick,
    download_location,
    fetch_grid,
    fetch_request,
    planned_layers,
)
from ssl4eo_build.errors import (
    CredentialsError,
    FinalSourceError,
    RequestTooLargeError,
    RetryableSourceError,
)
from ssl4eo_build.geo import LonLat
from ssl4eo_build.grid import PixelGrid
from ssl4eo_build.manifest import Manifest
from ssl4eo_build.modalities import (
    CLOUD_SCORE,
    INT16_MISSING,
    PRODUCTS,
    SCENE_PRODUCTS,
    fetched_products,
    product_named,
)
from ssl4eo_build.raster_io import read_geotiff
from ssl4eo_build.sample.cities import write_cities
from ssl4eo_build.sources import SOURCES, Limiter, RetryPolicy, Scene, SceneQuery, TimeWindow
from ssl4eo_build.sources import earthengine as eesrc
from ssl4eo_build.sources.requests import (
    Layer,
    PixelRequest,
    RequestShape,
    ResponseLimits,
    pieces,
)
from ssl4eo_build.workdir import WorkDir

from .conftest import write_toml
from .fake_earthengine import (
    CS,
    DEM,
    DW,
    ESRI,
    L1C,
    L2A,
    S1,
    SEASONS_2021,
    TOKEN,
    FakeEarthEngine,
    Fault,
    granule_id,
    invocations,
    millis,
    truth,
    world_pixels,
)

REAL_FACTORY = SOURCES["earthengine"]
MUNICH = LonLat(11.575, 48.137)
DAY_MS = 86_400_000


@pytest.fixture(autouse=True)
def fresh_client() -> Iterator[None]:
    yield
    ee.Reset()
    eesrc._CONNECTED.clear()
    download._WORKER_STATE.clear()


def source(fake: FakeEarthEngine, **cfg: object) -> eesrc.EarthEngineSource:
    settings = {"project": "test-project", **cfg}
    return eesrc.EarthEngineSource(
        EarthEngineConfig(**settings),  # type: ignore[arg-type]
        http_transport=fake,
        credentials=None,
    )


def expected_pixels(grid: PixelGrid, ee_bands: list[str]) -> np.ndarray:
    ix, iy = world_pixels(grid.left, grid.top, grid.res_x, -grid.res_y, grid.width, grid.height)
    return np.stack([truth(b, ix, iy) for b in ee_bands])


def scene(product: str, season: int = 0) -> Scene:
    when = SEASONS_2021[season] + timedelta(days=1)
    if product == "S1GRD":
        return Scene(f"S1A_IW_GRDH_1SDV_{season}", product, when + timedelta(days=2), 4326)
    gid = granule_id(when)
    return Scene(gid, product, when, 32632, 3.5, gid, "T32UPU")


def season_layers(seasons: tuple[int, ...] = (0,)) -> tuple[Layer, ...]:
    return tuple(
        Layer(PRODUCTS[p], s, scene(p, s), PRODUCTS[p].bands)
        for s in seasons
        for p in SCENE_PRODUCTS
    )


L2A_PRODUCT = PRODUCTS["S2L2A"]


def munich_grid() -> PixelGrid:
    return fetch_grid(load_config(None, FIXED_YEAR), scene("S2L2A"), MUNICH)


def query(**change: object) -> SceneQuery:
    windows = tuple(
        TimeWindow(ref - timedelta(days=15), ref + timedelta(days=15))
        for ref in SEASONS_2021 + [r.replace(year=2020) for r in SEASONS_2021]
    )
    pad = timedelta(days=15)
    s1 = tuple(TimeWindow(w.start - pad, w.end + pad) for w in windows)
    base = SceneQuery(MUNICH, windows, s1, 10.0, 15.0, (("CS", CLOUD_SCORE.collection),))
    return replace(base, **change)  # type: ignore[arg-type]


def assert_layers_follow_truth(pixels: dict, request: PixelRequest, mask_every: int = 0) -> None:
    ix, _ = world_pixels(request.grid.left, request.grid.top, 10.0, -10.0,
                         request.grid.width, request.grid.height)  # fmt: skip
    for layer in request.layers:
        data = pixels[layer.key]
        assert data.dtype == np.dtype(layer.dtype)
        want = expected_pixels(request.grid, [eesrc.ee_band(b) for b in layer.bands])
        masked = np.broadcast_to(ix % mask_every == 0 if mask_every else ix < 0, data.shape)
        if layer.dtype == "float32":
            assert np.isnan(data[masked]).all()
        else:
            assert (data[masked] == INT16_MISSING).all()
        np.testing.assert_allclose(data[~masked], want[~masked], rtol=1e-6)


# The archive holds one clear granule per season of 2021: the fixed-year date rule.
FIXED_YEAR = {"download.date_rule": "fixed_year"}


# ------------------------------------------------------------------- initialisation and plan


def test_initialise_once_with_three_start_up_requests_and_no_client_retries() -> None:
    fake = FakeEarthEngine()
    src = source(fake)
    assert src.project == "test-project"
    assert [c.kind for c in fake.calls] == ["discovery", "discovery", "algorithms"]
    assert all("test-project" in c.uri for c in fake.of_kind("algorithms"))
    fake.fail_next("computePixels", Fault("status", 503))
    request = PixelRequest(munich_grid().crop(0, 0, 8, 8), season_layers()[:1])
    with pytest.raises(RetryableSourceError):
        src.fetch(request)
    assert len(fake.of_kind("computePixels")) == 1, "the client does not retry on its own"


def test_plan_is_one_request_with_joins_filters_and_no_footprints() -> None:
    fake = FakeEarthEngine()
    found = source(fake).plan(query())
    (call,) = fake.of_kind("computeFeatures")
    calls = invocations(call.body)
    names = {name for name, _ in calls}
    loads = {args["id"] for name, args in calls if name == "ImageCollection.load"}
    assert loads == {L1C, L2A, S1, CS}
    assert ("Join.inner", {"primaryKey": "l1c", "secondaryKey": "l2a"}) in calls
    assert ("Filter.equals", {"leftField": "system:index", "rightField": "system:index"}) in calls
    assert ("Filter.maxDifference", {"difference": 15 * DAY_MS, "leftField": "system:time_start",
            "rightField": "system:time_start"}) in calls  # fmt: skip
    for field, value in (("instrumentMode", "IW"), ("resolution_meters", 10)):
        assert ("Filter.equals", {"leftField": field, "rightValue": value}) in calls
    for pol in ("VV", "VH"):
        wanted = {"leftField": "transmitterReceiverPolarisation", "rightValue": pol}
        assert ("Filter.listContains", wanted) in calls
    lt = [args for name, args in calls if name == "Filter.lessThan"]
    assert lt and all(a == {"leftField": "CLOUDY_PIXEL_PERCENTAGE", "rightValue": 10.0} for a in lt)
    assert len({(a["start"], a["end"]) for n, a in calls if n == "DateRange"}) == 16
    assert not {"Element.geometry", "Image.geometry", "Collection.geometry"} & names
    assert call.body["pageSize"] == 1000

    # The service's answer: clear granules only, S-1 without the decoys, nulls kept.
    assert [s.acquired for s in found["S2L1C"]] == [r + timedelta(days=1) for r in SEASONS_2021]
    assert [s.scene_id for s in found["S1GRD"]] == [f"S1A_IW_GRDH_1SDV_{i}" for i in range(4)]
    l2a = found["S2L2A"]
    assert [s.cloud_pct for s in l2a] == [4.0] * 4 and all(s.companions == {"CS"} for s in l2a)
    assert [s.tile_id for s in l2a] == ["T32UPU"] * 3 + [None], "a null tile stays None"
    assert l2a[0].epsg == 32632 and l2a[0].granule == l2a[0].scene_id


def test_plan_follows_the_pages() -> None:
    paged = FakeEarthEngine(page_size=3)
    assert source(paged).plan(query()) == source(FakeEarthEngine()).plan(query())
    tokens = [c.body.get("pageToken") for c in paged.of_kind("computeFeatures")]
    assert tokens == [None, "3", "6", "9"], "4 granules, 4 S-1 scenes, 4 Cloud Score+ ids"


def test_plan_skips_results_without_an_epsg_crs() -> None:
    common = {"kind": "S2", "id": "a", "time_ms": 0, "l2a_time_ms": 0, "l2a_crs": "EPSG:32632"}
    features = [{"properties": {**common, "crs": "SR-ORG:6974"}},
                {"properties": {**common, "id": "b"}},
                {"properties": {**common, "id": "c", "crs": "EPSG:32632"}}]  # fmt: skip
    found = eesrc.scenes_from_plan(features)
    assert [(s.scene_id, s.epsg) for s in found["S2L2A"]] == [("c", 32632)]


# ------------------------------------------------------------------------------------- pixels


def test_one_request_stacks_two_seasons_typed_and_unmasked_on_the_server() -> None:
    fake = FakeEarthEngine(mask_every=50)
    src = source(fake)
    request = PixelRequest(munich_grid(), season_layers((0, 1)))
    pixels = src.fetch(request)

    (call,) = fake.of_kind("computePixels")
    body = call.body
    assert body["fileFormat"] == "NPY" and "bandIds" not in body
    grid = request.grid
    assert body["grid"] == {
        "dimensions": {"width": 384, "height": 384},
        "affineTransform": {"scaleX": 10.0, "shearX": 0.0, "translateX": grid.left,
                            "shearY": 0.0, "scaleY": -10.0, "translateY": grid.top},
        "crsCode": "EPSG:32632",
    }  # fmt: skip
    calls = invocations(body)
    loaded = [args["id"] for name, args in calls if name == "Image.load"]
    assert sorted(loaded) == sorted(
        f"{x.spec.collection}/{x.scene.scene_id}" for x in request.layers
    )
    names = [name for name, _ in calls]
    assert names.count("Image.toInt16") == 4 and names.count("Image.toFloat") == 2
    assert names.count("Image.unmask") == 6 and "Image.resample" not in names, "nearest"
    assert ("Image.unmask", {"sameFootprint": False}) in calls
    assert_layers_follow_truth(pixels, request, mask_every=50)
    # 26 int16 + 2 float32 bands per season: 10.6 MB for the pair.
    assert request.nbytes - 65_536 == 384 * 384 * 2 * (26 * 2 + 2 * 4)


def test_s1_resampling_is_asked_of_the_server() -> None:
    fake = FakeEarthEngine()
    src = eesrc.EarthEngineSource(EarthEngineConfig(project="p"), "bilinear",
                                  http_transport=fake, credentials=None)  # fmt: skip
    src.fetch(PixelRequest(munich_grid().crop(0, 0, 8, 8), season_layers()))
    resampled = [a for n, a in invocations(fake.of_kind("computePixels")[0].body)
                 if n == "Image.resample"]  # fmt: skip
    assert resampled == [{"mode": "bilinear"}], "S-1 only"


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (Layer(L2A_PRODUCT, 0, replace(scene("S2L2A"), scene_id="nope"), ("B02",)), "not found"),
        (Layer(L2A_PRODUCT, 0, scene("S2L2A"), ("B10",)), "did not match any bands"),
    ],
)
def test_unknown_assets_and_bands_are_final(layer: Layer, message: str) -> None:
    src = source(FakeEarthEngine())
    with pytest.raises(FinalSourceError, match=message):
        src.fetch(PixelRequest(munich_grid().crop(0, 0, 8, 8), (layer,)))


def test_requests_over_the_limits_are_cut_and_reassembled() -> None:
    request = PixelRequest(munich_grid(), season_layers((0, 1)))
    whole = source(FakeEarthEngine()).fetch(request)
    ee.Reset()
    small = FakeEarthEngine()
    src = source(small, max_response_mb=1.0, max_side_px=300)
    call = LimitedCaller(Limiter(4, 1000.0), RetryPolicy(2, 0.001, 0.01))
    cut = fetch_request(src, call, RequestShape(2, 1024), request)
    calls = small.of_kind("computePixels")
    assert len(calls) > 10
    for c in calls:
        dims = c.body["grid"]["dimensions"]
        assert dims["width"] <= 300 and dims["height"] <= 300
    for key, data in whole.items():
        np.testing.assert_array_equal(cut[key], data)
    assert_layers_follow_truth(cut, request)


def test_memory_and_size_refusals_cut_the_request_and_the_cut_is_remembered() -> None:
    fake = FakeEarthEngine(memory_limit_bytes=8_000_000)
    src = source(fake)
    shape = RequestShape(2, 1024)
    call = LimitedCaller(Limiter(4, 1000.0), RetryPolicy(2, 0.001, 0.01))
    request = PixelRequest(munich_grid(), season_layers((0, 1)))
    pixels = fetch_request(src, call, shape, request)
    assert_layers_follow_truth(pixels, request)
    assert shape.max_seasons == 1 and shape.max_bands < 28
    refused = len(fake.refusals)
    # Each refusal is tried once more as it is (memory may pass a second time), then cut.
    assert refused == 4 and all("memory limit" in r for r in fake.refusals)
    first = len(fake.of_kind("computePixels"))
    fetch_request(src, call, shape, PixelRequest(munich_grid(), season_layers((2, 3))))
    assert len(fake.refusals) == refused, "the cut is remembered: nothing refused again"
    assert len(fake.of_kind("computePixels")) - first == first - refused
    # The service's own size limit (48 MB) when the client's limits are set beyond it.
    ee.Reset()
    big = FakeEarthEngine()
    src = source(big)
    src.limits = ResponseLimits(10**9, 32_768, 1024)
    large = PixelRequest(replace(munich_grid(), width=1400, height=1400), season_layers((0, 1)))
    shape = RequestShape(2, 1024)
    fetch_request(src, call, shape, large)
    assert big.refusals[0].startswith("Total request size (") and shape.max_seasons == 1


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fault", "pixels", "features"),
    [
        (Fault("status", 429, retry_after=0.01, message="Too many concurrent aggregations"),
         "quota", "quota"),
        (Fault("status", 500), "retry", "retry"),
        (Fault("status", 503), "retry", "retry"),
        (Fault("status", 400, message="Computation timed out."), "cut", "retry"),
        (Fault("status", 400, message="User memory limit exceeded."), "cut", "retry"),
        (Fault("status", 400, message="Earth Engine capacity exceeded."), "retry", "retry"),
        (Fault("timeout"), "retry", "retry"),
        (Fault("reset"), "retry", "retry"),
        (Fault("malformed"), "retry", "retry"),
        (Fault("refresh"), "retry", "retry"),
        (Fault("auth_transport"), "retry", "retry"),
        (Fault("status", 400, message="Image.load: Image asset 'x' not found."), "final", "final"),
        (Fault("status", 400, message="Invalid argument: bad grid."), "final", "final"),
        (Fault("status", 403, message="Permission denied"), "access", "access"),
    ],
)  # fmt: skip
def test_failures_are_sorted_into_retryable_cut_and_final(
    fault: Fault, pixels: str, features: str
) -> None:
    fake = FakeEarthEngine()
    src = source(fake)
    request = PixelRequest(munich_grid().crop(0, 0, 8, 8), season_layers())
    for kind, call, verdict in (
        ("computeFeatures", lambda: src.plan(query()), features),
        ("computePixels", lambda: src.fetch(request), pixels),
    ):
        fake.fail_next(kind, fault)
        expected = {"quota": RetryableSourceError, "retry": RetryableSourceError,
                    "cut": RequestTooLargeError, "final": FinalSourceError,
                    "access": FinalSourceError}[verdict]  # fmt: skip
        with pytest.raises(expected) as info:
            call()
        if verdict in ("quota", "retry"):
            assert info.value.quota is (verdict == "quota")  # type: ignore[attr-defined]
        if fault.retry_after is not None:
            assert info.value.retry_after == fault.retry_after  # type: ignore[attr-defined]
        if verdict == "access":
            assert "registered for Earth Engine" in str(info.value)
        call()  # the next attempt succeeds


def test_download_location_rides_out_every_transient_fault_and_slows_on_429(
    tmp_path: Path,
) -> None:
    fake = FakeEarthEngine()
    src = source(fake)
    cfg = load_config(None, FIXED_YEAR)
    fake.fail_next("computeFeatures", Fault("status", 429), Fault("timeout"), Fault("refresh"))
    fake.fail_next(
        "computePixels", Fault("reset"), Fault("status", 503), Fault("malformed"),
        Fault("status", 429), Fault("auth_transport"),
    )  # fmt: skip
    limiter = Limiter(8, 1000.0)
    result = download_location(
        src, cfg, DownloadTask("s1", MUNICH), WorkDir.at(tmp_path), limiter,
        RetryPolicy(6, 0.001, 0.01), RequestShape(2, 1024),
    )  # fmt: skip
    assert result.status == "ok", result.reason
    assert result.requests == 3 + 8, "1 plan + 2 pixel requests, and 8 retries"
    assert len(fake.of_kind("computeFeatures")) + len(fake.of_kind("computePixels")) == 11
    assert limiter.current_rate < 1000.0
    by_product = {(r.product, r.season): r for r in result.scenes}
    # Per season L1C, L2A, S-1, Cloud Score+ and land cover; the DEM once.
    assert len(by_product) == 4 * 5 + 1 and ("DEM", 0) in by_product
    assert by_product[("S2L2A", 0)].scene.cloud_pct == 4.0
    assert by_product[("S1GRD", 3)].gap_days == 2.0
    assert by_product[("LULC", 2)].scene.scene_id == f"{ESRI}:2021"
    products = {p.name: p for p in fetched_products(cfg)}
    for record in result.scenes:
        path = tmp_path / record.path
        key = (record.product, record.season)
        raster = _layer(read_geotiff(path), path, key, products[record.product])
        assert raster.grid.epsg == record.epsg == 32632, "S-1 on the S-2 grid"
        bands = [eesrc.ee_band(b) for b in raster.bands]
        np.testing.assert_allclose(raster.data, expected_pixels(raster.grid, bands), rtol=1e-6)


@pytest.mark.parametrize("lulc_source", ["esri", "dynamic_world"])
def test_extra_layers_are_found_and_resampled_as_the_registry_says(lulc_source: str) -> None:
    fake = FakeEarthEngine()
    cfg = override(load_config(None, FIXED_YEAR), "download.lulc_source", lulc_source)
    granule = replace(scene("S2L2A", 1), companions=frozenset({"CS", "LULC"}))
    pick = SeasonPick(1, scene("S2L1C", 1), granule, scene("S1GRD", 1), 2.0)
    layers = [x for x in planned_layers(cfg, [pick], MUNICH) if x.product in ("CS", "DEM", "LULC")]
    request = PixelRequest(munich_grid().crop(0, 0, 12, 12), tuple(layers))
    pixels = source(fake).fetch(request)
    assert_layers_follow_truth(pixels, request)

    calls = invocations(fake.of_kind("computePixels")[0].body)
    images = {a["id"] for n, a in calls if n == "Image.load"}
    collections = {a["id"] for n, a in calls if n == "ImageCollection.load"}
    mosaics = [n for n, _ in calls if n == "ImageCollection.mosaic"]
    # The DEM: every tile resampled bilinearly, then mosaicked.
    assert DEM in collections and ("Image.resample", {"mode": "bilinear"}) in calls
    assert f"{CS}/{granule.scene_id}" in images
    if lulc_source == "esri":  # the images of the timestamp's year, mosaicked
        assert ESRI in collections and len(mosaics) == 2
        year = {"start": millis(datetime(2021, 1, 1)), "end": millis(datetime(2022, 1, 1))}
        assert ("DateRange", year) in calls
    else:  # the granule's own label image
        assert f"{DW}/{granule.scene_id}" in images and len(mosaics) == 1
    assert [a for n, a in calls if n == "Image.resample"] == [{"mode": "bilinear"}], "DEM only"


def test_final_errors_reject_the_location_with_the_reason(tmp_path: Path) -> None:
    fake = FakeEarthEngine()
    fake.fail_next("computePixels", Fault("status", 404, message="Image asset not found"))
    result = download_location(
        source(fake), load_config(None, FIXED_YEAR), DownloadTask("s1", MUNICH),
        WorkDir.at(tmp_path), Limiter(4, 1000.0), RetryPolicy(4, 0.001, 0.01),
        RequestShape(2, 1024),
    )  # fmt: skip
    assert result.status == "rejected"
    assert result.reason is not None and "HTTP 404" in result.reason
    assert "Image asset not found" in result.reason


def test_limiter_bounds_requests_in_flight_across_threads() -> None:
    fake = FakeEarthEngine(latency_s=0.02)
    src = source(fake)
    limiter = Limiter(4, 10_000.0)
    request = PixelRequest(munich_grid().crop(0, 0, 16, 16), season_layers()[:1])

    def worker() -> None:
        for _ in range(5):
            with limiter:
                src.fetch(request)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake.of_kind("computePixels")) == 80
    assert fake.peak_in_flight == 4, "the bound is reached and never exceeded"
    assert limiter.peak_in_flight == 4


# ------------------------------------------------------------------------------ the stage


@pytest.fixture
def ee_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, FakeEarthEngine]:
    cities = tmp_path / "cities.csv"
    write_cities(cities, [(1, "Munich", "DE", 48.137, 11.575, 1)])
    cfg = write_toml(
        tmp_path / "ee.toml",
        f'[sample]\nn = 3\nseed = 1\nsigma_m = 3000.0\ncities = "{cities}"\n'
        '[download]\ndate_rule = "fixed_year"\nsource = "earthengine"\nworkers = 4\n'
        "retry_base_s = 0.001\n"
        'retry_max_s = 0.01\nmax_attempts = 10\n[earthengine]\nproject = "test-project"\n',
    )
    fake = FakeEarthEngine(error_rate=0.2, seed=5)

    def offline(config: Config) -> eesrc.EarthEngineSource:
        return eesrc.EarthEngineSource(config.earthengine, http_transport=fake, credentials=None)

    monkeypatch.setitem(SOURCES, "earthengine", offline)
    work = tmp_path / "w"
    pipeline.run_sample(load_config(cfg), work)
    return cfg, work, fake


def test_download_and_align_stages_on_the_earthengine_source(
    ee_work: tuple[Path, Path, FakeEarthEngine],
) -> None:
    cfg, work, fake = ee_work
    runner = CliRunner()
    result = runner.invoke(app, ["download", "-c", str(cfg), "-w", str(work), "-q"])
    assert result.exit_code == 0, result.output
    with Manifest.open(work) as m:
        verdicts = m.db.execute("SELECT status, COUNT(*) FROM downloads GROUP BY 1").fetchall()
        rows = m.db.execute("SELECT path, product, time_index FROM scenes").fetchall()
    assert verdicts == [("ok", 3)], "20% transient errors of every kind lose nothing"
    assert len(rows) == 3 * (4 * 5 + 1), "per season 5 layers, the DEM once"
    for path, product, season in rows:
        spec = product_named(load_config(cfg), product)
        raster = _layer(read_geotiff(work / path), work / path, (product, season), spec)
        bands = [eesrc.ee_band(b) for b in raster.bands]
        np.testing.assert_allclose(raster.data, expected_pixels(raster.grid, bands), rtol=1e-6)
    # A rerun finds everything done: no search, no pixels.
    before = len(fake.calls)
    assert runner.invoke(app, ["download", "-c", str(cfg), "-w", str(work), "-q"]).exit_code == 0
    assert len(fake.calls) == before
    summary = pipeline.run_align(load_config(cfg), work, progress=False, workers=1)
    assert summary.ok == 3


# ------------------------------------------------------------------------------ dry run, auth


def test_dry_run_needs_no_credentials_and_estimates_time(tmp_path: Path) -> None:
    cities = tmp_path / "cities.csv"
    write_cities(cities, [(1, "Munich", "DE", 48.137, 11.575, 1)])
    cfg = write_toml(
        tmp_path / "c.toml",
        f'[sample]\nn = 40\ncities = "{cities}"\n[download]\ndate_rule = "fixed_year"\n'
        "requests_per_s = 10.0\n"
        "[earthengine]\nmax_response_mb = 2.0\n",
    )
    work = tmp_path / "w"
    pipeline.run_sample(load_config(cfg), work)
    args = ["download", "-c", str(cfg), "-w", str(work), "--source", "earthengine", "--dry-run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # 2 MiB per response: each season's layers (5.9 MB) cut to fit, far more than 3 per
    # location; the first pair of seasons carries the DEM too.
    products = fetched_products(load_config(cfg))

    def pair(first: int) -> int:
        layers = tuple(
            Layer(p, s, scene("S2L2A"), p.bands)
            for s in (first, first + 1)
            for p in products
            if p.timestamps == 4 or s == 0
        )
        request = PixelRequest(replace(munich_grid(), epsg=32632), layers)
        return len(
            pieces(request, RequestShape(2, 1024), ResponseLimits.from_mb(2.0, 32_768, 1024))
        )

    per_location = 1 + pair(0) + pair(2)
    assert per_location > 3
    assert f"{40 * per_location} requests" in result.output
    assert f"about {40 * per_location / 10:,.0f} s" in result.output
    # The whole target: 100 accepted need 125 downloaded at the default yield of 0.8.
    fresh = tmp_path / "never-written"
    args = ["run", "-c", str(cfg), "-w", str(fresh), "--source", "earthengine", "--dry-run",
            "--target", "100"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "about 125 downloaded" in result.output and f"{125 * per_location} requests" in (
        result.output
    )
    assert " MB " in result.output and not fresh.exists(), "a dry run writes nothing"


def _no_credentials(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("HOME", str(home))
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "EE_PROJECT", "GOOGLE_CLOUD_PROJECT",
                 "EARTHENGINE_TOKEN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / "gcloud"))


def test_missing_credentials_exit_2_with_how_to_authenticate(
    ee_work: tuple[Path, Path, FakeEarthEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, work, _ = ee_work
    monkeypatch.setitem(SOURCES, "earthengine", REAL_FACTORY)
    _no_credentials(monkeypatch, work)
    result = CliRunner().invoke(app, ["download", "-c", str(cfg), "-w", str(work)])
    assert result.exit_code == 2
    assert "earthengine authenticate" in result.output and "--ee-key" in result.output
    assert "Traceback" not in result.output
    with Manifest.open(work) as m:
        assert m.count("downloads") == 0


def test_run_checks_credentials_before_sampling(
    ee_work: tuple[Path, Path, FakeEarthEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, work, _ = ee_work
    monkeypatch.setitem(SOURCES, "earthengine", REAL_FACTORY)
    _no_credentials(monkeypatch, work)
    fresh = work.parent / "fresh"
    result = CliRunner().invoke(app, ["run", "-c", str(cfg), "-w", str(fresh), "--target", "2"])
    assert result.exit_code == 2 and "earthengine authenticate" in result.output
    if (fresh / "manifest.sqlite").exists():
        with Manifest.open(fresh) as m:
            assert m.count("locations") == 0, "nothing sampled"


def test_missing_project_names_the_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_credentials(monkeypatch, tmp_path)
    with pytest.raises(CredentialsError, match="--ee-project"):
        eesrc.connect(EarthEngineConfig(), http_transport=FakeEarthEngine(), credentials=None)
    monkeypatch.setenv("EE_PROJECT", "from-env")
    assert eesrc.connect(EarthEngineConfig(), FakeEarthEngine(), credentials=None) == "from-env"


def test_bad_key_file_is_named_but_never_quoted(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(CredentialsError, match=r"nope\.json: key file not found"):
        eesrc.connect(EarthEngineConfig(project="p-12345", service_account_key=missing))
    secret = "-----BEGIN PRIVATE KEY-----\nMIIEsecretsecret\n-----END PRIVATE KEY-----\n"
    bad = tmp_path / "key.json"
    bad.write_text('{"type": "service_account", "client_email": "a@b.iam", "private_key": '
                   f'{secret!r}'.replace("'", '"') + "}")  # fmt: skip
    with pytest.raises(CredentialsError) as info:
        eesrc.connect(EarthEngineConfig(project="p-12345", service_account_key=bad))
    assert "key.json" in str(info.value) and "secret" not in str(info.value)


@pytest.mark.integration
@pytest.mark.skipif(
    not os.environ.get("SSL4EO_EE_INTEGRATION"),
    reason="set SSL4EO_EE_INTEGRATION=1 (and EE_PROJECT, credentials) to run against Earth Engine",
)
def test_one_real_location_end_to_end(tmp_path: Path) -> None:  # pragma: no cover - network
    cities = tmp_path / "cities.csv"
    write_cities(cities, [(1, "Munich", "DE", 48.137, 11.575, 1)])
    cfg = write_toml(
        tmp_path / "real.toml",
        f'[sample]\nn = 1\ncities = "{cities}"\n[download]\nsource = "earthengine"\n',
    )
    work = tmp_path / "w"
    config = load_config(cfg)
    pipeline.run_sample(config, work)
    summary = pipeline.run_download(config, work, progress=False)
    assert summary.failed == 0 and summary.ok + summary.rejected == 1


def _service_account_key(path: Path) -> str:
    """A syntactically real service-account key (fresh RSA key); returns the private key PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "key-project-123",
        "private_key_id": "abc123",
        "private_key": pem,
        "client_email": "builder@key-project-123.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(info))
    return pem


def test_service_account_credentials_are_used_and_never_logged(
    ee_work: tuple[Path, Path, FakeEarthEngine],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg, work, _ = ee_work
    _no_credentials(monkeypatch, work)
    key_file = work.parent / "key.json"
    pem = _service_account_key(key_file)
    fake = FakeEarthEngine()

    def with_key(config: Config) -> eesrc.EarthEngineSource:  # the real credential path
        return eesrc.EarthEngineSource(config.earthengine, http_transport=fake)

    monkeypatch.setitem(SOURCES, "earthengine", with_key)
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(
        app, ["download", "-c", str(cfg), "-w", str(work), "--ee-key", str(key_file), "-vv"]
    )
    assert result.exit_code == 0, result.output
    assert fake.of_kind("token"), "the key was exchanged for a token"
    computed = fake.of_kind("computePixels")
    assert computed and all(c.headers.get("authorization") == f"Bearer {TOKEN}" for c in computed)
    secrets = (TOKEN, pem.splitlines()[1], "abc123")
    manifest_bytes = b"".join(p.read_bytes() for p in work.glob("manifest.sqlite*"))
    for secret in secrets:
        assert secret not in result.output and secret not in caplog.text
        assert secret.encode() not in manifest_bytes


# ------------------------------------------------------------------------------ the transport


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Answers 200 and then one byte every 0.1 s: each read is quick, the whole is not."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "100")
        self.end_headers()
        for _ in range(100):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.1)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def trickle_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_transport_deadline_holds_for_the_whole_answer_and_pool_fits_the_cap(
    trickle_server: str,
) -> None:
    transport = eesrc.PooledTransport(pool_size=40, timeout_s=0.5)
    adapter = transport.session.get_adapter(trickle_server)
    assert adapter._pool_maxsize == 40  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"0\.5 s"):
        transport.request(trickle_server)
    assert time.monotonic() - started < 2.0, "10 s of trickle cut at the deadline"
    error = eesrc.classify(TimeoutError("x"), "pixels")
    assert isinstance(error, RetryableSourceError)


def test_doctor_checks_access_and_one_request_and_says_what_to_fix(
    ee_work: tuple[Path, Path, FakeEarthEngine],
) -> None:
    cfg, _, fake = ee_work
    fake.error_rate = 0.0
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "[ok] one scene-plan request: answered: " in result.output
    fake.fail_next("computeFeatures", Fault("status", 403, message="Permission denied"))
    result = runner.invoke(app, ["doctor", "-c", str(cfg)])
    assert result.exit_code == 2
    assert "[FAIL] one scene-plan request" in result.output
    assert "registered for Earth Engine" in result.output and "Traceback" not in result.output
