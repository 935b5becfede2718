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

__all__ = ["IDXError", "read_idx", "parse_idx", "DTYPES"]

DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_MAX_BYTES = 1 << 31  # no IDX data set we read comes near 2 GiB: refuse absurd headers early


class IDXError(ValueError):
    """A file is not a valid IDX file; the message names the file and what is wrong."""


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes (already decompressed) into an array of native byte order."""
    if len(data) < 4:
        raise IDXError(f"{name}: too short for an IDX header ({len(data)} bytes, need at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise IDXError(f"{name}: bad magic number: expected first two bytes 0x00 0x00, got "
                       f"0x{data[0]:02x} 0x{data[1]:02x}")
    code, rank = data[2], data[3]
    if code not in DTYPES:
        raise IDXError(f"{name}: unknown dtype code 0x{code:02x} (expected one of "
                       f"{', '.join(f'0x{c:02x}' for c in DTYPES)})")
    if rank == 0:
        raise IDXError(f"{name}: rank 0 (expected at least one dimension)")
    header = 4 + 4 * rank
    if len(data) < header:
        raise IDXError(f"{name}: truncated header: rank {rank} needs {header} bytes, file has {len(data)}")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    dtype = DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if expected > _MAX_BYTES:
        raise IDXError(f"{name}: header claims shape {dims} ({expected} bytes), larger than any IDX data set")
    if len(data) - header != expected:
        what = "truncated" if len(data) - header < expected else "trailing data"
        raise IDXError(f"{name}: payload is {len(data) - header} bytes but the header's shape {dims} of "
                       f"{dtype.name} needs {expected} ({what})")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) with full validation; see :func:`parse_idx`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_BYTES + 1)
    except OSError as err:
        raise IDXError(f"{path}: cannot read: {err.strerror or err}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise IDXError(f"{path}: corrupt or truncated gzip data: {err}") from None
    return parse_idx(raw, path)
