"""The hot loops, as Numba kernels, each beside a plain-NumPy twin.

Every public kernel ``f`` has a reference twin ``f_ref`` with the same signature and the same
result: the twin is slow and obvious, the kernel is fast. The tests hold one against the other
for random shapes in float32 and float64.

All images are channels-last: ``x`` has shape ``(N, H, W, C)``. A sliding window is described by
its size ``(kh, kw)``, stride ``(sh, sw)``, the padding before it ``(pt, pl)`` (top, left) and the
output size ``(ho, wo)``; the padding after it follows from those. :func:`window_geometry`
computes them with TensorFlow's rules.

The kernels are compiled lazily (on first call, for the dtypes actually used) and cached on
disk, so ``import npae`` compiles nothing. Parallel loops run over the batch axis: each thread
owns whole images, so scatter-adds (col2im, pooling backward) never race.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import prange

__all__ = [
    "window_geometry",
    "im2col", "im2col_ref", "col2im", "col2im_ref",
    "maxpool_forward", "maxpool_forward_ref", "maxpool_backward", "maxpool_backward_ref",
    "upsample_forward", "upsample_forward_ref", "upsample_backward", "upsample_backward_ref",
    "tap_sum", "tap_sum_ref",
]

# Numba's OpenMP threads and OpenBLAS's threads both spin-wait; on 2 cores they steal each other's
# time (measured: a 0.03 ms kernel took 4.8 ms right after a GEMM). The workqueue layer does not
# spin. A user's NUMBA_THREADING_LAYER still wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

_jit = numba.njit(cache=True, parallel=True, fastmath=False)
_serial = numba.njit(cache=True)


def window_geometry(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """Output size and padding of a sliding window along one axis (TensorFlow's rules).

    'valid': out = floor((n - k) / s) + 1, no padding.
    'same':  out = ceil(n / s), total pad P = max((out - 1) * s + k - n, 0),
             before = P // 2, after = P - before (the odd pixel goes bottom/right).

    Parameters
    ----------
    n : input length; k : window length; s : stride; padding : 'valid' or 'same'.

    Returns
    -------
    (out, pad_before, pad_after)
    """
    if padding == "valid":
        if n < k:
            raise ValueError(
                f"window of size {k} does not fit a 'valid' input of size {n}: "
                f"expected an input of at least {k}, got {n}"
            )
        return (n - k) // s + 1, 0, 0
    if padding == "same":
        out = math.ceil(n / s)
        total = max((out - 1) * s + k - n, 0)
        return out, total // 2, total - total // 2
    raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


def _pad_after(h, w, kh, kw, sh, sw, pt, pl, ho, wo):
    """Bottom and right padding that make ho x wo windows fit (for the NumPy twins)."""
    return max((ho - 1) * sh + kh - h - pt, 0), max((wo - 1) * sw + kw - w - pl, 0)


# ----------------------------------------------------------------------------------------------
# im2col: (N, H, W, C) -> (N*ho*wo, kh*kw*C). Row r = (n, i, j) holds the window whose top-left
# corner is (i*sh - pt, j*sw - pl); its columns are ordered (di, dj, c), which is exactly the
# row order of a Keras kernel (kh, kw, cin, cout) reshaped to (kh*kw*cin, cout).
# ----------------------------------------------------------------------------------------------
@_jit
def im2col(x, kh, kw, sh, sw, pt, pl, ho, wo, out=None):
    n, h, w, c = x.shape
    cols = np.empty((n * ho * wo, kh * kw * c), dtype=x.dtype) if out is None else out
    for b in prange(n):
        for i in range(ho):
            for j in range(wo):
                row = (b * ho + i) * wo + j
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
    return cols


def im2col_ref(x, kh, kw, sh, sw, pt, pl, ho, wo, out=None):
    """NumPy twin of :func:`im2col`: pad with zeros, then copy one strided slice per (di, dj).
    ``out`` (both versions): an (N*ho*wo, kh*kw*C) array to fill instead of a new one."""
    n, h, w, c = x.shape
    pb, pr = _pad_after(h, w, kh, kw, sh, sw, pt, pl, ho, wo)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cols = np.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for di in range(kh):
        for dj in range(kw):
            cols[:, :, :, di, dj, :] = xp[:, di:di + sh * (ho - 1) + 1:sh, dj:dj + sw * (wo - 1) + 1:sw, :]
    if out is None:
        return cols.reshape(n * ho * wo, kh * kw * c)
    out[...] = cols.reshape(out.shape)
    return out


# col2im: the adjoint of im2col. Every column entry is added back to the pixel it was copied from;
# entries that came from the zero padding are dropped. Shape (N*ho*wo, kh*kw*C) -> (N, H, W, C).
@_jit
def col2im(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, ho, wo):
    dx = np.zeros((n, h, w, c), dtype=cols.dtype)
    for b in prange(n):  # one thread per image: the scatter-add below never races
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


def col2im_ref(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, ho, wo):
    """NumPy twin of :func:`col2im`. For a fixed (di, dj) the target pixels are distinct, so a
    strided ``+=`` per (di, dj) loses no update."""
    pb, pr = _pad_after(h, w, kh, kw, sh, sw, pt, pl, ho, wo)
    dxp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=cols.dtype)
    c6 = cols.reshape(n, ho, wo, kh, kw, c)
    for di in range(kh):
        for dj in range(kw):
            dxp[:, di:di + sh * (ho - 1) + 1:sh, dj:dj + sw * (wo - 1) + 1:sw, :] += c6[:, :, :, di, dj, :]
    return dxp[:, pt:pt + h, pl:pl + w, :].copy()


# ----------------------------------------------------------------------------------------------
# Max pooling. Padding counts as -inf, so it never wins. argmax holds, per output, the flat
# index y*W + x of the winning input pixel; ties go to the first in row-major window order.
# ----------------------------------------------------------------------------------------------
@_jit
def maxpool_forward(x, kh, kw, sh, sw, pt, pl, ho, wo, argmax_out=None):
    n, h, w, c = x.shape
    out = np.empty((n, ho, wo, c), dtype=x.dtype)
    argmax = np.empty((n, ho, wo, c), dtype=np.int32) if argmax_out is None else argmax_out
    for b in prange(n):
        for i in range(ho):
            y0, y1 = max(i * sh - pt, 0), min(i * sh - pt + kh, h)  # the window's rows inside the image
            for j in range(wo):
                x0, x1 = max(j * sw - pl, 0), min(j * sw - pl + kw, w)
                # start from the first real pixel (padding is -inf and never wins), then scan the
                # window with the channel loop innermost: contiguous, so it vectorises
                for ch in range(c):
                    out[b, i, j, ch] = x[b, y0, x0, ch]
                    argmax[b, i, j, ch] = y0 * w + x0
                for y in range(y0, y1):
                    for xx in range(x0, x1):
                        k = y * w + xx
                        for ch in range(c):
                            v = x[b, y, xx, ch]
                            if v > out[b, i, j, ch]:
                                out[b, i, j, ch] = v
                                argmax[b, i, j, ch] = k
    return out, argmax


def maxpool_forward_ref(x, kh, kw, sh, sw, pt, pl, ho, wo, argmax_out=None):
    """NumPy twin of :func:`maxpool_forward`: pad with -inf, view every window, take argmax.
    ``argmax_out`` (both versions): an int32 (N, ho, wo, C) array to fill instead of a new one."""
    n, h, w, c = x.shape
    pb, pr = _pad_after(h, w, kh, kw, sh, sw, pt, pl, ho, wo)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw][:, :ho, :wo]
    flat = win.reshape(n, ho, wo, c, kh * kw)  # (N, ho, wo, C, kh*kw)
    k = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    y = np.arange(ho)[None, :, None, None] * sh - pt + k // kw
    xx = np.arange(wo)[None, None, :, None] * sw - pl + k % kw
    argmax = (y * w + xx).astype(np.int32)
    if argmax_out is not None:
        argmax_out[...] = argmax
        argmax = argmax_out
    return out.astype(x.dtype), argmax


@_jit
def maxpool_backward(grad, argmax, h, w):
    n, ho, wo, c = grad.shape
    dx = np.zeros((n, h, w, c), dtype=grad.dtype)
    for b in prange(n):  # overlapping windows may share a winner: per-image threads, no race
        for i in range(ho):
            for j in range(wo):
                for ch in range(c):
                    k = argmax[b, i, j, ch]
                    dx[b, k // w, k % w, ch] += grad[b, i, j, ch]
    return dx


def maxpool_backward_ref(grad, argmax, h, w):
    """NumPy twin of :func:`maxpool_backward`: one unbuffered ``np.add.at`` scatter."""
    n, ho, wo, c = grad.shape
    dx = np.zeros((n, h * w, c), dtype=grad.dtype)
    b = np.arange(n)[:, None, None, None]
    ch = np.arange(c)[None, None, None, :]
    np.add.at(dx, (np.broadcast_to(b, grad.shape), argmax, np.broadcast_to(ch, grad.shape)), grad)
    return dx.reshape(n, h, w, c)


# ----------------------------------------------------------------------------------------------
# Nearest-neighbour upsampling by (sh, sw): out[n, y, x] = in[n, y // sh, x // sw]. Its adjoint
# sums each sh x sw block of the output gradient (not a subsample of it).
# ----------------------------------------------------------------------------------------------
@_jit
def upsample_forward(x, sh, sw):
    n, h, w, c = x.shape
    out = np.empty((n, h * sh, w * sw, c), dtype=x.dtype)
    for b in prange(n):
        for i in range(h):
            for j in range(w):
                for a in range(sh):
                    for d in range(sw):
                        for ch in range(c):
                            out[b, i * sh + a, j * sw + d, ch] = x[b, i, j, ch]
    return out


def upsample_forward_ref(x, sh, sw):
    """NumPy twin of :func:`upsample_forward`."""
    return np.repeat(np.repeat(x, sh, axis=1), sw, axis=2)


@_jit
def upsample_backward(grad, sh, sw):
    n, hh, ww, c = grad.shape
    h, w = hh // sh, ww // sw
    dx = np.zeros((n, h, w, c), dtype=grad.dtype)
    for b in prange(n):
        for i in range(h):
            for j in range(w):
                for a in range(sh):
                    for d in range(sw):
                        for ch in range(c):
                            dx[b, i, j, ch] += grad[b, i * sh + a, j * sw + d, ch]
    return dx


def upsample_backward_ref(grad, sh, sw):
    """NumPy twin of :func:`upsample_backward`."""
    n, hh, ww, c = grad.shape
    return grad.reshape(n, hh // sh, sh, ww // sw, sw, c).sum(axis=(2, 4))


# ----------------------------------------------------------------------------------------------
# tap_sum: the second half of a convolution computed tap by tap. Given per-pixel tap products
# Y[n, y, x, (di, dj, o)] = sum_c x[n, y, x, c] * w[di, dj, c, o], the output is
# z[n, i, j, o] = sum_{di, dj} Y[n, i*sh - pt + di, j*sw - pl + dj, (di, dj, o)] (zero outside).
# ----------------------------------------------------------------------------------------------
@_jit
def tap_sum(y, kh, kw, cout, sh, sw, pt, pl, ho, wo):
    n, h, w, _ = y.shape
    z = np.zeros((n, ho, wo, cout), dtype=y.dtype)
    for b in prange(n):
        for i in range(ho):
            for di in range(kh):
                yy = i * sh - pt + di
                if yy < 0 or yy >= h:
                    continue
                for j in range(wo):
                    for dj in range(kw):
                        xx = j * sw - pl + dj
                        if xx < 0 or xx >= w:
                            continue
                        base = (di * kw + dj) * cout
                        for o in range(cout):
                            z[b, i, j, o] += y[b, yy, xx, base + o]
    return z


def tap_sum_ref(y, kh, kw, cout, sh, sw, pt, pl, ho, wo):
    """NumPy twin of :func:`tap_sum`: pad, then add one strided slice per tap."""
    n, h, w, _ = y.shape
    pb, pr = _pad_after(h, w, kh, kw, sh, sw, pt, pl, ho, wo)
    yp = np.pad(y, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    z = np.zeros((n, ho, wo, cout), dtype=y.dtype)
    for di in range(kh):
        for dj in range(kw):
            base = (di * kw + dj) * cout
            z += yp[:, di:di + sh * (ho - 1) + 1:sh, dj:dj + sw * (wo - 1) + 1:sw, base:base + cout]
    return z
