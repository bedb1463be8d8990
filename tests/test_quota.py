"""One Earth Engine quota for a whole Dask cluster: in-flight cap and rate across workers."""

from __future__ import annotations

import logging
import os
import time

import pytest
from distributed import Client, LocalCluster

from ssl4eo_build.executor import DaskExecutor
from ssl4eo_build.sources.base import ClusterLimiter, ClusterQuota

CAP, RATE = 3, 40.0


def _request(quota: ClusterQuota, hold_s: float) -> tuple[float, float]:
    """One 'request' under the cluster's quota: when it started and ended (wall clock)."""
    limiter = _LIMITERS.get(quota.name)
    if limiter is None:
        limiter = _LIMITERS[quota.name] = ClusterLimiter(quota, CAP, RATE)
    with limiter:
        start = time.time()
        time.sleep(hold_s)
        return start, time.time()


_LIMITERS: dict[str, ClusterLimiter] = {}


def _peak_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = level = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_in_flight_cap_and_rate_hold_across_dask_workers() -> None:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=4, processes=True, dashboard_address=None
        ) as cluster,  # fmt: skip
        Client(cluster) as client,
    ):
        quota = ClusterQuota("test-quota", workers=2)
        # Long requests: the in-flight cap binds (8 threads want in, 3 may).
        spans = client.gather(client.map(_request, [quota] * 24, [0.2] * 24, pure=False))
        assert _peak_overlap(spans) == CAP, "reached, never exceeded, across both workers"
        # Instant requests: the rate binds; each worker paces its share, the sum holds.
        quick = ClusterQuota("test-rate", workers=2)
        starts = sorted(s for s, _ in client.gather(
            client.map(_request, [quick] * 60, [0.0] * 60, pure=False)))  # fmt: skip
        achieved = (len(starts) - 1) / (starts[-1] - starts[0])
        assert achieved <= RATE * 1.1


def test_workers_keep_small_arrays_on_the_heap(caplog: pytest.LogCaptureFixture) -> None:
    # A cluster started with Dask's defaults (MALLOC_TRIM_THRESHOLD_ alone) is named in a
    # warning with the fix; a cluster the build starts sets glibc's thresholds in its workers.
    # (Dask's nannies write these variables into this process's environment too.)
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith("MALLOC_")]:
        del os.environ[name]  # left by an earlier cluster of this test process
    try:
        with (
            LocalCluster(n_workers=1, processes=True, dashboard_address=None) as cluster,
            caplog.at_level(logging.WARNING),
            DaskExecutor(cluster.scheduler_address),
        ):
            assert "1 Dask worker(s)" in caplog.text
            assert "MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456" in caplog.text
        caplog.clear()
        with DaskExecutor("local:1") as ours, caplog.at_level(logging.WARNING):
            environ = ours.client.run(lambda: dict(os.environ))
            assert [e["MALLOC_MMAP_THRESHOLD_"] for e in environ.values()] == [str(32 << 20)]
            with DaskExecutor(ours.cluster.scheduler_address):
                assert "MALLOC" not in caplog.text
    finally:
        os.environ.clear()
        os.environ.update(saved)
