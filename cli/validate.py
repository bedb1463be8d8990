"""`ssl4eo-build validate DIR`: check a packed dataset against the v1.1 format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ssl4eo_build.validate import validate_dataset

from .options import QuietOpt, VerboseOpt, setup_logging


def validate(
    directory: Annotated[Path, typer.Argument(help="The packed dataset directory.")],
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Print every deviation from the v1.1 layout; exit code 1 if there is any."""
    setup_logging(verbose, quiet)
    problems = validate_dataset(directory)
    for problem in problems:
        typer.echo(problem)
    files = len(list(directory.glob("*/*/*.zarr.zip")))
    if problems:
        typer.echo(f"validate: {len(problems)} deviation(s) in {directory}", err=True)
        raise typer.Exit(code=1)
    if not quiet:
        typer.echo(f"validate: {directory} matches the v1.1 layout ({files} shard files)")
