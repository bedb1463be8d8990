"""The deterministic cut and the exact top-up of `run` (pure planning, then end to end)."""

from __future__ import annotations

import random
import sqlite3
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ssl4eo_build.cli.app import app
from typer.testing import CliRunner

from ssl4eo_build.config import load_config, override
from ssl4eo_build.run import estimate_yield, plan_round, run_all

from .conftest import shard_digests

CMD = [sys.executable, "-m", "ssl4eo_build.cli.app"]


def ids(n: int) -> list[str]:
    return [f"{i:07d}" for i in range(n)]


def test_nothing_final_uses_the_initial_yield() -> None:
    plan = plan_round([], 8, 0.8)
    assert plan.new == 10 and not plan.settled
    assert estimate_yield(0, 0, 0.8) == 0.8


def test_pending_locations_are_processed_before_anything_is_sampled() -> None:
    # 160 sampled, 30 downloaded of which 5 rejected, none aligned yet: no top-up at all.
    outcomes = [(i, "rejected") for i in ids(5)] + [(i, "open") for i in ids(160)[5:]]
    plan = plan_round(outcomes, 128, 0.8)
    assert plan.new == 0 and plan.up_to == ids(160)[-1]


def test_open_locations_before_the_cut_are_retried_not_replaced() -> None:
    outcomes = [("0000000", "accepted"), ("0000001", "open"), ("0000002", "accepted")]
    outcomes += [("0000003", "accepted")]
    plan = plan_round(outcomes, 2, 0.8)
    assert not plan.settled and plan.up_to == "0000001" and plan.new == 0
    settled = plan_round(
        [(i, "accepted" if i != "0000001" else "rejected") for i, _ in outcomes], 2, 0.8
    )
    assert settled.cut == ("0000000", "0000002")


def _simulate(
    truth: dict[str, str], target: int, y0: float, rng: random.Random | None, presampled: int = 0
) -> tuple[tuple[str, ...], int]:
    """Drive plan_round against a fixed outcome per location. With ``rng``, every round is
    interrupted at a random point (only a random share of its work is done) and transient
    failures leave locations open."""
    known: dict[str, str] = {i: "open" for i in ids(presampled)}
    for _ in range(10_000):
        plan = plan_round(sorted(known.items()), target, y0)
        if plan.settled:
            return plan.cut, len(known)
        if plan.new:
            start = len(known)
            stop = start + plan.new
            if rng is not None:  # killed while sampling
                stop = rng.randint(start + 1, stop)
            known.update({i: "open" for i in ids(stop)[start:]})
            continue
        for sid in sorted(known):
            if known[sid] != "open" or (plan.up_to is not None and sid > plan.up_to):
                continue
            if rng is not None and rng.random() < 0.3:
                continue  # killed before it finished, or a transient failure
            known[sid] = truth[sid]
    raise AssertionError("no progress")


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    target=st.integers(1, 60),
    y0=st.sampled_from([0.3, 0.8, 1.0]),
    rate=st.floats(0.2, 1.0),
    presampled=st.integers(0, 100),
)
def test_interrupted_builds_settle_on_the_fresh_cut_without_oversampling(
    seed: int, target: int, y0: float, rate: float, presampled: int
) -> None:
    rng = random.Random(seed)
    truth = {i: "accepted" if rng.random() < rate else "rejected" for i in ids(5_000)}
    fresh_cut, fresh_n = _simulate(truth, target, y0, None)
    cut, sampled = _simulate(truth, target, y0, random.Random(seed + 1), presampled)
    assert cut == fresh_cut
    assert sampled <= max(presampled, fresh_n) * 1.1 + 1
    expected = [i for i in ids(5_000) if truth[i] == "accepted"][:target]
    assert list(fresh_cut) == expected


def count(work: Path, sql: str) -> int:
    db = sqlite3.connect(work / "manifest.sqlite")
    try:
        return int(db.execute(sql).fetchone()[0])
    finally:
        db.close()


def test_presampled_and_partly_downloaded_work_dir_samples_nothing_extra(
    tmp_path: Path,
    cfg_path: Path,
    clean_run: Path,
) -> None:
    runner = CliRunner()
    work = tmp_path / "w"
    args = ["-c", str(cfg_path), "-w", str(work), "-q"]
    assert runner.invoke(app, ["sample", *args, "--n", "20"]).exit_code == 0
    assert runner.invoke(app, ["download", *args, "--limit", "5"]).exit_code == 0
    result = runner.invoke(app, ["run", *args, "--target", "8"])
    assert result.exit_code == 0, result.output
    fresh = count(clean_run, "SELECT COUNT(*) FROM locations")
    assert count(work, "SELECT COUNT(*) FROM locations") <= max(20, fresh) * 1.1
    assert shard_digests(work / "dataset") == shard_digests(clean_run / "dataset")


@pytest.mark.parametrize("error_rate", [0.2, 0.4])
def test_transient_errors_give_the_error_free_dataset(
    tmp_path: Path,
    cfg_path: Path,
    clean_run: Path,
    error_rate: float,
) -> None:
    flaky = override(load_config(cfg_path), "synthetic.error_rate", error_rate)
    flaky = override(flaky, "download.max_attempts", 3)  # some locations fail a whole run ...
    flaky = override(flaky, "download.max_runs", 50)  # ... and are retried, never replaced
    flaky = override(flaky, "run.max_rounds", 60)
    run_all(flaky, tmp_path / "flaky", target=8, progress=False, sleep=lambda s: None)
    assert shard_digests(tmp_path / "flaky" / "dataset") == shard_digests(clean_run / "dataset")
