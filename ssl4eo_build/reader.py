"""A training reader over a packed dataset, either layout: :class:`SampleDataset`.

``len()`` and ``[i]`` (so ``torch.utils.data.DataLoader`` takes it as a map-style dataset; this
module does not import torch). An item is a dict of numpy arrays:

- one entry per modality asked for, ``(time, band, y, x)`` as stored (S-2 digital numbers with
  the layout's offset unless ``remove_s2_offset``; float32 standardised with ``stats.json``
  when ``normalize``);
- ``sample_id`` (str), ``center`` (lon, lat) and ``time_{modality}`` (``datetime64[ns]`` per
  timestamp);
- ``cloud_mask`` ``(time, y, x)`` from the first S-2 modality asked for that carries one.

Zarr shards are chunked as published: one chunk holds a timestamp of every sample of the
shard, so reading one sample decodes the whole shard's modality. The reader keeps the last
shard it decoded per modality; read in shard order (:meth:`SampleDataset.shard_order`, also
shuffled) rather than fully at random, or each item costs a whole shard. WebDataset members
are one sample each and read alone.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import modalities as registry
from .errors import UserError

LAYOUTS = ("zarr", "webdataset")
WEBDATASET_DIR = "webdataset"  # OUT/webdataset with --format both


class DatasetLayoutError(UserError):
    """A directory that is not a packed dataset of the asked layout, split or modality."""


@dataclass(frozen=True)
class _Item:
    file: str  # shard or tar file name, the same in every modality's directory
    position: int  # the sample's index in a Zarr shard, or its member index in a tar
    key: str  # sample id


def _shards(root: Path, split: str, modality: str, suffix: str) -> list[str]:
    """File names of a split in its listed order (``splits/ssl4eos12_{split}.txt``), else
    sorted."""
    listing = root / "splits" / f"ssl4eos12_{split}.txt"
    if listing.is_file():
        return [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return sorted(p.name for p in (root / split / modality).glob(f"*{suffix}"))


def detect_layout(root: Path, split: str = "train") -> tuple[str, Path]:
    """(layout, its root) of a packed dataset: Zarr shards in ``root``, else tars in ``root``
    or in ``root/webdataset``."""
    for layout_root in (root, root / WEBDATASET_DIR):
        if any(layout_root.glob(f"{split}/*/*.zarr.zip")):
            return "zarr", layout_root
        if any(layout_root.glob(f"{split}/*/*.tar")):
            return "webdataset", layout_root
    raise DatasetLayoutError(
        f"{root}: no packed dataset here (expected {split}/<modality>/*.zarr.zip or *.tar, "
        "as `ssl4eo-build pack` writes them; a work dir holds its dataset in dataset/)."
    )


def _layout_root(root: Path, layout: str | None, split: str) -> tuple[str, Path]:
    if layout is None:
        return detect_layout(root, split)
    if layout not in LAYOUTS:
        raise DatasetLayoutError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    suffix = ".zarr.zip" if layout == "zarr" else ".tar"
    for layout_root in (root, root / WEBDATASET_DIR):
        if any(layout_root.glob(f"{split}/*/*{suffix}")):
            return layout, layout_root
    raise DatasetLayoutError(f"{root}: no {layout} files of split {split!r} ({split}/*/*{suffix})")


def _zarr_samples(path: Path) -> list[str]:
    """Sample ids of a Zarr shard, from its consolidated metadata and ``sample`` array (no
    decoding of the pixel arrays)."""
    from .pack.core import open_shard

    with open_shard(path, chunks=None) as ds:
        return [str(s) for s in ds["sample"].values]


def _tar_members(path: Path) -> dict[str, tuple[int, int]]:
    """Sample id -> (offset, size) of each ``{id}.zarr.zip`` member of a tar."""
    with tarfile.open(path) as archive:
        return {
            m.name.removesuffix(".zarr.zip"): (m.offset_data, m.size)
            for m in archive.getmembers()
            if m.name.endswith(".zarr.zip")
        }


def _open_member(data: bytes) -> Any:
    """An in-memory ``.zarr.zip`` as an xarray Dataset, under zarr 2 or 3."""
    import xarray as xr
    import zarr

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    if int(zarr.__version__.split(".")[0]) >= 3:
        from zarr.core.buffer import cpu

        store: Any = zarr.storage.MemoryStore(
            {k: cpu.Buffer.from_bytes(v) for k, v in entries.items()}
        )
    else:  # pragma: no cover - zarr 2: a dict is a store
        store = entries
    return xr.open_zarr(store, consolidated=True, chunks=None)


def _member(
    archive: zipfile.ZipFile,
    handle: io.BufferedReader,
    name: str,
    pool: dict[str, NDArray[np.uint8]],
) -> bytes | memoryview:
    """Member ``name`` of ``archive``. A stored (uncompressed) member, as pack writes every
    chunk, is read from ``handle`` (the archive's file) straight into ``pool``'s ``member``
    buffer, which the next member overwrites, and its CRC-32 checked as zipfile checks it:
    a fresh 40 MB buffer per chunk cost more here than decoding the chunk (BENCHMARKS.md).
    Any other member through zipfile. KeyError for a missing member."""
    from .pack.zarr_zip import stored_data_offset

    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return archive.read(name)
    handle.seek(stored_data_offset(handle, info, str(archive.filename)))
    buffer = pool.get("member")
    if buffer is None or buffer.nbytes < info.file_size:
        buffer = pool["member"] = np.empty(info.file_size, np.uint8)
    view = buffer.data[: info.file_size]
    if handle.readinto(view) != info.file_size:
        raise zipfile.BadZipFile(f"{archive.filename}: {name!r} is cut short")
    if zlib.crc32(view) != info.CRC:
        raise zipfile.BadZipFile(f"{archive.filename}: bad CRC-32 for {name!r}")
    return view


def _time_major(
    archive: zipfile.ZipFile,
    metadata: dict[str, Any],
    name: str,
    pool: dict[str, NDArray[np.uint8]],
) -> NDArray[Any] | None:
    """Variable ``name`` of a Zarr shard (a zip of Zarr v2) as pack writes it, one chunk per
    time index holding every sample, decoded straight into ``pool``'s buffer for ``name``
    (reused by the next shard) as a (time, sample, ...) array: no fresh memory per shard and
    no copy of each chunk, about 1.4x the rate through xarray here (BENCHMARKS.md). None for
    any other chunking, codec or key scheme (the caller reads it with xarray). ``metadata``:
    the shard's consolidated metadata (``.zmetadata``)."""
    import numcodecs

    meta = metadata.get(f"{name}/.zarray")
    if meta is None or meta.get("filters") or meta.get("order") != "C" or not meta["compressor"]:
        return None
    shape, chunks = list(meta["shape"]), list(meta["chunks"])
    if len(shape) < 3 or chunks != [shape[0], 1, *shape[2:]]:
        return None
    dtype = np.dtype(meta["dtype"])
    by_time = (shape[1], shape[0], *shape[2:])
    nbytes = int(np.prod(by_time)) * dtype.itemsize
    buffer = pool.get(name)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = pool[name] = np.empty(nbytes, np.uint8)
    out = buffer[:nbytes].view(dtype).reshape(by_time)
    codec = numcodecs.get_codec(meta["compressor"])
    separator = meta.get("dimension_separator", ".")
    rest = separator.join("0" * (len(shape) - 2))
    with open(str(archive.filename), "rb") as handle:
        for t in range(shape[1]):
            try:
                chunk = _member(archive, handle, f"{name}/0{separator}{t}{separator}{rest}", pool)
            except KeyError:
                return None  # a missing chunk means fill values: left to xarray
            codec.decode(chunk, out=out[t])
    return out


class SampleDataset:
    """Samples of one split of a packed dataset (see the module docstring).

    ``root``: the dataset directory (``--out``, default ``WORK/dataset``); ``layout``: ``zarr``
    or ``webdataset``, found by itself when None (with ``--format both`` the root holds the
    Zarr layout and ``root/webdataset`` the tars).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        modalities: Sequence[str] = ("S2L2A", "S1GRD"),
        split: str = "train",
        layout: str | None = None,
        remove_s2_offset: bool = False,
        normalize: bool = False,
    ) -> None:
        self.split = split
        self.modalities = tuple(modalities)
        unknown = [m for m in self.modalities if m not in registry.names()]
        if unknown or not self.modalities:
            raise DatasetLayoutError(
                f"modalities {list(self.modalities)}: expected some of "
                f"{', '.join(registry.names())}"
            )
        self.layout, self.root = _layout_root(Path(root), layout, split)
        self.remove_s2_offset = remove_s2_offset
        self.stats: dict[str, Any] | None = None
        if normalize:
            stats_file = self.root / "stats.json"
            if not stats_file.is_file():
                raise DatasetLayoutError(f"{stats_file}: missing (normalize needs the stats)")
            self.stats = json.loads(stats_file.read_text())
        first = self.modalities[0]
        for m in self.modalities:
            if not (self.root / split / m).is_dir():
                raise DatasetLayoutError(f"{self.root / split / m}: missing (modality {m})")
        self.items: list[_Item] = []
        self._members: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
        if self.layout == "zarr":
            for name in _shards(self.root, split, first, ".zarr.zip"):
                for i, key in enumerate(_zarr_samples(self.root / split / first / name)):
                    self.items.append(_Item(name, i, key))
        else:
            for name in _shards(self.root, split, first, ".tar"):
                for i, key in enumerate(self._tar_index(first, name)):
                    self.items.append(_Item(name, i, key))
        self._cache: dict[str, tuple[str, dict[str, NDArray[Any]]]] = {}
        self._buffers: dict[str, dict[str, NDArray[np.uint8]]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get the index, not the decoded shards.
        return {**self.__dict__, "_cache": {}, "_buffers": {}}

    def shard_order(self, seed: int | None = None) -> list[int]:
        """Every index once, shard by shard: shards (and samples within each) shuffled with
        ``seed``, in file order when None. Pass it as a DataLoader ``sampler``."""
        by_file: dict[str, list[int]] = {}
        for i, item in enumerate(self.items):
            by_file.setdefault(item.file, []).append(i)
        groups = list(by_file.values())
        if seed is not None:
            rng = random.Random(seed)
            rng.shuffle(groups)
            for group in groups:
                rng.shuffle(group)
        return [i for group in groups for i in group]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self.items) <= index < len(self.items):
            raise IndexError(f"index {index} out of range for {len(self.items)} samples")
        item = self.items[index]
        out: dict[str, Any] = {"sample_id": item.key}
        for m in self.modalities:
            values = self._read(m, item)
            if values["sample_id"] != item.key:
                raise DatasetLayoutError(
                    f"{self.root / self.split / m / item.file}: sample {item.position} is "
                    f"{values['sample_id']}, {self.modalities[0]} has {item.key}; the "
                    "modalities' files do not match"
                )
            out[m] = self._values(m, values["bands"], float(values["dn_offset"]))
            out[f"time_{m}"] = values["time"]
            if "cloud_mask" not in out and "cloud_mask" in values:
                out["cloud_mask"] = values["cloud_mask"]
            out.setdefault("center", values["center"])
        return out

    def _values(self, modality: str, bands: NDArray[Any], offset: float) -> NDArray[Any]:
        removed = offset if self.remove_s2_offset and modality in registry.dn_modalities() else 0
        if removed:
            bands = (bands.astype(np.int32) - int(removed)).astype(bands.dtype)
        if self.stats is None:
            return bands
        stats = self.stats[modality]
        shape = (1, -1, 1, 1)
        mean = np.asarray(stats["mean"], dtype=np.float32).reshape(shape) - removed
        std = np.asarray(stats["std"], dtype=np.float32).reshape(shape)
        return (bands.astype(np.float32) - mean) / np.where(std > 0, std, 1.0)

    def _tar_index(self, modality: str, name: str) -> dict[str, tuple[int, int]]:
        key = (modality, name)
        if key not in self._members:
            self._members[key] = _tar_members(self.root / self.split / modality / name)
        return self._members[key]

    def _read(self, modality: str, item: _Item) -> dict[str, Any]:
        """One sample's arrays of one modality: bands, time, centre, CRS, cloud mask."""
        path = self.root / self.split / modality / item.file
        if self.layout == "webdataset":
            offset, size = self._tar_index(modality, item.file)[item.key]
            with open(path, "rb") as handle:
                handle.seek(offset)
                ds = _open_member(handle.read(size))
            with ds:
                out = {
                    "sample_id": item.key,
                    "bands": ds["bands"].values,
                    "time": ds["time"].values.astype("datetime64[ns]"),
                    "center": np.array([ds["center_lon"].item(), ds["center_lat"].item()]),
                    "dn_offset": ds["bands"].attrs.get("dn_offset", 0),
                }
                if "cloud_mask" in ds:
                    out["cloud_mask"] = ds["cloud_mask"].values
                return out
        arrays = self._shard(modality, path)
        i = item.position
        out = {
            "sample_id": str(arrays["sample"][i]),
            "bands": arrays["bands"][:, i].copy(),  # a copy: the buffer is reused
            "time": arrays["time_"][i],
            "center": np.array([arrays["center_lon"][i], arrays["center_lat"][i]]),
            "dn_offset": arrays["dn_offset"],
        }
        if "cloud_mask" in arrays:
            out["cloud_mask"] = arrays["cloud_mask"][:, i].copy()
        return out

    def _shard(self, modality: str, path: Path) -> dict[str, Any]:
        """A Zarr shard's arrays, decoded once and kept until the next shard of the modality.
        ``bands`` and ``cloud_mask`` are time-major (time, sample, ...) in buffers that the
        next shard of the modality reuses (:func:`_time_major`), so :meth:`_read` copies a
        sample out of them."""
        cached = self._cache.get(modality)
        if cached is not None and cached[0] == str(path):
            return cached[1]
        from .pack.core import open_shard

        self._cache.pop(modality, None)  # its buffers are about to be overwritten
        with open_shard(path, chunks=None) as ds:
            arrays: dict[str, Any] = {
                name: ds[name].values for name in ("sample", "time_", "center_lon", "center_lat")
            }
            arrays["dn_offset"] = ds["bands"].attrs.get("dn_offset", 0)
            pool = self._buffers.setdefault(modality, {})
            with zipfile.ZipFile(path) as archive:
                metadata = json.loads(archive.read(".zmetadata"))["metadata"]
                for name in ("bands", "cloud_mask") if "cloud_mask" in ds else ("bands",):
                    fast = _time_major(archive, metadata, name, pool)
                    arrays[name] = fast if fast is not None else ds[name].values.swapaxes(0, 1)
        self._cache[modality] = (str(path), arrays)
        return arrays
