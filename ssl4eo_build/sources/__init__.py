"""Archive sources behind one narrow interface, selectable by name (``--source``)."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config
from ..errors import ConfigError
from ..products import FETCH_PRODUCTS, N_SEASONS, PRODUCTS
from .base import Limiter, RetryPolicy, Scene, Source, TimeWindow
from .chunks import ResponseLimits, plan_chunks
from .synthetic import SyntheticSource

__all__ = [
    "SOURCES",
    "Limiter",
    "RetryPolicy",
    "Scene",
    "Source",
    "TimeWindow",
    "make_source",
    "requests_per_location",
    "seconds_at_quota",
]


def _synthetic(config: Config) -> Source:
    return SyntheticSource(config.synthetic)


def _earthengine(config: Config) -> Source:
    from .earthengine import EarthEngineSource  # imports `ee`: only when chosen

    return EarthEngineSource(config.earthengine, config.download.max_cloud_pct)


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


def requests_per_location(config: Config) -> int:
    """Requests one location needs without retries: a search per product, then the fetches.

    Earth Engine splits fetches that exceed its response limits; the simulator never does.
    """
    if config.download.source != "earthengine":
        return len(FETCH_PRODUCTS) * (1 + N_SEASONS)
    size = config.sample.patch_px + 2 * config.download.buffer_px
    e = config.earthengine
    limits = ResponseLimits.from_mb(e.max_response_mb, e.max_side_px, e.max_bands)
    per_scene = [
        len(plan_chunks(size, size, len(PRODUCTS[p].bands), limits)) for p in FETCH_PRODUCTS
    ]
    return len(FETCH_PRODUCTS) + N_SEASONS * sum(per_scene)


def request_latency_s(config: Config) -> float:
    """The latency a dry run assumes per request."""
    if config.download.source == "earthengine":
        return config.earthengine.expected_latency_s
    return config.synthetic.latency_s


def seconds_at_quota(config: Config, requests: int) -> float:
    """Wall time for ``requests`` at the quota: the rate or in-flight bound, whichever binds."""
    d = config.download
    latency = request_latency_s(config)
    throughput = d.requests_per_s
    if latency > 0:
        throughput = min(throughput, d.max_in_flight / latency)
    return requests / throughput
