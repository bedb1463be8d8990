"""The aligned-cube container: exact round trip, compression, damage, version 1 files."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from ssl4eo_build.align.cube import (
    ALIGN,
    MAGIC_V1,
    AlignedCube,
    CubeFile,
    Modality,
    load_cube,
    save_cube,
)
from ssl4eo_build.files import file_checksum, intact
from ssl4eo_build.raster_io import RawFileError

TIMES = np.array(["2021-03-05", "2021-06-20"], dtype="datetime64[ns]")


def small_cube() -> AlignedCube:
    rng = np.random.default_rng(3)
    ramp = np.arange(96 * 96, dtype=np.int16).reshape(96, 96)
    s2 = (ramp + rng.integers(0, 4, (2, 5, 96, 96))).astype(np.int16)  # compressible, 184 kB
    s1 = rng.normal(-12, 3, (2, 2, 96, 96)).astype(np.float16)  # noisy
    return AlignedCube(
        sample_id="0000042",
        epsg=32632,
        center_lon=11.5,
        center_lat=48.1,
        x=600_005.0 + 10.0 * np.arange(96),
        y=5_300_035.0 - 10.0 * np.arange(96),
        modalities={
            "S2L2A": Modality(s2, tuple(f"B{i}" for i in range(5)), TIMES, ("a", "b")),
            "S1GRD": Modality(s1, ("vv", "vh"), TIMES, ("c", "d")),
        },
        cloud_mask=(ramp[None] % 7).repeat(2, axis=0).astype(np.uint8),
        tile_id=("T32UPU", "T32UPU"),
        tile_crs=(32632, 32633),
        season=(0, 1),
    )


def header(blob: bytes) -> tuple[dict, int]:
    """The JSON header and where the arrays start."""
    (size,) = struct.unpack_from("<Q", blob, len(MAGIC_V1))
    begin = len(MAGIC_V1) + 8
    return json.loads(blob[begin : begin + size]), -(-(begin + size) // ALIGN) * ALIGN


def assert_same(a: AlignedCube, b: AlignedCube) -> None:
    for name in ("sample_id", "epsg", "center_lon", "center_lat", "tile_id", "tile_crs", "season"):
        assert getattr(a, name) == getattr(b, name)
    for name in ("x", "y", "cloud_mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.modalities.keys() == b.modalities.keys()
    for name, m in a.modalities.items():
        n = b.modalities[name]
        assert m.bands.dtype == n.bands.dtype and m.band_names == n.band_names
        assert m.file_id == n.file_id
        np.testing.assert_array_equal(m.bands, n.bands)
        np.testing.assert_array_equal(m.time, n.time)


def test_round_trip_is_exact_and_large_arrays_are_compressed(tmp_path: Path) -> None:
    cube = small_cube()
    path = tmp_path / "c.cube"
    save_cube(path, cube)
    assert_same(cube, load_cube(path))
    raw = sum(m.bands.nbytes for m in cube.modalities.values()) + cube.cloud_mask.nbytes
    assert path.stat().st_size < 0.7 * raw
    meta, _ = header(path.read_bytes())
    codecs = {name: spec["codec"] for name, spec in meta["arrays"].items()}
    assert codecs["S2L2A/bands"] == "blosc" and codecs["x"] == codecs["S2L2A/time"] == "raw"


def test_damaged_cubes_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "c.cube"
    save_cube(path, small_cube())
    blob = path.read_bytes()
    path.write_bytes(blob[:-100])
    with pytest.raises(RawFileError, match=r"c\.cube.*bytes, expected"):
        load_cube(path)
    meta, start = header(blob)
    at = start + meta["arrays"]["S2L2A/bands"]["offset"]
    damaged = bytearray(blob)
    damaged[at : at + 16] = bytes(16)  # the Blosc block header
    path.write_bytes(bytes(damaged))
    with pytest.raises(RawFileError, match="unreadable aligned cube"):
        load_cube(path)


def test_checksums_of_either_form_are_checked(tmp_path: Path) -> None:
    """A cube's recorded checksum is xxh3-128 ("xxh3:" and 32 hex digits); a 64-digit one
    (a sha256, recorded by earlier versions) is checked as a sha256. Either catches a
    flipped byte."""
    path = tmp_path / "c.cube"
    recorded = save_cube(path, small_cube())
    assert recorded.startswith("xxh3:") and len(recorded) == 5 + 32
    assert recorded == file_checksum(path) and recorded != file_checksum(path, "0" * 64)
    legacy = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_checksum(path, legacy) == legacy
    for checksum in (recorded, legacy):
        assert intact(path, checksum)
        assert_same(small_cube(), load_cube(path, checksum))
    damaged = bytearray(path.read_bytes())
    damaged[-1] ^= 1
    path.write_bytes(bytes(damaged))
    for checksum in (recorded, legacy):
        assert not intact(path, checksum)
        with pytest.raises(RawFileError, match="checksum differs"):
            load_cube(path, checksum)


def test_arrays_decode_into_a_given_buffer_and_its_size_is_checked(tmp_path: Path) -> None:
    cube = small_cube()
    path = tmp_path / "c.cube"
    save_cube(path, cube)
    opened = CubeFile(path)
    shape, dtype = opened.shape("S2L2A/bands")
    buffer = np.full(shape, -1, dtype)
    out = opened.array("S2L2A/bands", buffer)
    assert np.shares_memory(out, buffer)
    np.testing.assert_array_equal(buffer, cube.modalities["S2L2A"].bands)
    with pytest.raises(RawFileError, match="a buffer of"):
        opened.array("S2L2A/bands", np.empty(buffer.size - 1, dtype))
    # a Blosc header that announces fewer bytes than the array holds leaves no stale values
    meta, start = header(path.read_bytes())
    damaged = bytearray(path.read_bytes())
    at = start + meta["arrays"]["S2L2A/bands"]["offset"]
    struct.pack_into("<I", damaged, at + 4, buffer.nbytes - 2)
    path.write_bytes(bytes(damaged))
    with pytest.raises(RawFileError, match="expected"):
        CubeFile(path).array("S2L2A/bands", buffer)


def test_version_1_files_still_load(tmp_path: Path) -> None:
    """Version 1: the same layout, every array raw, no codec or length per array."""
    cube = small_cube()
    arrays = {"x": cube.x, "y": cube.y, "cloud_mask": cube.cloud_mask}
    for name, m in cube.modalities.items():
        arrays[f"{name}/bands"], arrays[f"{name}/time"] = m.bands, m.time
    layout, offset = {}, 0
    for name, a in arrays.items():
        layout[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset}
        offset = -(-(offset + a.nbytes) // ALIGN) * ALIGN
    header = json.dumps(
        {
            "sample_id": cube.sample_id, "epsg": cube.epsg, "center_lon": cube.center_lon,
            "center_lat": cube.center_lat, "tile_id": list(cube.tile_id),
            "tile_crs": list(cube.tile_crs), "season": list(cube.season),
            "modalities": {
                n: {"band_names": list(m.band_names), "file_id": list(m.file_id)}
                for n, m in cube.modalities.items()
            },
            "arrays": layout, "data_bytes": offset,
        }
    ).encode()  # fmt: skip
    start = -(-(len(MAGIC_V1) + 8 + len(header)) // ALIGN) * ALIGN
    blob = bytearray(start + offset)
    blob[: len(MAGIC_V1) + 8 + len(header)] = MAGIC_V1 + struct.pack("<Q", len(header)) + header
    for name, a in arrays.items():
        at = start + layout[name]["offset"]
        blob[at : at + a.nbytes] = np.ascontiguousarray(a).tobytes()
    path = tmp_path / "v1.cube"
    path.write_bytes(bytes(blob))
    assert_same(cube, load_cube(path))
