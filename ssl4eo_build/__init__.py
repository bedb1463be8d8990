"""ssl4eo-build: curate SSL4EO-S12 v1.1 style pretraining datasets (see README.md)."""

from __future__ import annotations

from functools import cache

__version__: str  # from the package metadata, on first use (__getattr__)


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ssl4eo-build")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def __getattr__(name: str) -> object:
    """``__version__``, ``SampleDataset`` and ``open_shard`` load on use: the CLI starts
    without xarray, and reads the package metadata only when the version is asked for."""
    if name == "__version__":
        return _version()
    if name == "SampleDataset":
        from .reader import SampleDataset

        return SampleDataset
    if name == "open_shard":
        from .pack.core import open_shard

        return open_shard
    raise AttributeError(f"module 'ssl4eo_build' has no attribute {name!r}")


__all__ = ["SampleDataset", "__version__", "open_shard"]
