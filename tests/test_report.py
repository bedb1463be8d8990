"""Pictures of a build: previews, the world map and report.html, offline."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
from ssl4eo_build.cli.app import app
from typer.testing import CliRunner

from ssl4eo_build.report import coastline, s1_false_colour

runner = CliRunner()


def test_bundled_coastline_is_the_world_outline() -> None:
    lines = coastline()
    points = np.concatenate(lines)
    assert len(points) > 3000 and len(lines) > 100
    assert points[:, 0].min() >= -180.0 and points[:, 0].max() <= 180.0
    assert -90.0 <= points[:, 1].min() < -60.0 and 80.0 < points[:, 1].max() <= 90.0
    for line in lines:  # broken at the antimeridian: no segment spans the map
        assert np.abs(np.diff(line[:, 0])).max(initial=0.0) <= 180.0


def test_s1_false_colour_stretches_each_channel() -> None:
    vv_vh = np.array([[[-25.0, 0.0]], [[-30.0, np.nan]]], dtype=np.float16)
    rgb = s1_false_colour(vv_vh)
    assert rgb.shape == (1, 2, 3) and rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert rgb[0, 0, 0] == 0.0 and rgb[0, 1, 0] == 1.0 and rgb[0, 1, 1] == 0.0


def test_run_leaves_a_report_whose_links_all_resolve(
    cfg_path: Path, clean_run: Path, tmp_path: Path
) -> None:
    work = tmp_path / "w"
    shutil.copytree(clean_run, work)
    result = runner.invoke(app, ["run", "-c", str(cfg_path), "-w", str(work), "--previews", "3"])
    assert result.exit_code == 0, result.output
    page = work / "report" / "report.html"
    assert f"report: {page}" in result.output
    text = page.read_text()
    links = re.findall(r"(?:src|href)='([^']+)'", text)
    assert len(links) >= 5 and all((page.parent / link).is_file() for link in links), links
    pngs = list((work / "report").rglob("*.png"))
    assert len(pngs) >= 5 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert len(list((work / "report" / "previews").glob("*.png"))) == 3
    for section in ("Counts per stage", "Rejections", "Where the samples are", "Previews"):
        assert section in text
    assert "source <b>synthetic</b>" in text and "http" not in text, "offline: nothing remote"
    checked = runner.invoke(app, ["validate", str(work / "dataset")])
    assert checked.exit_code == 0 and "(Zarr: " in checked.output, checked.output
    # preview alone, on the dataset, and a clear error on a wrong path
    out = tmp_path / "p"
    shown = runner.invoke(app, ["preview", str(work / "dataset"), "--n", "2", "--out", str(out)])
    assert shown.exit_code == 0 and len(list(out.glob("*.png"))) == 2, shown.output
    missing = runner.invoke(app, ["preview", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such dataset directory" in missing.output
