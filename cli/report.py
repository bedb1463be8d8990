"""`ssl4eo-build preview` and `ssl4eo-build report`: pictures of what was built."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ssl4eo_build.errors import UserError

from .options import DEFAULT_WORK_DIR, QuietOpt, VerboseOpt, WorkDirOpt, guarded, setup_logging

PreviewsOpt = Annotated[int, typer.Option("--n", min=0, help="Samples to preview.")]


def preview(
    dataset: Annotated[Path, typer.Argument(help="The packed dataset directory.")],
    n: PreviewsOpt = 16,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where the PNGs go (default: DATASET/../report/previews)."),
    ] = None,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """One PNG per sample: S-2 RGB, S-1 false colour, cloud mask, NDVI, land cover, DEM."""
    setup_logging(verbose, quiet)
    from ssl4eo_build.report import PREVIEW_DIR, REPORT_DIR, write_previews

    target = out if out is not None else dataset.parent / REPORT_DIR / PREVIEW_DIR
    written = guarded(verbose, lambda: write_previews(_dataset(dataset), target, n))
    if not quiet:
        typer.echo(f"preview: {len(written)} PNG(s) -> {target}")


def report(
    work_dir: WorkDirOpt = DEFAULT_WORK_DIR,
    dataset: Annotated[
        Path | None,
        typer.Option("--dataset", help="The packed dataset (default WORK/dataset, if there)."),
    ] = None,
    n: PreviewsOpt = 16,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """WORK/report/report.html: counts, rejection reasons, histograms, map and previews."""
    setup_logging(verbose, quiet)
    page = guarded(verbose, lambda: build_report(work_dir, dataset, n))
    if not quiet:
        typer.echo(f"report: {page}")


def build_report(work_dir: Path, dataset: Path | None, n: int) -> Path:
    """The report of a work dir, with previews of its dataset when it has one."""
    from ssl4eo_build.report import write_report

    if dataset is None and (work_dir / "dataset" / "stats.json").is_file():
        dataset = work_dir / "dataset"
    return write_report(work_dir, None if dataset is None else _dataset(dataset), n)


def _dataset(path: Path) -> Path:
    if not path.is_dir():
        raise UserError(f"{path}: no such dataset directory.")
    return path
