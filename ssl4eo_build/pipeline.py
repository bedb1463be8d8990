"""The stages in order, one public function per CLI command.

Each stage is a package holding its whole story: the pure core and the wiring that connects
it to the manifest and the executor (``stage.py``):

- :mod:`ssl4eo_build.sample`: locations around the cities, or imported from the v1.1 index;
- :mod:`ssl4eo_build.download`: scene choice and the batched pixel requests, raw GeoTIFFs;
- :mod:`ssl4eo_build.align`: one UTM grid per location, every modality derived, a cube each;
- :mod:`ssl4eo_build.pack`: the v1.1 Zarr and WebDataset layouts, and ``validate``.

Each function takes a frozen :class:`~ssl4eo_build.config.Config`, the work directory and the
command's options, and returns a small summary the CLI prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .align.stage import AlignSummary, run_align
from .download.stage import DownloadSummary, run_download
from .manifest import Manifest
from .pack.stage import PackSummary, run_pack
from .sample.stage import SampleSummary, import_index, run_sample

__all__ = [
    "AlignSummary",
    "DownloadSummary",
    "PackSummary",
    "SampleSummary",
    "import_index",
    "run_align",
    "run_download",
    "run_pack",
    "run_sample",
    "status",
]


def status(work_dir: Path) -> dict[str, Any]:
    with Manifest.open_readonly(work_dir) as manifest:
        return manifest.status_report()
