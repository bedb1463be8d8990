"""`ssl4eo-build validate DIR`: check a packed dataset against the v1.1 format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ssl4eo_build.errors import UserError

from .options import QuietOpt, VerboseOpt, guarded, setup_logging


def validate(
    directory: Annotated[Path, typer.Argument(help="The packed dataset directory.")],
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Check the layout, decode every chunk and verify checksums.sha256. Exit code 1 for
    deviations from the v1.1 layout, 2 for damaged or unreadable files."""
    setup_logging(verbose, quiet)
    guarded(verbose, lambda: _check_directory(directory))
    from ssl4eo_build.pack.validate import check_dataset  # loads on use: a fast --help

    report = check_dataset(directory)
    for problem in report.findings:
        typer.echo(problem)
    if report.findings:
        typer.echo(
            f"validate: {len(report.damaged)} damaged file finding(s), "
            f"{len(report.deviations)} deviation(s) in {directory}",
            err=True,
        )
        raise typer.Exit(code=2 if report.damaged else 1)
    if not quiet:
        typer.echo(
            f"validate: {directory} matches the v1.1 layout ({report.layout}: {report.files} "
            "shard files, every chunk decoded, every file matches checksums.sha256)"
        )
        if (directory / "webdataset" / "checksums.sha256").is_file():
            typer.echo(
                f"  the WebDataset layout beside it validates on its own: "
                f"ssl4eo-build validate {directory / 'webdataset'}"
            )


def _check_directory(directory: Path) -> None:
    if not directory.is_dir():
        raise UserError(f"{directory}: no such dataset directory.")
    if (directory / "manifest.sqlite").exists() and not (directory / "stats.json").exists():
        raise UserError(
            f"{directory}: this is a work directory, not a packed dataset; validate "
            f"{directory / 'dataset'} (or the --out the build packed into)."
        )
