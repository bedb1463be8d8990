from __future__ import annotations

from pathlib import Path

import pytest

from ssl4eo_build.config import Config, load_config, override
from ssl4eo_build.errors import ConfigError

from .conftest import CONFIGS, write_toml


def test_v11_recipe_equals_built_in_defaults() -> None:
    assert load_config(CONFIGS / "v1.1.toml").sample == Config().sample


def test_demo_recipe_loads_with_paths_relative_to_the_file() -> None:
    cfg = load_config(CONFIGS / "demo.toml")
    assert cfg.sample.cities.is_file()
    assert cfg.sample.n < 1000


def test_constants_match_the_spec() -> None:
    s = Config().sample
    assert s.patch_m == 2640.0
    assert s.min_distance_m == 1980.0
    assert s.sigma_m == 50_000.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[sample]\nseeed = 1\n", "unknown key 'sample.seeed'"),
        ("[sampel]\nseed = 1\n", "unknown key 'sampel'"),
        ("[sample]\nseed = 'x'\n", "key 'sample.seed': expected an integer"),
        ("[sample]\nsigma_m = -5.0\n", "key 'sample.sigma_m': expected a value between"),
        ("[sample]\nn = 0\n", "key 'sample.n'"),
        ("[sample]\nseed = true\n", "expected an integer"),
        ("sample = 3\n", "must be a table"),
        ("[sample\n", "not valid TOML"),
        ("[align]\ncs_thick = 0.8\n", "key 'align.cs_thick': 0.8 is above align.cs_clear"),
        ("[download]\nlulc_first_year = 2024\n", "key 'download.lulc_first_year': 2024 is after"),
        ("[download]\nlulc_source = 'worldcover'\n", "key 'download.lulc_source'"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = write_toml(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_override_is_validated() -> None:
    cfg = override(Config(), "sample.n", 10)
    assert cfg.sample.n == 10
    with pytest.raises(ConfigError, match=r"sample\.n"):
        override(Config(), "sample.n", -1)
    with pytest.raises(ConfigError, match=r"unknown key 'sample\.x'"):
        override(Config(), "sample.x", 1)


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Config().sample.seed = 3  # type: ignore[misc]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
