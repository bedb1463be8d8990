"""Wiring: each stage's pure functions connected to the manifest. No pixel logic here.

One public function per CLI command; each takes a frozen :class:`Config`, the work directory
and the command's options, and returns a small summary the CLI prints.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from . import pack
from .align_worker import AlignResult, AlignTask, align_location
from .cities import load_cities
from .config import Config, fingerprint, section_dict
from .cube import MODALITIES
from .download import DownloadResult, DownloadTask, download_location, download_on_worker
from .errors import ConfigChangedError, InputError, UserError
from .executor import DaskExecutor, run_pool
from .files import atomic_target, commit_file, file_sha256
from .manifest import Manifest
from .reference_index import read_reference_index
from .sampling import SaturationError, sample_locations
from .sources import (
    Limiter,
    RetryPolicy,
    make_source,
    requests_per_location,
    seconds_at_quota,
)

log = logging.getLogger(__name__)

# Sample settings that do not change which locations a given candidate stream accepts.
_SAMPLE_VOLATILE = ("n", "max_candidates_per_location")


@dataclass(frozen=True)
class SampleSummary:
    existing: int
    added: int
    total: int
    candidates_drawn: int
    overlap_rejections: int
    imported_from: str | None = None


def sample_settings(config: Config) -> dict[str, Any]:
    settings = {k: v for k, v in section_dict(config.sample).items() if k not in _SAMPLE_VOLATILE}
    settings.pop("cities")
    settings["cities_sha256"] = file_sha256(config.sample.cities)
    return settings


def run_sample(
    config: Config, work_dir: Path, n: int | None = None, force: bool = False
) -> SampleSummary:
    """Top the manifest up to ``n`` locations (default: ``sample.n``), resuming the stream."""
    target = config.sample.n if n is None else n
    cities = load_cities(config.sample.cities)
    with Manifest.open(work_dir) as manifest:
        existing = manifest.locations()
        settings = sample_settings(config)
        manifest.check_stage_config("sample", settings, has_results=bool(existing), force=force)
        run_id = manifest.begin_run("sample", {**settings, "n": target})
        start = int(manifest.get_meta("sample.next_candidate") or 0)
        overlaps_before = int(manifest.get_meta("sample.overlap_rejections") or 0)
        next_number = manifest.next_sample_number()
        added, overlaps, drawn = 0, 0, start
        wanted = max(0, target - len(existing))
        try:
            for progress in sample_locations(
                cities, config.sample, (r.position for r in existing), wanted, start
            ):
                rows = [
                    (
                        f"{next_number + added + i:07d}",
                        a.position.lon,
                        a.position.lat,
                        cities.label(a.city),
                        "sample",
                        a.candidate,
                    )
                    for i, a in enumerate(progress.accepted)
                ]
                overlaps += progress.overlaps
                drawn = progress.next_candidate
                # Locations and the resume counter commit together: a kill between blocks
                # resumes exactly where the stream stopped.
                with manifest.transaction() as db:
                    manifest.insert_locations(db, rows)
                    manifest.set_meta("sample.next_candidate", str(drawn), db)
                    manifest.set_meta(
                        "sample.overlap_rejections", str(overlaps_before + overlaps), db
                    )
                added += len(rows)
        except SaturationError as exc:
            raise UserError(
                f"{config.sample.cities}: {exc}. Lower --n, add cities, or reduce "
                "sample.overlap_fraction."
            ) from None
        summary = SampleSummary(
            existing=len(existing),
            added=added,
            total=len(existing) + added,
            candidates_drawn=drawn - start,
            overlap_rejections=overlaps,
        )
        manifest.finish_run(run_id, summary.__dict__)
        return summary


def import_index(config: Config, work_dir: Path, index_path: Path) -> SampleSummary:
    """``sample --from-index``: add the index's locations and reference times as given."""
    indexed = read_reference_index(index_path)
    with Manifest.open(work_dir) as manifest:
        known = manifest.sample_ids()
        clashes = [loc.sample_id for loc in indexed if loc.sample_id in known]
        if clashes:
            raise InputError(
                f"{index_path}: {len(clashes)} sample_id(s) already in {manifest.path} "
                f"(first: {clashes[0]}); import into a new --work-dir or remove them from "
                "the index."
            )
        run_id = manifest.begin_run("sample", {"from_index": str(index_path)})
        with manifest.transaction() as db:
            manifest.insert_locations(
                db,
                (
                    (loc.sample_id, loc.position.lon, loc.position.lat, None, "index", None)
                    for loc in indexed
                ),
            )
            manifest.insert_reference_times(
                db,
                (
                    (loc.sample_id, season, ref.time, ref.tile_id, ref.tile_crs)
                    for loc in indexed
                    for season, ref in sorted(loc.seasons.items())
                ),
            )
        summary = SampleSummary(
            existing=len(known),
            added=len(indexed),
            total=len(known) + len(indexed),
            candidates_drawn=0,
            overlap_rejections=0,
            imported_from=str(index_path),
        )
        manifest.finish_run(run_id, summary.__dict__)
        return summary


# Download settings that do not change which scenes are chosen or what the files hold.
_DOWNLOAD_VOLATILE = (
    "workers", "max_attempts", "retry_base_s", "retry_max_s", "max_runs", "max_in_flight",
    "requests_per_s", "compress",
)  # fmt: skip


def download_settings(config: Config) -> dict[str, Any]:
    settings = {
        k: v for k, v in section_dict(config.download).items() if k not in _DOWNLOAD_VOLATILE
    }
    settings["patch_px"] = config.sample.patch_px
    settings["pixel_m"] = config.sample.pixel_m
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
    seconds_at_quota: float = 0.0


def _tasks(manifest: Manifest, rows: list[Any]) -> list[DownloadTask]:
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
) -> DownloadSummary:
    """Find and fetch scenes for every sampled location without a finished download."""
    d = config.download
    with Manifest.open(work_dir, create=False) as manifest:
        rows = manifest.download_candidates(d.max_runs)[: limit if limit is not None else None]
        if dry_run:  # no source: a dry run needs neither network nor credentials
            requests = requests_per_location(config) * len(rows)
            return DownloadSummary(
                planned=len(rows),
                dry_run=True,
                requests_planned=requests,
                seconds_at_quota=seconds_at_quota(config, requests),
            )
        settings = download_settings(config)
        has_results = manifest.count("downloads") > 0
        manifest.check_stage_config("download", settings, has_results, force)
        tasks = _tasks(manifest, rows)
        # Local runs share one source; Dask workers each initialise their own.
        source = make_source(config) if tasks and not dask else None
        run_id = manifest.begin_run("download", settings)
        raw_dir = Path(work_dir) / "raw"
        limiter = Limiter(d.max_in_flight, d.requests_per_s)
        policy = RetryPolicy(d.max_attempts, d.retry_base_s, d.retry_max_s)
        counts = {"ok": 0, "rejected": 0, "failed": 0}
        requests = 0

        def work(task: DownloadTask) -> DownloadResult:
            assert source is not None
            return download_location(source, config, task, raw_dir, limiter, policy)

        remote = partial(download_on_worker, config, raw_dir)
        for result in run_pool(
            remote if dask else work, tasks, d.workers, "download", counts, progress, dask=dask
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
                            r.scene.epsg,
                            r.gap_days,
                            r.path,
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
    settings["lattice_m"] = config.download.lattice_m
    return settings


def run_align(
    config: Config,
    work_dir: Path,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
    dask: DaskExecutor | None = None,
) -> AlignSummary:
    """Align every downloaded location without a finished patch (processes, one per core)."""
    a = config.align
    with Manifest.open(work_dir, create=False) as manifest:
        settings = align_settings(config)
        manifest.check_stage_config("align", settings, manifest.count("patches") > 0, force)
        candidates = manifest.align_candidates(a.max_runs)[: limit if limit is not None else None]
        run_id = manifest.begin_run("align", settings)
        tasks = [AlignTask(row.sample_id, row.position, files) for row, files in candidates]
        counts = {"ok": 0, "rejected": 0, "failed": 0}
        n_workers = workers or a.workers or os.cpu_count() or 1
        work = partial(align_location, config, Path(work_dir) / "aligned")
        results = run_pool(
            work, tasks, n_workers, "align", counts, progress, processes=n_workers > 1
        )
        for result in results:
            _record_align(manifest, result)
            counts[result.status] += 1
        summary = AlignSummary(planned=len(tasks), **counts)
        manifest.finish_run(run_id, summary.__dict__)
        return summary


def _record_align(manifest: Manifest, result: AlignResult) -> None:
    with manifest.transaction() as db:
        manifest.record_patch(
            db,
            result.sample_id,
            result.status,
            result.reason,
            result.epsg,
            result.nan_fraction_max,
            result.path,
        )
        if result.damaged_raw:
            # Re-download on the next `download` run; align retries after that.
            manifest.invalidate_download(db, result.sample_id, result.reason or "damaged raw file")
            db.execute("DELETE FROM patches WHERE sample_id=?", (result.sample_id,))
            log.warning("%s: %s; it will be downloaded again", result.sample_id, result.reason)


@dataclass(frozen=True)
class PackSummary:
    out_dir: str
    shards_written: int
    shards_kept: int
    samples: dict[str, int]
    left_out: dict[str, int]


def pack_settings(config: Config) -> dict[str, Any]:
    return {k: v for k, v in section_dict(config.pack).items() if k != "workers"}


def run_pack(
    config: Config,
    work_dir: Path,
    out: Path | None = None,
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
    dask: DaskExecutor | None = None,
    max_samples: int | None = None,
) -> PackSummary:
    """Shuffle, split and write the v1.1 shards, split lists, metadata parquet and stats."""
    p = config.pack
    out_dir = Path(out) if out is not None else Path(work_dir) / "dataset"
    with Manifest.open(work_dir, create=False) as manifest:
        rows = manifest.packable()[:max_samples]  # by sample id: the first N finished locations
        cube_paths = {r[0]: r[3] for r in rows}
        splits = pack.spatial_split(
            [pack.Located(r[0], r[1], r[2]) for r in rows],
            p.val_fraction,
            p.split_block_deg,
            p.seed,
        )
        plans, left = pack.plan_shards(splits, p.shard_size, p.keep_partial)
        settings = {**pack_settings(config), "out": str(out_dir.resolve())}
        plan_key = fingerprint([settings, [[s.split, s.number, list(s.sample_ids)] for s in plans]])
        # The manifest tracks the output directory packed last: another --out starts afresh
        # (the earlier output stays on disk, untracked); the same one with another plan is
        # refused unless --force.
        same_out = manifest.get_meta("pack.out") == str(out_dir.resolve())
        previous = manifest.get_meta("pack.plan")
        changed = previous is not None and previous != plan_key and manifest.count("shards") > 0
        if same_out and changed and not force:
            raise ConfigChangedError(
                f"{manifest.path}: the shards in {out_dir} were packed from other inputs or "
                "settings (more aligned locations, another seed, shard size, split or format). "
                "Pack into a new --out, or pass --force to rewrite every shard."
            )
        if not same_out or changed:
            with manifest.transaction() as db:
                manifest.forget_pack(db)
        manifest.set_meta("pack.out", str(out_dir.resolve()))
        manifest.set_meta("pack.plan", plan_key)
        run_id = manifest.begin_run("pack", settings)
        compressor = {m: (p.blosc_cname, p.blosc_clevel) for m in MODALITIES}
        n_workers = workers or p.workers or os.cpu_count() or 1
        layouts: list[tuple[str, list[pack.ShardPlan], Any, Any]] = []
        if p.format in ("zarr", "both"):
            layouts.append(("zarr", plans, pack.write_shard, pack.shard_relpath))
        if p.format in ("webdataset", "both"):
            tars = pack.plan_tars(splits, p.samples_per_tar)
            layouts.append(("webdataset", tars, pack.write_tar, _tar_relpath))
        written = kept = 0
        for layout, layout_plans, writer, relpath in layouts:
            done = manifest.packed_shards(layout)
            todo = [
                s
                for s in layout_plans
                if (s.split, s.number) not in done
                or not all((out_dir / relpath(s.split, m, s.number)).exists() for m in MODALITIES)
            ]
            work = partial(writer, out_dir, cube_paths, compressor)
            counts = {"written": 0}
            for result in run_pool(
                work,
                todo,
                n_workers,
                f"pack {layout}",
                counts,
                progress,
                processes=n_workers > 1,
                dask=dask,
            ):
                with manifest.transaction() as db:
                    manifest.record_shard(
                        db,
                        layout,
                        result.split,
                        result.number,
                        [str(m["sample_id"]) for m in result.metadata[::4]],
                        result.files,
                        json.dumps(
                            [{**m, "geometry": m["geometry"].hex()} for m in result.metadata]
                        ),
                        json.dumps(result.stats),
                    )
                counts["written"] += 1
            written += len(todo)
            kept += len(layout_plans) - len(todo)
        # Split lists, metadata and stats describe the Zarr shards (the v1.1 layout) when they
        # are written, the tars otherwise.
        layout, layout_plans, _, _ = layouts[0]
        names = pack.shard_name if layout == "zarr" else _tar_name
        write_pack_sidecars(out_dir, manifest.packed_shards(layout), layout_plans, names)
        summary = PackSummary(
            out_dir=str(out_dir),
            shards_written=written,
            shards_kept=kept,
            samples={s: sum(len(x.sample_ids) for x in plans if x.split == s) for s in pack.SPLITS},
            left_out={s: len(ids) for s, ids in left.items()},
        )
        manifest.finish_run(run_id, summary.__dict__)
        return summary


def _tar_relpath(split: str, modality: str, number: int) -> str:
    return f"{split}/{modality}/{pack.tar_name(number)}"


def _tar_name(split: str, number: int) -> str:
    return pack.tar_name(number)


def write_pack_sidecars(
    out_dir: Path,
    packed: dict[tuple[str, int], tuple[list[str], str, str]],
    plans: list[pack.ShardPlan],
    file_name: Callable[[str, int], str],
) -> None:
    """``splits/ssl4eos12_{split}.txt``, ``splits/{split}_metadata.parquet``, ``stats.json``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    splits_dir = out_dir / "splits"
    splits_dir.mkdir(parents=True, exist_ok=True)
    geo = {
        "version": "1.0.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"]}},
    }
    train_stats: dict[str, list[dict[str, list[float]]]] = {}
    for split in pack.SPLITS:
        numbers = sorted(s.number for s in plans if s.split == split)
        names = [file_name(split, n) for n in numbers]
        _write_text(splits_dir / f"ssl4eos12_{split}.txt", "".join(f"{n}\n" for n in names))
        rows = [row for n in numbers for row in json.loads(packed[split, n][1])]
        table = pa.table(
            {
                "sample_id": pa.array([r["sample_id"] for r in rows], pa.string()),
                "time_id": pa.array([r["time_id"] for r in rows], pa.int64()),
                "time": pa.array(
                    [datetime.fromisoformat(r["time"]) for r in rows], pa.timestamp("ns")
                ),
                "tile_id": pa.array([r["tile_id"] for r in rows], pa.string()),
                "geometry": pa.array([bytes.fromhex(r["geometry"]) for r in rows], pa.binary()),
                "tile_crs": pa.array([r["tile_crs"] for r in rows], pa.int64()),
                "file": pa.array([r["file"] for r in rows], pa.string()),
                "idx": pa.array([r["idx"] for r in rows], pa.string()),
            }
        )
        pandas_meta = {
            "index_columns": ["idx"],
            "column_indexes": [],
            "columns": [
                {"name": c, "field_name": c, "pandas_type": "unicode" if c == "idx" else "object",
                 "numpy_type": "object", "metadata": None}
                for c in table.column_names
            ],
        }  # fmt: skip
        table = table.replace_schema_metadata(
            {b"geo": json.dumps(geo).encode(), b"pandas": json.dumps(pandas_meta).encode()}
        )
        target = atomic_target(splits_dir / f"{split}_metadata.parquet")
        pq.write_table(table, target)
        commit_file(target, splits_dir / f"{split}_metadata.parquet")
        if split == "train":
            for n in numbers:
                for modality, part in json.loads(packed[split, n][2]).items():
                    train_stats.setdefault(modality, []).append(part)
    stats = {}
    for modality in MODALITIES:
        mean, std = pack.RunningStats.merged(train_stats.get(modality, [])).mean_std()
        stats[modality] = {"mean": mean, "std": std}
    _write_text(out_dir / "stats.json", json.dumps(stats, indent=2) + "\n")


def _write_text(path: Path, text: str) -> None:
    target = atomic_target(path)
    target.write_text(text)
    commit_file(target, path)


def status(work_dir: Path) -> dict[str, Any]:
    with Manifest.open(work_dir, create=False) as manifest:
        return manifest.status_report()
