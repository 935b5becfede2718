"""Thread-pool settings, applied when npae is imported (before NumPy, so OpenBLAS sees them).

Two pools share the cores: OpenBLAS's (the GEMMs) and Numba's (the kernels). By default an idle
OpenBLAS thread busy-waits for 2**28 cycles (~0.1 s) after each GEMM, so the Numba kernel that
follows runs with one core instead of two (measured on 2 cores: the convolutional model's step
took 2.2x its single-thread CPU time). ``OPENBLAS_THREAD_TIMEOUT=4`` (2**4 cycles, OpenBLAS's
minimum) lets those threads sleep at once. OpenBLAS reads it when NumPy loads it, so it only
takes effect if npae is imported before NumPy; a value the user set is kept.

With OpenBLAS quiet, Numba's OpenMP layer scales best (convolutional model step, 2 cores:
72 ms with OpenMP vs 98 ms with the workqueue layer). With OpenBLAS still spinning (NumPy was
imported first), OpenMP's own spinning fights it, and the workqueue layer, which never spins,
is the safer choice. A user's NUMBA_THREADING_LAYER always wins.
"""

from __future__ import annotations

import os
import sys

BLAS_THREADS_SLEEP = "numpy" not in sys.modules or "OPENBLAS_THREAD_TIMEOUT" in os.environ
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def configure_numba(numba) -> None:
    """Pick Numba's threading layer as described above (call before the first parallel kernel)."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    if BLAS_THREADS_SLEEP:
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
        numba.config.THREADING_LAYER = "default"  # the first of those that is installed
    else:
        numba.config.THREADING_LAYER = "workqueue"
