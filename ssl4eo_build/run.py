"""`run`: sample -> download -> align in rounds until the first ``target`` accepted locations
are settled, then pack exactly those.

The dataset is defined by sampling order alone: it is the first ``target`` locations (by
sample id, which follows the seeded candidate stream) whose outcome is *accepted* (passed
align). Each location's outcome is ``accepted``, ``rejected`` (final: rejected by a stage, or
failed as often as the stage allows) or ``open`` (not tried yet, or failed transiently with
tries left). The cut is *settled* when ``target`` locations are accepted and no open location
comes before the last of them. Transient errors therefore only delay a location, never replace
it, and the same seed and target give the same dataset with or without them.

Each round (:func:`plan_round`, pure) replays the decisions of an uninterrupted build from
the recorded outcomes: the first round samples ``ceil(target / initial_yield)`` locations;
once all of them are final, the next samples ``ceil(gap / yield)`` more, the yield estimated
from final outcomes only (``(accepted + 2 * initial_yield) / (final + 2)``: the configured
initial yield counts as two observations, so a few early rejections cannot explode the
top-up). Open locations of a round are processed (retried) before anything new is sampled. An
interrupted build, or one started on a sample made by hand, therefore samples what the
uninterrupted build samples, or what was already there, and never more.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from . import pipeline
from .config import Config
from .download.core import worker_state
from .download.plan import describe_plan
from .errors import IncompleteError
from .executor import DaskExecutor
from .manifest import Manifest, settled_cut
from .sources.base import RetryPolicy
from .workdir import owned

T = TypeVar("T")
PRIOR_WEIGHT = 2.0  # observations the configured initial yield is worth
MIN_YIELD = 0.01


@dataclass(frozen=True)
class RoundPlan:
    """What one round does: nothing (``settled``: pack ``cut``), process the open locations
    with ids up to ``up_to``, or sample ``new`` locations."""

    sampled: int
    accepted: int
    open: int
    cut: tuple[str, ...] = ()
    up_to: str | None = None
    new: int = 0

    @property
    def settled(self) -> bool:
        return bool(self.cut)


def estimate_yield(accepted: int, final: int, initial: float) -> float:
    """Share of locations expected to be accepted, from final outcomes only."""
    if final == 0:
        return initial
    return max(MIN_YIELD, (accepted + PRIOR_WEIGHT * initial) / (final + PRIOR_WEIGHT))


def plan_round(outcomes: Sequence[tuple[str, str]], target: int, initial: float) -> RoundPlan:
    """The next round for ``outcomes`` ((sample_id, outcome) in sampling order).

    The sample sizes an uninterrupted build decides on depend only on the outcomes of the
    locations it sampled before each decision: ``g1 = ceil(target / initial)``, then
    ``g(k+1) = g(k) + ceil(gap(k) / yield(k))`` from the first ``g(k)`` outcomes. Those are
    replayed here from the recorded outcomes, so an interrupted build, or one that starts from
    a sample made by hand, samples and processes exactly what the uninterrupted build would
    (never more than that, or than what was already sampled)."""
    accepted = [sid for sid, outcome in outcomes if outcome == "accepted"]
    open_ids = [sid for sid, outcome in outcomes if outcome == "open"]
    plan = RoundPlan(len(outcomes), len(accepted), len(open_ids))
    cut = settled_cut(outcomes, target)
    if cut is not None:
        return replace(plan, cut=cut)
    goal = math.ceil(target / initial)
    while True:
        if len(outcomes) < goal:
            return replace(plan, new=goal - len(outcomes))
        prefix = [outcome for _, outcome in outcomes[:goal]]
        if "open" in prefix:
            last_open = max(i for i, outcome in enumerate(prefix) if outcome == "open")
            return replace(plan, up_to=outcomes[last_open][0])
        got = prefix.count("accepted")
        if got >= target:  # settled above unless an open location after the prefix precedes
            return replace(plan, up_to=accepted[target - 1])  # the cut: process up to it
        goal += math.ceil((target - got) / estimate_yield(got, goal, initial))


@dataclass
class RunSummary:
    target: int
    rounds: int = 0
    aligned: int = 0
    sampled: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    pack: pipeline.PackSummary | None = None


def dry_run(config: Config, target: int, work_dir: Path | None = None) -> list[str]:
    """What ``run --target`` costs, from the plan alone: the first round's locations (target
    over the expected yield) through the request plan, and the disk from the bytes per
    location measured in ``work_dir`` when it holds some. Writes nothing."""
    locations = math.ceil(target / config.run.initial_yield)
    head = (
        f"{target} accepted location(s) need about {locations} downloaded "
        f"(run.initial_yield {config.run.initial_yield:g}; rejected ones are replaced)"
    )
    return [head, *describe_plan(config, locations, work_dir)]


def run_all(
    config: Config,
    work_dir: Path,
    target: int,
    out: Path | None = None,
    dask: DaskExecutor | None = None,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> RunSummary:
    """Rounds until the cut is settled, then pack it; :class:`IncompleteError` when
    ``run.max_rounds`` rounds did not settle it (everything finished is kept: rerun)."""
    summary = RunSummary(target=target)
    policy = RetryPolicy(1, config.download.retry_base_s, config.download.retry_max_s)
    rng = random.Random(0)

    def timed(stage: str, call: Callable[..., T], **options: Any) -> T:
        t0 = time.perf_counter()
        result = call(config, work_dir, **options)
        summary.seconds[stage] = summary.seconds.get(stage, 0.0) + time.perf_counter() - t0
        return result

    with owned(work_dir):
        plan = _plan(config, work_dir, target)
        if not plan.settled:  # bad credentials stop the run before anything is sampled
            worker_state(config)
        retrying = False
        while not plan.settled and summary.rounds < config.run.max_rounds:
            if retrying:  # transient failures only: back off before trying them again
                sleep(policy.delay(summary.rounds, rng))
            if plan.new:
                timed("sample", pipeline.run_sample, n=plan.sampled + plan.new)
            stage = {"progress": progress, "dask": dask, "up_to": plan.up_to}
            timed("download", pipeline.run_download, **stage)
            timed("align", pipeline.run_align, **stage)
            summary.rounds += 1
            previous, plan = plan, _plan(config, work_dir, target)
            retrying = not plan.new and (plan.accepted, plan.open) == (
                previous.accepted,
                previous.open,
            )
        summary.aligned = plan.accepted
        summary.sampled = plan.sampled
        if not plan.settled:
            raise IncompleteError(
                f"{work_dir}: after {summary.rounds} round(s) {plan.accepted} of {target} "
                f"location(s) are accepted and {plan.open} are still open (failing "
                "transiently or not tried); nothing finished is lost. Run the same command "
                "again to continue (run.max_rounds sets the rounds per command)."
            )
        with Manifest.open(work_dir) as manifest:  # `pack` alone packs the same locations
            manifest.set_meta(RUN_TARGET, str(target))
        summary.pack = timed(
            "pack", pipeline.run_pack, out=out, progress=progress, dask=dask, sample_ids=plan.cut
        )
        summary.report = pipeline.status(work_dir)
    return summary


RUN_TARGET = "run.target"


def _plan(config: Config, work_dir: Path, target: int) -> RoundPlan:
    with Manifest.open(work_dir) as manifest:
        outcomes = manifest.outcomes(config.download.max_runs, config.align.max_runs)
    return plan_round(outcomes, target, config.run.initial_yield)
