"""NumPy's own OpenBLAS, callable from inside Numba kernels (dense_stack, conv_gemm, winograd).

NumPy calls OpenBLAS with OpenBLAS's thread pool, and npae's element-wise kernels run on
Numba's: a layer-by-layer prediction hands the two cores from one pool to the other twice per
layer. A kernel that calls ``cblas_sgemm`` itself, once per block of rows on each Numba thread
with OpenBLAS held to one thread, keeps one pool busy from the first layer to the last.

What this module finds, by looking at the shared objects the process has loaded (Linux):
- the ``cblas_sgemm`` / ``cblas_dgemm`` that NumPy's OpenBLAS exports, under the names of
  NumPy's wheels (``scipy_cblas_sgemm64_``: ILP64, 64-bit ints) or of a plain OpenBLAS
  (``cblas_sgemm``, with 32- or 64-bit ints as ``openblas_get_config`` says), handed to the
  kernels as addresses (:func:`gemm_call`);
- ``openblas_set_num_threads_local`` (OpenBLAS >= 0.3.27), to run single-threaded inside the
  kernel and restore the caller's setting after.
Anything else (another BLAS, an older OpenBLAS, another OS) gives ``None`` and npae keeps the
layer-by-layer path.
"""

from __future__ import annotations

import ctypes
import functools
import sys

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from .runtime import inline, parallel_contract

__all__ = ["OpenBLAS", "find", "gemm_call", "gemm_rows", "matmul", "split", "ROWS_PER_THREAD", "SPLIT_FLOPS"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS's enum values


@intrinsic
def _call_at(typingctx, address, order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Call the C function at ``address`` (an integer) as cblas_?gemm(order, transa, transb, m, n, k,
    alpha, a, lda, b, ldb, beta, c, ldc): the three enums are C ints, the sizes OpenBLAS's ints,
    alpha and beta the data's float type, and the matrices' addresses integers (on every ABI Numba
    targets a pointer is passed exactly as an integer of its width). The address is an argument,
    not a constant baked into the code, so the kernels that call it are cached like the others;
    and an integer argument costs Numba's dispatcher nothing to type (a first-class function
    object cost 19 us per call)."""
    sig = types.void(address, order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [context.get_value_type(t) for t in signature.args[1:]])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), args[1:])
        return context.get_dummy_value()

    return sig, codegen


@inline
def gemm_call(gemm, ints, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc, one):
    """C = op(A) @ op(B) + beta C inside a Numba kernel, row-major: op(A) (m, k), op(B) (k, n), C
    (m, n) at the addresses a, b, c (integers, ``array.ctypes.data`` plus an offset) with leading
    dimensions lda, ldb, ldc (of A and B as stored); op transposes where trans_a / trans_b.
    ``gemm`` is ``OpenBLAS.gemm(dtype)`` (the function's address), ``ints`` an empty array of
    ``OpenBLAS.int_dtype``,
    ``one`` a 1 of the data's dtype (and beta of that dtype too)."""
    c_int, blas_int = np.int32, ints.dtype.type
    ta, tb = _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS
    _call_at(np.intp(gemm), c_int(_ROW_MAJOR), c_int(ta), c_int(tb), blas_int(m), blas_int(n), blas_int(k), one,
             np.intp(a), blas_int(lda), np.intp(b), blas_int(ldb), beta, np.intp(c), blas_int(ldc))


@inline
def gemm_rows(gemm, ints, m, n, k, a, lda, b, ldb, c, ldc, one):
    """C = A @ B: :func:`gemm_call` with nothing transposed and beta 0."""
    gemm_call(gemm, ints, False, False, m, n, k, a, lda, b, ldb, one - one, c, ldc, one)


@parallel_contract
def _gemm_split(gemm, ints, a, b, c, trans_a, trans_b, beta, one, chunks, by_rows):
    """C = op(A) @ op(B) + beta C with C split into ``chunks`` blocks of rows (``by_rows``) or of
    columns, one per Numba thread; ``a`` and ``b`` are the C-contiguous arrays behind op(A) and
    op(B) (op transposes where trans_a / trans_b), ``c`` is C, C-contiguous."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    lda, ldb, ldc, size = a.shape[1], b.shape[1], c.shape[1], c.itemsize
    pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data
    for t in prange(chunks):
        if by_rows:
            r0, r1 = t * m // chunks, (t + 1) * m // chunks
            if r1 > r0:  # rows r0..r1 of op(A): columns of A where it is transposed
                gemm_call(gemm, ints, trans_a, trans_b, r1 - r0, n, k, pa + (r0 if trans_a else r0 * lda) * size, lda,
                          pb, ldb, beta, pc + r0 * ldc * size, ldc, one)
        else:
            c0, c1 = t * n // chunks, (t + 1) * n // chunks
            if c1 > c0:  # columns c0..c1 of op(B): rows of B where it is transposed
                b0 = pb + (c0 * ldb if trans_b else c0) * size
                gemm_call(gemm, ints, trans_a, trans_b, m, c1 - c0, k, pa, lda, b0, ldb, beta, pc + c0 * size, ldc, one)


ROWS_PER_THREAD = 32  # a GEMM is split across threads only where each block gets this many rows (or columns)
# ... and only where it has this many multiply-adds: below, one call on this thread. Launching the
# blocks on TBB's threads costs more than it saves below about 6M (docs/performance.md, "GEMMs").
SPLIT_FLOPS = 6 << 20


def _plain(a: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """(the C-contiguous array behind a, transposed?) for a 2-D a that is C-contiguous or the
    transpose of one; None otherwise."""
    if a.flags.c_contiguous:
        return a, False
    if a.T.flags.c_contiguous:
        return a.T, True
    return None


def split(m: int, n: int, k: int, threads: int) -> tuple[int, bool]:
    """(blocks, by rows?) for an (m, k) @ (k, n) product on ``threads`` threads: the larger of m
    and n is split into blocks of at least ROWS_PER_THREAD, one per thread, where the product has
    at least SPLIT_FLOPS multiply-adds; otherwise one block."""
    if m * n * k < SPLIT_FLOPS:
        return 1, True
    by_rows = m >= n
    return max(1, min(threads, (m if by_rows else n) // ROWS_PER_THREAD)), by_rows


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> np.ndarray:
    """out (m, n) = a (m, k) @ b (k, n), or out += a @ b with ``accumulate``, on Numba's threads
    with OpenBLAS held to one thread (each thread multiplies a block of rows or of columns, see
    :func:`split`), where OpenBLAS is found and the arrays are plain (C-contiguous or transposed
    C-contiguous, all float32 or all float64); NumPy's matmul otherwise. OpenBLAS's own thread pool is then
    never woken: its threads do not spin on the cores after each product, taking them from the
    kernels that follow."""
    openblas = find()
    pa, pb = _plain(a), _plain(b)
    ok = openblas is not None and pa is not None and pb is not None and out.flags.c_contiguous and \
        a.ndim == b.ndim == out.ndim == 2 and a.dtype == b.dtype == out.dtype and \
        a.dtype in (np.float32, np.float64) and out.shape == (a.shape[0], b.shape[1]) and a.shape[1] == b.shape[0]
    if not ok:
        if accumulate:
            out += a @ b
            return out
        return np.matmul(a, b, out=out)
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return out
    with openblas.single_threaded():
        # (workqueue's thread launch costs more than any split saves: one call there)
        threads = 1 if numba.config.THREADING_LAYER == "workqueue" else numba.get_num_threads()
        chunks, by_rows = split(m, n, k, threads)
        if chunks == 1 and not accumulate:
            return np.matmul(a, b, out=out)  # OpenBLAS on this thread alone: no kernel to launch
        one = out.dtype.type(1)
        (sa, ta), (sb, tb) = pa, pb
        beta = one if accumulate else one - one
        _gemm_split(openblas.gemm(out.dtype), openblas.empty_ints, sa, sb, out, ta, tb, beta, one, chunks, by_rows)
    return out


class OpenBLAS:
    """The loaded OpenBLAS: ``sgemm`` and ``dgemm`` for Numba kernels (``gemm(dtype)`` picks one),
    and :meth:`single_threaded` for the Python side."""

    def __init__(self, lib: ctypes.CDLL, prefix: str, suffix: str, blas_int, path: str):
        def address(name):
            return ctypes.cast(getattr(lib, prefix + name + suffix), ctypes.c_void_p).value

        self.path = path
        self.int_dtype = np.dtype(np.int64 if blas_int == types.int64 else np.int32)  # GEMM's ints
        self.sgemm, self.dgemm = address("cblas_sgemm"), address("cblas_dgemm")
        self._set_local = lib.openblas_set_num_threads_local
        self._set_local.argtypes, self._set_local.restype = [ctypes.c_int], ctypes.c_int
        self._get = getattr(lib, prefix + "openblas_get_num_threads" + suffix)
        self._get.argtypes, self._get.restype = [], ctypes.c_int
        self.empty_ints = np.empty(0, self.int_dtype)  # the kernels read OpenBLAS's int type from it

    def gemm(self, dtype) -> int:
        """The address of cblas_sgemm (float32) or cblas_dgemm (float64), for :func:`gemm_call`."""
        return self.sgemm if dtype.itemsize == 4 else self.dgemm

    def threads(self) -> int:
        """How many threads OpenBLAS's next call from this thread will use."""
        return self._get()

    def set_threads(self, n: int) -> int:
        """Set that number (``openblas_set_num_threads_local``); returns the one before."""
        return self._set_local(n)

    def single_threaded(self) -> _SingleThreaded:
        """A context: OpenBLAS runs each call on the calling thread inside the block (the Numba
        threads that call it are the parallelism); the previous thread count comes back after it.
        Set from the thread that starts the kernel: the Numba threads it wakes use that setting
        too. Cheap where OpenBLAS is single-threaded already (a nested block)."""
        return _SingleThreaded(self)


class _SingleThreaded:
    """:meth:`OpenBLAS.single_threaded`'s context (a class: a generator context costs ~1 us)."""

    __slots__ = ("openblas", "before")

    def __init__(self, openblas: OpenBLAS):
        self.openblas, self.before = openblas, 1

    def __enter__(self) -> None:
        self.before = self.openblas.threads()
        if self.before != 1:
            self.openblas.set_threads(1)

    def __exit__(self, *exc) -> None:
        if self.before != 1:
            self.openblas.set_threads(self.before)


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
