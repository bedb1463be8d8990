"""A Blosc chunk compressed block by block as its values arrive, so that a Zarr shard's chunk
(every sample of one time index, over 100 MB for S-2) never has to be held whole.

Blosc (format 1, as numcodecs writes it) compresses a chunk in blocks of ``blocksize``
bytes, each independently: a 16-byte header (version, versionlz, flags, typesize, nbytes,
blocksize, cbytes), the offset of every block (int32), then the blocks. A full block
compressed alone, as a chunk of one block of the same size, is the same bytes as inside the
whole chunk. The last, shorter block differs: Blosc does not split a short last block into
byte streams, and a block that does not compress makes a one-block chunk a plain copy. Those
are compressed as the last block of a chunk whose first blocks are zeros (as few as give
Blosc's own layout), which is exactly how they sit in the whole chunk. The result is
byte-identical to ``codec.encode`` of the whole chunk on one thread (tested); only a chunk
that does not compress at all, which Blosc would store as a plain copy, comes out as valid
blocks instead.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any, NamedTuple

import numcodecs
import numpy as np
from numpy.typing import NDArray

_HEADER = struct.Struct("<4B3I")  # version, versionlz, flags, typesize, nbytes, blocksize, cbytes
_MEMCPYED = 0x02  # flags: the chunk is a plain copy of its input
_PROBE_FLOOR = 16 << 20  # bytes: Blosc's choice of block size stops growing with the input

Config = tuple[str, int, int, int]  # cname, clevel, shuffle, blocksize (0: Blosc's choice)


def _codec(config: Config) -> numcodecs.Blosc:
    return numcodecs.Blosc(*config)


@lru_cache(maxsize=256)
def _layout(config: Config, nbytes: int, itemsize: int) -> tuple[int, ...]:
    """The header Blosc writes for a chunk of ``nbytes`` (its version, flags, typesize and
    block size do not depend on the values): found by compressing zeros, no more of them
    than it takes for the block size to be Blosc's choice for ``nbytes``."""
    probe = min(nbytes, max(2 * config[3], _PROBE_FLOOR))
    header = _HEADER.unpack_from(_codec(config).encode(np.zeros(probe // itemsize, f"u{itemsize}")))
    if probe < nbytes and header[5] >= probe:  # the probe bounded the block: ask in full
        zeros = np.zeros(nbytes // itemsize, f"u{itemsize}")
        header = _HEADER.unpack_from(_codec(config).encode(zeros))
    return header


class _Plan(NamedTuple):
    """How a chunk is compressed a block at a time."""

    head: tuple[int, ...]  # the header's first four bytes: versions, flags, typesize
    blocksize: int
    zeros_before_full: int  # blocks of zeros before a full block that does not compress alone
    zeros_before_last: int  # and before the last block


@lru_cache(maxsize=256)
def _plan(config: Config, nbytes: int, itemsize: int) -> _Plan | None:
    """The plan for a chunk of ``nbytes``: how many blocks of zeros go before a block of each
    size (a full block, the last one) for Blosc to lay it out as in the whole chunk; None when
    the chunk is one block or no such number is found (the chunk is then compressed whole)."""
    header = _layout(config, nbytes, itemsize)
    flags, blocksize = header[2], header[5]
    if nbytes <= blocksize or flags & _MEMCPYED:
        return None
    before = []
    for size in (blocksize, nbytes % blocksize or blocksize):
        k = next(
            (
                k
                for k in (1, 2, 4, 8, 16, 32, 64)
                if _layout(config, k * blocksize + size, itemsize)[2::3] == (flags, blocksize)
            ),
            None,
        )
        if k is None:  # pragma: no cover - no such Blosc seen
            return None
        before.append(k)
    return _Plan(header[:4], blocksize, *before)


class BloscChunk:
    """One chunk of ``nbytes`` bytes of ``dtype`` values for ``codec``: :meth:`write` its
    values front to back, then :meth:`pieces` gives the compressed chunk. Holds one block of
    input (a chunk of one block: the chunk) and the compressed blocks."""

    def __init__(self, codec: numcodecs.Blosc, nbytes: int, dtype: np.dtype[Any]) -> None:
        self.dtype = np.dtype(dtype)
        cname = codec.cname.decode() if isinstance(codec.cname, bytes) else str(codec.cname)
        self.config: Config = (cname, int(codec.clevel), int(codec.shuffle), int(codec.blocksize))
        self.nbytes = nbytes
        self.plan = _plan(self.config, nbytes, self.dtype.itemsize)
        self.blocksize = nbytes if self.plan is None else self.plan.blocksize
        self._codec = _codec(self.config)  # as for the whole chunk
        self._alone = _codec((*self.config[:3], self.blocksize))  # a chunk of one block
        self._zeros = 0
        if self.plan is not None:
            self._zeros = max(self.plan.zeros_before_full, self.plan.zeros_before_last)
        # the block being filled, after the blocks of zeros that may go before it
        self._zeros_and_block = np.zeros((self._zeros + 1) * self.blocksize, np.uint8)
        self._block = self._zeros_and_block[self._zeros * self.blocksize :]
        self._filled = 0
        self._written = 0
        self._blocks: list[bytes] = []

    def write(self, values: NDArray[Any]) -> None:
        """The next values of the chunk (any shape, C order, this chunk's dtype)."""
        data = np.ascontiguousarray(values, dtype=self.dtype).reshape(-1).view(np.uint8)
        if self._written + data.size > self.nbytes:
            raise ValueError(f"{self._written + data.size} bytes for a chunk of {self.nbytes}")
        self._written += data.size
        at = 0
        while at < data.size:
            take = min(self.blocksize - self._filled, data.size - at)
            self._block[self._filled : self._filled + take] = data[at : at + take]
            self._filled += take
            at += take
            if self._filled == self.blocksize and self.plan is not None:
                self._compress_block()

    def _compress_block(self) -> None:
        assert self.plan is not None
        size, blocksize = self._filled, self.blocksize
        self._filled = 0
        if size == blocksize:
            alone = self._alone.encode(self._block.view(self.dtype))
            header = _HEADER.unpack_from(alone)
            if header[2] == self.plan.head[2] and header[5] == blocksize:
                self._blocks.append(bytes(memoryview(alone)[_HEADER.size + 4 :]))
                return
        # the last block, or one that does not compress alone: after blocks of zeros
        k = self.plan.zeros_before_full if size == blocksize else self.plan.zeros_before_last
        start = (self._zeros - k) * blocksize
        whole = self._zeros_and_block[start : start + k * blocksize + size]
        encoded = self._codec.encode(whole.view(self.dtype))
        header = _HEADER.unpack_from(encoded)
        if header[2::3] != (self.plan.head[2], blocksize):  # pragma: no cover - see _plan
            raise RuntimeError(f"Blosc laid out {header}, expected {self.plan}")
        # on threads Blosc stores blocks as they finish: block k ends where the next one starts
        starts = struct.unpack_from(f"<{k + 1}I", encoded, _HEADER.size)
        end = min((s for s in starts if s > starts[k]), default=header[6])
        self._blocks.append(bytes(memoryview(encoded)[starts[k] : end]))

    def pieces(self) -> list[bytes]:
        """The compressed chunk, as pieces to write one after another; every value must have
        been written."""
        if self._written != self.nbytes:
            raise ValueError(f"{self._written} bytes written of a chunk of {self.nbytes}")
        if self.plan is None:
            return [bytes(self._codec.encode(self._block.view(self.dtype)))]
        if self._filled:
            self._compress_block()
        sizes = [len(b) for b in self._blocks]
        first = _HEADER.size + 4 * len(sizes)
        starts = first + np.cumsum([0, *sizes[:-1]], dtype=np.int64)
        head = _HEADER.pack(*self.plan.head, self.nbytes, self.blocksize, first + sum(sizes))
        return [head + starts.astype("<u4").tobytes(), *self._blocks]
