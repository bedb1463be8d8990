"""Crash-safe file writing and hashing, shared by every stage that writes files."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path


def atomic_target(path: Path) -> Path:
    """A temporary sibling name unique to this process and thread."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def commit_file(tmp: Path, path: Path) -> None:
    """fsync ``tmp`` and rename it over ``path``: readers see the old file or the whole new one."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
