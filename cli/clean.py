"""`ssl4eo-build clean`: free disk by removing files the build can make again."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import (
    DEFAULT_WORK_DIR,
    QuietOpt,
    VerboseOpt,
    WorkDirOpt,
    guarded,
    setup_logging,
)


def clean(
    work_dir: WorkDirOpt = DEFAULT_WORK_DIR,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Remove the raw GeoTIFFs of aligned locations. Repacking a location whose "
            "cube was dropped then fetches them again (requests, quota).",
        ),
    ] = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Remove intermediate files (aligned cubes go on their own once packed)."""
    setup_logging(verbose, quiet)
    if not raw:
        typer.echo("error: clean: nothing to remove; pass --raw to remove the raw files.", err=True)
        raise typer.Exit(code=2)
    from ssl4eo_build.clean import clean_raw

    summary = guarded(verbose, lambda: clean_raw(work_dir))
    if not quiet:
        typer.echo(
            f"clean: removed {summary.files} raw file(s) of {summary.locations} aligned "
            f"location(s), {summary.bytes / 1e6:,.1f} MB freed in {work_dir}/raw"
        )
