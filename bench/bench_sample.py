"""`sample`: 251,079 locations, the whole command against the v1 same-cell scan, side by side.

Both draw the same candidate stream; the v1 scan is a plain re-implementation (own cell only,
Python haversine loop). ``ssl4eo-build sample --n N`` runs as users run it (a new process, a
new work dir, the manifest written); the median of three runs is taken. The library call alone
is timed too. Also counts the pairs closer than the threshold each one accepted (a KD-tree, not
the grid the sampler uses).

    .venv/bin/python -m bench.bench_sample [N] [--json]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ssl4eo_build.config import SampleConfig
from ssl4eo_build.geo import geodesic_distance_m, unit_vectors
from ssl4eo_build.sample.cities import load_cities
from ssl4eo_build.sample.sampling import sample_locations, v1_same_cell_sample


def close_pairs(points: np.ndarray, threshold: float) -> int:
    """Pairs closer than ``threshold`` (exact geodesic after a KD-tree prefilter)."""
    tree = cKDTree(unit_vectors(points[:, 0], points[:, 1]))
    pairs = np.array(sorted(tree.query_pairs(threshold * 1.05 / 6_371_008.8)))
    if len(pairs) == 0:
        return 0
    a, b = points[pairs[:, 0]], points[pairs[:, 1]]
    return int((geodesic_distance_m(a[:, 0], a[:, 1], b[:, 0], b[:, 1]) < threshold).sum())


def whole_command(n: int, work_dir: Path) -> float:
    """Wall time of ``ssl4eo-build sample --n n`` in a new process, into a new work dir."""
    shutil.rmtree(work_dir, ignore_errors=True)
    command = Path(sys.executable).parent / "ssl4eo-build"
    t0 = time.perf_counter()
    subprocess.run([command, "sample", "--n", str(n), "-w", work_dir, "-q"], check=True)
    return time.perf_counter() - t0


def main(n: int = 251_079) -> dict[str, float]:
    cfg = SampleConfig()
    cities = load_cities(cfg.cities)
    with tempfile.TemporaryDirectory() as tmp:
        command_s = statistics.median(whole_command(n, Path(tmp) / f"w{i}") for i in range(3))
    t0 = time.perf_counter()
    progress = list(sample_locations(cities, cfg, [], n))
    ours = np.column_stack(
        [np.concatenate([p.lon for p in progress]), np.concatenate([p.lat for p in progress])]
    )
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    v1 = np.array(v1_same_cell_sample(cities, cfg, n))
    t_v1 = time.perf_counter() - t0
    result = {
        "n": n,
        "ours_s": round(t_ours, 2),
        "v1_same_cell_s": round(t_v1, 2),
        "speedup": round(t_v1 / t_ours, 2),
        "command_s": round(command_s, 2),
        "command_speedup": round(t_v1 / command_s, 2),
        "ours_close_pairs": close_pairs(ours, cfg.min_distance_m),
        "v1_close_pairs": close_pairs(v1, cfg.min_distance_m),
    }
    print(
        f"sample n={n}: the whole command {command_s:.2f} s (median of 3), the library call "
        f"{t_ours:.2f} s ({n / t_ours:,.0f} loc/s), v1 same-cell scan {t_v1:.2f} s "
        f"({n / t_v1:,.0f} loc/s); ratio v1/command {t_v1 / command_s:.2f}, v1/library call "
        f"{t_v1 / t_ours:.2f}; pairs closer than {cfg.min_distance_m:.0f} m: "
        f"ours {result['ours_close_pairs']}, v1 {result['v1_close_pairs']}"
    )
    return result


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--json"]
    figures = main(int(args[0]) if args else 251_079)
    if "--json" in sys.argv[1:]:
        print(json.dumps(figures))
