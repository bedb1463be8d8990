"""How the published v1.1 loaders read a dataset, reduced to what they rely on.

- The Zarr loader (the dataset README's ``SSL4EOS12Dataset``): the split list names the files;
  each file is opened per modality folder with ``xr.open_zarr`` and ``bands`` read whole, the
  same file number holding the same samples in every folder.
- The 2026 WebDataset loader: per split, one tar stream per modality, read in lockstep; the
  members of one step must share their key (else it stops: "divergence"). Each member is a
  consolidated Zarr opened from its bytes through an fsspec zip filesystem; ``bands`` read
  whole, ``time`` kept only where it is a real timestamp (the DEM's is 0), the S-2 cloud mask
  and centre taken from the first modality that has them. Its default modality list is the
  seven of v1.1.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import webdataset as wds
import zarr

from ssl4eo_build.pack.core import open_shard

DEFAULT_MODALITIES = ("S2L1C", "S2L2A", "S2RGB", "S1GRD", "NDVI", "DEM", "LULC")


def zarr_loader(
    root: Path, split: str, modalities: Sequence[str] = DEFAULT_MODALITIES
) -> Iterator[dict[str, Any]]:
    """One item per listed file: {modality: bands (sample, time, band, y, x), "sample": ids}."""
    names = (root / "splits" / f"ssl4eos12_{split}.txt").read_text().split()
    for name in names:
        item: dict[str, Any] = {}
        for modality in modalities:
            ds = open_shard(root / split / modality / name)
            samples = [str(s) for s in ds["sample"].values]
            if item.setdefault("sample", samples) != samples:
                raise ValueError(f"{name}: {modality} holds other samples")
            item[modality] = ds["bands"].values
        yield item


def _decoded(member: bytes) -> zarr.Group:
    fs = fsspec.filesystem("zip", fo=io.BytesIO(member), block_size=None, skip_instance_cache=True)
    # fsspec's zip listing is built on first use, directories first and files after: zarr's
    # concurrent first reads (its key lookups run in threads) can see it half built and take
    # ".zmetadata" for missing. Listing once here, before zarr reads, closes that window.
    fs.find("")
    return zarr.open_consolidated(fs.get_mapper(""), mode="r")


def webdataset_loader(
    root: Path, split: str, modalities: Sequence[str] = DEFAULT_MODALITIES
) -> Iterator[dict[str, Any]]:
    """One item per sample: {modality: bands (time, band, y, x), "time_<modality>": ns,
    "cloud_mask", "center_lon", "center_lat", "__key__"}."""
    shards = sorted(p.name for p in (root / split / modalities[0]).glob("*.tar"))
    for shard in shards:
        streams = [
            wds.WebDataset(str(root / split / m / shard), shardshuffle=False) for m in modalities
        ]
        for members in zip(*streams, strict=True):
            key = members[0]["__key__"]
            sample: dict[str, Any] = {"__key__": key}
            for modality, member in zip(modalities, members, strict=True):
                if member["__key__"] != key:
                    raise ValueError(f"divergence: {member['__key__']} of {modality}, {key}")
                group = _decoded(member["zarr.zip"])
                sample[modality] = group["bands"][...]
                time = np.asarray(group["time"][...])
                if (time > 1e6).all():  # the DEM has no valid timestamp (value 0)
                    sample[f"time_{modality}"] = time
                if "cloud_mask" in group and "cloud_mask" not in sample:
                    sample["cloud_mask"] = group["cloud_mask"][...]
                if "center_lon" not in sample:
                    sample["center_lon"] = float(group["center_lon"][...])
                    sample["center_lat"] = float(group["center_lat"][...])
            yield sample
