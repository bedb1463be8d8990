"""The aligned cube of one location: every modality on one 264 x 264 grid, ready to stack.

Stored as ``aligned/{id[:4]}/{id}.npz`` (uncompressed: written once, read once by `pack`):
``{modality}/bands`` (time, band, y, x) in the final dtype, ``{modality}/time`` (datetime64[ns]),
``{modality}/file_id``, ``cloud_mask`` (time, y, x), ``x``, ``y`` (UTM pixel centres) and a JSON
``meta`` (sample id, EPSG, centre, band names, per-timestamp tile ids and CRSs).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .files import atomic_target, commit_file
from .raster_io import RawFileError

MODALITIES = ("S2L1C", "S2L2A", "S1GRD", "S2RGB")


@dataclass(frozen=True)
class Modality:
    bands: NDArray[Any]  # (time, band, y, x)
    band_names: tuple[str, ...]
    time: NDArray[np.datetime64]  # (time,)
    file_id: tuple[str, ...]


@dataclass(frozen=True)
class AlignedCube:
    sample_id: str
    epsg: int
    center_lon: float
    center_lat: float
    x: NDArray[np.float64]  # (x,) UTM pixel-centre eastings
    y: NDArray[np.float64]  # (y,) northings
    modalities: dict[str, Modality]
    cloud_mask: NDArray[np.uint8]  # (time, y, x)
    tile_id: tuple[str, ...]  # per timestamp (S-2 granule tile)
    tile_crs: tuple[int, ...]  # per timestamp (S-2 granule's own EPSG)
    season: tuple[int, ...]  # season index of each timestamp (timestamps sorted by date)


def cube_path(aligned_dir: Path, sample_id: str) -> Path:
    return aligned_dir / sample_id[:4] / f"{sample_id}.npz"


def save_cube(path: Path, cube: AlignedCube) -> None:
    arrays: dict[str, NDArray[Any]] = {"x": cube.x, "y": cube.y, "cloud_mask": cube.cloud_mask}
    per_modality: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "sample_id": cube.sample_id,
        "epsg": cube.epsg,
        "center_lon": cube.center_lon,
        "center_lat": cube.center_lat,
        "tile_id": list(cube.tile_id),
        "tile_crs": list(cube.tile_crs),
        "season": list(cube.season),
        "modalities": per_modality,
    }
    for name, m in cube.modalities.items():
        arrays[f"{name}/bands"] = m.bands
        arrays[f"{name}/time"] = m.time.astype("datetime64[ns]")
        per_modality[name] = {"band_names": list(m.band_names), "file_id": list(m.file_id)}
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_target(path)
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        commit_file(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_cube(path: Path) -> AlignedCube:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise RawFileError(f"{path}: unreadable aligned cube ({exc})") from None
    meta = json.loads(str(arrays["meta"]))
    modalities = {
        name: Modality(
            bands=arrays[f"{name}/bands"],
            band_names=tuple(info["band_names"]),
            time=arrays[f"{name}/time"],
            file_id=tuple(info["file_id"]),
        )
        for name, info in meta["modalities"].items()
    }
    return AlignedCube(
        sample_id=meta["sample_id"],
        epsg=int(meta["epsg"]),
        center_lon=float(meta["center_lon"]),
        center_lat=float(meta["center_lat"]),
        x=arrays["x"],
        y=arrays["y"],
        modalities=modalities,
        cloud_mask=arrays["cloud_mask"],
        tile_id=tuple(meta["tile_id"]),
        tile_crs=tuple(int(c) for c in meta["tile_crs"]),
        season=tuple(int(s) for s in meta["season"]),
    )
