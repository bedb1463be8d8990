"""Zarr format 2 in a zip, written directly: the store's entries in sorted order, each once,
with fixed timestamps, so the same arrays give byte-identical files.

What xarray's ``to_zarr`` writes for a dataset, without its per-call cost (about 60 ms per
member of the WebDataset layout, most of a member's time): a group (``.zgroup``, ``.zattrs``),
per variable ``.zarray`` (shape, chunks, dtype, fill value, compressor) and ``.zattrs`` (its
attributes and ``_ARRAY_DIMENSIONS``, xarray's dimension names), the chunks (``0.1.0.0.0``),
and the consolidated ``.zmetadata`` that ``xr.open_zarr`` reads. A variable's chunks are made
one at a time (``Variable.chunk``), so a writer holds one compressed chunk beside its input,
unless the variable's data comes compressed already (a shard's stack, ``core.TimeChunks``).
Times are stored as whole seconds since 1970 with CF ``units``, as xarray decodes them.
"""

from __future__ import annotations

import io
import itertools
import json
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numcodecs
import numpy as np
from numcodecs.abc import Codec
from numpy.typing import NDArray

from ..files import HashingWriter, atomic_target, commit_file

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Small variables (coordinates, ids) get zarr's own default compressor.
DEFAULT_CODEC = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
TIME_UNITS = {"units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian"}


Pieces = list[bytes]  # an entry's bytes, in pieces written one after another


@dataclass(frozen=True)
class Variable:
    """One array of the store: its dimensions, chunking, codec and attributes."""

    dims: tuple[str, ...]
    data: Any  # an array, or anything with shape, dtype and ``encoded_chunk`` (TimeChunks)
    chunks: tuple[int, ...] | None = None  # None: one chunk
    codec: Codec = field(default_factory=lambda: DEFAULT_CODEC)
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def times(cls, dims: tuple[str, ...], times: NDArray[Any]) -> Variable:
        """datetime64 values as whole seconds since 1970 (CF units), as xarray stores them."""
        seconds = np.asarray(times).astype("datetime64[s]").astype(np.int64)
        return cls(dims, seconds, attrs=TIME_UNITS)

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape) if self.chunks is None else self.chunks

    def chunk_keys(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        shape, chunk = self.data.shape, self.chunk_shape
        if not shape:
            yield "0", ()
            return
        counts = [-(-n // c) for n, c in zip(shape, chunk, strict=True)]
        for index in itertools.product(*(range(n) for n in counts)):
            yield ".".join(map(str, index)), index

    def chunk(self, index: tuple[int, ...]) -> Pieces:
        """One chunk compressed, as pieces to write one after another."""
        if hasattr(self.data, "encoded_chunk"):  # compressed already, as its values came
            pieces: Pieces = self.data.encoded_chunk(index)
            return pieces
        part = self.data[
            tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, self.chunk_shape, strict=True))
        ]
        return [bytes(self.codec.encode(np.ascontiguousarray(part)))]

    def zarray(self) -> dict[str, Any]:
        dtype = self.data.dtype
        return {
            "chunks": list(self.chunk_shape),
            "compressor": self.codec.get_config(),
            "dimension_separator": ".",
            "dtype": dtype.str,
            "fill_value": "NaN" if dtype.kind == "f" else None,
            "filters": None,
            "order": "C",
            "shape": list(self.data.shape),
            "zarr_format": 2,
        }

    def zattrs(self) -> dict[str, Any]:
        return {**self.attrs, "_ARRAY_DIMENSIONS": list(self.dims)}


_JSON_MEMO: dict[str, bytes] = {}


def _json(value: Any) -> bytes:
    """``value`` as zarr writes metadata (indented, sorted keys), memoised by ``repr``: every
    member of a WebDataset tar has the same metadata, and the indented encoder is pure
    Python (about 1 ms a member)."""
    key = repr(value)
    encoded = _JSON_MEMO.get(key)
    if encoded is None:
        if len(_JSON_MEMO) >= 1024:
            _JSON_MEMO.clear()
        encoded = json.dumps(value, indent=4, sort_keys=True, ensure_ascii=True).encode()
        _JSON_MEMO[key] = encoded
    return encoded


Entries = list[tuple[str, Callable[[], Pieces]]]


def _entries(variables: Mapping[str, Variable], attrs: Mapping[str, Any]) -> Entries:
    """The store's entries in sorted order, each made when it is written (a chunk is
    compressed then)."""
    metadata: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": dict(attrs)}
    entries: dict[str, Callable[[], Pieces]] = {}
    for name, var in variables.items():
        metadata[f"{name}/.zarray"] = var.zarray()
        metadata[f"{name}/.zattrs"] = var.zattrs()
        for key, index in var.chunk_keys():
            entries[f"{name}/{key}"] = lambda v=var, i=index: v.chunk(i)  # type: ignore[misc]
    for key, value in metadata.items():
        entries[key] = lambda v=value: [_json(v)]  # type: ignore[misc]
    consolidated = {"metadata": metadata, "zarr_consolidated_format": 1}
    entries[".zmetadata"] = lambda: [_json(consolidated)]
    return sorted(entries.items())


# The zip records as ``zipfile`` writes stored entries (APPNOTE 4.3.7, 4.3.12, 4.3.16): local
# header, central directory header, end of central directory.
_LOCAL, _CENTRAL, _END = "<4s2B4HL2L2H", "<4s4B4HL2L5H2L", "<4s4H2LH"
_VERSION, _UNIX = 20, 3  # made by and needed to extract: 2.0; made on Unix
_DOS_TIME, _DOS_DATE = 0, (ZIP_EPOCH[0] - 1980) << 9 | ZIP_EPOCH[1] << 5 | ZIP_EPOCH[2]
_MODE = 0o644 << 16  # external attributes: a regular file, rw-r--r--
_ZIP32_LIMIT = (1 << 31) - 1  # sizes and offsets beyond this need zip64 records


def stored_data_offset(handle: IO[bytes], info: zipfile.ZipInfo, archive: str) -> int:
    """Where member ``info``'s data begins in the zip file open as ``handle``: after its
    local header, whose name and extra field may differ in length from the central
    directory's. ``archive`` names the file in the error for a damaged header."""
    handle.seek(info.header_offset)
    header = struct.unpack(_LOCAL, handle.read(struct.calcsize(_LOCAL)))
    if header[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{archive}: bad local header of {info.filename!r}")
    return info.header_offset + struct.calcsize(_LOCAL) + header[-2] + header[-1]


class _NeedsZipfile(Exception):
    pass


def _write_stored(write: Callable[[bytes], Any], entries: Entries) -> None:
    """A zip of ``entries``, stored, front to back: the same bytes ``zipfile`` writes for
    them, without its seek back to each local header (so the bytes can be hashed on the
    way) and its per-entry cost. Beyond the zip32 limits, or for a name that is not ASCII,
    it raises :class:`_NeedsZipfile`."""
    central, offset = [], 0
    for key, make in entries:
        if not key.isascii():  # zipfile flags UTF-8 names
            raise _NeedsZipfile
        pieces = make()
        name, size, crc = key.encode("ascii"), sum(map(len, pieces)), 0
        for piece in pieces:
            crc = zlib.crc32(piece, crc)
        if offset > _ZIP32_LIMIT or size > _ZIP32_LIMIT:
            raise _NeedsZipfile
        header = struct.pack(
            _LOCAL, b"PK\x03\x04", _VERSION, 0, 0, 0, _DOS_TIME, _DOS_DATE, crc, size, size,
            len(name), 0,
        )  # fmt: skip
        write(header + name)
        for piece in pieces:
            write(piece)
        central.append(
            struct.pack(
                _CENTRAL, b"PK\x01\x02", _VERSION, _UNIX, _VERSION, 0, 0, 0, _DOS_TIME,
                _DOS_DATE, crc, size, size, len(name), 0, 0, 0, 0, _MODE, offset,
            ) + name
        )  # fmt: skip
        offset += len(header) + len(name) + size
    directory = b"".join(central)
    if offset > _ZIP32_LIMIT or len(central) > 0xFFFF:
        raise _NeedsZipfile
    write(directory)
    write(
        struct.pack(
            _END, b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), offset, 0
        )
    )


def _write_with_zipfile(handle: IO[bytes], entries: Entries) -> None:
    """The same store through ``zipfile`` (which adds zip64 records where needed)."""
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for key, make in entries:
            info = zipfile.ZipInfo(key, ZIP_EPOCH)
            info.external_attr = _MODE
            archive.writestr(info, b"".join(make()))


def zarr_zip_buffer(variables: Mapping[str, Variable], attrs: Mapping[str, Any]) -> memoryview:
    """The store in memory (a view of the buffer it was written to, no copy)."""
    buffer = io.BytesIO()
    entries = _entries(variables, attrs)
    try:
        _write_stored(buffer.write, entries)
    except _NeedsZipfile:
        buffer = io.BytesIO()
        _write_with_zipfile(buffer, entries)
    return buffer.getbuffer()


def write_zarr_zip(
    path: Path,
    variables: Mapping[str, Variable],
    attrs: Mapping[str, Any],
    scratch: Path | None = None,
    sync: bool = True,
) -> str:
    """The store written to a temporary file (in ``scratch`` when given), hashed on the way,
    fsynced (see :func:`commit_file` for ``sync``) and renamed to ``path``; returns its
    sha256. A store past the zip32 limits, or with a name that is not ASCII, is written
    again through ``zipfile``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = atomic_target(path, scratch)
    entries = _entries(variables, attrs)
    try:
        try:
            with HashingWriter(target) as archive:
                _write_stored(archive.write, entries)
            return commit_file(target, path, archive.hexdigest(), sync)
        except _NeedsZipfile:
            with open(target, "wb") as handle:
                _write_with_zipfile(handle, entries)
            return commit_file(target, path, sync=sync)
    finally:
        target.unlink(missing_ok=True)
