"""Archive sources behind one narrow interface, selectable by name (``--source``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config import Config
from ..errors import ConfigError
from ..geo import LonLat
from .base import Limiter, RetryPolicy, Scene, SceneQuery, Source, TimeWindow
from .synthetic import SyntheticSource

__all__ = [
    "SOURCES",
    "Limiter",
    "RetryPolicy",
    "Scene",
    "SceneQuery",
    "Source",
    "TimeWindow",
    "doctor",
    "make_source",
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
class Check:
    name: str
    ok: bool
    detail: str


DOCTOR_POINT = (11.575, 48.137)  # Munich: Sentinel-1 and -2 cover it every few days


def doctor(config: Config) -> list[Check]:
    """Can this machine build with the configured source? Credentials, project and API access
    (the client's start-up), then one tiny scene-plan request; each check says what to fix."""
    from ..errors import SourceError, UserError

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
