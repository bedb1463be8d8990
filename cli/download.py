"""`ssl4eo-build download`: find scenes per season and fetch buffered areas of interest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ssl4eo_build.executor import DaskExecutor

if TYPE_CHECKING:
    from ssl4eo_build import pipeline

from .options import (
    DEFAULT_WORK_DIR,
    ConfigOpt,
    EeKeyOpt,
    EeProjectOpt,
    ForceOpt,
    LimitOpt,
    QuietOpt,
    SchedulerOpt,
    SourceOpt,
    VerboseOpt,
    WorkDirOpt,
    WorkersOpt,
    config_or_exit,
    guarded,
    on_executor,
    setup_logging,
    source_overrides,
)


def download(
    config: ConfigOpt = None,
    work_dir: WorkDirOpt = DEFAULT_WORK_DIR,
    source: SourceOpt = None,
    ee_project: EeProjectOpt = None,
    ee_key: EeKeyOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    limit: LimitOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print the requests the plan needs.")
    ] = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Find one S-2 granule and one S-1 scene per season; fetch them as GeoTIFFs."""
    setup_logging(verbose, quiet)
    from ssl4eo_build import pipeline  # the library loads on use: a fast --help

    cfg = config_or_exit(
        verbose,
        config,
        {**source_overrides(source, ee_project, ee_key), "download.workers": workers},
    )

    def call(dask: DaskExecutor | None) -> pipeline.DownloadSummary:
        return pipeline.run_download(
            cfg,
            work_dir,
            limit=limit,
            dry_run=dry_run,
            force=force,
            progress=not quiet,
            dask=dask,
        )

    summary = guarded(verbose, lambda: on_executor(scheduler, call))

    if summary.dry_run:
        from ssl4eo_build.download.plan import describe_plan

        lines = describe_plan(cfg, summary.planned, work_dir)
        typer.echo("download --dry-run: " + "\n  ".join(lines))
    elif not quiet:
        typer.echo(
            f"download: {summary.ok} ok, {summary.rejected} rejected, {summary.failed} failed "
            f"of {summary.planned} location(s); {summary.requests} requests -> {work_dir}/raw"
        )
