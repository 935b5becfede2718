"""Nearest-neighbour upsampling as parallel Numba kernels (the reference:
:mod:`npae.functional.upsample`): out[n, y, x] = in[n, y // sh, x // sw], and its adjoint, the sum
over each sh x sw block of the output gradient."""

from __future__ import annotations

import numpy as np
from numba import prange

from .runtime import parallel

__all__ = ["upsample_forward", "upsample_backward"]


def upsample_forward(x, sh, sw, out=None):
    """(N, H, W, C) -> (N, H*sh, W*sw, C), into ``out`` if given."""
    n, h, w, c = x.shape
    out = np.empty((n, h * sh, w * sw, c), dtype=x.dtype) if out is None else out
    if out.shape != (n, h * sh, w * sw, c) or out.dtype != x.dtype:
        raise ValueError(f"upsample_forward: expected out {(n, h * sh, w * sw, c)} {x.dtype}, got {out.shape} "
                         f"{out.dtype}")
    return _forward(x, sh, sw, out)


def upsample_backward(grad, sh, sw, out=None):
    """(N, H*sh, W*sw, C) -> (N, H, W, C): each block's sum, into ``out`` if given."""
    n, hh, ww, c = grad.shape
    shape = (n, hh // sh, ww // sw, c)
    dx = np.empty(shape, dtype=grad.dtype) if out is None else out
    if hh % sh or ww % sw or dx.shape != shape or dx.dtype != grad.dtype:
        raise ValueError(f"upsample_backward: expected a gradient of whole {sh}x{sw} blocks and out {shape} "
                         f"{grad.dtype}, got {grad.shape} and {dx.shape} {dx.dtype}")
    return _backward(grad, sh, sw, dx)


@parallel
def _forward(x, sh, sw, out):
    n, h, w, c = x.shape
    for b in prange(n):
        for i in range(h):
            for j in range(w):
                for a in range(sh):
                    for d in range(sw):
                        for ch in range(c):
                            out[b, i * sh + a, j * sw + d, ch] = x[b, i, j, ch]
    return out


@parallel
def _backward(grad, sh, sw, dx):
    n, h, w, c = dx.shape
    for b in prange(n):
        dx[b] = 0
        for i in range(h):
            for j in range(w):
                for a in range(sh):
                    for d in range(sw):
                        for ch in range(c):
                            dx[b, i, j, ch] += grad[b, i * sh + a, j * sw + d, ch]
    return dx
