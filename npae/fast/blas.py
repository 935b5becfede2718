"""NumPy's own OpenBLAS, callable from inside Numba kernels (dense_stack, conv_gemm, winograd).

NumPy calls OpenBLAS with OpenBLAS's thread pool, and npae's element-wise kernels run on
Numba's: a layer-by-layer prediction hands the two cores from one pool to the other twice per
layer. A kernel that calls ``cblas_sgemm`` itself, once per block of rows on each Numba thread
with OpenBLAS held to one thread, keeps one pool busy from the first layer to the last.

What this module finds, by looking at the shared objects the process has loaded (Linux):
- the ``cblas_sgemm`` / ``cblas_dgemm`` that NumPy's OpenBLAS exports, under the names of
  NumPy's wheels (``scipy_cblas_sgemm64_``: ILP64, 64-bit ints) or of a plain OpenBLAS
  (``cblas_sgemm``, with 32- or 64-bit ints as ``openblas_get_config`` says), handed to Numba as
  first-class functions (so the kernels that call them are cached on disk like the others);
- ``openblas_set_num_threads_local`` (OpenBLAS >= 0.3.27), to run single-threaded inside the
  kernel and restore the caller's setting after.
Anything else (another BLAS, an older OpenBLAS, another OS) gives ``None`` and npae keeps the
layer-by-layer path.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys

import numba
import numba.experimental.function_type  # noqa: F401  (lets Numba type the functions below)
import numpy as np
from numba import types

from .runtime import inline

__all__ = ["OpenBLAS", "find", "gemm_call", "gemm_rows"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS's enum values


class _Function(types.WrapperAddressProtocol):
    """A C function's address and Numba signature: Numba calls it without baking the address into
    the compiled code (which would stop ``cache=True``)."""

    def __init__(self, address: int, signature):
        self._address, self._signature = address, signature

    def __wrapper_address__(self) -> int:
        return self._address

    def signature(self):
        return self._signature


def _gemm_signature(real, blas_int):
    # cblas_?gemm(order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); the three
    # enums are C ints. Numba converts no argument of such a call: callers pass exact types. The
    # pointers are declared as intp: on every ABI Numba targets a pointer is passed exactly as an
    # integer of its width, and kernels work out addresses as integers (``array.ctypes.data``
    # plus an offset; signed, so the sums stay integers in Numba).
    ptr = types.intp
    return types.void(types.int32, types.int32, types.int32, blas_int, blas_int, blas_int,
                      real, ptr, blas_int, ptr, blas_int, real, ptr, blas_int)


@inline
def gemm_call(gemm, ints, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc, one):
    """C = op(A) @ op(B) + beta C inside a Numba kernel, row-major: op(A) (m, k), op(B) (k, n), C
    (m, n) at the addresses a, b, c (integers, ``array.ctypes.data`` plus an offset) with leading
    dimensions lda, ldb, ldc (of A and B as stored); op transposes where trans_a / trans_b.
    ``gemm`` is ``OpenBLAS.gemm(dtype)``, ``ints`` an empty array of ``OpenBLAS.int_dtype``,
    ``one`` a 1 of the data's dtype (and beta of that dtype too)."""
    c_int, blas_int = np.int32, ints.dtype.type
    ta, tb = _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS
    gemm(c_int(_ROW_MAJOR), c_int(ta), c_int(tb), blas_int(m), blas_int(n), blas_int(k), one,
         np.intp(a), blas_int(lda), np.intp(b), blas_int(ldb), beta, np.intp(c), blas_int(ldc))


@inline
def gemm_rows(gemm, ints, m, n, k, a, lda, b, ldb, c, ldc, one):
    """C = A @ B: :func:`gemm_call` with nothing transposed and beta 0."""
    gemm_call(gemm, ints, False, False, m, n, k, a, lda, b, ldb, one - one, c, ldc, one)


class OpenBLAS:
    """The loaded OpenBLAS: ``sgemm`` and ``dgemm`` for Numba kernels (``gemm(dtype)`` picks one),
    and :meth:`single_threaded` for the Python side."""

    def __init__(self, lib: ctypes.CDLL, prefix: str, suffix: str, blas_int, path: str):
        def address(name):
            return ctypes.cast(getattr(lib, prefix + name + suffix), ctypes.c_void_p).value

        self.path = path
        self.int_dtype = np.dtype(np.int64 if blas_int == types.int64 else np.int32)  # GEMM's ints
        self.sgemm = _Function(address("cblas_sgemm"), _gemm_signature(types.float32, blas_int))
        self.dgemm = _Function(address("cblas_dgemm"), _gemm_signature(types.float64, blas_int))
        self._set_local = lib.openblas_set_num_threads_local
        self._set_local.argtypes, self._set_local.restype = [ctypes.c_int], ctypes.c_int
        self._get = getattr(lib, prefix + "openblas_get_num_threads" + suffix)
        self._get.argtypes, self._get.restype = [], ctypes.c_int

    def gemm(self, dtype) -> _Function:
        return self.sgemm if dtype.itemsize == 4 else self.dgemm

    def threads(self) -> int:
        """How many threads OpenBLAS's next call from this thread will use."""
        return self._get()

    def set_threads(self, n: int) -> int:
        """Set that number (``openblas_set_num_threads_local``); returns the one before."""
        return self._set_local(n)

    @contextlib.contextmanager
    def single_threaded(self):
        """OpenBLAS runs each call on the calling thread inside the block (the Numba threads that
        call it are the parallelism); the previous thread count comes back after it. Set from
        the thread that starts the kernel: the Numba threads it wakes use that setting too."""
        before = self.set_threads(1)
        try:
            yield
        finally:
            self.set_threads(before)


def _loaded_openblas_paths() -> list[str]:
    """Shared objects with "openblas" in their name that this process has mapped."""
    try:
        with open("/proc/self/maps") as f:
            paths = [line.split(None, 5)[-1].strip() for line in f if "openblas" in line.lower()]
    except OSError:
        return []
    return list(dict.fromkeys(p for p in paths if p.startswith("/")))


@functools.lru_cache(maxsize=1)
def find() -> OpenBLAS | None:
    """NumPy's OpenBLAS, or None where it cannot be used as above (then nothing changes)."""
    if not sys.platform.startswith("linux"):
        return None
    for path in _loaded_openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if not hasattr(lib, "openblas_set_num_threads_local"):
            continue
        for prefix in ("scipy_", ""):
            config = getattr(lib, prefix + "openblas_get_config64_", None) or \
                getattr(lib, prefix + "openblas_get_config", None)
            if config is None:
                continue
            config.restype = ctypes.c_char_p
            ilp64 = b"USE64BITINT" in (config() or b"")
            suffixes = ("64_", "") if ilp64 else ("",)
            for suffix in suffixes:
                names = (f"{prefix}{f}{suffix}" for f in ("cblas_sgemm", "cblas_dgemm", "openblas_get_num_threads"))
                if all(hasattr(lib, name) for name in names):
                    return OpenBLAS(lib, prefix, suffix, types.int64 if ilp64 else types.int32, path)
    return None
