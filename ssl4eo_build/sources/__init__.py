"""Archive sources behind one narrow interface, selectable by name (``--source``)."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config
from ..errors import ConfigError
from .base import Limiter, RetryPolicy, Scene, Source, TimeWindow
from .synthetic import SyntheticSource

__all__ = ["SOURCES", "Limiter", "RetryPolicy", "Scene", "Source", "TimeWindow", "make_source"]


def _synthetic(config: Config) -> Source:
    return SyntheticSource(config.synthetic)


SOURCES: dict[str, Callable[[Config], Source]] = {"synthetic": _synthetic}


def make_source(config: Config) -> Source:
    name = config.download.source
    factory = SOURCES.get(name)
    if factory is None:
        raise ConfigError(
            f"key 'download.source': source {name!r} is not available in this build; "
            f"choose one of: {', '.join(sorted(SOURCES))}."
        )
    return factory(config)
