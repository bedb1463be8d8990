"""`validate`: check a packed dataset against the v1.1 layout and list every deviation.

Two kinds of findings: *deviations* from the layout (a wrong dtype, a missing variable, a split
list that does not match) and *damage* (a file that fails its sha256 in ``checksums.sha256``, a
zip entry with a bad CRC, a chunk that does not decode, unreadable JSON or parquet). Every
chunk of every shard is read and decoded.
"""

from __future__ import annotations

import json
import re
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from .. import modalities as registry
from .core import CHECKSUMS, INT16_MAX, SPLITS, RunningStats, open_shard

FILE_RE = re.compile(r"^ssl4eos12_(train|val)_seasonal_data_(\d{6})\.zarr\.zip$")
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


class Damage(str):
    """A finding that means a file is damaged or unreadable (not merely off-layout)."""


@dataclass
class Report:
    deviations: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    files: int = 0  # shard files (Zarr zips and tars) found
    layout: str = ""  # the layouts found: "Zarr", "WebDataset"

    @property
    def findings(self) -> list[str]:
        return self.damaged + self.deviations


def check_dataset(root: Path) -> Report:
    """Every deviation and every damaged file under ``root``."""
    root = Path(root)
    report = Report()
    for finding in _deviations(root):
        (report.damaged if isinstance(finding, Damage) else report.deviations).append(finding)
    zips, tars = len(list(root.glob("*/*/*.zarr.zip"))), len(list(root.glob("*/*/*.tar")))
    report.files = zips + tars
    report.layout = (
        ", ".join(name for name, n in (("Zarr", zips), ("WebDataset", tars)) if n)
        or "no shard files"
    )
    return report


def validate_dataset(root: Path) -> list[str]:
    """Every deviation from the v1.1 layout and every damaged file under ``root`` (empty:
    valid)."""
    return check_dataset(root).findings


def _deviations(root: Path) -> Iterator[str]:
    if not root.is_dir():
        yield Damage(f"{root}: not a directory")
        return
    yield from _check_checksums(root)
    # Band sums of the training split as decoded, to hold stats.json against.
    train = {m: RunningStats() for m in registry.names()}
    complete = True  # every file decoded: the sums are the whole split's
    for split in SPLITS:
        sums = train if split == "train" else None
        numbers: dict[str, set[str]] = {}
        for modality in registry.names():
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
            for finding in _check_file_group(root, split, name, sums):
                complete = complete and not isinstance(finding, Damage)
                yield finding
        for finding in _check_tars(root, split, sums):
            complete = complete and not isinstance(finding, Damage)
            yield finding
        # Split lists and metadata describe the Zarr shards, or the tars when only those exist.
        described = all_names or {t.name for t in (root / split).glob("*/*.tar")}
        listed = root / "splits" / f"ssl4eos12_{split}.txt"
        if not listed.exists():
            yield f"{listed}: missing"
        elif set(listed.read_text().split()) != described:
            yield f"{listed}: does not list exactly the {len(described)} file(s) of {split}"
        yield from _check_parquet(root / "splits" / f"{split}_metadata.parquet", described)
    yield from _check_stats(root / "stats.json", train if complete else None)


def _check_stats(stats: Path, train: dict[str, RunningStats] | None) -> Iterator[str]:
    """The form of stats.json, and (with ``train``, the decoded training split) its values."""
    if not stats.exists():
        yield f"{stats}: missing"
        return
    try:
        content = json.loads(stats.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        yield Damage(f"{stats}: not readable JSON ({exc})")
        return
    if not isinstance(content, dict):
        yield f"{stats}: expected an object {{modality: {{mean, std}}}}"
        return
    for modality in registry.names():
        entry = content.get(modality)
        if not isinstance(entry, dict):
            yield f"{stats}: {modality} missing"
            continue
        n_bands = len(registry.modality(modality).bands)
        for key in ("mean", "std"):
            values = entry.get(key)
            if not isinstance(values, list) or len(values) != n_bands:
                yield f"{stats}: {modality}: expected {n_bands} values in {key!r}"
            elif not all(isinstance(v, int | float) and np.isfinite(v) for v in values):
                yield f"{stats}: {modality}: {key!r} holds values that are not finite numbers"
        if train is not None:
            yield from _stats_match(stats, modality, entry, train[modality])


def _stats_match(
    stats: Path, modality: str, entry: dict[str, Any], decoded: RunningStats
) -> Iterator[str]:
    """The published mean/std must be those of the values the training split holds."""
    mean, std = decoded.mean_std()
    if not mean:
        return
    for key, values in (("mean", mean), ("std", std)):
        written = entry.get(key)
        if not isinstance(written, list) or len(written) != len(values):
            return
        for band, (a, b) in enumerate(zip(written, values, strict=True)):
            if not isinstance(a, int | float) or abs(a - b) > 2e-3 + 1e-6 * abs(b):
                yield (
                    f"{stats}: {modality} {key} of band "
                    f"{registry.modality(modality).bands[band]} is {a}, the "
                    f"training split's values give {b}"
                )
                return


def _check_checksums(root: Path) -> Iterator[str]:
    """Every file against ``checksums.sha256`` (``sha256sum`` format), and nothing unlisted."""
    from ..files import file_sha256

    listing = root / CHECKSUMS
    if not listing.exists():
        yield f"{listing}: missing (no checksums to verify the files against)"
        return
    listed: dict[str, str] = {}
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        yield Damage(f"{listing}: unreadable ({exc})")
        return
    for number, line in enumerate(lines, start=1):
        match = re.match(r"^([0-9a-f]{64}) [ *](.+)$", line)
        if match is None:
            yield Damage(f"{listing}: line {number} is not '<sha256>  <path>'")
            continue
        listed[match.group(2)] = match.group(1)
    for rel, sha in sorted(listed.items()):
        path = root / rel
        if not path.is_file():
            yield Damage(f"{path}: missing (listed in {CHECKSUMS})")
        elif file_sha256(path) != sha:
            yield Damage(f"{path}: damaged (sha256 differs from {CHECKSUMS})")
    # A nested dataset root (OUT/webdataset with --format both) has checksums of its own.
    nested = {p.parent for p in root.glob(f"*/{CHECKSUMS}")}
    present = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and not any(parent in nested for parent in p.parents)
    }
    for rel in sorted(present - listed.keys() - {CHECKSUMS}):
        yield f"{root / rel}: not listed in {CHECKSUMS}"


TAR_RE = re.compile(r"^ssl4eos12_shard_(\d{6})\.tar$")


def _check_tars(root: Path, split: str, sums: dict[str, RunningStats] | None) -> Iterator[str]:
    """WebDataset layout: per-sample ``{key}.zarr.zip`` members, keys aligned across modalities."""
    keys: dict[str, dict[str, list[str]]] = {}
    for modality in registry.names():
        for tar in sorted((root / split / modality).glob("*.tar")):
            if not TAR_RE.match(tar.name):
                yield f"{tar}: file name does not follow ssl4eos12_shard_NNNNNN.tar"
                continue
            try:
                names = []
                with tarfile.open(tar) as archive:
                    for member in archive:
                        names.append(member.name)
                        handle = archive.extractfile(member)
                        data = handle.read() if handle is not None else b""
                        watch = _BandsWatch(sums[modality] if sums is not None else None)
                        where = f"{tar}: member {member.name}"
                        yield from _check_member(where, data, modality, watch)
            except (tarfile.TarError, OSError) as exc:
                yield Damage(f"{tar}: unreadable tar ({exc})")
                continue
            bad = [n for n in names if not n.endswith(".zarr.zip")]
            if bad:
                yield f"{tar}: members {bad[:3]} are not '{{key}}.zarr.zip'"
            keys.setdefault(tar.name, {})[modality] = names
    for name, per_modality in keys.items():
        lists = list(per_modality.values())
        if len(per_modality) != len(registry.names()):
            yield f"{root / split}/*/{name}: missing in some modality folders"
        elif any(names != lists[0] for names in lists):
            yield f"{root / split}/*/{name}: member keys differ across modalities"


def _check_file_group(
    root: Path, split: str, name: str, sums: dict[str, RunningStats] | None
) -> Iterator[str]:
    samples = None
    for modality in registry.names():
        path = root / split / modality / name
        if not path.exists():
            continue
        watch = _BandsWatch(sums[modality] if sums is not None else None)
        ds, problem = _decoded(path, watch)
        if ds is None:
            yield Damage(f"{path}: {problem}")
            continue
        yield from _check_dataset(path, ds, modality)
        yield from _check_offset(path, ds["bands"].attrs if "bands" in ds else {}, modality, watch)
        yield from _check_range(path, modality, watch)
        ids = [str(s) for s in ds["sample"].values] if "sample" in ds.coords else []
        if samples is None:
            samples = ids
        elif ids != samples:
            yield f"{path}: samples differ from the other modalities' file {name}"


def _decoded(
    path: Path, on_bands: Callable[[NDArray[Any]], None] | None = None
) -> tuple[xr.Dataset | None, str | None]:
    """Open a Zarr-in-zip after checking every entry's CRC, and decode every chunk of every
    variable (one time index at a time; ``on_bands`` sees each decoded part of ``bands`` as
    (sample, time, band, y, x)); (None, why) when it is damaged."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            return None, f"damaged: zip entry {bad} fails its CRC"
        ds = open_shard(path)
        for name, variable in ds.variables.items():
            if "time" in variable.dims and variable.ndim > 2:
                for t in range(variable.sizes["time"]):
                    part = variable.isel(time=[t]).values  # decoding is the check
                    if name == "bands" and on_bands is not None:
                        on_bands(part if part.ndim == 5 else part[None])
            else:
                variable.values  # noqa: B018
    except Exception as exc:  # zip, zarr and codec errors have no common base class
        return None, f"damaged or unreadable ({type(exc).__name__}: {exc})"
    return ds, None


def _check_member(where: str, data: bytes, modality: str, watch: _BandsWatch) -> Iterator[str]:
    """A WebDataset member (a Zarr-in-zip, as bytes): every chunk decoded, then its values held
    to the layout's rules."""
    with tempfile.NamedTemporaryFile(suffix=".zarr.zip") as tmp:
        tmp.write(data)
        tmp.flush()
        ds, problem = _decoded(Path(tmp.name), watch)
        if ds is None:
            yield Damage(f"{where}: {problem}")
            return
        attrs = ds["bands"].attrs if "bands" in ds else {}
        yield from _check_offset(Path(where), attrs, modality, watch)
        yield from _check_range(Path(where), modality, watch)
        n_time = registry.modality(modality).timestamps
        if "bands" in ds and ds["bands"].shape[0] != n_time:
            yield f"{where}: {ds['bands'].shape[0]} timestamps, expected {n_time}"
        if n_time == 1 and "time" in ds.coords and ds["time"].values.tolist() != [0]:
            yield f"{where}: time {ds['time'].values.tolist()}, expected [0] (one timestamp)"
        if "time" in ds.coords:
            times = ds["time"].values.astype("datetime64[ns]")[None]
            yield from _check_date_span(Path(where), ds.attrs, times)


class _BandsWatch:
    """Sees every decoded part of ``bands``: adds it to the split's sums and keeps its range."""

    def __init__(self, sums: RunningStats | None) -> None:
        self.sums = sums
        self.low, self.high = np.inf, -np.inf

    def __call__(self, part: NDArray[Any]) -> None:
        if self.sums is not None:
            self.sums.add(part)
        if part.size:
            self.low = min(self.low, float(part.min()))
            self.high = max(self.high, float(part.max()))


def _check_offset(
    path: Path, attrs: dict[str, Any], modality: str, watch: _BandsWatch
) -> Iterator[str]:
    """S-2 digital numbers say their offset (``dn_offset``) and respect it: DN >= 0, so the
    stored values lie in offset..32767 (the top saturates)."""
    if modality not in registry.dn_modalities():
        return
    offset = attrs.get("dn_offset")
    if not isinstance(offset, int | np.integer):
        yield f"{path}: bands has no integer 'dn_offset' attribute (the S-2 offset it stores)"
        return
    if watch.low < offset or watch.high > INT16_MAX:
        yield (
            f"{path}: S-2 values {watch.low:g}..{watch.high:g} do not fit dn_offset {offset} "
            f"(expected {offset}..{INT16_MAX})"
        )


def _check_range(path: Path, modality: str, watch: _BandsWatch) -> Iterator[str]:
    """Stored values within the modality's typical range (NDVI in [-1, 1], LULC 0-9, ...)."""
    bounds = registry.modality(modality).value_range
    if bounds is None or watch.low > watch.high:
        return
    if not (bounds[0] <= watch.low and watch.high <= bounds[1]):
        yield (
            f"{path}: {modality} values {watch.low:g}..{watch.high:g} outside the expected "
            f"{bounds[0]:g}..{bounds[1]:g}"
        )


def _check_dataset(path: Path, ds: xr.Dataset, modality: str) -> Iterator[str]:
    spec = registry.modality(modality)
    n_bands, n_time = len(spec.bands), spec.timestamps
    if "bands" not in ds:
        yield f"{path}: variable 'bands' missing"
        return
    bands = ds["bands"]
    if bands.dims != ("sample", "time", "band", "y", "x"):
        yield f"{path}: bands dims {bands.dims}, expected (sample, time, band, y, x)"
    if str(bands.dtype) != spec.dtype:
        yield f"{path}: bands dtype {bands.dtype}, expected {spec.dtype}"
    if bands.shape[1:] != (n_time, n_bands, 264, 264):
        yield f"{path}: bands shape {bands.shape}, expected (n, {n_time}, {n_bands}, 264, 264)"
    chunks = bands.encoding.get("chunks") or bands.encoding.get("preferred_chunks")
    if chunks is not None and tuple(chunks)[1] != 1:
        yield f"{path}: bands chunked {tuple(chunks)}, expected one chunk per time index"
    band_names = tuple(str(b) for b in ds["band"].values) if "band" in ds.coords else ()
    if band_names != registry.modality(modality).bands:
        yield f"{path}: band coordinate {band_names}, expected {registry.modality(modality).bands}"
    coords = {
        "band": f"<U{max(len(b) for b in registry.modality(modality).bands)}",
        "sample": "<U7",
    }
    for name, dtype in coords.items():
        if name in ds.coords and str(ds[name].dtype) != dtype:
            yield f"{path}: coordinate {name} dtype {ds[name].dtype}, expected {dtype}"
    for name in ("time", "x", "y"):
        if name not in ds.coords or str(ds[name].dtype) != "int64":
            yield f"{path}: coordinate {name} missing or not int64"
    expected = dict(VARIABLES)
    expected["file_id"] = (("sample", "time"), "<U")
    if spec.cloud_mask:
        expected["cloud_mask"] = (("sample", "time", "y", "x"), "uint8")
    elif "cloud_mask" in ds:
        yield f"{path}: {modality} must not have a cloud_mask"
    for name, (dims, dtype) in expected.items():
        if name not in ds:
            yield f"{path}: variable {name!r} missing"
            continue
        if ds[name].dims != dims:
            yield f"{path}: {name} dims {ds[name].dims}, expected {dims}"
        if not str(ds[name].dtype).startswith(dtype):
            yield f"{path}: {name} dtype {ds[name].dtype}, expected {dtype}"
    if "x_" in ds and "y_" in ds:
        xs, ys = ds["x_"].values, ds["y_"].values
        steps = np.all(np.diff(xs, axis=1) == 10.0) and np.all(np.diff(ys, axis=1) == -10.0)
        lattice = np.all((xs[:, 0] - 5.0) % 10.0 == 0) and np.all((ys[:, 0] + 5.0) % 10.0 == 0)
        if not (steps and lattice):
            yield f"{path}: x_/y_ are not 10 m pixel centres on the native 10 m UTM lattice"
    if "time_" in ds:
        times = ds["time_"].values
        if np.any(np.diff(times, axis=1) < np.timedelta64(0)):
            yield f"{path}: timestamps of a sample are not sorted by date"
        if np.any(times.astype("datetime64[ns]").astype(np.int64) % 1_000_000_000):
            yield f"{path}: time_ has sub-second parts; the published values are whole seconds"
        if n_time == 1 and np.any(times.astype("datetime64[ns]").astype(np.int64) != 0):
            yield f"{path}: time_ of a single-timestamp modality must be 1970-01-01 (0 ns)"
        yield from _check_date_span(path, ds.attrs, times.astype("datetime64[ns]"))
    if "sample_id" in ds and "sample" in ds.coords:
        want = np.array([[f"{s}_{t}" for t in range(n_time)] for s in ds["sample"].values])
        if ds["sample_id"].shape != want.shape or not np.array_equal(ds["sample_id"].values, want):
            yield f"{path}: sample_id is not '{{sample}}_{{time}}'"


def _check_date_span(
    path: Path, attrs: dict[str, Any], times: NDArray[np.datetime64]
) -> Iterator[str]:
    """Under v1's date rule (``date_rule`` attribute) every sample's dates lie within a year."""
    if attrs.get("date_rule") != "v1_shift" or times.size == 0:
        return
    span = times.max(axis=-1) - times.min(axis=-1)
    longest = int(np.max(span) // np.timedelta64(1, "D"))
    if longest >= 365:
        yield f"{path}: a sample's dates span {longest} days; v1's date rule keeps them in a year"


def _check_parquet(path: Path, files: set[str]) -> Iterator[str]:
    import pyarrow.parquet as pq
    import shapely

    if not path.exists():
        yield f"{path}: missing"
        return
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        yield Damage(f"{path}: not a readable parquet file ({exc})")
        return
    missing = [c for c in PARQUET_COLUMNS if c not in table.column_names]
    if missing:
        yield f"{path}: missing column(s) {', '.join(missing)}"
        return
    if "idx" not in table.column_names:
        yield f"{path}: index 'idx' missing"
    names = set(table.column("file").to_pylist())
    if not names <= files:
        yield f"{path}: refers to files not in the split: {sorted(names - files)[:3]}"
    try:
        geometries = shapely.from_wkb(table.column("geometry").to_pylist())
    except (shapely.errors.GEOSException, TypeError) as exc:
        yield f"{path}: geometry is not WKB ({exc})"
        return
    yield from _check_footprints(path, geometries)
    yield from _check_geo_metadata(path, table.schema.metadata or {}, geometries)


def _check_footprints(path: Path, geometries: Any) -> Iterator[str]:
    """Each footprint is the published five-point counter-clockwise patch rectangle."""
    for row, geom in enumerate(geometries):
        if geom is None or geom.geom_type != "Polygon":
            kind = "missing" if geom is None else geom.geom_type
            yield f"{path}: row {row}: geometry is {kind}, expected Polygon"
            return
        ring = geom.exterior
        if len(ring.coords) != 5 or not ring.is_ccw:
            yield (
                f"{path}: row {row}: footprint has {len(ring.coords)} points"
                f"{'' if ring.is_ccw else ', clockwise'}; expected the five-point "
                "counter-clockwise patch rectangle"
            )
            return


def _check_geo_metadata(path: Path, metadata: dict[bytes, bytes], geometries: Any) -> Iterator[str]:
    """GeoParquet 1.1 ``geo`` metadata with an explicit ``crs`` and a ``bbox`` that holds every
    footprint."""
    import shapely

    if b"geo" not in metadata:
        yield f"{path}: no GeoParquet 'geo' metadata (geopandas cannot read the geometry)"
        return
    try:
        geo = json.loads(metadata[b"geo"])
        column = geo["columns"][geo["primary_column"]]
    except (ValueError, KeyError, TypeError) as exc:
        yield f"{path}: GeoParquet 'geo' metadata unreadable ({exc})"
        return
    if not str(geo.get("version", "")).startswith("1.1"):
        yield f"{path}: GeoParquet version {geo.get('version')!r}, expected 1.1"
    if not isinstance(column.get("crs"), dict):
        yield f"{path}: GeoParquet metadata has no explicit 'crs' (PROJJSON of EPSG:4326)"
    bbox = column.get("bbox")
    if not len(geometries):
        return  # an empty split: nothing for a bbox to hold
    if not (isinstance(bbox, list) and len(bbox) == 4):
        yield f"{path}: GeoParquet metadata has no 'bbox'"
    else:
        bounds = shapely.bounds(geometries)
        inside = (
            bounds[:, 0].min() >= bbox[0] - 1e-9
            and bounds[:, 1].min() >= bbox[1] - 1e-9
            and bounds[:, 2].max() <= bbox[2] + 1e-9
            and bounds[:, 3].max() <= bbox[3] + 1e-9
        )
        if not inside:
            yield f"{path}: GeoParquet 'bbox' {bbox} does not hold every footprint"
