"""Fault injection through the CLI, as a user meets faults: kills, a moved work dir, damaged
raw files, cubes and shards, a busy work dir, a full disk. Every test asserts the outcome: the
same dataset as an undisturbed build, what was (not) fetched again, exit codes and messages."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ssl4eo_build.cli.app import app
from typer.testing import CliRunner

from ssl4eo_build import files, pipeline
from ssl4eo_build.config import load_config
from ssl4eo_build.download.core import DownloadTask, download_location
from ssl4eo_build.files import file_sha256
from ssl4eo_build.geo import LonLat
from ssl4eo_build.raster_io import read_geotiff, write_geotiff
from ssl4eo_build.sources import Limiter, RetryPolicy, make_source
from ssl4eo_build.sources.requests import RequestShape
from ssl4eo_build.workdir import LOCK_NAME, WorkDir, owned

from .conftest import shard_digests, write_toml

CMD = [sys.executable, "-m", "ssl4eo_build.cli.app"]
runner = CliRunner()


def query(work: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(work / "manifest.sqlite")
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def requests_spent(work: Path) -> int:
    return int(query(work, "SELECT COALESCE(SUM(requests), 0) FROM downloads")[0][0])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def built(tmp_path: Path, clean_run: Path) -> Path:
    """A private copy of the reference build's work dir."""
    work = tmp_path / "built"
    shutil.copytree(clean_run, work)
    return work


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------- portable work directories


def test_copied_work_dir_used_from_another_directory_fetches_nothing_and_packs(
    tmp_path: Path, cfg_path: Path, built: Path, clean_run: Path
) -> None:
    paths = [
        str(r[0])
        for r in query(
            built,
            "SELECT path FROM scenes UNION SELECT path FROM patches WHERE path IS NOT NULL",
        )
    ]
    assert paths and all(not p.startswith("/") for p in paths), "paths relative to the work dir"
    shutil.rmtree(built / "dataset")
    raw = {p: p.stat().st_mtime_ns for p in built.glob("raw/*/*/*.tif")}
    spent = requests_spent(built)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli(
        "run", "-c", str(cfg_path), "-w", os.path.relpath(built, elsewhere), "-q", cwd=elsewhere
    )
    assert done.returncode == 0, done.stderr
    assert requests_spent(built) == spent and {p: p.stat().st_mtime_ns for p in raw} == raw
    assert shard_digests(built / "dataset") == shard_digests(clean_run / "dataset")
    again = cli("pack", "-c", str(cfg_path), "-w", str(built), "-q", cwd=elsewhere)
    assert again.returncode == 0, again.stderr


# ----------------------------------------------------------------------- verified data


def test_flipped_byte_in_a_shard_is_named_by_validate_and_restored_by_pack(
    cfg_path: Path, built: Path
) -> None:
    dataset = built / "dataset"
    assert cli("validate", str(dataset), "-q").returncode == 0
    listed = (dataset / "checksums.sha256").read_text().splitlines()
    assert len(listed) == len([p for p in dataset.rglob("*") if p.is_file()]) - 2  # + marker
    for victim in sorted(dataset.glob("*/*/*.zarr.zip"))[::5]:
        original = victim.read_bytes()
        flip_byte(victim)
        checked = cli("validate", str(dataset))
        assert checked.returncode == 2 and str(victim) in checked.stdout
        assert "Traceback" not in checked.stdout + checked.stderr
        packed = cli("pack", "-c", str(cfg_path), "-w", str(built), "-q")
        assert packed.returncode == 0, packed.stderr
        assert victim.read_bytes() == original, "rewritten byte for byte"
    assert cli("validate", str(dataset), "-q").returncode == 0
    sums = subprocess.run(["sha256sum", "-c", "--quiet", "checksums.sha256"], cwd=dataset)
    assert sums.returncode == 0, "checksums.sha256 is in the sha256sum format"


def align_dropped_cubes_again(cfg_path: Path, work: Path) -> None:
    """The cubes pack dropped, aligned again (the state of a work dir packed with
    ``pack.keep_cubes``, or of one from before cubes were dropped)."""
    with sqlite3.connect(work / "manifest.sqlite") as db:
        db.execute(
            "UPDATE patches SET status='pending', attempts=0 WHERE sample_id IN "
            "(SELECT sample_id FROM dropped WHERE kind='cube')"
        )
    realigned = cli("align", "-c", str(cfg_path), "-w", str(work), "-q")
    assert realigned.returncode == 0, realigned.stderr
    assert not query(work, "SELECT * FROM dropped")


def test_damaged_cube_is_aligned_again_from_raw_without_fetching(
    cfg_path: Path, built: Path
) -> None:
    align_dropped_cubes_again(cfg_path, built)
    dataset = built / "dataset"
    shard = sorted(dataset.glob("train/S2L2A/*.zarr.zip"))[0]
    original = shard.read_bytes()
    sample_id = str(query(built, "SELECT sample_id FROM patches WHERE status='ok'")[0][0])
    cube = WorkDir.at(built).cube(sample_id)
    cube_bytes = cube.read_bytes()
    spent = requests_spent(built)
    # align --force finds the damaged cube and aligns it again, identically.
    cube.write_bytes(cube_bytes[:1000])
    forced = cli("align", "-c", str(cfg_path), "-w", str(built), "-q", "--force")
    assert forced.returncode == 0, forced.stderr
    assert cube.read_bytes() == cube_bytes
    # pack meets a damaged cube while rewriting a damaged shard: aligns it again first.
    for path in sorted(built.glob("aligned/*/*.cube")):
        flip_byte(path)
    for path in dataset.glob("*/*/*.zarr.zip"):
        flip_byte(path)
    packed = cli("pack", "-c", str(cfg_path), "-w", str(built), "-q")
    assert packed.returncode == 0, packed.stderr
    assert shard.read_bytes() == original and requests_spent(built) == spent


def small_build(tmp_path: Path, n: int = 3) -> tuple[Path, Path]:
    cities = tmp_path / "cities.csv"
    cities.write_text("geonameid,name,country,lat,lon,population\n1,Munich,DE,48.137,11.575,1\n")
    cfg = write_toml(
        tmp_path / "small.toml",
        f'[sample]\nn = {n}\nseed = 9\ncities = "{cities}"\n[synthetic]\npartial_prob = 0.0\n'
        "[download]\nworkers = 2\nretry_base_s = 0.001\n[align]\nworkers = 1\n",
    )
    work = tmp_path / "w"
    assert runner.invoke(app, ["sample", "-c", str(cfg), "-w", str(work), "-q"]).exit_code == 0
    assert runner.invoke(app, ["download", "-c", str(cfg), "-w", str(work), "-q"]).exit_code == 0
    return cfg, work


def test_one_damaged_raw_file_is_fetched_again_alone(tmp_path: Path) -> None:
    cfg, work = small_build(tmp_path)
    victims = query(
        work, "SELECT sample_id, path FROM scenes WHERE product='S1GRD' AND time_index=0 ORDER BY 1"
    )[:2]
    assert len(victims) == 2
    paths = [work / str(relpath) for _, relpath in victims]
    originals = [read_geotiff(path) for path in paths]
    others = {p: p.stat().st_mtime_ns for v in paths for p in v.parent.glob("*.tif") if p != v}
    before = dict(query(work, "SELECT sample_id, requests FROM downloads"))
    flip_byte(paths[0])  # fails the checksum recorded at download
    # Corrupt values in a file with no recorded checksum (an old work dir): found by value.
    data = originals[1].data.copy()
    data[0, 190, 190], data[1, 200, 170] = 6200.0, np.inf  # under the patch
    write_geotiff(paths[1], data, originals[1].grid, originals[1].bands, originals[1].tags)
    with sqlite3.connect(work / "manifest.sqlite") as db:
        db.execute("UPDATE scenes SET sha256=NULL WHERE path=?", (victims[1][1],))
    args = ["-c", str(cfg), "-w", str(work), "-q"]
    assert runner.invoke(app, ["align", *args]).exit_code == 0
    reasons = dict(query(work, "SELECT sample_id, reason FROM downloads WHERE status='failed'"))
    assert str(victims[0][1]) in reasons[victims[0][0]] and "checksum" in reasons[victims[0][0]]
    assert "6200" in reasons[victims[1][0]]
    assert runner.invoke(app, ["download", *args]).exit_code == 0
    assert runner.invoke(app, ["align", *args]).exit_code == 0
    after = dict(query(work, "SELECT sample_id, requests FROM downloads"))
    for sample_id, _ in victims:
        assert after[sample_id] - before[sample_id] == 1 + 1, "the scene plan, the one file"
    assert {p: p.stat().st_mtime_ns for p in others} == others, "the other files are kept"
    for path, original in zip(paths, originals, strict=True):
        np.testing.assert_array_equal(read_geotiff(path).data, original.data)
    assert {r[0] for r in query(work, "SELECT status FROM patches")} == {"ok"}


class CorruptingSource:
    """The simulator, but S-1 pixels come back at 6,200 dB for the first ``bad`` fetches."""

    def __init__(self, inner: object, bad: int) -> None:
        self.inner, self.bad, self.name = inner, bad, "corrupting"

        self.limits = inner.limits  # type: ignore[attr-defined]

    def plan(self, query: object) -> object:
        return self.inner.plan(query)  # type: ignore[attr-defined]

    def send(self, request: object) -> object:
        return self.inner.send(request)  # type: ignore[attr-defined]

    def decode(self, request, answer):  # type: ignore[no-untyped-def]
        pixels = self.inner.decode(request, answer)  # type: ignore[attr-defined]
        if self.bad > 0 and ("S1GRD", request.seasons[0]) in pixels:
            self.bad -= 1
            pixels[("S1GRD", request.seasons[0])][0, 0, 0] = 6200.0
        return pixels


@pytest.mark.parametrize("bad, status", [(1, "ok"), (100, "rejected")])
def test_corrupt_pixels_from_the_source_are_fetched_again_then_rejected(
    tmp_path: Path, bad: int, status: str
) -> None:
    cfg = load_config(None)
    source = CorruptingSource(make_source(cfg), bad)
    result = download_location(
        source,  # type: ignore[arg-type]
        cfg,
        DownloadTask("0000001", LonLat(11.575, 48.137)),
        WorkDir.at(tmp_path),
        Limiter(4, 1000.0),
        RetryPolicy(3, 0.0, 0.0),
        RequestShape(2, 1024),
    )
    assert result.status == status, result.reason
    if status == "rejected":
        assert result.reason is not None and result.reason.startswith("corrupt_data: ")
        assert "S1GRD band VV" in result.reason and "6200" in result.reason


# ------------------------------------------------------------------- one owner per work dir


def test_second_writer_exits_2_naming_the_holder_while_status_answers(
    cfg_path: Path, built: Path
) -> None:
    with owned(built):
        busy = cli("download", "-c", str(cfg_path), "-w", str(built))
        assert busy.returncode == 2
        assert f"in use by pid {os.getpid()}" in busy.stderr and "Traceback" not in busy.stderr
        assert cli("status", "-w", str(built)).returncode == 0
        assert cli("download", "-c", str(cfg_path), "-w", str(built), "--dry-run").returncode == 0
        assert cli("validate", str(built / "dataset"), "-q").returncode == 0
    # A lock file left by a dead process is taken over.
    (built / LOCK_NAME).write_text('{"pid": 999999, "command": "ssl4eo-build run"}\n')
    assert cli("download", "-c", str(cfg_path), "-w", str(built), "-q").returncode == 0


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def wait_for(work: Path, sql: str, more_than: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if query(work, sql)[0][0] > more_than:  # type: ignore[operator]
                return
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    raise AssertionError(f"never reached: {sql} > {more_than}")


@pytest.fixture
def slow_cfg(tmp_path: Path, cfg_path: Path) -> Path:
    return write_toml(
        tmp_path / "slow.toml",
        cfg_path.read_text().replace("[synthetic]\n", "[synthetic]\nlatency_s = 0.01\n"),
    )


def test_kill_9_leaves_no_process_and_no_temporary_file(
    tmp_path: Path, slow_cfg: Path, clean_run: Path
) -> None:
    work = tmp_path / "killed"
    proc = subprocess.Popen([*CMD, "run", "-c", str(slow_cfg), "-w", str(work), "-q"])
    wait_for(work, "SELECT COUNT(*) FROM patches", 0, proc)  # align workers are running
    family = descendants(proc.pid)
    assert family, "align runs in worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while alive(family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(family), "workers die with their coordinator"
    (work / ".tmp").mkdir(exist_ok=True)
    (work / ".tmp" / "left-by-a-kill.tif").write_bytes(b"half")
    done = cli("run", "-c", str(slow_cfg), "-w", str(work), "-q")
    assert done.returncode == 0, done.stderr
    assert not (work / ".tmp").exists() and not (work / "dataset" / ".tmp").exists()
    assert shard_digests(work / "dataset") == shard_digests(clean_run / "dataset")
    assert sampled(work) <= sampled(clean_run), "no more locations than an uninterrupted build"


@pytest.mark.parametrize("table", ["downloads", "patches"])
def test_ctrl_c_stops_cleanly_and_the_rerun_finishes_the_same_dataset(
    tmp_path: Path, slow_cfg: Path, clean_run: Path, table: str
) -> None:
    work = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [*CMD, "run", "-c", str(slow_cfg), "-w", str(work), "-q"], stderr=subprocess.PIPE
    )
    wait_for(work, f"SELECT COUNT(*) FROM {table}", 0, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    done = cli("run", "-c", str(slow_cfg), "-w", str(work), "-q")
    assert done.returncode == 0, done.stderr
    assert shard_digests(work / "dataset") == shard_digests(clean_run / "dataset")
    assert sampled(work) <= sampled(clean_run), "no more locations than an uninterrupted build"


def sampled(work: Path) -> int:
    return int(query(work, "SELECT COUNT(*) FROM locations")[0][0])  # type: ignore[call-overload]


# -------------------------------------------------------------------------------- full disk


@pytest.fixture
def disk_fills_after(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Make the file-writing helper raise ENOSPC once ``budget[0]`` files were written."""
    budget = [0]
    commit = files.commit_file

    def full(tmp: Path, path: Path, *args: Any, **kwargs: Any) -> str:
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        budget[0] -= 1
        return commit(tmp, path, *args, **kwargs)

    for module in ("files", "raster_io", "align.cube", "pack.core"):
        monkeypatch.setattr(f"ssl4eo_build.{module}.commit_file", full)
    yield budget


@pytest.mark.parametrize("budget", [5, 30])
def test_full_disk_stops_with_a_clear_error_and_loses_nothing(
    tmp_path: Path, cfg_path: Path, clean_run: Path, disk_fills_after: list[int], budget: int
) -> None:
    work = tmp_path / "full"
    disk_fills_after[0] = budget
    args = ["run", "-c", str(cfg_path), "-w", str(work), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "the disk is full" in result.output and "Traceback" not in result.output
    assert "restore" not in result.output
    finished = query(work, "SELECT COUNT(*) FROM scenes")[0][0]
    disk_fills_after[0] = 10**9
    assert runner.invoke(app, args).exit_code == 0
    assert query(work, "SELECT COUNT(*) FROM scenes")[0][0] >= finished  # type: ignore[operator]
    assert shard_digests(work / "dataset") == shard_digests(clean_run / "dataset")
    assert not list(work.rglob(".tmp")) and not list(work.rglob(".*.tmp-*"))


def test_storage_errors_say_what_happened(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_open = os.open

    def read_only(path, flags, *args):  # type: ignore[no-untyped-def]
        if str(path).endswith(LOCK_NAME):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    result = runner.invoke(app, ["sample", "-w", str(tmp_path / "w"), "--n", "2"])
    assert result.exit_code == 2
    assert "read-only" in result.output and "restore" not in result.output


def test_status_of_a_manifest_in_use_is_read_only(built: Path) -> None:
    before = (built / "manifest.sqlite").stat().st_mtime_ns
    assert pipeline.status(built)["stages"]["align"]["counts"]["ok"] >= 8
    assert (built / "manifest.sqlite").stat().st_mtime_ns == before
    assert file_sha256(built / "manifest.sqlite")


def test_a_version_1_manifest_is_upgraded_and_nothing_is_fetched_again(
    cfg_path: Path, built: Path, clean_run: Path
) -> None:
    """Version 1 stored paths as typed on the command line and no checksums, and kept the
    cubes."""
    align_dropped_cubes_again(cfg_path, built)
    with sqlite3.connect(built / "manifest.sqlite") as db:
        db.execute("DROP TABLE dropped")
        db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
        db.execute("UPDATE scenes SET path='../somewhere/else/' || path, sha256=NULL")
        db.execute("UPDATE patches SET path='/old/abs/' || path, sha256=NULL")
    old = cli("status", "-w", str(built))
    assert old.returncode == 2 and "upgrade" in old.stderr, "read-only commands do not upgrade"
    spent = requests_spent(built)
    shutil.rmtree(built / "dataset")
    done = cli("run", "-c", str(cfg_path), "-w", str(built), "-q")
    assert done.returncode == 0, done.stderr
    assert requests_spent(built) == spent
    assert query(built, "SELECT value FROM meta WHERE key='schema_version'") == [("2",)]
    paths = [
        str(r[0])
        for r in query(
            built,
            "SELECT path FROM scenes UNION SELECT path FROM patches WHERE path IS NOT NULL",
        )
    ]
    assert all(p.startswith(("raw/", "aligned/")) for p in paths)
    assert shard_digests(built / "dataset") == shard_digests(clean_run / "dataset")


# ------------------------------------------------------ disk: dropped cubes and clean --raw


def packed_ids(work: Path) -> set[str]:
    return {
        sid
        for (samples,) in query(work, "SELECT samples FROM pack_shards")
        for sid in json.loads(str(samples))
    }


def test_packed_cubes_are_dropped_and_a_rerun_redoes_nothing(
    cfg_path: Path, built: Path, clean_run: Path
) -> None:
    aligned = {str(r[0]) for r in query(built, "SELECT sample_id FROM patches WHERE status='ok'")}
    cubes = {p.stem for p in built.glob("aligned/*/*.cube")}
    assert cubes == aligned - packed_ids(built), "only the cubes not packed (beyond the cut) stay"
    dropped = {str(r[0]) for r in query(built, "SELECT sample_id FROM dropped WHERE kind='cube'")}
    assert dropped == packed_ids(built) and len(dropped) == 8
    status = cli("status", "-w", str(built))
    assert "cubes dropped once packed: 8 location(s)" in status.stdout
    before = query(built, "SELECT sample_id, attempts FROM patches ORDER BY 1")
    for stage in ("align", "pack", "run"):
        again = cli(stage, "-c", str(cfg_path), "-w", str(built))
        assert again.returncode == 0, again.stderr
        assert (
            "missing or damaged" not in again.stderr and "again from their raw" not in again.stderr
        )
    assert query(built, "SELECT sample_id, attempts FROM patches ORDER BY 1") == before
    assert shard_digests(built / "dataset") == shard_digests(clean_run / "dataset")


def test_lost_shard_is_packed_again_from_raw_byte_for_byte(
    cfg_path: Path, built: Path, clean_run: Path
) -> None:
    dataset = built / "dataset"
    victim = sorted(dataset.glob("train/S1GRD/*.zarr.zip"))[-1]
    victim.unlink()
    spent = requests_spent(built)
    packed = cli("pack", "-c", str(cfg_path), "-w", str(built))
    assert packed.returncode == 0, packed.stderr
    assert "aligning 4 location(s) again from their raw files" in packed.stderr  # shard_size 4
    assert shard_digests(dataset) == shard_digests(clean_run / "dataset")
    assert requests_spent(built) == spent
    assert not {p.stem for p in built.glob("aligned/*/*.cube")} & packed_ids(built)


def test_keep_cubes_keeps_them(cfg_path: Path, tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "keep.toml", cfg_path.read_text() + "keep_cubes = true\n")
    work = tmp_path / "w"
    assert cli("run", "-c", str(cfg), "-w", str(work), "-q").returncode == 0
    cubes = {p.stem for p in work.glob("aligned/*/*.cube")}
    assert cubes >= packed_ids(work) and len(packed_ids(work)) == 8
    assert not query(work, "SELECT * FROM dropped")


def test_clean_raw_frees_the_raw_files_and_pack_fetches_them_again(
    cfg_path: Path, built: Path, clean_run: Path
) -> None:
    assert cli("clean", "-w", str(built)).returncode == 2, "says what to remove"
    raw_before = sum(p.stat().st_size for p in built.glob("raw/*/*/*.tif"))
    rejected = {str(r[0]) for r in query(built, "SELECT sample_id FROM patches WHERE status!='ok'")}
    cleaned = cli("clean", "-w", str(built), "--raw")
    assert cleaned.returncode == 0, cleaned.stderr
    aligned = query(built, "SELECT COUNT(*) FROM patches WHERE status='ok'")[0][0]
    assert f"of {aligned} aligned location(s)" in cleaned.stdout
    left = {p.parent.name for p in built.glob("raw/*/*/*.tif")}
    assert left == rejected, "only the raw files of aligned locations are removed"
    assert sum(p.stat().st_size for p in built.glob("raw/*/*/*.tif")) < raw_before
    status = cli("status", "-w", str(built)).stdout
    assert f"raw files removed by clean: {aligned} location(s)" in status
    # Nothing is needed again until a shard is lost: then its locations are fetched again.
    spent = requests_spent(built)
    assert cli("run", "-c", str(cfg_path), "-w", str(built), "-q").returncode == 0
    assert requests_spent(built) == spent
    sorted(built.glob("dataset/val/S2L1C/*.zarr.zip"))[0].unlink()
    packed = cli("pack", "-c", str(cfg_path), "-w", str(built), "-q")
    assert packed.returncode == 0, packed.stderr
    assert requests_spent(built) > spent
    assert shard_digests(built / "dataset") == shard_digests(clean_run / "dataset")
    val = {str(r[0]) for r in query(built, "SELECT samples FROM pack_shards WHERE split='val'")}
    refetched = {p.parent.name for p in built.glob("raw/*/*/*.tif")} - rejected
    assert refetched == {s for v in val for s in json.loads(v)}
