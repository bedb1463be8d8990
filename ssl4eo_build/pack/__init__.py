"""Stage `pack`: the published v1.1 layouts (SPEC section 6), and `validate`.

- :mod:`.core`: pure-ish writers: the spatial split, shard plans, the Zarr-in-zip shards and the
  WebDataset tars of every registry modality, split metadata, band statistics.
- :mod:`.stage`: the wiring: shards per layout on the executor, resumable and self-repairing,
  split lists, metadata parquet, ``stats.json`` and ``checksums.sha256``.
- :mod:`.validate`: a packed dataset held to the layout, every byte read.
"""
