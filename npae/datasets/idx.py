"""A strict reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

Layout: 2 zero bytes, a dtype code, the rank r, then r big-endian uint32 dimensions, then the
payload in big-endian order. Everything is validated; a wrong, truncated or garbage file raises
:class:`IDXError` naming the file and the problem, never a short or misshapen array.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

__all__ = ["IDXError", "read_idx", "parse_idx", "DTYPES", "MAX_BYTES"]

DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_BYTES = 1 << 31  # no IDX data set comes near 2 GiB: refuse larger headers before reading on


class IDXError(ValueError):
    """A file is not a valid IDX file; the message names the file and what is wrong."""


def _header(head: bytes, read, name: str, max_bytes: int) -> tuple[tuple[int, ...], np.dtype, int]:
    """(dims, dtype, payload bytes) from the first 4 bytes and ``read(n)`` for the rest of the header."""
    if len(head) < 4:
        raise IDXError(f"{name}: too short for an IDX header ({len(head)} bytes, need at least 4)")
    if head[0] != 0 or head[1] != 0:
        raise IDXError(f"{name}: bad magic number: expected first two bytes 0x00 0x00, got "
                       f"0x{head[0]:02x} 0x{head[1]:02x}")
    code, rank = head[2], head[3]
    if code not in DTYPES:
        raise IDXError(f"{name}: unknown dtype code 0x{code:02x} (expected one of "
                       f"{', '.join(f'0x{c:02x}' for c in DTYPES)})")
    if rank == 0:
        raise IDXError(f"{name}: rank 0 (expected at least one dimension)")
    raw_dims = read(4 * rank)
    if len(raw_dims) < 4 * rank:
        raise IDXError(f"{name}: truncated header: rank {rank} needs {4 + 4 * rank} bytes, file has "
                       f"{4 + len(raw_dims)}")
    dims = tuple(int.from_bytes(raw_dims[4 * i:4 * i + 4], "big") for i in range(rank))
    dtype = DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if expected > max_bytes:
        raise IDXError(f"{name}: header claims shape {dims} ({expected:,} bytes), more than the {max_bytes:,} this "
                       "read allows")
    return dims, dtype, expected


def _array(data: bytes, dims, dtype) -> np.ndarray:
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def parse_idx(data: bytes, name: str = "<bytes>", max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Decode IDX bytes (already decompressed) into an array of native byte order."""
    dims, dtype, expected = _header(data[:4], lambda n: data[4:4 + n], name, max_bytes)
    header = 4 + 4 * len(dims)
    if len(data) - header != expected:
        what = "truncated" if len(data) - header < expected else "trailing data"
        raise IDXError(f"{name}: payload is {len(data) - header} bytes but the header's shape {dims} of "
                       f"{dtype.name} needs {expected} ({what})")
    return _array(data[header:], dims, dtype)


def read_idx(path, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) with full validation, as a stream: the header is read and
    checked first (no more than ``max_bytes`` of payload), then exactly the payload it declares,
    so a small compressed file that would inflate to gigabytes is refused after a few bytes."""
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as err:
        raise IDXError(f"{path}: cannot read: {err.strerror or err}") from None
    with f:
        compressed = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
        try:
            dims, dtype, expected = _header(stream.read(4), stream.read, path, max_bytes)
            data = stream.read(expected)
            extra = stream.read(1)
        except (OSError, EOFError, zlib.error) as err:
            what = "corrupt or truncated gzip data" if compressed else "cannot read"
            raise IDXError(f"{path}: {what}: {err}") from None
    if len(data) < expected or extra:
        what = "truncated" if len(data) < expected else "trailing data"
        raise IDXError(f"{path}: the header's shape {dims} of {dtype.name} needs {expected} payload bytes: {what}")
    return _array(data, dims, dtype)
