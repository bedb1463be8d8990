"""`ssl4eo-build sample`: choose locations around the top-10k cities, or import an index."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ssl4eo_build.config import load_config

if TYPE_CHECKING:
    from ssl4eo_build.sample import stage

from .options import (
    DEFAULT_WORK_DIR,
    ConfigOpt,
    ForceOpt,
    QuietOpt,
    SeedOpt,
    VerboseOpt,
    WorkDirOpt,
    guarded,
    setup_logging,
)


def sample(
    config: ConfigOpt = None,
    work_dir: WorkDirOpt = DEFAULT_WORK_DIR,
    n: Annotated[
        int | None, typer.Option("--n", min=1, help="Total number of locations wanted (tops up).")
    ] = None,
    seed: SeedOpt = None,
    from_index: Annotated[
        Path | None,
        typer.Option("--from-index", help="Import locations: v1.1 metadata parquet or CSV."),
    ] = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Choose non-overlapping locations around the top-10k cities."""
    setup_logging(verbose, quiet)
    from ssl4eo_build.sample import stage  # only this stage loads: a fast command

    def call() -> stage.SampleSummary:
        cfg = load_config(config, {"sample.n": n, "sample.seed": seed})
        if from_index is not None:
            return stage.import_index(cfg, work_dir, from_index)
        return stage.run_sample(cfg, work_dir, force=force)

    summary = guarded(verbose, call)
    if not quiet:
        source = (
            f"imported from {summary.imported_from}"
            if summary.imported_from
            else (
                f"{summary.candidates_drawn} candidates drawn, "
                f"{summary.overlap_rejections} rejected for overlap"
            )
        )
        typer.echo(
            f"sample: {summary.added} new location(s), {summary.total} in total "
            f"({source}) -> {work_dir}"
        )
