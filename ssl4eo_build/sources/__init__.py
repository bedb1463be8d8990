"""Archive sources behind one narrow interface, selectable by name (``--source``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ..config import Config
from ..errors import ConfigError
from ..geo import LonLat
from ..grid import PixelGrid
from ..modalities import N_SEASONS, fetched_products
from .base import Limiter, RetryPolicy, Scene, SceneQuery, Source, TimeWindow
from .requests import (
    HEADER_BYTES,
    PixelRequest,
    RequestShape,
    ResponseLimits,
    pieces,
    plan_requests,
)
from .synthetic import SyntheticSource

__all__ = [
    "SOURCES",
    "Limiter",
    "RequestVolume",
    "RetryPolicy",
    "Scene",
    "SceneQuery",
    "Source",
    "TimeWindow",
    "describe_plan",
    "make_source",
    "request_volume",
    "requests_per_location",
    "seconds_at_quota",
]


def _synthetic(config: Config) -> Source:
    return SyntheticSource(config.synthetic)


def _earthengine(config: Config) -> Source:
    from .earthengine import EarthEngineSource  # imports `ee`: only when chosen

    return EarthEngineSource(
        config.earthengine, config.align.s1_resampling, pool_size=config.download.max_in_flight
    )


SOURCES: dict[str, Callable[[Config], Source]] = {
    "synthetic": _synthetic,
    "earthengine": _earthengine,
}


def make_source(config: Config) -> Source:
    name = config.download.source
    factory = SOURCES.get(name)
    if factory is None:
        raise ConfigError(
            f"key 'download.source': source {name!r} is not available in this build; "
            f"choose one of: {', '.join(sorted(SOURCES))}."
        )
    return factory(config)


@dataclass(frozen=True)
class RequestVolume:
    """What the request plan costs per location, without retries (SPEC section 4)."""

    typical: int  # requests when all four seasons share one grid (one EPSG code)
    worst: int  # every season in its own EPSG code
    bytes: int  # uncompressed pixels transferred


def request_volume(config: Config) -> RequestVolume:
    """One metadata request, then pixel requests: seasons that share a grid stacked
    ``download.seasons_per_request`` at a time, cut to the server's response limits."""
    size = config.sample.patch_px + 2 * config.download.buffer_px
    grid = PixelGrid(32632, 0.0, size * 10.0, 10.0, 10.0, size, size)
    e = config.earthengine
    limits = ResponseLimits.from_mb(e.max_response_mb, e.max_side_px, e.max_bands)
    shape = RequestShape(config.download.seasons_per_request, limits.max_bands)
    from ..download import SeasonPick, planned_layers  # the download stage imports this package

    every = frozenset(p.name for p in fetched_products(config))  # every companion present

    def pixel_requests(grids: dict[int, PixelGrid]) -> list[PixelRequest]:
        picks = []
        for season, g in grids.items():
            granule = Scene("plan", "S2L2A", datetime(2021, 1, 1), g.epsg, companions=every)
            picks.append(SeasonPick(season, granule, granule, granule, 0.0))
        layers = planned_layers(config, picks, LonLat(0.0, 0.0))
        planned = plan_requests(layers, grids, shape.max_seasons)
        return [p for request in planned for p in pieces(request, shape, limits)]

    typical = pixel_requests(dict.fromkeys(range(N_SEASONS), grid))
    worst = pixel_requests({s: replace(grid, epsg=32601 + s) for s in range(N_SEASONS)})
    transferred = sum(p.nbytes - HEADER_BYTES for p in typical)
    return RequestVolume(1 + len(typical), 1 + len(worst), transferred)


def requests_per_location(config: Config) -> int:
    return request_volume(config).typical


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def describe_plan(config: Config, locations: int) -> list[str]:
    """What downloading ``locations`` costs, from the request plan alone (no request sent):
    requests, bytes, disk and time at the quota."""
    d = config.download
    volume = request_volume(config)
    requests = volume.typical * locations
    latency = request_latency_s(config)
    bound = quota_rate(config)
    patch = config.sample.patch_px**2
    # Per location the dataset holds 4 timestamps of L1C (13) and L2A (12) int16 bands, S-1 (2)
    # float32 bands, S2RGB (3) and the cloud mask (1) uint8: an upper bound before compression.
    dataset = 4 * patch * (25 * 2 + 2 * 4 + 3 + 1)
    seconds = seconds_at_quota(config, requests)
    return [
        f"{locations} location(s), source {d.source}",
        f"requests: {requests} requests ({volume.typical} per location when the four seasons "
        f"share a UTM zone, up to {volume.worst}; retries not counted)",
        f"transfer: {_size(volume.bytes * locations)} uncompressed "
        f"({_size(volume.bytes)} per location)",
        f"disk: raw files at most {_size(volume.bytes * locations)}, dataset at most "
        f"{_size(dataset * locations)} before compression",
        f"time: about {seconds:,.0f} s ({seconds / 3600:,.1f} h) at {bound:g} requests/s "
        + (
            f"(the lower of {d.requests_per_s:g} requests/s and {d.max_in_flight} in flight / "
            f"{latency:g} s per request)"
            if latency > 0
            else "(the rate: no latency assumed)"
        ),
    ]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


DOCTOR_POINT = (11.575, 48.137)  # Munich: Sentinel-1 and -2 cover it every few days


def doctor(config: Config) -> list[Check]:
    """Can this machine build with the configured source? Credentials, project and API access
    (the client's start-up), then one tiny scene-plan request; each check says what to fix."""
    from ..errors import SourceError, UserError
    from ..geo import LonLat

    d = config.download
    try:
        source = make_source(config)
    except UserError as exc:
        return [Check("credentials, project and API access", False, str(exc))]
    checks = [Check("credentials, project and API access", True, f"source {source.name}")]
    start = datetime(2021, 6, 1)
    window = (TimeWindow(start, start + timedelta(days=10)),)
    query = SceneQuery(LonLat(*DOCTOR_POINT), window, window, d.max_cloud_pct, d.s1_max_gap_days)
    try:
        found = source.plan(query)
    except SourceError as exc:
        return [*checks, Check("one scene-plan request", False, str(exc))]
    counts = ", ".join(f"{len(v)} {k}" for k, v in found.items())
    return [*checks, Check("one scene-plan request", True, f"answered: {counts}")]


def request_latency_s(config: Config) -> float:
    """The latency a dry run assumes per request."""
    if config.download.source == "earthengine":
        return config.earthengine.expected_latency_s
    return config.synthetic.latency_s


def quota_rate(config: Config) -> float:
    """Requests/s the quota allows: the rate or the in-flight bound, whichever binds."""
    d = config.download
    latency = request_latency_s(config)
    return min(d.requests_per_s, d.max_in_flight / latency) if latency > 0 else d.requests_per_s


def seconds_at_quota(config: Config, requests: int) -> float:
    """Wall time for ``requests`` at the quota."""
    return requests / quota_rate(config)
