"""Stage `download`, wiring: the manifest's locations through the download workers, their
results recorded."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from ..config import Config, section_dict
from ..executor import DaskExecutor, run_pool
from ..manifest import LocationRow, Manifest
from ..sources.base import ClusterQuota
from ..workdir import WorkDir, owned
from .core import DownloadTask, download_on_worker, worker_state
from .plan import requests_per_location

log = logging.getLogger(__name__)

_DOWNLOAD_VOLATILE = (
    "workers", "max_attempts", "retry_base_s", "retry_max_s", "max_runs", "max_in_flight",
    "requests_per_s", "compress", "compress_level", "seasons_per_request",
)  # fmt: skip


def download_settings(config: Config) -> dict[str, Any]:
    settings = {
        k: v for k, v in section_dict(config.download).items() if k not in _DOWNLOAD_VOLATILE
    }
    settings["patch_px"] = config.sample.patch_px
    settings["pixel_m"] = config.sample.pixel_m
    # S-1 arrives on each season's S-2 grid, resampled by the source with this method.
    settings["s1_resampling"] = config.align.s1_resampling
    if config.download.source == "synthetic":
        synthetic = section_dict(config.synthetic)
        settings["synthetic"] = {
            k: v for k, v in synthetic.items() if k not in ("latency_s", "error_rate")
        }
    return settings


@dataclass(frozen=True)
class DownloadSummary:
    planned: int
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    requests: int = 0
    dry_run: bool = False
    requests_planned: int = 0


def _only(rows: list[LocationRow], only: Collection[str] | None) -> list[LocationRow]:
    return rows if only is None else [r for r in rows if r.sample_id in only]


def _tasks(manifest: Manifest, rows: list[LocationRow]) -> list[DownloadTask]:
    # Two queries for all locations; times were normalised to ISO 8601 UTC on import.
    refs = manifest.all_reference_times()
    done = manifest.all_recorded_scenes()
    return [
        DownloadTask(
            row.sample_id,
            row.position,
            {s: datetime.fromisoformat(t) for s, t in refs.get(row.sample_id, {}).items()},
            done.get(row.sample_id, {}),
        )
        for row in rows
    ]


def run_download(
    config: Config,
    work_dir: Path,
    limit: int | None = None,
    dry_run: bool = False,
    force: bool = False,
    progress: bool = True,
    dask: DaskExecutor | None = None,
    up_to: str | None = None,
    only: Collection[str] | None = None,
) -> DownloadSummary:
    """Find and fetch scenes for every sampled location without a finished download (with
    ``up_to``, only locations whose id is not after it)."""
    d = config.download
    if dry_run:  # no source, no lock: a dry run needs neither network nor credentials
        with Manifest.open_readonly(work_dir) as manifest:
            rows = manifest.download_candidates(d.max_runs, up_to)[:limit]
        return DownloadSummary(
            planned=len(rows),
            dry_run=True,
            requests_planned=requests_per_location(config) * len(rows),
        )
    with owned(work_dir), Manifest.open(work_dir, create=False) as manifest:
        rows = _only(manifest.download_candidates(d.max_runs, up_to), only)[:limit]
        settings = download_settings(config)
        has_results = manifest.count("downloads") > 0
        manifest.check_stage_config("download", settings, has_results, force)
        tasks = _tasks(manifest, rows)
        if tasks and not dask:
            worker_state(config)  # the source connects (and checks credentials) before any work
        run_id = manifest.begin_run("download", settings)
        work = WorkDir.at(work_dir)
        counts = {"ok": 0, "rejected": 0, "failed": 0}
        requests = 0
        # Threads of this process share one source, limiter and request shape; Dask workers
        # each make their own, and share one quota through the scheduler.
        quota = None
        if dask is not None:
            quota = ClusterQuota(f"ssl4eo-build-quota-{run_id}-{os.getpid()}", dask.workers)
        fetch = partial(download_on_worker, config, work, quota)
        # download.workers is the build's number of downloads at once on either executor: on
        # Dask each task runs its share of them in threads of its worker (the work waits on
        # the network, and a task thread would wait on one location at a time).
        share = 1 if dask is None else -(-d.workers // dask.threads)
        for result in run_pool(
            fetch,
            tasks,
            d.workers,
            "download",
            counts,
            progress,
            dask=dask,
            dask_threads=share,
            dask_setup=partial(worker_state, config, quota),
        ):
            with manifest.transaction() as db:
                manifest.record_download(
                    db,
                    result.sample_id,
                    result.status,
                    result.reason,
                    result.requests,
                    (
                        (
                            r.product,
                            r.season,
                            r.scene.scene_id,
                            r.scene.acquired.isoformat(),
                            r.scene.cloud_pct,
                            r.epsg,
                            r.gap_days,
                            r.path,
                            r.sha256,
                        )
                        for r in result.scenes
                    ),
                )
            counts[result.status] += 1
            requests += result.requests
        summary = DownloadSummary(
            planned=len(tasks),
            ok=counts["ok"],
            rejected=counts["rejected"],
            failed=counts["failed"],
            requests=requests,
        )
        manifest.finish_run(run_id, summary.__dict__)
        return summary
