"""Max pooling as parallel Numba kernels (the reference: :mod:`npae.functional.pool`).

Padding counts as -inf, so it never wins; ties go to the first in row-major window order, as in
the reference. Instead of the reference's winner index, ``argmax`` holds per output where the
winner sits in its window as dy << s | dx: a uint8 with s = 4 when the window fits in 16 x 16
(the tutorial's 2 x 2: a quarter of an int32's memory), else an int32 with s = 16
(:func:`argmax_dtype`). The backward pass adds the window's origin (i*sh - pt, j*sw - pl) back.
A window is described by (kh, kw, sh, sw, pt, pl) as in :mod:`npae.fast.im2col`.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .runtime import inline, parallel, serial

__all__ = ["argmax_dtype", "maxpool_forward", "maxpool_backward", "max_of_2x2", "code_shift", "no_argmax"]


def _expect(a, shape, dtype, what):
    if a.shape != tuple(shape) or a.dtype != dtype:
        raise ValueError(f"{what}: expected shape {tuple(shape)} and dtype {np.dtype(dtype)}, got {a.shape} {a.dtype}")


def argmax_dtype(kh: int, kw: int) -> np.dtype:
    """The dtype of max pooling's argmax for a kh x kw window: uint8 up to 16 x 16, else int32."""
    return np.dtype(np.uint8 if max(kh, kw) <= 16 else np.int32)


@serial
def code_shift(itemsize):
    """s in the winner code dy << s | dx, from the argmax array's item size (see argmax_dtype)."""
    return 4 if itemsize == 1 else 16


def maxpool_forward(x, kh, kw, sh, sw, pt, pl, ho, wo, argmax_out=None, out=None):
    """Max over each window of x (N, H, W, C): returns (out, argmax), both (N, ho, wo, C), argmax of
    ``argmax_dtype(kh, kw)``. ``argmax_out`` and ``out``: arrays to fill instead of new ones."""
    n, h, w, c = x.shape
    if min(ho, wo) < 1 or (ho - 1) * sh - pt >= h or (wo - 1) * sw - pl >= w or pt >= kh or pl >= kw:
        raise ValueError(f"maxpool_forward: {ho}x{wo} windows of {kh}x{kw} (stride {sh}x{sw}, padding {pt}, {pl}) "
                         f"include windows outside an image of {h}x{w}")
    argmax = np.empty((n, ho, wo, c), argmax_dtype(kh, kw)) if argmax_out is None else argmax_out
    out = np.empty((n, ho, wo, c), x.dtype) if out is None else out
    _expect(argmax, (n, ho, wo, c), argmax_dtype(kh, kw), "maxpool_forward argmax")
    _expect(out, (n, ho, wo, c), x.dtype, "maxpool_forward out")
    _maxpool_forward(x, kh, kw, sh, sw, pt, pl, argmax, out)
    return out, argmax


@inline
def max_of_2x2(xb, y0, x0, o, a, s):
    """The common 2x2 window, whole: o (C,) <- the max over xb[y0:y0 + 2, x0:x0 + 2] (xb (H, W, C))
    and a (C,) <- its winner's code (the first in row-major order on ties). The running max stays
    in registers and the channel loop vectorises (see docs/performance.md)."""
    p00, p01, p10, p11 = xb[y0, x0], xb[y0, x0 + 1], xb[y0 + 1, x0], xb[y0 + 1, x0 + 1]
    for ch in range(o.shape[0]):
        m, k = p00[ch], 0
        if p01[ch] > m:
            m, k = p01[ch], 1
        if p10[ch] > m:
            m, k = p10[ch], 1 << s
        if p11[ch] > m:
            m, k = p11[ch], (1 << s) | 1
        o[ch], a[ch] = m, k


@parallel
def _maxpool_forward(x, kh, kw, sh, sw, pt, pl, argmax, out):
    n, h, w, c = x.shape
    _, ho, wo, _ = out.shape
    s = code_shift(argmax.itemsize)
    for b in prange(n):
        for i in range(ho):
            wy = i * sh - pt  # the window's top row (negative inside the padding)
            y0, y1 = max(wy, 0), min(wy + kh, h)  # its rows inside the image
            for j in range(wo):
                wx = j * sw - pl
                x0, x1 = max(wx, 0), min(wx + kw, w)
                o, a = out[b, i, j], argmax[b, i, j]  # (C,) each
                if y1 - y0 == 2 and x1 - x0 == 2 and kh == 2 and kw == 2:
                    max_of_2x2(x[b], y0, x0, o, a, s)
                    continue
                # any other window: start from the first real pixel (padding is -inf and never
                # wins), then scan it with the contiguous channel loop innermost
                for ch in range(c):
                    o[ch] = x[b, y0, x0, ch]
                    a[ch] = (y0 - wy) << s | (x0 - wx)
                for y in range(y0, y1):
                    for xx in range(x0, x1):
                        k = (y - wy) << s | (xx - wx)
                        for ch in range(c):
                            v = x[b, y, xx, ch]
                            if v > o[ch]:
                                o[ch] = v
                                a[ch] = k


@inline
def _unpool_2x2(grad, argmax, pooled, relu, dx, s):
    """One image's 2x2 stride-2 pooling backward, the tutorial's: every input pixel has at most one
    window, (y // 2, x // 2), where its code is (y % 2) << s | x % 2. Written once each, no zero
    fill and no scatter: the channel loop vectorises.
    grad, argmax, pooled (ho, wo, C), dx (h, w, C); ``relu``: through a relu, as maxpool_backward."""
    ho, wo, c = grad.shape
    h, w = dx.shape[0], dx.shape[1]
    zero = dx.dtype.type(0)
    for y in range(h):
        for xx in range(w):
            o = dx[y, xx]
            i, j = y >> 1, xx >> 1
            if i >= ho or j >= wo:  # 'valid' with an odd size: the last row/column
                o[:] = zero
                continue
            code = argmax.dtype.type((y & 1) << s | (xx & 1))  # compared in argmax's own type
            g, a, p = grad[i, j], argmax[i, j], pooled[i, j]
            for ch in range(c):
                o[ch] = g[ch] if a[ch] == code and (not relu or p[ch] > zero) else zero


@parallel
def _maxpool_backward(grad, argmax, kh, kw, sh, sw, pt, pl, dx, pooled, relu):
    n, ho, wo, c = grad.shape
    _, h, w, _ = dx.shape
    s = code_shift(argmax.itemsize)
    zero = dx.dtype.type(0)
    if kh == 2 and kw == 2 and sh == 2 and sw == 2 and pt == 0 and pl == 0:
        for b in prange(n):
            _unpool_2x2(grad[b], argmax[b], pooled[b], relu, dx[b], s)
        return dx
    flat = dx.reshape(n, h * w, c)
    for b in prange(n):  # overlapping windows may share a winner: per-image threads, no race
        dxb = flat[b]  # (h*w, C)
        dxb[...] = 0
        for i in range(ho):
            for j in range(wo):
                g, a, p = grad[b, i, j], argmax[b, i, j], pooled[b, i, j]
                wy, wx = i * sh - pt, j * sw - pl  # the window's top-left
                for ch in range(c):
                    if relu and p[ch] <= zero:
                        continue
                    code = np.int64(a[ch])
                    y, xx = wy + (code >> s), wx + (code & ((1 << s) - 1))
                    if 0 <= y < h and 0 <= xx < w:  # (always, for an argmax from maxpool_forward)
                        dxb[y * w + xx, ch] += g[ch]
    return dx


def maxpool_backward(grad, argmax, h, w, kh, kw, sh, sw, pt, pl, out=None, relu_of=None):
    """dL/dx (N, h, w, C) of max pooling: each output gradient goes to its window's winner
    (``argmax`` from :func:`maxpool_forward` with the same strides and padding).

    ``relu_of``: the pooled output (N, ho, wo, C) when the pooled input x = relu(z); then the
    result is dL/dz, through the relu too. At a winner relu'(z) = 1[x > 0] = 1[pooled > 0], and
    elsewhere the gradient is 0 anyway: one pass, where the relu's own took another over dL/dx."""
    dx = np.empty((grad.shape[0], h, w, grad.shape[3]), grad.dtype) if out is None else out
    _expect(dx, (grad.shape[0], h, w, grad.shape[3]), grad.dtype, "maxpool_backward out")
    _expect(argmax, grad.shape, argmax_dtype(kh, kw), "maxpool_backward argmax")
    if relu_of is not None:
        _expect(relu_of, grad.shape, grad.dtype, "maxpool_backward relu_of")
    relu = relu_of is not None
    return _maxpool_backward(grad, argmax, kh, kw, sh, sw, pt, pl, dx, relu_of if relu else grad, relu)


def no_argmax(argmax):
    """argmax, or an empty uint8 array for "no pooling": one compiled kernel serves both."""
    return np.empty((0, 0, 0, 0), np.uint8) if argmax is None else argmax
