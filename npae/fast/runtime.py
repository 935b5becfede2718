"""Thread-pool settings, applied when npae is imported (before NumPy, so OpenBLAS sees them).

Two pools share the cores: OpenBLAS's (the GEMMs) and Numba's (the kernels).

OpenBLAS: by default an idle OpenBLAS thread busy-waits for 2**28 cycles (~0.1 s) after each GEMM,
so the Numba kernel that follows runs with one core instead of two (measured on 2 cores: the
convolutional model's step used 245 ms of CPU for 96 ms of work). ``OPENBLAS_THREAD_TIMEOUT=4``
(2**4 cycles, OpenBLAS's minimum) lets them sleep at once. OpenBLAS reads it when NumPy loads it,
so it only takes effect when npae is imported before NumPy; a value the user set is kept.

Numba: the TBB layer (the ``tbb`` package, a dependency where it has wheels) scales best and is
safe across ``fork``: convolutional step on 2 cores 67-73 ms with TBB, 75-87 ms with OpenMP,
90-106 ms with workqueue. OpenMP is never chosen: GNU OpenMP kills a forked child that runs a
parallel kernel (``multiprocessing``'s default start method on Linux forks). Without TBB npae uses
workqueue. A user's NUMBA_THREADING_LAYER always wins.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


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


def configure_numba(numba) -> None:
    """Pick Numba's threading layer as described above (call before the first parallel kernel)."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    numba.config.THREADING_LAYER = "tbb" if _load_tbb() else "workqueue"
