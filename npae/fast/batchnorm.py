"""Batch normalisation over the rows of a (M, C) array (channels last: every axis but the last
flattened into M), the maths of :mod:`npae.functional.batchnorm`, in three passes over memory in
training and one in inference, optionally with a ReLU after it (fused by the planner).

    training forward    mean, var (C,) in float64 (two passes: the mean, then the centred squares)
                        y = (x - mean) * inv * gamma + beta,   a = relu(y) or y
    backward            dy = g * (a > 0) or g;  sums over the rows of dy and dy * xhat, xhat
                        recomputed from x (nothing like x is kept but x itself), then
                        dx = gamma * inv * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)
    inference forward   y = (x - mean) * inv * gamma + beta with the given statistics
    inference backward  dx = gamma * inv * dy

Rows are split into one block per thread; each thread sums its block into its own row of a
(threads, C) float64 array, and the blocks' sums are added after (no races, a fixed order: the
same numbers on every run with the same thread count).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .runtime import parallel_sums, rows_kernel

__all__ = ["ROWS_PER_BLOCK", "blocks", "batch_stats", "normalize", "backward_sums", "backward_dx", "affine_dx"]

ROWS_PER_BLOCK = 256  # a block of rows per thread has at least this many rows


def blocks(m: int) -> int:
    """How many blocks of rows (one per thread, each of at least ROWS_PER_BLOCK rows)."""
    return max(1, min(numba.get_num_threads(), m // ROWS_PER_BLOCK))


@parallel_sums
def _batch_stats(x, nblocks, mean, var):
    m, c = x.shape
    part = np.zeros((nblocks, c))
    for t in prange(nblocks):
        for i in range(t * m // nblocks, (t + 1) * m // nblocks):
            for j in range(c):
                part[t, j] += x[i, j]
    for j in range(c):
        s = 0.0
        for t in range(nblocks):
            s += part[t, j]
        mean[j] = s / m
    part[:] = 0.0
    for t in prange(nblocks):
        for i in range(t * m // nblocks, (t + 1) * m // nblocks):
            for j in range(c):
                d = x[i, j] - mean[j]
                part[t, j] += d * d
    for j in range(c):
        s = 0.0
        for t in range(nblocks):
            s += part[t, j]
        var[j] = s / m


def batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, biased variance), each (C,) float64, of x (M, C) C-contiguous."""
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    _batch_stats(x, blocks(len(x)), mean, var)
    return mean, var


@rows_kernel
def _normalize(x, mean, scale, beta, relu, zero, out, nblocks):
    m, c = x.shape
    for t in prange(nblocks):
        for i in range(t * m // nblocks, (t + 1) * m // nblocks):
            for j in range(c):
                y = (x[i, j] - mean[j]) * scale[j] + beta[j]
                out[i, j] = y if not relu or y > zero else zero


def normalize(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, beta: np.ndarray, relu: bool,
              out: np.ndarray) -> np.ndarray:
    """out (M, C) <- (x - mean) * scale + beta (scale = gamma * inv), then relu if ``relu``; every
    (C,) vector in x's dtype, every array C-contiguous."""
    _normalize(x, mean, scale, beta, relu, x.dtype.type(0), out, blocks(len(x)))
    return out


@parallel_sums
def _backward_sums(g, a, x, mean, inv, relu, nblocks, sums):
    m, c = x.shape
    part = np.zeros((nblocks, 2, c))
    for t in prange(nblocks):
        for i in range(t * m // nblocks, (t + 1) * m // nblocks):
            for j in range(c):
                dy = g[i, j] if not relu or a[i, j] > 0 else 0.0
                part[t, 0, j] += dy
                part[t, 1, j] += dy * ((x[i, j] - mean[j]) * inv[j])
    for k in range(2):
        for j in range(c):
            s = 0.0
            for t in range(nblocks):
                s += part[t, k, j]
            sums[k, j] = s


def backward_sums(g: np.ndarray, a: np.ndarray, x: np.ndarray, mean: np.ndarray, inv: np.ndarray,
                  relu: bool) -> np.ndarray:
    """(2, C) float64: the sums over the rows of dy and of dy * xhat, xhat = (x - mean) * inv,
    dy = g where a > 0 (a the output) if ``relu``, else g. All (M, C) arrays C-contiguous."""
    sums = np.empty((2, x.shape[1]))
    _backward_sums(g, a, x, mean, inv, relu, blocks(len(x)), sums)
    return sums


@rows_kernel
def _backward_dx(g, a, x, mean, inv, scale, mean_dy, mean_dy_xhat, relu, zero, dx, nblocks):
    m, c = x.shape
    for t in prange(nblocks):
        for i in range(t * m // nblocks, (t + 1) * m // nblocks):
            for j in range(c):
                dy = g[i, j] if not relu or a[i, j] > zero else zero
                xhat = (x[i, j] - mean[j]) * inv[j]
                dx[i, j] = scale[j] * (dy - mean_dy[j] - xhat * mean_dy_xhat[j])


def backward_dx(g, a, x, mean, inv, scale, sums: np.ndarray, relu: bool, dx: np.ndarray) -> np.ndarray:
    """dx (M, C) <- scale * (dy - mean(dy) - xhat * mean(dy * xhat)), scale = gamma * inv, the
    means from :func:`backward_sums`' ``sums``; dx may be g itself."""
    dtype = x.dtype.type
    m = len(x)
    _backward_dx(g, a, x, mean, inv, scale, (sums[0] / m).astype(dtype), (sums[1] / m).astype(dtype), relu,
                 dtype(0), dx, blocks(m))
    return dx


@rows_kernel
def _affine_dx(g, a, scale, relu, zero, dx, nblocks):
    m, c = g.shape
    for t in prange(nblocks):
        for i in range(t * m // nblocks, (t + 1) * m // nblocks):
            for j in range(c):
                dy = g[i, j] if not relu or a[i, j] > zero else zero
                dx[i, j] = scale[j] * dy


def affine_dx(g: np.ndarray, a: np.ndarray, scale: np.ndarray, relu: bool, dx: np.ndarray) -> np.ndarray:
    """Inference mode: dx (M, C) <- scale * dy, dy as in :func:`backward_sums`; dx may be g."""
    _affine_dx(g, a, scale, relu, g.dtype.type(0), dx, blocks(len(g)))
    return dx
