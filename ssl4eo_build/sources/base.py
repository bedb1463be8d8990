"""The narrow source interface, scenes, and the limiter/retry machinery every source shares."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import RetryableSourceError
from ..geo import LonLat

if TYPE_CHECKING:
    from .requests import PixelRequest, ResponseLimits

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Scene:
    """One acquisition of one product, as a search returns it."""

    scene_id: str  # the product's own id (S-2: granule id; S-1: product id)
    product: str  # a registry product: S2L1C | S2L2A | S1GRD | CS | DEM | LULC
    acquired: datetime  # UTC, naive
    epsg: int  # native CRS the pixels are delivered in
    cloud_pct: float | None = None  # S-2 CLOUDY_PIXEL_PERCENTAGE
    granule: str | None = None  # S-2: "<datatake>_<tile>", shared by L1C and L2A
    tile_id: str | None = None  # S-2 MGRS tile, e.g. "T33SWC"
    # S-2: the granule companions that exist (products whose image has the granule's
    # system:index: "CS" for Cloud Score+, "LULC" for Dynamic World)
    companions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class SceneQuery:
    """What one location's metadata request asks: every candidate of the date rule's whole
    range, so that choosing (and redrawing v1's date shift) needs no further request."""

    point: LonLat
    s2_windows: tuple[TimeWindow, ...]  # OR-ed
    s1_windows: tuple[TimeWindow, ...]
    max_cloud_pct: float  # in both L1C and L2A
    s1_max_gap_days: float  # S-1 scenes farther than this from every clear L2A are left out
    # Granule companions to look for: (product, collection), e.g. ("CS", Cloud Score+'s)
    companions: tuple[tuple[str, str], ...] = ()


class Source(Protocol):
    """What the download stage needs from an archive: one metadata request per location,
    then pixel requests that stack several scenes on one grid."""

    name: str
    limits: ResponseLimits  # what one pixel request may hold

    def plan(self, query: SceneQuery) -> dict[str, list[Scene]]:
        """Candidates per product (``S2L1C``, ``S2L2A``, ``S1GRD``): one request."""
        ...

    def send(self, request: PixelRequest) -> Any:
        """One pixel request, sent: its answer as it arrived (the part that counts against
        the quota)."""
        ...

    def decode(self, request: PixelRequest, answer: Any) -> dict[tuple[str, int], Any]:
        """Every layer of ``request`` from its answer, on the request's grid, (bands, height,
        width) in the layer's dtype: missing pixels NaN (float32) or ``INT16_MISSING``."""
        ...

    def fetch(self, request: PixelRequest) -> dict[tuple[str, int], Any]:
        """``decode(request, send(request))``."""
        ...


class Limiter:
    """At most ``max_in_flight`` calls at once, starts paced ``1 / rate_per_s`` apart.

    Shared by all threads of a process. Pacing (rather than a per-second budget) never sends a
    burst at a window boundary, so the server sees an even stream. :meth:`slow_down` halves the
    rate after a quota error (429); the rate recovers gradually after successful calls.
    """

    def __init__(self, max_in_flight: int, rate_per_s: float) -> None:
        self.max_in_flight = max_in_flight
        self.rate_per_s = rate_per_s
        self.current_rate = rate_per_s
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._next_start = 0.0
        self.in_flight = 0
        self.peak_in_flight = 0

    def __enter__(self) -> Limiter:
        self._slots.acquire()
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / self.current_rate
        if start > now:
            time.sleep(start - now)
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.in_flight -= 1
        self._slots.release()

    def slow_down(self) -> None:
        with self._lock:
            self.current_rate = max(1.0, self.current_rate / 2.0)

    def recover(self) -> None:
        with self._lock:
            self.current_rate = min(self.rate_per_s, self.current_rate * 1.05 + 0.1)


@dataclass(frozen=True)
class ClusterQuota:
    """The quota of a build on a Dask cluster: ``name`` of the cluster-wide semaphore that
    holds the in-flight cap, and the number of workers the request rate is shared among."""

    name: str
    workers: int


class ClusterLimiter:
    """:class:`Limiter` for one Dask worker: the in-flight cap is a ``distributed.Semaphore``
    shared by every worker of the cluster; starts are paced at this worker's share of the
    rate, so the cluster as a whole stays within both."""

    def __init__(self, quota: ClusterQuota, max_in_flight: int, rate_per_s: float) -> None:
        from distributed import Semaphore

        self.leases = Semaphore(max_leases=max_in_flight, name=quota.name)
        self.pacer = Limiter(max_in_flight, rate_per_s / max(1, quota.workers))

    def __enter__(self) -> ClusterLimiter:
        self.leases.acquire()
        try:
            self.pacer.__enter__()
        except BaseException:
            self.leases.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.pacer.__exit__()
        self.leases.release()

    def slow_down(self) -> None:
        self.pacer.slow_down()

    def recover(self) -> None:
        self.pacer.recover()


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff: uniform in [0, min(max, base * 2**attempt)]."""
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2.0**attempt))


def with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    on_retry: Callable[[RetryableSourceError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; retry retryable errors with backoff; re-raise the last one when exhausted.

    Final errors propagate at once.
    """
    rng = random.Random()
    for attempt in range(policy.max_attempts):
        try:
            return call()
        except RetryableSourceError as exc:
            if attempt + 1 >= policy.max_attempts:
                raise
            if on_retry is not None:
                on_retry(exc)
            pause = exc.retry_after if exc.retry_after is not None else policy.delay(attempt, rng)
            log.debug(
                "retryable source error (%s); attempt %d, sleeping %.2fs", exc, attempt + 1, pause
            )
            sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover
