"""`ssl4eo-build align`: one UTM grid per location, S-1 onto S-2, NaN policy, RGB, cloud mask."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ssl4eo_build.executor import DaskExecutor

if TYPE_CHECKING:
    from ssl4eo_build import pipeline

from .options import (
    DEFAULT_WORK_DIR,
    ConfigOpt,
    ForceOpt,
    LimitOpt,
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


def align(
    config: ConfigOpt = None,
    work_dir: WorkDirOpt = DEFAULT_WORK_DIR,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    limit: LimitOpt = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Crop 264x264 on the majority UTM grid; reproject other zones and S-1 onto it."""
    setup_logging(verbose, quiet)
    from ssl4eo_build import pipeline  # the library loads on use: a fast --help

    cfg = config_or_exit(verbose, config, {"align.workers": workers})

    def call(dask: DaskExecutor | None) -> pipeline.AlignSummary:
        return pipeline.run_align(
            cfg, work_dir, limit=limit, force=force, progress=not quiet, dask=dask
        )

    summary = guarded(verbose, lambda: on_executor(scheduler, call))

    if not quiet:
        typer.echo(
            f"align: {summary.ok} ok, {summary.rejected} rejected, {summary.failed} failed "
            f"of {summary.planned} location(s) -> {work_dir}/aligned"
        )
