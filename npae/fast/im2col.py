"""im2col and col2im as parallel Numba kernels: the patch matrix of a convolution and its adjoint.

The same layout as the reference :func:`npae.functional.conv.im2col` (rows (n, i, j), columns
(a, b, c), the kernel's row order), but reading the unpadded image: taps that fall in the padding
are written as zeros, and col2im drops them. Each thread owns whole images, so col2im's
scatter-add never races. A window is described by (kh, kw) its size, (sh, sw) its stride, (pt, pl)
the padding above and left, and (ho, wo) the number of windows.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .runtime import inline, parallel

__all__ = ["im2col", "im2col_image", "col2im"]

def _check_out(out, shape, dtype, what):
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"{what}: expected an out array of shape {shape} and dtype {dtype}, got {out.shape} "
                         f"{out.dtype}")


def im2col(x, kh, kw, sh, sw, pt, pl, ho, wo, out=None):
    """The patch matrix (N*ho*wo, kh*kw*C) of x (N, H, W, C), into ``out`` if given."""
    n, h, w, c = x.shape
    cols = np.empty((n * ho * wo, kh * kw * c), dtype=x.dtype) if out is None else out
    _check_out(cols, (n * ho * wo, kh * kw * c), x.dtype, "im2col")
    _im2col(x, kh, kw, sh, sw, pt, pl, ho, wo, cols)
    return cols


@parallel
def _im2col(x, kh, kw, sh, sw, pt, pl, ho, wo, cols):
    for b in prange(x.shape[0]):
        im2col_image(x, b, kh, kw, sh, sw, pt, pl, ho, wo, cols, b * ho * wo)


@inline
def im2col_image(x, b, kh, kw, sh, sw, pt, pl, ho, wo, cols, row0):
    """Image b's ho*wo rows of :func:`im2col`, written from row ``row0`` of ``cols`` on (for use
    inside other kernels)."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    for i in range(ho):
        for j in range(wo):
            row = row0 + i * wo + j
            for di in range(kh):
                y = i * sh - pt + di
                for dj in range(kw):
                    xx = j * sw - pl + dj
                    base = (di * kw + dj) * c
                    if 0 <= y < h and 0 <= xx < w:
                        for ch in range(c):
                            cols[row, base + ch] = x[b, y, xx, ch]
                    else:
                        for ch in range(c):
                            cols[row, base + ch] = 0


# col2im: the adjoint of im2col. Every column entry is added back to the pixel it was copied from;
# entries that came from the zero padding are dropped. Shape (N*ho*wo, kh*kw*C) -> (N, H, W, C).
def col2im(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, ho, wo, out=None, accumulate=False):
    """The adjoint of :func:`im2col`: cols (N*ho*wo, kh*kw*C) -> dx (N, H, W, C), into ``out`` if
    given (added to it with ``accumulate``)."""
    dx = np.empty((n, h, w, c), dtype=cols.dtype) if out is None else out
    _check_out(dx, (n, h, w, c), cols.dtype, "col2im")
    _check_out(cols, (n * ho * wo, kh * kw * c), dx.dtype, "col2im")
    return _col2im(cols, kh, kw, sh, sw, pt, pl, ho, wo, dx, accumulate)


@parallel
def _col2im(cols, kh, kw, sh, sw, pt, pl, ho, wo, dx, accumulate):
    n, h, w, c = dx.shape
    for b in prange(n):  # one thread per image: the scatter-add below never races
        if not accumulate:
            dx[b] = 0
        for i in range(ho):
            for j in range(wo):
                row = (b * ho + i) * wo + j
                for di in range(kh):
                    y = i * sh - pt + di
                    if y < 0 or y >= h:
                        continue
                    for dj in range(kw):
                        xx = j * sw - pl + dj
                        if xx < 0 or xx >= w:
                            continue
                        base = (di * kw + dj) * c
                        for ch in range(c):
                            dx[b, y, xx, ch] += cols[row, base + ch]
    return dx

