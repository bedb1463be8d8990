"""`align`: locations per second per core, same-CRS vs two-zone, and where the time goes.

Builds its own inputs with the simulator (sample + download into bench-work/align-*), then
times :func:`align_location` in one process per case, and the whole stage with one process per
core: once with the raw files in the page cache (just written), once from disk (cache dropped;
needs root).

It also times the one-core pass with the raw files' recorded checksums checked (the default)
and without (as for a work dir from before checksums), side by side.

    .venv/bin/python -m bench.bench_align [N] [--json]   (default 120)
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path

from ssl4eo_build import pipeline
from ssl4eo_build.align.worker import AlignTask, align_location
from ssl4eo_build.config import load_config
from ssl4eo_build.manifest import Manifest
from ssl4eo_build.sample.cities import write_cities
from ssl4eo_build.workdir import WorkDir

ROOT = Path("bench-work")
CASES = {
    # Munich: all granules in UTM 32N. Border: 2 km from the 32N/33N border, both zones.
    "same-CRS": (48.137, 11.575, 0.0),
    "two-zone": (48.1, 11.972, 15_000.0),
}


def prepare(case: str, n: int, compress: str) -> tuple[Path, Path]:
    lat, lon, overlap = CASES[case]
    work = ROOT / f"align-{case}-{compress}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cities = work / "cities.csv"
    write_cities(cities, [(1, case, "XX", lat, lon, 1)])
    config = work / "bench.toml"
    config.write_text(
        f"[sample]\nn = {n}\nsigma_m = {4000.0 if case == 'two-zone' else 20000.0}\n"
        f'cities = "{cities.resolve()}"\n'
        f'[download]\nworkers = 4\ncompress = "{compress}"\n'
        f"[synthetic]\npartial_prob = 0.0\nzone_overlap_m = {max(overlap, 1.0)}\n"
    )
    cfg = load_config(config)
    pipeline.run_sample(cfg, work)
    pipeline.run_download(cfg, work, progress=False)
    return work, config


def time_single(work: Path, config: Path, verify: bool = True) -> dict[str, float]:
    cfg = load_config(config)
    with Manifest.open(work) as m:
        candidates = m.align_candidates(cfg.align.max_runs)
    tasks = [
        AlignTask(
            r.sample_id,
            r.position,
            f if verify else {k: (path, epsg, None) for k, (path, epsg, _) in f.items()},
        )
        for r, f in candidates
    ]
    seconds: dict[str, float] = {}
    zones = 0
    t0 = time.perf_counter()
    for task in tasks:
        result = align_location(cfg, WorkDir.at(work), task)  # the stage timing redoes these
        zones += len({f[1] for (p, _), f in task.files.items() if p == "S2L2A"}) > 1
        for k, v in result.seconds.items():
            seconds[k] = seconds.get(k, 0.0) + v
    total = time.perf_counter() - t0
    out = {"locations": len(tasks), "per_core_loc_s": len(tasks) / total, "mixed_zone": zones}
    out.update({f"{k}_ms": 1000 * v / len(tasks) for k, v in seconds.items()})
    return out


def time_stage(work: Path, config: Path, cold: bool) -> float | None:
    """The whole stage, one process per core, from the same starting manifest each time. With
    ``cold``, the page cache is dropped first so the raw files come from disk (needs root;
    None without)."""
    manifest, before = work / "manifest.sqlite", work / "manifest-before-align.sqlite"
    if not before.exists():
        _copy_db(manifest, before)
    else:
        _copy_db(before, manifest)
        shutil.rmtree(work / "aligned", ignore_errors=True)
    if cold:
        os.sync()
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        except OSError:
            return None
    cfg = load_config(config)
    t0 = time.perf_counter()
    summary = pipeline.run_align(cfg, work, progress=False)
    return (summary.ok + summary.rejected) / (time.perf_counter() - t0)


def _copy_db(src: Path, dst: Path) -> None:
    with closing(sqlite3.connect(src)) as a, closing(sqlite3.connect(dst)) as b:
        a.backup(b)


def main(n: int = 120, as_json: bool = False) -> dict[str, float | None]:
    figures: dict[str, float | None] = {}
    for compress in ("zstd", "none"):
        for case in CASES:
            work, config = prepare(case, n, compress)
            unverified = time_single(work, config, verify=False) if compress == "zstd" else None
            single = time_single(work, config)
            warm = time_stage(work, config, cold=False)
            cold = time_stage(work, config, cold=True)
            parts = ", ".join(
                f"{k[:-3]} {v:.0f} ms" for k, v in single.items() if k.endswith("_ms")
            )
            print(
                f"align {case} (raw compress={compress}, {single['locations']} locations, "
                f"{single['mixed_zone']} with timestamps in two zones): "
                f"{single['per_core_loc_s']:.1f} loc/s on one core; whole stage on 2 processes "
                f"{warm:.1f} loc/s, from a cold page cache "
                f"{'n/a (needs root)' if cold is None else f'{cold:.1f} loc/s'}; "
                f"per location: {parts}"
            )
            key = f"{case}_{compress}"
            figures.update(
                {
                    f"{key}_one_core_loc_s": single["per_core_loc_s"],
                    f"{key}_stage_loc_s": warm,
                    f"{key}_stage_cold_loc_s": cold,
                    f"{key}_read_ms": single["read_ms"],
                }
            )
            if unverified is not None:
                ratio = single["per_core_loc_s"] / unverified["per_core_loc_s"]
                print(
                    f"  checksums: one core {single['per_core_loc_s']:.1f} loc/s with the raw "
                    f"files' checksums checked, {unverified['per_core_loc_s']:.1f} without "
                    f"(ratio {ratio:.2f}); read {single['read_ms']:.0f} vs "
                    f"{unverified['read_ms']:.0f} ms"
                )
                figures[f"{key}_one_core_unverified_loc_s"] = unverified["per_core_loc_s"]
                figures[f"{key}_checksum_speed_ratio"] = ratio
    if as_json:
        print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--json"]
    main(int(args[0]) if args else 120, as_json="--json" in sys.argv[1:])
