"""Stage `pack`, core: split, shard plan, and the v1.1 Zarr layout (SPEC section 6).

- Split: whole spatial blocks (``split_block_deg`` cells of lon/lat) go to one split; blocks are
  drawn in seeded random order into validation until it holds ``val_fraction`` of the locations.
- Shards: each split shuffled (seeded), cut into shards of ``shard_size``; the remainder is kept
  out (reported) unless ``keep_partial``. Shard ``k`` of a split holds the same samples, in the
  same order, in every modality folder.
- Files: Zarr format 2 inside a zip, each entry written once, in sorted order with fixed
  timestamps, so the same input gives byte-identical files (:mod:`.zarr_zip`). A shard holds
  one modality in memory at a time; a tar, one sample.
"""

from __future__ import annotations

import math
import os
import tarfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import xarray as xr
import zarr
from numpy.typing import NDArray

from .. import modalities as registry
from ..align.cube import AlignedCube, CubeFile
from ..files import HashingWriter, atomic_target, commit_file, scratch_dir
from ..raster_io import RawFileError
from .blosc_blocks import BloscChunk
from .zarr_zip import Variable, write_zarr_zip, zarr_zip_buffer

SPLITS = ("train", "val")
CHECKSUMS = "checksums.sha256"  # every file of a dataset root, in the sha256sum format


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


def shard_variables(
    cubes: Sequence[CubeFile],
    modality: str,
    bands: NDArray[Any] | TimeChunks,
    cloud_mask: NDArray[np.uint8] | TimeChunks | None,
    encoding: Encoding,
) -> dict[str, Variable]:
    """The v1.1 variables of one modality for ``cubes`` (in order): ``bands`` (sample, time,
    band, y, x) as stored, one chunk per time index, and the S-2 ``cloud_mask`` when given."""
    n, n_time = bands.shape[:2]
    size = cubes[0].x.shape[0]
    codec = encoding.codec(modality)
    band_names = cubes[0].band_names(modality)
    ids = np.array([c.sample_id for c in cubes], dtype="<U7")
    file_ids = [list(c.file_id(modality)) for c in cubes]
    width = max(len(f) for row in file_ids for f in row)
    out = {
        "band": Variable(("band",), np.array(band_names, dtype=f"<U{max(map(len, band_names))}")),
        "bands": Variable(
            ("sample", "time", "band", "y", "x"),
            bands,
            (n, 1, *bands.shape[2:]),
            codec,
            encoding.bands_attrs(modality),
        ),
        "center_lat": Variable(("sample",), np.array([c.center_lat for c in cubes])),
        "center_lon": Variable(("sample",), np.array([c.center_lon for c in cubes])),
        "crs": Variable(("sample",), np.array([c.epsg for c in cubes], dtype=np.int64)),
        "file_id": Variable(("sample", "time"), np.array(file_ids, dtype=f"<U{width}")),
        "sample": Variable(("sample",), ids),
        "sample_id": Variable(
            ("sample", "time"),
            np.array([[f"{s}_{t}" for t in range(n_time)] for s in ids], dtype="<U9"),
        ),
        "time": Variable(("time",), np.arange(n_time, dtype=np.int64)),
        "time_": Variable.times(("sample", "time"), np.stack([c.time(modality) for c in cubes])),
        "x": Variable(("x",), np.arange(size, dtype=np.int64)),
        "x_": Variable(("sample", "x"), np.stack([c.x for c in cubes]).astype(np.float64)),
        "y": Variable(("y",), np.arange(size, dtype=np.int64)),
        "y_": Variable(("sample", "y"), np.stack([c.y for c in cubes]).astype(np.float64)),
    }
    if cloud_mask is not None:
        chunks = (n, 1, size, size)
        out["cloud_mask"] = Variable(("sample", "time", "y", "x"), cloud_mask, chunks, codec)
    return out


def blosc(cname: str, clevel: int, blocksize: int = 0) -> numcodecs.Blosc:
    """Blosc with byte shuffle (``blocksize`` 0: Blosc chooses)."""
    return numcodecs.Blosc(
        cname=cname, clevel=clevel, shuffle=numcodecs.Blosc.SHUFFLE, blocksize=blocksize
    )


def open_shard(path: str | os.PathLike[str], **kwargs: Any) -> xr.Dataset:
    """Open a packed shard under zarr 2 (plain path) or zarr 3 (ZipStore); ``kwargs`` go to
    ``xr.open_zarr``."""
    if int(zarr.__version__.split(".")[0]) >= 3:
        store = zarr.storage.ZipStore(str(path), mode="r")
        return xr.open_zarr(store, consolidated=True, **kwargs)
    return xr.open_zarr(str(path), consolidated=True, **kwargs)  # pragma: no cover - zarr 2


@dataclass
class RunningStats:
    """Per-band sums for mean/std over many shards (float64, exact enough for DN and dB)."""

    count: NDArray[np.float64] | None = None
    total: NDArray[np.float64] | None = None
    squares: NDArray[np.float64] | None = None

    def add(self, bands: np.ndarray) -> RunningStats:
        """Add (sample, time, band, y, x) values, one sample and band at a time (a float64
        copy of the whole array would cost more than the sums), each copied into a reused
        float64 buffer (a fresh one per band cost as much as the sums); returns ``self``."""
        n_bands = bands.shape[2]
        count = np.full(n_bands, bands.size / max(n_bands, 1))
        total, squares = np.zeros(n_bands), np.zeros(n_bands)
        values = reused("sums", bands.shape[1:2] + bands.shape[3:], np.dtype(np.float64))
        flat = values.reshape(-1)
        for b in range(n_bands):
            for sample in bands[:, :, b]:
                np.copyto(values, sample)
                total[b] += flat.sum()
                squares[b] += flat @ flat
        return self.add_sums(RunningStats(count, total, squares))

    def add_sums(self, other: RunningStats) -> RunningStats:
        """Add the sums of other values; returns ``self``."""
        if other.count is None or other.total is None or other.squares is None:
            return self
        if self.count is None or self.total is None or self.squares is None:
            self.count, self.total, self.squares = other.count, other.total, other.squares
        else:
            self.count = self.count + other.count
            self.total = self.total + other.total
            self.squares = self.squares + other.squares
        return self

    def shifted(self, offset: int) -> RunningStats:
        """The sums of the same values plus ``offset``."""
        if self.count is None or self.total is None or self.squares is None or not offset:
            return self
        return RunningStats(
            self.count,
            self.total + offset * self.count,
            self.squares + 2 * offset * self.total + offset**2 * self.count,
        )

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
            if part["count"]:
                out.add_sums(cls(*(np.array(part[k]) for k in ("count", "total", "squares"))))
        return out

    def mean_std(self) -> tuple[list[float], list[float]]:
        if self.count is None or self.total is None or self.squares is None:
            return [], []
        mean = self.total / self.count
        var = np.maximum(self.squares / self.count - mean**2, 0.0)
        return [round(float(m), 3) for m in mean], [round(float(v), 3) for v in np.sqrt(var)]


def footprint_wkb(cube: AlignedCube | CubeFile) -> bytes:
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


def metadata_rows(cube: CubeFile, file_name: str) -> list[dict[str, Any]]:
    """v1.1 split-metadata rows of one sample: one per timestamp (S-2 based)."""
    geometry = footprint_wkb(cube)
    times = cube.time("S2L2A")
    return [
        {
            "idx": f"{cube.sample_id}_{t}",
            "sample_id": cube.sample_id,
            "time_id": t,
            "time": str(times[t].astype("datetime64[s]")),
            "tile_id": cube.tile_id[t],
            "geometry": geometry,
            "tile_crs": cube.tile_crs[t],
            "file": file_name,
        }
        for t in range(len(times))
    ]


@dataclass(frozen=True)
class ShardResult:
    split: str
    number: int
    files: tuple[tuple[str, str, int, str], ...]  # (relpath, modality, n_samples, sha256)
    metadata: tuple[dict[str, Any], ...]
    stats: dict[str, dict[str, list[float]]]  # modality -> RunningStats.as_dict()
    damaged: tuple[str, ...] = ()  # sample ids whose cube is missing or damaged: nothing written

    @classmethod
    def of_damaged(cls, plan: ShardPlan, sample_ids: Sequence[str]) -> ShardResult:
        """Nothing written: these samples' cubes are missing or damaged."""
        return cls(plan.split, plan.number, (), (), {}, tuple(sample_ids))


CubeFiles = dict[str, tuple[str, str | None]]  # sample id -> (cube path, checksum or None)
INT16_MAX = 32767


@dataclass(frozen=True)
class Encoding:
    """How a layout stores values: the Blosc codec per modality and the offset added to S-2
    digital numbers (the published Zarr shards carry +1000, the WebDataset members none)."""

    compressor: dict[str, tuple[str, int, int]]  # modality -> Blosc cname, clevel, blocksize
    s2_offset: int = 0
    # "v1_shift" when every sample's dates come from v1's rule (so they lie within a year)
    date_rule: str | None = None
    # Where the pixels come from and what made them (:func:`provenance`): the same on every
    # rerun of the same build, so shards stay byte-identical.
    provenance: tuple[tuple[str, str], ...] = ()

    def codec(self, modality: str) -> numcodecs.Blosc:
        return blosc(*self.compressor[modality])

    def bands_attrs(self, modality: str) -> dict[str, Any]:
        """What ``bands`` says about its values: ``dn_offset`` on S-2 digital numbers (not the
        CF ``add_offset``, which readers would apply)."""
        return {"dn_offset": self.s2_offset} if modality in registry.dn_modalities() else {}

    def attrs(self) -> dict[str, Any]:
        """The file's own attributes: its provenance, the offset on its S-2 digital numbers
        and the date rule of its samples."""
        out: dict[str, Any] = {**dict(self.provenance), "s2_dn_offset": self.s2_offset}
        if self.date_rule:
            out["date_rule"] = self.date_rule
        return out

    def offset(self, modality: str) -> int:
        """What this layout adds to ``modality``'s values (S-2 digital numbers only)."""
        return self.s2_offset if modality in registry.dn_modalities() else 0

    def shift(
        self,
        modality: str,
        bands: NDArray[Any],
        out: NDArray[Any] | None = None,
        peak: float | None = None,
    ) -> NDArray[Any]:
        """``bands`` with the layout's offset added to S-2 digital numbers, saturating at
        32767: into ``out`` when given, else in place when ``bands`` is writeable. With
        ``peak``, their largest value, at or below 32767 - offset: one addition."""
        offset = self.offset(modality)
        if out is None:
            if not offset:
                return bands
            out = bands if bands.flags.writeable else np.empty_like(bands)
        if not offset:
            out[...] = bands
        elif peak is not None and peak <= INT16_MAX - offset:
            np.add(bands, offset, out=out)
        else:
            np.minimum(bands, INT16_MAX - offset, out=out)
            out += offset
        return out

    def sums(
        self, modality: str, before: RunningStats, peak: float, stored: NDArray[Any]
    ) -> RunningStats:
        """The band sums of one sample's ``stored`` values (time, band, y, x), derived from
        ``before``, the sums of its values before the offset, when no value saturates
        (``peak``: their largest): a pass over the pixels fewer per layout."""
        offset = self.offset(modality)
        if not offset or peak <= INT16_MAX - offset:
            return before.shifted(offset)
        return RunningStats().add(stored[None])


@dataclass(frozen=True)
class Output:
    """Where and how a layout is written (``sync``: each file fsynced before it is
    committed, else left to the caller)."""

    root: Path
    encoding: Encoding
    sync: bool = True


class _DamagedCube(Exception):
    def __init__(self, sample_id: str) -> None:
        self.sample_id = sample_id


ZARR, WEBDATASET = "zarr", "webdataset"  # the layouts


@dataclass(frozen=True)
class PackPart:
    """One modality of consecutive samples of a split: the unit of work `pack` spreads over
    the cores. It writes the Zarr ``shards`` (each a consecutive run of the samples) and the
    ``tar`` (all the samples, in its order), reading each cube's modality once for both
    layouts. The first modality's part also carries the metadata rows."""

    modality: str
    cube_files: CubeFiles  # the samples: cube path and recorded checksum
    shards: tuple[ShardPlan, ...] = ()
    tar: ShardPlan | None = None

    def __post_init__(self) -> None:
        samples = self.samples
        at = {sample_id: i for i, sample_id in enumerate(samples)}
        for plan in self.shards:
            start = at.get(plan.sample_ids[0], -1)
            if samples[start : start + len(plan.sample_ids)] != plan.sample_ids:
                raise ValueError(f"shard {plan.split} {plan.number}: not a run of the part")

    @classmethod
    def of(
        cls, modality: str, cubes: CubeFiles, shards: tuple[ShardPlan, ...], tar: ShardPlan | None
    ) -> PackPart:
        """The part, carrying only its own samples' entries of ``cubes`` (it is pickled)."""
        part = cls(modality, {}, shards, tar)
        return replace(part, cube_files={i: cubes[i] for i in part.samples if i in cubes})

    @property
    def samples(self) -> tuple[str, ...]:
        if self.tar is not None:
            return self.tar.sample_ids
        return tuple(i for plan in self.shards for i in plan.sample_ids)

    @property
    def files(self) -> list[tuple[str, ShardPlan]]:
        """What the part writes: (layout, plan) per file."""
        tar = [(WEBDATASET, self.tar)] if self.tar is not None else []
        return [(ZARR, plan) for plan in self.shards] + tar

    @property
    def first(self) -> bool:
        return self.modality == registry.names()[0]


def _open_cubes(part: PackPart) -> tuple[list[CubeFile], list[str]]:
    """The part's cubes and the ids of damaged (or unrecorded) ones. The first modality's
    part checks each cube against its recorded checksum (hashing every cube once per part, not
    once per modality or layout): a shard is recorded only when every part succeeded, so a
    damaged cube it finds keeps its files out until the cube is aligned again."""
    opened, damaged = [], []
    for sample_id in part.samples:
        if sample_id not in part.cube_files:
            damaged.append(sample_id)
            continue
        path, recorded = part.cube_files[sample_id]
        try:
            opened.append(CubeFile(Path(path), recorded if part.first else None))
        except RawFileError:
            damaged.append(sample_id)
    return opened, damaged


_BUFFERS = threading.local()


def reused(key: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> NDArray[Any]:
    """An uninitialised array of this thread, reused by the next call with the same ``key``:
    a part's arrays are hundreds of MB, and writing into fresh memory costs a page fault
    every 4 KiB (a third of a shard's time on the benchmark machine). Valid until the next
    call with ``key`` in the same thread."""
    pool: dict[str, NDArray[np.uint8]] = _BUFFERS.__dict__.setdefault("pool", {})
    nbytes = math.prod(shape) * dtype.itemsize
    buffer = pool.get(key)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = pool[key] = np.empty(nbytes, np.uint8)
    return buffer[:nbytes].view(dtype).reshape(shape)


def _kind(name: str) -> str:
    """Which reused buffer an array goes to: every modality's bands share one."""
    return "mask" if name == "cloud_mask" else "bands"


def _array(cube: CubeFile, name: str) -> NDArray[Any]:
    """One array of ``cube``, decoded into this thread's reused buffer for its kind."""
    try:
        return cube.array(name, reused(f"cube:{_kind(name)}", *cube.shape(name)))
    except RawFileError:
        raise _DamagedCube(cube.sample_id) from None


class TimeChunks:
    """A (sample, time, ...) array of a shard, one chunk per time index, compressed block by
    block as its samples are added (:class:`BloscChunk`): a shard's S-2 stack is over 400 MB,
    and memory touched for the first time is slow (BENCHMARKS.md); this holds a few blocks
    and the compressed chunks."""

    def __init__(
        self, n: int, like: tuple[tuple[int, ...], np.dtype[Any]], codec: numcodecs.Blosc
    ) -> None:
        (n_time, *rest), dtype = like
        self.shape = (n, n_time, *rest)
        self.dtype = np.dtype(dtype)
        nbytes = n * math.prod(rest) * self.dtype.itemsize
        self.chunks = [BloscChunk(codec, nbytes, self.dtype) for _ in range(n_time)]

    def add(self, values: NDArray[Any]) -> None:
        """The next sample's (time, ...) values."""
        for chunk, at_time in zip(self.chunks, values, strict=True):
            chunk.write(at_time)

    def encoded_chunk(self, index: tuple[int, ...]) -> list[bytes]:
        """The chunk of one time index (``index`` is (0, time, 0, ...)), compressed."""
        if index[0] or any(index[2:]):
            raise IndexError(f"chunk {index}: a shard has one chunk per time index")
        return self.chunks[index[1]].pieces()


def _result(
    plan: ShardPlan,
    part: PackPart,
    cubes: Sequence[CubeFile],
    written: tuple[str, str],
    stats: RunningStats,
) -> ShardResult:
    """What a written file reports: the file, its band sums and (first modality only) the
    metadata rows of its samples."""
    rel, sha256 = written
    name = rel.rsplit("/", 1)[-1]
    metadata = tuple(row for c in cubes for row in metadata_rows(c, name)) if part.first else ()
    files = ((rel, part.modality, len(cubes), sha256),)
    return ShardResult(plan.split, plan.number, files, metadata, {part.modality: stats.as_dict()})


class _ZarrShard:
    """A Zarr shard of one modality being filled a sample at a time: its values with the
    layout's offset, compressed as they come, and its band sums."""

    def __init__(self, out: Output, part: PackPart, plan: ShardPlan, cube: CubeFile) -> None:
        self.out, self.part, self.plan = out, part, plan
        n, codec = len(plan.sample_ids), out.encoding.codec(part.modality)
        self.bands = TimeChunks(n, cube.shape(f"{part.modality}/bands"), codec)
        with_mask = registry.modality(part.modality).cloud_mask
        self.mask = TimeChunks(n, cube.shape("cloud_mask"), codec) if with_mask else None
        self.cubes: list[CubeFile] = []
        self.stats = RunningStats()

    def add(
        self, cube: CubeFile, bands: NDArray[Any], mask: NDArray[Any] | None, sums: Sums
    ) -> ShardResult | None:
        """One more sample; the result once the shard is full and written."""
        modality, encoding = self.part.modality, self.out.encoding
        stored = bands  # the tar needs them unshifted
        if encoding.offset(modality):
            room = reused("shifted", bands.shape, bands.dtype)
            stored = encoding.shift(modality, bands, room, sums[1])
        self.bands.add(stored)
        if self.mask is not None and mask is not None:
            self.mask.add(mask)
        self.stats.add_sums(encoding.sums(modality, sums[0], sums[1], stored))
        self.cubes.append(cube)
        if len(self.cubes) < len(self.plan.sample_ids):
            return None
        rel = shard_relpath(self.plan.split, modality, self.plan.number)
        variables = shard_variables(self.cubes, modality, self.bands, self.mask, encoding)
        root = self.out.root
        sha256 = write_zarr_zip(
            root / rel, variables, encoding.attrs(), scratch_dir(root), self.out.sync
        )
        return _result(self.plan, self.part, self.cubes, (rel, sha256), self.stats)


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


def sample_variables(
    cube: CubeFile,
    modality: str,
    bands: NDArray[Any],
    cloud_mask: NDArray[np.uint8] | None,
    encoding: Encoding,
) -> dict[str, Variable]:
    """One sample as the WebDataset member's consolidated Zarr: ``bands`` (time, band, y, x)
    in one chunk, ``time`` as int64 nanoseconds (0 for the DEM)."""
    codec = encoding.codec(modality)
    out = {
        "band": Variable(("band",), np.array(cube.band_names(modality))),
        "bands": Variable(
            ("time", "band", "y", "x"), bands, None, codec, encoding.bands_attrs(modality)
        ),
        "center_lat": Variable((), np.array(cube.center_lat, dtype=np.float64)),
        "center_lon": Variable((), np.array(cube.center_lon, dtype=np.float64)),
        "file_id": Variable(("time",), np.array(cube.file_id(modality))),
        "time": Variable(("time",), whole_seconds(cube.time(modality)).astype(np.int64)),
    }
    if cloud_mask is not None:
        out["cloud_mask"] = Variable(("time", "y", "x"), cloud_mask, None, codec)
    return out


def _tar_member(archive: HashingWriter, name: str, data: memoryview) -> None:
    """One regular file member (mode 644, mtime 0, owner 0), as ``tarfile`` writes it."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    archive.write(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
    archive.write(data)
    archive.write(bytes(-len(data) % tarfile.BLOCKSIZE))


class _TarFile:
    """A tar of one modality being written a member at a time, hashed on the way, as
    ``tarfile`` writes a USTAR archive: a ``{sample_id}.zarr.zip`` member per sample."""

    def __init__(self, out: Output, part: PackPart, plan: ShardPlan) -> None:
        self.out, self.part, self.plan = out, part, plan
        self.rel = f"{plan.split}/{part.modality}/{tar_name(plan.number)}"
        self.target = atomic_target(out.root / self.rel, scratch_dir(out.root))
        self.archive = HashingWriter(self.target)
        self.cubes: list[CubeFile] = []
        self.stats = RunningStats()

    def add(
        self, cube: CubeFile, bands: NDArray[Any], mask: NDArray[Any] | None, sums: Sums
    ) -> ShardResult | None:
        """One more member (``bands`` may be shifted in place); the result once the last one
        is written and the tar committed."""
        modality, encoding = self.part.modality, self.out.encoding
        stored = encoding.shift(modality, bands, peak=sums[1])
        self.stats.add_sums(encoding.sums(modality, sums[0], sums[1], stored))
        variables = sample_variables(cube, modality, stored, mask, encoding)
        _tar_member(
            self.archive, f"{cube.sample_id}.zarr.zip", zarr_zip_buffer(variables, encoding.attrs())
        )
        self.cubes.append(cube)
        if len(self.cubes) < len(self.plan.sample_ids):
            return None
        # the end: two zero blocks, then zeros to a whole record, as tarfile closes
        end = self.archive.size + 2 * tarfile.BLOCKSIZE
        self.archive.write(bytes(2 * tarfile.BLOCKSIZE + (-end % tarfile.RECORDSIZE)))
        self.archive.close()
        sha256 = commit_file(
            self.target, self.out.root / self.rel, self.archive.hexdigest(), self.out.sync
        )
        return _result(self.plan, self.part, self.cubes, (self.rel, sha256), self.stats)

    def close(self) -> None:
        """Closed, and gone unless committed."""
        self.archive.close()
        self.target.unlink(missing_ok=True)


Sums = tuple[RunningStats, float]  # a sample's band sums before any offset, and its peak


def _sums(modality: str, bands: NDArray[Any], outputs: Sequence[Output]) -> Sums:
    """One sample's band sums, once for every layout (each derives its own from them), and
    its largest value when a layout adds an offset to it (which may saturate)."""
    shifted = any(out.encoding.offset(modality) for out in outputs)
    return RunningStats().add(bands[None]), float(bands.max()) if shifted else 0.0


def write_part(
    part: PackPart, zarr: Output | None, tars: Output | None
) -> list[tuple[str, ShardResult]]:
    """The files of ``part`` (its Zarr shards into ``zarr``, its tar into ``tars``), a
    sample at a time: each cube's modality decoded once for both layouts, one shard's stack
    in memory. A missing or damaged cube writes nothing more and is named in the results of
    the files not written."""
    modality = part.modality
    numcodecs.blosc.set_nthreads(1)  # the parts are spread over the cores already
    cubes, damaged = _open_cubes(part)
    if damaged:
        return [(layout, ShardResult.of_damaged(plan, damaged)) for layout, plan in part.files]
    outputs = [out for out in (zarr, tars) if out is not None]
    starts = {plan.sample_ids[0]: plan for plan in part.shards}
    with_mask = registry.modality(modality).cloud_mask
    results: list[tuple[str, ShardResult]] = []
    shard: _ZarrShard | None = None
    tar = _TarFile(tars, part, part.tar) if tars is not None and part.tar is not None else None
    try:
        for cube in cubes:
            if cube.sample_id in starts and zarr is not None:
                shard = _ZarrShard(zarr, part, starts[cube.sample_id], cube)
            bands = _array(cube, f"{modality}/bands")
            mask = _array(cube, "cloud_mask") if with_mask else None
            sums = _sums(modality, bands, outputs)
            if shard is not None and (done := shard.add(cube, bands, mask, sums)) is not None:
                results.append((ZARR, done))
                shard = None
            if tar is not None and (done := tar.add(cube, bands, mask, sums)) is not None:
                results.append((WEBDATASET, done))
    except _DamagedCube as exc:
        written = {(layout, r.split, r.number) for layout, r in results}
        results += [
            (layout, ShardResult.of_damaged(plan, [exc.sample_id]))
            for layout, plan in part.files
            if (layout, plan.split, plan.number) not in written
        ]
    finally:
        if tar is not None:
            tar.close()
    return results
