"""Crash-safe file writing and hashing, shared by every stage that writes files.

A file is written under a temporary name, fsynced and renamed over its final name, so a reader
sees the old file or the whole new one. Pool workers of `align` and `pack` may skip the fsync
and leave it to the coordinator (:class:`DeferredSync`), which records a file in the manifest
only once it is on disk. Temporary names live in a scratch directory of the tree
being written (``WORK/.tmp`` for raw files and cubes, ``DATASET/.tmp`` for the packed output):
a killed run leaves its half-written files there, and the next command removes the whole
directory before it starts (:func:`clear_scratch`), without walking the tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

SCRATCH = ".tmp"


def scratch_dir(root: Path) -> Path:
    """Where temporary files of the tree under ``root`` are written (same filesystem)."""
    return Path(root) / SCRATCH


def clear_scratch(root: Path) -> None:
    """Remove what a killed or failed run left in ``root``'s scratch directory."""
    shutil.rmtree(scratch_dir(root), ignore_errors=True)


def atomic_target(path: Path, scratch: Path | None = None) -> Path:
    """A temporary name for ``path``, unique to this process and thread: in ``scratch`` when
    given (created on demand), else beside ``path``."""
    unique = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
    if scratch is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f".{path.name}.tmp-{unique}")
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch / f"{unique}-{path.name}"


def commit_file(tmp: Path, path: Path, sha256: str | None = None, sync: bool = True) -> str:
    """fsync ``tmp`` (unless ``sync`` is false: the caller makes ``path`` durable with
    :func:`fsync_file` before it records it), rename it over ``path`` and return the sha256
    of what was committed (``sha256`` when the writer hashed what it wrote)."""
    if sha256 is None:
        sha256 = file_sha256(tmp)  # read back from the page cache
    if sync:
        fsync_file(tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    return sha256


def fsync_file(path: Path) -> None:
    """Wait until ``path``'s data is on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeferredSync(Generic[T]):
    """fsync files in background threads and hand back what was waiting on them, in order,
    once they are on disk: workers that write without fsync (``commit_file(sync=False)``)
    leave the wait to the coordinator, which records an item only after its files are
    durable (an item not recorded is redone on resume) and goes on meanwhile."""

    def __init__(self, threads: int = 2) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fsync")
        self.pending: deque[tuple[T, Future[None]]] = deque()

    def add(self, item: T, paths: Iterable[Path]) -> list[T]:
        """Queue ``item`` behind the fsync of ``paths``; returns the items now durable."""
        self.pending.append((item, self.pool.submit(_fsync_all, list(paths))))
        return self._ready(wait=False)

    def drain(self) -> list[T]:
        """Every queued item, once its files are on disk."""
        return self._ready(wait=True)

    def _ready(self, wait: bool) -> list[T]:
        out = []
        while self.pending and (wait or self.pending[0][1].done()):
            item, future = self.pending.popleft()
            future.result()
            out.append(item)
        return out

    def __enter__(self) -> DeferredSync[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _fsync_all(paths: list[Path]) -> None:
    for path in paths:
        fsync_file(path)


class HashingWriter:
    """A binary file written front to back, hashed (sha256) as it is written."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "wb")  # noqa: SIM115 - closed by close()/__exit__
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.digest.update(data)
        self.size += self.handle.write(data)

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def write_atomic(path: Path, data: bytes, scratch: Path | None = None) -> str:
    """Write ``data`` to ``path`` atomically; returns its sha256."""
    tmp = atomic_target(path, scratch)
    try:
        tmp.write_bytes(data)
        return commit_file(tmp, path, hashlib.sha256(data).hexdigest())
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def intact(path: Path, sha256: str | None) -> bool:
    """``path`` exists and, when a checksum was recorded, still has it."""
    try:
        return path.is_file() and (sha256 is None or file_sha256(path) == sha256)
    except OSError:
        return False
