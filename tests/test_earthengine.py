"""The `earthengine` source, offline: the real `ee` client against a fake REST transport."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import ee
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ssl4eo_build.cli.app import app
from typer.testing import CliRunner

from ssl4eo_build import pipeline
from ssl4eo_build.cities import write_cities
from ssl4eo_build.config import Config, EarthEngineConfig, load_config
from ssl4eo_build.download import DownloadTask, download_location, fetch_grid
from ssl4eo_build.errors import CredentialsError, FinalSourceError, RetryableSourceError
from ssl4eo_build.geo import LonLat
from ssl4eo_build.grid import PixelGrid
from ssl4eo_build.manifest import Manifest
from ssl4eo_build.raster_io import read_geotiff
from ssl4eo_build.sources import SOURCES, Limiter, RetryPolicy, Scene, TimeWindow
from ssl4eo_build.sources import earthengine as eesrc
from ssl4eo_build.sources.chunks import ResponseLimits, plan_chunks
from ssl4eo_build.workdir import WorkDir

from .conftest import write_toml
from .fake_earthengine import (
    SEASONS_2021,
    TOKEN,
    FakeEarthEngine,
    Fault,
    archive,
    load_invocations,
    millis,
    truth,
    world_pixels,
)

REAL_FACTORY = SOURCES["earthengine"]
MUNICH = LonLat(11.575, 48.137)


@pytest.fixture(autouse=True)
def fresh_client() -> Iterator[None]:
    yield
    ee.Reset()
    eesrc._CONNECTED.clear()


def source(fake: FakeEarthEngine, **cfg: object) -> eesrc.EarthEngineSource:
    settings = {"project": "test-project", **cfg}
    return eesrc.EarthEngineSource(
        EarthEngineConfig(**settings),  # type: ignore[arg-type]
        max_cloud_pct=10.0,
        http_transport=fake,
        credentials=None,
    )


def expected_pixels(grid: PixelGrid, ee_bands: list[str]) -> np.ndarray:
    ix, iy = world_pixels(grid.left, grid.top, grid.res_x, -grid.res_y, grid.width, grid.height)
    return np.stack([truth(b, ix, iy) for b in ee_bands])


def s2_scene(product: str = "S2L2A") -> Scene:
    return Scene("20210321T120000_20210321T120000_T32UPU", product, datetime(2021, 3, 21, 12),
                 32632, 3.5, "20210321T120000_20210321T120000_T32UPU", "T32UPU")  # fmt: skip


# The scripted archive holds one clear granule per season of 2021: the fixed-year date rule.
FIXED_YEAR = {"download.date_rule": "fixed_year"}


# ------------------------------------------------------------------- initialisation and search


def test_initialise_offline_with_the_shipped_discovery_and_algorithms() -> None:
    fake = FakeEarthEngine()
    src = source(fake)
    assert src.project == "test-project"
    assert {c.kind for c in fake.calls} == {"discovery", "algorithms"}
    assert all("test-project" in c.uri for c in fake.of_kind("algorithms"))


def test_search_is_one_request_per_product_with_all_windows_and_filters() -> None:
    fake = FakeEarthEngine(archive())
    src = source(fake)
    windows = [
        TimeWindow(ref - timedelta(days=15), ref + timedelta(days=15))
        for ref in SEASONS_2021 + [r.replace(year=2020) for r in SEASONS_2021]
    ]
    l2a = src.search(MUNICH, "S2L2A", windows)
    s1 = src.search(MUNICH, "S1GRD", windows)
    calls = fake.of_kind("computeFeatures")
    assert len(calls) == 2, "one metadata request per (location, product)"

    s2_calls = list(load_invocations(calls[0].body))
    names = [name for name, _ in s2_calls]
    assert ("ImageCollection.load", {"id": "COPERNICUS/S2_SR_HARMONIZED"}) in s2_calls
    date_args = [args for name, args in s2_calls if name == "DateRange"]
    assert len(date_args) == len(windows)
    assert {"start": millis(windows[0].start), "end": millis(windows[0].end)} in date_args
    lt = [args for name, args in s2_calls if name == "Filter.lessThan"]
    assert lt == [{"leftField": "CLOUDY_PIXEL_PERCENTAGE", "rightValue": 10.0}]
    assert "Collection.map" in names and "Image.projection" in names
    assert calls[0].body["pageSize"] == 1000

    s1_calls = list(load_invocations(calls[1].body))
    assert ("ImageCollection.load", {"id": "COPERNICUS/S1_GRD"}) in s1_calls
    constants = [args for _, args in s1_calls]
    assert {"leftField": "instrumentMode", "rightValue": "IW"} in constants
    for pol in ("VV", "VH"):
        assert {"leftField": "transmitterReceiverPolarisation", "rightValue": pol} in constants

    assert len(l2a) == 8 and len(s1) == 4
    first = l2a[0]
    assert first.product == "S2L2A" and first.epsg == 32632 and first.tile_id == "T32UPU"
    assert first.granule == first.scene_id and first.acquired == datetime(2021, 3, 18, 12)
    assert first.cloud_pct == 40.5
    assert s1[0].epsg == 32632 and s1[0].cloud_pct is None and s1[0].granule is None


def test_search_skips_results_without_an_epsg_crs() -> None:
    features = [{"properties": {"scene_id": "a", "time_ms": 0, "crs": "SR-ORG:6974"}},
                {"properties": {"scene_id": "b", "time_ms": 0}},
                {"properties": {"scene_id": "c", "time_ms": 0, "crs": "EPSG:4326"}}]  # fmt: skip
    scenes = eesrc.scenes_from_features("S1GRD", features)
    assert [(s.scene_id, s.epsg) for s in scenes] == [("c", 4326)]


# ------------------------------------------------------------------------------------- pixels


def test_fetch_sends_the_native_grid_and_decodes_npy_with_nan_for_masked() -> None:
    fake = FakeEarthEngine(mask_every=50)
    src = source(fake)
    cfg = load_config(None, FIXED_YEAR)
    scene = s2_scene()
    grid = fetch_grid(cfg, scene, MUNICH)
    bands = ("B01", "B02", "B8A", "B10", "B12", "SCL")
    pixels = src.fetch(scene, grid, bands)

    (call,) = fake.of_kind("computePixels")
    body = call.body
    assert body["fileFormat"] == "NPY"
    assert body["bandIds"] == ["B1", "B2", "B8A", "B10", "B12", "SCL"]
    assert body["grid"] == {
        "dimensions": {"width": 384, "height": 384},
        "affineTransform": {"scaleX": 10.0, "shearX": 0.0, "translateX": grid.left,
                            "shearY": 0.0, "scaleY": -10.0, "translateY": grid.top},
        "crsCode": "EPSG:32632",
    }  # fmt: skip
    assert grid.left % 60 == 0 and grid.top % 60 == 0
    invocations = list(load_invocations(body["expression"]))
    loaded = [args["id"] for name, args in invocations if name == "Image.load"]
    assert loaded == [f"COPERNICUS/S2_SR_HARMONIZED/{scene.scene_id}"]
    assert ("Image.unmask", {"sameFootprint": False}) in invocations

    assert pixels.shape == (6, 384, 384) and pixels.dtype == np.float32
    want = expected_pixels(grid, body["bandIds"])
    ix, _ = world_pixels(grid.left, grid.top, 10.0, -10.0, 384, 384)
    masked = np.broadcast_to(ix % 50 == 0, pixels.shape)
    assert np.isnan(pixels[masked]).all() and masked.any()
    np.testing.assert_array_equal(pixels[~masked], want[~masked])


def test_fetch_splits_requests_over_the_response_limit_and_reassembles() -> None:
    fake = FakeEarthEngine()
    cfg = load_config(None, FIXED_YEAR)
    scene = s2_scene("S2L1C")
    grid = fetch_grid(cfg, scene, MUNICH)
    bands = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10")
    whole = source(fake).fetch(scene, grid, bands)
    assert len(fake.of_kind("computePixels")) == 1
    ee.Reset()
    small = FakeEarthEngine()
    split = source(small, max_response_mb=1.0, max_side_px=300).fetch(scene, grid, bands)
    calls = small.of_kind("computePixels")
    assert len(calls) > 4
    for call in calls:
        dims = call.body["grid"]["dimensions"]
        assert dims["width"] <= 300 and dims["height"] <= 300
        assert dims["width"] * dims["height"] * len(call.body["bandIds"]) * 4 <= 2**20
    np.testing.assert_array_equal(split, whole)
    np.testing.assert_array_equal(whole, expected_pixels(grid, [eesrc.ee_band(b) for b in bands]))


@settings(deadline=None, max_examples=60)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    n_bands=st.integers(1, 16),
    max_bytes=st.integers(66_000, 1_000_000),
    max_side=st.integers(1, 400),
    max_bands=st.integers(1, 16),
)
def test_chunks_cover_each_value_once_within_limits(
    width: int, height: int, n_bands: int, max_bytes: int, max_side: int, max_bands: int
) -> None:
    limits = ResponseLimits(max_bytes, max_side, max_bands)
    chunks = plan_chunks(width, height, n_bands, limits)
    cover = np.zeros((n_bands, height, width), dtype=np.int32)
    for c in chunks:
        assert c.width <= max_side and c.height <= max_side and c.band1 - c.band0 <= max_bands
        assert c.width * c.height * (c.band1 - c.band0) * 4 <= max(max_bytes - 65_536, 4)
        cover[c.band0 : c.band1, c.row0 : c.row0 + c.height, c.col0 : c.col0 + c.width] += 1
    assert (cover == 1).all()


def test_default_fetch_is_one_request_per_scene() -> None:
    limits = ResponseLimits.from_mb(48.0, 32_768, 1024)
    assert len(plan_chunks(384, 384, 13, limits)) == 1


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fault", "retryable", "quota"),
    [
        (Fault("status", 429, retry_after=0.01, message="Too many concurrent aggregations"),
         True, True),
        (Fault("status", 500), True, False),
        (Fault("status", 503), True, False),
        (Fault("timeout"), True, False),
        (Fault("reset"), True, False),
        (Fault("malformed"), True, False),
        (Fault("status", 400, message="Image.load: Image asset 'x' not found."), False, False),
        (Fault("status", 403, message="Permission denied"), False, False),
    ],
)  # fmt: skip
def test_failures_are_sorted_into_retryable_and_final(
    fault: Fault, retryable: bool, quota: bool
) -> None:
    fake = FakeEarthEngine(archive())
    src = source(fake)
    for kind, call in (
        ("computeFeatures", lambda: src.search(MUNICH, "S2L1C", [])),
        ("computePixels", lambda: src.fetch(s2_scene(), fetch_grid(load_config(None), s2_scene(),
                                                                   MUNICH), ("B02",))),
    ):  # fmt: skip
        fake.fail_next(kind, fault)
        expected = RetryableSourceError if retryable else FinalSourceError
        with pytest.raises(expected) as info:
            call()
        if retryable:
            assert info.value.quota is quota  # type: ignore[attr-defined]
        if fault.retry_after is not None:
            assert info.value.retry_after == fault.retry_after  # type: ignore[attr-defined]
        call()  # the next attempt succeeds


def test_download_location_rides_out_every_transient_fault_and_slows_on_429(
    tmp_path: Path,
) -> None:
    fake = FakeEarthEngine(archive())
    src = source(fake)
    cfg = load_config(None, FIXED_YEAR)
    fake.fail_next("computeFeatures", Fault("status", 429), Fault("timeout"))
    fake.fail_next(
        "computePixels", Fault("reset"), Fault("status", 503), Fault("malformed"),
        Fault("status", 429),
    )  # fmt: skip
    limiter = Limiter(8, 1000.0)
    result = download_location(
        src,
        cfg,
        DownloadTask("s1", MUNICH),
        WorkDir.at(tmp_path),
        limiter,
        RetryPolicy(6, 0.001, 0.01),
    )
    assert result.status == "ok", result.reason
    assert result.requests == 3 + 12 + 6
    assert limiter.current_rate < 1000.0
    by_product = {(r.product, r.season): r for r in result.scenes}
    assert by_product[("S2L2A", 0)].scene.cloud_pct == 4.0
    assert by_product[("S1GRD", 3)].gap_days == 2.0
    raster = read_geotiff(tmp_path / by_product[("S2L1C", 2)].path)
    assert raster.tags["scene_id"].endswith("_T32UPU")
    bands = [eesrc.ee_band(b) for b in raster.bands]
    np.testing.assert_array_equal(raster.data, expected_pixels(raster.grid, bands))


def test_final_errors_reject_the_location_with_the_reason(tmp_path: Path) -> None:
    fake = FakeEarthEngine(archive())
    fake.fail_next("computePixels", Fault("status", 404, message="Image asset not found"))
    result = download_location(
        source(fake), load_config(None, FIXED_YEAR), DownloadTask("s1", MUNICH),
        WorkDir.at(tmp_path), Limiter(4, 1000.0), RetryPolicy(4, 0.001, 0.01),
    )  # fmt: skip
    assert result.status == "rejected"
    assert result.reason is not None and "HTTP 404" in result.reason
    assert "Image asset not found" in result.reason


def test_limiter_bounds_requests_in_flight_across_threads(tmp_path: Path) -> None:
    fake = FakeEarthEngine(latency_s=0.02)
    src = source(fake)
    limiter = Limiter(4, 10_000.0)
    grid = fetch_grid(load_config(None, FIXED_YEAR), s2_scene(), MUNICH).crop(0, 0, 16, 16)

    def worker() -> None:
        for _ in range(5):
            with limiter:
                src.fetch(s2_scene(), grid, ("B02",))

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
    fake = FakeEarthEngine(archive(), error_rate=0.2, seed=5)

    def offline(config: object) -> eesrc.EarthEngineSource:
        c = load_config(cfg)
        return eesrc.EarthEngineSource(c.earthengine, 10.0, http_transport=fake, credentials=None)

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
        paths = [r[0] for r in m.db.execute("SELECT path FROM scenes").fetchall()]
    assert verdicts == [("ok", 3)], "20% transient errors lose nothing"
    assert len(paths) == 36
    for path in paths[:6]:
        raster = read_geotiff(work / path)
        bands = [eesrc.ee_band(b) for b in raster.bands]
        np.testing.assert_array_equal(raster.data, expected_pixels(raster.grid, bands))
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
    # 2 MiB per response: L1C 13 bands -> 2 band groups of 384x384 (7.7 MB -> 4 of <=2 MB)...
    per_location = 3 + 4 * sum(
        len(plan_chunks(384, 384, n, ResponseLimits.from_mb(2.0, 32_768, 1024)))
        for n in (13, 13, 2)
    )
    assert per_location > 15
    assert f"{40 * per_location} requests" in result.output
    assert f"about {40 * per_location / 10:,.0f} s" in result.output


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
    fake = FakeEarthEngine(archive())

    def with_key(config: Config) -> eesrc.EarthEngineSource:  # the real credential path
        return eesrc.EarthEngineSource(config.earthengine, 10.0, http_transport=fake)

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
