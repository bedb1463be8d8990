"""Stage `sample`, wiring: sampled or imported locations into the manifest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, section_dict
from ..errors import (
    InputError,
    UserError,
)
from ..files import file_sha256
from ..manifest import Manifest
from ..workdir import owned
from .cities import load_cities
from .reference_index import read_reference_index
from .sampling import SaturationError, sample_locations

log = logging.getLogger(__name__)

# Sample settings that do not change which locations a given candidate stream accepts.
_SAMPLE_VOLATILE = ("n", "max_candidates_per_location")


@dataclass(frozen=True)
class SampleSummary:
    existing: int
    added: int
    total: int
    candidates_drawn: int
    overlap_rejections: int
    imported_from: str | None = None


def sample_settings(config: Config) -> dict[str, Any]:
    settings = {k: v for k, v in section_dict(config.sample).items() if k not in _SAMPLE_VOLATILE}
    settings.pop("cities")
    settings["cities_sha256"] = file_sha256(config.sample.cities)
    return settings


def run_sample(
    config: Config, work_dir: Path, n: int | None = None, force: bool = False
) -> SampleSummary:
    """Top the manifest up to ``n`` locations (default: ``sample.n``), resuming the stream."""
    target = config.sample.n if n is None else n
    cities = load_cities(config.sample.cities)
    with owned(work_dir), Manifest.open(work_dir) as manifest:
        existing = manifest.locations()
        settings = sample_settings(config)
        manifest.check_stage_config("sample", settings, has_results=bool(existing), force=force)
        run_id = manifest.begin_run("sample", {**settings, "n": target})
        start = int(manifest.get_meta("sample.next_candidate") or 0)
        overlaps_before = int(manifest.get_meta("sample.overlap_rejections") or 0)
        next_number = manifest.next_sample_number()
        added, overlaps, drawn = 0, 0, start
        wanted = max(0, target - len(existing))
        try:
            for progress in sample_locations(
                cities, config.sample, (r.position for r in existing), wanted, start
            ):
                first = next_number + added
                columns = (
                    [f"{i:07d}" for i in range(first, first + len(progress))],
                    progress.lon.tolist(),
                    progress.lat.tolist(),
                    cities.labels(progress.city),
                    ["sample"] * len(progress),
                    progress.candidate.tolist(),
                )
                overlaps += progress.overlaps
                drawn = progress.next_candidate
                # Locations and the resume counter commit together: a kill between chunks
                # resumes exactly where the stream stopped.
                with manifest.transaction() as db:
                    manifest.insert_locations(db, columns)
                    manifest.set_meta("sample.next_candidate", str(drawn), db)
                    manifest.set_meta(
                        "sample.overlap_rejections", str(overlaps_before + overlaps), db
                    )
                added += len(progress)
        except SaturationError as exc:
            raise UserError(
                f"{config.sample.cities}: {exc}. Lower --n, add cities, or reduce "
                "sample.overlap_fraction."
            ) from None
        summary = SampleSummary(
            existing=len(existing),
            added=added,
            total=len(existing) + added,
            candidates_drawn=drawn - start,
            overlap_rejections=overlaps,
        )
        manifest.finish_run(run_id, summary.__dict__)
        return summary


def import_index(config: Config, work_dir: Path, index_path: Path) -> SampleSummary:
    """``sample --from-index``: add the index's locations and reference times as given."""
    indexed = read_reference_index(index_path)
    with owned(work_dir), Manifest.open(work_dir) as manifest:
        known = manifest.sample_ids()
        clashes = [loc.sample_id for loc in indexed if loc.sample_id in known]
        if clashes:
            raise InputError(
                f"{index_path}: {len(clashes)} sample_id(s) already in {manifest.path} "
                f"(first: {clashes[0]}); import into a new --work-dir or remove them from "
                "the index."
            )
        run_id = manifest.begin_run("sample", {"from_index": str(index_path)})
        with manifest.transaction() as db:
            rows = [
                (loc.sample_id, loc.position.lon, loc.position.lat, None, "index", None)
                for loc in indexed
            ]
            manifest.insert_locations(db, list(zip(*rows, strict=True)))
            manifest.insert_reference_times(
                db,
                (
                    (loc.sample_id, season, ref.time, ref.tile_id, ref.tile_crs)
                    for loc in indexed
                    for season, ref in sorted(loc.seasons.items())
                ),
            )
            manifest.insert_footprints(
                db, ((loc.sample_id, loc.footprint) for loc in indexed if loc.footprint)
            )
        summary = SampleSummary(
            existing=len(known),
            added=len(indexed),
            total=len(known) + len(indexed),
            candidates_drawn=0,
            overlap_rejections=0,
            imported_from=str(index_path),
        )
        manifest.finish_run(run_id, summary.__dict__)
        return summary


# Download settings that do not change which scenes are chosen or what the files hold.
