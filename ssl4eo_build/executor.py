"""Executors: where stage work runs. Results always come back to the coordinating process,
which alone writes the manifest.

- local (default): a bounded thread pool for I/O-bound work, a process pool for CPU-bound
  work, sized to the machine;
- Dask distributed (``--scheduler ADDRESS`` for an existing cluster, ``local:N`` for a
  LocalCluster of N worker processes): the same stage functions, submitted as tasks. Workers
  share the work directory; sources initialise once per worker process.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, TypeVar

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


_LOCAL = re.compile(r"^local:(\d+)$")
_REMOTE = re.compile(r"^(?:(?:tcp|tls|ucx|inproc|ws|wss)://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def check_scheduler(address: str) -> int | None:
    """Validate a ``--scheduler`` value before any work starts: ``local:N`` (N >= 1; returns
    N) or a scheduler address ``[tcp://]host:port`` (returns None)."""
    local = _LOCAL.match(address)
    if local:
        n = int(local.group(1))
        if n < 1:
            raise ConfigError(
                f"--scheduler {address!r}: a LocalCluster needs at least one worker (local:N, "
                "N >= 1)."
            )
        return n
    if not _REMOTE.match(address):
        raise ConfigError(
            f"--scheduler {address!r}: expected local:N (a LocalCluster of N worker processes) "
            "or a Dask scheduler address such as tcp://head:8786."
        )
    return None


# Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536. Setting it turns off glibc's
# adaptive mmap threshold, so every array over 128 KiB is mapped, zeroed by the kernel and
# unmapped again: the simulator's download ran 3.5x slower per location (BENCHMARKS.md). These
# keep arrays up to 32 MiB on the heap and give memory back beyond 256 MiB of free space.
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 32 << 20, "MALLOC_TRIM_THRESHOLD_": 256 << 20}
_WORKER_MALLOC = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in _MALLOC.items()}


def _malloc_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}


def _warn_about_worker_malloc(environ: Mapping[str, Mapping[str, str]]) -> None:
    """Workers of a cluster the user started: name the setting that slows them down."""
    slow = sorted(
        w for w, env in environ.items() if "MALLOC_TRIM_THRESHOLD_" in env and
        "MALLOC_MMAP_THRESHOLD_" not in env
    )  # fmt: skip
    if slow:
        log.warning(
            "%d Dask worker(s) (first: %s) run with MALLOC_TRIM_THRESHOLD_ but no "
            "MALLOC_MMAP_THRESHOLD_: every array over 128 KiB is mapped and unmapped again, "
            "3.5x slower per location here. Start the workers with %s (Dask config "
            "distributed.nanny.pre-spawn-environ).",
            len(slow),
            slow[0],
            " ".join(f"{k}={v}" for k, v in _MALLOC.items()),
        )


class DaskExecutor(AbstractContextManager["DaskExecutor"]):
    """A Dask distributed client; ``local:N`` starts a LocalCluster of N worker processes."""

    def __init__(self, address: str) -> None:
        n = check_scheduler(address)
        from distributed import Client, LocalCluster

        self.cluster: Any = None
        if n is not None:
            import dask

            with dask.config.set(_WORKER_MALLOC):
                self.cluster = LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
                )
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(address, timeout=30)
            except OSError as exc:
                raise ConfigError(
                    f"--scheduler {address!r}: cannot reach the Dask scheduler ({exc})"
                ) from None
            _warn_about_worker_malloc(self.client.run(_malloc_environ))

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    @property
    def threads(self) -> int:
        """Task threads of the whole cluster (the tasks it runs at once)."""
        return max(1, sum(self.client.nthreads().values()))

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def run_pool(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    label: str,
    counts: Mapping[str, int],
    progress: bool = True,
    processes: bool = False,
    dask: DaskExecutor | None = None,
    dask_threads: int = 1,
    dask_setup: Callable[[], object] | None = None,
) -> Iterator[R]:
    """Yield ``fn(item)`` results as they finish, at most ``2 * workers`` in flight.

    Threads for I/O-bound work; ``processes=True`` for CPU-bound work (``fn`` and the items
    must pickle); with ``dask`` every item is a task on the cluster (a task lost with its worker
    is rerun by Dask), or with ``dask_threads`` > 1 every batch of twice that many items, run in
    that many threads of the worker (I/O-bound work: a Dask worker thread would otherwise wait
    on one item at a time); ``dask_setup`` then runs first in the task's own thread (what needs
    the Dask worker's context, such as a cluster semaphore, is made there). ``counts`` is
    shown live in the progress bar (the caller updates it).
    """
    todo = list(items)
    bar = tqdm(total=len(todo), desc=label, unit="item", disable=not progress, leave=False)
    # The work is spread over the cores already: BLAS threads (numpy's dot) would only
    # spin beside it (worker processes are forked with this limit).
    blas = threadpool_limits(limits=1, user_api="blas")
    try:
        results = (
            _dask_batches(fn, todo, dask, dask_threads, workers, dask_setup)
            if dask is not None
            else _local_map(fn, todo, workers, label, processes)
        )
        for result in results:
            yield result
            bar.update(1)
            bar.set_postfix(counts, refresh=False)
    finally:
        blas.restore_original_limits()
        bar.close()


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters


def _reuse_freed_memory() -> None:
    """glibc: every allocation from the heap, and what is freed kept there (up to 1 GiB) for
    the next one. Pool processes allocate and free arrays of hundreds of MB (pack's
    compressed chunks): mapped afresh each time, each page costs a fault and its zeroing
    (BENCHMARKS.md). Nothing happens where there is no ``mallopt``."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _worker_init(coordinator: int) -> None:
    """In every pool process: Ctrl-C is the coordinator's to handle (it stops the pool), and
    the process exits when the coordinator is gone, even after ``kill -9``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threadpool_limits(limits=1, user_api="blas")
    _reuse_freed_memory()

    def watch() -> None:
        while os.getppid() == coordinator:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="coordinator-watch", daemon=True).start()


def _local_map(
    fn: Callable[[T], R], todo: list[T], workers: int, label: str, processes: bool
) -> Iterator[R]:
    pool: Executor = (
        ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),))
        if processes
        else ThreadPoolExecutor(max_workers=workers, thread_name_prefix=label)
    )
    pending: set[Future[R]] = set()
    it = iter(todo)
    with pool:
        try:
            while True:
                while len(pending) < 2 * workers:
                    item = next(it, None)
                    if item is None:
                        break
                    pending.add(pool.submit(fn, item))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()


def _dask_batches(
    fn: Callable[[T], R],
    todo: list[T],
    dask: DaskExecutor,
    threads: int,
    workers: int,
    setup: Callable[[], object] | None,
) -> Iterator[R]:
    if threads <= 1:
        yield from _dask_map(fn, todo, dask, 2 * max(workers, dask.workers))
        return
    # Two items per thread: a thread that finishes early takes another item of the batch.
    size = 2 * threads
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    run = partial(_in_threads, fn, setup, threads)
    for results in _dask_map(run, batches, dask, 2 * dask.workers):
        yield from results


def _in_threads(
    fn: Callable[[T], R], setup: Callable[[], object] | None, threads: int, batch: list[T]
) -> list[R]:
    """``fn`` over ``batch`` in ``threads`` threads (on a Dask worker), after ``setup``."""
    if setup is not None:
        setup()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(fn, batch))


def _dask_map(fn: Callable[[T], R], todo: list[T], dask: DaskExecutor, window: int) -> Iterator[R]:
    from distributed import as_completed

    it = iter(todo)
    first = [dask.client.submit(fn, item, pure=False) for item in _take(it, window)]
    queue = as_completed(first)
    for future in queue:
        result = future.result()
        future.release()
        for item in _take(it, 1):
            queue.add(dask.client.submit(fn, item, pure=False))
        yield result


def _take(it: Iterator[T], n: int) -> list[T]:
    out = []
    for _ in range(n):
        item = next(it, None)
        if item is None:
            break
        out.append(item)
    return out
