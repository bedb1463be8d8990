"""ssl4eo-build: curate SSL4EO-S12 v1.1 style pretraining datasets (see README.md)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ssl4eo-build")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"


def __getattr__(name: str) -> object:
    """``SampleDataset`` and ``open_shard`` load on use: the CLI starts without xarray."""
    if name == "SampleDataset":
        from .reader import SampleDataset

        return SampleDataset
    if name == "open_shard":
        from .pack.core import open_shard

        return open_shard
    raise AttributeError(f"module 'ssl4eo_build' has no attribute {name!r}")


__all__ = ["SampleDataset", "__version__", "open_shard"]
