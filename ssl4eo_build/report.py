"""What a build looks like: sample previews, a world map, and one offline ``report.html``.

Pictures are drawn with matplotlib's object API (``Figure``, no pyplot, no display). The
coastline is the bundled Natural Earth 1:110m land outline (``data/land-110m.json``, see
``data/README.md``), so everything works offline.

- :func:`write_previews`: one PNG per sample, a row per timestamp: S-2 RGB, S-1 false colour
  (VV, VH, VV/VH), the cloud mask, NDVI, land cover and (first row) the DEM; titled with sample
  id, dates, centre and CRS.
- :func:`write_world_map`: accepted locations and rejected ones by reason on the coastline, and
  a density view.
- :func:`write_report`: ``report.html`` with counts per stage and status, rejection reasons,
  histograms (acquisition dates, cloud %, S-1/S-2 gap, NaN fraction, CRS zones), the map and
  the preview thumbnails; every image it shows is written beside it.
"""

from __future__ import annotations

import html
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import __version__
from .derive import CLOUD_CLASSES, LULC_CLASSES
from .manifest import Manifest

log = logging.getLogger(__name__)

LAND_FILE = Path(__file__).parent / "data" / "land-110m.json"
PREVIEW_DIR = "previews"
REPORT_DIR = "report"  # in the work dir: report.html and its pictures


@lru_cache(maxsize=1)
def coastline() -> tuple[NDArray[np.float64], ...]:
    """The land outline as (n, 2) lon/lat polylines, decoded from the bundled TopoJSON
    (quantised, delta-encoded arcs)."""
    topo = json.loads(LAND_FILE.read_text())
    scale = np.array(topo["transform"]["scale"])
    translate = np.array(topo["transform"]["translate"])
    lines = []
    for arc in topo["arcs"]:
        line = np.cumsum(np.array(arc, dtype=np.float64), axis=0) * scale + translate
        # Broken where it crosses the antimeridian, or it would be drawn across the map.
        jumps = np.flatnonzero(np.abs(np.diff(line[:, 0])) > 180.0) + 1
        lines.extend(np.split(line, jumps))
    return tuple(lines)


def _figure(width: float, height: float, constrained: bool = True) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained" if constrained else None)


def _draw_coast(ax: Any) -> None:
    for line in coastline():
        ax.plot(line[:, 0], line[:, 1], color="0.55", linewidth=0.5)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-60, 85)
    ax.set_aspect("equal")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")


# ---------------------------------------------------------------------------------- previews


def _unit(values: NDArray[Any], lo: float, hi: float) -> NDArray[np.float32]:
    out = (np.nan_to_num(values.astype(np.float32), nan=lo) - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0)


def s1_false_colour(vv_vh: NDArray[Any]) -> NDArray[np.float32]:
    """(y, x, 3) RGB of S-1 in dB: VV, VH and VV/VH (VV - VH in dB), each stretched."""
    vv, vh = vv_vh[0].astype(np.float32), vv_vh[1].astype(np.float32)
    return np.dstack([_unit(vv, -25.0, 0.0), _unit(vh, -30.0, -5.0), _unit(vv - vh, 0.0, 15.0)])


def _dates(times: NDArray[Any]) -> list[str]:
    return [str(np.datetime_as_string(t, unit="D")) for t in times]


def _sample_crs(dataset: Path, split: str) -> dict[str, int]:
    """sample id -> the CRS most of its timestamps' tiles share (the patch's UTM zone)."""
    import pyarrow.parquet as pq

    path = dataset / "splits" / f"{split}_metadata.parquet"
    if not path.is_file():
        return {}
    table = pq.read_table(path, columns=["sample_id", "tile_crs"]).to_pydict()
    votes: dict[str, Counter[int]] = {}
    for sid, crs in zip(table["sample_id"], table["tile_crs"], strict=True):
        votes.setdefault(str(sid).split("_")[0], Counter())[int(crs)] += 1
    return {sid: c.most_common(1)[0][0] for sid, c in votes.items()}


def _preview_figure(item: dict[str, Any], crs: int | None) -> Any:
    available = [m for m in ("S2RGB", "S1GRD", "NDVI", "LULC", "DEM") if m in item]
    columns: list[str] = [m for m in ("S2RGB", "S1GRD") if m in available]
    columns += ["cloud_mask"] if "cloud_mask" in item else []
    columns += [m for m in ("NDVI", "LULC", "DEM") if m in available]
    times = next(item[f"time_{m}"] for m in ("S2RGB", "S1GRD", "NDVI", "LULC") if m in item)
    rows = len(times)
    # Fixed margins (in inches, as the constrained layout would leave them): that layout
    # took half of a preview's time with 24 panels.
    width, height = 2.2 * len(columns) + 0.6, 2.2 * rows + 0.8
    fig = _figure(width, height, constrained=False)
    fig.subplots_adjust(
        left=0.05 / width, right=1 - 0.65 / width, bottom=0.05 / height, top=1 - 0.75 / height,
        wspace=0.06, hspace=0.13,
    )  # fmt: skip
    axes = fig.subplots(rows, len(columns), squeeze=False)
    s1_dates = _dates(item["time_S1GRD"]) if "S1GRD" in item else []
    for r in range(rows):
        for c, name in enumerate(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "S2RGB":
                ax.imshow(np.moveaxis(item["S2RGB"][r], 0, -1))
                ax.set_title(f"S-2 RGB {_dates(times)[r]}", fontsize=8)
            elif name == "S1GRD":
                ax.imshow(s1_false_colour(item["S1GRD"][r]))
                ax.set_title(f"S-1 VV/VH {s1_dates[r]}", fontsize=8)
            elif name == "cloud_mask":
                ax.imshow(item["cloud_mask"][r], cmap="tab10", vmin=0, vmax=9)
                shares = (
                    np.bincount(item["cloud_mask"][r].ravel(), minlength=7)
                    / item["cloud_mask"][r].size
                )
                cloudy = shares[3] + shares[4]
                ax.set_title(f"cloud mask ({cloudy:.0%} cloud)", fontsize=8)
            elif name == "NDVI":
                ax.imshow(item["NDVI"][r, 0].astype(np.float32), cmap="RdYlGn", vmin=-1, vmax=1)
                ax.set_title("NDVI", fontsize=8)
            elif name == "LULC":
                ax.imshow(item["LULC"][r, 0], cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
                ax.set_title("land cover", fontsize=8)
            elif name == "DEM" and r == 0:
                image = ax.imshow(item["DEM"][0, 0], cmap="terrain")
                fig.colorbar(image, ax=ax, shrink=0.7, label="m")
                ax.set_title("DEM", fontsize=8)
            else:
                ax.set_axis_off()
    lon, lat = (float(v) for v in item["center"])
    where = f"{lat:.3f}, {lon:.3f}" + (f", EPSG:{crs}" if crs else "")
    fig.suptitle(f"sample {item['sample_id']} ({where})", fontsize=10)
    return fig


def write_previews(dataset: Path, out_dir: Path, n: int = 16) -> list[Path]:
    """PNG previews of the first ``n`` samples (train, then val) of a packed dataset."""
    from .reader import SampleDataset, detect_layout

    _, root = detect_layout(dataset)
    present = tuple(
        m for m in ("S2RGB", "S1GRD", "NDVI", "LULC", "DEM") if (root / "train" / m).is_dir()
    )
    if "S2RGB" not in present and "S1GRD" not in present:
        present = tuple(m for m in ("S2L2A", *present))
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for split in ("train", "val"):
        if len(written) >= n or not any(root.glob(f"{split}/*/*")):
            continue
        samples = SampleDataset(root, modalities=present, split=split)
        crs = _sample_crs(root, split)
        for index in samples.shard_order()[: n - len(written)]:
            item = samples[index]
            fig = _preview_figure(item, crs.get(item["sample_id"]))
            path = out_dir / f"{item['sample_id']}.png"
            fig.savefig(path)
            written.append(path)
    return written


# ------------------------------------------------------------------------------ world map


@dataclass(frozen=True)
class _Located:
    lon: float
    lat: float
    outcome: str  # accepted (packed or aligned), or the rejecting stage and reason


def _locations(manifest: Manifest) -> list[_Located]:
    rows = manifest.db.execute(
        "SELECT l.lon, l.lat, d.status, d.reason, p.status, p.reason FROM locations l "
        "LEFT JOIN downloads d ON d.sample_id = l.sample_id "
        "LEFT JOIN patches p ON p.sample_id = l.sample_id WHERE l.status = 'ok'"
    )
    out = []
    for lon, lat, d_status, d_reason, p_status, p_reason in rows:
        if p_status == "ok":
            outcome = "accepted"
        elif d_status == "rejected":
            outcome = f"download: {_reason_kind(d_reason)}"
        elif p_status == "rejected":
            outcome = f"align: {_reason_kind(p_reason)}"
        else:
            outcome = "open"
        out.append(_Located(float(lon), float(lat), outcome))
    return out


def _reason_kind(reason: str | None) -> str:
    """The reason's kind (``no_scene``, ``nan_fraction``...), without the per-location detail."""
    return (reason or "unknown").split(":")[0].strip()


def write_world_map(manifest: Manifest, out_dir: Path) -> list[Path]:
    """``map.png`` (locations by outcome) and ``density.png`` (accepted per 2-degree cell)."""
    located = _locations(manifest)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = _figure(11, 5.6)
    ax = fig.subplots()
    _draw_coast(ax)
    outcomes = Counter(x.outcome for x in located)
    for outcome, count in sorted(outcomes.items(), key=lambda kv: (kv[0] != "accepted", kv[0])):
        lon = [x.lon for x in located if x.outcome == outcome]
        lat = [x.lat for x in located if x.outcome == outcome]
        good = outcome == "accepted"
        ax.scatter(
            lon, lat, s=6 if good else 14, marker="o" if good else "x",
            label=f"{outcome} ({count})", zorder=3 if good else 4,
        )  # fmt: skip
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"{len(located)} sampled locations by outcome")
    map_png = out_dir / "map.png"
    fig.savefig(map_png)
    fig = _figure(11, 5.6)
    ax = fig.subplots()
    accepted = [x for x in located if x.outcome == "accepted"]
    edges = (np.arange(-180.0, 181.0, 2.0), np.arange(-60.0, 86.0, 2.0))
    counts, xedges, yedges = np.histogram2d(
        [x.lon for x in accepted], [x.lat for x in accepted], bins=edges
    )
    masked = np.ma.masked_equal(counts.T, 0)
    image = ax.pcolormesh(xedges, yedges, masked, cmap="viridis", zorder=2)
    _draw_coast(ax)
    fig.colorbar(image, ax=ax, shrink=0.8, label="accepted locations per 2-degree cell")
    ax.set_title(f"density of {len(accepted)} accepted locations")
    density_png = out_dir / "density.png"
    fig.savefig(density_png)
    return [map_png, density_png]


# ------------------------------------------------------------------------------ histograms


def _histogram(
    out_dir: Path, name: str, values: Sequence[float], title: str, xlabel: str
) -> Path | None:
    if not values:
        return None
    fig = _figure(5, 3.2)
    ax = fig.subplots()
    ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="#3b75af")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    path = out_dir / f"{name}.png"
    fig.savefig(path)
    return path


def _date_histogram(out_dir: Path, dates: Sequence[datetime]) -> Path | None:
    if not dates:
        return None
    from matplotlib.dates import date2num

    fig = _figure(5, 3.2)
    ax = fig.subplots()
    ax.hist(date2num(list(dates)), bins=24, color="#3b75af")
    ax.xaxis_date()
    fig.autofmt_xdate()
    ax.set_title("S-2 acquisition dates (packed and aligned locations)", fontsize=10)
    ax.set_ylabel("count")
    path = out_dir / "dates.png"
    fig.savefig(path)
    return path


def _bar(out_dir: Path, name: str, counts: Counter[str], title: str) -> Path | None:
    if not counts:
        return None
    labels = sorted(counts, key=lambda k: (-counts[k], k))[:20]
    fig = _figure(5, 3.2)
    ax = fig.subplots()
    ax.barh(labels[::-1], [counts[k] for k in labels[::-1]], color="#3b75af")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("locations")
    path = out_dir / f"{name}.png"
    fig.savefig(path)
    return path


def write_histograms(manifest: Manifest, out_dir: Path) -> list[tuple[str, Path]]:
    """(caption, PNG) of the distributions over the aligned locations."""
    aligned = "SELECT sample_id FROM patches WHERE status='ok'"
    scenes = manifest.db.execute(
        "SELECT product, acquired, cloud_pct, gap_days FROM scenes WHERE status='ok' "
        f"AND sample_id IN ({aligned})"
    ).fetchall()
    s2 = [r for r in scenes if r[0] == "S2L2A"]
    dates = [datetime.fromisoformat(str(r[1])).replace(tzinfo=None) for r in s2 if r[1]]
    clouds = [float(r[2]) for r in s2 if r[2] is not None]
    gaps = [abs(float(r[3])) for r in scenes if r[0] == "S1GRD" and r[3] is not None]
    nan = [
        float(r[0])
        for r in manifest.db.execute(
            "SELECT nan_fraction_max FROM patches WHERE nan_fraction_max IS NOT NULL"
        )
    ]
    zones = Counter(
        f"EPSG:{r[0]}"
        for r in manifest.db.execute("SELECT crs FROM patches WHERE status='ok' AND crs")
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    made = [
        ("S-2 acquisition dates", _date_histogram(out_dir, dates)),
        ("S-2 cloud cover of the chosen granules", _histogram(
            out_dir, "cloud", clouds, "S-2 granule cloud cover", "cloud %")),
        ("S-1 / S-2 time gap", _histogram(
            out_dir, "gap", gaps, "S-1 to S-2 time gap", "days")),
        ("Missing pixels before the fill (worst band; all aligned and rejected patches)",
         _histogram(out_dir, "nan", nan, "missing-pixel fraction, worst band", "fraction")),
        ("Alignment: the UTM zone each patch was put on", _bar(
            out_dir, "zones", zones, "patch CRS (majority UTM zone)")),
    ]  # fmt: skip
    return [(caption, path) for caption, path in made if path is not None]


# ---------------------------------------------------------------------------------- report


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str]) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def write_report(work_dir: Path, dataset: Path | None = None, previews: int = 16) -> Path:
    """``WORK/report/report.html`` and every picture it shows (map, density, histograms, and
    previews of ``dataset`` when given). Returns the page's path."""
    out_dir = Path(work_dir) / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    with Manifest.open_readonly(work_dir) as manifest:
        status = manifest.status_report()
        maps = write_world_map(manifest, out_dir)
        histograms = write_histograms(manifest, out_dir)
    shown: list[Path] = []
    if dataset is not None:
        shown = write_previews(dataset, out_dir / PREVIEW_DIR, previews)
    build = {}
    if dataset is not None and (dataset / "build.json").is_file():
        build = json.loads((dataset / "build.json").read_text())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ssl4eo-build report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;"
        "padding:2px 8px;text-align:left}img{max-width:100%}.thumbs img{width:280px;"
        "margin:4px}</style></head><body>",
        "<h1>ssl4eo-build report</h1>",
        f"<p>Work directory <code>{html.escape(str(Path(work_dir).resolve()))}</code>; written "
        f"by ssl4eo-build {html.escape(__version__)}.</p>",
    ]
    if build:
        parts.append(
            "<p>Dataset "
            f"<code>{html.escape(str(Path(dataset or '').resolve()))}</code>: "
            f"source <b>{html.escape(str(build.get('source')))}</b>, layout "
            f"{html.escape(str(build.get('layout')))}, samples "
            f"{html.escape(json.dumps(build.get('samples')))}, config sha256 "
            f"<code>{html.escape(str(build.get('config_sha256', ''))[:16])}</code>, packed "
            f"{html.escape(str(build.get('packed_at')))}.</p>"
        )
    parts.append("<h2>Counts per stage</h2>")
    rows = []
    for stage, info in status["stages"].items():
        if "counts" in info:
            rows.append([stage, *info["counts"].values()])
    parts.append(_table(rows, ["stage", *next(iter(status["stages"].values()))["counts"]]))
    shards = status["stages"]["pack"]["shards"]
    if shards:
        parts.append(
            _table(
                [[s["split"], s["modality"], s["files"], s["samples"]] for s in shards],
                ["split", "modality", "shard files", "samples"],
            )
        )
    parts.append("<h2>Rejections and failures</h2>")
    reasons = [
        [stage, n, reason]
        for stage, info in status["stages"].items()
        for reason, n in info.get("reasons", {}).items()
    ]
    parts.append(_table(reasons, ["stage", "locations", "reason"]) if reasons else "<p>None.</p>")
    parts.append("<h2>Where the samples are</h2>")
    parts += [f"<img src='{p.name}' alt='{p.stem}'>" for p in maps]
    parts.append("<h2>Distributions</h2>")
    for caption, path in histograms:
        parts.append(f"<figure><img src='{path.name}' alt='{path.stem}'>")
        parts.append(f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if shown:
        parts.append("<h2>Previews</h2><p>Per sample a row per timestamp: ")
        parts.append(
            "S-2 RGB, S-1 (R VV, G VH, B VV/VH), cloud mask ("
            + ", ".join(f"{k} {v}" for k, v in CLOUD_CLASSES.items())
            + "), NDVI, land cover ("
            + ", ".join(f"{k} {v}" for k, v in LULC_CLASSES.items())
            + "), DEM.</p><div class='thumbs'>"
        )
        for path in shown:
            rel = f"{PREVIEW_DIR}/{path.name}"
            parts.append(f"<a href='{rel}'><img src='{rel}' alt='{path.stem}'></a>")
        parts.append("</div>")
    if build:
        parts.append("<h2>Configuration</h2><pre>")
        parts.append(html.escape(json.dumps(build.get("config", {}), indent=2)))
        parts.append("</pre>")
    parts.append("</body></html>\n")
    page = out_dir / "report.html"
    page.write_text("".join(parts), encoding="utf-8")
    return page
