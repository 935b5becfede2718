"""The hot loops, as Numba kernels, each beside a plain-NumPy twin.

Every public kernel ``f`` has a reference twin ``f_ref`` with the same signature and the same
result: the twin is slow and obvious, the kernel is fast. The tests hold one against the other
for random shapes in float32 and float64. (``upsampled_phases``, ``fold_kernel`` and
``unfold_kernel_grad`` are plain-NumPy helpers of the direct and im2col convolutions.)

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

import numba
import numpy as np
from numba import prange

__all__ = [
    "window_geometry",
    "im2col", "im2col_ref", "col2im", "col2im_ref",
    "argmax_dtype", "maxpool_forward", "maxpool_forward_ref", "maxpool_backward", "maxpool_backward_ref",
    "upsample_forward", "upsample_forward_ref", "upsample_backward", "upsample_backward_ref",
    "conv2d_s1", "conv2d_s1_ref", "conv2d_s1_input_grad", "conv2d_s1_input_grad_ref",
    "conv2d_s1_kernel_grad", "conv2d_s1_kernel_grad_ref", "upsampled_phases", "fold_kernel", "unfold_kernel_grad",
]

from ._threads import configure_numba
from .elementwise import activate, bias_act_forward_ref

configure_numba(numba)  # the threading layer: see npae/_threads.py

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


def _into(out, result):
    """The twins' ``out=`` convention: ``result`` itself, or copied into ``out`` (same shape)."""
    if out is None:
        return result
    out[...] = result
    return out


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
        im2col_image(x, b, kh, kw, sh, sw, pt, pl, ho, wo, cols, b * ho * wo)
    return cols


@numba.njit(cache=True, inline="always")
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
    return _into(out, cols.reshape(n * ho * wo, kh * kw * c))


# col2im: the adjoint of im2col. Every column entry is added back to the pixel it was copied from;
# entries that came from the zero padding are dropped. Shape (N*ho*wo, kh*kw*C) -> (N, H, W, C).
@_jit
def col2im(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, ho, wo, out=None, accumulate=False):
    dx = np.empty((n, h, w, c), dtype=cols.dtype) if out is None else out
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


def col2im_ref(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, ho, wo, out=None, accumulate=False):
    """NumPy twin of :func:`col2im`. For a fixed (di, dj) the target pixels are distinct, so a
    strided ``+=`` per (di, dj) loses no update. ``out`` (both versions): an (N, H, W, C) array to
    fill instead of a new one, or with ``accumulate`` to add to."""
    pb, pr = _pad_after(h, w, kh, kw, sh, sw, pt, pl, ho, wo)
    dxp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=cols.dtype)
    c6 = cols.reshape(n, ho, wo, kh, kw, c)
    for di in range(kh):
        for dj in range(kw):
            dxp[:, di:di + sh * (ho - 1) + 1:sh, dj:dj + sw * (wo - 1) + 1:sw, :] += c6[:, :, :, di, dj, :]
    if accumulate:
        out += dxp[:, pt:pt + h, pl:pl + w, :]
        return out
    return _into(out, np.ascontiguousarray(dxp[:, pt:pt + h, pl:pl + w, :]))


# ----------------------------------------------------------------------------------------------
# Max pooling. Padding counts as -inf, so it never wins; ties go to the first in row-major window
# order. argmax holds, per output, where the winner sits in its window: dy << s | dx, in a uint8
# with s = 4 when the window fits in 16 x 16 (the tutorial's 2 x 2: a quarter of an int32's
# memory), else in an int32 with s = 16 (see argmax_dtype). The backward pass adds the window's
# origin (i*sh - pt, j*sw - pl) back.
# ----------------------------------------------------------------------------------------------
def argmax_dtype(kh: int, kw: int) -> np.dtype:
    """The dtype of max pooling's argmax for a kh x kw window: uint8 up to 16 x 16, else int32."""
    return np.dtype(np.uint8 if max(kh, kw) <= 16 else np.int32)


@numba.njit(cache=True)
def _code_shift(itemsize):
    """s in the winner code dy << s | dx, from the argmax array's item size (see argmax_dtype)."""
    return 4 if itemsize == 1 else 16


def maxpool_forward(x, kh, kw, sh, sw, pt, pl, ho, wo, argmax_out=None, out=None):
    """Max over each window of x (N, H, W, C): returns (out, argmax), both (N, ho, wo, C), argmax of
    ``argmax_dtype(kh, kw)``. ``argmax_out`` and ``out``: arrays to fill instead of new ones."""
    n, _, _, c = x.shape
    argmax = np.empty((n, ho, wo, c), argmax_dtype(kh, kw)) if argmax_out is None else argmax_out
    out = np.empty((n, ho, wo, c), x.dtype) if out is None else out
    _maxpool_forward(x, kh, kw, sh, sw, pt, pl, argmax, out)
    return out, argmax


@numba.njit(cache=True, inline="always")
def _max_of_2x2(xb, y0, x0, o, a, s):
    """The common 2x2 window, whole: o (C,) <- the max over xb[y0:y0 + 2, x0:x0 + 2] (xb (H, W, C))
    and a (C,) <- its winner's code (the first in row-major order on ties). The running max stays
    in registers and the channel loop vectorises (2-9x faster than the general loop)."""
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


@_jit
def _maxpool_forward(x, kh, kw, sh, sw, pt, pl, argmax, out):
    n, h, w, c = x.shape
    _, ho, wo, _ = out.shape
    s = _code_shift(argmax.itemsize)
    for b in prange(n):
        for i in range(ho):
            wy = i * sh - pt  # the window's top row (negative inside the padding)
            y0, y1 = max(wy, 0), min(wy + kh, h)  # its rows inside the image
            for j in range(wo):
                wx = j * sw - pl
                x0, x1 = max(wx, 0), min(wx + kw, w)
                o, a = out[b, i, j], argmax[b, i, j]  # (C,) each
                if y1 - y0 == 2 and x1 - x0 == 2 and kh == 2 and kw == 2:
                    _max_of_2x2(x[b], y0, x0, o, a, s)
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


def maxpool_forward_ref(x, kh, kw, sh, sw, pt, pl, ho, wo, argmax_out=None, out=None):
    """NumPy twin of :func:`maxpool_forward`: pad with -inf, view every window, take argmax."""
    n, h, w, c = x.shape
    pb, pr = _pad_after(h, w, kh, kw, sh, sw, pt, pl, ho, wo)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw][:, :ho, :wo]
    flat = win.reshape(n, ho, wo, c, kh * kw)  # (N, ho, wo, C, kh*kw)
    k = flat.argmax(axis=-1)
    win_max = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    dtype = argmax_dtype(kh, kw)
    argmax = ((k // kw) << _code_shift(dtype.itemsize) | (k % kw)).astype(dtype)
    return _into(out, win_max.astype(x.dtype)), _into(argmax_out, argmax)


@numba.njit(cache=True, inline="always")
def _unpool_2x2(grad, argmax, pooled, relu, dx, s):
    """One image's 2x2 stride-2 pooling backward, the tutorial's: every input pixel has at most one
    window, (y // 2, x // 2), where its code is (y % 2) << s | x % 2. Written once each, no zero
    fill and no scatter: the channel loop vectorises (4.0 -> 2.7 ms for 256 x 28 x 28 x 32 here).
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


@_jit
def _maxpool_backward(grad, argmax, kh, kw, sh, sw, pt, pl, dx, pooled, relu):
    n, ho, wo, c = grad.shape
    _, h, w, _ = dx.shape
    s = _code_shift(argmax.itemsize)
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
                    dxb[(wy + (code >> s)) * w + wx + (code & ((1 << s) - 1)), ch] += g[ch]
    return dx


def maxpool_backward(grad, argmax, h, w, kh, kw, sh, sw, pt, pl, out=None, relu_of=None):
    """dL/dx (N, h, w, C) of max pooling: each output gradient goes to its window's winner
    (``argmax`` from :func:`maxpool_forward` with the same strides and padding).

    ``relu_of``: the pooled output (N, ho, wo, C) when the pooled input x = relu(z); then the
    result is dL/dz, through the relu too. At a winner relu'(z) = 1[x > 0] = 1[pooled > 0], and
    elsewhere the gradient is 0 anyway: one pass, where the relu's own took another over dL/dx."""
    dx = np.empty((grad.shape[0], h, w, grad.shape[3]), grad.dtype) if out is None else out
    relu = relu_of is not None
    return _maxpool_backward(grad, argmax, kh, kw, sh, sw, pt, pl, dx, relu_of if relu else grad, relu)


def maxpool_backward_ref(grad, argmax, h, w, kh, kw, sh, sw, pt, pl, out=None, relu_of=None):
    """NumPy twin of :func:`maxpool_backward`: decode the winners, one unbuffered ``np.add.at``."""
    if relu_of is not None:
        grad = np.where(relu_of > 0, grad, 0)
    n, ho, wo, c = grad.shape
    s = _code_shift(argmax.dtype.itemsize)
    a = argmax.astype(np.int64)
    y = np.arange(ho)[None, :, None, None] * sh - pt + (a >> s)
    xx = np.arange(wo)[None, None, :, None] * sw - pl + (a & ((1 << s) - 1))
    dx = np.zeros((n, h * w, c), dtype=grad.dtype)
    b = np.arange(n)[:, None, None, None]
    ch = np.arange(c)[None, None, None, :]
    np.add.at(dx, (np.broadcast_to(b, grad.shape), y * w + xx, np.broadcast_to(ch, grad.shape)), grad)
    return _into(out, dx.reshape(n, h, w, c))


# ----------------------------------------------------------------------------------------------
# Nearest-neighbour upsampling by (sh, sw): out[n, y, x] = in[n, y // sh, x // sw]. Its adjoint
# sums each sh x sw block of the output gradient (not a subsample of it).
# ----------------------------------------------------------------------------------------------
@_jit
def upsample_forward(x, sh, sw, out=None):
    n, h, w, c = x.shape
    out = np.empty((n, h * sh, w * sw, c), dtype=x.dtype) if out is None else out
    for b in prange(n):
        for i in range(h):
            for j in range(w):
                for a in range(sh):
                    for d in range(sw):
                        for ch in range(c):
                            out[b, i * sh + a, j * sw + d, ch] = x[b, i, j, ch]
    return out


def upsample_forward_ref(x, sh, sw, out=None):
    """NumPy twin of :func:`upsample_forward`. ``out`` (both versions): the (N, H*sh, W*sw, C)
    array to fill instead of a new one."""
    return _into(out, np.repeat(np.repeat(x, sh, axis=1), sw, axis=2))


@_jit
def upsample_backward(grad, sh, sw, out=None):
    n, hh, ww, c = grad.shape
    h, w = hh // sh, ww // sw
    dx = np.empty((n, h, w, c), dtype=grad.dtype) if out is None else out
    for b in prange(n):
        dx[b] = 0
        for i in range(h):
            for j in range(w):
                for a in range(sh):
                    for d in range(sw):
                        for ch in range(c):
                            dx[b, i, j, ch] += grad[b, i * sh + a, j * sw + d, ch]
    return dx


def upsample_backward_ref(grad, sh, sw, out=None):
    """NumPy twin of :func:`upsample_backward`. ``out`` (both versions): the (N, H/sh, W/sw, C)
    array to fill instead of a new one."""
    n, hh, ww, c = grad.shape
    return _into(out, grad.reshape(n, hh // sh, sh, ww // sw, sw, c).sum(axis=(2, 4)))


# ----------------------------------------------------------------------------------------------
# Direct stride-1 convolution on zero-padded planes, for layers with few channels, where im2col's
# patch matrix (kh*kw times the input) costs more memory traffic than the arithmetic it feeds:
#
#   z[n, i, j, o] = sum_{di, dj, c} x[n, i - pt + di, j - pl + dj, c] * w[di, dj, c, o]
#
# Per image, each channel becomes one flat zero-padded plane xs[c] of rows of width wp = wo + kw - 1
# (the image starts at row pt, column pl). An output plane uses the same row width, so output
# (i, j) sits at q = i*wp + j and its tap (di, dj) reads xs[c][q + di*wp + dj]: every tap is one
# long contiguous axpy  zs[o][:] += w[di, dj, c, o] * xs[c][off:off + ho*wp]  that vectorises. The
# kw - 1 extra columns per output row are junk and dropped when writing back to channels-last.
# (Loops index slices from 0 upward: a computed, possibly negative index costs Numba a
# wrap-around check per element, which stops vectorisation; measured 10x slower.)
#
# UpSampling2D by (uh, uw) followed by a direct Conv2D never forms the upsampled image. Along one
# axis, output i = uh*a + p (phase p) reads upsampled row i - pt + d, which is small row
# a + floor((p - pt + d) / uh): for each phase the taps d fall on a few consecutive small rows, and
# taps that fall on the same one act as one tap with their weights summed. So the convolution of the
# upsampled image is uh*uw convolutions of the small one, with folded kernels (2x2 from 3x3 for
# uh = uw = 2), each writing every uh-th row and uw-th column of the output: 16 instead of 36
# multiply-adds per 2x2 output block, and planes a quarter the size. Their gradients follow phase
# by phase: a folded tap's gradient goes to each tap that was folded into it, and the input gradient
# is the sum over phases of each phase convolution's adjoint.
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _fill_planes(xb, pt, pl, wp, xs):
    """Copy an (H, W, C) image into the planes xs (C, hp*wp) at row pt, column pl. Only pixels that
    some output reads are written; the rest of xs is the zero border, set once by the caller and
    never touched, so one xs serves every image of a thread."""
    h, w, c = xb.shape
    hp = xs.shape[1] // wp
    for y in range(min(h, hp - pt)):
        for xx in range(min(w, wp - pl)):
            q = (y + pt) * wp + xx + pl
            for ch in range(c):
                xs[ch, q] = xb[y, xx, ch]


@numba.njit(cache=True)
def _store_planes(zs, wp, ob, ph, uh, uw, bias, act, one):
    """Planes zs (C, nh*wp) back to channels-last ob (ho, wo, C) as act(z + bias) (act coded as in
    npae.elementwise), dropping the junk columns: output (i, j) of phase ph = (py, px, _, _, _, _, nh,
    nw) is pixel (py + uh*i, px + uw*j)."""
    c = zs.shape[0]
    py, px, nh, nw = ph[0], ph[1], ph[6], ph[7]
    for i in range(nh):
        orow = ob[py + uh * i]
        for j in range(nw):
            o = orow[px + uw * j]
            for oo in range(c):
                o[oo] = activate(zs[oo, i * wp + j] + bias[oo], act, one)


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _conv_planes(xs, w, zs, wp, m, base, accumulate):
    """zs[o] (+)= sum over c, di, dj of w[di, dj, c, o] * xs[c][base + di*wp + dj:][:m], any kernel
    size: one tap per sweep, four output planes per sweep (every x load feeds four FMAs), then the
    remaining planes with four input channels per sweep. Without ``accumulate`` the first tap sets."""
    kh, kw, cin, cout = w.shape
    cin4, cout4 = cin - cin % 4, cout - cout % 4
    for o in range(0, cout4, 4):  # four output planes per pass: every x load feeds four FMAs
        z0, z1, z2, z3 = zs[o, :m], zs[o + 1, :m], zs[o + 2, :m], zs[o + 3, :m]
        for c in range(cin):
            for di in range(kh):
                for dj in range(kw):
                    wt = w[di, dj, c]
                    w0, w1, w2, w3 = wt[o], wt[o + 1], wt[o + 2], wt[o + 3]
                    off = base + di * wp + dj
                    xo = xs[c, off:off + m]
                    if c == 0 and di == 0 and dj == 0 and not accumulate:  # the first tap sets
                        for q in range(m):
                            z0[q], z1[q], z2[q], z3[q] = w0 * xo[q], w1 * xo[q], w2 * xo[q], w3 * xo[q]
                    else:
                        for q in range(m):
                            xv = xo[q]
                            z0[q] += w0 * xv
                            z1[q] += w1 * xv
                            z2[q] += w2 * xv
                            z3[q] += w3 * xv
    for o in range(cout4, cout):  # the other planes one at a time, four input channels per pass
        zo = zs[o, :m]
        if not accumulate:
            zo[:] = 0
        for di in range(kh):
            for dj in range(kw):
                off, wt = base + di * wp + dj, w[di, dj, :, o]
                for c in range(0, cin4, 4):
                    w0, w1, w2, w3 = wt[c], wt[c + 1], wt[c + 2], wt[c + 3]
                    x0, x1 = xs[c, off:off + m], xs[c + 1, off:off + m]
                    x2, x3 = xs[c + 2, off:off + m], xs[c + 3, off:off + m]
                    for q in range(m):
                        zo[q] += w0 * x0[q] + w1 * x1[q] + w2 * x2[q] + w3 * x3[q]
                for c in range(cin4, cin):
                    wv = wt[c]
                    xo = xs[c, off:off + m]
                    for q in range(m):
                        zo[q] += wv * xo[q]


# Phase tables: one row per output phase (one row, phase (0, 0), without upsampling):
#   (py, px, pt_p, pl_p, kph, kpw, nh, nw)
# the phase's first output row and column, its padding above and left on the small image, its
# folded kernel's size, and its number of output rows and columns. The input planes are filled once
# per image with the largest padding (PT, PL), so phase p's taps start at base_p = (PT - pt_p)*wp +
# PL - pl_p; rows are wp wide, enough for every phase's outputs plus its kernel's width.
@numba.njit(cache=True)
def _plane_layout(phases):
    """(PT, PL, wp, hp): the common padding, row width and height (with one spare row for the junk
    columns' reads past the end) of input planes that serve every phase."""
    pt, pl, wp, hp = 0, 0, 1, 1
    for r in range(phases.shape[0]):
        pt, pl = max(pt, phases[r, 2]), max(pl, phases[r, 3])
    for r in range(phases.shape[0]):
        _, _, pt_p, pl_p, kph, kpw, nh, nw = phases[r]
        wp = max(wp, nw + kpw - 1 + pl - pl_p)
        hp = max(hp, nh + kph + pt - pt_p)
    return pt, pl, wp, hp


@numba.njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def _conv2d_s1(x, wf, phases, uh, uw, out, chunks, bias, act):
    n, _, _, cin = x.shape
    cout = wf.shape[4]
    pt, pl, wp, hp = _plane_layout(phases)
    one = out.dtype.type(1)
    for t in prange(chunks):  # a chunk of images per thread, with its own planes
        xs = np.zeros((cin, hp * wp), dtype=x.dtype)
        zs = np.empty((cout, hp * wp), dtype=out.dtype)
        for b in range(t * n // chunks, (t + 1) * n // chunks):
            _fill_planes(x[b], pt, pl, wp, xs)  # once for all phases
            for r in range(phases.shape[0]):
                ph = phases[r]
                base = (pt - ph[2]) * wp + pl - ph[3]
                _conv_planes(xs, wf[r, :ph[4], :ph[5]], zs, wp, ph[6] * wp, base, False)
                _store_planes(zs, wp, out[b], ph, uh, uw, bias, act, one)
    return out


def conv2d_s1(x, w, pt, pl, ho, wo, out, up=(1, 1), bias=None, act=0):
    """Stride-1 convolution of x (N, H, W, Cin) with w (kh, kw, Cin, Cout), padding pt above and
    pl left (the rest of the padding follows from ho, wo); fills and returns out (N, ho, wo, Cout).

    ``up`` = (uh, uw): convolve x upsampled by that factor (nearest neighbour, as UpSampling2D)
    without forming it, phase by phase (see above); pt, pl, ho, wo then refer to the upsampled
    image. ``bias`` (Cout,) and ``act`` (0 linear, 1 relu, 2 sigmoid): out = act(convolution +
    bias), applied as each output is written (saves a pass over the output: 1.1 ms for the
    denoiser's first layer, 256 images)."""
    bias = np.zeros(w.shape[3], out.dtype) if bias is None else bias
    phases, taps = upsampled_phases(*w.shape[:2], pt, pl, ho, wo, up)
    return _conv2d_s1(x, fold_kernel(w, phases, taps), phases, *up, out, _chunks(x.shape[0]), bias, act)


@numba.njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def _conv2d_s1_maxpool2x2(x, wf, phases, bias, act, pooled, argmax, chunks):
    n, _, _, cin = x.shape
    cout = wf.shape[4]
    pt, pl, wp, hp = _plane_layout(phases)
    ho, wo = phases[0, 6], phases[0, 7]
    one, s = pooled.dtype.type(1), _code_shift(argmax.itemsize)
    for t in prange(chunks):
        xs = np.zeros((cin, hp * wp), dtype=x.dtype)
        zs = np.empty((cout, hp * wp), dtype=pooled.dtype)
        zb = np.empty((ho, wo, cout), dtype=pooled.dtype)  # one image's act(z + bias), in cache
        for b in range(t * n // chunks, (t + 1) * n // chunks):
            _fill_planes(x[b], pt, pl, wp, xs)
            _conv_planes(xs, wf[0], zs, wp, ho * wp, 0, False)
            _store_planes(zs, wp, zb, phases[0], 1, 1, bias, act, one)
            for i in range(ho // 2):
                for j in range(wo // 2):
                    _max_of_2x2(zb, 2 * i, 2 * j, pooled[b, i, j], argmax[b, i, j], s)
    return pooled


def conv2d_s1_maxpool2x2(x, w, pt, pl, ho, wo, bias, act, pooled, argmax):
    """:func:`conv2d_s1` (act(convolution + bias), ho x wo outputs, both even) followed by 2x2 max
    pooling at stride 2, image by image without writing the convolution's output: fills pooled
    (N, ho/2, wo/2, Cout) and argmax (the same shape, ``argmax_dtype(2, 2)``) as
    :func:`maxpool_forward` would, and returns pooled. For a monotone act the pooled values are
    act(max of z + bias), and relu's or sigmoid's derivative at each winner follows from them."""
    phases, taps = upsampled_phases(*w.shape[:2], pt, pl, ho, wo, (1, 1))
    return _conv2d_s1_maxpool2x2(x, fold_kernel(w, phases, taps), phases, bias, act, pooled, argmax,
                                 _chunks(x.shape[0]))


def conv2d_s1_maxpool2x2_ref(x, w, pt, pl, ho, wo, bias, act, pooled, argmax):
    """NumPy twin of :func:`conv2d_s1_maxpool2x2`: the two twins one after the other."""
    z = conv2d_s1_ref(x, w, pt, pl, ho, wo, np.empty((x.shape[0], ho, wo, w.shape[3]), pooled.dtype), bias=bias,
                      act=act)
    return maxpool_forward_ref(z, 2, 2, 2, 2, 0, 0, ho // 2, wo // 2, argmax, pooled)[0]


@numba.njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def _conv2d_s1_input_grad(g, wf_flip, phases, uh, uw, dx, chunks, argmax):
    # per phase p: dx += conv(g_p, the folded kernel turned 180 degrees with its channel axes
    # swapped) with padding (kph - 1 - pt_p, kpw - 1 - pl_p), g_p = g[py::uh, px::uw]. Each phase has
    # planes of its own (their zero borders differ); all share the row width wd of dx's planes.
    # With a non-empty argmax, g is the gradient of a 2x2 max pooling's output: each image's is
    # unpooled as its planes are filled (see _fill_grad_planes)
    n, hs, ws, cin = dx.shape
    cout = g.shape[3]
    n_ph, wd, hd = phases.shape[0], 1, 1
    for r in range(n_ph):
        wd = max(wd, ws + phases[r, 5] - 1)
        hd = max(hd, hs + phases[r, 4])
    one = dx.dtype.type(1)
    zero_bias = np.zeros(cin, dtype=dx.dtype)
    whole = np.zeros(8, dtype=np.int64)  # dx is written whole, as one phase of hs x ws outputs
    whole[6], whole[7] = hs, ws
    for t in prange(chunks):
        gs = np.zeros((n_ph, cout, hd * wd), dtype=g.dtype)
        zs = np.empty((cin, hs * wd), dtype=dx.dtype)
        for b in range(t * n // chunks, (t + 1) * n // chunks):
            for r in range(n_ph):
                py, px, pt_p, pl_p, kph, kpw = phases[r, :6]
                _fill_grad_planes(g, argmax, b, py, px, uh, uw, kph - 1 - pt_p, kpw - 1 - pl_p, wd, gs[r])
                _conv_planes(gs[r], wf_flip[r, :kph, :kpw], zs, wd, hs * wd, 0, r > 0)
            _store_planes(zs, wd, dx[b], whole, 1, 1, zero_bias, 0, one)
    return dx


def conv2d_s1_input_grad(g, w, pt, pl, dx, up=(1, 1), argmax=None):
    """dL/dx of :func:`conv2d_s1` (x -> out, with the same w, pt, pl, up) for the output gradient
    g (N, ho, wo, Cout); fills and returns dx (N, H, W, Cin), the shape of x (the small image with
    ``up``). The adjoint of a correlation is a correlation with the kernel turned 180 degrees and its
    channel axes swapped, padded kh-1-pt above; with ``up``, the sum of that over the phases.
    ``argmax`` (N, ho/2, wo/2, Cout), from :func:`conv2d_s1_maxpool2x2`: g is then the gradient
    of the pooled output (N, ho/2, wo/2, Cout), routed to the winners image by image."""
    ho, wo = (g.shape[1], g.shape[2]) if argmax is None else (2 * g.shape[1], 2 * g.shape[2])
    phases, taps = upsampled_phases(*w.shape[:2], pt, pl, ho, wo, up)
    folded = fold_kernel(w, phases, taps)
    flipped = np.zeros((*folded.shape[:3], folded.shape[4], folded.shape[3]), w.dtype)  # (P, kh, kw, Cout, Cin)
    for r, (kph, kpw) in enumerate(phases[:, 4:6]):  # each in its top-left corner, as fold_kernel leaves them
        flipped[r, :kph, :kpw] = folded[r, kph - 1::-1, kpw - 1::-1].transpose(0, 1, 3, 2)
    return _conv2d_s1_input_grad(g, flipped, phases, *up, dx, _chunks(g.shape[0]), _no_argmax(argmax))


def _no_argmax(argmax):
    """argmax, or an empty array of its type for 'no pooling' (one compiled kernel for both)."""
    return np.empty((0, 0, 0, 0), np.uint8) if argmax is None else argmax


@numba.njit(cache=True, inline="always")
def _fill_grad_planes(g, argmax, b, py, px, uh, uw, top, left, wp, planes):
    """:func:`_fill_planes` of image b's output gradient, phase (py, px): g[b, py::uh, px::uw]; or,
    with a non-empty argmax (g the gradient of a 2x2 max pooling of the output, no phases), its
    unpooling, written straight into the planes: each pooled gradient to its window's winner, 0
    to the other three."""
    if argmax.size == 0:
        _fill_planes(g[b, py::uh, px::uw], top, left, wp, planes)
        return
    gp, ap = g[b], argmax[b]
    hp, c, s = planes.shape[1] // wp, gp.shape[2], _code_shift(argmax.itemsize)
    zero = planes.dtype.type(0)
    for y in range(min(2 * gp.shape[0], hp - top)):
        for xx in range(min(2 * gp.shape[1], wp - left)):
            q, gv, av = (y + top) * wp + xx + left, gp[y >> 1, xx >> 1], ap[y >> 1, xx >> 1]
            code = argmax.dtype.type((y & 1) << s | (xx & 1))
            for ch in range(c):
                planes[ch, q] = gv[ch] if av[ch] == code else zero


def _phase_taps(k: int, pad: int, up: int) -> list[tuple[int, list[int]]]:
    """Along one axis, per phase p < up: (pad_p, taps), where the phase convolution reads small
    pixel a - pad_p + t for its output a (= output up*a + p) and tap d of the k-tap window folds
    into phase tap taps[d]. Small pixel a + floor((p - pad + d) / up) is what tap d reads."""
    phases = []
    for p in range(up):
        offsets = [(p - pad + d) // up for d in range(k)]  # nondecreasing, the first <= 0
        phases.append((-offsets[0], [o - offsets[0] for o in offsets]))
    return phases


def upsampled_phases(kh, kw, pt, pl, ho, wo, up):
    """The phase table (see above; int64 (P, 8)) of a kh x kw convolution of an input upsampled by
    ``up`` with ho x wo outputs, and per phase the folded tap of each tap (ty, tx)."""
    rows, taps = [], []
    for py, (pt_p, ty) in enumerate(_phase_taps(kh, pt, up[0])):
        for px, (pl_p, tx) in enumerate(_phase_taps(kw, pl, up[1])):
            if py < ho and px < wo:
                rows.append((py, px, pt_p, pl_p, ty[-1] + 1, tx[-1] + 1, len(range(py, ho, up[0])),
                             len(range(px, wo, up[1]))))
                taps.append((ty, tx))
    return np.array(rows, dtype=np.int64).reshape(-1, 8), taps


def fold_kernel(w, phases, taps):
    """Every phase's kernel: w (kh, kw, Cin, Cout) with the taps that read the same small pixel
    summed, (P, max kph, max kpw, Cin, Cout), each in its top-left corner (zeros around it)."""
    folded = np.zeros((len(phases), phases[:, 4].max(), phases[:, 5].max(), *w.shape[2:]), w.dtype)
    for r, (ty, tx) in enumerate(taps):
        for di, a in enumerate(ty):
            for dj, b in enumerate(tx):
                folded[r, a, b] += w[di, dj]
    return folded


def unfold_kernel_grad(d_folded, taps, dw):
    """The adjoint of :func:`fold_kernel`: dw[di, dj] = sum over phases r of d_folded[r][ty[di],
    tx[dj]] (each tap's weight went into one folded tap per phase); d_folded is fold_kernel's
    layout or a list of per-phase (kph, kpw, Cin, Cout) arrays. Fills and returns dw."""
    dw[...] = 0
    for r, (ty, tx) in enumerate(taps):
        for di, a in enumerate(ty):
            for dj, b in enumerate(tx):
                dw[di, dj] += d_folded[r][a, b]
    return dw


def _chunks(n: int) -> int:
    """Images are split into one chunk per thread (at most one per image)."""
    return max(1, min(numba.get_num_threads(), n))


def conv2d_s1_ref(x, w, pt, pl, ho, wo, out, up=(1, 1), bias=None, act=0):
    """NumPy twin of :func:`conv2d_s1`: upsample, im2col, one GEMM, bias and activation. ``out``
    (N, ho, wo, Cout) is filled and returned (both versions)."""
    kh, kw, cin, cout = w.shape
    x = upsample_forward_ref(x, *up)
    out[...] = (im2col_ref(x, kh, kw, 1, 1, pt, pl, ho, wo) @ w.reshape(-1, cout)).reshape(out.shape)
    if bias is not None:
        bias_act_forward_ref(out.reshape(-1, cout), bias, act)
    return out


def _unpooled_ref(g, argmax):
    """g itself, or (with argmax) max pooling's backward of it: the twins' side of
    ``_fill_grad_planes``."""
    if argmax is None:
        return g
    n, hp, wp, _ = g.shape
    return maxpool_backward_ref(g, argmax, 2 * hp, 2 * wp, 2, 2, 2, 2, 0, 0)


def conv2d_s1_input_grad_ref(g, w, pt, pl, dx, up=(1, 1), argmax=None):
    """NumPy twin of :func:`conv2d_s1_input_grad`: col2im of G W^T on the upsampled image, then the
    upsampling's own backward pass (block sums)."""
    g = _unpooled_ref(g, argmax)
    kh, kw, cin, cout = w.shape
    n, ho, wo, _ = g.shape
    h, w_ = dx.shape[1] * up[0], dx.shape[2] * up[1]
    d_big = col2im_ref(g.reshape(-1, cout) @ w.reshape(-1, cout).T, n, h, w_, cin, kh, kw, 1, 1, pt, pl, ho, wo)
    dx[...] = upsample_backward_ref(d_big, *up)
    return dx


@numba.njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def _conv2d_s1_kernel_grad(x, g, phases, uh, uw, dwf, chunks, argmax):
    # per phase: dWf_p[t, u, c, o] = sum over (n, a, b) of x-plane[c][base_p + t*wp + u + a*wp + b]
    # * g_p[n, a, b, o], with the x planes laid out as in the forward pass (g unpooled per image
    # with a non-empty argmax, as in _conv2d_s1_input_grad)
    n, _, _, cin = x.shape
    cout = g.shape[3]
    n_ph = phases.shape[0]
    pt, pl, wp, hp = _plane_layout(phases)
    cout4 = cout - cout % 4
    n5, k5h, k5w = dwf.shape[0], dwf.shape[1], dwf.shape[2]
    part = np.zeros((chunks, n5, k5h, k5w, cin, cout), dtype=dwf.dtype)
    for t in prange(chunks):  # each chunk of images sums into its own copy of dW: no races
        xs = np.zeros((cin, hp * wp), dtype=x.dtype)
        gs = np.zeros((n_ph, cout, hp * wp), dtype=g.dtype)  # junk columns stay zero: they add nothing
        for b in range(t * n // chunks, (t + 1) * n // chunks):
            _fill_planes(x[b], pt, pl, wp, xs)
            for r in range(n_ph):
                py, px, pt_p, pl_p, kph, kpw, nh, _ = phases[r]
                _fill_grad_planes(g, argmax, b, py, px, uh, uw, 0, 0, wp, gs[r])
                p, m, base = part[t, r], nh * wp, (pt - pt_p) * wp + pl - pl_p
                for c in range(cin):
                    for di in range(kph):
                        for dj in range(kpw):
                            off = base + di * wp + dj
                            xo = xs[c, off:off + m]
                            for o in range(0, cout4, 4):  # four dot products per pass: each x load used 4x
                                g0, g1, g2, g3 = gs[r, o, :m], gs[r, o + 1, :m], gs[r, o + 2, :m], gs[r, o + 3, :m]
                                s0 = s1 = s2 = s3 = dwf.dtype.type(0)
                                for q in range(m):
                                    xv = xo[q]
                                    s0 += g0[q] * xv
                                    s1 += g1[q] * xv
                                    s2 += g2[q] * xv
                                    s3 += g3[q] * xv
                                p[di, dj, c, o] += s0
                                p[di, dj, c, o + 1] += s1
                                p[di, dj, c, o + 2] += s2
                                p[di, dj, c, o + 3] += s3
                            for o in range(cout4, cout):
                                go = gs[r, o, :m]
                                s = dwf.dtype.type(0)
                                for q in range(m):
                                    s += go[q] * xo[q]
                                p[di, dj, c, o] += s
    dwf[...] = part[0]
    for t in range(1, chunks):
        dwf += part[t]
    return dwf


def conv2d_s1_kernel_grad(x, g, pt, pl, dw, up=(1, 1), argmax=None):
    """dw[di, dj, c, o] = sum_{n, i, j} x[n, i - pt + di, j - pl + dj, c] * g[n, i, j, o]: the kernel
    gradient of :func:`conv2d_s1` for the output gradient g (N, ho, wo, Cout); fills ``dw``. With
    ``up``, x is taken upsampled by that factor, as in :func:`conv2d_s1`: each phase's folded-kernel
    gradient is handed to every tap that was folded into it. ``argmax``: g is the gradient of the
    pooled output, as in :func:`conv2d_s1_input_grad`."""
    ho, wo = (g.shape[1], g.shape[2]) if argmax is None else (2 * g.shape[1], 2 * g.shape[2])
    phases, taps = upsampled_phases(*dw.shape[:2], pt, pl, ho, wo, up)
    dwf = np.empty((len(phases), phases[:, 4].max(), phases[:, 5].max(), *dw.shape[2:]), dw.dtype)
    _conv2d_s1_kernel_grad(x, g, phases, *up, dwf, _chunks(x.shape[0]), _no_argmax(argmax))
    return unfold_kernel_grad(dwf, taps, dw)


def conv2d_s1_kernel_grad_ref(x, g, pt, pl, dw, up=(1, 1), argmax=None):
    """NumPy twin of :func:`conv2d_s1_kernel_grad`: P^T G with P from im2col of the upsampled x."""
    g = _unpooled_ref(g, argmax)
    kh, kw, cin, cout = dw.shape
    _, ho, wo, _ = g.shape
    x = upsample_forward_ref(x, *up)
    dw[...] = (im2col_ref(x, kh, kw, 1, 1, pt, pl, ho, wo).T @ g.reshape(-1, cout)).reshape(dw.shape)
    return dw
