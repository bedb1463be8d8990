"""The work directory: where each kind of file lives, and who owns it.

Paths recorded in the manifest are relative to the work directory (:func:`raw_relpath`,
:func:`cube_relpath`), so the directory can be moved, copied or used from anywhere.

One owner at a time: every writing command holds ``WORK/ssl4eo-build.lock`` (an ``flock`` on
the file, which also records the holder's pid, host and command line). A second writing command
exits at once naming the holder. The kernel drops the lock when its holder dies, even under
``kill -9``, so a stale lock (dead pid) is simply taken over. Read-only commands (status,
validate, dry runs) take no lock. Taking the lock also clears the scratch directory of
temporary files a killed run left behind.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import StorageError, WorkDirBusyError, describe_os_error
from .files import clear_scratch, scratch_dir

log = logging.getLogger(__name__)

LOCK_NAME = "ssl4eo-build.lock"


def raw_relpath(sample_id: str, product: str, season: int) -> str:
    """One product and season per file: the layout of work dirs before the batched requests."""
    return f"raw/{sample_id[:4]}/{sample_id}/{product}_{season}.tif"


def request_relpath(sample_id: str, products: list[str], seasons: list[int]) -> str:
    """The raw file of one pixel request (its layers of one type), e.g. ``S2L1C+S2L2A_s01.tif``:
    the products and seasons it holds name it, so fetching them again rewrites the same file."""
    name = f"{'+'.join(products)}_s{''.join(map(str, seasons))}"
    return f"raw/{sample_id[:4]}/{sample_id}/{name}.tif"


def cube_relpath(sample_id: str) -> str:
    return f"aligned/{sample_id[:4]}/{sample_id}.cube"


@dataclass(frozen=True)
class WorkDir:
    """Absolute locations inside one work directory (picklable: workers receive it)."""

    root: Path

    @classmethod
    def at(cls, path: Path) -> WorkDir:
        return cls(Path(os.path.abspath(path)))

    @property
    def scratch(self) -> Path:
        return scratch_dir(self.root)

    def path(self, relpath: str) -> Path:
        """A path recorded in the manifest, on this machine."""
        return self.root / relpath

    def cube(self, sample_id: str) -> Path:
        return self.path(cube_relpath(sample_id))


_held: dict[Path, int] = {}  # work dir -> nesting depth of this process's lock
_held_guard = threading.Lock()


def _holder(lock_file: Path) -> str:
    try:
        info = json.loads(lock_file.read_text())
        return (
            f"pid {info.get('pid')} on {info.get('host')} (`{info.get('command')}`, "
            f"started {info.get('started')})"
        )
    except (OSError, ValueError):
        return "another process"


@contextmanager
def owned(work_dir: Path) -> Iterator[None]:
    """Hold the work directory's lock for the duration (re-entrant within one process)."""
    root = Path(os.path.abspath(work_dir))
    with _held_guard:
        depth = _held.get(root, 0)
        if depth:
            _held[root] = depth + 1
    if depth:
        try:
            yield
        finally:
            with _held_guard:
                _held[root] -= 1
        return
    fd = _acquire(root)
    with _held_guard:
        _held[root] = 1
    try:
        yield
    finally:
        with _held_guard:
            del _held[root]
        clear_scratch(root)
        os.close(fd)  # releases the flock


def _acquire(root: Path) -> int:
    lock_file = root / LOCK_NAME
    if root.exists() and not root.is_dir():
        raise StorageError(f"--work-dir {root}: is a file, expected a directory.")
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(describe_os_error(exc, "taking the work-directory lock")) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkDirBusyError(
            f"{root}: the work directory is in use by {_holder(lock_file)}. Wait for it to "
            "finish or stop it; `ssl4eo-build status` works meanwhile."
        ) from None
    previous = _holder(lock_file) if lock_file.stat().st_size else None
    if previous:
        log.debug("%s: taking over the lock left by %s (no longer running)", root, previous)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise StorageError(describe_os_error(exc, "taking the work-directory lock")) from None
    clear_scratch(root)
    return fd
