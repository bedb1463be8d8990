"""Local executors: a bounded thread pool for I/O-bound work, with a tqdm progress bar.

Results come back to the calling (coordinating) thread, which alone writes the manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def run_threaded(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    label: str,
    counts: Mapping[str, int],
    progress: bool = True,
) -> Iterator[R]:
    """Yield ``fn(item)`` results as they finish, at most ``2 * workers`` submitted at once.

    ``counts`` is shown live in the progress bar (the caller updates it per result).
    """
    pending: set[Future[R]] = set()
    todo = list(items)
    bar = tqdm(total=len(todo), desc=label, unit="loc", disable=not progress, leave=False)
    it = iter(todo)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=label) as pool:
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
