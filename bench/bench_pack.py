"""`pack`: the Blosc codec chosen by write speed, read speed and ratio together; `pack` against
`align` on the same locations, with the pack's peak memory; whole samples read back with plain
xarray.

Uses the align benchmark's work dir (bench-work/align-same-CRS-zstd: run
`python -m bench.bench_align` first, or `make bench`, which runs it before this).

1. Codecs: every modality's arrays of 16 aligned cubes, encoded per time index as a shard
   chunk is, one Blosc thread; write and read MB/s of raw data and the ratio, beside a plain
   copy of the same bytes (the anchor).
2. Pack vs align: `align` (2 processes, from the raw files) and `pack --format both` (2
   workers) of the same locations, each timed in one run; the pack in its own process: the
   peak RSS of it and of its worker processes is the pack's memory.
3. Reads: every sample of the Zarr layout, every modality, through ``xr.open_zarr`` and
   ``.values`` (dask's threads over the chunks, then without dask), the median of five
   passes, beside a copy of the decoded bytes; in one process, then in two reading side by
   side (a training loader's two workers on two cores); then again without dask with
   glibc's malloc asking for transparent huge pages (``GLIBC_TUNABLES``, set for the reader
   processes only), and under zarr 2.18 (``.venv-zarr2``); then through the project's
   ``SampleDataset``. The plain reads run ``bench/plain_reads.py``, which imports nothing of
   this project.

    .venv/bin/python -m bench.bench_pack [--json]
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

from bench.bench_align import _copy_db
from ssl4eo_build import pipeline
from ssl4eo_build.align.cube import CubeFile
from ssl4eo_build.config import load_config, override
from ssl4eo_build.modalities import names

WORK = Path("bench-work/align-same-CRS-zstd")
MIB = 1 << 20
CODECS = (  # cname, Blosc level, shuffle, block size (0: Blosc's own)
    ("zstd", 5, "byte", 0), ("zstd", 1, "byte", 0), ("zstd", 1, "byte", MIB),
    ("zstd", 1, "byte", 4 * MIB), ("zstd", 2, "byte", MIB), ("zstd", 1, "bit", MIB),
    ("lz4", 5, "byte", 0), ("lz4", 9, "byte", 4 * MIB), ("lz4hc", 1, "byte", MIB),
    ("lz4hc", 2, "byte", 0), ("lz4hc", 3, "byte", MIB),
)  # fmt: skip
SHUFFLE = {"byte": numcodecs.Blosc.SHUFFLE, "bit": numcodecs.Blosc.BITSHUFFLE}


def codec_table(n: int = 16) -> list[dict[str, Any]]:
    numcodecs.blosc.set_nthreads(1)
    cubes = [CubeFile(p) for p in sorted((WORK / "aligned").rglob("*.cube"))[:n]]
    arrays = {m: np.stack([c.array(f"{m}/bands") for c in cubes]) for m in names()}
    arrays["cloud_mask"] = np.stack([c.array("cloud_mask") for c in cubes])
    owners, chunks = zip(
        *(
            (m, np.ascontiguousarray(a[:, t : t + 1]))
            for m, a in arrays.items()
            for t in range(a.shape[1])
        ),
        strict=True,
    )
    default = {**_layouts_codecs(), "cloud_mask": numcodecs.Blosc("zstd", 1, blocksize=4 * MIB)}
    raw = sum(c.nbytes for c in chunks)
    t0 = time.perf_counter()
    for c in chunks:
        np.copy(c)
    copy_mb_s = raw / (time.perf_counter() - t0) / 1e6
    rows = []
    warm = numcodecs.Blosc(cname="lz4", clevel=1)  # the first pass pays the page faults
    for c in chunks:
        warm.decode(warm.encode(c))
    mixes = [
        (
            f"{cname}-{level}-{shuffle}shuffle-{blocksize // MIB or 'auto'}"
            + ("MiB" if blocksize else ""),
            [numcodecs.Blosc(cname, level, SHUFFLE[shuffle], blocksize)] * len(chunks),
        )
        for cname, level, shuffle, blocksize in CODECS
    ]
    mixes.append(("default (zstd-1 4MiB, lz4-5 for pack.blosc_lz4)", [default[m] for m in owners]))
    for name, codecs in mixes:
        t0 = time.perf_counter()
        encoded = [codec.encode(c) for codec, c in zip(codecs, chunks, strict=True)]
        write = time.perf_counter() - t0
        t0 = time.perf_counter()
        for codec, e in zip(codecs, encoded, strict=True):
            codec.decode(e)
        read = time.perf_counter() - t0
        rows.append({
            "codec": name,
            "ratio": raw / sum(len(e) for e in encoded),
            "write_mb_s": raw / write / 1e6,
            "read_mb_s": raw / read / 1e6,
            "copy_mb_s": copy_mb_s,
        })  # fmt: skip
        r = rows[-1]
        print(
            f"codec {r['codec']}: ratio {r['ratio']:.2f}, write {r['write_mb_s']:.0f} MB/s, "
            f"read {r['read_mb_s']:.0f} MB/s (copy {copy_mb_s:.0f} MB/s; {n} cubes, one thread)"
        )
    return rows


PACK = """
import json, resource, sys, time
from pathlib import Path
from bench.bench_align import _copy_db
from ssl4eo_build import pipeline
from ssl4eo_build.config import load_config, override
cfg = load_config(Path(sys.argv[1]))
cfg = override(override(override(cfg, "pack.format", "both"), "pack.keep_partial", True),
               "pack.shard_size", 64)
t0 = time.perf_counter()
pipeline.run_pack(cfg, Path(sys.argv[2]), out=Path(sys.argv[3]), progress=False, force=True)
seconds = time.perf_counter() - t0
# This process's own peak from VmHWM: its ru_maxrss keeps the peak of the process it was
# forked from (Linux carries it across exec), the benchmark's own ~0.9 GB after the codecs.
own = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
peak = max(own, workers) * 1024  # the coordinator or a pool process
print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak}))
"""


def _layouts_codecs() -> dict[str, numcodecs.Blosc]:
    """Each modality's codec as `pack` writes it with the default settings."""
    from ssl4eo_build.pack.stage import compressors

    return {
        m: numcodecs.Blosc(cname, level, numcodecs.Blosc.SHUFFLE, blocksize)
        for m, (cname, level, blocksize) in compressors(
            load_config(WORK / "bench.toml").pack
        ).items()
    }


def pack_vs_align() -> dict[str, float]:
    config = WORK / "bench.toml"
    cfg = override(load_config(config), "align.workers", 2)
    shutil.rmtree(WORK / "aligned", ignore_errors=True)
    _copy_db(WORK / "manifest-before-align.sqlite", WORK / "manifest.sqlite")
    t0 = time.perf_counter()
    summary = pipeline.run_align(cfg, WORK, progress=False)
    align_s = time.perf_counter() - t0
    out = WORK / "dataset"
    shutil.rmtree(out, ignore_errors=True)
    result = subprocess.run(
        [sys.executable, "-c", PACK, str(config), str(WORK), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    packed = json.loads(result.stdout.strip().splitlines()[-1])
    n = summary.ok
    print(
        f"align {n} locations: {align_s:.1f} s; pack --format both of them: "
        f"{packed['seconds']:.1f} s (ratio pack/align {packed['seconds'] / align_s:.2f}); "
        f"pack's largest process {packed['peak_rss_bytes'] / 2**20:.0f} MiB"
    )
    return {
        "locations": n,
        "align_s": align_s,
        "pack_both_s": packed["seconds"],
        "pack_over_align": packed["seconds"] / align_s,
        "pack_peak_rss_mib": packed["peak_rss_bytes"] / 2**20,
    }


# With this setting glibc (2.35 and later) asks the kernel to back malloc's large blocks with
# transparent huge pages, where the kernel's THP mode is "madvise": zarr and numcodecs take
# fresh 40-120 MB blocks for each chunk they read and decode, and faulting those in 4 KiB
# pages costs more than decoding them on a VM. Older glibc ignores it.
HUGE_PAGES = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
PLAIN_READS = Path(__file__).with_name("plain_reads.py")
ZARR2_PYTHON = Path(".venv-zarr2/bin/python")  # the v1.1 docs' pins: make test, make bench


def whole_sample_reads(
    dask: bool = True,
    passes: int = 5,
    readers: int = 1,
    huge_pages: bool = False,
    python: Path | None = None,
) -> dict[str, float]:
    """Every modality of every sample of the Zarr layout just packed, through plain xarray
    (``bench/plain_reads.py`` in a process of its own), ``passes`` times over: a training job
    reads every sample many times, so the figure is the median pass (the first, which pays the
    process's first allocations, is reported beside it). ``readers`` > 1: that many processes
    read side by side, as a training loader's workers do (each reads every shard; the script
    reports all their samples over the pass's wall time). ``huge_pages``: the readers start
    with glibc's malloc asking for transparent huge pages (:data:`HUGE_PAGES`), an environment
    setting, not a change to the reading code. ``python``: another environment's interpreter
    (:data:`ZARR2_PYTHON`)."""
    command = [str(python or sys.executable), str(PLAIN_READS), str(WORK / "dataset")]
    command += ["--readers", str(readers), "--passes", str(passes), *(["--dask"] if dask else [])]
    env = {**os.environ, **(HUGE_PAGES if huge_pages else {})}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rates, samples, decoded = result["samples_per_s"], result["samples"], result["decoded_bytes"]
    buffer = np.empty(decoded // 2, dtype=np.int16)
    t0 = time.perf_counter()
    np.copy(buffer)
    copy_s = time.perf_counter() - t0
    rate = statistics.median(rates)
    mb_s = rate * decoded / samples / 1e6
    how = f"xr.open_zarr{'' if dask else '(chunks=None)'}, zarr {result['zarr']}"
    how += "".join(f", {k}={v}" for k, v in HUGE_PAGES.items()) if huge_pages else ""
    who = "one process" if readers == 1 else f"{readers} reader processes"
    print(
        f"read whole samples (all {len(names())} modalities, {how}, {who}): {rate:.1f} "
        f"samples/s, median of {passes} passes ({min(rates):.1f}-{max(rates):.1f}; first "
        f"{rates[0]:.1f}), {mb_s:.0f} MB/s decoded (a copy of the same bytes into fresh "
        f"memory: {decoded / copy_s / 1e6:.0f} MB/s)"
    )
    key = ("" if dask else "_no_dask") + ("" if readers == 1 else f"_{readers}_readers")
    key += ("_huge_pages" if huge_pages else "") + ("_zarr2" if python else "")
    return {
        f"whole_samples_per_s{key}": rate,
        f"whole_samples_per_s_first_pass{key}": rates[0],
        f"decoded_mb_s{key}": mb_s,
    }


def sample_dataset_reads(passes: int = 5) -> dict[str, float]:
    """The same samples through the project's reader (``ssl4eo_build.SampleDataset``, every
    modality, in shard order, every split), ``passes`` times over the same datasets, as a
    training job's epochs (and a persistent DataLoader worker) read them: the median pass,
    and the first, which builds the index and the reader's buffers."""
    from ssl4eo_build.reader import SampleDataset

    numcodecs.blosc.set_nthreads(2)
    t0 = time.perf_counter()
    datasets = [
        SampleDataset(WORK / "dataset", modalities=names(), split=split, layout="zarr")
        for split in ("train", "val")
    ]
    rates = []
    for _ in range(passes):
        samples = 0
        for ds in datasets:
            for i in ds.shard_order():
                ds[i]
                samples += 1
        rates.append(samples / (time.perf_counter() - t0))
        t0 = time.perf_counter()
    rate = statistics.median(rates[1:])
    print(
        f"read whole samples through SampleDataset (all {len(names())} modalities): "
        f"{rate:.1f}/s, median of passes 2-{passes} ({min(rates[1:]):.1f}-{max(rates[1:]):.1f}; "
        f"the first, index included, {rates[0]:.1f})"
    )
    return {"sample_dataset_per_s": rate, "sample_dataset_first_pass_per_s": rates[0]}


def main(as_json: bool = False) -> dict[str, Any]:
    if not (WORK / "aligned").is_dir():
        raise SystemExit(f"need the align benchmark's work dir {WORK}: python -m bench.bench_align")
    figures: dict[str, Any] = {"codecs": codec_table()}
    figures.update(pack_vs_align())
    figures.update(whole_sample_reads())
    figures.update(whole_sample_reads(dask=False))
    figures.update(whole_sample_reads(readers=2))
    figures.update(whole_sample_reads(dask=False, readers=2))
    figures["glibc"] = " ".join(platform.libc_ver())
    figures.update(whole_sample_reads(dask=False, huge_pages=True))
    figures.update(whole_sample_reads(dask=False, readers=2, huge_pages=True))
    if ZARR2_PYTHON.exists():  # as the v1.1 docs' users read: zarr 2.18, xarray 2024.6
        figures.update(whole_sample_reads(dask=False, python=ZARR2_PYTHON))
        figures.update(whole_sample_reads(dask=False, readers=2, python=ZARR2_PYTHON))
    else:
        print(f"no {ZARR2_PYTHON} (make bench builds it): the zarr 2.18 reads are left out")
    figures.update(sample_dataset_reads())
    if as_json:
        print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(as_json="--json" in sys.argv[1:])
