"""Splitting one pixel fetch into requests that respect a server's per-response limits.

Earth Engine answers at most 48 MB, 32,768 px per side and 1,024 bands per request (SPEC
section 4). The default fetch (384 x 384 px, 13 float32 bands, 7.7 MB) is one request; bigger
patches or buffers are split into band groups first, then into row and column tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES_PER_VALUE = 4  # float32
# Room for the NPY header and the structured dtype description.
HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class ResponseLimits:
    max_bytes: int
    max_side_px: int
    max_bands: int

    @classmethod
    def from_mb(cls, max_mb: float, max_side_px: int, max_bands: int) -> ResponseLimits:
        return cls(int(max_mb * 2**20), max_side_px, max_bands)


@dataclass(frozen=True)
class Chunk:
    """Band range [band0, band1) and pixel window (col0, row0, width, height) of one request."""

    band0: int
    band1: int
    col0: int
    row0: int
    width: int
    height: int


def _spans(total: int, step: int) -> list[tuple[int, int]]:
    return [(start, min(step, total - start)) for start in range(0, total, step)]


def plan_chunks(width: int, height: int, n_bands: int, limits: ResponseLimits) -> list[Chunk]:
    """Requests covering (n_bands, height, width) with each response inside ``limits``."""
    budget = max(limits.max_bytes - HEADER_BYTES, BYTES_PER_VALUE)
    tile_w = min(width, limits.max_side_px)
    tile_h = min(height, limits.max_side_px)
    group = min(n_bands, limits.max_bands)
    if tile_w * tile_h * group * BYTES_PER_VALUE > budget:
        group = max(1, min(group, budget // (tile_w * tile_h * BYTES_PER_VALUE)))
    if tile_w * tile_h * group * BYTES_PER_VALUE > budget:
        tile_w = max(1, min(tile_w, budget // BYTES_PER_VALUE))
        tile_h = max(1, min(tile_h, budget // (tile_w * BYTES_PER_VALUE)))
    return [
        Chunk(band0, band0 + n_b, col0, row0, w, h)
        for band0, n_b in _spans(n_bands, group)
        for row0, h in _spans(height, tile_h)
        for col0, w in _spans(width, tile_w)
    ]
