"""The manifest: one SQLite database per work directory (WAL mode), written by one process.

Every stage reads the ``ok`` rows of the stage before it and records its own results in the
same transaction as the progress marker that lets it resume, so a kill at any moment leaves a
consistent database: the work in flight is simply done again.

Tables (see README "The manifest" for every column):

- ``meta(key, value)``: resume counters (e.g. ``sample.next_candidate``) and the config each
  stage last ran with (``config.<stage>``).
- ``stage_runs``: one row per stage run: start/end time, config hash and JSON, summary.
- ``locations``: one row per location; ``status`` is the sample stage's verdict.
- ``reference_times``: per-season reference timestamps imported with ``sample --from-index``.
- ``downloads``: the download stage's verdict per location (ok / rejected / failed, attempts).
- ``scenes``, ``patches``, ``shards``: filled by download, align and pack.
- ``pack_shards``: per shard number, its samples, split-metadata rows and band sums (so a
  resumed pack writes the metadata parquet and stats.json without reopening finished shards).
- ``dropped(sample_id, kind)``: files removed on purpose to save disk (``cube``: by pack once
  the location's shards are verified; ``raw``: by ``clean --raw``), made again when needed.

Every path is stored relative to the work directory, so a work directory can be moved, copied
or used from any current directory. Files carry the checksum recorded when they were written
(column ``sha256``: a sha256 for shards, ``xxh3:...`` for raw files and cubes, see
:mod:`ssl4eo_build.files`).
Status and other read-only commands open the database read-only (:meth:`Manifest.open_readonly`)
and never block a running build.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import fingerprint
from .errors import ConfigChangedError, ManifestError, describe_os_error
from .geo import LonLat
from .workdir import cube_relpath, raw_relpath

MANIFEST_NAME = "manifest.sqlite"
SCHEMA_VERSION = 2  # 2: paths relative to the work dir, sha256 of raw files and cubes

STATUSES = ("pending", "ok", "rejected", "failed")
_MAX_ID = "\uffff"  # sorts after every sample id
_ROWS_PER_INSERT = 100  # rows per INSERT statement in insert_columns

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stage_runs(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stage TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    config_hash TEXT NOT NULL,
    config_json TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS locations(
    sample_id TEXT PRIMARY KEY,
    lon REAL NOT NULL,
    lat REAL NOT NULL,
    city TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    origin TEXT NOT NULL,
    candidate INTEGER
);
CREATE TABLE IF NOT EXISTS reference_times(
    sample_id TEXT NOT NULL REFERENCES locations(sample_id),
    time_index INTEGER NOT NULL,
    time TEXT NOT NULL,
    tile_id TEXT,
    tile_crs INTEGER,
    PRIMARY KEY(sample_id, time_index)
);
CREATE TABLE IF NOT EXISTS footprints(
    sample_id TEXT PRIMARY KEY REFERENCES locations(sample_id),
    wkb BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS downloads(
    sample_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scenes(
    sample_id TEXT NOT NULL,
    product TEXT NOT NULL,
    time_index INTEGER NOT NULL,
    scene_id TEXT,
    acquired TEXT,
    cloud_pct REAL,
    crs INTEGER,
    status TEXT NOT NULL,
    reason TEXT,
    gap_days REAL,
    path TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    PRIMARY KEY(sample_id, product, time_index)
);
CREATE TABLE IF NOT EXISTS patches(
    sample_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    reason TEXT,
    crs INTEGER,
    nan_fraction_max REAL,
    path TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT
);
CREATE TABLE IF NOT EXISTS pack_shards(
    layout TEXT NOT NULL,
    split TEXT NOT NULL,
    number INTEGER NOT NULL,
    samples TEXT NOT NULL,
    metadata TEXT NOT NULL,
    stats TEXT NOT NULL,
    PRIMARY KEY(layout, split, number)
);
CREATE TABLE IF NOT EXISTS dropped(
    sample_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY(sample_id, kind)
);
CREATE TABLE IF NOT EXISTS shards(
    path TEXT PRIMARY KEY,
    split TEXT NOT NULL,
    modality TEXT NOT NULL,
    n_samples INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""


def settled_cut(outcomes: Sequence[tuple[str, str]], target: int) -> tuple[str, ...] | None:
    """The first ``target`` accepted locations of ``outcomes`` ((sample_id, outcome) in
    sampling order, see :meth:`Manifest.outcomes`), or None while fewer are accepted or an open
    location comes before the last of them (it may still be accepted)."""
    accepted: list[str] = []
    for sample_id, outcome in outcomes:
        if outcome == "open":
            return None
        if outcome == "accepted":
            accepted.append(sample_id)
            if len(accepted) == target:
                return tuple(accepted)
    return None


@dataclass(frozen=True)
class LocationRow:
    sample_id: str
    position: LonLat
    city: str | None
    status: str
    reason: str | None
    origin: str


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """Handle on ``WORK/manifest.sqlite``. Only the coordinating process writes one."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            if readonly:
                self.db = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                    timeout=30.0,
                )  # fmt: skip
                self.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        version = self._schema_version()
        if readonly:
            if version != SCHEMA_VERSION:
                raise ManifestError(
                    f"{self.path}: manifest schema version {version}; this ssl4eo-build reads "
                    f"version {SCHEMA_VERSION}. Run a writing command (e.g. `ssl4eo-build "
                    "sample`) once to upgrade it."
                )
            return
        try:
            with self.transaction() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
            self.set_meta("build_id", uuid.uuid4().hex)
        elif version == 1:
            self._upgrade_from_1()
        elif version != SCHEMA_VERSION:
            raise ManifestError(
                f"{self.path}: manifest schema version {version}, this ssl4eo-build expects "
                f"{SCHEMA_VERSION}; use a matching version or a new --work-dir."
            )

    def _schema_version(self) -> int | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:  # no meta table yet: a new manifest
            return None
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        if row is None:
            return None
        try:
            return int(row[0])
        except (TypeError, ValueError):
            raise ManifestError(
                f"{self.path}: meta key 'schema_version' is {row[0]!r}, expected an integer "
                f"(this ssl4eo-build writes {SCHEMA_VERSION}); the manifest was edited or "
                "damaged: restore it from a backup or use a new --work-dir."
            ) from None

    def _unusable(self, exc: sqlite3.DatabaseError) -> ManifestError:
        text = str(exc).lower()
        if "readonly" in text or "read-only" in text:
            os_error = OSError(errno.EROFS, "read-only", str(self.path))
            return ManifestError(describe_os_error(os_error, "writing the manifest"))
        if "disk is full" in text or "disk full" in text:
            os_error = OSError(errno.ENOSPC, "disk full", str(self.path))
            return ManifestError(describe_os_error(os_error, "writing the manifest"))
        if "unable to open" in text:
            return ManifestError(
                f"{self.path}: cannot open the manifest ({exc}): the work directory is missing, "
                "not writable, or not a directory. Check --work-dir and its permissions."
            )
        return ManifestError(
            f"{self.path}: not a usable manifest ({exc}); the file is not an ssl4eo-build "
            "manifest or is damaged. Point --work-dir at the right directory, restore the file "
            "from a backup, or start a new --work-dir."
        )

    def _upgrade_from_1(self) -> None:
        """Version 1 stored paths as given on the command line (relative to the current
        directory at the time); they are derived again from the ids, relative to the work dir.
        Files written before have no recorded checksum (NULL: not verified)."""
        with self.transaction() as db:
            for table in ("scenes", "patches"):
                columns = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                if "sha256" not in columns:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN sha256 TEXT")
            rows = db.execute("SELECT sample_id, product, time_index FROM scenes").fetchall()
            db.executemany(
                "UPDATE scenes SET path=? WHERE sample_id=? AND product=? AND time_index=?",
                ((raw_relpath(i, p, int(t)), i, p, t) for i, p, t in rows),
            )
            ids = [r[0] for r in db.execute("SELECT sample_id FROM patches WHERE path IS NOT NULL")]
            db.executemany(
                "UPDATE patches SET path=? WHERE sample_id=?", ((cube_relpath(i), i) for i in ids)
            )
            self.set_meta("schema_version", str(SCHEMA_VERSION), db)
            if self.get_meta("build_id") is None:
                self.set_meta("build_id", uuid.uuid4().hex, db)

    @classmethod
    def open(cls, work_dir: Path, create: bool = True) -> Manifest:
        work_dir = Path(work_dir)
        path = work_dir / MANIFEST_NAME
        if not create and not path.exists():
            raise ManifestError(
                f"{path}: no manifest here; run `ssl4eo-build sample --work-dir {work_dir}` first."
            )
        if work_dir.exists() and not work_dir.is_dir():
            raise ManifestError(f"--work-dir {work_dir}: is a file, expected a directory.")
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ManifestError(describe_os_error(exc, "creating the work directory")) from None
        return cls(path)

    @classmethod
    def open_readonly(cls, work_dir: Path) -> Manifest:
        """For commands that only look (status, dry runs): no lock, no writes."""
        path = Path(work_dir) / MANIFEST_NAME
        if not path.is_file():
            hint = ""
            if (Path(work_dir) / "stats.json").exists():
                hint = " It looks like a packed dataset: `ssl4eo-build validate` checks those."
            raise ManifestError(
                f"{path}: no manifest here; run `ssl4eo-build sample --work-dir {work_dir}` "
                f"first.{hint}"
            )
        return cls(path, readonly=True)

    @property
    def build_id(self) -> str:
        return self.get_meta("build_id") or ""

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together or not at all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- meta and stage runs -------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str, db: sqlite3.Connection | None = None) -> None:
        (db or self.db).execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def check_stage_config(
        self, stage: str, settings: Mapping[str, Any], has_results: bool, force: bool
    ) -> None:
        """Refuse a config that differs from the one the stage's finished results came from."""
        previous = self.get_meta(f"config.{stage}")
        current = json.dumps(settings, sort_keys=True, default=str)
        if previous is not None and previous != current and has_results and not force:
            detail = settings_diff(json.loads(previous), json.loads(current))
            raise ConfigChangedError(
                f"{self.path}: stage `{stage}` already has results made with a different "
                f"config ({detail}). Re-run with the original config, use a new --work-dir, "
                "or pass --force to continue with the new settings (finished rows are kept)."
            )
        self.set_meta(f"config.{stage}", current)

    def begin_run(self, stage: str, settings: Mapping[str, Any]) -> int:
        blob = json.dumps(settings, sort_keys=True, default=str)
        cur = self.db.execute(
            "INSERT INTO stage_runs(stage, started, config_hash, config_json) VALUES(?,?,?,?)",
            (stage, utc_now(), fingerprint(settings), blob),
        )
        return int(cur.lastrowid or 0)

    def last_run_settings(self, stage: str) -> dict[str, Any] | None:
        """The settings the stage's latest run started with (None if it never ran)."""
        row = self.db.execute(
            "SELECT config_json FROM stage_runs WHERE stage=? ORDER BY id DESC LIMIT 1", (stage,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def last_runs(self) -> dict[str, dict[str, str | None]]:
        """Per stage, when its last run started and finished (None while unfinished)."""
        return {
            str(stage): {"started": started, "finished": finished}
            for stage, started, finished in self.db.execute(
                "SELECT stage, started, finished FROM stage_runs WHERE id IN "
                "(SELECT MAX(id) FROM stage_runs GROUP BY stage) ORDER BY id"
            )
        }

    def finish_run(self, run_id: int, summary: Mapping[str, Any]) -> None:
        self.db.execute(
            "UPDATE stage_runs SET finished=?, summary=? WHERE id=?",
            (utc_now(), json.dumps(summary, sort_keys=True), run_id),
        )

    # -- locations -----------------------------------------------------------------------------

    def count(self, table: str, status: str | None = None) -> int:
        if table not in ("locations", "downloads", "scenes", "patches", "shards"):
            raise ValueError(table)
        if status is None:
            return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        return int(
            self.db.execute(f"SELECT COUNT(*) FROM {table} WHERE status=?", (status,)).fetchone()[0]
        )

    def locations(self, status: str | None = None) -> list[LocationRow]:
        sql = "SELECT sample_id, lon, lat, city, status, reason, origin FROM locations"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status=?"
            args = (status,)
        return [
            LocationRow(r[0], LonLat(r[1], r[2]), r[3], r[4], r[5], r[6])
            for r in self.db.execute(sql + " ORDER BY sample_id", args)
        ]

    def imported_ids(self) -> set[str]:
        """Locations imported from a reference index (their dates follow its times)."""
        return {
            r[0] for r in self.db.execute("SELECT sample_id FROM locations WHERE origin='index'")
        }

    def sample_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT sample_id FROM locations")}

    def next_sample_number(self) -> int:
        row = self.db.execute("SELECT MAX(CAST(sample_id AS INTEGER)) FROM locations").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def insert_locations(
        self,
        db: sqlite3.Connection,
        columns: Sequence[Sequence[Any]],
    ) -> None:
        """Columns sample_id, lon, lat, city, origin, candidate (one list each, a row per
        location), all accepted (``ok``)."""
        insert_columns(
            db,
            "INSERT INTO locations(sample_id, lon, lat, city, status, reason, origin, candidate) "
            "VALUES",
            "(?, ?, ?, ?, 'ok', NULL, ?, ?)",
            columns,
        )

    def insert_reference_times(
        self,
        db: sqlite3.Connection,
        rows: Iterable[tuple[str, int, str, str | None, int | None]],
    ) -> None:
        db.executemany(
            "INSERT INTO reference_times(sample_id, time_index, time, tile_id, tile_crs) "
            "VALUES(?, ?, ?, ?, ?)",
            rows,
        )

    def insert_footprints(self, db: sqlite3.Connection, rows: Iterable[tuple[str, bytes]]) -> None:
        db.executemany("INSERT INTO footprints(sample_id, wkb) VALUES(?, ?)", rows)

    def reference_patches(self) -> dict[str, tuple[bytes, int]]:
        """sample_id -> (footprint WKB, the index's tile CRS) of locations imported with a
        footprint: their patch reproduces it. The CRS is the one most seasons name."""
        crs: dict[str, list[int]] = {}
        for sample_id, tile_crs in self.db.execute(
            "SELECT sample_id, tile_crs FROM reference_times WHERE tile_crs IS NOT NULL "
            "ORDER BY sample_id, time_index"
        ):
            crs.setdefault(str(sample_id), []).append(int(tile_crs))
        return {
            str(sample_id): (bytes(wkb), max(crs[sample_id], key=crs[sample_id].count))
            for sample_id, wkb in self.db.execute("SELECT sample_id, wkb FROM footprints")
            if sample_id in crs
        }

    def reference_times(self, sample_id: str) -> dict[int, str]:
        return {
            int(r[0]): str(r[1])
            for r in self.db.execute(
                "SELECT time_index, time FROM reference_times WHERE sample_id=?", (sample_id,)
            )
        }

    # -- downloads -----------------------------------------------------------------------------

    def download_candidates(self, max_runs: int, up_to: str | None = None) -> list[LocationRow]:
        """Sampled locations with no finished download: never tried, or failed < max_runs
        times; with ``up_to``, only those whose id is not after it (sampling order)."""
        sql = (
            "SELECT l.sample_id, l.lon, l.lat, l.city, l.status, l.reason, l.origin "
            "FROM locations l LEFT JOIN downloads d ON d.sample_id = l.sample_id "
            "WHERE l.status = 'ok' AND (d.sample_id IS NULL OR "
            "(d.status IN ('failed', 'pending') AND d.attempts < ?)) AND l.sample_id <= ? "
            "ORDER BY l.sample_id"
        )
        return [
            LocationRow(r[0], LonLat(r[1], r[2]), r[3], r[4], r[5], r[6])
            for r in self.db.execute(sql, (max_runs, _MAX_ID if up_to is None else up_to))
        ]

    def all_reference_times(self) -> dict[str, dict[int, str]]:
        """sample_id -> {season: ISO time} for every location imported with reference times."""
        out: dict[str, dict[int, str]] = {}
        for sample_id, season, when in self.db.execute(
            "SELECT sample_id, time_index, time FROM reference_times"
        ):
            out.setdefault(str(sample_id), {})[int(season)] = str(when)
        return out

    def all_recorded_scenes(
        self,
    ) -> dict[str, dict[tuple[str, int], tuple[str, str | None, int | None, str]]]:
        """sample_id -> {(product, season): (scene id, sha256, EPSG, path of the file)} of
        files already fetched and recorded (only locations whose download is not finished keep
        such partial records)."""
        out: dict[str, dict[tuple[str, int], tuple[str, str | None, int | None, str]]] = {}
        for sample_id, product, season, scene_id, sha, crs, path in self.db.execute(
            "SELECT s.sample_id, s.product, s.time_index, s.scene_id, s.sha256, s.crs, s.path "
            "FROM scenes s JOIN downloads d ON d.sample_id = s.sample_id "
            "WHERE s.status='ok' AND d.status != 'ok'"
        ):
            record = (str(scene_id), sha, None if crs is None else int(crs), str(path))
            out.setdefault(str(sample_id), {})[(str(product), int(season))] = record
        return out

    def record_download(
        self,
        db: sqlite3.Connection,
        sample_id: str,
        status: str,
        reason: str | None,
        requests: int,
        scenes: Iterable[tuple[Any, ...]],
    ) -> None:
        """Scenes rows (product, season, scene_id, acquired, cloud, crs, gap, path, sha256)
        and the verdict. Files of a failed attempt stay recorded, so the next attempt fetches
        only what is missing."""
        db.execute("DELETE FROM scenes WHERE sample_id=?", (sample_id,))
        db.executemany(
            "INSERT INTO scenes(sample_id, product, time_index, scene_id, acquired, cloud_pct, "
            "crs, status, reason, gap_days, path, sha256) "
            "VALUES(?, ?, ?, ?, ?, ?, ?, 'ok', NULL, ?, ?, ?)",
            ((sample_id, *row) for row in scenes),
        )
        db.execute(
            "INSERT INTO downloads(sample_id, status, reason, attempts, requests, updated) "
            "VALUES(?, ?, ?, 1, ?, ?) ON CONFLICT(sample_id) DO UPDATE SET "
            "status=excluded.status, reason=excluded.reason, attempts=downloads.attempts + 1, "
            "requests=downloads.requests + excluded.requests, updated=excluded.updated",
            (sample_id, status, reason, requests, utc_now()),
        )
        if status == "ok":
            db.execute("DELETE FROM dropped WHERE sample_id=? AND kind='raw'", (sample_id,))

    def invalidate_files(
        self,
        db: sqlite3.Connection,
        sample_id: str,
        files: Iterable[tuple[str, int]] | None,
        reason: str,
    ) -> None:
        """Raw files found damaged (named by a product and season they hold; None: all of
        the location's): only they are fetched again on the next download run, with every
        layer they held."""
        if files is None:
            db.execute("DELETE FROM scenes WHERE sample_id=?", (sample_id,))
        db.executemany(
            "DELETE FROM scenes WHERE sample_id=? AND path IN (SELECT path FROM scenes "
            "WHERE sample_id=? AND product=? AND time_index=?)",
            ((sample_id, sample_id, product, season) for product, season in files or ()),
        )
        db.execute(
            "UPDATE downloads SET status='failed', reason=?, attempts=0, updated=? "
            "WHERE sample_id=?",
            (reason, utc_now(), sample_id),
        )
        db.execute("DELETE FROM patches WHERE sample_id=?", (sample_id,))

    # -- patches (align) -----------------------------------------------------------------------

    def align_candidates(
        self, max_runs: int, up_to: str | None = None
    ) -> list[tuple[LocationRow, dict[tuple[str, int], tuple[str, int, str | None]]]]:
        """Downloaded locations without a finished patch (ids not after ``up_to``), with
        their raw files: (product, season) -> (path relative to the work dir, EPSG, sha256)."""
        sql = (
            "SELECT l.sample_id, l.lon, l.lat, l.city, l.status, l.reason, l.origin "
            "FROM locations l JOIN downloads d ON d.sample_id = l.sample_id "
            "LEFT JOIN patches p ON p.sample_id = l.sample_id "
            "WHERE l.status = 'ok' AND d.status = 'ok' AND (p.sample_id IS NULL OR "
            "(p.status IN ('failed', 'pending') AND p.attempts < ?)) AND l.sample_id <= ? "
            "ORDER BY l.sample_id"
        )
        rows = [
            LocationRow(r[0], LonLat(r[1], r[2]), r[3], r[4], r[5], r[6])
            for r in self.db.execute(sql, (max_runs, _MAX_ID if up_to is None else up_to))
        ]
        files: dict[str, dict[tuple[str, int], tuple[str, int, str | None]]] = {}
        for sample_id, product, season, path, crs, sha in self.db.execute(
            "SELECT s.sample_id, s.product, s.time_index, s.path, s.crs, s.sha256 FROM scenes s "
            "JOIN downloads d ON d.sample_id = s.sample_id "
            "WHERE d.status = 'ok' AND s.status = 'ok'"
        ):
            files.setdefault(sample_id, {})[(product, int(season))] = (path, int(crs), sha)
        return [(row, files.get(row.sample_id, {})) for row in rows]

    def record_patch(
        self,
        db: sqlite3.Connection,
        sample_id: str,
        status: str,
        reason: str | None,
        crs: int | None,
        nan_fraction_max: float | None,
        path: str | None,
        sha256: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO patches(sample_id, status, reason, crs, nan_fraction_max, path, attempts, "
            "sha256) VALUES(?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT(sample_id) DO UPDATE SET "
            "status=excluded.status, reason=excluded.reason, crs=excluded.crs, "
            "nan_fraction_max=excluded.nan_fraction_max, path=excluded.path, "
            "attempts=patches.attempts + 1, sha256=excluded.sha256",
            (sample_id, status, reason, crs, nan_fraction_max, path, sha256),
        )
        db.execute("DELETE FROM dropped WHERE sample_id=? AND kind='cube'", (sample_id,))

    def redo_patches(self, db: sqlite3.Connection, sample_ids: Iterable[str], reason: str) -> None:
        """Cubes found missing or damaged: align them again (from the raw files on disk)."""
        db.executemany(
            "UPDATE patches SET status='pending', reason=?, attempts=0 WHERE sample_id=?",
            ((reason, s) for s in sample_ids),
        )

    # -- files dropped to save disk ------------------------------------------------------------

    def record_dropped(self, db: sqlite3.Connection, kind: str, sample_ids: Iterable[str]) -> None:
        """Files removed on purpose (``cube``: by pack once packed; ``raw``: by ``clean
        --raw``): not damage, and made again only when needed. Recording a new patch or a
        finished download clears the mark."""
        db.executemany(
            "INSERT OR IGNORE INTO dropped(sample_id, kind) VALUES(?, ?)",
            ((s, kind) for s in sample_ids),
        )

    def dropped(self, kind: str) -> set[str]:
        try:
            rows = self.db.execute("SELECT sample_id FROM dropped WHERE kind=?", (kind,))
            return {str(r[0]) for r in rows}
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return set()  # opened read-only, from before the table: nothing dropped

    def raw_files(self, sample_ids: Collection[str]) -> dict[str, list[str]]:
        """sample_id -> paths (relative to the work dir) of its recorded raw files."""
        out: dict[str, list[str]] = {}
        for sample_id, path in self.db.execute(
            "SELECT DISTINCT sample_id, path FROM scenes WHERE status='ok' AND path IS NOT NULL"
        ):
            if sample_id in sample_ids:
                out.setdefault(str(sample_id), []).append(str(path))
        return out

    # -- pack ----------------------------------------------------------------------------------

    def packable(self) -> list[tuple[str, float, float, str, str | None]]:
        """(sample_id, lon, lat, cube path, cube sha256) of every aligned location."""
        return [
            (str(r[0]), float(r[1]), float(r[2]), str(r[3]), r[4])
            for r in self.db.execute(
                "SELECT l.sample_id, l.lon, l.lat, p.path, p.sha256 FROM patches p "
                "JOIN locations l ON l.sample_id = p.sample_id WHERE p.status = 'ok' "
                "ORDER BY l.sample_id"
            )
        ]

    def packed_shards(self, layout: str) -> dict[tuple[str, int], tuple[list[str], str, str]]:
        """(split, number) -> (samples, metadata rows JSON, stats JSON) of a layout's shards."""
        return {
            (str(r[0]), int(r[1])): (json.loads(r[2]), str(r[3]), str(r[4]))
            for r in self.db.execute(
                "SELECT split, number, samples, metadata, stats FROM pack_shards WHERE layout=?",
                (layout,),
            )
        }

    def shard_files(self) -> dict[str, str]:
        return {str(r[0]): str(r[1]) for r in self.db.execute("SELECT path, sha256 FROM shards")}

    def record_shard(
        self,
        db: sqlite3.Connection,
        layout: str,
        split: str,
        number: int,
        samples: list[str],
        files: Iterable[tuple[str, str, int, str]],
        metadata_json: str,
        stats_json: str,
    ) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO shards(path, split, modality, n_samples, sha256) "
            "VALUES(?, ?, ?, ?, ?)",
            ((rel, split, modality, n, sha) for rel, modality, n, sha in files),
        )
        db.execute(
            "INSERT OR REPLACE INTO pack_shards(layout, split, number, samples, metadata, stats) "
            "VALUES(?, ?, ?, ?, ?, ?)",
            (layout, split, number, json.dumps(samples), metadata_json, stats_json),
        )

    def forget_pack(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM shards")
        db.execute("DELETE FROM pack_shards")

    def outcomes(self, download_runs: int, align_runs: int) -> list[tuple[str, str]]:
        """(sample_id, outcome) of every sampled location in sampling order, the outcome being
        ``accepted`` (passed align), ``rejected`` (a final verdict: rejected, or failed as
        often as the stage allows) or ``open`` (not tried yet, or failed transiently with
        tries left)."""
        sql = (
            "SELECT l.sample_id, d.status, d.attempts, p.status, p.attempts FROM locations l "
            "LEFT JOIN downloads d ON d.sample_id = l.sample_id "
            "LEFT JOIN patches p ON p.sample_id = l.sample_id "
            "WHERE l.status = 'ok' ORDER BY l.sample_id"
        )
        out = []
        for sample_id, d_status, d_attempts, p_status, p_attempts in self.db.execute(sql):
            if d_status == "rejected" or (d_status == "failed" and d_attempts >= download_runs):
                outcome = "rejected"
            elif d_status != "ok" or p_status is None or p_status == "pending":
                outcome = "open"
            elif p_status == "ok":
                outcome = "accepted"
            elif p_status == "rejected" or p_attempts >= align_runs:
                outcome = "rejected"
            else:
                outcome = "open"
            out.append((str(sample_id), outcome))
        return out

    # -- reporting -----------------------------------------------------------------------------

    def status_report(self) -> dict[str, Any]:
        """Counts per stage and status, and rejection/failure reasons (``status --json``)."""
        report: dict[str, Any] = {"manifest": str(self.path), "stages": {}}
        for stage, table in (
            ("sample", "locations"),
            ("download", "downloads"),
            ("align", "patches"),
        ):
            counts = {s: 0 for s in STATUSES}
            for status, n in self.db.execute(
                f"SELECT status, COUNT(*) FROM {table} GROUP BY status"
            ):
                counts[str(status)] = int(n)
            reasons = {
                str(reason): int(n)
                for reason, n in self.db.execute(
                    f"SELECT reason, COUNT(*) FROM {table} "
                    "WHERE status IN ('rejected', 'failed') GROUP BY reason ORDER BY reason"
                )
            }
            report["stages"][stage] = {"counts": counts, "reasons": reasons}
        # Not tried yet has no row of its own: pending are the previous stage's ok rows
        # without one (besides rows marked pending).
        for stage, sql in (
            ("download", "SELECT COUNT(*) FROM locations l WHERE l.status = 'ok' AND NOT EXISTS "
             "(SELECT 1 FROM downloads d WHERE d.sample_id = l.sample_id)"),
            ("align", "SELECT COUNT(*) FROM downloads d WHERE d.status = 'ok' AND NOT EXISTS "
             "(SELECT 1 FROM patches p WHERE p.sample_id = d.sample_id)"),
        ):  # fmt: skip
            report["stages"][stage]["counts"]["pending"] += int(self.db.execute(sql).fetchone()[0])
        report["stages"]["download"]["scenes"] = {
            str(p): int(n)
            for p, n in self.db.execute(
                "SELECT product, COUNT(*) FROM scenes WHERE status='ok' GROUP BY product"
            )
        }
        report["stages"]["download"]["raw_removed"] = len(self.dropped("raw"))
        report["stages"]["align"]["cubes_dropped"] = len(self.dropped("cube"))
        overlaps = self.get_meta("sample.overlap_rejections")
        report["stages"]["sample"]["candidates_rejected_for_overlap"] = int(overlaps or 0)
        shard_rows = self.db.execute(
            "SELECT split, modality, COUNT(*), SUM(n_samples) FROM shards GROUP BY split, modality"
        ).fetchall()
        report["stages"]["pack"] = {
            "shards": [
                {"split": s, "modality": m, "files": int(n), "samples": int(k or 0)}
                for s, m, n, k in shard_rows
            ]
        }
        runs = self.db.execute(
            "SELECT stage, started, finished, config_hash FROM stage_runs ORDER BY id DESC LIMIT 10"
        ).fetchall()
        report["recent_runs"] = [
            {"stage": r[0], "started": r[1], "finished": r[2], "config_hash": r[3][:12]}
            for r in runs
        ]
        return report


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> str:
    """The keys whose values differ, as ``key: old -> new``, comma-separated ("" if none)."""
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{prefix}{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)


def insert_columns(
    db: sqlite3.Connection, head: str, row: str, columns: Sequence[Sequence[Any]]
) -> None:
    """``head`` followed by one ``row`` of placeholders per row, the rows given as columns of
    equal length: many rows per statement, which halves the cost of a large insert against
    one statement per row. The parameters are interleaved a column at a time (a slice
    assignment each), not row by row."""
    width, n = len(columns), len(columns[0]) if columns else 0
    if n == 0:
        return
    if any(len(c) != n for c in columns):
        lengths = sorted({len(c) for c in columns})
        raise ValueError(f"columns of {lengths} rows, expected one length for all")
    flat: list[Any] = [None] * (n * width)
    for k, column in enumerate(columns):
        flat[k::width] = column
    full = (n - n % _ROWS_PER_INSERT) * width
    step = width * _ROWS_PER_INSERT
    db.executemany(
        head + ",".join([row] * _ROWS_PER_INSERT),
        [flat[i : i + step] for i in range(0, full, step)],
    )
    db.executemany(head + row, [flat[i : i + width] for i in range(full, n * width, width)])
