"""Scene choice rules on hand-made scene lists."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

import numpy as np

from ssl4eo_build.config import Config, SyntheticConfig, override
from ssl4eo_build.download.core import (
    NoScene,
    choose_scenes,
    pick_s1,
    rank_s2,
    s1_windows,
    s2_windows,
    shift_days,
    shifted_window,
    usable_pairs,
)
from ssl4eo_build.geo import LonLat
from ssl4eo_build.sources.base import Scene
from ssl4eo_build.sources.synthetic import SyntheticSource

CFG = override(Config(), "download.date_rule", "fixed_year")  # the rule tested here


def s2(when: datetime, cloud: float, cloud_l1c: float | None = None, tile: str = "T32UPU"):
    gid = f"{when:%Y%m%dT%H%M%S}_{when:%Y%m%dT%H%M%S}_{tile}"
    l1c = Scene(gid, "S2L1C", when, 32632, cloud if cloud_l1c is None else cloud_l1c, gid, tile)
    l2a = dataclasses.replace(l1c, product="S2L2A", cloud_pct=cloud)
    return l1c, l2a


def s1(when: datetime) -> Scene:
    return Scene(f"S1A_IW_GRDH_1SDV_{when:%Y%m%dT%H%M%S}", "S1GRD", when, 4326)


def all_seasons(year: int, cloud: float = 5.0) -> list[tuple[Scene, Scene]]:
    dates = [datetime(year, 3, 20, 10), datetime(year, 6, 21, 10), datetime(year, 9, 22, 10)]
    return [s2(d, cloud) for d in [*dates, datetime(year, 12, 21, 10)]]


def split(pairs):
    return [p[0] for p in pairs], [p[1] for p in pairs]


def s1_for(pairs, offset_days: float = 1.0) -> list[Scene]:
    return [s1(p[1].acquired + timedelta(days=offset_days)) for p in pairs]


def test_picks_least_cloudy_then_closest() -> None:
    ref = datetime(2021, 3, 20, 12)
    a = s2(ref + timedelta(days=10), 2.0)
    b = s2(ref - timedelta(days=3), 4.0)
    c = s2(ref + timedelta(days=2), 2.0)  # same cloud as a, closer
    ranked = rank_s2([a, b, c], 0, CFG, None)
    assert [p[1].scene_id for p in ranked] == [c[1].scene_id, a[1].scene_id, b[1].scene_id]


def test_window_edges() -> None:
    ref = datetime(2021, 3, 20, 12)
    inside = s2(ref + timedelta(days=15), 1.0)
    outside = s2(ref + timedelta(days=15, seconds=1), 0.5)
    ranked = rank_s2([inside, outside], 0, CFG, None)
    assert [p[1].scene_id for p in ranked] == [inside[1].scene_id]


def test_cloud_rule_needs_both_levels_below_10() -> None:
    ok = s2(datetime(2021, 3, 20), 9.99, 9.0)
    l1c_cloudy = s2(datetime(2021, 3, 21), 5.0, 10.0)
    assert usable_pairs(*split([ok, l1c_cloudy]), 10.0) == [ok]


def test_year_fallback_2021_then_2020() -> None:
    pairs = [*all_seasons(2020), s2(datetime(2021, 3, 22), 50.0)]
    picks = choose_scenes(*split(pairs), s1_for(pairs), CFG, {})
    assert not isinstance(picks, NoScene)
    assert [p.l2a.acquired.year for p in picks] == [2020] * 4
    pairs = all_seasons(2020) + all_seasons(2021)
    picks = choose_scenes(*split(pairs), s1_for(pairs), CFG, {})
    assert not isinstance(picks, NoScene)
    assert [p.l2a.acquired.year for p in picks] == [2021] * 4


def test_missing_season_rejects_with_reason() -> None:
    pairs = [*all_seasons(2021)[:2], *all_seasons(2021)[3:]]
    result = choose_scenes(*split(pairs), s1_for(pairs), CFG, {})
    assert isinstance(result, NoScene)
    assert result.season == 2
    assert result.reason.startswith("no_scene: season 2 S2: no granule under 10% cloud")


def test_reference_mode_closest_within_gap() -> None:
    ref = {0: datetime(2020, 4, 19, 9, 40)}
    near = s2(datetime(2020, 4, 24), 8.0)
    nearer_but_cloudy = s2(datetime(2020, 4, 20), 30.0)
    far = s2(datetime(2020, 5, 25), 0.0)  # 36 days: beyond the 30-day gap
    pairs = usable_pairs(*split([near, nearer_but_cloudy, far]), 10.0)
    ranked = rank_s2(pairs, 0, CFG, ref[0])
    assert [p[1].scene_id for p in ranked] == [near[1].scene_id]
    old = s2(datetime(2018, 4, 19), 0.0)
    assert rank_s2([old], 0, CFG, datetime(2018, 4, 19)) == [], "outside 2019-2021"


def test_s1_closest_and_gap() -> None:
    when = datetime(2021, 3, 20, 10)
    scenes = [s1(when + timedelta(days=d)) for d in (-7, 3, 16)]
    best, gap = pick_s1(scenes, when, 15.0)  # type: ignore[misc]
    assert best.acquired == when + timedelta(days=3) and gap == 3.0
    assert pick_s1([s1(when + timedelta(days=15.5))], when, 15.0) is None


def test_s1_missing_falls_back_to_next_granule_then_rejects() -> None:
    pairs = all_seasons(2021)
    second_best = s2(datetime(2021, 3, 30, 10), 6.0)
    # Only the second-best March granule has an S-1 partner (17 days from the best one).
    s1s = [*s1_for(pairs[1:]), s1(second_best[1].acquired + timedelta(days=7))]
    picks = choose_scenes(*split([*pairs, second_best]), s1s, CFG, {})
    assert not isinstance(picks, NoScene)
    assert picks[0].l2a.scene_id == second_best[1].scene_id
    assert picks[0].s1_gap_days == 7.0
    result = choose_scenes(*split(pairs), s1_for(pairs[1:]), CFG, {})
    assert isinstance(result, NoScene) and result.product == "S1GRD" and result.season == 0


def test_configured_years_are_used() -> None:
    cfg = override(CFG, "download.years", [2019])
    pairs = all_seasons(2021)
    result = choose_scenes(*split(pairs), s1_for(pairs), cfg, {})
    assert isinstance(result, NoScene) and "2019" in result.reason


# ---------------------------------------------------------------------- v1's date rule


V1 = Config()  # the default: v1_shift, most recent granule in the window


def every_five_days(start: datetime, end: datetime, cloud: float = 5.0):
    out, when = [], start
    while when <= end:
        out.append(s2(when, cloud))
        when += timedelta(days=5)
    return out


ARCHIVE = every_five_days(datetime(2019, 11, 1, 10), datetime(2021, 11, 1, 10))


def test_shift_is_uniform_over_the_year_and_seeded_by_the_sample_id() -> None:
    shifts = [shift_days(V1, f"{i:07d}") for i in range(600)]
    assert shifts == [shift_days(V1, f"{i:07d}") for i in range(600)], "deterministic"
    assert 0 <= min(shifts) < 10 and 355 < max(shifts) <= 364
    counts = np.histogram(shifts, bins=4, range=(0, 365))[0]
    assert all(110 <= c <= 190 for c in counts), counts  # about 150 in each quarter
    assert shift_days(V1, "0000001", 0) != shift_days(V1, "0000001", 1), "a new draw per try"


def test_v1_windows_take_the_latest_granule_of_each_shifted_window() -> None:
    picks = choose_scenes(*split(ARCHIVE), s1_for(ARCHIVE), V1, {}, "0000042")
    assert not isinstance(picks, NoScene)
    shift = shift_days(V1, "0000042")
    for pick in picks:
        start, end = shifted_window(V1, pick.season, shift)
        inside = [p[1].acquired for p in ARCHIVE if start <= p[1].acquired <= end]
        assert pick.l2a.acquired == max(inside), "the most recent, as v1 took"
    dates = sorted(p.l2a.acquired for p in picks)
    assert (dates[-1] - dates[0]).days < 365, "a sample's four dates lie within one year"
    windows = s2_windows(V1, {})
    assert len(windows) == 1, "one search covers every shift"
    # 2020-12-21 minus 364 days (2020 is a leap year) minus 15; 2021-09-22 plus 15.
    assert windows[0].start.date() == date(2019, 12, 8)
    assert windows[0].end.date() == date(2021, 10, 7)


def test_a_season_that_cannot_be_filled_draws_a_new_shift_then_rejects() -> None:
    first, second = shift_days(V1, "0000007", 0), shift_days(V1, "0000007", 1)
    start, end = shifted_window(V1, 2, first)
    holes = [p for p in ARCHIVE if not start <= p[1].acquired <= end]
    picks = choose_scenes(*split(holes), s1_for(holes), V1, {}, "0000007")
    assert not isinstance(picks, NoScene)
    second_start, second_end = shifted_window(V1, 2, second)
    assert second_start <= picks[2].l2a.acquired <= second_end
    cloudy = every_five_days(datetime(2019, 11, 1, 10), datetime(2021, 11, 1, 10), cloud=50.0)
    result = choose_scenes(*split(cloudy), s1_for(cloudy), V1, {}, "0000007")
    assert isinstance(result, NoScene) and "(5 shift(s) tried)" in result.reason


def test_simulated_archive_dates_follow_v1s_rule_over_hundreds_of_locations() -> None:
    """Scene choice (searches only, no pixels) for 300 locations around three cities."""
    source = SyntheticSource(SyntheticConfig())
    spans, months, filled = [], set(), 0
    rng = np.random.default_rng(3)
    for i in range(300):
        base = [(11.57, 48.14), (-77.04, -12.05), (139.69, 35.69)][i % 3]
        point = LonLat(base[0] + rng.normal(0, 0.3), base[1] + rng.normal(0, 0.3))
        found = {
            p: source.search(point, p, (s1_windows if p == "S1GRD" else s2_windows)(V1, {}))
            for p in ("S2L1C", "S2L2A", "S1GRD")
        }
        picks = choose_scenes(found["S2L1C"], found["S2L2A"], found["S1GRD"], V1, {}, f"{i:07d}")
        if isinstance(picks, NoScene):
            continue
        filled += 1
        dates = sorted(p.l2a.acquired for p in picks)
        spans.append((dates[-1] - dates[0]).days)
        months.update(d.month for d in dates)
        assert date(2019, 12, 7) <= dates[0].date() and dates[-1].date() <= date(2021, 10, 7)
    assert filled > 150
    assert max(spans) < 365, "every sample within one year"
    assert months == set(range(1, 13)), "dates spread over the whole year"
