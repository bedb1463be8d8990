"""Whole samples of a packed dataset's Zarr layout read with plain xarray, as a user's training
job reads them: nothing of this project is imported, so any environment can run it, the
benchmark's own (zarr 3) and the one with the versions the v1.1 docs pin (zarr 2.18,
``.venv-zarr2``, which ``make test`` builds).

    python bench/plain_reads.py DATASET [--readers N] [--passes P] [--dask]

Every pass reads every shard of every split, every modality: ``bands`` and ``cloud_mask``
through ``.values`` (``chunks=None``, no dask, unless ``--dask``). With ``--readers`` N > 1,
N processes each read every shard, starting each pass together (a training loader's N
workers). Prints the rate of each pass (all readers' samples over the pass's wall time, from
the first reader's start to the last one's end), then, on its last line, one JSON object: the
versions, those rates (``samples_per_s``), and one reader's samples and bytes decoded per pass.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import xarray as xr
import zarr


def shards(dataset: Path) -> list[list[Path]]:
    """Each shard's files, one per modality, split by split (``splits/ssl4eos12_{split}.txt``
    names them): a split's modality folders hold the same file names."""
    groups = []
    for listing in sorted((dataset / "splits").glob("ssl4eos12_*.txt")):
        split = dataset / listing.stem.removeprefix("ssl4eos12_")
        folders = sorted(p for p in split.iterdir() if p.is_dir())
        for file in sorted(folders[0].glob("*.zarr.zip")):
            groups.append([folder / file.name for folder in folders])
    if not groups:
        raise SystemExit(f"{dataset}: no Zarr shards to read (splits/ssl4eos12_*.txt)")
    return groups


def open_plain(path: Path, dask: bool) -> xr.Dataset:
    """The shard as a user opens it: the path under zarr 2, a ``ZipStore`` under zarr 3 (what
    ``ssl4eo_build.open_shard`` does, written out: this script runs where the project is not
    installed)."""
    store: Any = str(path)
    if not zarr.__version__.startswith("2."):
        store = zarr.storage.ZipStore(path, mode="r")
    return xr.open_zarr(store, **({} if dask else {"chunks": None}))


def read_passes(dataset: Path, passes: int, dask: bool, barrier: Any = None) -> list[list[float]]:
    """Per pass: start, end, samples, bytes decoded."""
    groups = shards(dataset)
    out = []
    for _ in range(passes):
        if barrier is not None:
            barrier.wait()
        samples, decoded = 0, 0
        start = time.time()
        for group in groups:
            for path in group:
                ds = open_plain(path, dask)
                decoded += ds["bands"].values.nbytes
                if "cloud_mask" in ds:
                    decoded += ds["cloud_mask"].values.nbytes
            samples += ds.sizes["sample"]
        out.append([start, time.time(), samples, decoded])
    return out


def _reader(dataset: Path, passes: int, dask: bool, barrier: Any, results: Any) -> None:
    results.put(read_passes(dataset, passes, dask, barrier))


def read_side_by_side(dataset: Path, passes: int, dask: bool, readers: int) -> list[Any]:
    """Every reader's passes: this process alone, or ``readers`` processes side by side."""
    if readers == 1:
        return [read_passes(dataset, passes, dask)]
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(readers), ctx.Queue()
    args = (dataset, passes, dask, barrier, queue)
    procs = [ctx.Process(target=_reader, args=args) for _ in range(readers)]
    for proc in procs:
        proc.start()
    try:  # a reader that dies must not leave the others, or this process, waiting
        return [queue.get(timeout=900) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)  # a reader that has sent its passes ends by itself
            if proc.is_alive():
                proc.terminate()
                proc.join()


def pass_rates(runs: list[Any]) -> list[float]:
    """Samples per second of each pass: every reader's samples over the pass's wall time."""
    rates = []
    for k in range(len(runs[0])):
        start, end = min(r[k][0] for r in runs), max(r[k][1] for r in runs)
        rates.append(sum(r[k][2] for r in runs) / (end - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--readers", type=int, default=1)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--dask", action="store_true")
    a = parser.parse_args()
    runs = read_side_by_side(a.dataset, a.passes, a.dask, a.readers)
    rates = pass_rates(runs)
    print(f"zarr {zarr.__version__}, {a.readers} reader(s): samples/s per pass", end=" ")
    print(", ".join(f"{r:.1f}" for r in rates))
    samples, decoded = runs[0][-1][2:]
    figures = {"zarr": zarr.__version__, "xarray": xr.__version__, "samples_per_s": rates}
    print(json.dumps({**figures, "samples": samples, "decoded_bytes": decoded}))


if __name__ == "__main__":
    main()
