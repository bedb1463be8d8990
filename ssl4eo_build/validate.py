"""`validate`: check a packed dataset against the v1.1 layout and list every deviation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import xarray as xr

from .cube import MODALITIES
from .pack import SPLITS, open_shard
from .products import PRODUCTS

FILE_RE = re.compile(r"^ssl4eos12_(train|val)_seasonal_data_(\d{6})\.zarr\.zip$")
BANDS = {
    "S2L1C": PRODUCTS["S2L1C"].bands,
    "S2L2A": PRODUCTS["S2L2A"].bands[:-1],
    "S1GRD": ("vv", "vh"),
    "S2RGB": ("R", "G", "B"),
}
BAND_DTYPE = {"S2L1C": "int16", "S2L2A": "int16", "S1GRD": "float16", "S2RGB": "uint8"}
VARIABLES = {
    "center_lat": (("sample",), "float64"),
    "center_lon": (("sample",), "float64"),
    "crs": (("sample",), "int64"),
    "sample_id": (("sample", "time"), "<U9"),
    "time_": (("sample", "time"), "datetime64[ns]"),
    "x_": (("sample", "x"), "float64"),
    "y_": (("sample", "y"), "float64"),
}
PARQUET_COLUMNS = ("sample_id", "time_id", "time", "tile_id", "geometry", "tile_crs", "file")


def validate_dataset(root: Path) -> list[str]:
    """Every deviation from the v1.1 layout found under ``root`` (empty: valid)."""
    return list(_deviations(Path(root)))


def _deviations(root: Path) -> Iterator[str]:
    if not root.is_dir():
        yield f"{root}: not a directory"
        return
    for split in SPLITS:
        numbers: dict[str, set[str]] = {}
        for modality in MODALITIES:
            folder = root / split / modality
            files = sorted(folder.glob("*.zarr.zip")) if folder.is_dir() else []
            numbers[modality] = set()
            for f in files:
                m = FILE_RE.match(f.name)
                if m is None or m.group(1) != split:
                    yield (
                        f"{f}: file name does not follow "
                        f"ssl4eos12_{split}_seasonal_data_NNNNNN.zarr.zip"
                    )
                    continue
                numbers[modality].add(f.name)
        all_names = set().union(*numbers.values())
        for modality, names in numbers.items():
            for missing in sorted(all_names - names):
                yield f"{root / split / modality / missing}: missing (present in another modality)"
        for name in sorted(all_names):
            yield from _check_file_group(root, split, name)
        yield from _check_tars(root, split)
        # Split lists and metadata describe the Zarr shards, or the tars when only those exist.
        described = all_names or {t.name for t in (root / split).glob("*/*.tar")}
        listed = root / "splits" / f"ssl4eos12_{split}.txt"
        if not listed.exists():
            yield f"{listed}: missing"
        elif set(listed.read_text().split()) != described:
            yield f"{listed}: does not list exactly the {len(described)} file(s) of {split}"
        yield from _check_parquet(root / "splits" / f"{split}_metadata.parquet", described)
    stats = root / "stats.json"
    if not stats.exists():
        yield f"{stats}: missing"
    else:
        content = json.loads(stats.read_text())
        for modality in MODALITIES:
            entry = content.get(modality, {})
            if len(entry.get("mean", [])) != len(BANDS[modality]):
                yield f"{stats}: {modality}: expected {len(BANDS[modality])} means"


TAR_RE = re.compile(r"^ssl4eos12_shard_(\d{6})\.tar$")


def _check_tars(root: Path, split: str) -> Iterator[str]:
    """WebDataset layout: per-sample ``{key}.zarr.zip`` members, keys aligned across modalities."""
    import tarfile

    keys: dict[str, dict[str, list[str]]] = {}
    for modality in MODALITIES:
        for tar in sorted((root / split / modality).glob("*.tar")):
            if not TAR_RE.match(tar.name):
                yield f"{tar}: file name does not follow ssl4eos12_shard_NNNNNN.tar"
                continue
            try:
                with tarfile.open(tar) as archive:
                    names = archive.getnames()
            except (tarfile.TarError, OSError) as exc:
                yield f"{tar}: unreadable tar ({exc})"
                continue
            bad = [n for n in names if not n.endswith(".zarr.zip")]
            if bad:
                yield f"{tar}: members {bad[:3]} are not '{{key}}.zarr.zip'"
            keys.setdefault(tar.name, {})[modality] = names
    for name, per_modality in keys.items():
        lists = list(per_modality.values())
        if len(per_modality) != len(MODALITIES):
            yield f"{root / split}/*/{name}: missing in some modality folders"
        elif any(names != lists[0] for names in lists):
            yield f"{root / split}/*/{name}: member keys differ across modalities"


def _check_file_group(root: Path, split: str, name: str) -> Iterator[str]:
    samples = None
    for modality in MODALITIES:
        path = root / split / modality / name
        if not path.exists():
            continue
        try:
            ds = open_shard(path)
        except Exception as exc:  # any failure to open is a deviation to report
            yield f"{path}: does not open with xarray ({exc})"
            continue
        yield from _check_dataset(path, ds, modality)
        ids = [str(s) for s in ds["sample"].values] if "sample" in ds.coords else []
        if samples is None:
            samples = ids
        elif ids != samples:
            yield f"{path}: samples differ from the other modalities' file {name}"


def _check_dataset(path: Path, ds: xr.Dataset, modality: str) -> Iterator[str]:
    n_bands = len(BANDS[modality])
    if "bands" not in ds:
        yield f"{path}: variable 'bands' missing"
        return
    bands = ds["bands"]
    if bands.dims != ("sample", "time", "band", "y", "x"):
        yield f"{path}: bands dims {bands.dims}, expected (sample, time, band, y, x)"
    if str(bands.dtype) != BAND_DTYPE[modality]:
        yield f"{path}: bands dtype {bands.dtype}, expected {BAND_DTYPE[modality]}"
    if bands.shape[1:] != (4, n_bands, 264, 264):
        yield f"{path}: bands shape {bands.shape}, expected (n, 4, {n_bands}, 264, 264)"
    chunks = bands.encoding.get("chunks") or bands.encoding.get("preferred_chunks")
    if chunks is not None and tuple(chunks)[1] != 1:
        yield f"{path}: bands chunked {tuple(chunks)}, expected one chunk per time index"
    band_names = tuple(str(b) for b in ds["band"].values) if "band" in ds.coords else ()
    if band_names != BANDS[modality]:
        yield f"{path}: band coordinate {band_names}, expected {BANDS[modality]}"
    coords = {"band": f"<U{max(len(b) for b in BANDS[modality])}", "sample": "<U7"}
    for name, dtype in coords.items():
        if name in ds.coords and str(ds[name].dtype) != dtype:
            yield f"{path}: coordinate {name} dtype {ds[name].dtype}, expected {dtype}"
    for name in ("time", "x", "y"):
        if name not in ds.coords or str(ds[name].dtype) != "int64":
            yield f"{path}: coordinate {name} missing or not int64"
    expected = dict(VARIABLES)
    expected["file_id"] = (("sample", "time"), "<U")
    if modality != "S1GRD":
        expected["cloud_mask"] = (("sample", "time", "y", "x"), "uint8")
    elif "cloud_mask" in ds:
        yield f"{path}: S1GRD must not have a cloud_mask"
    for name, (dims, dtype) in expected.items():
        if name not in ds:
            yield f"{path}: variable {name!r} missing"
            continue
        if ds[name].dims != dims:
            yield f"{path}: {name} dims {ds[name].dims}, expected {dims}"
        if not str(ds[name].dtype).startswith(dtype):
            yield f"{path}: {name} dtype {ds[name].dtype}, expected {dtype}"
    if "time_" in ds:
        times = ds["time_"].values
        if np.any(np.diff(times, axis=1) < np.timedelta64(0)):
            yield f"{path}: timestamps of a sample are not sorted by date"
    if "sample_id" in ds and "sample" in ds.coords:
        want = np.array([[f"{s}_{t}" for t in range(4)] for s in ds["sample"].values])
        if ds["sample_id"].shape != want.shape or not np.array_equal(ds["sample_id"].values, want):
            yield f"{path}: sample_id is not '{{sample}}_{{time}}'"


def _check_parquet(path: Path, files: set[str]) -> Iterator[str]:
    import pyarrow.parquet as pq
    import shapely

    if not path.exists():
        yield f"{path}: missing"
        return
    table = pq.read_table(path)
    missing = [c for c in PARQUET_COLUMNS if c not in table.column_names]
    if missing:
        yield f"{path}: missing column(s) {', '.join(missing)}"
        return
    if "idx" not in table.column_names:
        yield f"{path}: index 'idx' missing"
    if b"geo" not in (table.schema.metadata or {}):
        yield f"{path}: no GeoParquet 'geo' metadata (geopandas cannot read the geometry)"
    names = set(table.column("file").to_pylist())
    if not names <= files:
        yield f"{path}: refers to files not in the split: {sorted(names - files)[:3]}"
    for wkb in table.column("geometry").to_pylist()[:1]:
        geom = shapely.from_wkb(wkb)
        if geom.geom_type != "Polygon":
            yield f"{path}: geometry is {geom.geom_type}, expected Polygon"
