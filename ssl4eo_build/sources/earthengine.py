"""The `earthengine` source: the real Earth Engine client behind the narrow source interface.

The only module that imports ``ee``. Per location one ``computeFeatures`` request answers the
whole scene plan (:func:`plan_expression`): L1C and L2A joined on ``system:index`` with the
cloud rule on both, Cloud Score+ presence per granule, and the S-1 IW VV+VH 10 m scenes within
the maximum gap of a clear granule — properties only, no footprints. Then one
``computePixels`` per season, or per pair of seasons on one grid, stacks every band on the
season's S-2 grid (:func:`pixel_expression`): S-2 as int16, S-1 as float32 resampled by Earth
Engine, masked pixels unmasked to :data:`MISSING` on the server.

Quota and retries live in the download stage (one :class:`~.base.Limiter` per process or one
for the whole Dask cluster, and :func:`~.base.with_retries`); this module sorts failures:
retryable (429, 5xx, timeouts, connection resets, Earth Engine's transient 400s, token refresh
and transport failures of ``google.auth``, malformed answers), too large (size limits, memory
or time-outs of a pixel request: cut and sent again) and final (unknown asset or band, invalid
argument, access denied). The client's own retries are switched off so every failure passes
the shared limiter and its slow-down.

Credentials never leave this module: messages name the key file or the project, never contents.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import ee
import google.auth.exceptions
import httplib2
import numpy as np
import requests
import requests.adapters
import urllib3
from googleapiclient.errors import HttpError
from numpy.typing import NDArray

from ..config import EarthEngineConfig, fingerprint, section_dict
from ..errors import (
    CredentialsError,
    FinalSourceError,
    RequestTooLargeError,
    RetryableSourceError,
    SourceError,
)
from ..modalities import CLOUD_SCORE, LULC_DYNAMIC_WORLD, PRODUCTS
from .base import Scene, SceneQuery, TimeWindow
from .requests import Layer, PixelRequest, ResponseLimits, band_id

log = logging.getLogger(__name__)
T = TypeVar("T")

HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
# Masked pixels are unmasked to this value on the server (no S-2 DN or S-1 dB takes it).
MISSING = -32768.0
PAGE_SIZE = 1000
CLOUD_PROPERTY = "CLOUDY_PIXEL_PERCENTAGE"
# Earth Engine answers some transient conditions with HTTP 400 and one of these messages.
TRANSIENT_MESSAGES = (
    "timed out", "capacity exceeded", "too many concurrent", "try again", "internal error",
)  # fmt: skip
# ... and these (on a pixel request) mean: ask for less at once — for sure (the size limits),
# or probably (memory and time-outs, which may also pass on a second try).
TOO_LARGE_MESSAGES = (
    "total request size", "must be less than or equal to", "too many bands", "grid dimensions",
)  # fmt: skip
TOO_HEAVY_MESSAGES = ("memory limit exceeded", "computation timed out")
ACCESS_MESSAGES = ("permission", "not registered", "has not been used", "is disabled")
HOW_TO_FIX_ACCESS = (
    "Check the project: the Earth Engine API enabled in it, the project registered for Earth "
    "Engine (https://code.earthengine.google.com/register), and the caller granted the Earth "
    "Engine Resource Viewer role or better"
)
HOW_TO_AUTHENTICATE = (
    "Authenticate once with `earthengine authenticate` (or `gcloud auth application-default "
    "login`), or use a service account: --ee-key KEY.json or earthengine.service_account_key."
)


def ee_band(name: str) -> str:
    """The v1.1 band spelling in Earth Engine's: B01 -> B1; B8A, B10, SCL, VV unchanged."""
    return "B" + name[2] if len(name) == 3 and name.startswith("B0") else name


# ---------------------------------------------------------------- authentication


def resolve_project(cfg: EarthEngineConfig, env: Mapping[str, str], key_project: str) -> str:
    project = cfg.project or env.get("EE_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") or key_project
    if not project:
        raise CredentialsError(
            "no Earth Engine project: pass --ee-project PROJECT, set earthengine.project in the "
            "config, or set EE_PROJECT. The project must be registered for Earth Engine "
            "(https://code.earthengine.google.com/register)."
        )
    return project


def load_credentials(cfg: EarthEngineConfig) -> tuple[Any, str]:
    """(credentials, the key's own project or "") from the key file or the user's defaults."""
    key = cfg.service_account_key
    if key is not None:
        return _service_account(Path(key))
    try:
        return ee.data.get_persistent_credentials(), ""
    except ee.EEException:
        message = f"no Earth Engine credentials found. {HOW_TO_AUTHENTICATE}"
        raise CredentialsError(message) from None


def _service_account(path: Path) -> tuple[Any, str]:
    where = f"earthengine.service_account_key: {path}"
    if not path.is_file():
        raise CredentialsError(f"{where}: key file not found. {HOW_TO_AUTHENTICATE}")
    try:
        info = json.loads(path.read_text())
        project = str(info.get("project_id") or "")
        credentials = ee.ServiceAccountCredentials(None, key_file=str(path))
    except Exception:  # the parser's message may quote the key; say what is wrong instead
        raise CredentialsError(
            f"{where}: not a service-account JSON key (expected the key file downloaded from "
            "the Cloud console, with type, client_email and private_key)."
        ) from None
    return credentials, project


_CONNECTED: dict[str, str] = {}  # config fingerprint -> project, for this process


def _without_client_retries() -> None:
    """Switch the client's own retries off before it is initialised.

    ``ee`` 1.7.50 reads the retry count from its module state at every call, and its only
    public setter (``ee.data.setMaxRetries``) rebuilds the REST client after ``Initialize`` —
    two more discovery fetches per process. Setting the state before ``Initialize`` builds the
    client once; this is the one place that touches the client's private state.
    """
    ee.data._get_state().max_retries = 0


def connect(
    cfg: EarthEngineConfig,
    http_transport: Any = None,
    credentials: Any = "load",
    env: Mapping[str, str] | None = None,
    pool_size: int = 40,
) -> str:
    """Initialise the client in this process (once per config) and return the project.

    Every process (pool worker, Dask worker) calls this for itself: the client's state is
    per process. Requests go through a :class:`PooledTransport` (``pool_size`` connections,
    ``timeout_s`` per request) unless ``http_transport`` is given (tests, custom transports).
    """
    key = fingerprint(section_dict(cfg))
    if http_transport is None and key in _CONNECTED:
        return _CONNECTED[key]
    creds, key_project = load_credentials(cfg) if credentials == "load" else (credentials, "")
    project = resolve_project(cfg, os.environ if env is None else env, key_project)
    url = cfg.url or (HIGH_VOLUME_URL if cfg.high_volume else None)
    transport = http_transport or PooledTransport(pool_size, cfg.timeout_s)
    try:
        _without_client_retries()
        ee.Initialize(creds, url=url, http_transport=transport, project=project)
    except ee.EEException as exc:
        raise CredentialsError(
            f"Earth Engine refused project {project!r}: {exc}. {HOW_TO_AUTHENTICATE}"
        ) from None
    except (OSError, httplib2.HttpLib2Error) as exc:
        raise CredentialsError(
            f"could not reach Earth Engine at {url or 'the default endpoint'} "
            f"({type(exc).__name__}); check the network or earthengine.url."
        ) from None
    except (google.auth.exceptions.RefreshError, google.auth.exceptions.TransportError) as exc:
        raise CredentialsError(
            f"Earth Engine credentials were refused ({type(exc).__name__}). {HOW_TO_AUTHENTICATE}"
        ) from None
    _CONNECTED[key] = project
    return project


# ---------------------------------------------------------------- the transport


class PooledTransport:
    """An ``httplib2.Http``-like transport over one ``requests`` session whose connection
    pool holds ``pool_size`` connections (the in-flight cap: none is opened and dropped), with
    a hard deadline per request: the whole answer, not just each read, within ``timeout_s``."""

    CHUNK = 1 << 20

    def __init__(self, pool_size: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=pool_size, max_retries=0
        )
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        redirections: int | None = None,
        connection_type: Any = None,
    ) -> tuple[httplib2.Response, bytes]:
        deadline = time.monotonic() + self.timeout_s
        try:
            response = self.session.request(
                method, uri, data=body, headers=dict(headers or {}), stream=True,
                timeout=self.timeout_s,
            )  # fmt: skip
            with response:
                parts = []
                # read1 returns what one receive brings, so the deadline is checked as the
                # answer arrives; a stalled connection ends at the read timeout.
                while part := response.raw.read1(self.CHUNK, decode_content=True):
                    parts.append(part)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no complete answer within {self.timeout_s:g} s")
        except requests.exceptions.Timeout as exc:
            raise TimeoutError(f"no answer within {self.timeout_s:g} s") from exc
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc  # resets, DNS, TLS
        answer = httplib2.Response({**response.headers, "status": response.status_code})
        return answer, b"".join(parts)


# ---------------------------------------------------------------- requests


def _millis(when: datetime) -> int:
    return round(when.replace(tzinfo=UTC).timestamp() * 1000)


def _any_window(windows: Sequence[TimeWindow]) -> ee.Filter:
    return ee.Filter.Or(*[ee.Filter.date(_millis(w.start), _millis(w.end)) for w in windows])


def _granule(pair: Any) -> ee.Feature:
    a, b = ee.Image(ee.Feature(pair).get("l1c")), ee.Image(ee.Feature(pair).get("l2a"))
    return ee.Feature(
        None,
        {
            "kind": "S2",
            "id": a.get("system:index"),
            "time_ms": a.get("system:time_start"),
            "l2a_time_ms": b.get("system:time_start"),
            "cloud_l1c": a.get(CLOUD_PROPERTY),
            "cloud_l2a": b.get(CLOUD_PROPERTY),
            "tile": a.get("MGRS_TILE"),
            "crs": a.select("B2").projection().crs(),
            "l2a_crs": b.select("B2").projection().crs(),
        },
    )


def _scene(kind: str) -> Callable[[Any], ee.Feature]:
    def describe(image: Any) -> ee.Feature:
        image = ee.Image(image)
        props = {"kind": kind, "id": image.get("system:index")}
        if kind == "S1":
            props["time_ms"] = image.get("system:time_start")
        return ee.Feature(None, props)

    return describe


@dataclass(frozen=True)
class PlanFunctions:
    """What the scene plan maps over its collections: a clear granule (L1C + L2A) to its
    properties, an S-1 scene to its id and time, a granule companion (Cloud Score+, Dynamic
    World) to its id, by product. They do not depend on the location, so the client builds
    them once (:func:`plan_functions`) instead of for every request — building one costs
    milliseconds of client CPU."""

    granule: Any
    radar: Any
    companions: dict[str, Any]
    resample: dict[str, Any]  # an image resampled before a mosaic, by method


GRANULE_COMPANIONS = (CLOUD_SCORE.name, LULC_DYNAMIC_WORLD.name)


def plan_functions() -> PlanFunctions:
    def function(body: Callable[[Any], ee.Element], kind: str = "Feature") -> Any:
        return ee.CustomFunction.create(body, kind, [kind])

    return PlanFunctions(
        function(_granule),
        function(_scene("S1")),
        {name: function(_scene(name)) for name in GRANULE_COMPANIONS},
        {method: function(_resampled(method), "Image") for method in ("bilinear", "bicubic")},
    )


def _resampled(method: str) -> Callable[[Any], ee.Image]:
    return lambda image: ee.Image(image).resample(method)


def _map(collection: Any, function: Any) -> ee.FeatureCollection:
    return ee.FeatureCollection(ee.ApiFunction.call_("Collection.map", collection, function))


def plan_expression(query: SceneQuery, f: PlanFunctions) -> ee.FeatureCollection:
    """The whole scene plan of a location as one FeatureCollection of property-only
    features: ``kind`` "S2" (a granule clear in L1C and L2A), "S1" (a scene within the gap of a
    clear granule), or a companion product ("CS": a granule with a Cloud Score+ image)."""
    where = ee.Geometry.Point([query.point.lon, query.point.lat])
    s2_dates = _any_window(query.s2_windows)

    def clear(product: str) -> ee.ImageCollection:
        return (
            ee.ImageCollection(PRODUCTS[product].collection)
            .filterBounds(where)
            .filter(s2_dates)
            .filter(ee.Filter.lt(CLOUD_PROPERTY, query.max_cloud_pct))
        )

    l1c, l2a = clear("S2L1C"), clear("S2L2A")
    pairs = ee.Join.inner("l1c", "l2a").apply(
        l1c, l2a, ee.Filter.equals(leftField="system:index", rightField="system:index")
    )
    s1 = (
        ee.ImageCollection(PRODUCTS["S1GRD"].collection)
        .filterBounds(where)
        .filter(_any_window(query.s1_windows))
        .filter(ee.Filter.eq("instrumentMode", "IW"))
        .filter(ee.Filter.listContains("transmitterReceiverPolarisation", "VV"))
        .filter(ee.Filter.listContains("transmitterReceiverPolarisation", "VH"))
        .filter(ee.Filter.eq("resolution_meters", 10))
    )
    near = ee.Filter.maxDifference(
        difference=round(query.s1_max_gap_days * 86_400_000),
        leftField="system:time_start",
        rightField="system:time_start",
    )
    s1 = ee.Join.simple().apply(s1, l2a, near)
    plan = _map(pairs, f.granule).merge(_map(s1, f.radar))
    for name, collection in query.companions:
        found = ee.ImageCollection(collection).filterBounds(where).filter(s2_dates)
        plan = plan.merge(_map(found, f.companions[name]))
    return plan


def _epsg(crs: Any) -> int:
    authority, code = str(crs).split(":")
    if authority != "EPSG":
        raise ValueError(crs)
    return int(code)


def _when(time_ms: Any) -> datetime:
    return datetime.fromtimestamp(float(time_ms) / 1000.0, UTC).replace(tzinfo=None)


def _cloud(value: Any) -> float | None:
    return None if value is None else float(value)


def scenes_from_plan(features: Sequence[Mapping[str, Any]]) -> dict[str, list[Scene]]:
    """Candidates per product from the plan's answer. A result without id, time or an EPSG
    CRS is skipped with a warning; a null tile or cloud cover stays None (the service answers
    null where an image lacks the property)."""
    found: dict[str, list[Scene]] = {"S2L1C": [], "S2L2A": [], "S1GRD": []}
    companions: dict[str, set[str]] = {}
    for f in features:
        props = f.get("properties") or {}
        if props.get("kind") in GRANULE_COMPANIONS:
            companions.setdefault(str(props.get("id")), set()).add(props["kind"])
    for feature in features:
        props = feature.get("properties") or {}
        try:
            scene_id, kind = str(props["id"]), props["kind"]
            if kind in GRANULE_COMPANIONS:
                continue
            if kind == "S1":
                found["S1GRD"].append(Scene(scene_id, "S1GRD", _when(props["time_ms"]), 4326))
                continue
            tile = props.get("tile")
            tile_id = f"T{tile}" if tile else None
            l1c, l2a = (
                Scene(
                    scene_id,
                    product,
                    _when(props[time]),
                    _epsg(props[crs]),
                    _cloud(props.get(cloud)),
                    scene_id,
                    tile_id,
                    frozenset(companions.get(scene_id, ())),
                )
                for product, time, crs, cloud in (
                    ("S2L1C", "time_ms", "crs", "cloud_l1c"),
                    ("S2L2A", "l2a_time_ms", "l2a_crs", "cloud_l2a"),
                )
            )
        except (KeyError, TypeError, ValueError):
            log.warning("skipping a scene-plan result without id, time or EPSG CRS: %s", props)
            continue
        found["S2L1C"].append(l1c)
        found["S2L2A"].append(l2a)
    return {p: sorted(v, key=lambda s: (s.acquired, s.scene_id)) for p, v in found.items()}


def layer_image(layer: Layer, s1_resampling: str, f: PlanFunctions) -> ee.Image:
    """One layer's image, as its registry entry says it is found: the chosen scene or the
    granule's companion by id, the collection mosaicked (each image resampled first), or the
    collection's images of the layer's year mosaicked."""
    spec = layer.spec
    # S-2 is asked for on its own grid: nothing to resample.
    method = {"s1": s1_resampling, "s2": "nearest"}.get(spec.resampling, spec.resampling)
    if spec.image in ("scene", "granule"):
        image = ee.Image(f"{spec.collection}/{layer.scene.scene_id}")
        return image if method == "nearest" else image.resample(method)
    images = ee.ImageCollection(spec.collection)
    if spec.image == "annual":
        year = layer.scene.acquired.year
        images = images.filterDate(_millis(datetime(year, 1, 1)), _millis(datetime(year + 1, 1, 1)))
    if method != "nearest":
        images = ee.ImageCollection(
            ee.ApiFunction.call_("Collection.map", images, f.resample[method])
        )
    return images.mosaic()


def pixel_expression(request: PixelRequest, s1_resampling: str, f: PlanFunctions) -> ee.Image:
    """Every layer of ``request`` as one image: each layer's bands selected and renamed,
    resampled as its product declares (nearest is Earth Engine's default), cast to the stored
    type, and masked pixels unmasked to :data:`MISSING` everywhere (outside the swath too)."""
    images = []
    for layer in request.layers:
        image = layer_image(layer, s1_resampling, f).select(
            [ee_band(b) for b in layer.bands], [band_id(layer, b) for b in layer.bands]
        )
        image = image.toInt16() if layer.dtype == "int16" else image.toFloat()
        images.append(image.unmask(MISSING, False))
    return ee.Image.cat(images)


def pixel_params(request: PixelRequest, s1_resampling: str, f: PlanFunctions) -> dict[str, Any]:
    """computePixels parameters: the stacked image on the request's grid, as NPY."""
    grid = request.grid
    return {
        "expression": pixel_expression(request, s1_resampling, f),
        "fileFormat": "NPY",  # bytes, read by read_npy (the client's own reader is unsafe)
        "grid": {
            "dimensions": {"width": grid.width, "height": grid.height},
            "affineTransform": {
                "scaleX": grid.res_x,
                "shearX": 0.0,
                "translateX": grid.left,
                "shearY": 0.0,
                "scaleY": -grid.res_y,
                "translateY": grid.top,
            },
            "crsCode": f"EPSG:{grid.epsg}",
        },
    }


_NPY_LOCK = threading.Lock()


def read_npy(data: bytes) -> NDArray[Any]:
    """An NPY answer as an array, one at a time per process.

    ``numpy.load`` parses the header with ``ast.literal_eval``, and CPython 3.11 before
    3.11.8 fails that ("AST constructor recursion depth mismatch") when threads compile at
    once, as 40 download threads do (seen with the client's own NUMPY_NDARRAY conversion).
    """
    with _NPY_LOCK:
        return np.load(io.BytesIO(data), allow_pickle=False)


def decode_pixels(data: bytes, request: PixelRequest) -> dict[tuple[str, int], NDArray[Any]]:
    """(bands, height, width) per layer from an NPY structured array, in the layer's type:
    :data:`MISSING` becomes NaN in float32 layers and stays the int16 nodata marker."""
    array = read_npy(data)
    shape = (request.grid.height, request.grid.width)
    names = array.dtype.names or ()
    wanted = [band_id(x, b) for x in request.layers for b in x.bands]
    if array.shape != shape or set(wanted) - set(names):
        raise ValueError(
            f"expected a {shape[0]}x{shape[1]} array with bands {wanted}, "
            f"found shape {array.shape} with fields {list(names)}"
        )
    out = {}
    for layer in request.layers:
        stack = np.stack([np.asarray(array[band_id(layer, b)]) for b in layer.bands])
        if layer.dtype == "float32":
            pixels = stack.astype(np.float32)
            pixels[stack == MISSING] = np.nan
        else:
            pixels = stack.astype(np.int16)
        out[layer.key] = pixels
    return out


# ---------------------------------------------------------------- errors


def _retry_after(response: Any) -> float | None:
    if response is None:
        return None
    try:
        return float(response.get("retry-after"))
    except (TypeError, ValueError):
        return None


def _has(message: str, texts: Sequence[str]) -> bool:
    lowered = message.lower()
    return any(text in lowered for text in texts)


def classify(exc: BaseException, what: str) -> SourceError | None:
    """The source error an exception from the client means, or None (a bug: let it raise).

    Earth Engine answers some transient conditions with HTTP 400 and a message; those are
    told apart by their wording, as the service documents no other sign.
    """
    if isinstance(exc, ee.EEException):
        http = exc.__context__ if isinstance(exc.__context__, HttpError) else None
        status = int(http.resp.status) if http is not None else None
        message = f"{what}: HTTP {status}: {exc}" if status else f"{what}: {exc}"
        if status == 429:
            return RetryableSourceError(message, _retry_after(getattr(http, "resp", None)), True)
        if _has(str(exc), TOO_LARGE_MESSAGES + TOO_HEAVY_MESSAGES):
            return RequestTooLargeError(message, certain=_has(str(exc), TOO_LARGE_MESSAGES))
        if (status or 0) >= 500 or status == 408 or _has(str(exc), TRANSIENT_MESSAGES):
            return RetryableSourceError(message)
        if status in (401, 403) or _has(str(exc), ACCESS_MESSAGES):
            return FinalSourceError(f"{message}. {HOW_TO_FIX_ACCESS}")
        return FinalSourceError(message)
    if isinstance(exc, google.auth.exceptions.RefreshError | google.auth.exceptions.TransportError):
        return RetryableSourceError(f"{what}: token refresh failed ({type(exc).__name__})")
    if isinstance(exc, OSError | httplib2.HttpLib2Error):  # timeouts, resets, TLS, DNS
        return RetryableSourceError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError | EOFError | KeyError | AttributeError):
        return RetryableSourceError(f"{what}: malformed response ({type(exc).__name__}: {exc})")
    return None


def _features(page: Any) -> list[Mapping[str, Any]]:
    features = page.get("features") if isinstance(page, Mapping) else None
    if not isinstance(features, list):
        raise ValueError(f"expected a FeatureCollection, found {type(page).__name__}")
    return features


def _request(call: Callable[[], T], what: str, can_cut: bool = True) -> T:
    """``call`` with its failure classified; a metadata request cannot be cut, so there
    memory and time-outs are retried as they are."""
    try:
        return call()
    except Exception as exc:
        error = classify(exc, what)
        if error is None:
            raise
        if isinstance(error, RequestTooLargeError) and not can_cut:
            error = RetryableSourceError(str(error))
        raise error from None


# ---------------------------------------------------------------- the source


class EarthEngineSource:
    """Scenes and pixels from Earth Engine (``--source earthengine``)."""

    name = "earthengine"

    def __init__(
        self,
        cfg: EarthEngineConfig,
        s1_resampling: str = "nearest",
        pool_size: int = 40,
        http_transport: Any = None,
        credentials: Any = "load",
    ) -> None:
        self.cfg = cfg
        self.s1_resampling = s1_resampling
        self.limits = ResponseLimits.from_mb(cfg.max_response_mb, cfg.max_side_px, cfg.max_bands)
        self.project = connect(cfg, http_transport, credentials, pool_size=pool_size)
        self.functions = plan_functions()

    def plan(self, query: SceneQuery) -> dict[str, list[Scene]]:
        expression = plan_expression(query, self.functions)
        features: list[Mapping[str, Any]] = []
        token = None
        while True:  # one page unless a location has more than PAGE_SIZE candidates
            params: dict[str, Any] = {"expression": expression, "pageSize": PAGE_SIZE}
            if token:
                params["pageToken"] = token
            page = _request(partial(ee.data.computeFeatures, params), "scene plan", False)
            features.extend(_request(partial(_features, page), "scene plan"))
            token = page.get("nextPageToken") or page.get("next_page_token")
            if not token:
                return scenes_from_plan(features)

    def send(self, request: PixelRequest) -> Any:
        params = pixel_params(request, self.s1_resampling, self.functions)
        return _request(partial(ee.data.computePixels, params), _what(request))

    def decode(self, request: PixelRequest, answer: Any) -> dict[tuple[str, int], NDArray[Any]]:
        return _request(partial(decode_pixels, answer, request), _what(request))

    def fetch(self, request: PixelRequest) -> dict[tuple[str, int], NDArray[Any]]:
        return self.decode(request, self.send(request))


def _what(request: PixelRequest) -> str:
    return "pixels " + ", ".join(sorted({layer.scene.scene_id for layer in request.layers}))
