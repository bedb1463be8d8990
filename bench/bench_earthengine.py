"""The `earthengine` source against a fake REST transport with a fixed latency per request.

Whole locations go through the real download path (`download_location`: 3 searches and 12
pixel fetches each, the real `ee` client, the shared limiter, retries) on a thread pool much
wider than the quota. Reported per scenario: requests per second against the bound the quota
allows, min(requests_per_s, max_in_flight / latency), and the peak number of requests the
fake server saw in flight. Patches are small (48 px) so the client's CPU time does not hide
the limiter's behaviour.

    .venv/bin/python -m bench.bench_earthengine
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import ee

from ssl4eo_build.config import Config, EarthEngineConfig, load_config
from ssl4eo_build.download import (
    DownloadTask,
    LimitedCaller,
    download_location,
    fetch_grid,
    s2_windows,
)
from ssl4eo_build.geo import LonLat
from ssl4eo_build.products import FETCH_PRODUCTS, N_SEASONS, PRODUCTS
from ssl4eo_build.sources import Limiter, RetryPolicy
from ssl4eo_build.sources.earthengine import EarthEngineSource
from ssl4eo_build.workdir import WorkDir
from tests.fake_earthengine import FakeEarthEngine, archive

SCENARIOS = (
    # name, latency s, max in flight, requests/s, error rate, locations
    ("rate-bound: 50 ms latency, 40 in flight, 100 req/s", 0.05, 40, 100.0, 0.0, 100),
    ("in-flight-bound: 1 s latency, 40 in flight, 100 req/s", 1.0, 40, 100.0, 0.0, 40),
    ("rate-bound, 5% transient errors (1 in 6 a 429)", 0.05, 40, 100.0, 0.05, 100),
    ("no quota: 50 ms latency, 40 in flight (the process's own ceiling)", 0.05, 40, 1e6, 0.0, 100),
)


def _setup(
    latency_s: float, error_rate: float
) -> tuple[Config, FakeEarthEngine, EarthEngineSource]:
    ee.Reset()
    cfg = load_config(None, {"download.date_rule": "fixed_year"})  # the scripted archive
    cfg = dataclasses.replace(
        cfg,
        sample=dataclasses.replace(cfg.sample, patch_px=24),
        download=dataclasses.replace(cfg.download, buffer_px=12, compress="none"),
    )
    fake = FakeEarthEngine(archive(), latency_s=latency_s, error_rate=error_rate, seed=1)
    src = EarthEngineSource(
        EarthEngineConfig(project="bench-project"), 10.0, http_transport=fake, credentials=None
    )
    fake.calls.clear()
    return cfg, fake, src


def _source_calls(cfg: Config, src: EarthEngineSource, call: LimitedCaller) -> str:
    """One location's requests (3 searches, 12 fetches) without writing files."""
    where = LonLat(11.5, 48.1)
    windows = s2_windows(cfg, {})
    scenes = [call(partial(src.search, where, p, windows)) for p in FETCH_PRODUCTS]
    for product, found in zip(FETCH_PRODUCTS, scenes, strict=True):
        for scene in found[:N_SEASONS]:
            grid = fetch_grid(cfg, scene, where)
            call(partial(src.fetch, scene, grid, PRODUCTS[product].bands))
    return "ok"


def scenario(
    latency_s: float,
    in_flight: int,
    rate: float,
    error_rate: float,
    locations: int,
    write_files: bool,
) -> tuple[float, float, int, int]:
    """(requests/s, bound, peak in flight, locations ok)."""
    cfg, fake, src = _setup(latency_s, error_rate)
    limiter = Limiter(in_flight, rate)
    policy = RetryPolicy(10, 0.05, 1.0)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(4 * in_flight) as pool:

        def one(i: int) -> str:
            if not write_files:
                return _source_calls(cfg, src, LimitedCaller(limiter, policy))
            task = DownloadTask(f"b{i}", LonLat(11.5, 48.1))
            return download_location(src, cfg, task, WorkDir.at(Path(tmp)), limiter, policy).status

        t0 = time.perf_counter()
        statuses = list(pool.map(one, range(locations)))
        seconds = time.perf_counter() - t0
    bound = min(rate, in_flight / latency_s)
    return len(fake.calls) / seconds, bound, fake.peak_in_flight, statuses.count("ok")


def main() -> None:
    for write_files in (False, True):
        what = "download_location (GeoTIFFs written)" if write_files else "source calls only"
        print(f"\n{what}\n")
        print("| scenario | requests/s | quota bound | ratio | peak in flight | locations ok |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, latency, in_flight, rate, errors, locations in SCENARIOS:
            throughput, bound, peak, ok = scenario(
                latency, in_flight, rate, errors, locations, write_files
            )
            print(
                f"| {name} | {throughput:.1f} | {bound:.0f} | {throughput / bound:.2f} | "
                f"{peak} (bound {in_flight}) | {ok}/{locations} |"
            )


if __name__ == "__main__":
    main()
