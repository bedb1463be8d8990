"""`run`: sample -> download -> align in rounds until ``target`` locations pass align, then pack.

Each round tops the sample up (same seed stream, no overlap with existing locations) by the
number still missing divided by the yield observed so far (locations that passed align over
locations that reached a final verdict), so rejected locations are replaced. Every stage is the
same resumable stage function the single commands run: a killed `run` continues where it
stopped when started again. The first ``target`` aligned locations (by sample id) are packed,
so the dataset does not depend on how many rounds or which executor produced them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import pipeline
from .config import Config
from .executor import DaskExecutor
from .manifest import Manifest


@dataclass
class RunSummary:
    target: int
    rounds: int = 0
    aligned: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    pack: pipeline.PackSummary | None = None


def run_all(
    config: Config,
    work_dir: Path,
    target: int,
    out: Path | None = None,
    dask: DaskExecutor | None = None,
    progress: bool = True,
) -> RunSummary:
    summary = RunSummary(target=target)

    def timed(stage: str, call: Any) -> Any:
        t0 = time.perf_counter()
        result = call()
        summary.seconds[stage] = summary.seconds.get(stage, 0.0) + time.perf_counter() - t0
        return result

    while summary.rounds < config.run.max_rounds:
        counts = _counts(work_dir)
        if counts["aligned"] >= target:
            break
        in_flight = counts["locations"] - counts["finished"]
        observed = counts["aligned"] / counts["finished"] if counts["finished"] else None
        rate = max(observed if observed is not None else config.run.initial_yield, 0.05)
        wanted = math.ceil((target - counts["aligned"]) / rate)
        new = max(0, wanted - in_flight)
        timed(
            "sample", lambda n=counts["locations"] + new: pipeline.run_sample(config, work_dir, n=n)
        )
        timed(
            "download",
            lambda: pipeline.run_download(config, work_dir, progress=progress, dask=dask),
        )
        timed("align", lambda: pipeline.run_align(config, work_dir, progress=progress, dask=dask))
        summary.rounds += 1
    summary.aligned = _counts(work_dir)["aligned"]
    summary.pack = timed(
        "pack",
        lambda: pipeline.run_pack(
            config, work_dir, out=out, progress=progress, dask=dask, max_samples=target
        ),
    )
    summary.report = pipeline.status(work_dir)
    return summary


def _counts(work_dir: Path) -> dict[str, int]:
    with Manifest.open(work_dir) as manifest:
        return manifest.run_counts()
