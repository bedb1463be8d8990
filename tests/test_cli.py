from __future__ import annotations

import json
from pathlib import Path

from ssl4eo_build.cli.app import app
from typer.testing import CliRunner

from .conftest import write_toml

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("sample", "download", "align", "pack", "run", "status", "validate"):
        assert command in result.output


def test_version_is_the_pyproject_version_and_h_is_help() -> None:
    from ssl4eo_build.config import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    expected = tomllib.loads(pyproject.read_text())["project"]["version"]
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"ssl4eo-build {expected}"
    for args in (["-h"], ["pack", "-h"]):
        shown = runner.invoke(app, args)
        assert shown.exit_code == 0 and "Usage:" in shown.output, args


def test_sample_and_status_json(tmp_path: Path, few_cities: Path) -> None:
    cfg = write_toml(tmp_path / "c.toml", f'[sample]\nn = 40\ncities = "{few_cities}"\n')
    work = tmp_path / "w"
    result = runner.invoke(app, ["sample", "--config", str(cfg), "--work-dir", str(work)])
    assert result.exit_code == 0, result.output
    assert "40 new location(s)" in result.output
    result = runner.invoke(app, ["sample", "-c", str(cfg), "-w", str(work), "--n", "45"])
    assert "5 new location(s), 45 in total" in result.output
    result = runner.invoke(app, ["status", "--work-dir", str(work), "--json"])
    assert result.exit_code == 0
    stages = json.loads(result.output)["stages"]
    assert stages["sample"]["counts"]["ok"] == 45
    assert stages["download"]["counts"]["pending"] == 45, "not tried yet counts as pending"
    assert stages["align"]["counts"]["pending"] == 0
    text = runner.invoke(app, ["status", "--work-dir", str(work)]).output
    assert "ok 45" in text


def test_bad_config_exits_2_with_one_paragraph(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "bad.toml", "[sample]\nsigma = 5\n")
    result = runner.invoke(app, ["sample", "--config", str(cfg), "--work-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown key 'sample.sigma'" in result.output
    assert "Traceback" not in result.output


def test_bad_override_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sample", "--n", "20000000", "--work-dir", str(tmp_path / "w")])
    assert result.exit_code == 2
    assert "sample.n" in result.output


def test_status_without_manifest_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--work-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no manifest here" in result.output


def test_bad_index_exits_2(tmp_path: Path) -> None:
    index = tmp_path / "i.csv"
    index.write_text("sample_id,lon,lat\n0000001,500,1\n")
    result = runner.invoke(
        app, ["sample", "--from-index", str(index), "--work-dir", str(tmp_path / "w")]
    )
    assert result.exit_code == 2
    assert "line 2: lon 500.0 outside" in result.output


def test_validate_exit_codes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "no such dataset directory" in result.output


def test_unknown_source_is_a_clear_error(tmp_path: Path, few_cities: Path) -> None:
    cfg = write_toml(tmp_path / "c.toml", f'[sample]\nn = 2\ncities = "{few_cities}"\n')
    work = tmp_path / "w"
    assert runner.invoke(app, ["sample", "-c", str(cfg), "-w", str(work)]).exit_code == 0
    result = runner.invoke(
        app, ["download", "-c", str(cfg), "-w", str(work), "--source", "planetary"]
    )
    assert result.exit_code == 2
    assert "'download.source'" in result.output and "'earthengine'" in result.output


def test_bad_scheduler_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "-w", str(tmp_path / "w"), "--scheduler", "local:x"])
    assert result.exit_code == 2
    assert "local:N" in result.output
