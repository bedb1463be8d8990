from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssl4eo_build.config import SampleConfig
from ssl4eo_build.geo import WGS84, LonLat, geodesic_distance_m, offset_by_metres, unit_vectors
from ssl4eo_build.sample.cities import CityTable, load_cities
from ssl4eo_build.sample.sampling import (
    SaturationError,
    candidate_block,
    sample_locations,
    v1_same_cell_sample,
)

from .grid_index import OverlapIndex

THRESHOLD = 1980.0


def run(cities: CityTable, cfg: SampleConfig, n: int) -> np.ndarray:
    return lonlat(sample_locations(cities, cfg, [], n))


def lonlat(progress) -> np.ndarray:
    """The accepted positions of a run's progress records, in order, as (lon, lat) rows."""
    progress = list(progress)
    return np.column_stack(
        [np.concatenate([p.lon for p in progress]), np.concatenate([p.lat for p in progress])]
    )


def min_pair_distance(points: np.ndarray) -> float:
    """Independent exhaustive check: WGS84 geodesic between every pair."""
    i, j = np.triu_indices(len(points), k=1)
    d = geodesic_distance_m(points[i, 0], points[i, 1], points[j, 0], points[j, 1])
    return float(d.min())


@pytest.fixture
def dense_cfg() -> SampleConfig:
    return SampleConfig(seed=3, sigma_m=15_000.0, batch_size=256, max_candidates_per_location=20)


def test_no_accepted_pair_is_closer_than_threshold(few_cities: Path, dense_cfg: SampleConfig):
    cities = load_cities(few_cities)
    points = run(cities, dense_cfg, 1500)
    assert len(points) == 1500
    assert min_pair_distance(points) >= THRESHOLD
    # The sample really is dense: many neighbours sit just above the threshold.
    assert min_pair_distance(points) < 2300


def test_samples_cross_antimeridian_and_pole(few_cities: Path, dense_cfg: SampleConfig) -> None:
    points = run(load_cities(few_cities), dense_cfg, 1500)
    assert (points[:, 0] > 179.0).any() and (points[:, 0] < -179.0).any()
    assert (points[:, 1] > 89.9).any()
    assert np.all(np.abs(points[:, 0]) <= 180.0) and np.all(np.abs(points[:, 1]) <= 90.0)


def test_v1_same_cell_scan_lets_pairs_across_cell_borders_overlap(tmp_path: Path) -> None:
    from ssl4eo_build.sample.cities import write_cities

    path = tmp_path / "corner.csv"
    write_cities(path, [(1, "Corner", "XX", 48.0, 11.0, 1)])  # on a 1-degree cell corner
    cities = load_cities(path)
    cfg = SampleConfig(seed=1, sigma_m=15_000.0, batch_size=256)
    v1 = np.array(v1_same_cell_sample(cities, cfg, 400))
    ours = run(cities, cfg, 400)
    assert min_pair_distance(v1) < THRESHOLD
    assert min_pair_distance(ours) >= THRESHOLD


def test_gaussian_offset_is_metric_at_every_latitude() -> None:
    # A 50 km east offset is 50 km along the ground near the equator and at 70 degrees north.
    for lat in (0.0, 45.0, 70.0):
        lon2, lat2 = offset_by_metres([10.0], [lat], [50_000.0], [0.0])
        assert geodesic_distance_m(10.0, lat, lon2[0], lat2[0]) == pytest.approx(50_000.0, rel=1e-6)


def test_offsets_have_the_configured_spread() -> None:
    from ssl4eo_build.sample.cities import CityTable

    cities = CityTable(
        geonameid=np.array([1]),
        name=("High",),
        country=("NO",),
        lat=np.array([69.6]),
        lon=np.array([18.9]),
        population=np.array([1]),
    )
    block = candidate_block(cities, SampleConfig(batch_size=20_000), 0)
    _, _, dist = WGS84.inv(np.full(20_000, 18.9), np.full(20_000, 69.6), block.lon, block.lat)
    # |offset| of a 2-D Gaussian with sigma s has RMS sqrt(2) * s.
    assert np.sqrt(np.mean(np.square(dist))) == pytest.approx(np.sqrt(2) * 50_000, rel=0.02)


def test_deterministic_by_seed(few_cities: Path, dense_cfg: SampleConfig) -> None:
    cities = load_cities(few_cities)
    a = run(cities, dense_cfg, 300)
    b = run(cities, dense_cfg, 300)
    c = run(cities, dataclasses.replace(dense_cfg, seed=4), 300)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_resuming_the_stream_equals_one_run(few_cities: Path, dense_cfg: SampleConfig) -> None:
    cities = load_cities(few_cities)
    whole = run(cities, dense_cfg, 500)
    progress = list(sample_locations(cities, dense_cfg, [], 200))
    first = lonlat(progress)
    resume_at = progress[-1].next_candidate
    existing = [LonLat(x, y) for x, y in first.tolist()]
    rest = lonlat(sample_locations(cities, dense_cfg, existing, 300, resume_at))
    assert np.array_equal(np.concatenate([first, rest]), whole)


def sequential(cities: CityTable, cfg: SampleConfig, existing: list, n: int, start: int = 0):
    """The rule one candidate at a time with the grid index: the oracle for the chunked,
    KD-tree version. Returns the accepted (candidate, lon, lat) and where to resume."""
    index = OverlapIndex(cfg.min_distance_m, cfg.grid_cell_deg)
    for p in existing:
        index.add(p.lon, p.lat)
    out, k = [], start
    while len(out) < n:
        block = candidate_block(cities, cfg, k // cfg.batch_size)
        for j in range(k - block.first, cfg.batch_size):
            lon, lat = float(block.lon[j]), float(block.lat[j])
            k += 1
            if not index.conflicts(lon, lat, unit_vectors(lon, lat)):
                index.add(lon, lat)
                out.append((k - 1, lon, lat))
                if len(out) == n:
                    return out, k
    return out, k


def test_chunked_rule_equals_one_candidate_at_a_time(few_cities: Path, dense_cfg) -> None:
    cities = load_cities(few_cities)
    existing = [LonLat(float(x), float(y)) for x, y in run(cities, dense_cfg, 50)]
    for before, start in (([], 0), (existing, 977)):
        progress = list(sample_locations(cities, dense_cfg, before, 700, start))
        got = [
            (int(k), float(x), float(y))
            for p in progress
            for k, x, y in zip(p.candidate, p.lon, p.lat, strict=True)
        ]
        want, resume = sequential(cities, dense_cfg, before, 700, start)
        assert got == want and progress[-1].next_candidate == resume
        drawn = sum(len(p) + p.overlaps for p in progress)
        assert drawn == resume - start, "every candidate counted once, accepted or overlapping"


def test_candidates_without_neighbours_are_all_kept() -> None:
    from ssl4eo_build.sample.sampling import _accept

    far = np.array([0.0, 1.0, 2.0])  # degrees apart: no pair, within the chunk or with before
    kept = _accept(np.array([[10.0, 10.0]]), far, np.zeros(3), THRESHOLD)
    assert kept.tolist() == [True, True, True]
    assert _accept(np.empty((0, 2)), np.array([5.0]), np.array([5.0]), THRESHOLD).tolist() == [True]


def test_saturation_is_reported(tmp_path: Path) -> None:
    from ssl4eo_build.sample.cities import write_cities

    path = tmp_path / "one.csv"
    write_cities(path, [(1, "Tiny", "XX", 0.5, 0.5, 1)])
    cfg = SampleConfig(sigma_m=500.0, batch_size=64, max_candidates_per_location=5)
    with pytest.raises(SaturationError):
        run(load_cities(path), cfg, 200)


@settings(max_examples=400, deadline=None)
@given(
    lon=st.floats(-180.0, 180.0),
    lat=st.floats(-90.0, 90.0),
    azimuth=st.floats(-180.0, 180.0),
    distance=st.floats(0.0, THRESHOLD),
)
def test_search_neighbourhood_covers_every_point_within_reach(
    lon: float, lat: float, azimuth: float, distance: float
) -> None:
    index = OverlapIndex(THRESHOLD, 1.0)
    lon2, lat2, _ = WGS84.fwd(lon, lat, azimuth, distance)
    lon2 = (lon2 + 180.0) % 360.0 - 180.0
    target = index.cell_of(lon2, lat2)
    assert target in index.search_cells(lon, lat)
    if index.is_interior(np.array([lon]), np.array([lat]))[0]:
        assert target == index.cell_of(lon, lat)


@settings(max_examples=200, deadline=None)
@given(
    lon=st.floats(-180.0, 180.0),
    lat=st.floats(-89.9, 89.9),
    azimuth=st.floats(-180.0, 180.0),
    distance=st.floats(1.0, 4000.0),
)
def test_conflicts_matches_the_geodesic(lon: float, lat: float, azimuth: float, distance: float):
    from ssl4eo_build.geo import unit_vectors

    index = OverlapIndex(THRESHOLD, 1.0)
    index.add(lon, lat)
    lon2, lat2, _ = WGS84.fwd(lon, lat, azimuth, distance)
    lon2 = (lon2 + 180.0) % 360.0 - 180.0
    exact = geodesic_distance_m(lon, lat, lon2, lat2) < THRESHOLD
    assert index.conflicts(lon2, lat2, unit_vectors(lon2, lat2)) == bool(exact)


def test_in_order_decisions_follow_a_chain() -> None:
    from ssl4eo_build.sample.sampling import _decide_in_order

    # 0-1-2-3 in a chain, 4 close to 3 only, 5 close to 1 and 4: one at a time keeps 0, 2, 4.
    pairs = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [1, 5], [4, 5]])
    kept = _decide_in_order(np.ones(6, dtype=bool), pairs)
    assert kept.tolist() == [True, False, True, False, True, False]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-40, 40), min_size=0, max_size=480),
    st.sampled_from([1, 2, 3, 4]),
    st.sampled_from([0.5, 1.0, 3.0, 7.5]),
)
def test_grid_pairs_equal_the_kd_tree_pairs(values: list, dim: int, radius: float) -> None:
    from scipy.spatial import cKDTree

    from ssl4eo_build.geo import pairs_within

    # Points on a coarse lattice: many exact ties at the radius, duplicates, shared cells;
    # in 3 dimensions as sampling uses it, and in others (the last axis is searched apart).
    values = values[: len(values) - len(values) % dim]
    points = np.array(values, dtype=np.float64).reshape(-1, dim) * 0.5
    got = pairs_within(points, radius)
    want = cKDTree(points).query_pairs(radius * (1 - 1e-12), output_type="ndarray")
    assert len(got) == len(set(map(tuple, got.tolist()))), "each pair once"
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, np.sort(want, axis=1).tolist()))


def test_grid_pairs_with_a_radius_too_small_for_int64_cell_keys() -> None:
    from ssl4eo_build.geo import pairs_within

    points = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1e-12, 0.0], [0.0, 0.0, 1.0]])
    assert pairs_within(points, 1e-9).tolist() == [[1, 2]]
