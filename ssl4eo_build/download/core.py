"""Stage `download`, pure part: season windows, scene choice, and the per-location worker.

Scene choice (SPEC section 4):

- Fresh mode, v1's rule (``date_rule = "v1_shift"``): one shift of 0..``max_shift_days`` per
  location, seeded by its sample id; each season's window is v1's reference date minus the
  shift, +/- ``window_days``; the usable granule taken by ``choose`` (v1: the most recent). A
  location that cannot fill every season draws a new shift (``shift_tries`` in all). Usable:
  the same granule in L1C and L2A, ``cloud_pct < max_cloud_pct`` in both. ``fixed_year``:
  windows around the season dates of the first year in ``years`` with a usable granule.
- Reference-index mode: per season with a reference time, the usable granule (acquired in one
  of ``reference_years``) closest to that time within ``reference_max_gap_days``.
- S-1: the scene closest in time to the chosen S-2 acquisition within ``s1_max_gap_days``. If the
  preferred granule has no S-1 partner, the next granule in preference order is tried.

The worker :func:`download_location` runs in a thread: one metadata request answers every
candidate of the location, then one pixel request per season — or per pair of seasons on the
same grid — stacks every layer of the registry (L1C, L2A + SCL, S-1, Cloud Score+ where the
granule has it, the land cover of the timestamp's year; the DEM once, in the season on the
majority CRS) on the season's S-2 grid. It talks to the source through the shared limiter and
retry policy, writes one GeoTIFF per request and type (int16: S-2 and land-cover classes;
float32: S-1, Cloud Score+, DEM), and returns a small result record; only the coordinator
writes the manifest.
"""

from __future__ import annotations

import itertools
import logging
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from ..config import Config
from ..errors import FinalSourceError, RequestTooLargeError, RetryableSourceError
from ..files import intact
from ..geo import LonLat, majority_crs
from ..grid import PixelGrid, centred_grid
from ..modalities import N_SEASONS, Product, fetched_products
from ..raster_io import write_geotiff
from ..sources.base import (
    ClusterLimiter,
    ClusterQuota,
    Limiter,
    RetryPolicy,
    Scene,
    SceneQuery,
    Source,
    TimeWindow,
    with_retries,
)
from ..sources.requests import (
    Assembly,
    Layer,
    PixelRequest,
    RequestShape,
    band_id,
    pieces,
    plan_requests,
)
from ..workdir import WorkDir, request_relpath

log = logging.getLogger(__name__)
T = TypeVar("T")
DAY_S = 86_400.0
EPOCH = datetime(1970, 1, 1)


def season_reference(season: int, year: int, dates: tuple[str, ...]) -> datetime:
    """Reference date of ``season`` (0..3) in ``year``; ``dates`` are "MM-DD" strings."""
    month, day = (int(part) for part in dates[season].split("-"))
    return datetime(year, month, day, 12, 0, 0)


def window(centre: datetime, half_days: float) -> tuple[datetime, datetime]:
    return centre - timedelta(days=half_days), centre + timedelta(days=half_days)


@dataclass(frozen=True)
class SeasonPick:
    season: int
    l1c: Scene
    l2a: Scene
    s1: Scene
    s1_gap_days: float

    def scene(self, product: str) -> Scene:
        return {"S2L1C": self.l1c, "S2L2A": self.l2a, "S1GRD": self.s1}[product]


@dataclass(frozen=True)
class NoScene:
    season: int
    product: str
    detail: str

    @property
    def reason(self) -> str:
        return f"no_scene: season {self.season} {self.product}: {self.detail}"


def gap_days(a: datetime, b: datetime) -> float:
    return abs((a - b).total_seconds()) / DAY_S


def shift_days(cfg: Config, sample_id: str, attempt: int = 0) -> int:
    """v1's per-location shift (0 .. ``max_shift_days``), seeded by the sample id and the try."""
    seed = zlib.crc32(sample_id.encode())
    return int(np.random.default_rng([seed, attempt]).integers(0, cfg.download.max_shift_days + 1))


def v1_reference(cfg: Config, season: int) -> datetime:
    return datetime.fromisoformat(cfg.download.v1_dates[season]).replace(hour=12)


def shifted_window(cfg: Config, season: int, shift: int) -> tuple[datetime, datetime]:
    """v1's window of ``season``: its reference date minus the shift, +/- ``window_days``."""
    return window(v1_reference(cfg, season) - timedelta(days=shift), cfg.download.window_days)


def s2_windows(cfg: Config, refs: Mapping[int, datetime]) -> list[TimeWindow]:
    """Every time window the S-2 search must cover, all seasons, years and shifts (one
    request: redrawing a shift needs no new search)."""
    d = cfg.download
    out = [TimeWindow(*window(refs[s], d.reference_max_gap_days)) for s in sorted(refs)]
    fresh = [s for s in range(N_SEASONS) if s not in refs]
    if fresh and d.date_rule == "v1_shift":
        start = min(shifted_window(cfg, s, d.max_shift_days)[0] for s in fresh)
        end = max(shifted_window(cfg, s, 0)[1] for s in fresh)
        out.append(TimeWindow(start, end))
    elif fresh:
        for season in fresh:
            for year in d.years:
                centre = season_reference(season, year, d.season_dates)
                out.append(TimeWindow(*window(centre, d.window_days)))
    return out


def s1_windows(cfg: Config, refs: Mapping[int, datetime]) -> list[TimeWindow]:
    """The S-2 windows widened by the S-1 gap: every S-1 partner any granule could have."""
    pad = timedelta(days=cfg.download.s1_max_gap_days)
    return [TimeWindow(w.start - pad, w.end + pad) for w in s2_windows(cfg, refs)]


def usable_pairs(
    l1c: Sequence[Scene], l2a: Sequence[Scene], max_cloud: float, companions: Sequence[str] = ()
) -> list[tuple[Scene, Scene]]:
    """Granules present in both L1C and L2A with a cloud cover below ``max_cloud`` in both,
    and with every granule companion in ``companions`` (e.g. Dynamic World's label image).

    The pairing by id is checked: an L1C and an L2A granule of one id must have been acquired
    at the same time in the same CRS, or the pair is left out (with a warning).
    """
    by_id = {s.scene_id: s for s in l2a}
    pairs = []
    for a in l1c:
        b = by_id.get(a.scene_id)
        if b is None or a.cloud_pct is None or b.cloud_pct is None:
            continue
        if abs((a.acquired - b.acquired).total_seconds()) > 1.0 or a.epsg != b.epsg:
            log.warning(
                "granule %s: L1C (%s, EPSG:%d) and L2A (%s, EPSG:%d) disagree; left out",
                a.scene_id, a.acquired, a.epsg, b.acquired, b.epsg,
            )  # fmt: skip
            continue
        if a.cloud_pct < max_cloud and b.cloud_pct < max_cloud and b.companions >= set(companions):
            pairs.append((a, b))
    return pairs


def _cloud(pair: tuple[Scene, Scene]) -> float:
    return max(pair[0].cloud_pct or 0.0, pair[1].cloud_pct or 0.0)  # both set: usable_pairs


def _fresh_preference(centre: datetime, pair: tuple[Scene, Scene]) -> tuple[float, float, str]:
    return _cloud(pair), gap_days(pair[1].acquired, centre), pair[1].scene_id


def rank_s2(
    pairs: Sequence[tuple[Scene, Scene]], season: int, cfg: Config, ref: datetime | None
) -> list[tuple[Scene, Scene]]:
    """Usable granules for one season in order of preference (empty: none qualifies)."""
    d = cfg.download
    if ref is not None:
        near = [
            p
            for p in pairs
            if p[1].acquired.year in d.reference_years
            and gap_days(p[1].acquired, ref) <= d.reference_max_gap_days
        ]
        return sorted(near, key=lambda p: (gap_days(p[1].acquired, ref), _cloud(p), p[1].scene_id))
    ranked: list[tuple[Scene, Scene]] = []
    for year in d.years:
        centre = season_reference(season, year, d.season_dates)
        start, end = window(centre, d.window_days)
        in_window = [p for p in pairs if start <= p[1].acquired <= end]
        ranked.extend(sorted(in_window, key=partial(_fresh_preference, centre)))
    return ranked


def pick_s1(s1: Sequence[Scene], when: datetime, max_gap_days: float) -> tuple[Scene, float] | None:
    """The S-1 scene closest in time to ``when`` within the gap (ties by id)."""
    best = min(s1, key=lambda s: (gap_days(s.acquired, when), s.scene_id), default=None)
    if best is None or gap_days(best.acquired, when) > max_gap_days:
        return None
    return best, gap_days(best.acquired, when)


Ranking = list[tuple[Scene, Scene]]


def rank_shifted(
    pairs: Sequence[tuple[Scene, Scene]], season: int, cfg: Config, shift: int
) -> Ranking:
    """v1's rule: usable granules in the season's shifted window, in ``download.choose``
    order (v1: the most recent first)."""
    start, end = shifted_window(cfg, season, shift)
    centre = start + (end - start) / 2
    inside = [p for p in pairs if start <= p[1].acquired <= end]
    keys: dict[str, Callable[[tuple[Scene, Scene]], tuple[float, float, str]]] = {
        "latest": lambda p: (-(p[1].acquired - EPOCH).total_seconds(), _cloud(p), p[1].scene_id),
        "closest": lambda p: (gap_days(p[1].acquired, centre), _cloud(p), p[1].scene_id),
        "least_cloudy": partial(_fresh_preference, centre),
    }
    return sorted(inside, key=keys[cfg.download.choose])


def choose_scenes(
    l1c: Sequence[Scene],
    l2a: Sequence[Scene],
    s1: Sequence[Scene],
    cfg: Config,
    refs: Mapping[int, datetime],
    sample_id: str = "",
) -> list[SeasonPick] | NoScene:
    """One S-2 granule (L1C + L2A) and one S-1 scene per season, or why not. Under v1's
    date rule a location that cannot fill every season draws a new shift, up to
    ``download.shift_tries`` times in all."""
    d = cfg.download
    pairs = usable_pairs(l1c, l2a, d.max_cloud_pct, required_companions(cfg))
    if d.date_rule == "fixed_year" or len(refs) == N_SEASONS:
        return _fill_seasons(pairs, s1, cfg, refs, None)
    failure: NoScene | None = None
    for attempt in range(d.shift_tries):
        result = _fill_seasons(pairs, s1, cfg, refs, shift_days(cfg, sample_id, attempt))
        if not isinstance(result, NoScene):
            return result
        failure = failure or result
    assert failure is not None
    tries = f" ({d.shift_tries} shift(s) tried)" if d.shift_tries > 1 else ""
    return NoScene(failure.season, failure.product, failure.detail + tries)


def _fill_seasons(
    pairs: Sequence[tuple[Scene, Scene]],
    s1: Sequence[Scene],
    cfg: Config,
    refs: Mapping[int, datetime],
    shift: int | None,
) -> list[SeasonPick] | NoScene:
    """Every season from its ranking (reference time, shifted window, or fixed years)."""
    d = cfg.download
    picks = []
    for season in range(N_SEASONS):
        if season in refs or shift is None:
            ranked = rank_s2(pairs, season, cfg, refs.get(season))
        else:
            ranked = rank_shifted(pairs, season, cfg, shift)
        if not ranked:
            if season in refs:
                where = f"within {d.reference_max_gap_days:g} d of {refs[season].isoformat()}"
            elif shift is not None:
                start, end = shifted_window(cfg, season, shift)
                where = f"between {start:%Y-%m-%d} and {end:%Y-%m-%d} (shift {shift} d)"
            else:
                where = f"within {d.window_days:g} d of {d.season_dates[season]} in " + "/".join(
                    map(str, d.years)
                )
            return NoScene(season, "S2", f"no granule under {d.max_cloud_pct:g}% cloud {where}")
        for a, b in ranked:
            partner = pick_s1(s1, b.acquired, d.s1_max_gap_days)
            if partner is not None:
                picks.append(SeasonPick(season, a, b, partner[0], round(partner[1], 4)))
                break
        else:
            return NoScene(
                season,
                "S1GRD",
                f"no IW VV+VH scene within {d.s1_max_gap_days:g} d of any of "
                f"{len(ranked)} clear S-2 granule(s)",
            )
    return picks


def required_companions(cfg: Config) -> tuple[str, ...]:
    """Granule companions a usable granule must have (Dynamic World when it is the land cover)."""
    return tuple(p.name for p in fetched_products(cfg) if p.image == "granule" and not p.optional)


def lulc_year(cfg: Config, acquired: datetime) -> int:
    """The land-cover year of a timestamp: its own, or the nearest the collection holds."""
    d = cfg.download
    return min(max(acquired.year, d.lulc_first_year), d.lulc_last_year)


def layer_scene(cfg: Config, product: Product, pick: SeasonPick) -> Scene | None:
    """The image ``product`` contributes to ``pick``'s season (None: an optional companion the
    granule lacks). Besides the chosen scenes: a granule companion has the granule's id, a
    mosaic the collection's, an annual product ``{collection}:{year}``."""
    granule = pick.l2a
    if product.image == "scene":
        return pick.scene(product.name)
    if product.image == "granule":
        if product.optional and product.name not in granule.companions:
            return None
        return Scene(granule.scene_id, product.name, granule.acquired, granule.epsg)
    if product.image == "mosaic":
        return Scene(product.collection, product.name, EPOCH, granule.epsg)
    year = lulc_year(cfg, granule.acquired)
    return Scene(f"{product.collection}:{year}", product.name, datetime(year, 1, 1), granule.epsg)


def single_season(picks: Sequence[SeasonPick], centre: LonLat) -> int:
    """Where single-timestamp layers (the DEM) are fetched: the first season in the CRS
    `align` will choose, so they are resampled once."""
    epsg = majority_crs([p.l2a.epsg for p in picks], centre)
    return min(p.season for p in picks if p.l2a.epsg == epsg)


def planned_layers(cfg: Config, picks: Sequence[SeasonPick], centre: LonLat) -> list[Layer]:
    """Every layer the chosen scenes need, per season, in the registry's order."""
    once = single_season(picks, centre)
    layers = []
    for pick, product in itertools.product(picks, fetched_products(cfg)):
        if product.timestamps == 1 and pick.season != once:
            continue
        scene = layer_scene(cfg, product, pick)
        if scene is not None:
            layers.append(Layer(product, pick.season, scene, product.bands))
    return layers


def fetch_grid(cfg: Config, scene: Scene, centre: LonLat) -> PixelGrid:
    """The buffered area of interest in the scene's native CRS, snapped to the lattice."""
    size = cfg.sample.patch_px + 2 * cfg.download.buffer_px
    return centred_grid(scene.epsg, centre, size, cfg.sample.pixel_m, cfg.download.lattice_m)


@dataclass(frozen=True)
class DownloadTask:
    sample_id: str
    position: LonLat
    refs: dict[int, datetime] = field(default_factory=dict)
    # (product, season) -> (scene id, sha256, EPSG, path) recorded by an earlier, unfinished
    # attempt: not fetched again while its file is on disk and intact.
    done: dict[tuple[str, int], tuple[str, str | None, int | None, str]] = field(
        default_factory=dict
    )


@dataclass(frozen=True)
class SceneRecord:
    product: str
    season: int
    scene: Scene
    path: str  # relative to the work directory
    gap_days: float | None
    sha256: str | None
    epsg: int  # of the file: the season's S-2 grid (S-1 arrives on it too)


@dataclass(frozen=True)
class DownloadResult:
    sample_id: str
    status: str  # ok | rejected | failed
    reason: str | None = None
    scenes: tuple[SceneRecord, ...] = ()
    requests: int = 0


class CorruptDataError(RetryableSourceError):
    """Pixels outside the product's hard limits (non-finite, S-1 beyond -60..40 dB, ...):
    fetched again; if the source keeps sending them, the location is rejected."""


def checked_pixels(
    source: Source, request: PixelRequest, answer: Any
) -> dict[tuple[str, int], NDArray[Any]]:
    """The pixels of a request's answer, refused (retryably) when a layer breaks its
    product's hard limits or does not have the shape and type asked for."""
    pixels = source.decode(request, answer)
    for layer in request.layers:
        data = pixels.get(layer.key)
        shape = (len(layer.bands), request.grid.height, request.grid.width)
        if data is None or data.shape != shape or data.dtype != np.dtype(layer.dtype):
            found = "nothing" if data is None else f"{data.dtype} {data.shape}"
            raise CorruptDataError(
                f"{layer.scene.scene_id}: expected {layer.dtype} {shape}, found {found}"
            )
        problem = layer.spec.value_problem(data, layer.bands)
        if problem is not None:
            raise CorruptDataError(f"corrupt pixels from {layer.scene.scene_id}: {problem}")
    return pixels


def _same(value: T) -> T:
    return value


class LimitedCaller:
    """Source calls through the shared limiter with retries; counts requests."""

    def __init__(self, limiter: Limiter | ClusterLimiter, policy: RetryPolicy) -> None:
        self.limiter, self.policy, self.requests = limiter, policy, 0

    def __call__(self, fn: Callable[[], T]) -> T:
        return self.then(fn, _same)

    def then(self, fn: Callable[[], Any], after: Callable[[Any], T]) -> T:
        """``fn()`` (one request) under the quota, then ``after`` on its answer outside it:
        decoding and checks do not hold a slot. Both are retried together."""

        def once() -> T:
            self.requests += 1
            with self.limiter:
                value = fn()
            self.limiter.recover()
            return after(value)

        def on_retry(exc: RetryableSourceError) -> None:
            if exc.quota:
                self.limiter.slow_down()

        return with_retries(once, self.policy, on_retry)


def fetch_request(
    source: Source, call: LimitedCaller, shape: RequestShape, request: PixelRequest
) -> dict[tuple[str, int], NDArray[Any]]:
    """All pixels of ``request``, in as many pieces as the limits and the server demand. A
    piece refused for its size is cut, and the cut remembered; one the server ran out of
    memory or time on is sent once more as it is, and cut if that fails the same way."""
    whole = Assembly(request)
    todo = pieces(request, shape, source.limits)
    struck: set[PixelRequest] = set()
    while todo:
        piece = todo.pop(0)
        try:
            whole.add(
                piece,
                call.then(partial(source.send, piece), partial(checked_pixels, source, piece)),
            )
        except RequestTooLargeError as exc:
            if not exc.certain and piece not in struck:
                struck.add(piece)
                todo.insert(0, piece)
                continue
            if not shape.shrink(piece):
                raise RetryableSourceError(f"{exc} (a single band and pixel)") from None
            log.info("cutting pixel requests smaller after: %s", exc)
            todo = [p for t in (piece, *todo) for p in pieces(t, shape, source.limits)]
    return whole.arrays


def scene_query(cfg: Config, task: DownloadTask) -> SceneQuery:
    d = cfg.download
    return SceneQuery(
        task.position,
        tuple(s2_windows(cfg, task.refs)),
        tuple(s1_windows(cfg, task.refs)),
        d.max_cloud_pct,
        d.s1_max_gap_days,
        tuple((p.name, p.collection) for p in fetched_products(cfg) if p.image == "granule"),
    )


def download_location(
    source: Source,
    cfg: Config,
    task: DownloadTask,
    work: WorkDir,
    limiter: Limiter | ClusterLimiter,
    policy: RetryPolicy,
    shape: RequestShape,
) -> DownloadResult:
    """Plan (one request), choose, and fetch one location (a request per season or pair of
    seasons); never raises for source errors. A failed attempt still reports the files it
    completed, so the next one fetches only the rest."""
    call = LimitedCaller(limiter, policy)
    records: list[SceneRecord] = []

    def result(status: str, reason: str | None = None) -> DownloadResult:
        return DownloadResult(task.sample_id, status, reason, tuple(records), call.requests)

    try:
        found = call(partial(source.plan, scene_query(cfg, task)))
        choice = choose_scenes(
            found["S2L1C"], found["S2L2A"], found["S1GRD"], cfg, task.refs, task.sample_id
        )
        if isinstance(choice, NoScene):
            return result("rejected", choice.reason)
        picks = {pick.season: pick for pick in choice}
        grids = {pick.season: fetch_grid(cfg, pick.l2a, task.position) for pick in choice}
        wanted = []
        checked: dict[str, bool] = {}
        for layer in planned_layers(cfg, choice, task.position):
            kept = _kept(task, work, layer, picks[layer.season], checked)
            if kept is None:
                wanted.append(layer)
            else:
                records.append(kept)
        for request in plan_requests(wanted, grids, cfg.download.seasons_per_request):
            pixels = fetch_request(source, call, shape, request)
            for dtype in sorted({layer.dtype for layer in request.layers}):
                layers = [layer for layer in request.layers if layer.dtype == dtype]
                records.extend(_write_raw(cfg, task, work, layers, picks, request.grid, pixels))
        return result("ok")
    except CorruptDataError as exc:
        return result("rejected", f"corrupt_data: {exc}")
    except RetryableSourceError as exc:
        return result("failed", f"transient: {exc}")
    except (FinalSourceError, RequestTooLargeError) as exc:
        return result("rejected", f"source: {exc}")


def _gap(layer: Layer, pick: SeasonPick) -> float | None:
    return pick.s1_gap_days if layer.product == "S1GRD" else None


def _kept(
    task: DownloadTask, work: WorkDir, layer: Layer, pick: SeasonPick, checked: dict[str, bool]
) -> SceneRecord | None:
    """The record of a layer whose file an earlier attempt left intact, or None (``checked``:
    files already verified for this location, as several layers share one)."""
    earlier = task.done.get(layer.key)
    if earlier is None:
        return None
    scene_id, sha256, epsg, relpath = earlier
    if scene_id != layer.scene.scene_id or epsg is None:
        return None
    if relpath not in checked:
        checked[relpath] = intact(work.path(relpath), sha256)
    if not checked[relpath]:
        return None
    return SceneRecord(
        layer.product, layer.season, layer.scene, relpath, _gap(layer, pick), sha256, epsg
    )


def _write_raw(
    cfg: Config,
    task: DownloadTask,
    work: WorkDir,
    layers: Sequence[Layer],
    picks: Mapping[int, SeasonPick],
    grid: PixelGrid,
    pixels: Mapping[tuple[str, int], NDArray[Any]],
) -> list[SceneRecord]:
    """One raw GeoTIFF for layers of one type fetched together: bands named
    ``{product}_{season}_{band}``, each layer's scene metadata in tags of the same prefix."""
    products = list(dict.fromkeys(x.product for x in layers))
    seasons = sorted({x.season for x in layers})
    relpath = request_relpath(task.sample_id, products, seasons)
    tags = {"sample_id": task.sample_id}
    for layer in layers:
        scene, gap = layer.scene, _gap(layer, picks[layer.season])
        prefix = f"{layer.product}_{layer.season}_"
        tags.update({
            prefix + "scene_id": scene.scene_id,
            prefix + "acquired": scene.acquired.isoformat(),
            prefix + "cloud_pct": "" if scene.cloud_pct is None else f"{scene.cloud_pct:g}",
            prefix + "tile_id": scene.tile_id or "",
            prefix + "s1_gap_days": "" if gap is None else f"{gap:g}",
        })  # fmt: skip
    sha256 = write_geotiff(
        work.path(relpath),
        np.concatenate([pixels[layer.key] for layer in layers]),
        grid,
        [band_id(layer, b) for layer in layers for b in layer.bands],
        tags=tags,
        compress=cfg.download.compress,
        level=cfg.download.compress_level,
        dtype=layers[0].dtype,
        scratch=work.scratch,
    )
    return [
        SceneRecord(
            x.product, x.season, x.scene, relpath, _gap(x, picks[x.season]), sha256, grid.epsg
        )
        for x in layers
    ]


# One source, limiter and request shape per worker process (Dask workers, process pools):
# sources hold connections and locks that do not travel between processes.
WorkerState = tuple[Source, Limiter | ClusterLimiter, RetryPolicy, RequestShape]
_WORKER_STATE: dict[str, WorkerState] = {}
_WORKER_STATE_LOCK = threading.Lock()  # a Dask worker's threads start their first tasks at once


def worker_state(cfg: Config, quota: ClusterQuota | None = None) -> WorkerState:
    """This process's source, limiter, retry policy and request shape (made once, by the first
    thread that asks). On a Dask worker (``quota``) the limiter holds the quota together with
    every other worker."""
    from ..config import fingerprint, section_dict
    from ..sources import make_source

    d = cfg.download
    key = fingerprint(
        [section_dict(d), section_dict(cfg.synthetic), section_dict(cfg.earthengine), quota]
    )
    with _WORKER_STATE_LOCK:
        state = _WORKER_STATE.get(key)
        if state is None:
            source = make_source(cfg)
            limiter = (
                ClusterLimiter(quota, d.max_in_flight, d.requests_per_s)
                if quota is not None
                else Limiter(d.max_in_flight, d.requests_per_s)
            )
            state = _WORKER_STATE[key] = (
                source,
                limiter,
                RetryPolicy(d.max_attempts, d.retry_base_s, d.retry_max_s),
                RequestShape(d.seasons_per_request, source.limits.max_bands),
            )
        return state


def download_on_worker(
    cfg: Config, work: WorkDir, quota: ClusterQuota | None, task: DownloadTask
) -> DownloadResult:
    """:func:`download_location` with the calling process's own source (initialised once)."""
    source, limiter, policy, shape = worker_state(cfg, quota)
    return download_location(source, cfg, task, work, limiter, policy, shape)
