"""The `earthengine` source: requests per location and use of the quota, at the transport.

Whole locations go through the real download path (`download_on_worker`: one scene-plan
request, then pixel requests stacking two seasons each; the real `ee` client, the limiter,
retries, request cutting, GeoTIFFs written) against the strict fake server with a fixed latency
per request. Patches are small (48 px).

Scenarios: 50 ms latency (the rate binds: 100 requests/s) on a LocalCluster of 2 Dask worker
processes x 32 threads sharing one quota (a single process cannot reach 100 requests/s here:
the client's own CPU, mostly the `ee` library building and serialising expressions, binds at
about 55 requests/s on one core — shown as a third row); 1 s latency (the in-flight cap binds:
40 / 1 s) in this process with `download.workers` threads; and 20 % transient failures of
every kind the fake knows, for locations lost. Each figure's anchor is its bound, in the same
run: achieved requests/s against min(requests_per_s, max_in_flight / latency). Peak in flight
is counted from the fake servers' request spans, across processes.

    .venv/bin/python -m bench.bench_earthengine [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import ee

from ssl4eo_build.config import Config, load_config
from ssl4eo_build.download.core import DownloadTask, download_on_worker, worker_state
from ssl4eo_build.geo import LonLat
from ssl4eo_build.sources.base import ClusterQuota
from ssl4eo_build.workdir import WorkDir

IN_FLIGHT, RATE = 40, 100.0
SCENARIOS = (
    # name, latency s, error rate, locations, Dask worker processes (0: this process)
    ("rate-bound: 50 ms latency, 2 Dask workers x 32 threads, one quota", 0.05, 0.0, 900, 2),
    ("in-flight-bound: 1 s latency, this process, 48 threads", 1.0, 0.0, 900, 0),
    ("rate-bound: 50 ms latency, this process, 48 threads (client CPU binds)", 0.05, 0.0, 300, 0),
    ("20% transient failures of every kind, 50 ms latency, this process", 0.05, 0.2, 100, 0),
)
THREADS_PER_DASK_WORKER = 32


def _config() -> Config:
    cfg = load_config(None, {"download.date_rule": "fixed_year"})  # the fake's 2021 archive
    return dataclasses.replace(
        cfg,
        sample=dataclasses.replace(cfg.sample, patch_px=24),
        download=dataclasses.replace(
            cfg.download, buffer_px=12, compress="none", source="earthengine"
        ),
        earthengine=dataclasses.replace(cfg.earthengine, project="bench-project"),
    )


def _use_fake(latency_s: float, error_rate: float) -> None:
    """Point the `earthengine` source of this process at a fresh fake server. (Runs on Dask
    workers too: it imports what it changes, so the worker's own modules are changed.)"""
    from ssl4eo_build import sources
    from ssl4eo_build.download import core as download
    from ssl4eo_build.sources.earthengine import EarthEngineSource
    from tests import fake_earthengine

    ee.Reset()
    download._WORKER_STATE.clear()
    fake = fake_earthengine.FakeEarthEngine(latency_s=latency_s, error_rate=error_rate, seed=1)
    fake_earthengine.CURRENT[:] = [fake]
    sources.SOURCES["earthengine"] = lambda cfg: EarthEngineSource(
        cfg.earthengine, http_transport=fake, credentials=None
    )


def _clear_spans() -> None:
    from tests import fake_earthengine

    fake_earthengine.CURRENT[0].spans.clear()


def _fake_figures() -> tuple[int, list[tuple[str, float, float]]]:
    from tests import fake_earthengine

    fake = fake_earthengine.CURRENT[0]
    return len(fake.spans), list(fake.spans)


def _peak(spans: list[tuple[str, float, float]]) -> int:
    events = sorted([(a, 1) for _, a, _ in spans] + [(b, -1) for _, _, b in spans])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def _steady_rate(spans: list[tuple[str, float, float]]) -> float:
    """Requests/s while there is work for every slot: from the moment the cap was first
    reached to the moment the last location sent its first request (after that, fewer and
    fewer locations are left, each a chain of requests, and slots empty)."""
    starts = sorted(start for _, start, _ in spans)
    first = starts[min(IN_FLIGHT, len(starts)) - 1]
    last = max(start for kind, start, _ in spans if kind == "computeFeatures")
    inside = sum(first <= t <= last for t in starts)
    return (inside - 1) / (last - first) if last > first else float("nan")


def _tasks(prefix: str, n: int) -> list[DownloadTask]:
    return [DownloadTask(f"{prefix}{i:05d}", LonLat(11.5, 48.1)) for i in range(n)]


def scenario(
    latency_s: float, error_rate: float, locations: int, dask_workers: int
) -> dict[str, float]:
    cfg = _config()
    with tempfile.TemporaryDirectory() as tmp:
        work = WorkDir.at(Path(tmp))
        if dask_workers:
            from distributed import Client, LocalCluster

            with (
                LocalCluster(
                    n_workers=dask_workers,
                    threads_per_worker=THREADS_PER_DASK_WORKER,
                    processes=True,
                    dashboard_address=None,
                ) as cluster,  # fmt: skip
                Client(cluster) as client,
            ):
                client.run(_use_fake, latency_s, error_rate)
                quota = ClusterQuota("bench-quota", dask_workers)
                run = partial(download_on_worker, cfg, work, quota)
                client.gather(client.map(run, _tasks("w", 8), pure=False))  # start-up
                client.run(_clear_spans)  # count from here
                t0 = time.perf_counter()
                results = client.gather(client.map(run, _tasks("b", locations), pure=False))
                seconds = time.perf_counter() - t0
                figures = client.run(_fake_figures).values()
        else:
            _use_fake(latency_s, error_rate)
            worker_state(cfg)  # start-up
            _clear_spans()
            run = partial(download_on_worker, cfg, work, None)
            with ThreadPoolExecutor(cfg.download.workers) as pool:
                t0 = time.perf_counter()
                results = list(pool.map(run, _tasks("b", locations)))
                seconds = time.perf_counter() - t0
            figures = [_fake_figures()]
    sent = sum(n for n, _ in figures)
    spans = [span for _, s in figures for span in s]
    bound = min(RATE, IN_FLIGHT / latency_s)
    done = sum(r.status == "ok" for r in results)
    return {
        "requests_per_location": sent / max(done, 1),
        "requests_per_s": sent / seconds,
        "bound": bound,
        "utilisation": _steady_rate(spans) / bound,
        "utilisation_whole_run": sent / seconds / bound,
        "peak_in_flight": _peak(spans),
        "ok": done,
        "lost": locations - done,
        "locations": locations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON last")
    args = parser.parse_args()
    print(
        "| scenario | requests/location | requests/s (whole run) | bound | use, steady | "
        "use, whole run | peak in flight | ok |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    results = {}
    for name, latency, errors, locations, workers in SCENARIOS:
        r = results[name] = scenario(latency, errors, locations, workers)
        print(
            f"| {name} | {r['requests_per_location']:.2f} | {r['requests_per_s']:.1f} | "
            f"{r['bound']:.0f} | {r['utilisation']:.3f} | {r['utilisation_whole_run']:.3f} | "
            f"{r['peak_in_flight']:.0f} "
            f"(cap {IN_FLIGHT}) | {r['ok']:.0f}/{locations} |"
        )
    clean = [results[name] for name, _, errors, _, _ in SCENARIOS[:2]]
    faulty = [results[name] for name, _, errors, _, _ in SCENARIOS if errors > 0]
    figures = {
        "requests_per_location": max(r["requests_per_location"] for r in clean),
        "quota_utilisation": min(r["utilisation"] for r in clean),
        "quota_utilisation_whole_run": min(r["utilisation_whole_run"] for r in clean),
        "quota_utilisation_one_process_50ms": results[SCENARIOS[2][0]]["utilisation"],
        "locations": int(sum(r["ok"] for r in clean)),
        "locations_lost_with_20pct_failures": int(sum(r["lost"] for r in faulty)),
        "requests_per_location_with_20pct_failures": faulty[0]["requests_per_location"],
        "peak_in_flight": int(max(r["peak_in_flight"] for r in results.values())),
    }
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
