"""The coordinator alone at full scale: a 251,079-location build driven through every stage
and `status`, with workers that answer at once (no pixels, no source), so what is timed is
the manifest and the run loop: sampling, the download and align records (21 scene rows and a
patch per location), the pack plan, shard records and sidecars (split lists, a metadata
parquet of a million rows, stats, checksums), and the status report.

The stage functions are the real ones; only the per-location workers are replaced (a
download result with the location's 21 layers, an aligned patch, a shard part with
its metadata rows; no file is written, so nothing is flushed), so everything the coordinator
does per location is in the figure. The
anchor is the issue's bound: 500 locations/s of bookkeeping.

    .venv/bin/python -m bench.bench_coordinator [N] [--json]
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from shapely.geometry import box

from ssl4eo_build import files, pipeline
from ssl4eo_build import modalities as registry
from ssl4eo_build.align import stage as align_stage
from ssl4eo_build.align.worker import AlignResult, AlignTask
from ssl4eo_build.config import REPO_ROOT, Config, load_config, override
from ssl4eo_build.download import stage as download_stage
from ssl4eo_build.download.core import DownloadResult, DownloadTask, SceneRecord
from ssl4eo_build.pack import core as pack
from ssl4eo_build.sources.base import Scene
from ssl4eo_build.workdir import WorkDir

ROOT = Path("bench-work/coordinator")
BOUND = 500.0  # locations/s
ACQUIRED = datetime(2021, 3, 20)
FOOTPRINT = box(11.0, 48.0, 11.03, 48.03).wkb


def _download(config: Config, work: WorkDir, quota: Any, task: DownloadTask) -> DownloadResult:
    """A finished download: every layer of the location recorded, no file written."""
    dem = SceneRecord(
        "DEM", 0, Scene("dem", "DEM", datetime(1970, 1, 1), 32632), "raw/dem.tif", None,
        "0" * 64, 32632,
    )  # fmt: skip
    scenes = (
        *(
            SceneRecord(
                p,
                s,
                Scene(f"{p}_{task.sample_id}_{s}", p, ACQUIRED, 32632, 1.0, tile_id="T32UPU"),
                f"raw/{task.sample_id[:4]}/{task.sample_id}_{p}_{s}.tif",
                None,
                "0" * 64,
                32632,
            )
            for p in ("S2L1C", "S2L2A", "S1GRD", "CS", "LULC")
            for s in range(4)
        ),
        dem,
    )
    return DownloadResult(task.sample_id, "ok", None, scenes, 3)


def _align(config: Config, work: WorkDir, task: AlignTask, sync: bool = True) -> AlignResult:
    relpath = f"aligned/{task.sample_id[:4]}/{task.sample_id}.cube"
    return AlignResult(task.sample_id, "ok", None, 32632, 0.0, relpath, "0" * 64)


def _write(
    part: pack.PackPart, zarr: pack.Output | None, tars: pack.Output | None
) -> list[tuple[str, pack.ShardResult]]:
    """Written files (none on disk), with their metadata rows and band sums."""
    out = []
    for layout, plan in part.files:
        name = pack.shard_name(plan.split, plan.number)
        rel = f"{plan.split}/{part.modality}/{name}"
        rows = tuple(
            {"idx": f"{sid}_{t}", "sample_id": sid, "time_id": t, "time": "2021-03-20T00:00:00",
             "tile_id": "T32UPU", "geometry": FOOTPRINT, "tile_crs": 32632, "file": name}
            for sid in (plan.sample_ids if part.first else ())
            for t in range(4)
        )  # fmt: skip
        n_bands = len(registry.modality(part.modality).bands)
        stats = {"count": [1.0] * n_bands, "total": [0.5] * n_bands, "squares": [0.5] * n_bands}
        files = ((rel, part.modality, len(plan.sample_ids), "0" * 64),)
        result = pack.ShardResult(plan.split, plan.number, files, rows, {part.modality: stats})
        out.append((layout, result))
    return out


def bookkeeping(n: int = 251_079) -> dict[str, float]:
    work = ROOT / "work"
    shutil.rmtree(ROOT, ignore_errors=True)
    cfg = load_config(REPO_ROOT / "configs" / "v1.1.toml")
    cfg = override(override(cfg, "pack.keep_partial", True), "download.workers", 4)
    download_stage.download_on_worker = _download  # type: ignore[assignment]
    download_stage.worker_state = lambda config: None  # type: ignore[assignment]
    align_stage.align_location = _align  # type: ignore[assignment]
    pack.write_part = _write
    files.fsync_file = lambda path: None  # no files: the disk's flush is not bookkeeping
    seconds: dict[str, float] = {}
    steps = {
        "sample": lambda: pipeline.run_sample(cfg, work, n=n),
        "download": lambda: download_stage.run_download(cfg, work, progress=False),
        "align": lambda: align_stage.run_align(cfg, work, progress=False),
        "pack": lambda: pipeline.run_pack(cfg, work, progress=False),
        "status": lambda: pipeline.status(work),
    }
    for name, step in steps.items():
        t0 = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - t0
    total = sum(seconds.values())
    rate = n / total
    per_stage = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    print(
        f"coordinator bookkeeping, {n:,} locations through every stage and status: {total:.0f} s, "
        f"{rate:,.0f} locations/s (bound {BOUND:.0f}: {rate / BOUND:.1f}x); {per_stage}"
    )
    return {
        "locations": n,
        "bookkeeping_s": total,
        "bookkeeping_loc_s": rate,
        **{f"{k}_s": v for k, v in seconds.items()},
    }


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--json"]
    figures = bookkeeping(int(args[0]) if args else 251_079)
    if "--json" in sys.argv[1:]:
        print(json.dumps(figures))
