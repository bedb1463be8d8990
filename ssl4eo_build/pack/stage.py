"""Stage `pack`, wiring: aligned cubes into shards of each layout, sidecars and checksums."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .. import modalities as registry
from ..align.stage import mark_for_realign, run_align, warn_damaged_cubes
from ..config import Config, PackConfig, fingerprint, section_dict
from ..download.stage import run_download
from ..errors import (
    ConfigChangedError,
    ConfigError,
    IncompleteError,
    ManifestError,
    StorageError,
)
from ..executor import DaskExecutor, run_pool
from ..files import SCRATCH, DeferredSync, clear_scratch, intact, scratch_dir, write_atomic
from ..manifest import Manifest, settings_diff, settled_cut, utc_now
from ..workdir import WorkDir, owned
from . import core as pack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackSummary:
    out_dir: str
    shards_written: int
    shards_kept: int
    samples: dict[str, int]
    left_out: dict[str, int]


def pack_settings(config: Config) -> dict[str, Any]:
    return {
        k: v for k, v in section_dict(config.pack).items() if k not in ("workers", "keep_cubes")
    }


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
    compressors(p)  # a bad setting stops the pack before anything is recorded
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
            before = manifest.last_run_settings("pack") or {}
            before.pop("out", None)
            detail = settings_diff(before, settings, prefix="pack.")
            why = f"with other settings ({detail})" if detail else "from other inputs"
            raise ConfigChangedError(
                f"{manifest.path}: the shards in {out_dir} were packed {why}"
                + ("" if detail else " (more or other aligned locations)")
                + ". Pack into a new --out, or pass --force to rewrite every shard."
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
        origin = provenance(config, manifest)
        date_rule = "v1_shift" if v1_dates else None
        layouts = _layouts(config, out_dir, plans, splits, date_rule, origin)
        recorded = manifest.shard_files()
        todo: list[tuple[Layout, list[pack.ShardPlan]]] = []
        for layout in layouts:
            done = manifest.packed_shards(layout.name)
            todo.append((layout, [
                s
                for s in layout.plans
                if (s.split, s.number) not in done
                or not all(
                    intact(out_dir / rel, recorded.get(rel, ""))
                    for rel in layout.files(s.split, s.number)
                )
            ]))  # fmt: skip
        kept = sum(len(layout.plans) - len(plans) for layout, plans in todo)
        written = _write_shards(config, manifest, work, todo, workers, dask, progress)
        recorded = manifest.shard_files()
        for layout in layouts:
            # Each layout's root is complete on its own: split lists, metadata and stats of
            # its own files and values, and checksums of everything in it.
            sums = write_pack_sidecars(
                layout.root, manifest.packed_shards(layout.name), layout.plans, layout.file_name
            )
            for plan in layout.plans:
                for rel in layout.files(plan.split, plan.number):
                    sums[rel[len(layout.prefix) :]] = recorded[rel]
            sums[BUILD_FILE] = write_build_json(config, manifest, layout, origin)
            write_checksums(layout.root, sums)
            clear_scratch(layout.root)
        if not p.keep_cubes:
            _drop_packed_cubes(manifest, work, layouts)
        summary = PackSummary(
            out_dir=str(out_dir),
            shards_written=written,
            shards_kept=kept,
            samples={s: sum(len(x.sample_ids) for x in plans if x.split == s) for s in pack.SPLITS},
            left_out={s: len(ids) for s, ids in left.items()},
        )
        manifest.finish_run(run_id, summary.__dict__)
        return summary


@dataclass(frozen=True)
class _PartJob:
    """One part for a pool worker: what it writes, where and how (nothing that grows with
    the build, so it pickles small)."""

    part: pack.PackPart
    zarr: pack.Output | None
    tars: pack.Output | None


def _write_part(job: _PartJob) -> list[tuple[str, pack.ShardResult]]:
    return pack.write_part(job.part, job.zarr, job.tars)


def _part_groups(
    todo: list[tuple[Layout, list[pack.ShardPlan]]],
) -> list[tuple[tuple[pack.ShardPlan, ...], pack.ShardPlan | None]]:
    """The files to write, grouped into parts: each tar with the Zarr shards that are runs of
    its samples (read once for both), then every other shard alone."""
    plans = {layout.name: plans for layout, plans in todo}
    tar_layout = next((layout for layout, _ in todo if layout.name == pack.WEBDATASET), None)
    starts = {(p.split, p.sample_ids[0]): p for p in plans.get(pack.ZARR, [])}
    to_tar = set(plans.get(pack.WEBDATASET, []))
    grouped: set[pack.ShardPlan] = set()
    groups: list[tuple[tuple[pack.ShardPlan, ...], pack.ShardPlan | None]] = []
    for tar in tar_layout.plans if tar_layout is not None else []:
        if tar not in to_tar:
            continue
        shards, at = [], 0
        while at < len(tar.sample_ids):
            shard = starts.get((tar.split, tar.sample_ids[at]))
            run = shard.sample_ids if shard is not None else ()
            if shard is not None and tar.sample_ids[at : at + len(run)] == run:
                shards.append(shard)
                at += len(run)
            else:
                at += 1
        grouped.update(shards)
        groups.append((tuple(shards), tar))
    groups += [((p,), None) for p in plans.get(pack.ZARR, []) if p not in grouped]
    return groups


def _by_size() -> list[str]:
    """The modalities, largest per sample first: a group's larger parts start first, so that
    the last ones to finish are small."""

    def size(name: str) -> int:
        m = registry.modality(name)
        return m.timestamps * (len(m.bands) * np.dtype(m.dtype).itemsize + m.cloud_mask)

    return sorted(registry.names(), key=size, reverse=True)


def _write_shards(
    config: Config,
    manifest: Manifest,
    work: WorkDir,
    todo: list[tuple[Layout, list[pack.ShardPlan]]],
    workers: int | None,
    dask: DaskExecutor | None,
    progress: bool,
) -> int:
    """Write ``todo`` (the shards of each layout, one pool for all of them) and record each
    shard; shards with a missing or damaged cube are written again once those cubes are
    aligned again. Returns the number written."""
    n_workers = workers or config.pack.workers or os.cpu_count() or 1
    needed = {i for _, plans in todo for plan in plans for i in plan.sample_ids}
    dropped = sorted(needed & manifest.dropped("cube"))
    if dropped:
        log.info(
            "aligning %d location(s) again from their raw files: an earlier pack dropped their "
            "cubes (pack.keep_cubes = false)",
            len(dropped),
        )
        _repair_cubes(config, manifest, work, dropped, progress, "cube dropped after packing")
    written = 0
    for attempt in range(2):
        count, damaged = _write_parts(manifest, work, todo, n_workers, dask, progress)
        written += count
        if not damaged:
            return written
        if attempt == 0:
            ids = sorted(set().union(*damaged.values()))
            warn_damaged_cubes(ids)
            _repair_cubes(config, manifest, work, ids, progress)
        todo = [
            (layout, [p for p in plans if (layout.name, p.split, p.number) in damaged])
            for layout, plans in todo
        ]
    lost = sorted(set().union(*damaged.values()))
    raise IncompleteError(
        f"{manifest.path}: the aligned cubes of {len(lost)} location(s) could not be "
        f"rebuilt (first: {lost[0]}); see `ssl4eo-build status` for their reasons, then "
        "run `ssl4eo-build download` and `pack` again."
    )


def _write_parts(
    manifest: Manifest,
    work: WorkDir,
    todo: list[tuple[Layout, list[pack.ShardPlan]]],
    n_workers: int,
    dask: DaskExecutor | None,
    progress: bool,
) -> tuple[int, dict[tuple[str, str, int], set[str]]]:
    """One pass over ``todo``: the number of shards written and recorded, and the cubes found
    damaged per shard (layout, split, number)."""
    # Local workers leave the fsync to this process, which overlaps it with their work in
    # its own threads and records a shard once its files are on disk (a shard not recorded
    # is written again on resume). Dask workers may not share this machine's page cache.
    sync = dask is not None
    layouts = {layout.name: layout for layout, _ in todo}
    cubes = {r[0]: (str(work.path(r[3])), r[4]) for r in manifest.packable()}
    outputs = {
        name: pack.Output(layout.root, layout.encoding, sync) for name, layout in layouts.items()
    }
    # Group after group, so that shards are recorded (and survive a crash) as the pack goes.
    zarr, tars, order = outputs.get(pack.ZARR), outputs.get(pack.WEBDATASET), _by_size()
    jobs = [
        _PartJob(pack.PackPart.of(m, cubes, shards, tar), zarr, tars)
        for shards, tar in _part_groups(todo)
        for m in order
    ]
    counts = {"written": 0}
    done: dict[tuple[str, str, int], list[pack.ShardResult]] = {}
    damaged: dict[tuple[str, str, int], set[str]] = {}

    def finish(name: str, result: pack.ShardResult) -> None:
        """A part on disk: its shard is recorded once every part of it is."""
        key = (name, result.split, result.number)
        done.setdefault(key, []).append(result)
        if len(done[key]) == len(registry.names()) and key not in damaged:
            _record_shard(manifest, layouts[name], done.pop(key))
            counts["written"] += 1

    with DeferredSync[tuple[str, pack.ShardResult]]() as durable:
        for results in run_pool(
            _write_part,
            jobs,
            n_workers,
            "pack",
            counts,
            progress,
            # A part holds one modality of a shard at a time: CPU-bound, in processes that
            # reuse their buffers from part to part.
            processes=n_workers > 1,
            dask=dask,
        ):
            for name, result in results:
                if result.damaged:
                    key = (name, result.split, result.number)
                    damaged.setdefault(key, set()).update(result.damaged)
                    continue
                files = [layouts[name].root / rel for rel, *_ in result.files]
                for item in [(name, result)] if sync else durable.add((name, result), files):
                    finish(*item)
        for item in durable.drain():
            finish(*item)
    return counts["written"], damaged


def _drop_packed_cubes(manifest: Manifest, work: WorkDir, layouts: list[Layout]) -> None:
    """Delete the aligned cubes of locations packed in every layout (pack aligns them again
    from the raw files if it needs them). Every shard is known good by now: this run either
    wrote it (hashed as its bytes were written, on disk before it was recorded) or read it back
    against its recorded sha256 before deciding to keep it."""
    in_all = set.intersection(
        *({i for plan in layout.plans for i in plan.sample_ids} for layout in layouts)
    )
    drop = sorted(in_all - manifest.dropped("cube"))
    if not drop:
        return
    cubes = {r[0]: r[3] for r in manifest.packable()}
    # Recorded first: a cube marked dropped but still on disk costs nothing, while a cube gone
    # but not marked would be taken for damage and aligned again.
    with manifest.transaction() as db:
        manifest.record_dropped(db, "cube", drop)
    for sample_id in drop:
        work.path(cubes[sample_id]).unlink(missing_ok=True)
    log.info("dropped the aligned cubes of %d packed location(s)", len(drop))


def _record_shard(manifest: Manifest, layout: Layout, parts: list[pack.ShardResult]) -> None:
    """A shard whose every modality file is written: its files, samples, metadata rows and
    band sums, in one transaction."""
    metadata = next(p.metadata for p in parts if p.metadata)
    files = [(layout.prefix + rel, m, n, sha) for p in parts for rel, m, n, sha in p.files]
    stats = {m: s for p in parts for m, s in p.stats.items()}
    with manifest.transaction() as db:
        manifest.record_shard(
            db,
            layout.name,
            parts[0].split,
            parts[0].number,
            [str(m["sample_id"]) for m in metadata[::4]],
            sorted(files, key=lambda f: registry.names().index(f[1])),
            json.dumps([{**m, "geometry": m["geometry"].hex()} for m in metadata]),
            json.dumps(stats),
        )


WEBDATASET_DIR = "webdataset"  # with --format both, the tar layout's own root inside OUT


@dataclass(frozen=True)
class Layout:
    """One published layout being written: its files, root and encoding."""

    name: str  # zarr | webdataset
    root: Path
    prefix: str  # the root relative to the output directory ("" or "webdataset/")
    plans: list[pack.ShardPlan]
    encoding: pack.Encoding
    file_name: Callable[[str, int], str]

    def files(self, split: str, number: int) -> list[str]:
        """The shard's files, relative to the output directory."""
        name = self.file_name(split, number)
        return [f"{self.prefix}{split}/{m}/{name}" for m in registry.names()]


def provenance(config: Config, manifest: Manifest) -> tuple[tuple[str, str], ...]:
    """What every shard and member says about its origin: the pixel source (``synthetic`` or
    ``earthengine``), the software and version, and the sha256 of the settings that decide
    its values (those each stage recorded, and the packing settings other than the layouts
    chosen, so a Zarr shard is the same packed alone or with ``--format both``)."""
    recorded = {
        stage: json.loads(manifest.get_meta(f"config.{stage}") or "null")
        for stage in ("sample", "download", "align")
    }
    settings = {
        k: v for k, v in pack_settings(config).items() if k not in ("format", "samples_per_tar")
    }
    source = (recorded["download"] or {}).get("source", config.download.source)
    return (
        ("source", str(source)),
        ("software", f"ssl4eo-build {__version__}"),
        ("config_sha256", fingerprint({**recorded, "pack": settings})),
    )


BUILD_FILE = "build.json"  # beside the dataset: when and how it was built


def write_build_json(
    config: Config, manifest: Manifest, layout: Layout, origin: tuple[tuple[str, str], ...]
) -> str:
    """``build.json`` in the layout's root: provenance, build id, when each stage last ran,
    the samples per split and the whole configuration; returns its sha256."""
    samples = {
        split: sum(len(p.sample_ids) for p in layout.plans if p.split == split)
        for split in pack.SPLITS
    }
    record = {
        **dict(origin),
        "layout": layout.name,
        "build_id": manifest.build_id,
        "packed_at": utc_now(),
        "stages": manifest.last_runs(),
        "samples": samples,
        "config": section_dict(config),
    }
    data = (json.dumps(record, indent=2, default=str) + "\n").encode()
    return write_atomic(layout.root / BUILD_FILE, data, scratch_dir(layout.root))


def compressors(p: PackConfig) -> dict[str, tuple[str, int, int]]:
    """The Blosc codec of each modality (``pack.blosc_lz4`` checked)."""
    unknown = sorted(set(p.blosc_lz4) - set(registry.names()))
    if unknown:
        raise ConfigError(
            f"key 'pack.blosc_lz4': unknown modality {unknown[0]!r}; expected some of: "
            f"{', '.join(registry.names())}."
        )
    return {
        m: ("lz4", 5, 0) if m in p.blosc_lz4 else (p.blosc_cname, p.blosc_clevel, p.blosc_blocksize)
        for m in registry.names()
    }


def _layouts(
    config: Config,
    out_dir: Path,
    plans: list[pack.ShardPlan],
    splits: dict[str, list[str]],
    date_rule: str | None,
    origin: tuple[tuple[str, str], ...] = (),
) -> list[Layout]:
    """The layouts ``pack.format`` asks for. With ``both``, OUT holds the Zarr layout as
    published and OUT/webdataset the tar layout."""
    p = config.pack
    compressor = compressors(p)
    out: list[Layout] = []
    if p.format in ("zarr", "both"):
        encoding = pack.Encoding(compressor, p.s2_offset_zarr, date_rule, origin)
        out.append(Layout(pack.ZARR, out_dir, "", plans, encoding, pack.shard_name))
    if p.format in ("webdataset", "both"):
        prefix = f"{WEBDATASET_DIR}/" if p.format == "both" else ""
        tars = pack.plan_tars(splits, p.samples_per_tar)
        encoding = pack.Encoding(compressor, p.s2_offset_webdataset, date_rule, origin)
        out.append(Layout(pack.WEBDATASET, out_dir / prefix, prefix, tars, encoding, _tar_name))
    return out


def _repair_cubes(
    config: Config,
    manifest: Manifest,
    work: WorkDir,
    sample_ids: list[str],
    progress: bool,
    reason: str = "cube missing or damaged",
) -> None:
    """Align the locations again from their raw files; fetch again the raw files `clean
    --raw` removed and those that turn out damaged."""
    cleaned = manifest.dropped("raw")
    with manifest.transaction() as db:
        for sample_id in sample_ids:
            if sample_id in cleaned:
                manifest.invalidate_files(db, sample_id, None, "raw files removed by clean")
    mark_for_realign(manifest, [i for i in sample_ids if i not in cleaned], reason)
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
        merged = pack.RunningStats.merged(train_stats.get(modality, []))
        mean, std = merged.mean_std()
        stats[modality] = {
            "mean": mean,
            "std": std,
            "bands": list(registry.modality(modality).bands),
            # values per band the figures are over (train samples x timestamps x pixels)
            "count": 0 if merged.count is None else int(merged.count[0]),
        }
    write("stats.json", (json.dumps(stats, indent=2) + "\n").encode())
    return sums
