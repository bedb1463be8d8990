"""Wiring: each stage's pure functions connected to the manifest. No pixel logic here.

One public function per CLI command; each takes a frozen :class:`Config`, the work directory
and the command's options, and returns a small summary the CLI prints.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from . import modalities as registry
from . import pack
from .align import footprint_grid
from .align_worker import AlignResult, AlignTask, align_location
from .cities import load_cities
from .config import Config, fingerprint, section_dict
from .download import DownloadTask, download_on_worker, worker_state
from .errors import (
    ConfigChangedError,
    IncompleteError,
    InputError,
    ManifestError,
    StorageError,
    UserError,
)
from .executor import DaskExecutor, run_pool
from .files import SCRATCH, clear_scratch, file_sha256, intact, scratch_dir, write_atomic
from .manifest import LocationRow, Manifest, settled_cut
from .reference_index import read_reference_index
from .sampling import SaturationError, sample_locations
from .sources import requests_per_location
from .sources.base import ClusterQuota
from .workdir import WorkDir, owned

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
    with owned(work_dir), Manifest.open(work_dir) as manifest:
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
    with owned(work_dir), Manifest.open(work_dir) as manifest:
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
            manifest.insert_footprints(
                db, ((loc.sample_id, loc.footprint) for loc in indexed if loc.footprint)
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
    "requests_per_s", "compress", "seasons_per_request",
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
        for result in run_pool(fetch, tasks, d.workers, "download", counts, progress, dask=dask):
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
        results = run_pool(
            partial(align_location, config, work),
            tasks,
            n_workers,
            "align",
            counts,
            progress,
            processes=n_workers > 1,
            dask=dask,
        )
        for result in results:
            _record_align(manifest, result)
            counts[result.status] += 1
        summary = AlignSummary(planned=len(tasks), **counts)
        manifest.finish_run(run_id, summary.__dict__)
        return summary


def _redo_damaged_cubes(manifest: Manifest, work: WorkDir, verify: bool) -> None:
    """Finished patches whose cube is missing (or, with ``verify``, fails its sha256) are
    aligned again from the raw files."""
    damaged = [
        sample_id
        for sample_id, _, _, path, sha256 in manifest.packable()
        if not intact(work.path(path), sha256 if verify else None)
    ]
    if damaged:
        _mark_for_realign(manifest, damaged)


def _mark_for_realign(manifest: Manifest, sample_ids: list[str]) -> None:
    log.warning(
        "%d aligned cube(s) missing or damaged (first %s); aligning them again",
        len(sample_ids),
        sample_ids[0],
    )
    with manifest.transaction() as db:
        manifest.redo_patches(db, sample_ids, "cube missing or damaged")


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
            result.sha256,
        )
        if result.damaged:
            # Only the damaged files are fetched again by the next `download` run.
            reason = result.reason or "damaged raw file"
            manifest.invalidate_files(db, result.sample_id, result.damaged, reason)
            log.warning("%s: %s; it will be downloaded again", result.sample_id, reason)


@dataclass(frozen=True)
class PackSummary:
    out_dir: str
    shards_written: int
    shards_kept: int
    samples: dict[str, int]
    left_out: dict[str, int]


def pack_settings(config: Config) -> dict[str, Any]:
    return {k: v for k, v in section_dict(config.pack).items() if k != "workers"}


OWNER_FILE = ".ssl4eo-build.json"  # in a dataset directory: which build wrote it


def run_pack(
    config: Config,
    work_dir: Path,
    out: Path | None = None,
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
    dask: DaskExecutor | None = None,
    sample_ids: Collection[str] | None = None,
) -> PackSummary:
    """Shuffle, split and write the v1.1 shards, split lists, metadata parquet, stats and
    ``checksums.sha256`` (of ``sample_ids`` when given, else of every aligned location).

    A shard whose files are missing or no longer match their recorded sha256 is written again;
    a cube that is missing or damaged is aligned again first (its raw files fetched again only
    if they are damaged too)."""
    p = config.pack
    work = WorkDir.at(work_dir)
    out_dir = Path(os.path.abspath(out if out is not None else work.root / "dataset"))
    with owned(work_dir), Manifest.open(work_dir, create=False) as manifest:
        _claim_output(out_dir, manifest.build_id, force)
        clear_scratch(out_dir)  # what a killed pack left half-written
        clear_scratch(out_dir / WEBDATASET_DIR)
        rows = manifest.packable()
        if sample_ids is None:
            sample_ids = _run_selection(config, manifest)
        if sample_ids is not None:
            wanted = set(sample_ids)
            rows = [r for r in rows if r[0] in wanted]
            if len(rows) != len(wanted):
                raise ManifestError(
                    f"{manifest.path}: {len(wanted) - len(rows)} location(s) to pack have no "
                    "aligned patch; run `ssl4eo-build align` first."
                )
        splits = pack.spatial_split(
            [pack.Located(r[0], r[1], r[2]) for r in rows],
            p.val_fraction,
            p.split_block_deg,
            p.seed,
        )
        plans, left = pack.plan_shards(splits, p.shard_size, p.keep_partial)
        settings = pack_settings(config)
        plan_key = fingerprint([settings, [[s.split, s.number, list(s.sample_ids)] for s in plans]])
        # The manifest tracks the output directory packed last: another --out starts afresh
        # (the earlier output stays on disk, untracked); the same one with another plan is
        # refused unless --force.
        out_key = _portable(out_dir, work.root)
        same_out = manifest.get_meta("pack.out") == out_key
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
        manifest.set_meta("pack.out", out_key)
        manifest.set_meta("pack.plan", plan_key)
        run_id = manifest.begin_run("pack", {**settings, "out": out_key})
        # The shards say "date_rule = v1_shift" when every sample's dates come from that rule.
        packed_ids = {sid for plan in plans for sid in plan.sample_ids}
        v1_dates = config.download.date_rule == "v1_shift" and not (
            packed_ids & manifest.imported_ids()
        )
        written = kept = 0
        for layout in _layouts(config, out_dir, plans, splits, "v1_shift" if v1_dates else None):
            recorded = manifest.shard_files()
            done = manifest.packed_shards(layout.name)
            todo = [
                s
                for s in layout.plans
                if (s.split, s.number) not in done
                or not all(
                    intact(out_dir / rel, recorded.get(rel, ""))
                    for rel in layout.files(s.split, s.number)
                )
            ]
            kept += len(layout.plans) - len(todo)
            written += _write_shards(config, manifest, work, layout, todo, workers, dask, progress)
            # Each layout's root is complete on its own: split lists, metadata and stats of
            # its own files and values, and checksums of everything in it.
            sums = write_pack_sidecars(
                layout.root, manifest.packed_shards(layout.name), layout.plans, layout.file_name
            )
            recorded = manifest.shard_files()
            for plan in layout.plans:
                for rel in layout.files(plan.split, plan.number):
                    sums[rel[len(layout.prefix) :]] = recorded[rel]
            write_checksums(layout.root, sums)
            clear_scratch(layout.root)
        summary = PackSummary(
            out_dir=str(out_dir),
            shards_written=written,
            shards_kept=kept,
            samples={s: sum(len(x.sample_ids) for x in plans if x.split == s) for s in pack.SPLITS},
            left_out={s: len(ids) for s, ids in left.items()},
        )
        manifest.finish_run(run_id, summary.__dict__)
        return summary


def _write_shards(
    config: Config,
    manifest: Manifest,
    work: WorkDir,
    layout: Layout,
    todo: list[pack.ShardPlan],
    workers: int | None,
    dask: DaskExecutor | None,
    progress: bool,
) -> int:
    """Write ``todo`` and record each shard; shards with a missing or damaged cube are
    written again once those cubes are aligned again. Returns the number written."""
    n_workers = workers or config.pack.workers or os.cpu_count() or 1
    written = 0
    for attempt in range(2):
        cubes = {r[0]: (str(work.path(r[3])), r[4]) for r in manifest.packable()}
        counts = {"written": 0}
        retry: list[pack.ShardPlan] = []
        damaged: set[str] = set()
        for result in run_pool(
            partial(layout.writer, layout.root, cubes, layout.encoding),
            todo,
            n_workers,
            f"pack {layout.name}",
            counts,
            progress,
            processes=n_workers > 1,
            dask=dask,
        ):
            if result.damaged:
                key = (result.split, result.number)
                retry.append(next(s for s in todo if (s.split, s.number) == key))
                damaged.update(result.damaged)
                continue
            with manifest.transaction() as db:
                manifest.record_shard(
                    db,
                    layout.name,
                    result.split,
                    result.number,
                    [str(m["sample_id"]) for m in result.metadata[::4]],
                    [(layout.prefix + rel, m, n, sha) for rel, m, n, sha in result.files],
                    json.dumps([{**m, "geometry": m["geometry"].hex()} for m in result.metadata]),
                    json.dumps(result.stats),
                )
            counts["written"] += 1
            written += 1
        if not damaged:
            return written
        if attempt == 0:
            _repair_cubes(config, manifest, work, sorted(damaged), progress)
        todo = retry
    raise IncompleteError(
        f"{manifest.path}: the aligned cubes of {len(damaged)} location(s) could not be "
        f"rebuilt (first: {min(damaged)}); see `ssl4eo-build status` for their reasons, then "
        "run `ssl4eo-build download` and `pack` again."
    )


WEBDATASET_DIR = "webdataset"  # with --format both, the tar layout's own root inside OUT


@dataclass(frozen=True)
class Layout:
    """One published layout being written: its files, root, encoding and writer."""

    name: str  # zarr | webdataset
    root: Path
    prefix: str  # the root relative to the output directory ("" or "webdataset/")
    plans: list[pack.ShardPlan]
    encoding: pack.Encoding
    writer: Callable[..., pack.ShardResult]
    file_name: Callable[[str, int], str]

    def files(self, split: str, number: int) -> list[str]:
        """The shard's files, relative to the output directory."""
        name = self.file_name(split, number)
        return [f"{self.prefix}{split}/{m}/{name}" for m in registry.names()]


def _layouts(
    config: Config,
    out_dir: Path,
    plans: list[pack.ShardPlan],
    splits: dict[str, list[str]],
    date_rule: str | None,
) -> list[Layout]:
    """The layouts ``pack.format`` asks for. With ``both``, OUT holds the Zarr layout as
    published and OUT/webdataset the tar layout."""
    p = config.pack
    compressor = {m: (p.blosc_cname, p.blosc_clevel) for m in registry.names()}
    out: list[Layout] = []
    if p.format in ("zarr", "both"):
        encoding = pack.Encoding(compressor, p.s2_offset_zarr, date_rule)
        out.append(Layout("zarr", out_dir, "", plans, encoding, pack.write_shard, pack.shard_name))
    if p.format in ("webdataset", "both"):
        prefix = f"{WEBDATASET_DIR}/" if p.format == "both" else ""
        tars = pack.plan_tars(splits, p.samples_per_tar)
        encoding = pack.Encoding(compressor, p.s2_offset_webdataset, date_rule)
        out.append(
            Layout(
                "webdataset", out_dir / prefix, prefix, tars, encoding, pack.write_tar, _tar_name
            )
        )
    return out


def _repair_cubes(
    config: Config, manifest: Manifest, work: WorkDir, sample_ids: list[str], progress: bool
) -> None:
    """Align the locations again from their raw files; fetch again only raw files that turn
    out damaged too."""
    _mark_for_realign(manifest, sample_ids)
    run_align(config, work.root, progress=progress, only=sample_ids)
    run_download(config, work.root, progress=progress, only=sample_ids)
    run_align(config, work.root, progress=progress, only=sample_ids)


def _run_selection(config: Config, manifest: Manifest) -> tuple[str, ...] | None:
    """After `run --target N`, `pack` alone packs the same N locations (the run's settled
    cut); without a run, every aligned location."""
    target = manifest.get_meta("run.target")
    if target is None:
        return None
    outcomes = manifest.outcomes(config.download.max_runs, config.align.max_runs)
    cut = settled_cut(outcomes, int(target))
    if cut is None:
        raise IncompleteError(
            f"{manifest.path}: `run --target {target}` has not settled its first {target} "
            "accepted locations (some before the cut are still open); run it again before "
            "packing."
        )
    return cut


def _claim_output(out_dir: Path, build_id: str, force: bool) -> None:
    """Refuse to write into a non-empty directory that another build (or something else)
    wrote, unless ``force``; mark the directory as this build's."""
    if out_dir.exists() and not out_dir.is_dir():
        raise StorageError(f"--out {out_dir}: is a file, expected a dataset directory.")
    marker = out_dir / OWNER_FILE
    try:
        owner = json.loads(marker.read_text()).get("build_id") if marker.exists() else None
    except (OSError, ValueError, AttributeError):
        owner = None
    others = out_dir.exists() and any(
        e.name not in (OWNER_FILE, SCRATCH) for e in out_dir.iterdir()
    )
    if others and owner != build_id and not force:
        whose = "another build" if owner else "something other than this build"
        raise StorageError(
            f"--out {out_dir}: the directory is not empty and was written by {whose}. Choose "
            "an empty or new --out, or pass --force to write this build's dataset into it "
            "(files of the same names are replaced)."
        )
    if owner != build_id:
        write_atomic(
            marker, json.dumps({"build_id": build_id}).encode() + b"\n", scratch_dir(out_dir)
        )


def _portable(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (moves with it), else absolute."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def write_checksums(out_dir: Path, sums: dict[str, str]) -> None:
    """``checksums.sha256`` in the ``sha256sum`` format (``sha256sum -c`` checks it)."""
    lines = "".join(f"{sha}  {rel}\n" for rel, sha in sorted(sums.items()))
    write_atomic(out_dir / pack.CHECKSUMS, lines.encode(), scratch_dir(out_dir))


def _tar_name(split: str, number: int) -> str:
    return pack.tar_name(number)


def write_pack_sidecars(
    out_dir: Path,
    packed: dict[tuple[str, int], tuple[list[str], str, str]],
    plans: list[pack.ShardPlan],
    file_name: Callable[[str, int], str],
) -> dict[str, str]:
    """``splits/ssl4eos12_{split}.txt``, ``splits/{split}_metadata.parquet``, ``stats.json``;
    returns their sha256 by path relative to ``out_dir``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sums: dict[str, str] = {}
    scratch = scratch_dir(out_dir)

    def write(rel: str, data: bytes) -> None:
        sums[rel] = write_atomic(out_dir / rel, data, scratch)

    splits_dir = out_dir / "splits"
    splits_dir.mkdir(parents=True, exist_ok=True)
    train_stats: dict[str, list[dict[str, list[float]]]] = {}
    for split in pack.SPLITS:
        numbers = sorted(s.number for s in plans if s.split == split)
        names = [file_name(split, n) for n in numbers]
        write(f"splits/ssl4eos12_{split}.txt", "".join(f"{n}\n" for n in names).encode())
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
        geo = pack.geoparquet_metadata([bytes.fromhex(r["geometry"]) for r in rows])
        table = table.replace_schema_metadata(
            {b"geo": json.dumps(geo).encode(), b"pandas": json.dumps(pandas_meta).encode()}
        )
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        write(f"splits/{split}_metadata.parquet", buffer.getvalue().to_pybytes())
        if split == "train":
            for n in numbers:
                for modality, part in json.loads(packed[split, n][2]).items():
                    train_stats.setdefault(modality, []).append(part)
    stats = {}
    for modality in registry.names():
        mean, std = pack.RunningStats.merged(train_stats.get(modality, [])).mean_std()
        stats[modality] = {
            "mean": mean,
            "std": std,
            "bands": list(registry.modality(modality).bands),
        }
    write("stats.json", (json.dumps(stats, indent=2) + "\n").encode())
    return sums


def status(work_dir: Path) -> dict[str, Any]:
    with Manifest.open_readonly(work_dir) as manifest:
        return manifest.status_report()
