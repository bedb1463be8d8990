"""A fake Earth Engine REST server as an httplib2-style transport, for the real `ee` client.

The client runs unmodified: discovery and the algorithm list come from the test data the `ee`
package ships (what ``ee.apitestcase`` uses), ``computeFeatures`` answers from a small scripted
archive, and ``computePixels`` answers NPY arrays whose values encode the band and the world
pixel position, so a test can check that the grid it asked for is the grid it got. Faults (HTTP
statuses, timeouts, connection resets, malformed bodies) are scripted per endpoint or drawn at
a fixed rate. Every request is recorded; the peak number in flight is tracked.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ee
import httplib2
import numpy as np
from numpy.typing import NDArray

EE_TEST_DATA = Path(ee.__file__).parent / "tests"
MISSING = -32768.0
TOKEN = "ya29.fake-access-token-never-logged"


@dataclass(frozen=True)
class Call:
    kind: str  # discovery | algorithms | computeFeatures | computePixels | token | other
    method: str
    uri: str
    body: dict[str, Any] | None
    headers: dict[str, str]


@dataclass(frozen=True)
class Fault:
    """``status`` (an HTTP error), ``timeout``, ``reset`` or ``malformed`` (a 200 with junk)."""

    kind: str
    status: int = 0
    retry_after: float | None = None
    message: str = "fake failure"


TRANSIENT = (
    Fault("status", 429, message="Too many concurrent requests"),
    Fault("status", 500),
    Fault("status", 503),
    Fault("timeout"),
    Fault("reset"),
    Fault("malformed"),
)


BAND_NAMES = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12",
              "SCL", "VV", "VH")  # fmt: skip


def band_code(band: str) -> int:
    """A distinct value per Earth Engine band name (B1..B12, B8A, SCL, VV, VH)."""
    return BAND_NAMES.index(band) + 1


def truth(band: str, ix: NDArray[np.int64], iy: NDArray[np.int64]) -> NDArray[np.float32]:
    """The fake archive's value at world pixel (ix, iy), inside the product's hard limits:
    S-2 bands 1000 per band code, one step per column is 10, per row 1; SCL a class 0..11;
    S-1 dB from -50 (quarter dB per column, sixteenth per row)."""
    if band == "SCL":
        return ((ix + iy) % 12).astype(np.float32)
    if band in ("VV", "VH"):
        return (-50 + band_code(band) + 0.25 * (ix % 90) + (iy % 10) / 16).astype(np.float32)
    return (1000 * band_code(band) + 10 * (ix % 90) + (iy % 10)).astype(np.float32)


def world_pixels(
    translate_x: float, translate_y: float, scale_x: float, scale_y: float, width: int, height: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """World pixel indices (ix by column, iy by row) of a north-up grid (scale_y < 0)."""
    ix = round(translate_x / scale_x) + np.arange(width)
    iy = round(translate_y / -scale_y) - np.arange(height)
    return np.meshgrid(ix, iy)


def s2_feature(scene_id: str, time_ms: int, cloud: float, epsg: int, tile: str) -> dict[str, Any]:
    return {"scene_id": scene_id, "time_ms": time_ms, "cloud_pct": cloud, "tile": tile,
            "crs": f"EPSG:{epsg}"}  # fmt: skip


def s1_feature(scene_id: str, time_ms: int, epsg: int) -> dict[str, Any]:
    return {"scene_id": scene_id, "time_ms": time_ms, "crs": f"EPSG:{epsg}"}


SEASONS_2021 = [datetime(2021, 3, 20, 12), datetime(2021, 6, 21, 12),
                datetime(2021, 9, 22, 12), datetime(2021, 12, 21, 12)]  # fmt: skip


def millis(when: datetime) -> int:
    return round((when - datetime(1970, 1, 1)).total_seconds() * 1000)


def archive() -> dict[str, list[dict]]:
    """Per season one clear granule (+1 day) and one cloudy one, and an S-1 scene 2 days later."""
    l1c, l2a, s1 = [], [], []
    for season, ref in enumerate(SEASONS_2021):
        clear, cloudy = ref + timedelta(days=1), ref - timedelta(days=2)
        for when, cloud in ((clear, 3.5), (cloudy, 40.0)):
            gid = f"{when:%Y%m%dT%H%M%S}_{when:%Y%m%dT%H%M%S}_T32UPU"
            l1c.append(s2_feature(gid, millis(when), cloud, 32632, "32UPU"))
            l2a.append(s2_feature(gid, millis(when), cloud + 0.5, 32632, "32UPU"))
        s1.append(
            s1_feature(f"S1A_IW_GRDH_1SDV_{season}", millis(clear + timedelta(days=2)), 32632)
        )
    return {"COPERNICUS/S2_HARMONIZED": l1c, "COPERNICUS/S2_SR_HARMONIZED": l2a,
            "COPERNICUS/S1_GRD": s1}  # fmt: skip


def load_invocations(expression: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(functionName, constant arguments) of every invocation in a serialised expression.

    The serialiser shares repeated values through ``valueReference``; those are resolved.
    """
    expression = expression.get("expression", expression)  # a request body or an expression
    table = expression.get("values", {})

    def constant(value: Any) -> Any:
        while isinstance(value, dict) and "valueReference" in value:
            value = table.get(value["valueReference"])
        return value.get("constantValue") if isinstance(value, dict) else None

    def walk(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        if isinstance(node, dict):
            invocation = node.get("functionInvocationValue")
            if isinstance(invocation, dict):
                args = {k: constant(v) for k, v in invocation.get("arguments", {}).items()}
                yield invocation["functionName"], {k: v for k, v in args.items() if v is not None}
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    yield from walk(expression)


class FakeEarthEngine:
    """``request(uri, method, body, headers, ...)`` like ``httplib2.Http``; thread-safe."""

    def __init__(
        self,
        archive: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        latency_s: float = 0.0,
        error_rate: float = 0.0,
        seed: int = 0,
        mask_every: int | None = None,
    ) -> None:
        self.archive = dict(archive or {})
        self.latency_s = latency_s
        self.error_rate = error_rate
        self.mask_every = mask_every
        self.calls: list[Call] = []
        self.scripted: dict[str, deque[Fault]] = {
            "computeFeatures": deque(),
            "computePixels": deque(),
        }
        self.in_flight = 0
        self.peak_in_flight = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

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
        try:
            if self.latency_s:
                time.sleep(self.latency_s)
            return self._answer(kind, parsed, fault)
        finally:
            with self._lock:
                self.in_flight -= 1

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
        if kind == "computeFeatures":
            assert body is not None
            return _ok(json.dumps(self._features(body)).encode())
        if kind == "computePixels":
            assert body is not None
            return _ok(self._pixels(body))
        return _error(404, f"the fake has no {kind} endpoint")

    @staticmethod
    def _fault(fault: Fault) -> tuple[httplib2.Response, bytes]:
        if fault.kind == "timeout":
            raise TimeoutError("fake read timeout")
        if fault.kind == "reset":
            raise ConnectionResetError(104, "fake connection reset by peer")
        if fault.kind == "malformed":
            return _ok(b"<html>502 Bad Gateway</html>")
        extra = {} if fault.retry_after is None else {"retry-after": str(fault.retry_after)}
        return _error(fault.status, fault.message, extra)

    def _features(self, body: dict[str, Any]) -> dict[str, Any]:
        loads = [a["id"] for f, a in load_invocations(body["expression"]) if f.endswith(".load")]
        rows = self.archive.get(loads[0], []) if loads else []
        square = [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]]
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": square},
                    "properties": dict(row),
                }
                for row in rows
            ],
        }

    def _pixels(self, body: dict[str, Any]) -> bytes:
        grid = body["grid"]
        t, dims = grid["affineTransform"], grid["dimensions"]
        ix, iy = world_pixels(
            t["translateX"], t["translateY"], t["scaleX"], t["scaleY"],
            dims["width"], dims["height"],
        )  # fmt: skip
        bands = body["bandIds"]
        out = np.zeros((dims["height"], dims["width"]), dtype=[(b, "<f4") for b in bands])
        for band in bands:
            values = truth(band, ix, iy)
            if self.mask_every:
                values[ix % self.mask_every == 0] = MISSING
            out[band] = values
        buffer = io.BytesIO()
        np.save(buffer, out)
        return buffer.getvalue()


def _ok(content: bytes) -> tuple[httplib2.Response, bytes]:
    return httplib2.Response({"status": 200, "content-type": "application/json"}), content


def _error(
    status: int, message: str, extra: Mapping[str, str] | None = None
) -> tuple[httplib2.Response, bytes]:
    payload = {"error": {"code": status, "message": message, "status": "FAILED"}}
    headers = {"status": status, "content-type": "application/json", **(extra or {})}
    return httplib2.Response(headers), json.dumps(payload).encode()
