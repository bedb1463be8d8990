"""`run` end to end: locations/hour with the local executor and a 2-worker LocalCluster, the
work dir's disk against the dataset's, and the coordinator's manifest cost per location (what
limits a 250k-location run on one coordinator).

    .venv/bin/python -m bench.bench_run [TARGET] [--latency=SECONDS] [--json]   (default 48)
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from ssl4eo_build.config import REPO_ROOT, load_config, override
from ssl4eo_build.executor import DaskExecutor
from ssl4eo_build.manifest import Manifest
from ssl4eo_build.run import run_all

ROOT = Path("bench-work/run")


def end_to_end(target: int, latency_s: float = 0.0) -> dict[str, float]:
    """``run`` to ``target`` packed locations with each executor (with ``latency_s``, every
    simulated request waits that long first, as a request to Earth Engine does)."""
    cfg = load_config(REPO_ROOT / "configs" / "demo.toml")
    cfg = override(cfg, "synthetic.latency_s", latency_s)
    figures = {}
    for name in ("local", "dask local:2"):
        work = ROOT / name.replace(" ", "-").replace(":", "")
        shutil.rmtree(work, ignore_errors=True)
        t0 = time.perf_counter()
        if name == "local":
            summary = run_all(cfg, work, target, progress=False)
        else:
            with DaskExecutor("local:2") as dask:
                summary = run_all(cfg, work, target, progress=False, dask=dask)
        seconds = time.perf_counter() - t0
        per_stage = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
        print(
            f"run {name}: {target} locations packed in {seconds:.1f} s "
            f"({target / seconds * 3600:,.0f} locations/hour); {per_stage}"
        )
        figures[f"{name.split()[0]}_s"] = seconds
        if name == "local":
            figures.update(disk_use(work, target))
    figures["dask_over_local"] = figures["dask_s"] / figures["local_s"]
    same = same_dataset(*(ROOT / n / "dataset" for n in ("local", "dask-local2")))
    figures["identical_datasets"] = float(same)
    print(
        f"dask local:2 / local wall time: {figures['dask_over_local']:.2f} (cluster start-up "
        f"included); datasets {'identical' if same else 'DIFFERENT'} (every file but build.json)"
    )
    return figures


def same_dataset(a: Path, b: Path) -> bool:
    """The two datasets' checksum lists agree on every file except ``build.json`` (which
    records when and how each was built)."""

    def listed(root: Path) -> set[str]:
        lines = (root / "checksums.sha256").read_text().splitlines()
        return {line for line in lines if not line.endswith("  build.json")}

    return listed(a) == listed(b)


def disk_use(work: Path, packed: int) -> dict[str, float]:
    """Bytes per packed location of the work dir's files (raw, aligned) and of the dataset."""

    def mb(pattern: str) -> float:
        return sum(p.stat().st_size for p in work.glob(pattern) if p.is_file()) / 1e6 / packed

    raw, aligned, dataset = mb("raw/**/*"), mb("aligned/**/*"), mb("dataset/**/*")
    print(
        f"disk per packed location: raw {raw:.2f} MB + aligned {aligned:.2f} MB = "
        f"{(raw + aligned) / dataset:.2f}x the dataset's {dataset:.2f} MB"
    )
    return {
        "raw_mb_per_location": raw,
        "aligned_mb_per_location": aligned,
        "dataset_mb_per_location": dataset,
        "workdir_over_dataset": (raw + aligned) / dataset,
    }


def coordinator_overhead(n: int = 2000) -> dict[str, float]:
    work = ROOT / "manifest"
    shutil.rmtree(work, ignore_errors=True)
    with Manifest.open(work) as m:
        with m.transaction() as db:
            ids = [f"{i:07d}" for i in range(n)]
            m.insert_locations(db, (ids, [1.0] * n, [2.0] * n, ["x"] * n, ["sample"] * n, range(n)))
        scenes = [
            (p, s, f"scene{p}{s}", datetime(2021, 3, 20).isoformat(), 1.0, 32632, None, "/x", "0")
            for p in ("S2L1C", "S2L2A", "S1GRD", "CS", "LULC")
            for s in range(4)
        ]  # and the DEM: a location's 21 layers
        scenes.append(
            ("DEM", 0, "dem", datetime(1970, 1, 1).isoformat(), None, 32632, None, "/y", "0")
        )
        t0 = time.perf_counter()
        for i in range(n):
            sid = f"{i:07d}"
            with m.transaction() as db:
                m.record_download(db, sid, "ok", None, 15, scenes)
            with m.transaction() as db:
                m.record_patch(db, sid, "ok", None, 32632, 0.0, "/x.cube")
        per_location = (time.perf_counter() - t0) / n
    print(
        f"coordinator: {per_location * 1000:.2f} ms of manifest writes per location "
        f"(download + align records); 250,000 locations: {per_location * 250_000 / 60:.0f} min"
    )
    return {"coordinator_ms_per_location": per_location * 1000}


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    latency = [float(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--latency=")]
    figures = end_to_end(int(args[0]) if args else 48, *latency)
    figures.update(coordinator_overhead())
    if "--json" in sys.argv[1:]:
        print(json.dumps(figures))
