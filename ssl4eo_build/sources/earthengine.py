"""The `earthengine` source: the real Earth Engine client behind the narrow source interface.

The only module that imports ``ee``. Per location and product, one ``computeFeatures`` request
returns every candidate scene of every season and year (id, time, cloud %, CRS, footprint); per
scene, ``computePixels`` returns the bands as NPY on an explicit grid in the scene's native CRS.
Masked pixels are unmasked to :data:`MISSING` on the server and become NaN here.

Quota and retries live in the download stage (one :class:`~.base.Limiter` per process, shared
by all threads, and :func:`~.base.with_retries`); this module only sorts failures into
retryable (429, 5xx, timeouts, connection resets, malformed responses) and final (other
4xx, missing assets). The client's own retries are switched off so every failure passes the
shared limiter and its slow-down.

Credentials never leave this module: messages name the key file or the project, never contents.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import ee
import httplib2
import numpy as np
from googleapiclient.errors import HttpError
from numpy.typing import NDArray

from ..config import EarthEngineConfig, fingerprint, section_dict
from ..errors import CredentialsError, FinalSourceError, RetryableSourceError, SourceError
from ..geo import LonLat
from ..grid import PixelGrid
from ..products import PRODUCTS
from .base import Scene, TimeWindow
from .chunks import Chunk, ResponseLimits, plan_chunks

log = logging.getLogger(__name__)
T = TypeVar("T")

HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
# Masked pixels are unmasked to this value on the server (no S-2 DN or S-1 dB takes it).
MISSING = -32768.0
PAGE_SIZE = 1000
# The band whose projection is the scene's native CRS (10 m).
CRS_BAND = {"S2L1C": "B2", "S2L2A": "B2", "S1GRD": "VV"}
# Earth Engine answers some overloads with HTTP 400 and one of these messages.
TRANSIENT_MESSAGES = ("timed out", "capacity exceeded", "too many concurrent", "try again")
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


def connect(
    cfg: EarthEngineConfig,
    http_transport: Any = None,
    credentials: Any = "load",
    env: Mapping[str, str] | None = None,
) -> str:
    """Initialise the client in this process (once per config) and return the project.

    Every process (pool worker, Dask worker) calls this for itself: the client's state is
    per process. ``http_transport`` and ``credentials`` exist for tests and custom transports.
    """
    key = fingerprint(section_dict(cfg))
    if http_transport is None and key in _CONNECTED:
        return _CONNECTED[key]
    creds, key_project = load_credentials(cfg) if credentials == "load" else (credentials, "")
    project = resolve_project(cfg, os.environ if env is None else env, key_project)
    url = cfg.url or (HIGH_VOLUME_URL if cfg.high_volume else None)
    try:
        ee.Initialize(creds, url=url, http_transport=http_transport, project=project)
        ee.data.setMaxRetries(0)
        ee.data.setDeadline(cfg.timeout_s * 1000.0)
    except ee.EEException as exc:
        raise CredentialsError(
            f"Earth Engine refused project {project!r}: {exc}. {HOW_TO_AUTHENTICATE}"
        ) from None
    except (OSError, httplib2.HttpLib2Error) as exc:
        raise CredentialsError(
            f"could not reach Earth Engine at {url or 'the default endpoint'} "
            f"({type(exc).__name__}); check the network or earthengine.url."
        ) from None
    _CONNECTED[key] = project
    return project


# ---------------------------------------------------------------- requests


def _millis(when: datetime) -> int:
    return round(when.replace(tzinfo=UTC).timestamp() * 1000)


def search_expression(
    product: str, point: LonLat, windows: Sequence[TimeWindow], max_cloud_pct: float
) -> ee.FeatureCollection:
    """Every candidate scene of ``product`` at ``point`` in any window, one feature each."""
    dates = [ee.Filter.date(_millis(w.start), _millis(w.end)) for w in windows]
    images = (
        ee.ImageCollection(PRODUCTS[product].collection)
        .filterBounds(ee.Geometry.Point([point.lon, point.lat]))
        .filter(ee.Filter.Or(*dates))
    )
    if product == "S1GRD":
        images = (
            images.filter(ee.Filter.eq("instrumentMode", "IW"))
            .filter(ee.Filter.listContains("transmitterReceiverPolarisation", "VV"))
            .filter(ee.Filter.listContains("transmitterReceiverPolarisation", "VH"))
        )
        extra = {}
    else:
        images = images.filter(ee.Filter.lt("CLOUDY_PIXEL_PERCENTAGE", max_cloud_pct))
        extra = {"cloud_pct": "CLOUDY_PIXEL_PERCENTAGE", "tile": "MGRS_TILE"}
    band = CRS_BAND[product]

    def describe(image: Any) -> ee.Feature:
        image = ee.Image(image)
        props = {"scene_id": image.get("system:index"), "time_ms": image.get("system:time_start")}
        props.update({name: image.get(prop) for name, prop in extra.items()})
        props["crs"] = image.select(band).projection().crs()
        return ee.Feature(image.geometry(), props)

    return ee.FeatureCollection(images.map(describe))


def scenes_from_features(product: str, features: Sequence[Mapping[str, Any]]) -> list[Scene]:
    """Scenes from a search answer; results without id, time or an EPSG CRS are skipped."""
    scenes = []
    for feature in features:
        props = feature.get("properties") or {}
        try:
            scene_id = str(props["scene_id"])
            acquired = datetime.fromtimestamp(float(props["time_ms"]) / 1000.0, UTC)
            authority, code = str(props["crs"]).split(":")
            if authority != "EPSG":
                raise ValueError(authority)
            epsg = int(code)
        except (KeyError, TypeError, ValueError):
            log.warning("%s: skipping a search result without id, time or EPSG CRS", product)
            continue
        cloud, tile = props.get("cloud_pct"), props.get("tile")
        is_s2 = product != "S1GRD"
        scenes.append(
            Scene(
                scene_id,
                product,
                acquired.replace(tzinfo=None),
                epsg,
                cloud_pct=None if cloud is None else float(cloud),
                granule=scene_id if is_s2 else None,  # L1C and L2A share system:index
                tile_id=f"T{tile}" if is_s2 and tile else None,
            )
        )
    return sorted(scenes, key=lambda s: (s.acquired, s.scene_id))


def pixel_request(
    product: str, scene_id: str, ee_bands: Sequence[str], grid: PixelGrid, chunk: Chunk
) -> dict[str, Any]:
    """computePixels parameters: ``ee_bands`` of one scene on one chunk of ``grid``."""
    image = (
        ee.Image(f"{PRODUCTS[product].collection}/{scene_id}")
        .select(list(ee_bands))
        .toFloat()
        .unmask(MISSING, False)  # sameFootprint=False: outside the swath too
    )
    return {
        "expression": image,
        "fileFormat": "NUMPY_NDARRAY",
        "bandIds": list(ee_bands),
        "grid": {
            "dimensions": {"width": chunk.width, "height": chunk.height},
            "affineTransform": {
                "scaleX": grid.res_x,
                "shearX": 0.0,
                "translateX": grid.left + chunk.col0 * grid.res_x,
                "shearY": 0.0,
                "scaleY": -grid.res_y,
                "translateY": grid.top - chunk.row0 * grid.res_y,
            },
            "crsCode": f"EPSG:{grid.epsg}",
        },
    }


def decode_pixels(data: Any, ee_bands: Sequence[str], chunk: Chunk) -> NDArray[np.float32]:
    """(bands, height, width) float32 from an NPY structured array, NaN where masked."""
    names = getattr(getattr(data, "dtype", None), "names", None) or ()
    if getattr(data, "shape", None) != (chunk.height, chunk.width) or set(ee_bands) - set(names):
        raise ValueError(
            f"expected a {chunk.height}x{chunk.width} array with bands {list(ee_bands)}, "
            f"found shape {getattr(data, 'shape', None)} with fields {list(names)}"
        )
    pixels = np.stack([np.asarray(data[b], dtype=np.float32) for b in ee_bands])
    pixels[pixels == np.float32(MISSING)] = np.nan
    return pixels


# ---------------------------------------------------------------- errors


def _retry_after(response: Any) -> float | None:
    try:
        return float(response.get("retry-after"))
    except (TypeError, ValueError):
        return None


def classify(exc: BaseException, what: str) -> SourceError | None:
    """The source error an exception from the client means, or None (a bug: let it raise)."""
    if isinstance(exc, ee.EEException):
        http = exc.__context__ if isinstance(exc.__context__, HttpError) else None
        if http is not None:
            status = int(http.resp.status)
            message = f"{what}: HTTP {status}: {exc}"
            if status == 429:
                return RetryableSourceError(message, _retry_after(http.resp), quota=True)
            if status >= 500 or status == 408:
                return RetryableSourceError(message)
            return FinalSourceError(message)
        if any(text in str(exc).lower() for text in TRANSIENT_MESSAGES):
            return RetryableSourceError(f"{what}: {exc}")
        return FinalSourceError(f"{what}: {exc}")
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


def _request(call: Callable[[], T], what: str) -> T:
    try:
        return call()
    except Exception as exc:
        error = classify(exc, what)
        if error is None:
            raise
        raise error from None


# ---------------------------------------------------------------- the source


class EarthEngineSource:
    """Scenes and pixels from Earth Engine (``--source earthengine``)."""

    name = "earthengine"

    def __init__(
        self,
        cfg: EarthEngineConfig,
        max_cloud_pct: float,
        http_transport: Any = None,
        credentials: Any = "load",
    ) -> None:
        self.cfg = cfg
        self.max_cloud_pct = max_cloud_pct
        self.limits = ResponseLimits.from_mb(cfg.max_response_mb, cfg.max_side_px, cfg.max_bands)
        self.project = connect(cfg, http_transport, credentials)

    def search(self, point: LonLat, product: str, windows: Sequence[TimeWindow]) -> list[Scene]:
        expression = search_expression(product, point, windows, self.max_cloud_pct)
        features: list[Mapping[str, Any]] = []
        token = None
        while True:  # one page unless a location has more than PAGE_SIZE candidates
            params: dict[str, Any] = {"expression": expression, "pageSize": PAGE_SIZE}
            if token:
                params["pageToken"] = token
            page = _request(partial(ee.data.computeFeatures, params), f"search {product}")
            features.extend(_request(partial(_features, page), f"search {product}"))
            token = page.get("nextPageToken") or page.get("next_page_token")
            if not token:
                return scenes_from_features(product, features)

    def fetch(self, scene: Scene, grid: PixelGrid, bands: Sequence[str]) -> NDArray[np.float32]:
        out = np.empty((len(bands), grid.height, grid.width), dtype=np.float32)
        what = f"pixels {scene.product} {scene.scene_id}"
        for chunk in plan_chunks(grid.width, grid.height, len(bands), self.limits):
            names = [ee_band(b) for b in bands[chunk.band0 : chunk.band1]]
            params = pixel_request(scene.product, scene.scene_id, names, grid, chunk)
            data = _request(partial(ee.data.computePixels, params), what)
            rows = slice(chunk.row0, chunk.row0 + chunk.height)
            cols = slice(chunk.col0, chunk.col0 + chunk.width)
            decode = partial(decode_pixels, data, names, chunk)
            out[chunk.band0 : chunk.band1, rows, cols] = _request(decode, what)
        return out
