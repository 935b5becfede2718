"""One float32 GEMM at a time, three ways: on OpenBLAS's own thread pool (``np.matmul``), on one
OpenBLAS thread, and split over Numba's threads (``npae.fast.blas.matmul``, which splits only
products of at least ``SPLIT_FLOPS`` multiply-adds: the sizes here straddle it). Microseconds per
product, the median of 7 alternated rounds of 400 calls. Behind ``SPLIT_FLOPS`` (see
docs/performance.md)::

    python benchmarks/gemm_split.py
"""

import time

import numpy as np

from npae.fast import blas

SHAPES = [(256, 128, 64), (256, 128, 128), (256, 256, 128), (256, 784, 64), (128, 784, 128), (256, 784, 128)]


def per_call(fn, reps: int = 400) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e6


def main() -> None:
    openblas = blas.find()
    if openblas is None:
        raise SystemExit("NumPy's OpenBLAS was not found: npae's GEMMs run on np.matmul here")
    rng = np.random.default_rng(0)
    for m, k, n in SHAPES:
        a = rng.random((m, k), dtype=np.float32)
        b = rng.random((k, n), dtype=np.float32)
        times = time_ways(openblas, a, b, np.empty((m, n), np.float32))
        row = ", ".join(f"{name} {np.median(t):.1f} us" for name, t in times.items())
        print(f"{m}x{k}x{n} ({m * k * n / 1e6:.1f}M multiply-adds, split into {blas.split(m, n, k, 2)[0]}): {row}")


def time_ways(openblas, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> dict[str, list[float]]:
    def one_thread():
        with openblas.single_threaded():
            np.matmul(a, b, out=out)

    ways = {"OpenBLAS pool": lambda: np.matmul(a, b, out=out), "one OpenBLAS thread": one_thread,
            "npae split": lambda: blas.matmul(a, b, out)}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(7):
        for name, fn in ways.items():
            times[name].append(per_call(fn))
    return times

if __name__ == "__main__":
    main()
