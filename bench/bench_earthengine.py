"""The `earthengine` source: requests per location and use of the quota, at the transport.

Whole locations go through the real download path (`download_location`: one scene-plan request,
then pixel requests stacking two seasons each; the real `ee` client, the shared limiter,
retries, request cutting, GeoTIFFs written) against the strict fake server with a fixed latency
per request, on as many threads as `download.workers` (48). Patches are small (48 px) so the
client's CPU time does not hide the limiter.

Scenarios: 50 ms latency (the rate binds: 100 requests/s) and 1 s latency (the in-flight cap
binds: 40 / 1 s), both without injected errors, for the request count and the quota use; then
20 % transient failures of every kind the fake knows, for locations lost. The anchor of each
figure is its bound, measured in the same run: achieved requests/s against
min(requests_per_s, max_in_flight / latency).

    .venv/bin/python -m bench.bench_earthengine [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ee

from ssl4eo_build.config import Config, EarthEngineConfig, load_config
from ssl4eo_build.download import DownloadTask, download_location
from ssl4eo_build.geo import LonLat
from ssl4eo_build.sources import Limiter, RetryPolicy
from ssl4eo_build.sources.earthengine import EarthEngineSource
from ssl4eo_build.sources.requests import RequestShape
from ssl4eo_build.workdir import WorkDir
from tests.fake_earthengine import FakeEarthEngine

IN_FLIGHT, RATE = 40, 100.0
SCENARIOS = (
    # name, latency s, error rate, locations
    ("rate-bound: 50 ms latency", 0.05, 0.0, 300),
    ("in-flight-bound: 1 s latency", 1.0, 0.0, 200),
    ("20% transient failures of every kind, 50 ms latency", 0.05, 0.2, 100),
)


def _config() -> Config:
    cfg = load_config(None, {"download.date_rule": "fixed_year"})  # the fake's 2021 archive
    return dataclasses.replace(
        cfg,
        sample=dataclasses.replace(cfg.sample, patch_px=24),
        download=dataclasses.replace(cfg.download, buffer_px=12, compress="none"),
    )


def scenario(latency_s: float, error_rate: float, locations: int) -> dict[str, float]:
    ee.Reset()
    cfg = _config()
    fake = FakeEarthEngine(latency_s=latency_s, error_rate=error_rate, seed=1)
    src = EarthEngineSource(
        EarthEngineConfig(project="bench-project"), http_transport=fake, credentials=None
    )
    fake.calls.clear()
    limiter = Limiter(IN_FLIGHT, RATE)
    policy = RetryPolicy(12, 0.02, 0.5)
    shape = RequestShape(cfg.download.seasons_per_request, src.limits.max_bands)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(cfg.download.workers) as pool:
        work = WorkDir.at(Path(tmp))

        def one(i: int) -> str:
            task = DownloadTask(f"b{i:05d}", LonLat(11.5, 48.1))
            return download_location(src, cfg, task, work, limiter, policy, shape).status

        t0 = time.perf_counter()
        statuses = list(pool.map(one, range(locations)))
        seconds = time.perf_counter() - t0
    sent = len(fake.of_kind("computeFeatures")) + len(fake.of_kind("computePixels"))
    bound = min(RATE, IN_FLIGHT / latency_s)
    done = statuses.count("ok")
    return {
        "requests_per_location": sent / max(done, 1),
        "requests_per_s": sent / seconds,
        "bound": bound,
        "utilisation": sent / seconds / bound,
        "peak_in_flight": fake.peak_in_flight,
        "ok": done,
        "lost": locations - done,
        "locations": locations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON last")
    args = parser.parse_args()
    print("| scenario | requests/location | requests/s | bound | use | peak in flight | ok |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    results = {}
    for name, latency, errors, locations in SCENARIOS:
        r = results[name] = scenario(latency, errors, locations)
        print(
            f"| {name} | {r['requests_per_location']:.2f} | {r['requests_per_s']:.1f} | "
            f"{r['bound']:.0f} | {r['utilisation']:.3f} | {r['peak_in_flight']:.0f} "
            f"(cap {IN_FLIGHT}) | {r['ok']:.0f}/{locations} |"
        )
    clean = [results[name] for name, _, errors, _ in SCENARIOS if errors == 0]
    faulty = [results[name] for name, _, errors, _ in SCENARIOS if errors > 0]
    figures = {
        "requests_per_location": max(r["requests_per_location"] for r in clean),
        "quota_utilisation": min(r["utilisation"] for r in clean),
        "locations": int(sum(r["ok"] for r in clean)),
        "locations_lost_with_20pct_failures": int(sum(r["lost"] for r in faulty)),
        "requests_per_location_with_20pct_failures": faulty[0]["requests_per_location"],
        "peak_in_flight": int(max(r["peak_in_flight"] for r in results.values())),
    }
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
