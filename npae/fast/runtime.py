"""Numba for the fast path: the threading layer, and the decorators the kernels share.

The fast path runs on Numba's thread pool only (its GEMMs too: :func:`npae.fast.blas.matmul`
calls OpenBLAS single-threaded from Numba's threads, so OpenBLAS's own pool never competes for the
cores, whatever the user's script imported first). Numba's threading layer is chosen here, before
the first parallel kernel runs: the TBB layer (the ``tbb`` package, a dependency where it has
wheels) scales best and is safe across ``fork``; OpenMP is never chosen
(GNU OpenMP kills a forked child that runs a parallel kernel, and ``multiprocessing`` forks by
default on Linux). Without TBB npae uses workqueue. A user's NUMBA_THREADING_LAYER always wins.
The measurements behind these choices: docs/performance.md.

Every call of the fast path (one batch) holds :data:`KERNEL_LOCK`: the kernels that call OpenBLAS
from Numba's threads set OpenBLAS's thread count for their duration, and that setting is seen by
every thread of the process (``openblas_set_num_threads_local`` is not thread-local in the
OpenBLAS NumPy ships), which would change the rounding of another thread's GEMMs; workqueue also
aborts when two threads launch kernels at once. Each call uses all cores, so taking turns by the
batch costs nothing.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import threading
import warnings

import numba

__all__ = ["parallel", "serial", "inline", "rows_kernel", "parallel_sums", "serial_sums", "parallel_contract",
           "inline_contract", "chunks", "KERNEL_LOCK"]


def _load_tbb() -> bool:
    """pip's ``tbb`` wheel puts libtbb.so.12 in <prefix>/lib, which the dynamic loader does not
    search; load it by path (globally) so that Numba's TBB layer finds it already in memory."""
    if not sys.platform.startswith("linux"):
        return False
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, sys.exec_prefix)):
        for path in sorted(glob.glob(os.path.join(prefix, "lib", "libtbb.so.12*"))):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                continue
    try:  # a system-wide TBB (Debian's libtbb12, conda) is on the loader's path already
        ctypes.CDLL("libtbb.so.12", mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        return False


if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "tbb" if _load_tbb() else "workqueue"

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


try:  # Numba's on-disk cache of compiled kernels (numba.core.caching is not a public API: guarded)
    from numba.core.caching import FunctionCache as _FunctionCache
except ImportError:  # pragma: no cover - another Numba
    _FunctionCache = None


if _FunctionCache is not None:
    class _ForgivingCache(_FunctionCache):
        """Numba's cache of a kernel, except that a cache that cannot be read (a truncated file) or
        written (a full disk) costs a compile, not the run: one warning names the folder and the fix."""

        def _trouble(self, err: BaseException) -> None:
            _warn_once("cache-io", f"npae: Numba's cache of compiled kernels in {self.cache_path} cannot be used "
                                   f"({type(err).__name__}: {err}); kernels are compiled again instead. Fix: delete "
                                   "that folder's *.nbi and *.nbc files, free some disk space, or set NUMBA_CACHE_DIR "
                                   "to another writable folder")

        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception as err:  # noqa: BLE001 - any unreadable cache entry is just a cache miss
                self._trouble(err)
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except Exception as err:  # noqa: BLE001 - a cache that cannot be written is just not written
                self._trouble(err)


CACHING = _FunctionCache is not None  # whether compiled kernels are kept on disk (False: recompiled every run)


def _cached(dispatcher):
    """Give a dispatcher the forgiving on-disk cache; where no folder can hold one (a read-only
    install and no writable home), run it uncached, saying so once."""
    global CACHING
    if _FunctionCache is None:
        return dispatcher
    try:
        dispatcher._cache = _ForgivingCache(dispatcher.py_func)  # what Dispatcher.enable_caching does
    except RuntimeError as err:  # "cannot cache function ...: no locator available"
        CACHING = False
        _warn_once("cache-none", f"npae: no folder can hold Numba's cache of compiled kernels ({err}): neither the "
                                 f"package folder {os.path.dirname(__file__)} nor the user cache is writable, so "
                                 "every run compiles them again. Fix: set NUMBA_CACHE_DIR to a writable folder")
    return dispatcher


def _jit(**options):
    def decorate(f):
        return _cached(numba.njit(cache=False, **options)(f))
    return decorate


parallel = _jit(parallel=True)  # a kernel whose prange loops run on all cores
serial = _jit()
inline = _jit(inline="always")  # a helper compiled into the kernels that call it
# kernels over (rows, cols) arrays: rows in parallel; fastmath only for reassociation (vectorised
# float64 sums) and contraction (FMA), no assumptions about NaN or inf
rows_kernel = _jit(parallel=True, fastmath={"reassoc", "contract"})
parallel_sums = rows_kernel  # a parallel kernel of sums that may be reassociated (and FMA)
serial_sums = _jit(fastmath={"reassoc", "contract"})
parallel_contract = _jit(parallel=True, fastmath={"contract"})  # FMA only
inline_contract = _jit(inline="always", fastmath={"contract"})

KERNEL_LOCK = threading.RLock()  # held by every fast-path call (re-entrant: fit calls evaluate)


def chunks(n: int) -> int:
    """Images are split into one chunk per thread (at most one per image)."""
    return max(1, min(numba.get_num_threads(), n))
