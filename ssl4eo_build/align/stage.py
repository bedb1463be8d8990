"""Stage `align`, wiring: downloaded locations through the align workers, cubes recorded."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..config import Config, section_dict
from ..executor import DaskExecutor, run_pool
from ..files import DeferredSync, intact
from ..manifest import Manifest
from ..workdir import WorkDir, owned
from .core import footprint_grid
from .worker import AlignResult, AlignTask, align_location

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlignSummary:
    planned: int
    ok: int = 0
    rejected: int = 0
    failed: int = 0


def align_settings(config: Config) -> dict[str, Any]:
    settings = {
        k: v for k, v in section_dict(config.align).items() if k not in ("workers", "max_runs")
    }
    settings.update(patch_px=config.sample.patch_px, pixel_m=config.sample.pixel_m)
    settings["download_lattice_m"] = config.download.lattice_m
    return settings


def run_align(
    config: Config,
    work_dir: Path,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
    dask: DaskExecutor | None = None,
    up_to: str | None = None,
    only: Collection[str] | None = None,
) -> AlignSummary:
    """Align every downloaded location without a finished patch (processes, one per core;
    with ``up_to``, only locations whose id is not after it). Finished patches whose cube is
    gone are aligned again; with ``force``, so are those whose cube fails its checksum."""
    a = config.align
    with owned(work_dir), Manifest.open(work_dir, create=False) as manifest:
        settings = align_settings(config)
        manifest.check_stage_config("align", settings, manifest.count("patches") > 0, force)
        work = WorkDir.at(work_dir)
        _redo_damaged_cubes(manifest, work, verify=force)
        candidates = manifest.align_candidates(a.max_runs, up_to)
        candidates = [c for c in candidates if only is None or c[0].sample_id in only][:limit]
        run_id = manifest.begin_run("align", settings)
        published = manifest.reference_patches()
        tasks = [
            AlignTask(
                row.sample_id,
                row.position,
                files,
                footprint_grid(*published[row.sample_id], config.sample.pixel_m, a.lattice_m)
                if row.sample_id in published
                else None,
            )
            for row, files in candidates
        ]
        counts = {"ok": 0, "rejected": 0, "failed": 0}
        n_workers = workers or a.workers or os.cpu_count() or 1
        # As in `pack`: local workers leave the fsync of the cube to this process, which
        # records a patch once its cube is on disk.
        sync = dask is not None
        results = run_pool(
            partial(align_location, config, work, sync=sync),
            tasks,
            n_workers,
            "align",
            counts,
            progress,
            processes=n_workers > 1,
            dask=dask,
        )
        with DeferredSync[AlignResult]() as durable:
            for result in results:
                cube = [work.path(result.path)] if result.path and not sync else []
                _record_align(manifest, durable.add(result, cube), counts)
            _record_align(manifest, durable.drain(), counts)
        summary = AlignSummary(planned=len(tasks), **counts)
        manifest.finish_run(run_id, summary.__dict__)
        return summary


def _redo_damaged_cubes(manifest: Manifest, work: WorkDir, verify: bool) -> None:
    """Finished patches whose cube is missing (or, with ``verify``, fails its sha256) are
    aligned again from the raw files; cubes pack dropped are not missing (pack aligns them
    again when it needs them)."""
    dropped = manifest.dropped("cube")
    damaged = [
        sample_id
        for sample_id, _, _, path, sha256 in manifest.packable()
        if sample_id not in dropped and not intact(work.path(path), sha256 if verify else None)
    ]
    if damaged:
        warn_damaged_cubes(damaged)
        mark_for_realign(manifest, damaged, "cube missing or damaged")


def warn_damaged_cubes(sample_ids: list[str]) -> None:
    log.warning(
        "%d aligned cube(s) missing or damaged (first %s); aligning them again",
        len(sample_ids),
        sample_ids[0],
    )


def mark_for_realign(manifest: Manifest, sample_ids: list[str], reason: str) -> None:
    with manifest.transaction() as db:
        manifest.redo_patches(db, sample_ids, reason)


def _record_align(manifest: Manifest, results: list[AlignResult], counts: dict[str, int]) -> None:
    for result in results:
        _record_patch(manifest, result)
        counts[result.status] += 1


def _record_patch(manifest: Manifest, result: AlignResult) -> None:
    with manifest.transaction() as db:
        manifest.record_patch(
            db,
            result.sample_id,
            result.status,
            result.reason,
            result.epsg,
            result.nan_fraction_max,
            result.path,
            result.checksum,
        )
        if result.damaged:
            # Only the damaged files are fetched again by the next `download` run.
            reason = result.reason or "damaged raw file"
            manifest.invalidate_files(db, result.sample_id, result.damaged, reason)
            log.warning("%s: %s; it will be downloaded again", result.sample_id, reason)
