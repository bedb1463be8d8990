"""`run` end to end: top-up, executors, and nothing lost under kill -9 or transient errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ssl4eo_build.config import load_config, override
from ssl4eo_build.executor import DaskExecutor
from ssl4eo_build.pack.core import open_shard
from ssl4eo_build.run import run_all

from .conftest import kill_when, shard_digests, write_toml

CMD = [sys.executable, "-m", "ssl4eo_build.cli.app"]


def test_run_tops_up_until_the_target_passes_align(cfg_path: Path, clean_run: Path) -> None:
    cfg = load_config(cfg_path)
    again = run_all(cfg, clean_run, target=8, progress=False)
    assert again.rounds == 0 and again.pack is not None and again.pack.shards_written == 0
    assert again.aligned >= 8 and sum(again.pack.samples.values()) == 8
    rejected = sum(
        sum(again.report["stages"][s]["reasons"].values()) for s in ("download", "align")
    )
    assert rejected > 0, "the config makes some locations fail"
    db = sqlite3.connect(clean_run / "manifest.sqlite")
    sampled = db.execute("SELECT COUNT(*) FROM locations").fetchone()[0]
    assert sampled >= 8 + rejected, "rejected locations were replaced by new ones"


def test_local_and_dask_executors_give_the_same_dataset(
    tmp_path: Path, cfg_path: Path, clean_run: Path
) -> None:
    cfg = load_config(cfg_path)
    with DaskExecutor("local:2") as dask:
        run_all(cfg, tmp_path / "dask", target=8, progress=False, dask=dask)
    local, remote = clean_run / "dataset", tmp_path / "dask" / "dataset"
    names = sorted(p.relative_to(local) for p in local.glob("*/*/*.zarr.zip"))
    assert names == sorted(p.relative_to(remote) for p in remote.glob("*/*/*.zarr.zip"))
    for name in names:
        a, b = open_shard(local / name), open_shard(remote / name)
        for var in a.variables:
            assert np.array_equal(a[var].values, b[var].values), (name, var)


# Kills during download and align (with their process and temp-file checks) and Ctrl-C at
# both are in test_faults.py; this covers a kill while pack writes shards.
@pytest.mark.parametrize("stage", ["shards"])
def test_killed_run_resumes_to_the_same_dataset(
    tmp_path: Path, cfg_path: Path, clean_run: Path, stage: str
) -> None:
    """kill -9 while `stage` is filling, rerun: same shards as an uninterrupted run."""
    slow = write_toml(
        tmp_path / "slow.toml",
        cfg_path.read_text().replace("[synthetic]\n", "[synthetic]\nlatency_s = 0.01\n"),
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*CMD, "run", "-c", str(slow), "-w", str(killed), "-q"])
    kill_when(proc, killed / "manifest.sqlite", f"SELECT COUNT(*) FROM {stage}", 0)
    db = sqlite3.connect(killed / "manifest.sqlite")
    done_files = [killed / r[0] for r in db.execute("SELECT path FROM scenes")]
    db.close()
    before = {p: p.stat().st_mtime_ns for p in done_files if p.exists()}
    subprocess.run([*CMD, "run", "-c", str(slow), "-w", str(killed), "-q"], check=True)
    assert {p: p.stat().st_mtime_ns for p in before} == before, "finished downloads not redone"
    assert shard_digests(killed / "dataset") == shard_digests(clean_run / "dataset")
    assert shard_digests(clean_run / "dataset")
    counts = [
        sqlite3.connect(w / "manifest.sqlite").execute("SELECT COUNT(*) FROM locations").fetchone()
        for w in (killed, clean_run)
    ]
    assert counts[0] <= counts[1], "a resumed build samples no more than an uninterrupted one"


def test_dask_worker_killed_mid_stage_is_redone(tmp_path: Path, cfg_path: Path) -> None:
    """kill -9 one Dask worker process while align runs: its tasks are redone elsewhere."""
    import threading

    from ssl4eo_build import pipeline

    cfg = override(load_config(cfg_path), "sample.n", 16)
    work = tmp_path / "w"
    pipeline.run_sample(cfg, work)
    pipeline.run_download(cfg, work, progress=False)
    with DaskExecutor("local:2") as dask:
        pids = list(dask.client.run(os.getpid).values())
        killed: list[int] = []

        def killer() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                time.sleep(0.02)
                try:
                    db = sqlite3.connect(work / "manifest.sqlite", timeout=1)
                    n = db.execute("SELECT COUNT(*) FROM patches").fetchone()[0]
                    db.close()
                except sqlite3.Error:
                    continue
                if n >= 1:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])

        thread = threading.Thread(target=killer)
        thread.start()
        summary = pipeline.run_align(cfg, work, progress=False, dask=dask)
        thread.join()
    assert killed, "a worker was killed while align ran"
    db = sqlite3.connect(work / "manifest.sqlite")
    downloaded = db.execute("SELECT COUNT(*) FROM downloads WHERE status='ok'").fetchone()[0]
    assert summary.ok + summary.rejected == downloaded and summary.failed == 0


_SETUP: list[str] = []
_RUNNING = [0, 0]  # items running now, the most at once (in a worker process)
_LOCK = threading.Lock()


def _setup_in_task_thread() -> None:
    _SETUP.append(threading.current_thread().name)


def _item_and_thread(item: int) -> tuple[int, str, list[str], int]:
    with _LOCK:
        _RUNNING[0] += 1
        _RUNNING[1] = max(_RUNNING)
    time.sleep(0.2)  # waits, as a download waits on the network
    with _LOCK:
        _RUNNING[0] -= 1
    return item, threading.current_thread().name, list(_SETUP), _RUNNING[1]


def test_dask_tasks_run_batches_of_items_in_worker_threads() -> None:
    from ssl4eo_build.executor import run_pool

    def items(threads: int) -> list[tuple[int, str, list[str], int]]:
        return list(
            run_pool(_item_and_thread, range(7), 1, "test", {}, progress=False, dask=dask,
                     dask_threads=threads, dask_setup=_setup_in_task_thread)
        )  # fmt: skip

    with DaskExecutor("local:1") as dask:  # one worker process, one Dask thread
        one_by_one = items(1)
        batched = items(3)
    assert max(peak for *_, peak in one_by_one) == 1, "one item per task"
    assert sorted(item for item, *_ in batched) == list(range(7)), "every item once"
    assert max(peak for *_, peak in batched) == 3, "a batch's items wait together"
    # The setup ran in the Dask task's own thread before each batch's items started.
    assert all(setup and setup[-1] != thread for _, thread, setup, _ in batched)


def _faults_of_a_second_large_array(size: int) -> int:
    """Page faults taken by allocating, filling and freeing a ``size``-byte array after one
    of the same size was freed."""
    import resource

    np.ones(size, dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(size, dtype=np.uint8)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_pool_processes_reuse_freed_memory_instead_of_mapping_it_again() -> None:
    from ssl4eo_build.executor import run_pool

    size = 64 << 20  # over glibc's largest mmap threshold: mapped afresh by default
    (in_pool,) = run_pool(_faults_of_a_second_large_array, [size], 2, "t", {}, False, True)
    alone = subprocess.run(
        [sys.executable, "-c", "from tests.test_run import _faults_of_a_second_large_array as f;"
         f"print(f({size}))"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert int(alone.stdout) >= 32  # 16,384 pages of 4 KiB, or 32 huge ones and more
    assert in_pool < 16
