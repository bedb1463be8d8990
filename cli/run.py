"""`ssl4eo-build run`: all stages in order, topping up until a target count passes align."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ssl4eo_build.executor import DaskExecutor

if TYPE_CHECKING:
    from ssl4eo_build.run import RunSummary

from .options import (
    DEFAULT_WORK_DIR,
    ConfigOpt,
    EeKeyOpt,
    EeProjectOpt,
    FormatOpt,
    QuietOpt,
    SchedulerOpt,
    SeedOpt,
    SourceOpt,
    VerboseOpt,
    WorkDirOpt,
    config_or_exit,
    guarded,
    on_executor,
    setup_logging,
    source_overrides,
)
from .report import build_report


def run(
    config: ConfigOpt = None,
    work_dir: WorkDirOpt = DEFAULT_WORK_DIR,
    target: Annotated[
        int | None,
        typer.Option("--target", min=1, help="Locations that must pass align (default sample.n)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Dataset directory.")] = None,
    output_format: FormatOpt = None,
    seed: SeedOpt = None,
    source: SourceOpt = None,
    ee_project: EeProjectOpt = None,
    ee_key: EeKeyOpt = None,
    scheduler: SchedulerOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only print requests, bytes, disk and time; no data."),
    ] = False,
    previews: Annotated[
        int,
        typer.Option("--previews", min=0, help="Samples previewed in WORK/report (0: no report)."),
    ] = 8,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """sample -> download -> align in rounds until --target pass align, then pack them;
    then WORK/report/report.html with a map and previews."""
    setup_logging(verbose, quiet)
    cfg = config_or_exit(
        verbose,
        config,
        {
            **source_overrides(source, ee_project, ee_key),
            "sample.seed": seed,
            "pack.format": output_format,
        },
    )
    wanted = target if target is not None else cfg.sample.n
    from ssl4eo_build.run import dry_run as plan_run  # the library loads on use: a fast --help
    from ssl4eo_build.run import run_all

    if dry_run:
        typer.echo("run --dry-run: " + "\n  ".join(plan_run(cfg, wanted, work_dir)))
        return

    def call(dask: DaskExecutor | None) -> RunSummary:
        return run_all(cfg, work_dir, wanted, out=out, dask=dask, progress=not quiet)

    summary = guarded(verbose, lambda: on_executor(scheduler, call))
    page = None
    if previews and summary.pack is not None:
        dataset = Path(summary.pack.out_dir)
        page = guarded(verbose, lambda: build_report(work_dir, dataset, previews))
    if quiet:
        return
    stages = summary.report["stages"]
    typer.echo(
        f"run: the first {summary.target} accepted location(s) are settled "
        f"({summary.sampled} sampled, {summary.rounds} round(s) in this command)"
    )
    for stage in ("download", "align"):
        for reason, n in stages[stage]["reasons"].items():
            typer.echo(f"  {stage} {n:>6}  {reason}")
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    typer.echo(f"  time per stage: {timing}")
    if summary.pack is not None:
        p = summary.pack
        typer.echo(
            f"  packed: train {p.samples['train']}, val {p.samples['val']} samples "
            f"({p.shards_written} shard(s) written) -> {p.out_dir}"
        )
    if page is not None:
        typer.echo(f"  report: {page} (map, histograms, {previews} preview(s))")
