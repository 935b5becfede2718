"""Numba for the fast path: the threading layer, and the decorators the kernels share.

Two pools share the cores: OpenBLAS's (NumPy's GEMMs) and Numba's (the kernels). Numba's layer is
chosen here, before the first parallel kernel runs: the TBB layer (the ``tbb`` package, a
dependency where it has wheels) scales best and is safe across ``fork``; OpenMP is never chosen
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

parallel = numba.njit(cache=True, parallel=True)  # a kernel whose prange loops run on all cores
serial = numba.njit(cache=True)
inline = numba.njit(cache=True, inline="always")  # a helper compiled into the kernels that call it
# kernels over (rows, cols) arrays: rows in parallel; fastmath only for reassociation (vectorised
# float64 sums) and contraction (FMA), no assumptions about NaN or inf
rows_kernel = numba.njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
parallel_sums = rows_kernel  # a parallel kernel of sums that may be reassociated (and FMA)
serial_sums = numba.njit(cache=True, fastmath={"reassoc", "contract"})
parallel_contract = numba.njit(cache=True, parallel=True, fastmath={"contract"})  # FMA only
inline_contract = numba.njit(cache=True, inline="always", fastmath={"contract"})

KERNEL_LOCK = threading.RLock()  # held by every fast-path call (re-entrant: fit calls evaluate)


def chunks(n: int) -> int:
    """Images are split into one chunk per thread (at most one per image)."""
    return max(1, min(numba.get_num_threads(), n))
