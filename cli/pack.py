"""`ssl4eo-build pack`: shuffle, split and write the v1.1 Zarr shards."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ssl4eo_build.executor import DaskExecutor

if TYPE_CHECKING:
    from ssl4eo_build import pipeline

from .options import (
    DEFAULT_WORK_DIR,
    ConfigOpt,
    ForceOpt,
    FormatOpt,
    QuietOpt,
    SchedulerOpt,
    VerboseOpt,
    WorkDirOpt,
    WorkersOpt,
    config_or_exit,
    guarded,
    on_executor,
    setup_logging,
)


def pack(
    config: ConfigOpt = None,
    work_dir: WorkDirOpt = DEFAULT_WORK_DIR,
    out: Annotated[
        Path | None, typer.Option("--out", help="Dataset directory (default WORK/dataset).")
    ] = None,
    keep_partial: Annotated[
        bool | None,
        typer.Option("--keep-partial", help="Write the last, smaller shard of each split."),
    ] = None,
    output_format: FormatOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Write v1.1-format shards, split lists, metadata parquet and stats.json."""
    setup_logging(verbose, quiet)
    from ssl4eo_build import pipeline  # the library loads on use: a fast --help

    cfg = config_or_exit(
        verbose,
        config,
        {
            "pack.keep_partial": keep_partial,
            "pack.workers": workers,
            "pack.format": output_format,
        },
    )

    def call(dask: DaskExecutor | None) -> pipeline.PackSummary:
        return pipeline.run_pack(cfg, work_dir, out=out, force=force, progress=not quiet, dask=dask)

    summary = guarded(verbose, lambda: on_executor(scheduler, call))

    if not quiet:
        left = ", ".join(f"{k} {v}" for k, v in summary.left_out.items() if v)
        typer.echo(
            f"pack: {summary.shards_written} shard(s) written, {summary.shards_kept} kept; "
            f"samples train {summary.samples['train']}, val {summary.samples['val']}"
            + (
                f"; left out of shards (fewer than a full shard; --keep-partial): {left}"
                if left
                else ""
            )
            + f" -> {summary.out_dir}"
        )
