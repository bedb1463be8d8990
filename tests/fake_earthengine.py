"""A fake Earth Engine REST server as an httplib2-style transport, as strict as the service.

The real `ee` client runs unmodified: discovery and the algorithm list come from the test data
the `ee` package ships (what ``ee.apitestcase`` uses). The fake then *evaluates* what the client
sends, against a small archive of images with properties, footprints and typed bands:

- ``computeFeatures``: the serialised expression is interpreted (collections, bounds, date,
  property and list filters, inner and simple joins, map with functions, merge, get). Results
  are paged at ``page_size``; properties an image lacks come back null, as the service's do.
- ``computePixels``: the image expression (load, select with new names, resample, casts,
  unmask, band concatenation) is evaluated on the requested grid. Values encode the band and
  the world pixel position (:func:`truth`) so a test can check that the grid it asked for is the
  grid it got. Masked pixels are 0 unless the expression unmasks them; bands come in the type
  the expression casts them to (the archive's own type otherwise).
- What the service refuses, the fake refuses with HTTP 400 and the service's wording: unknown
  assets, unknown bands, unknown functions, answers over 50,331,648 bytes, grids over 32,768 px
  per side, more than 1,024 bands; ``memory_limit_bytes`` makes heavier requests fail with
  "User memory limit exceeded.".
- Faults (HTTP statuses, the transient 400s, timeouts, resets, malformed bodies, token refresh
  and transport failures) are scripted per endpoint or drawn at a fixed rate.

Every request is recorded; the peak number in flight is tracked.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ee
import google.auth.exceptions
import httplib2
import numpy as np
from numpy.typing import NDArray

EE_TEST_DATA = Path(ee.__file__).parent / "tests"
MISSING = -32768.0
TOKEN = "ya29.fake-access-token-never-logged"
MAX_BYTES = 50_331_648  # 48 MB
MAX_SIDE = 32_768
MAX_BANDS = 1024


@dataclass(frozen=True)
class Call:
    kind: str  # discovery | algorithms | computeFeatures | computePixels | token | other
    method: str
    uri: str
    body: dict[str, Any] | None
    headers: dict[str, str]


@dataclass(frozen=True)
class Fault:
    """``status`` (an HTTP error), ``timeout``, ``reset``, ``malformed`` (a 200 with junk),
    ``refresh`` / ``auth_transport`` (google.auth failures while getting a token)."""

    kind: str
    status: int = 0
    retry_after: float | None = None
    message: str = "fake failure"


TRANSIENT = (
    Fault("status", 429, message="Too many concurrent requests"),
    Fault("status", 500),
    Fault("status", 503),
    Fault("status", 400, message="Computation timed out."),
    Fault("status", 400, message="Earth Engine capacity exceeded."),
    Fault("status", 400, message="User memory limit exceeded."),
    Fault("timeout"),
    Fault("reset"),
    Fault("malformed"),
    Fault("refresh"),
    Fault("auth_transport"),
)

BAND_NAMES = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12",
              "SCL", "VV", "VH", "cs", "cs_cdf", "DEM", "b1", "label")  # fmt: skip
L1C_BANDS = BAND_NAMES[:13]
L2A_BANDS = tuple(b for b in BAND_NAMES[:14] if b != "B10")
L1C = "COPERNICUS/S2_HARMONIZED"
L2A = "COPERNICUS/S2_SR_HARMONIZED"
S1 = "COPERNICUS/S1_GRD"
CS = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
DEM = "COPERNICUS/DEM/GLO30"
ESRI = "projects/sat-io/open-datasets/landcover/ESRI_Global-LULC_10m_TS"
DW = "GOOGLE/DYNAMICWORLD/V1"
DTYPES = {"int16": "<i2", "float": "<f4", "uint16": "<u2", "float64": "<f8", "uint8": "<u1"}
ESRI_CODES = (1, 2, 4, 5, 7, 8, 9, 10, 11)


def band_code(band: str) -> int:
    """A distinct value per Earth Engine band name."""
    return BAND_NAMES.index(band) + 1


def truth(band: str, ix: NDArray[np.int64], iy: NDArray[np.int64]) -> NDArray[np.float64]:
    """The fake archive's value at world pixel (ix, iy), inside the product's hard limits:
    S-2 bands 1000 per band code, one step per column is 10, per row 1; SCL a class 0..11;
    S-1 dB from -50 (quarter dB per column, sixteenth per row); Cloud Score+ in 0..1; the
    DEM 100 m plus a metre per column and a tenth per row; ESRI land-cover codes and Dynamic
    World labels cycling along the diagonals."""
    if band == "SCL":
        return ((ix + iy) % 12).astype(np.float64)
    if band in ("VV", "VH"):
        return -50 + band_code(band) + 0.25 * (ix % 90) + (iy % 10) / 16
    if band in ("cs", "cs_cdf"):
        return ((ix + 3 * iy) % 100) / 100.0
    if band == "DEM":
        return 100.0 + (ix % 90) + (iy % 10) / 10
    if band == "b1":
        return np.array(ESRI_CODES, dtype=np.float64)[(ix + iy) % len(ESRI_CODES)]
    if band == "label":
        return ((ix + iy) % 9).astype(np.float64)
    return (1000 * band_code(band) + 10 * (ix % 90) + (iy % 10)).astype(np.float64)


def world_pixels(
    translate_x: float, translate_y: float, scale_x: float, scale_y: float, width: int, height: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """World pixel indices (ix by column, iy by row) of a north-up grid (scale_y < 0)."""
    ix = round(translate_x / scale_x) + np.arange(width)
    iy = round(translate_y / -scale_y) - np.arange(height)
    return np.meshgrid(ix, iy)


# ---------------------------------------------------------------- the archive


@dataclass(frozen=True)
class Image:
    """An archive image (or an expression over one): properties, footprint, typed bands."""

    asset: str  # collection/system:index
    properties: dict[str, Any]
    epsg: int
    bbox: tuple[float, float, float, float]  # lon/lat west, south, east, north
    bands: tuple[Band, ...]


@dataclass(frozen=True)
class Band:
    name: str  # as the expression names it
    source: str  # the archive band its values come from
    dtype: str  # numpy dtype string of the answer
    resample: str = "nearest"
    unmask: float | None = None


def image(
    collection: str, index: str, when: datetime, bands: Sequence[str], dtype: str, epsg: int,
    bbox: tuple[float, float, float, float] = (10.0, 47.0, 13.0, 49.5), **props: Any,
) -> Image:  # fmt: skip
    properties = {"system:index": index, "system:time_start": millis(when), **props}
    return Image(
        f"{collection}/{index}",
        properties,
        epsg,
        bbox,
        tuple(Band(b, b, DTYPES[dtype]) for b in bands),
    )


SEASONS_2021 = [datetime(2021, 3, 20, 12), datetime(2021, 6, 21, 12),
                datetime(2021, 9, 22, 12), datetime(2021, 12, 21, 12)]  # fmt: skip


def millis(when: datetime) -> int:
    return round((when - datetime(1970, 1, 1)).total_seconds() * 1000)


def granule_id(when: datetime, tile: str = "T32UPU") -> str:
    return f"{when:%Y%m%dT%H%M%S}_{when:%Y%m%dT%H%M%S}_{tile}"


def archive() -> dict[str, list[Image]]:
    """Per season of 2021: a clear granule (+1 day, with Cloud Score+ and Dynamic World
    images) and a cloudy one (-2 days) in L1C and L2A; an S-1 IW VV+VH 10 m scene 2 days after
    the clear granule, and decoys the search must leave out (a 40 m scene, a
    single-polarisation one, one far from every clear granule). Two DEM tiles, and ESRI land
    cover per year 2017-2023 in two tiles."""
    out: dict[str, list[Image]] = {L1C: [], L2A: [], S1: [], CS: [], DW: []}
    west, east = (10.0, 47.0, 11.5, 49.5), (11.5, 47.0, 13.0, 49.5)
    out[DEM] = [image(DEM, f"Copernicus_DSM_{i}", datetime(2015, 1, 1), ("DEM",), "float",
                      4326, bbox) for i, bbox in enumerate((west, east))]  # fmt: skip
    out[ESRI] = [
        image(ESRI, f"32U_{year}_{i}", datetime(year, 1, 1), ("b1",), "uint8", 32632, bbox)
        for year in range(2017, 2024)
        for i, bbox in enumerate((west, east))
    ]
    for season, ref in enumerate(SEASONS_2021):
        clear, cloudy = ref + timedelta(days=1), ref - timedelta(days=2)
        for when, cloud in ((clear, 3.5), (cloudy, 40.0)):
            gid = granule_id(when)
            tile = {"MGRS_TILE": "32UPU"} if season != 3 else {}  # a null tile in season 3
            out[L1C].append(image(L1C, gid, when, L1C_BANDS, "uint16", 32632,
                                  CLOUDY_PIXEL_PERCENTAGE=cloud, **tile))  # fmt: skip
            out[L2A].append(image(L2A, gid, when, L2A_BANDS, "uint16", 32632,
                                  CLOUDY_PIXEL_PERCENTAGE=cloud + 0.5, **tile))  # fmt: skip
        out[CS].append(image(CS, granule_id(clear), clear, ("cs", "cs_cdf"), "float", 32632))
        out[DW].append(image(DW, granule_id(clear), clear, ("label",), "uint8", 32632))
        s1 = {"instrumentMode": "IW", "transmitterReceiverPolarisation": ["VV", "VH"],
              "resolution_meters": 10}  # fmt: skip
        when = clear + timedelta(days=2)
        out[S1].append(image(S1, f"S1A_IW_GRDH_1SDV_{season}", when, ("VV", "VH"), "float64",
                             32632, **s1))  # fmt: skip
        decoys = (
            (f"S1A_IW_GRDM_1SDV_{season}", when, {**s1, "resolution_meters": 40}),
            (f"S1A_IW_GRDH_1SSV_{season}", when,
             {**s1, "transmitterReceiverPolarisation": ["VV"]}),
            (f"S1A_IW_GRDH_1SDV_far_{season}", clear + timedelta(days=40), s1),
        )  # fmt: skip
        for index, at, props in decoys:
            out[S1].append(image(S1, index, at, ("VV", "VH"), "float64", 32632, **props))
    return out


# ---------------------------------------------------------------- the evaluator


class Refused(Exception):
    """What the service answers with HTTP 400 and this message."""


@dataclass(frozen=True)
class Feature:
    geometry: Any
    properties: dict[str, Any]


@dataclass(frozen=True)
class Filter:
    test: Callable[[Any], bool] | None = None  # one element
    pair: Callable[[Any, Any], bool] | None = None  # a join condition


@dataclass(frozen=True)
class Join:
    kind: str  # inner | simple
    keys: tuple[str, str] = ("primary", "secondary")


@dataclass(frozen=True)
class Function:
    names: list[str]
    body: Any
    env: dict[str, Any]


def prop(element: Any, name: str) -> Any:
    if isinstance(element, Image):
        return element.properties.get(name)
    if isinstance(element, Feature):
        return element.properties.get(name)
    raise Refused(f"Element.get: expected an element, found {type(element).__name__}")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(f"{where}: expected a number, found {json.dumps(value)}.")
    return float(value)


class Evaluator:
    """Interprets the serialised expressions the client sends, function by function."""

    def __init__(self, images: Mapping[str, Sequence[Image]]) -> None:
        self.images = images
        self.functions: dict[str, Callable[..., Any]] = {
            "ImageCollection.load": self.load_collection,
            "Image.load": self.load_image,
            "Collection.filter": lambda collection, filter: [
                e for e in collection if filter.test(e)
            ],
            "Collection.map": self.map,
            "Collection.merge": lambda collection1, collection2: [*collection1, *collection2],
            "AggregateFeatureCollection.array": lambda collection, property: [
                prop(e, property) for e in collection
            ],
            "List.contains": lambda list, element: element in list,
            "Feature": lambda geometry=None, metadata=None: Feature(geometry, dict(metadata or {})),
            "GeometryConstructors.Point": lambda coordinates, crs=None: tuple(coordinates),
            "DateRange": lambda start, end=None, timeZone=None: (
                _number(start, "DateRange"),
                _number(end, "DateRange"),
            ),
            "Filter.or": lambda filters: Filter(lambda e: any(f.test(e) for f in filters)),
            "Filter.intersects": self.intersects,
            "Filter.dateRangeContains": lambda leftValue, rightField: Filter(
                lambda e: (
                    prop(e, rightField) is not None
                    and leftValue[0] <= prop(e, rightField) < leftValue[1]
                )
            ),
            "Filter.lessThan": lambda leftField, rightValue: Filter(
                lambda e: prop(e, leftField) is not None and prop(e, leftField) < rightValue
            ),
            "Filter.equals": self.equals,
            "Filter.listContains": lambda leftField, rightValue: Filter(
                lambda e: rightValue in (prop(e, leftField) or [])
            ),
            "Filter.maxDifference": self.max_difference,
            "Join.inner": lambda primaryKey="primary", secondaryKey="secondary", measureKey=None: (
                Join("inner", (primaryKey, secondaryKey))
            ),
            "Join.simple": lambda: Join("simple"),
            "Join.apply": self.join,
            "Element.get": lambda object, property: prop(object, property),
            "Image.select": self.select,
            "Image.projection": lambda image: f"EPSG:{image.epsg}",
            "Projection.crs": lambda projection: projection,
            "Image.resample": lambda image, mode="bilinear": self.each_band(image, resample=mode),
            "Image.toInt16": lambda value: self.each_band(value, dtype="<i2"),
            "Image.toFloat": lambda value: self.each_band(value, dtype="<f4"),
            "Image.unmask": lambda input, value=None, sameFootprint=True: self.each_band(
                input, unmask=0.0 if value is None else float(value)
            ),
            "Image.constant": lambda value: _number(value, "Image.constant"),
            "Image.addBands": self.add_bands,
            "ImageCollection.mosaic": self.mosaic,
        }

    def evaluate(self, expression: Mapping[str, Any]) -> Any:
        values = expression["values"]

        def walk(node: Any, env: dict[str, Any]) -> Any:
            if "constantValue" in node:
                return node["constantValue"]
            if "valueReference" in node:
                return walk(values[node["valueReference"]], env)
            if "arrayValue" in node:
                return [walk(v, env) for v in node["arrayValue"]["values"]]
            if "dictionaryValue" in node:
                return {k: walk(v, env) for k, v in node["dictionaryValue"]["values"].items()}
            if "argumentReference" in node:
                return env[node["argumentReference"]]
            if "functionDefinitionValue" in node:
                definition = node["functionDefinitionValue"]
                return Function(definition["argumentNames"], definition["body"], env)
            invocation = node["functionInvocationValue"]
            name = invocation["functionName"]
            function = self.functions.get(name)
            if function is None:
                raise Refused(f"Unknown function: {name}.")
            args = {k: walk(v, env) for k, v in invocation.get("arguments", {}).items()}
            try:
                return function(**args)
            except TypeError as exc:
                raise Refused(f"{name}: invalid arguments ({exc}).") from None

        self.walk = walk
        return walk(values[expression["result"]], {})

    def map(self, collection: list[Any], baseAlgorithm: Function) -> list[Any]:
        (name,) = baseAlgorithm.names
        body = {"valueReference": baseAlgorithm.body}
        return [self.walk(body, {**baseAlgorithm.env, name: e}) for e in collection]

    def load_collection(self, id: str) -> list[Image]:
        if id not in self.images:
            raise Refused(
                f"ImageCollection.load: ImageCollection asset '{id}' not found "
                "(does not exist or caller does not have access)."
            )
        return list(self.images[id])

    def load_image(self, id: str, version: int | None = None) -> Image:
        collection, _, index = id.rpartition("/")
        for found in self.images.get(collection, ()):
            if found.properties["system:index"] == index:
                return found
        raise Refused(
            f"Image.load: Image asset '{id}' not found (does not exist or caller does not have "
            "access)."
        )

    @staticmethod
    def intersects(leftField: str, rightValue: Any, maxError: Any = None) -> Filter:
        point = rightValue.geometry if isinstance(rightValue, Feature) else rightValue
        if leftField != ".all" or not isinstance(point, tuple) or len(point) != 2:
            raise Refused("Filter.intersects: expected a point and leftField '.all'.")
        lon, lat = point

        def test(e: Image) -> bool:
            w, s, east, n = e.bbox
            return w <= lon <= east and s <= lat <= n

        return Filter(test)

    @staticmethod
    def equals(
        leftField: str, rightValue: Any = None, rightField: str | None = None, leftValue: Any = None
    ) -> Filter:
        if rightField is not None:
            return Filter(pair=lambda a, b: prop(a, leftField) == prop(b, rightField))
        return Filter(lambda e: prop(e, leftField) == rightValue)

    @staticmethod
    def max_difference(
        difference: Any,
        leftField: str,
        rightValue: Any = None,
        rightField: str | None = None,
        leftValue: Any = None,
    ) -> Filter:
        limit = _number(difference, "Filter.maxDifference")
        if rightField is None:
            value = _number(rightValue, "Filter.maxDifference rightValue")
            return Filter(lambda e: abs(prop(e, leftField) - value) <= limit)
        return Filter(pair=lambda a, b: abs(prop(a, leftField) - prop(b, rightField)) <= limit)

    @staticmethod
    def join(join: Join, primary: list[Any], secondary: list[Any], condition: Filter) -> list[Any]:
        if condition.pair is None:
            raise Refused("Join.apply: the condition must compare a primary and a secondary field.")
        pair = condition.pair
        if join.kind == "simple":
            return [a for a in primary if any(pair(a, b) for b in secondary)]
        first, second = join.keys
        return [
            Feature(None, {first: a, second: b}) for a in primary for b in secondary if pair(a, b)
        ]

    @staticmethod
    def select(input: Image, bandSelectors: list[str], newNames: list[str] | None = None) -> Image:
        by_name = {b.name: b for b in input.bands}
        missing = [s for s in bandSelectors if s not in by_name]
        if missing:
            raise Refused(
                f"Image.select: Pattern '{missing[0]}' did not match any bands. Available bands: "
                f"[{', '.join(by_name)}]"
            )
        names = newNames or bandSelectors
        if len(names) != len(bandSelectors):
            raise Refused("Image.select: newNames must match bandSelectors in length.")
        bands = tuple(
            replace(by_name[s], name=n) for s, n in zip(bandSelectors, names, strict=True)
        )
        return replace(input, bands=bands)

    @staticmethod
    def each_band(image: Image, **change: Any) -> Image:
        return replace(image, bands=tuple(replace(b, **change) for b in image.bands))

    @staticmethod
    def mosaic(collection: list[Image]) -> Image:
        """The images' common bands, as one image (values come from the archive's truth);
        an empty collection mosaics to an image without bands, as the service's does."""
        if not collection:
            return Image("(mosaic)", {}, 4326, (-180.0, -90.0, 180.0, 90.0), ())
        names = [b.name for b in collection[0].bands]
        if any([b.name for b in e.bands] != names for e in collection):
            raise Refused("ImageCollection.mosaic: the images' bands differ.")
        return replace(collection[0], asset="(mosaic)", properties={})

    @staticmethod
    def add_bands(
        dstImg: Image, srcImg: Image, names: Any = None, overwrite: bool = False
    ) -> Image:
        both = [*dstImg.bands, *srcImg.bands]
        if len({b.name for b in both}) != len(both):
            raise Refused("Image.addBands: duplicate band names.")
        return replace(dstImg, bands=tuple(both), asset="(stack)")


# ---------------------------------------------------------------- the transport


class FakeEarthEngine:
    """``request(uri, method, body, headers, ...)`` like ``httplib2.Http``; thread-safe."""

    def __init__(
        self,
        images: Mapping[str, Sequence[Image]] | None = None,
        latency_s: float = 0.0,
        error_rate: float = 0.0,
        seed: int = 0,
        mask_every: int | None = None,
        page_size: int = 1000,
        memory_limit_bytes: int | None = None,
    ) -> None:
        self.images = dict(archive() if images is None else images)
        self.latency_s = latency_s
        self.error_rate = error_rate
        self.mask_every = mask_every
        self.page_size = page_size
        self.memory_limit_bytes = memory_limit_bytes
        self.calls: list[Call] = []
        self.refusals: list[str] = []  # the 400s the fake's own rules gave, in order
        self.scripted: dict[str, deque[Fault]] = {
            "computeFeatures": deque(),
            "computePixels": deque(),
        }
        self.in_flight = 0
        self.peak_in_flight = 0
        # (kind, start, end) of every compute call, wall clock
        self.spans: list[tuple[str, float, float]] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._answers: dict[str, bytes | Refused] = {}

    # -- test API -------------------------------------------------------------------------------

    def fail_next(self, kind: str, *faults: Fault) -> None:
        with self._lock:
            self.scripted[kind].extend(faults)

    def of_kind(self, kind: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == kind]

    # -- httplib2.Http ----------------------------------------------------------------------------

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        redirections: int | None = None,
        connection_type: Any = None,
    ) -> tuple[httplib2.Response, bytes]:
        kind = self._kind(uri)
        parsed = json.loads(body) if kind.startswith("compute") and body else None
        with self._lock:
            self.calls.append(Call(kind, method, uri, parsed, dict(headers or {})))
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            fault = self._next_fault(kind)
        started = time.time()
        try:
            if self.latency_s:
                time.sleep(self.latency_s)
            return self._answer(kind, parsed, fault)
        finally:
            with self._lock:
                self.in_flight -= 1
                if kind in self.scripted:
                    self.spans.append((kind, started, time.time()))

    @staticmethod
    def _kind(uri: str) -> str:
        path = uri.split("?")[0]
        if "$discovery" in uri:
            return "discovery"
        if path.endswith("/algorithms"):
            return "algorithms"
        if "/token" in path:
            return "token"
        for kind in ("computeFeatures", "computePixels"):
            if path.endswith(":" + kind):
                return kind
        return "other"

    def _next_fault(self, kind: str) -> Fault | None:
        queue = self.scripted.get(kind)
        if queue:
            return queue.popleft()
        if kind in self.scripted and self.error_rate and self._rng.random() < self.error_rate:
            return self._rng.choice(TRANSIENT)
        return None

    def _answer(
        self, kind: str, body: dict[str, Any] | None, fault: Fault | None
    ) -> tuple[httplib2.Response, bytes]:
        if fault is not None:
            return self._fault(fault)
        if kind == "discovery":
            return _ok((EE_TEST_DATA / "cloud_api_discovery_document.json").read_bytes())
        if kind == "algorithms":
            return _ok((EE_TEST_DATA / "algorithms.json").read_bytes())
        if kind == "token":
            return _ok(json.dumps({"access_token": TOKEN, "expires_in": 3600}).encode())
        if kind not in ("computeFeatures", "computePixels") or body is None:
            return _error(404, f"the fake has no {kind} endpoint")
        key = json.dumps(body, sort_keys=True)
        with self._lock:
            outcome = self._answers.get(key)
        if outcome is None:  # the same expression gets the same answer: kept, as a cache
            try:
                if kind == "computeFeatures":
                    outcome = json.dumps(self._features(body)).encode()
                else:
                    outcome = self._pixels(body)
            except Refused as exc:
                outcome = exc
            with self._lock:
                self._answers[key] = outcome
                while len(self._answers) > 64:
                    self._answers.pop(next(iter(self._answers)))
        if isinstance(outcome, Refused):
            with self._lock:
                self.refusals.append(str(outcome))
            return _error(400, str(outcome))
        return _ok(outcome)

    @staticmethod
    def _fault(fault: Fault) -> tuple[httplib2.Response, bytes]:
        if fault.kind == "timeout":
            raise TimeoutError("fake read timeout")
        if fault.kind == "reset":
            raise ConnectionResetError(104, "fake connection reset by peer")
        if fault.kind == "refresh":
            raise google.auth.exceptions.RefreshError("fake: invalid_grant while refreshing")
        if fault.kind == "auth_transport":
            raise google.auth.exceptions.TransportError("fake: token endpoint unreachable")
        if fault.kind == "malformed":
            return _ok(b"<html>502 Bad Gateway</html>")
        extra = {} if fault.retry_after is None else {"retry-after": str(fault.retry_after)}
        return _error(fault.status, fault.message, extra)

    def _features(self, body: dict[str, Any]) -> dict[str, Any]:
        result = Evaluator(self.images).evaluate(body["expression"])
        if not isinstance(result, list):
            raise Refused("computeFeatures: the expression is not a FeatureCollection.")
        offset = int(body.get("pageToken") or 0)
        size = min(int(body.get("pageSize") or self.page_size), self.page_size)
        page = result[offset : offset + size]
        answer: dict[str, Any] = {"type": "FeatureCollection", "features": []}
        for element in page:
            if not isinstance(element, Feature):
                raise Refused("computeFeatures: the collection holds images, not features.")
            properties = {k: _plain(v) for k, v in element.properties.items()}
            answer["features"].append(
                {"type": "Feature", "geometry": element.geometry, "properties": properties}
            )
        if offset + size < len(result):
            answer["nextPageToken"] = str(offset + size)
        return answer

    def _pixels(self, body: dict[str, Any]) -> bytes:
        stack = Evaluator(self.images).evaluate(body["expression"])
        if not isinstance(stack, Image):
            raise Refused("computePixels: the expression is not an Image.")
        grid = body["grid"]
        t, dims = grid["affineTransform"], grid["dimensions"]
        width, height = int(dims["width"]), int(dims["height"])
        bands = [b for b in stack.bands if not body.get("bandIds") or b.name in body["bandIds"]]
        if max(width, height) > MAX_SIDE:
            raise Refused(f"Grid dimensions ({width}x{height}) must be at most {MAX_SIDE} pixels.")
        if len(bands) > MAX_BANDS:
            raise Refused(f"Too many bands ({len(bands)}): at most {MAX_BANDS} per request.")
        size = width * height * sum(np.dtype(b.dtype).itemsize for b in bands)
        if size > MAX_BYTES:
            raise Refused(
                f"Total request size ({size} bytes) must be less than or equal to "
                f"{MAX_BYTES} bytes."
            )
        if self.memory_limit_bytes is not None and size > self.memory_limit_bytes:
            raise Refused("User memory limit exceeded.")
        ix, iy = world_pixels(
            t["translateX"], t["translateY"], t["scaleX"], t["scaleY"], width, height
        )
        out = np.zeros((height, width), dtype=[(b.name, b.dtype) for b in bands])
        masked = (ix % self.mask_every == 0) if self.mask_every else np.zeros(ix.shape, bool)
        for band in bands:
            values = truth(band.source, ix, iy)
            values[masked] = 0.0 if band.unmask is None else band.unmask
            if np.dtype(band.dtype).kind in "iu":  # Earth Engine's casts clamp
                info = np.iinfo(band.dtype)
                values = np.clip(np.rint(values), info.min, info.max)
            out[band.name] = values
        buffer = io.BytesIO()
        np.save(buffer, out)
        return buffer.getvalue()


CURRENT: list[FakeEarthEngine] = []  # the benchmark's fake of this process


def _plain(value: Any) -> Any:
    """A property as JSON: images and features inside properties are the service's business;
    a test expression never returns them."""
    if isinstance(value, Image | Feature):
        raise Refused("computeFeatures: a property holds an image or feature.")
    return value


def _ok(content: bytes) -> tuple[httplib2.Response, bytes]:
    return httplib2.Response({"status": 200, "content-type": "application/json"}), content


def _error(
    status: int, message: str, extra: Mapping[str, str] | None = None
) -> tuple[httplib2.Response, bytes]:
    payload = {"error": {"code": status, "message": message, "status": "INVALID_ARGUMENT"}}
    headers = {"status": status, "content-type": "application/json", **(extra or {})}
    return httplib2.Response(headers), json.dumps(payload).encode()


def invocations(expression: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(functionName, constant arguments) of every invocation in a serialised expression,
    references resolved: what a test asserts about the exact request body."""
    expression = expression.get("expression", expression)
    table = expression.get("values", {})

    def constant(value: Any) -> Any:
        while isinstance(value, dict) and "valueReference" in value:
            value = table.get(value["valueReference"])
        return value.get("constantValue") if isinstance(value, dict) else None

    found = []

    def walk(node: Any) -> None:
        while isinstance(node, dict) and "valueReference" in node:
            node = table.get(node["valueReference"])
        if isinstance(node, dict):
            invocation = node.get("functionInvocationValue")
            if isinstance(invocation, dict):
                args = {k: constant(v) for k, v in invocation.get("arguments", {}).items()}
                found.append(
                    (invocation["functionName"], {k: v for k, v in args.items() if v is not None})
                )
            definition = node.get("functionDefinitionValue")
            if isinstance(definition, dict):
                walk({"valueReference": definition["body"]})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({"valueReference": expression["result"]})
    return found
