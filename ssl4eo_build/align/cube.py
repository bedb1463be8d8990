"""The aligned cube of one location: every modality on one 264 x 264 grid, ready to stack.

Stored as ``aligned/{id[:4]}/{id}.cube`` (written once, read once by `pack`): the magic line
``SSL4EO-CUBE 2``, the length of a JSON header (8 bytes, little endian), the header, then the
arrays, each starting on a 64-byte boundary. The header holds the metadata (sample id, EPSG,
centre, band names, per-timestamp tile ids and CRSs) and, per array, its dtype, shape, offset,
stored length and codec. Arrays: ``{modality}/bands`` (time, band, y, x) in the final dtype,
``{modality}/time`` (datetime64[ns]), ``cloud_mask`` (time, y, x), ``x``, ``y`` (UTM pixel
centres). Large arrays are Blosc-LZ4 with byte shuffle in 1 MiB blocks: on the simulator's
cubes that stores 16 MB in about 6.5 MB for about 13 ms of one core, less than writing the
other 10 MB costs, and decodes in about 11 ms (Blosc's own block size: 17 and 14 ms;
BENCHMARKS.md). A file of the wrong size is reported as damaged. Version 1 files (the same
layout, every array raw) still load.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
from numpy.typing import NDArray

from ..files import atomic_target, checksum, commit_file, file_checksum
from ..raster_io import RawFileError


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


MAGIC = b"SSL4EO-CUBE 2\n"
MAGIC_V1 = b"SSL4EO-CUBE 1\n"  # every array raw
COMPRESS_FROM = 1 << 16  # bytes: smaller arrays are stored raw
ALIGN = 64


def _arrays(cube: AlignedCube) -> dict[str, NDArray[Any]]:
    arrays: dict[str, NDArray[Any]] = {"x": cube.x, "y": cube.y, "cloud_mask": cube.cloud_mask}
    for name, m in cube.modalities.items():
        arrays[f"{name}/bands"] = m.bands
        arrays[f"{name}/time"] = m.time.astype("datetime64[ns]")
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def _padded(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def _codec() -> numcodecs.Blosc:
    return numcodecs.Blosc(
        cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE, blocksize=1 << 20
    )


def _encoded(cube: AlignedCube) -> dict[str, tuple[NDArray[Any], bytes | memoryview, str]]:
    """Per array: the array, the bytes to store and their codec (``blosc`` or ``raw``)."""
    codec = _codec()
    out: dict[str, tuple[NDArray[Any], bytes | memoryview, str]] = {}
    for name, a in _arrays(cube).items():
        if a.nbytes >= COMPRESS_FROM:  # the array itself: Blosc shuffles by its item size
            out[name] = (a, codec.encode(a), "blosc")
        else:
            out[name] = (a, a.reshape(-1).view(np.uint8).data, "raw")
    return out


def save_cube(path: Path, cube: AlignedCube, scratch: Path | None = None, sync: bool = True) -> str:
    """Write ``cube`` atomically (temporary file in ``scratch`` when given; ``sync`` as for
    :func:`commit_file`); returns the file's checksum."""
    encoded = _encoded(cube)
    layout: dict[str, dict[str, Any]] = {}
    offset = 0
    for name, (a, stored, codec) in encoded.items():
        layout[name] = {
            "dtype": a.dtype.str,
            "shape": list(a.shape),
            "offset": offset,
            "nbytes": len(stored),
            "codec": codec,
        }
        offset = _padded(offset + len(stored))
    header = json.dumps(
        {
            "sample_id": cube.sample_id,
            "epsg": cube.epsg,
            "center_lon": cube.center_lon,
            "center_lat": cube.center_lat,
            "tile_id": list(cube.tile_id),
            "tile_crs": list(cube.tile_crs),
            "season": list(cube.season),
            "modalities": {
                name: {"band_names": list(m.band_names), "file_id": list(m.file_id)}
                for name, m in cube.modalities.items()
            },
            "arrays": layout,
            "data_bytes": offset,
        }
    ).encode()
    start = _padded(len(MAGIC) + 8 + len(header))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_target(path, scratch)
    try:
        with open(tmp, "wb") as handle:
            handle.write(MAGIC + struct.pack("<Q", len(header)) + header)
            for name, (_, stored, _) in encoded.items():
                handle.seek(start + layout[name]["offset"])
                handle.write(stored)
            handle.truncate(start + offset)
        return commit_file(tmp, path, file_checksum(tmp), sync=sync)
    finally:
        tmp.unlink(missing_ok=True)


def _decoded(
    blob: bytes | memoryview, start: int, spec: dict[str, Any], out: NDArray[Any] | None = None
) -> NDArray[Any]:
    """One array of ``blob``; a compressed one decoded into ``out`` when given (a contiguous
    buffer of the array's size: a reused buffer spares the page faults of a fresh one)."""
    dtype, shape = np.dtype(spec["dtype"]), spec["shape"]
    count = int(np.prod(shape))
    begin = start + spec["offset"]
    if spec.get("codec", "raw") == "raw":
        return np.frombuffer(blob, dtype=dtype, count=count, offset=begin).reshape(shape)
    stored = memoryview(blob)[begin : begin + spec["nbytes"]]
    if out is not None:
        if out.nbytes != count * dtype.itemsize or not out.flags.c_contiguous:
            raise ValueError(f"a buffer of {out.nbytes} bytes for {count * dtype.itemsize}")
        (size,) = struct.unpack_from("<I", stored, 4)  # the Blosc header's decoded size
        if size != out.nbytes:
            raise ValueError(f"array of {size} bytes, expected {out.nbytes}")
        _codec().decode(stored, out=out)
        return out.view(dtype).reshape(shape)
    decoded = _codec().decode(stored)
    if len(decoded) != count * dtype.itemsize:
        raise ValueError(f"array of {len(decoded)} bytes, expected {count * dtype.itemsize}")
    return np.frombuffer(decoded, dtype=dtype).reshape(shape)


class CubeFile:
    """An aligned cube on disk, read lazily: the header and the small arrays when opened
    (with ``recorded``, a checksum, the whole file checked against it), each large array when
    asked for, read from its own byte range. `pack` holds one modality of a shard at a time
    this way."""

    def __init__(self, path: Path, recorded: str | None = None) -> None:
        self.path = path
        try:
            with open(path, "rb") as handle:
                blob = handle.read() if recorded is not None else handle.read(1 << 16)
                if recorded is not None and checksum(blob, recorded) != recorded:
                    raise ValueError("its checksum differs from the one recorded when written")
                if not blob.startswith((MAGIC, MAGIC_V1)):
                    raise ValueError("not an aligned cube")
                (size,) = struct.unpack_from("<Q", blob, len(MAGIC))
                if len(blob) < len(MAGIC) + 8 + size:
                    blob = blob + handle.read(len(MAGIC) + 8 + size - len(blob))
                meta = json.loads(blob[len(MAGIC) + 8 : len(MAGIC) + 8 + size])
                self.start = _padded(len(MAGIC) + 8 + size)
                length = handle.seek(0, 2)
            if length != self.start + meta["data_bytes"]:
                raise ValueError(f"{length} bytes, expected {self.start + meta['data_bytes']}")
            self.specs: dict[str, dict[str, Any]] = meta["arrays"]
            self.meta = meta
            self.x, self.y = self.array("x"), self.array("y")
        except (OSError, ValueError, KeyError, struct.error, RuntimeError) as exc:
            raise RawFileError(f"{path}: unreadable aligned cube ({exc})") from None
        self.sample_id: str = meta["sample_id"]
        self.epsg = int(meta["epsg"])
        self.center_lon, self.center_lat = float(meta["center_lon"]), float(meta["center_lat"])
        self.tile_id = tuple(str(t) for t in meta["tile_id"])
        self.tile_crs = tuple(int(c) for c in meta["tile_crs"])
        self.season = tuple(int(s) for s in meta["season"])

    def shape(self, name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
        """The shape and dtype of one array."""
        spec = self.specs[name]
        return tuple(spec["shape"]), np.dtype(spec["dtype"])

    def array(self, name: str, out: NDArray[Any] | None = None) -> NDArray[Any]:
        """One stored array, decoded (``{modality}/bands``, ``{modality}/time``,
        ``cloud_mask``, ``x``, ``y``); into ``out`` (contiguous, of its size) when
        given and the array is compressed (:meth:`shape`)."""
        spec = self.specs[name]
        raw_size = int(np.prod(spec["shape"])) * np.dtype(spec["dtype"]).itemsize
        nbytes = spec.get("nbytes", raw_size)  # version 1 files: every array raw
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.start + spec["offset"])
                stored = handle.read(nbytes)
            if len(stored) != nbytes:
                raise ValueError(f"{name}: {len(stored)} bytes, expected {nbytes}")
            return _decoded(stored, 0, {**spec, "offset": 0}, out)
        except (OSError, ValueError, RuntimeError) as exc:
            raise RawFileError(f"{self.path}: unreadable aligned cube ({exc})") from None

    def band_names(self, modality: str) -> tuple[str, ...]:
        return tuple(self.meta["modalities"][modality]["band_names"])

    def file_id(self, modality: str) -> tuple[str, ...]:
        return tuple(self.meta["modalities"][modality]["file_id"])

    def time(self, modality: str) -> NDArray[np.datetime64]:
        return self.array(f"{modality}/time")


def load_cube(path: Path, recorded: str | None = None) -> AlignedCube:
    """Read a whole cube; with ``recorded``, the checksum recorded when it was written, the
    bytes must match."""
    cube = CubeFile(path, recorded)
    modalities = {
        name: Modality(
            bands=cube.array(f"{name}/bands"),
            band_names=cube.band_names(name),
            time=cube.time(name),
            file_id=cube.file_id(name),
        )
        for name in cube.meta["modalities"]
    }
    return AlignedCube(
        sample_id=cube.sample_id,
        epsg=cube.epsg,
        center_lon=cube.center_lon,
        center_lat=cube.center_lat,
        x=cube.x,
        y=cube.y,
        modalities=modalities,
        cloud_mask=cube.array("cloud_mask"),
        tile_id=cube.tile_id,
        tile_crs=cube.tile_crs,
        season=cube.season,
    )
