"""Local executors: a bounded thread pool for I/O-bound work, with a tqdm progress bar.

Results come back to the calling (coordinating) thread, which alone writes the manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def run_pool(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    label: str,
    counts: Mapping[str, int],
    progress: bool = True,
    processes: bool = False,
) -> Iterator[R]:
    """Yield ``fn(item)`` results as they finish, at most ``2 * workers`` submitted at once.

    Threads for I/O-bound work; ``processes=True`` for CPU-bound work (``fn`` and the items
    must pickle). ``counts`` is shown live in the progress bar (the caller updates it).
    """
    pending: set[Future[R]] = set()
    todo = list(items)
    bar = tqdm(total=len(todo), desc=label, unit="loc", disable=not progress, leave=False)
    it = iter(todo)
    pool: Executor = (
        ProcessPoolExecutor(max_workers=workers)
        if processes
        else ThreadPoolExecutor(max_workers=workers, thread_name_prefix=label)
    )
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
                    bar.update(1)
                    bar.set_postfix(counts, refresh=False)
        finally:
            for future in pending:
                future.cancel()
            bar.close()
