"""Crash-safe file writing and hashing, shared by every stage that writes files.

A file is written under a temporary name, fsynced and renamed over its final name, so a reader
sees the old file or the whole new one. Pool workers of `align` and `pack` may skip the fsync
and leave it to the coordinator (:class:`DeferredSync`), which records a file in the manifest
only once it is on disk. Temporary names live in a scratch directory of the tree
being written (``WORK/.tmp`` for raw files and cubes, ``DATASET/.tmp`` for the packed output):
a killed run leaves its half-written files there, and the next command removes the whole
directory before it starts (:func:`clear_scratch`), without walking the tree.

Checksums: work-dir files (raw GeoTIFFs, aligned cubes) carry an xxh3-128 checksum, written
``xxh3:`` and 32 hex digits; it catches any damage at a small fraction of sha256's cost
(BENCHMARKS.md), and every location's files are hashed at download and again at align and
pack. The packed dataset is hashed with sha256, the form ``sha256sum -c`` checks. A recorded
checksum without the prefix is a sha256 (shards, and work dirs of earlier versions), and is
checked as one.
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
from typing import Generic, Protocol, TypeVar

import xxhash

T = TypeVar("T")

XXH3 = "xxh3:"  # the prefix of a work-dir file's checksum

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


def commit_file(tmp: Path, path: Path, digest: str | None = None, sync: bool = True) -> str:
    """fsync ``tmp`` (unless ``sync`` is false: the caller makes ``path`` durable with
    :func:`fsync_file` before it records it), rename it over ``path`` and return the checksum
    of what was committed: ``digest`` when the caller has it, else the file's sha256."""
    if digest is None:
        digest = file_sha256(tmp)  # read back from the page cache
    if sync:
        fsync_file(tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    return digest


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


class _Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def _digest(like: str | None) -> tuple[_Digest, str]:
    """The hash of a checksum in the form of ``like`` (xxh3-128 when None), and its prefix."""
    if like is None or like.startswith(XXH3):
        return xxhash.xxh3_128(), XXH3
    return hashlib.sha256(), ""


def _file_into(path: Path, digest: _Digest) -> _Digest:
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest


def checksum(data: bytes | memoryview, like: str | None = None) -> str:
    """The work-dir checksum of ``data``; in the form of ``like`` (a recorded checksum) when
    given."""
    digest, prefix = _digest(like)
    digest.update(data)
    return prefix + digest.hexdigest()


def file_checksum(path: Path, like: str | None = None) -> str:
    """:func:`checksum` of the file at ``path``."""
    digest, prefix = _digest(like)
    return prefix + _file_into(path, digest).hexdigest()


def file_sha256(path: Path) -> str:
    return _file_into(path, hashlib.sha256()).hexdigest()


def intact(path: Path, recorded: str | None) -> bool:
    """``path`` exists and, when a checksum was recorded, still has it."""
    try:
        return path.is_file() and (recorded is None or file_checksum(path, recorded) == recorded)
    except OSError:
        return False
