"""`clean`: free disk in a work dir by removing files the build can make again.

``clean --raw`` removes the raw GeoTIFFs of every aligned location. Nothing is lost for the
dataset: pack needs them only to align a location again whose cube it dropped (another
format, ``--force``, a lost shard), and then fetches them again first, which costs requests
and quota. The manifest marks them as removed (``dropped``), so ``status`` counts them and no
stage takes them for damage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .manifest import Manifest
from .workdir import WorkDir, owned


@dataclass(frozen=True)
class CleanSummary:
    locations: int
    files: int
    bytes: int


def clean_raw(work_dir: Path) -> CleanSummary:
    """Remove the raw files of the aligned locations (see the module docstring)."""
    work = WorkDir.at(work_dir)
    with owned(work_dir), Manifest.open(work_dir, create=False) as manifest:
        aligned = {row[0] for row in manifest.packable()}
        files = manifest.raw_files(aligned - manifest.dropped("raw"))
        # Marked first: a file marked but still on disk costs nothing, a file gone but not
        # marked would be taken for damage.
        with manifest.transaction() as db:
            manifest.record_dropped(db, "raw", files)
        freed = removed = 0
        for paths in files.values():
            for rel in paths:
                path = work.path(rel)
                try:
                    size = path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    continue
                freed += size
                removed += 1
            if paths:
                _remove_empty_dirs(work.path(paths[0]).parent, work.root / "raw")
        return CleanSummary(len(files), removed, freed)


def _remove_empty_dirs(directory: Path, stop: Path) -> None:
    """``directory`` and its parents up to (not including) ``stop``, while they are empty."""
    while directory != stop and directory.is_relative_to(stop):
        try:
            directory.rmdir()
        except OSError:  # not empty
            return
        directory = directory.parent
