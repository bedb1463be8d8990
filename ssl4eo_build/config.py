"""Frozen, validated configuration loaded from TOML.

Every constant of the pipeline lives here with its default (the SSL4EO-S12 v1.1 value) and its
valid range. ``configs/v1.1.toml`` repeats the defaults with a note on where each comes from.
Unknown keys, wrong types and out-of-range values raise :class:`ConfigError` naming the file and
the dotted key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CITIES = REPO_ROOT / "data" / "cities" / "top10k_cities.csv"

T = TypeVar("T")


def _rng(lo: float | None = None, hi: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"min": lo, "max": hi, **extra}


def _choice(*options: str) -> dict[str, Any]:
    return {"choices": options}


@dataclass(frozen=True)
class SampleConfig:
    """Stage `sample`: Gaussian sampling around the top-10k cities (v1 paper, section 3)."""

    seed: int = field(default=42, metadata=_rng(0))
    n: int = field(default=251_079, metadata=_rng(1, 10_000_000))
    cities: Path = DEFAULT_CITIES
    sigma_m: float = field(default=50_000.0, metadata=_rng(1.0, 1_000_000.0))
    patch_px: int = field(default=264, metadata=_rng(6, 4096))
    pixel_m: float = field(default=10.0, metadata=_rng(1.0, 1000.0))
    overlap_fraction: float = field(default=0.75, metadata=_rng(0.0, 2.0))
    grid_cell_deg: float = field(default=1.0, metadata=_rng(0.01, 10.0))
    batch_size: int = field(default=4096, metadata=_rng(1, 1_000_000))
    max_candidates_per_location: int = field(default=1000, metadata=_rng(1))

    @property
    def patch_m(self) -> float:
        return self.patch_px * self.pixel_m

    @property
    def min_distance_m(self) -> float:
        return self.overlap_fraction * self.patch_m


@dataclass(frozen=True)
class DownloadConfig:
    """Stage `download`: scene choice and fetching (SPEC section 4)."""

    source: str = field(default="synthetic", metadata=_choice("synthetic", "earthengine"))
    # Fresh-mode date rule. v1_shift (v1's downloader): one shift of 0..max_shift_days per
    # location, seeded by its sample id; each season's window is its v1 reference date minus
    # the shift, +/- window_days. fixed_year: windows around season_dates in `years` order.
    date_rule: str = field(default="v1_shift", metadata=_choice("v1_shift", "fixed_year"))
    # v1's reference dates, per season in season_dates order (Mar, Jun, Sep, Dec): four
    # consecutive seasons, 2020-12-21 .. 2021-09-22 (zhu-xlab/SSL4EO-S12 downloader).
    v1_dates: tuple[str, ...] = ("2021-03-20", "2021-06-21", "2021-09-22", "2020-12-21")
    max_shift_days: int = field(default=364, metadata=_rng(0, 3650))
    # A location whose seasons cannot all be filled draws a new shift this many times in all
    # (choice of this project; the search already holds every candidate, so it costs nothing).
    shift_tries: int = field(default=5, metadata=_rng(1, 100))
    # Which usable granule of a window v1_shift takes: v1 took the most recent.
    choose: str = field(default="latest", metadata=_choice("latest", "closest", "least_cloudy"))
    years: tuple[int, ...] = field(default=(2021, 2020, 2019), metadata=_rng(2015, 2100, min_len=1))
    season_dates: tuple[str, ...] = ("03-20", "06-21", "09-22", "12-21")
    window_days: float = field(default=15.0, metadata=_rng(0.5, 180.0))
    max_cloud_pct: float = field(default=10.0, metadata=_rng(0.0, 100.0))
    reference_years: tuple[int, ...] = field(
        default=(2019, 2020, 2021), metadata=_rng(2015, 2100, min_len=1)
    )
    reference_max_gap_days: float = field(default=30.0, metadata=_rng(0.0, 366.0))
    s1_max_gap_days: float = field(default=15.0, metadata=_rng(0.0, 366.0))
    buffer_px: int = field(default=60, metadata=_rng(0, 4096))
    lattice_m: float = field(default=60.0, metadata=_rng(1.0, 10_000.0))
    # Locations in flight at once (threads). Each sends its requests one after another, so
    # using Earth Engine's 40 requests in flight takes at least 40.
    workers: int = field(default=48, metadata=_rng(1, 1024))
    # Seasons whose S-2 granules share an EPSG code travel in one pixel request, this many at
    # most (SPEC section 4: two; a request the server finds too big is cut automatically).
    seasons_per_request: int = field(default=2, metadata=_rng(1, 4))
    max_attempts: int = field(default=5, metadata=_rng(1, 100))
    retry_base_s: float = field(default=1.0, metadata=_rng(0.0, 3600.0))
    retry_max_s: float = field(default=60.0, metadata=_rng(0.0, 3600.0))
    max_runs: int = field(default=3, metadata=_rng(1, 1000))
    max_in_flight: int = field(default=40, metadata=_rng(1, 1024))
    requests_per_s: float = field(default=100.0, metadata=_rng(0.01, 100_000.0))
    compress: str = field(default="zstd", metadata=_choice("zstd", "deflate", "lzw", "none"))
    # Level of zstd (1-22) or deflate (1-9; higher levels are taken as 9) for the raw files.
    compress_level: int = field(default=3, metadata=_rng(1, 22))
    # Clouds in the cloud mask: Cloud Score+ (fetched with each granule that has it; SCL where
    # not) or the L2A scene classification alone.
    cloud_mask: str = field(default="cloud_score_plus", metadata=_choice("cloud_score_plus", "scl"))
    # Land cover: ESRI 10 m annual (the image of each timestamp's year; years outside
    # the years the collection holds take the nearest one) or Dynamic World (the label image
    # of each S-2 granule).
    lulc_source: str = field(default="esri", metadata=_choice("esri", "dynamic_world"))
    lulc_collection: str = "projects/sat-io/open-datasets/landcover/ESRI_Global-LULC_10m_TS"
    lulc_first_year: int = field(default=2017, metadata=_rng(2015, 2100))
    lulc_last_year: int = field(default=2023, metadata=_rng(2015, 2100))

    def __post_init__(self) -> None:
        if len(self.season_dates) != 4:
            raise ConfigError(
                f"key 'download.season_dates': expected 4 dates, found {self.season_dates!r}."
            )
        for text in self.season_dates:
            try:
                month, day = (int(x) for x in text.split("-"))
                datetime(2021, month, day)
            except ValueError:
                raise ConfigError(
                    f"key 'download.season_dates': expected 'MM-DD' dates, found {text!r}."
                ) from None
        if len(self.v1_dates) != 4:
            raise ConfigError(
                f"key 'download.v1_dates': expected 4 dates, found {self.v1_dates!r}."
            )
        for text in self.v1_dates:
            try:
                datetime.fromisoformat(text)
            except ValueError:
                raise ConfigError(
                    f"key 'download.v1_dates': expected 'YYYY-MM-DD' dates, found {text!r}."
                ) from None
        if self.lulc_first_year > self.lulc_last_year:
            raise ConfigError(
                f"key 'download.lulc_first_year': {self.lulc_first_year} is after "
                f"download.lulc_last_year {self.lulc_last_year}; expected first <= last."
            )


@dataclass(frozen=True)
class SyntheticConfig:
    """The offline archive simulator's knobs."""

    seed: int = field(default=0, metadata=_rng(0))
    latency_s: float = field(default=0.0, metadata=_rng(0.0, 60.0))
    error_rate: float = field(default=0.0, metadata=_rng(0.0, 0.95))
    zone_overlap_m: float = field(default=15_000.0, metadata=_rng(0.0, 200_000.0))
    partial_prob: float = field(default=0.04, metadata=_rng(0.0, 1.0))


@dataclass(frozen=True)
class EarthEngineConfig:
    """The `earthengine` source: project, credentials, endpoint and Earth Engine's own limits.

    Nothing here changes which scenes are chosen or what the files hold, so changing it never
    invalidates finished downloads. The request quota itself is ``download.max_in_flight`` and
    ``download.requests_per_s``.
    """

    project: str = ""  # "" -> $EE_PROJECT, then $GOOGLE_CLOUD_PROJECT, then the key's project
    service_account_key: Path | None = None  # JSON key file; unset -> application default creds
    high_volume: bool = False  # the high-volume endpoint (for automated, cacheable requests)
    url: str = ""  # another endpoint (proxy, private deployment); overrides high_volume
    timeout_s: float = field(default=300.0, metadata=_rng(1.0, 3600.0))
    max_response_mb: float = field(default=48.0, metadata=_rng(0.01, 48.0))
    max_side_px: int = field(default=32_768, metadata=_rng(1, 32_768))
    max_bands: int = field(default=1024, metadata=_rng(1, 1024))
    expected_latency_s: float = field(default=2.0, metadata=_rng(0.001, 600.0))  # dry-run only


@dataclass(frozen=True)
class AlignConfig:
    """Stage `align`: one UTM grid per location (SPEC section 5)."""

    nan_threshold: float = field(default=0.01, metadata=_rng(0.0, 1.0))
    # Patch edges on this lattice of the chosen UTM zone: 10 m, the native pixel lattice the
    # published patches sit on; 60 m makes 10/20/60 m pixels nest but moves a patch up to 30 m
    # off its location and off the published one.
    lattice_m: float = field(default=10.0, metadata=_rng(1.0, 10_000.0))
    s1_resampling: str = field(default="nearest", metadata=_choice("nearest", "bilinear"))
    s2_resampling: str = field(default="nearest", metadata=_choice("nearest", "bilinear"))
    rgb_clip_low_q: float = field(default=0.02, metadata=_rng(0.0, 1.0))
    rgb_clip_high_q: float = field(default=0.98, metadata=_rng(0.0, 1.0))
    rgb_compress_factor: float = field(default=0.5, metadata=_rng(0.0, 1.0))
    rgb_low_q: float = field(default=0.002, metadata=_rng(0.0, 1.0))
    rgb_high_q: float = field(default=0.998, metadata=_rng(0.0, 1.0))
    rgb_min_upper: float = field(default=2000.0, metadata=_rng(1.0, 100_000.0))
    rgb_dark_median: float = field(default=1000.0, metadata=_rng(0.0, 100_000.0))
    workers: int = field(default=0, metadata=_rng(0, 1024))  # 0: one process per core
    max_runs: int = field(default=3, metadata=_rng(1, 1000))
    # Cloud Score+ in the cloud mask: the band, and the scores below which a pixel is thin
    # cloud (cs_clear; the catalog suggests 0.5-0.65) and thick cloud (cs_thick).
    cs_band: str = field(default="cs_cdf", metadata=_choice("cs_cdf", "cs"))
    cs_clear: float = field(default=0.6, metadata=_rng(0.0, 1.0))
    cs_thick: float = field(default=0.3, metadata=_rng(0.0, 1.0))

    def __post_init__(self) -> None:
        if self.cs_thick > self.cs_clear:
            raise ConfigError(
                f"key 'align.cs_thick': {self.cs_thick:g} is above align.cs_clear "
                f"{self.cs_clear:g}; expected thick <= clear (thick cloud scores lower)."
            )


@dataclass(frozen=True)
class PackConfig:
    """Stage `pack`: the v1.1 Zarr layout (SPEC section 6)."""

    seed: int = field(default=0, metadata=_rng(0))
    shard_size: int = field(default=64, metadata=_rng(1, 100_000))
    val_fraction: float = field(default=0.01, metadata=_rng(0.0, 1.0))
    split_block_deg: float = field(default=1.0, metadata=_rng(0.01, 180.0))
    keep_partial: bool = False
    # Blosc Zstd level 1, byte shuffle, 4 MiB blocks: chosen by bench_pack for write speed,
    # read speed and ratio together (on the simulator's cubes about 7x zstd-5's write speed,
    # faster reads and 0.87x its ratio; with 4 MiB blocks rather than 1 MiB, S2L2A writes and
    # reads about 20 % faster, a whole sample 7 % and 13 %; BENCHMARKS.md). Block size in
    # bytes, 0: Blosc's own.
    blosc_cname: str = field(
        default="zstd", metadata=_choice("zstd", "lz4", "lz4hc", "zlib", "blosclz")
    )
    blosc_clevel: int = field(default=1, metadata=_rng(0, 9))
    blosc_blocksize: int = field(default=4 << 20, metadata=_rng(0, 1 << 30))
    # Modalities stored with Blosc LZ4 instead (level 5, byte shuffle, Blosc's blocks): on the
    # simulator's cubes S2L1C keeps most of its ratio with it (2.9x against zstd-1's 3.3x)
    # at 1.6x the write and 1.5x the read speed, and a whole sample 0.82x zstd-5's ratio.
    blosc_lz4: tuple[str, ...] = ("S2L1C",)
    format: str = field(default="zarr", metadata=_choice("zarr", "webdataset", "both"))
    samples_per_tar: int = field(default=512, metadata=_rng(1, 1_000_000))
    # Added to S-2 digital numbers (S2L1C, S2L2A) as each published layout stores them: the
    # v1.1 Zarr shards carry +1000, the 2026 WebDataset release none.
    s2_offset_zarr: int = field(default=1000, metadata=_rng(0, 10_000))
    s2_offset_webdataset: int = field(default=0, metadata=_rng(0, 10_000))
    workers: int = field(default=0, metadata=_rng(0, 1024))  # 0: one process per core
    # Aligned cubes are deleted once every layout's shards holding them are written and read
    # back against their sha256; pack aligns them again from the raw files when it needs them
    # (another format, --force, a lost shard). True keeps them (more disk, faster repacks).
    keep_cubes: bool = False


@dataclass(frozen=True)
class RunConfig:
    """`run`: rounds of sample -> download -> align until a target passes align."""

    max_rounds: int = field(default=10, metadata=_rng(1, 1000))
    # Share of new locations expected to pass align before any has finished (first round).
    initial_yield: float = field(default=0.8, metadata=_rng(0.01, 1.0))


@dataclass(frozen=True)
class Config:
    """The whole recipe. Sections mirror the TOML tables."""

    sample: SampleConfig = SampleConfig()
    download: DownloadConfig = DownloadConfig()
    synthetic: SyntheticConfig = SyntheticConfig()
    earthengine: EarthEngineConfig = EarthEngineConfig()
    align: AlignConfig = AlignConfig()
    pack: PackConfig = PackConfig()
    run: RunConfig = RunConfig()
    source_file: Path | None = field(default=None, compare=False, metadata={"internal": True})

    def section_fingerprint(self, name: str) -> str:
        """sha256 over the sorted-key JSON of one section: what a stage's results depend on."""
        return fingerprint(section_dict(getattr(self, name)))


def section_dict(section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(section):
        if f.metadata.get("internal"):
            continue
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = section_dict(value)
        elif isinstance(value, Path):
            out[f.name] = str(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def fingerprint(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load ``path`` (or the built-in v1.1 defaults when None) and apply dotted overrides."""
    where = str(path) if path else "<defaults>"
    table: dict[str, Any] = {}
    if path is not None:
        try:
            table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found.") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a directory; --config expects a TOML file.") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: not a text file (byte {exc.start} is not UTF-8); --config expects a "
                "TOML file."
            ) from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}).") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}).") from None
    base_dir = Path(path).resolve().parent if path else Path.cwd()
    config = _build(Config, table, prefix="", where=where, base_dir=base_dir)
    config = dataclasses.replace(config, source_file=Path(path) if path else None)
    for key, value in (overrides or {}).items():
        if value is not None:
            config = override(config, key, value, where="command line")
    return config


def override(config: Config, dotted: str, value: Any, where: str = "command line") -> Config:
    """Return a copy of ``config`` with one dotted key replaced, validated like a file value."""
    section_name, _, key = dotted.partition(".")
    section = getattr(config, section_name)
    fmap = {f.name: f for f in fields(section)}
    if key not in fmap:
        raise ConfigError(f"{where}: unknown key {dotted!r}.")
    hints = typing.get_type_hints(type(section))
    checked = _coerce(value, hints[key], fmap[key], dotted, where, Path.cwd())
    return dataclasses.replace(
        config, **{section_name: dataclasses.replace(section, **{key: checked})}
    )


def _build(cls: type[T], table: Mapping[str, Any], prefix: str, where: str, base_dir: Path) -> T:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: key {prefix.rstrip('.')!r} must be a table.")
    known = {f.name: f for f in fields(cls) if not f.metadata.get("internal")}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {prefix + unknown[0]!r}; "
            f"expected one of: {', '.join(prefix + k for k in known)}."
        )
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name not in table:
            continue
        values[name] = _coerce(table[name], hints[name], f, prefix + name, where, base_dir)
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(
    value: Any, hint: Any, f: dataclasses.Field[Any], key: str, where: str, base_dir: Path
) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=key + ".", where=where, base_dir=base_dir)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], f, key, where, base_dir)
    if origin is tuple:
        (item_type, _) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: key {key!r}: expected a list, found {value!r}.")
        items = tuple(
            _scalar(v, item_type, f"{key}[{i}]", where, base_dir) for i, v in enumerate(value)
        )
        for i, item in enumerate(items):
            _check_range(item, f, f"{key}[{i}]", where)
        if "min_len" in f.metadata and len(items) < f.metadata["min_len"]:
            raise ConfigError(
                f"{where}: key {key!r}: expected at least {f.metadata['min_len']} items."
            )
        return items
    checked = _scalar(value, hint, key, where, base_dir)
    _check_range(checked, f, key, where)
    return checked


def _scalar(value: Any, hint: Any, key: str, where: str, base_dir: Path) -> Any:
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where}: key {key!r}: expected a path string, found {value!r}.")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base_dir / p).resolve()
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and not math.isfinite(value):
            raise ConfigError(f"{where}: key {key!r}: expected a finite number, found {value!r}.")
    elif hint is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - a programming error in the dataclasses above
        raise TypeError(f"unsupported config type {hint!r} for {key}")
    if not ok:
        raise ConfigError(
            f"{where}: key {key!r}: expected {expected[hint]}, "
            f"found {value!r} ({type(value).__name__})."
        )
    return value


def _check_range(value: Any, f: dataclasses.Field[Any], key: str, where: str) -> None:
    meta = f.metadata
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (
            f"between {lo} and {hi}"
            if lo is not None and hi is not None
            else (f">= {lo}" if lo is not None else f"<= {hi}")
        )
        raise ConfigError(f"{where}: key {key!r}: expected a value {bounds}, found {value!r}.")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(
            f"{where}: key {key!r}: expected one of {', '.join(map(repr, choices))}, "
            f"found {value!r}."
        )
