"""`ssl4eo-build status`: what the manifest says."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .options import DEFAULT_WORK_DIR, QuietOpt, VerboseOpt, WorkDirOpt, guarded, setup_logging


def status(
    work_dir: WorkDirOpt = DEFAULT_WORK_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Counts per stage and status, and the rejection reasons."""
    setup_logging(verbose, quiet)
    from ssl4eo_build import pipeline  # the library loads on use: a fast --help

    report = guarded(verbose, lambda: pipeline.status(work_dir))
    typer.echo(json.dumps(report, indent=2) if as_json else render(report))


def render(report: dict[str, Any]) -> str:
    lines = [f"manifest: {report['manifest']}"]
    for stage, info in report["stages"].items():
        if "counts" in info:
            counts = ", ".join(f"{k} {v}" for k, v in info["counts"].items())
            lines.append(f"{stage:>9}: {counts}")
            for reason, n in info["reasons"].items():
                lines.append(f"{'':>11}{n:>8}  {reason}")
            if stage == "sample":
                lines.append(
                    f"{'':>11}candidates rejected for overlap: "
                    f"{info['candidates_rejected_for_overlap']}"
                )
            if info.get("raw_removed"):
                lines.append(
                    f"{'':>11}raw files removed by clean: {info['raw_removed']} location(s)"
                )
            if info.get("cubes_dropped"):
                lines.append(
                    f"{'':>11}cubes dropped once packed: {info['cubes_dropped']} location(s)"
                )
        else:
            for shard in info["shards"]:
                lines.append(
                    f"{stage:>9}: {shard['split']}/{shard['modality']}: "
                    f"{shard['files']} file(s), {shard['samples']} samples"
                )
    return "\n".join(lines)
