"""A Blosc chunk compressed block by block: the same bytes as Blosc compressing it whole."""

from __future__ import annotations

from collections.abc import Iterator

import numcodecs
import numpy as np
import pytest

from ssl4eo_build.pack.blosc_blocks import BloscChunk

SHAPES = [
    ((64, 13, 66, 66), np.int16),  # many blocks and a short last one
    ((45, 12, 50, 50), np.int16),
    ((64, 66, 66), np.uint8),  # a cloud mask
    ((7, 2, 66, 66), np.float16),
    ((3, 1, 5, 5), np.int16),  # one block, under Blosc's minimum
    ((8, 1 << 16), np.int16),  # a whole number of blocks
]
CODECS = [
    ("zstd", 1, numcodecs.Blosc.SHUFFLE, 1 << 16),
    ("zstd", 5, numcodecs.Blosc.SHUFFLE, 0),
    ("lz4", 5, numcodecs.Blosc.SHUFFLE, 0),  # splits blocks into byte streams
    ("lz4", 5, numcodecs.Blosc.SHUFFLE, 1 << 17),
    ("lz4hc", 2, numcodecs.Blosc.BITSHUFFLE, 0),
    ("blosclz", 5, numcodecs.Blosc.NOSHUFFLE, 0),
    ("zlib", 1, numcodecs.Blosc.SHUFFLE, 1 << 15),
]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Blosc on threads orders the blocks as they finish; one thread, as pack runs it."""
    before = numcodecs.blosc.use_threads
    numcodecs.blosc.use_threads = False
    yield
    numcodecs.blosc.use_threads = before


def streamed(codec: numcodecs.Blosc, values: np.ndarray) -> bytes:
    chunk = BloscChunk(codec, values.nbytes, values.dtype)
    for sample in values:
        chunk.write(sample)
    return b"".join(chunk.pieces())


def values_of(shape: tuple[int, ...], dtype: type, rng: np.random.Generator) -> np.ndarray:
    """Smooth fields with noise: compressible, not trivially."""
    if dtype is np.uint8:
        return rng.integers(0, 3, shape).astype(np.uint8)
    base = np.cumsum(rng.normal(0, 3, shape), axis=-1) + 2000
    return base.astype(dtype)


@pytest.mark.parametrize("config", CODECS, ids=lambda c: f"{c[0]}-{c[1]}-s{c[2]}-b{c[3]}")
@pytest.mark.parametrize("shape,dtype", SHAPES, ids=lambda s: str(s))
def test_same_bytes_as_blosc_whole(config: tuple, shape: tuple, dtype: type) -> None:
    rng = np.random.default_rng(7)
    codec = numcodecs.Blosc(*config)
    values = values_of(shape, dtype, rng)
    encoded = streamed(codec, values)
    assert encoded == codec.encode(values)
    assert np.array_equal(np.frombuffer(codec.decode(encoded), dtype).reshape(shape), values)


@pytest.mark.parametrize("cname", ["zstd", "lz4"])
def test_blocks_that_do_not_compress(cname: str) -> None:
    """Noise in some blocks (Blosc stores them as they are) among compressible ones; and a
    chunk of noise only, which comes out as valid blocks instead of Blosc's plain copy."""
    rng = np.random.default_rng(3)
    codec = numcodecs.Blosc(cname, 1, numcodecs.Blosc.SHUFFLE, 1 << 16)
    mixed = values_of((12, 40_000), np.int16, rng)
    mixed[3:6] = rng.integers(-(1 << 15), 1 << 15, (3, 40_000))
    assert streamed(codec, mixed) == codec.encode(mixed)
    noise = rng.integers(0, 256, (10, 100_003), dtype=np.uint8)
    encoded = streamed(codec, noise)
    assert np.array_equal(np.frombuffer(codec.decode(encoded), np.uint8).reshape(10, -1), noise)


def test_values_must_fill_the_chunk_exactly() -> None:
    codec = numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE, 1 << 16)
    chunk = BloscChunk(codec, 4 * 50_000, np.dtype(np.int16))
    chunk.write(np.zeros(50_000, np.int16))
    with pytest.raises(ValueError, match="written of a chunk"):
        chunk.pieces()
    with pytest.raises(ValueError, match="for a chunk of"):
        chunk.write(np.zeros(100_001, np.int16))


def test_blosc_on_threads() -> None:
    """With Blosc's threads on (numcodecs uses them from the main thread), the blocks of a
    chunk are stored as they finish; the chunk still decodes to its values."""
    numcodecs.blosc.use_threads = True
    before = numcodecs.blosc.get_nthreads()
    numcodecs.blosc.set_nthreads(2)
    try:
        rng = np.random.default_rng(5)
        for config in CODECS:
            codec = numcodecs.Blosc(*config)
            values = values_of((45, 12, 50, 50), np.int16, rng)
            encoded = streamed(codec, values)
            decoded = np.frombuffer(codec.decode(encoded), np.int16).reshape(values.shape)
            assert np.array_equal(decoded, values), config
    finally:
        numcodecs.blosc.set_nthreads(before)
