"""Stage `pack`, core: split, shard plan, and the v1.1 Zarr layout (SPEC section 6).

- Split: whole spatial blocks (``split_block_deg`` cells of lon/lat) go to one split; blocks are
  drawn in seeded random order into validation until it holds ``val_fraction`` of the locations.
- Shards: each split shuffled (seeded), cut into shards of ``shard_size``; the remainder is kept
  out (reported) unless ``keep_partial``. Shard ``k`` of a split holds the same samples, in the
  same order, in every modality folder.
- Files: Zarr format 2 inside a zip, each entry written once (the store is built in a temporary
  directory, then zipped with sorted names and fixed timestamps, so the same input gives
  byte-identical files).
"""

from __future__ import annotations

import io
import math
import os
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import xarray as xr
import zarr
from numcodecs.abc import Codec
from numpy.typing import NDArray

from .. import modalities as registry
from ..align.cube import AlignedCube, load_cube
from ..files import atomic_target, commit_file, scratch_dir
from ..raster_io import RawFileError

SPLITS = ("train", "val")
CHECKSUMS = "checksums.sha256"  # every file of a dataset root, in the sha256sum format
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def shard_name(split: str, number: int) -> str:
    return f"ssl4eos12_{split}_seasonal_data_{number:06d}.zarr.zip"


def shard_relpath(split: str, modality: str, number: int) -> str:
    return f"{split}/{modality}/{shard_name(split, number)}"


@dataclass(frozen=True)
class Located:
    sample_id: str
    lon: float
    lat: float


def spatial_split(
    items: Sequence[Located], val_fraction: float, block_deg: float, seed: int
) -> dict[str, list[str]]:
    """Whole blocks to one split; each split's ids shuffled (seeded)."""
    blocks: dict[tuple[int, int], list[str]] = {}
    for it in sorted(items, key=lambda i: i.sample_id):
        key = (math.floor(it.lon / block_deg), math.floor(it.lat / block_deg))
        blocks.setdefault(key, []).append(it.sample_id)
    rng = np.random.default_rng([seed, 1])
    keys = sorted(blocks)
    order = rng.permutation(len(keys))
    target = round(val_fraction * len(items))
    val: list[str] = []
    train: list[str] = []
    for i in order:
        ids = blocks[keys[int(i)]]
        (val if len(val) < target else train).extend(ids)
    out = {"train": sorted(train), "val": sorted(val)}
    for n, split in enumerate(SPLITS):
        perm = np.random.default_rng([seed, 2, n]).permutation(len(out[split]))
        out[split] = [out[split][int(j)] for j in perm]
    return out


@dataclass(frozen=True)
class ShardPlan:
    split: str
    number: int
    sample_ids: tuple[str, ...]


def plan_shards(
    splits: dict[str, list[str]], shard_size: int, keep_partial: bool
) -> tuple[list[ShardPlan], dict[str, list[str]]]:
    """Shards per split (numbered from 1) and the samples left out of them."""
    plans, left = [], {}
    for split in SPLITS:
        ids = splits.get(split, [])
        full = len(ids) // shard_size
        for k in range(full):
            plans.append(ShardPlan(split, k + 1, tuple(ids[k * shard_size : (k + 1) * shard_size])))
        rest = ids[full * shard_size :]
        if rest and keep_partial:
            plans.append(ShardPlan(split, full + 1, tuple(rest)))
            rest = []
        left[split] = rest
    return plans, left


def shard_dataset(cubes: Sequence[AlignedCube], modality: str) -> xr.Dataset:
    """The v1.1 variables of one modality for ``cubes`` (in order)."""
    first = cubes[0].modalities[modality]
    size = cubes[0].x.shape[0]
    n_time = first.bands.shape[0]
    bands = np.stack([c.modalities[modality].bands for c in cubes])
    ids = np.array([c.sample_id for c in cubes], dtype="<U7")
    file_ids = [list(c.modalities[modality].file_id) for c in cubes]
    width = max(len(f) for row in file_ids for f in row)
    data_vars: dict[str, Any] = {
        "bands": (("sample", "time", "band", "y", "x"), bands),
        "center_lat": (("sample",), np.array([c.center_lat for c in cubes], dtype=np.float64)),
        "center_lon": (("sample",), np.array([c.center_lon for c in cubes], dtype=np.float64)),
        "crs": (("sample",), np.array([c.epsg for c in cubes], dtype=np.int64)),
        "file_id": (("sample", "time"), np.array(file_ids, dtype=f"<U{width}")),
        "sample_id": (
            ("sample", "time"),
            np.array([[f"{s}_{t}" for t in range(n_time)] for s in ids], dtype="<U9"),
        ),
        "time_": (
            ("sample", "time"),
            whole_seconds(np.stack([c.modalities[modality].time for c in cubes])),
        ),
        "x_": (("sample", "x"), np.stack([c.x for c in cubes]).astype(np.float64)),
        "y_": (("sample", "y"), np.stack([c.y for c in cubes]).astype(np.float64)),
    }
    if registry.modality(modality).cloud_mask:
        data_vars["cloud_mask"] = (
            ("sample", "time", "y", "x"),
            np.stack([c.cloud_mask for c in cubes]).astype(np.uint8),
        )
    band_names = first.band_names
    return xr.Dataset(
        data_vars,
        coords={
            "band": np.array(band_names, dtype=f"<U{max(len(b) for b in band_names)}"),
            "sample": ids,
            "time": np.arange(n_time, dtype=np.int64),
            "x": np.arange(size, dtype=np.int64),
            "y": np.arange(size, dtype=np.int64),
        },
    )


def blosc(cname: str, clevel: int) -> numcodecs.Blosc:
    return numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=numcodecs.Blosc.SHUFFLE)


def write_zarr_zip(
    ds: xr.Dataset,
    path: Path,
    compressor: numcodecs.abc.Codec,
    chunk_time: bool = True,
    scratch: Path | None = None,
) -> str:
    """Zarr v2 in a zip: build the store in a temporary directory (in ``scratch`` when given),
    zip it deterministically, fsync, rename; returns the file's sha256. With ``chunk_time``
    (shards: dims sample, time, ...) ``bands`` and ``cloud_mask`` get one chunk per time
    index; otherwise one chunk each."""
    encoding: dict[str, dict[str, Any]] = {}
    for name in ("bands", "cloud_mask"):
        if name in ds:
            chunks = list(ds[name].shape)
            if chunk_time:
                chunks[1] = 1
            encoding[name] = {"chunks": tuple(chunks), "compressors": compressor}
    if int(zarr.__version__.split(".")[0]) < 3:  # pragma: no cover - zarr 2 spelling
        encoding = {
            k: {"chunks": v["chunks"], "compressor": v["compressors"]} for k, v in encoding.items()
        }
        extra: dict[str, Any] = {}
    else:
        extra = {"zarr_format": 2}
    path.parent.mkdir(parents=True, exist_ok=True)
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch or path.parent, prefix=".pack-") as tmp:
        store = Path(tmp) / "store"
        ds.to_zarr(store, mode="w", consolidated=True, encoding=encoding, **extra)
        target = atomic_target(path, scratch)
        try:
            with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
                for file in sorted(p for p in store.rglob("*") if p.is_file()):
                    info = zipfile.ZipInfo(file.relative_to(store).as_posix(), ZIP_EPOCH)
                    info.external_attr = 0o644 << 16
                    archive.writestr(info, file.read_bytes())
            return commit_file(target, path)
        finally:
            target.unlink(missing_ok=True)


def open_shard(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a packed shard under zarr 2 (plain path) or zarr 3 (ZipStore)."""
    if int(zarr.__version__.split(".")[0]) >= 3:
        return xr.open_zarr(zarr.storage.ZipStore(str(path), mode="r"), consolidated=True)
    return xr.open_zarr(str(path), consolidated=True)  # pragma: no cover - zarr 2


@dataclass
class RunningStats:
    """Per-band sums for mean/std over many shards (float64, exact enough for DN and dB)."""

    count: NDArray[np.float64] | None = None
    total: NDArray[np.float64] | None = None
    squares: NDArray[np.float64] | None = None

    def add(self, bands: np.ndarray) -> None:
        values = bands.astype(np.float64)
        axes = (0, 1, 3, 4)
        count = np.full(values.shape[2], values.size / values.shape[2])
        total, squares = values.sum(axis=axes), np.square(values).sum(axis=axes)
        if self.count is None:
            self.count, self.total, self.squares = count, total, squares
        else:
            self.count = self.count + count
            self.total = self.total + total
            self.squares = self.squares + squares

    def as_dict(self) -> dict[str, list[float]]:
        return {
            "count": [] if self.count is None else self.count.tolist(),
            "total": [] if self.total is None else self.total.tolist(),
            "squares": [] if self.squares is None else self.squares.tolist(),
        }

    @classmethod
    def merged(cls, parts: Sequence[dict[str, list[float]]]) -> RunningStats:
        out = cls()
        for part in parts:
            if not part["count"]:
                continue
            c, t, s = (np.array(part[k]) for k in ("count", "total", "squares"))
            if out.count is None:
                out.count, out.total, out.squares = c, t, s
            else:
                out.count, out.total = out.count + c, out.total + t
                out.squares = out.squares + s
        return out

    def mean_std(self) -> tuple[list[float], list[float]]:
        if self.count is None or self.total is None or self.squares is None:
            return [], []
        mean = self.total / self.count
        var = np.maximum(self.squares / self.count - mean**2, 0.0)
        return [round(float(m), 3) for m in mean], [round(float(v), 3) for v in np.sqrt(var)]


def footprint_wkb(cube: AlignedCube) -> bytes:
    """The patch footprint as published: the rectangle of its pixel edges, its four corners
    transformed to EPSG:4326, as a five-point counter-clockwise WKB polygon."""
    import shapely
    from shapely.geometry.polygon import orient

    from ..grid import transformer

    half = abs(float(cube.x[1] - cube.x[0])) / 2.0
    x0, x1 = float(cube.x[0]) - half, float(cube.x[-1]) + half
    y0, y1 = float(cube.y[-1]) - half, float(cube.y[0]) + half
    # Lower left, lower right, upper right, upper left: counter-clockwise with y up, and the
    # transform to lon/lat keeps the orientation.
    lon, lat = transformer(cube.epsg, 4326).transform([x0, x1, x1, x0], [y0, y0, y1, y1])
    polygon = orient(shapely.Polygon(np.column_stack([lon, lat])), sign=1.0)
    return bytes(shapely.to_wkb(polygon))


def geoparquet_metadata(footprints: Sequence[bytes]) -> dict[str, Any]:
    """GeoParquet 1.1 ``geo`` metadata for the footprint column: WKB polygons in EPSG:4326
    (explicit PROJJSON ``crs``) and the ``bbox`` of them all."""
    import shapely
    from pyproj import CRS

    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Polygon"],
        "crs": CRS.from_epsg(4326).to_json_dict(),
        "edges": "planar",
        "orientation": "counterclockwise",
    }
    if footprints:
        bounds = shapely.bounds(shapely.from_wkb(list(footprints)))
        column["bbox"] = [
            float(bounds[:, 0].min()),
            float(bounds[:, 1].min()),
            float(bounds[:, 2].max()),
            float(bounds[:, 3].max()),
        ]
    return {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}


def whole_seconds(times: NDArray[Any]) -> NDArray[np.datetime64]:
    """Timestamps truncated to whole seconds, as datetime64[ns] (the published ``time_``)."""
    return np.asarray(times).astype("datetime64[s]").astype("datetime64[ns]")


def metadata_rows(cube: AlignedCube, file_name: str) -> list[dict[str, Any]]:
    """v1.1 split-metadata rows of one sample: one per timestamp (S-2 based)."""
    geometry = footprint_wkb(cube)
    l2a = cube.modalities["S2L2A"]
    return [
        {
            "idx": f"{cube.sample_id}_{t}",
            "sample_id": cube.sample_id,
            "time_id": t,
            "time": str(l2a.time[t].astype("datetime64[s]")),
            "tile_id": cube.tile_id[t],
            "geometry": geometry,
            "tile_crs": cube.tile_crs[t],
            "file": file_name,
        }
        for t in range(len(l2a.time))
    ]


@dataclass(frozen=True)
class ShardResult:
    split: str
    number: int
    files: tuple[tuple[str, str, int, str], ...]  # (relpath, modality, n_samples, sha256)
    metadata: tuple[dict[str, Any], ...]
    stats: dict[str, dict[str, list[float]]]  # modality -> RunningStats.as_dict()
    damaged: tuple[str, ...] = ()  # sample ids whose cube is missing or damaged: nothing written


CubeFiles = dict[str, tuple[str, str | None]]  # sample id -> (cube path, sha256 or None)
INT16_MAX = 32767


@dataclass(frozen=True)
class Encoding:
    """How a layout stores values: the Blosc codec per modality and the offset added to S-2
    digital numbers (the published Zarr shards carry +1000, the WebDataset members none)."""

    compressor: dict[str, tuple[str, int]]
    s2_offset: int = 0
    # "v1_shift" when every sample's dates come from v1's rule (so they lie within a year)
    date_rule: str | None = None

    def codec(self, modality: str) -> Codec:
        return blosc(*self.compressor[modality])

    def label(self, ds: xr.Dataset, modality: str) -> xr.Dataset:
        """What the file says about its values: ``bands`` attribute ``dn_offset`` on S-2
        digital numbers (not the CF ``add_offset``, which readers would apply), and the date
        rule of its samples."""
        if modality in registry.dn_modalities():
            ds["bands"].attrs["dn_offset"] = self.s2_offset
        if self.date_rule:
            ds.attrs["date_rule"] = self.date_rule
        return ds


ModalityWriter = Callable[[list[AlignedCube], str, Path, Encoding, Path], str]


def with_offset(cube: AlignedCube, s2_offset: int) -> AlignedCube:
    """``cube`` with ``s2_offset`` added to its S-2 digital numbers, saturating at 32767."""
    if not s2_offset:
        return cube
    modalities = dict(cube.modalities)
    for name in registry.dn_modalities():
        m = modalities[name]
        shifted = np.minimum(m.bands.astype(np.int32) + s2_offset, INT16_MAX).astype(np.int16)
        modalities[name] = replace(m, bands=shifted)
    return replace(cube, modalities=modalities)


def write_shard(
    out_dir: Path, cubes: CubeFiles, encoding: Encoding, plan: ShardPlan
) -> ShardResult:
    """Load the plan's cubes and write its file in every modality folder."""

    def write(
        cubes: list[AlignedCube], modality: str, path: Path, encoding: Encoding, tmp: Path
    ) -> str:
        ds = encoding.label(shard_dataset(cubes, modality), modality)
        return write_zarr_zip(ds, path, encoding.codec(modality), scratch=tmp)

    name = shard_name(plan.split, plan.number)
    return _write_modalities(out_dir, cubes, encoding, plan, name, write)


def _write_modalities(
    out_dir: Path,
    cube_files: CubeFiles,
    encoding: Encoding,
    plan: ShardPlan,
    file_name: str,
    write: ModalityWriter,
) -> ShardResult:
    """Load the plan's cubes (each checked against its recorded sha256), ``write`` them to
    ``{split}/{modality}/{file_name}`` for every modality as the layout stores them, and
    describe what was written (band sums of the stored values). A missing or damaged cube
    writes nothing and is named in the result."""
    cubes, damaged = [], []
    for sample_id in plan.sample_ids:
        path, sha256 = cube_files[sample_id]
        try:
            cubes.append(with_offset(load_cube(Path(path), sha256), encoding.s2_offset))
        except RawFileError:
            damaged.append(sample_id)
    if damaged:
        return ShardResult(plan.split, plan.number, (), (), {}, tuple(damaged))
    files = []
    for modality in registry.names():
        rel = f"{plan.split}/{modality}/{file_name}"
        sha256 = write(cubes, modality, out_dir / rel, encoding, scratch_dir(out_dir))
        files.append((rel, modality, len(cubes), sha256))
    metadata = tuple(row for c in cubes for row in metadata_rows(c, file_name))
    return ShardResult(plan.split, plan.number, tuple(files), metadata, _band_sums(cubes))


# -- WebDataset layout (2026 v1.1 release) ---------------------------------------------------


def tar_name(number: int) -> str:
    return f"ssl4eos12_shard_{number:06d}.tar"


def plan_tars(splits: dict[str, list[str]], samples_per_tar: int) -> list[ShardPlan]:
    """Every sample of each split, in the split's shuffled order, ~``samples_per_tar`` a tar."""
    plans = []
    for split in SPLITS:
        ids = splits.get(split, [])
        for k in range(math.ceil(len(ids) / samples_per_tar)):
            chunk = tuple(ids[k * samples_per_tar : (k + 1) * samples_per_tar])
            plans.append(ShardPlan(split, k + 1, chunk))
    return plans


def sample_dataset(cube: AlignedCube, modality: str) -> xr.Dataset:
    """One sample as the WebDataset member's consolidated Zarr: ``bands`` (time, band, y, x)."""
    m = cube.modalities[modality]
    data_vars: dict[str, Any] = {
        "bands": (("time", "band", "y", "x"), m.bands),
        "center_lon": ((), np.float64(cube.center_lon)),
        "center_lat": ((), np.float64(cube.center_lat)),
        "file_id": (("time",), np.array(m.file_id)),
    }
    if registry.modality(modality).cloud_mask:
        data_vars["cloud_mask"] = (("time", "y", "x"), cube.cloud_mask.astype(np.uint8))
    return xr.Dataset(
        data_vars,
        coords={
            "band": np.array(m.band_names),
            "time": whole_seconds(m.time).astype(np.int64),
        },
    )


def write_tar(out_dir: Path, cubes: CubeFiles, encoding: Encoding, plan: ShardPlan) -> ShardResult:
    """One tar per modality: a ``{sample_id}.zarr.zip`` member per sample, keys aligned."""
    name = tar_name(plan.number)
    return _write_modalities(out_dir, cubes, encoding, plan, name, _write_one_tar)


def _write_one_tar(
    cubes: list[AlignedCube], modality: str, path: Path, encoding: Encoding, scratch: Path
) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    target = atomic_target(path, scratch)
    try:
        with (
            tempfile.TemporaryDirectory(dir=scratch, prefix=".wds-") as tmp,
            tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as archive,
        ):
            for cube in cubes:
                member = Path(tmp) / f"{cube.sample_id}.zarr.zip"
                ds = encoding.label(sample_dataset(cube, modality), modality)
                write_zarr_zip(ds, member, encoding.codec(modality), chunk_time=False)
                info = tarfile.TarInfo(member.name)
                data = member.read_bytes()
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                archive.addfile(info, io.BytesIO(data))
                member.unlink()
        return commit_file(target, path)
    finally:
        target.unlink(missing_ok=True)


def _band_sums(cubes: Sequence[AlignedCube]) -> dict[str, dict[str, list[float]]]:
    out = {}
    for modality in registry.names():
        running = RunningStats()
        running.add(np.stack([c.modalities[modality].bands for c in cubes]))
        out[modality] = running.as_dict()
    return out
