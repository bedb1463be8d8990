"""What a download costs, from the request plan alone (no request sent): requests per
location (typical and worst), bytes, disk, and time at the quota (``--dry-run``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from .. import modalities as registry
from ..config import Config
from ..geo import LonLat
from ..grid import PixelGrid
from ..modalities import N_SEASONS, fetched_products
from ..sources.base import Scene
from ..sources.requests import (
    HEADER_BYTES,
    PixelRequest,
    RequestShape,
    ResponseLimits,
    pieces,
    plan_requests,
)
from .core import SeasonPick, planned_layers


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


def measured_disk(work_dir: Path) -> tuple[int, int, int, int] | None:
    """Bytes on disk in an existing work dir: raw files and the number of locations they
    belong to, aligned cubes and their number (``None`` when nothing is downloaded yet)."""
    raw_bytes = cube_bytes = cubes = 0
    locations = set()
    for path in (work_dir / "raw").glob("*/*/*.tif"):
        raw_bytes += path.stat().st_size
        locations.add(path.parent.name)
    for path in (work_dir / "aligned").glob("*/*.cube"):
        cube_bytes += path.stat().st_size
        cubes += 1
    return (raw_bytes, len(locations), cube_bytes, cubes) if locations else None


def describe_plan(config: Config, locations: int, work_dir: Path | None = None) -> list[str]:
    """What downloading ``locations`` costs, from the request plan alone (no request sent):
    requests, bytes, disk and time at the quota; with ``work_dir``, the disk also from the
    bytes per location measured there."""
    d = config.download
    volume = request_volume(config)
    requests = volume.typical * locations
    latency = request_latency_s(config)
    bound = quota_rate(config)
    # Per location the dataset holds every registry modality and the cloud mask (uint8): an
    # upper bound before compression.
    per_pixel = sum(
        m.timestamps * len(m.bands) * np.dtype(m.dtype).itemsize for m in registry.MODALITIES
    )
    dataset = config.sample.patch_px**2 * (per_pixel + N_SEASONS)
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
        *_measured_lines(work_dir, locations),
    ]


def _measured_lines(work_dir: Path | None, locations: int) -> list[str]:
    measured = measured_disk(work_dir) if work_dir is not None else None
    if measured is None:
        return []
    raw_bytes, raw_n, cube_bytes, cube_n = measured
    raw = raw_bytes / raw_n
    cube = cube_bytes / cube_n if cube_n else 0.0
    return [
        f"disk, measured in {work_dir}: raw files {_size(raw)} per location ({raw_n} "
        f"location(s)), aligned cubes {_size(cube)} per location ({cube_n}): about "
        f"{_size((raw + cube) * locations)} more for {locations} location(s)"
    ]


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
