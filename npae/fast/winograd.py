"""Conv2D 3x3, stride 1, by Winograd's minimal filtering F(2x2, 3x3): forward and backward.

A 3x3 convolution computes each 2x2 block of outputs from a 4x4 tile of the input (tiles two
pixels apart, overlapping by two). Written as im2col + GEMM that costs 4 * 9 = 36 multiply-adds
per block and channel pair; Winograd's F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2015) costs 16, by moving tile and kernel into a basis where the
convolution is an element-wise product:

    V = B^T d B      (4, 4) per tile and input channel      d: the 4x4 input tile
    U = G w G^T      (4, 4) per input/output channel pair   w: the 3x3 kernel
    M = sum over input channels of U * V                    (4, 4) per tile and output channel
    y = A^T M A      (2, 2): the block's outputs

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

For each of the 16 positions xi of the 4x4 basis, the sum over input channels is one GEMM
M[xi] (T, Cout) = V[xi] (T, Cin) @ U[xi] (Cin, Cout) over the T tiles of a group of images.
Every step is linear, so the backward pass is each step's adjoint in reverse order, with
dY = dL/dz for a block (zero where the block sticks out of the image):

    dM = A dY A^T                         (4, 4) per tile and output channel
    dU[xi] = sum over tiles of V[xi]^T @ dM[xi]      (Cin, Cout): GEMMs again
    dw = G^T dU G                         (3, 3) per channel pair
    dV[xi] = dM[xi] @ U[xi]^T             (T, Cin)
    dd = B dV B^T, added into dx over the tiles' (overlapping) footprints

An input read upsampled (UpSampling2D then this convolution, ``up``): the tiles read the small
image's pixels as the upsampled image has them, and its gradient goes back to them. Upsampled 2x
with odd padding (the decoder's 'same' convolutions), 7 of the 16 slabs of V are 0 for every tile
(see :func:`slabs_of`): 9 GEMMs per product.

Each Numba thread takes a group of images at a time, its V and M (about GROUP_BYTES) in its own
cache, and calls OpenBLAS's GEMM itself, held to one thread (:mod:`npae.fast.blas`); the backward
pass rebuilds V from the input instead of keeping 2.3x the input's size between the passes.
The arithmetic is exact (a change of basis), not an approximation: float64 gradient checks hold
as for any other path; in float32 the rounding differs from im2col's by a few ulps.
The tests hold both passes against :mod:`npae.functional.conv`. ``forward`` and ``backward``
return None, doing nothing, where :func:`npae.fast.blas.find` found no OpenBLAS.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from . import blas
from .elementwise import activate
from .pool import code_shift, max_of_2x2, no_argmax
from .runtime import inline, parallel, serial

__all__ = ["GROUP_BYTES", "backward", "forward", "kernel_grad_of", "slabs_of",
           "tiles", "transform_kernel"]

GROUP_BYTES = 512 * 1024  # a thread's V and M for one group of images: about half a core's L2

_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)


def tiles(ho: int, wo: int) -> tuple[int, int]:
    """Tile rows and columns covering an ho x wo output in 2x2 blocks."""
    return (ho + 1) // 2, (wo + 1) // 2


def transform_kernel(kernel: np.ndarray) -> np.ndarray:
    """U = G w G^T for every channel pair: kernel (3, 3, Cin, Cout) -> (16, Cin, Cout)."""
    g = _G.astype(kernel.dtype)
    u = np.einsum("ia,abcd,jb->ijcd", g, kernel, g, optimize=True)
    return np.ascontiguousarray(u.reshape(16, *kernel.shape[2:]))


def kernel_grad_of(du: np.ndarray, out: np.ndarray) -> np.ndarray:
    """dw = G^T dU G, the adjoint of :func:`transform_kernel`: du (16, Cin, Cout) -> out (3, 3, Cin, Cout)."""
    g = _G.astype(du.dtype)
    out[...] = np.einsum("ia,ijcd,jb->abcd", g, du.reshape(4, 4, *du.shape[1:]), g, optimize=True)
    return out


# ---------------------------------------------------------------------------- the four transforms
# Each works on one tile at a time, channels innermost (contiguous in NHWC and in the V / M rows).
# Inlined into the kernels (called as functions they ran 10-20% slower), except the two that apply
# the activation: inlining those made Numba 0.68 warn (NumbaIRAssumptionWarning) when compiling,
# at no measured cost to leave out.

@inline
def _input_tiles(x, b, pt, pl, uh, uw, th, tw, v, t0, d):
    """V = B^T d B for image b's th*tw tiles into v[:, t0 + tile, :] (16, T, Cin), x read as if
    upsampled by (uh, uw); d (16, Cin) scratch."""
    h, w, cin = x.shape[1] * uh, x.shape[2] * uw, x.shape[3]
    zero = x.dtype.type(0)
    for ty in range(th):
        for tx in range(tw):
            for r in range(4):  # the tile, zero where it lies in the padding
                y = 2 * ty - pt + r
                for q in range(4):
                    xx = 2 * tx - pl + q
                    if 0 <= y < h and 0 <= xx < w:
                        ys, xs = y // uh, xx // uw
                        for c in range(cin):
                            d[4 * r + q, c] = x[b, ys, xs, c]
                    else:
                        for c in range(cin):
                            d[4 * r + q, c] = zero
            t = t0 + ty * tw + tx
            for r in range(4):  # rows: d <- d B (per row: d0 - d2, d1 + d2, d2 - d1, d1 - d3)
                for c in range(cin):
                    d0, d1, d2, d3 = d[4 * r, c], d[4 * r + 1, c], d[4 * r + 2, c], d[4 * r + 3, c]
                    d[4 * r, c], d[4 * r + 1, c] = d0 - d2, d1 + d2
                    d[4 * r + 2, c], d[4 * r + 3, c] = d2 - d1, d1 - d3
            for q in range(4):  # columns: V = B^T (d B)
                for c in range(cin):
                    d0, d1, d2, d3 = d[q, c], d[4 + q, c], d[8 + q, c], d[12 + q, c]
                    v[q, t, c], v[4 + q, t, c] = d0 - d2, d1 + d2
                    v[8 + q, t, c], v[12 + q, t, c] = d2 - d1, d1 - d3


@serial
def _output_tiles(m, t0, out, b, th, tw, bias, act, one, yb, argmax):
    """out[b] <- act(A^T M A + bias) from m[:, t0 + tile, :] (16, T, Cout), the parts inside the
    image; yb (4, Cout) scratch. With a non-empty argmax, out[b] and argmax[b] (th, tw, Cout) are
    instead the 2x2 max pooling of that: a tile's outputs are one window (as pool.max_of_2x2)."""
    ho, wo, cout = out.shape[1], out.shape[2], out.shape[3]
    s = code_shift(argmax.itemsize)
    for ty in range(th):
        for tx in range(tw):
            t = t0 + ty * tw + tx
            for c in range(cout):  # rows: s = A^T M (2, 4); then y = s A
                s00 = m[0, t, c] + m[4, t, c] + m[8, t, c]
                s01 = m[1, t, c] + m[5, t, c] + m[9, t, c]
                s02 = m[2, t, c] + m[6, t, c] + m[10, t, c]
                s03 = m[3, t, c] + m[7, t, c] + m[11, t, c]
                s10 = m[4, t, c] - m[8, t, c] - m[12, t, c]
                s11 = m[5, t, c] - m[9, t, c] - m[13, t, c]
                s12 = m[6, t, c] - m[10, t, c] - m[14, t, c]
                s13 = m[7, t, c] - m[11, t, c] - m[15, t, c]
                yb[0, c], yb[1, c] = s00 + s01 + s02 + bias[c], s01 - s02 - s03 + bias[c]
                yb[2, c], yb[3, c] = s10 + s11 + s12 + bias[c], s11 - s12 - s13 + bias[c]
            for k in range(4):  # the activation in a loop of its own, which vectorizes (and one call
                for c in range(cout):  # of activate: several made Numba 0.68 warn when compiling)
                    yb[k, c] = activate(yb[k, c], act, one)
            if argmax.size:
                max_of_2x2(yb[:4].reshape(2, 2, -1), 0, 0, out[b, ty, tx], argmax[b, ty, tx], s)
                continue
            for k in range(4):
                y, xx = 2 * ty + k // 2, 2 * tx + k % 2
                if y < ho and xx < wo:
                    out[b, y, xx, :] = yb[k, :cout]


@inline
def _block_grad(g, b, ty, tx, yb, argmax):
    """yb (4, Cout) <- dY of image b's output block (ty, tx), row by row, from g[b] = dL/dz (Ho,
    Wo, Cout), zero where the block sticks out of the image; or, with a non-empty argmax, from g[b]
    (th, tw, Cout), the gradient of the output's 2x2 max pooling: each window's to its winner."""
    ho, wo, cout = g.shape[1], g.shape[2], g.shape[3]
    zero, s = g.dtype.type(0), code_shift(argmax.itemsize)
    for k in range(4):
        y, xx = 2 * ty + k // 2, 2 * tx + k % 2
        if argmax.size:
            code, gp, a = argmax.dtype.type((k // 2) << s | (k % 2)), g[b, ty, tx], argmax[b, ty, tx]
            for c in range(cout):
                yb[k, c] = gp[c] if a[c] == code else zero
        elif y < ho and xx < wo:
            for c in range(cout):
                yb[k, c] = g[b, y, xx, c]
        else:
            for c in range(cout):
                yb[k, c] = zero


@inline
def _output_grad_tiles(g, b, th, tw, dm, t0, yb, argmax):
    """dM = A dY A^T into dm[:, t0 + tile, :], each block's dY from :func:`_block_grad`; yb (4,
    Cout) scratch."""
    cout = g.shape[3]
    for ty in range(th):
        for tx in range(tw):
            t = t0 + ty * tw + tx
            _block_grad(g, b, ty, tx, yb, argmax)
            for c in range(cout):
                y00, y01, y10, y11 = yb[0, c], yb[1, c], yb[2, c], yb[3, c]
                # A dY (4, 2) has rows y0, y0 + y1, y0 - y1, -y1; each row (a0, a1) times A^T gives
                # a0, a0 + a1, a0 - a1, -a1
                a0, a1 = y00, y01
                dm[0, t, c], dm[1, t, c], dm[2, t, c], dm[3, t, c] = a0, a0 + a1, a0 - a1, -a1
                a0, a1 = y00 + y10, y01 + y11
                dm[4, t, c], dm[5, t, c], dm[6, t, c], dm[7, t, c] = a0, a0 + a1, a0 - a1, -a1
                a0, a1 = y00 - y10, y01 - y11
                dm[8, t, c], dm[9, t, c], dm[10, t, c], dm[11, t, c] = a0, a0 + a1, a0 - a1, -a1
                a0, a1 = -y10, -y11
                dm[12, t, c], dm[13, t, c], dm[14, t, c], dm[15, t, c] = a0, a0 + a1, a0 - a1, -a1


@inline
def _input_grad_tiles(dv, t0, dx, b, pt, pl, uh, uw, th, tw, e):
    """dx[b] += B dV B^T over each tile's footprint (inside the image), from dv[:, t0 + tile, :];
    with (uh, uw) the image upsampled by that much, each pixel's share to the small one it copies;
    e (16, Cin) scratch."""
    h, w, cin = dx.shape[1] * uh, dx.shape[2] * uw, dx.shape[3]
    for ty in range(th):
        for tx in range(tw):
            t = t0 + ty * tw + tx
            for q in range(4):  # columns: B dV (per column: v0, v1 - v2 + v3, v1 + v2 - v0, -v3)
                for c in range(cin):
                    v0, v1, v2, v3 = dv[q, t, c], dv[4 + q, t, c], dv[8 + q, t, c], dv[12 + q, t, c]
                    e[q, c], e[4 + q, c] = v0, v1 - v2 + v3
                    e[8 + q, c], e[12 + q, c] = v1 + v2 - v0, -v3
            for r in range(4):  # rows: (B dV) B^T
                for c in range(cin):
                    v0, v1, v2, v3 = e[4 * r, c], e[4 * r + 1, c], e[4 * r + 2, c], e[4 * r + 3, c]
                    e[4 * r, c], e[4 * r + 1, c] = v0, v1 - v2 + v3
                    e[4 * r + 2, c], e[4 * r + 3, c] = v1 + v2 - v0, -v3
            for r in range(4):
                y = 2 * ty - pt + r
                if 0 <= y < h:
                    for q in range(4):
                        xx = 2 * tx - pl + q
                        if 0 <= xx < w:
                            ys, xs = y // uh, xx // uw
                            for c in range(cin):
                                dx[b, ys, xs, c] += e[4 * r + q, c]


# An image read upsampled 2x with odd padding (the decoder's UpSampling2D then a 'same' 3x3 Conv2D):
# along each axis a tile's four pixels copy three small ones (a, b, b, c), so B^T d has only three
# non-zero entries, V0 = a - b, V1 = 2 b, V3 = b - c (V2 = b - b), and the slabs with r or q = 2
# are 0. These four take the 3x3 small pixels under each tile directly and touch the 9 slabs only.

@inline
def _input_tiles9(x, b, pt, pl, th, tw, v, t0, d):
    """:func:`_input_tiles` for up = (2, 2) with pt, pl odd: the 9 non-zero slabs of V."""
    h, w, cin = x.shape[1], x.shape[2], x.shape[3]
    zero = x.dtype.type(0)
    for ty in range(th):
        for tx in range(tw):
            oy, ox = ty - (pt + 1) // 2, tx - (pl + 1) // 2  # the small tile's top-left pixel
            for r in range(3):
                y = oy + r
                for q in range(3):
                    xx = ox + q
                    if 0 <= y < h and 0 <= xx < w:
                        for c in range(cin):
                            d[3 * r + q, c] = x[b, y, xx, c]
                    else:
                        for c in range(cin):
                            d[3 * r + q, c] = zero
            t = t0 + ty * tw + tx
            for r in range(3):  # rows: (a, b, c) -> (a - b, 2 b, b - c)
                for c in range(cin):
                    a0, b0, c0 = d[3 * r, c], d[3 * r + 1, c], d[3 * r + 2, c]
                    d[3 * r, c], d[3 * r + 1, c], d[3 * r + 2, c] = a0 - b0, b0 + b0, b0 - c0
            for q in range(3):  # columns, into slabs (0, 1, 3) x (0, 1, 3)
                qq = q + q // 2
                for c in range(cin):
                    a0, b0, c0 = d[q, c], d[3 + q, c], d[6 + q, c]
                    v[qq, t, c], v[4 + qq, t, c], v[12 + qq, t, c] = a0 - b0, b0 + b0, b0 - c0


@serial
def _output_tiles9(m, t0, out, b, th, tw, bias, act, one, yb):
    """:func:`_output_tiles` reading only the 9 slabs that are not 0."""
    ho, wo, cout = out.shape[1], out.shape[2], out.shape[3]
    for ty in range(th):
        for tx in range(tw):
            t = t0 + ty * tw + tx
            for c in range(cout):
                s00 = m[0, t, c] + m[4, t, c]
                s01 = m[1, t, c] + m[5, t, c]
                s03 = m[3, t, c] + m[7, t, c]
                s10 = m[4, t, c] - m[12, t, c]
                s11 = m[5, t, c] - m[13, t, c]
                s13 = m[7, t, c] - m[15, t, c]
                yb[0, c], yb[1, c] = s00 + s01 + bias[c], s01 - s03 + bias[c]
                yb[2, c], yb[3, c] = s10 + s11 + bias[c], s11 - s13 + bias[c]
            for k in range(4):
                y, xx = 2 * ty + k // 2, 2 * tx + k % 2
                if y < ho and xx < wo:
                    for c in range(cout):
                        out[b, y, xx, c] = activate(yb[k, c], act, one)


@inline
def _output_grad_tiles9(g, b, th, tw, dm, t0, yb, argmax):
    """:func:`_output_grad_tiles` writing only the 9 slabs the GEMMs read."""
    cout = g.shape[3]
    for ty in range(th):
        for tx in range(tw):
            t = t0 + ty * tw + tx
            _block_grad(g, b, ty, tx, yb, argmax)
            for c in range(cout):
                y00, y01, y10, y11 = yb[0, c], yb[1, c], yb[2, c], yb[3, c]
                a0, a1 = y00, y01
                dm[0, t, c], dm[1, t, c], dm[3, t, c] = a0, a0 + a1, -a1
                a0, a1 = y00 + y10, y01 + y11
                dm[4, t, c], dm[5, t, c], dm[7, t, c] = a0, a0 + a1, -a1
                a0, a1 = -y10, -y11
                dm[12, t, c], dm[13, t, c], dm[15, t, c] = a0, a0 + a1, -a1


@inline
def _input_grad_tiles9(dv, t0, dx, b, pt, pl, th, tw, e):
    """:func:`_input_grad_tiles` for up = (2, 2) with pt, pl odd, from the 9 slabs: per axis the
    adjoint of (a, b, c) -> (a - b, 2 b, b - c) is (V0, V1, V3) -> (V0, 2 V1 - V0 + V3, -V3)."""
    h, w, cin = dx.shape[1], dx.shape[2], dx.shape[3]
    for ty in range(th):
        for tx in range(tw):
            t = t0 + ty * tw + tx
            for q in range(3):  # rows first (slabs r = 0, 1, 3), column q of (0, 1, 3)
                qq = q + q // 2
                for c in range(cin):
                    v0, v1, v3 = dv[qq, t, c], dv[4 + qq, t, c], dv[12 + qq, t, c]
                    e[q, c], e[3 + q, c], e[6 + q, c] = v0, v1 + v1 - v0 + v3, -v3
            for r in range(3):
                for c in range(cin):
                    v0, v1, v3 = e[3 * r, c], e[3 * r + 1, c], e[3 * r + 2, c]
                    e[3 * r, c], e[3 * r + 1, c], e[3 * r + 2, c] = v0, v1 + v1 - v0 + v3, -v3
            oy, ox = ty - (pt + 1) // 2, tx - (pl + 1) // 2
            for r in range(3):
                y = oy + r
                if 0 <= y < h:
                    for q in range(3):
                        xx = ox + q
                        if 0 <= xx < w:
                            for c in range(cin):
                                dx[b, y, xx, c] += e[3 * r + q, c]


# ---------------------------------------------------------------------------- the kernels

@inline
def _tiles_of_output(out, argmax):
    """Tile rows and columns for an output (or its gradient) out (N, Ho, Wo, C); with a non-empty
    argmax out is the 2x2 max pooling of that output, a pixel per tile."""
    if argmax.size:
        return out.shape[1], out.shape[2]
    return (out.shape[1] + 1) // 2, (out.shape[2] + 1) // 2


@inline
def _group_arrays(scratch, t, group, th, tw, cin, cout):
    """Thread t's scratch as d (16, max(Cin, Cout)) for one tile, and V (16, R, Cin) and M (16, R,
    Cout) for a group's R - 1 tiles and one spare row, so that the 16 slabs do not start at
    addresses a multiple of 4 KB apart (which share L1 cache sets: writing all 16 ran 4x slower).
    The same layout for every group, the last one (maybe fewer images) included."""
    wide, rows = max(cin, cout), group * th * tw + 1
    d = scratch[t, :16 * wide].reshape(16, wide)
    v = scratch[t, 16 * wide:16 * (wide + rows * cin)].reshape(16, rows, cin)
    m = scratch[t, 16 * (wide + rows * cin):16 * (wide + rows * (cin + cout))].reshape(16, rows, cout)
    return d, v, m


@parallel
def _forward(gemm, ints, x, u, slabs, pt, pl, uh, uw, bias, act, out, scratch, group, argmax):
    n, cin, cout, threads = x.shape[0], x.shape[3], out.shape[3], scratch.shape[0]
    th, tw = _tiles_of_output(out, argmax)
    one, nine = x.dtype.type(1), len(slabs) == 9  # nine: up = (2, 2), odd padding (slabs_of)
    groups = (n + group - 1) // group
    for t in prange(threads):
        d, v, m = _group_arrays(scratch, t, group, th, tw, cin, cout)
        m[...] = 0  # the slabs no GEMM writes (V there is 0: see slabs_of) stay 0
        for gi in range(t, groups, threads):
            s, e = gi * group, min(n, (gi + 1) * group)
            rows = (e - s) * th * tw
            for b in range(s, e):
                if nine:
                    _input_tiles9(x, b, pt, pl, th, tw, v, (b - s) * th * tw, d)
                else:
                    _input_tiles(x, b, pt, pl, uh, uw, th, tw, v, (b - s) * th * tw, d)
            for k in range(len(slabs)):  # M[xi] = V[xi] @ U[xi]
                xi = slabs[k]
                blas.gemm_rows(gemm, ints, rows, cout, cin, v[xi].ctypes.data, cin, u[xi].ctypes.data, cout,
                               m[xi].ctypes.data, cout, one)
            for b in range(s, e):
                if nine:
                    _output_tiles9(m, (b - s) * th * tw, out, b, th, tw, bias, act, one, d)
                else:
                    _output_tiles(m, (b - s) * th * tw, out, b, th, tw, bias, act, one, d, argmax)


@parallel
def _backward(gemm, ints, x, g, u_t, slabs, pt, pl, uh, uw, du, dx, scratch, group, with_dx, argmax):
    n, cin, cout, threads = x.shape[0], x.shape[3], g.shape[3], scratch.shape[0]
    th, tw = _tiles_of_output(g, argmax)
    one, nine = x.dtype.type(1), len(slabs) == 9
    groups = (n + group - 1) // group
    for t in prange(threads):
        du[t] = 0
        d, v, dm = _group_arrays(scratch, t, group, th, tw, cin, cout)
        for gi in range(t, groups, threads):
            s, e = gi * group, min(n, (gi + 1) * group)
            rows = (e - s) * th * tw
            for b in range(s, e):
                if nine:
                    _input_tiles9(x, b, pt, pl, th, tw, v, (b - s) * th * tw, d)
                    _output_grad_tiles9(g, b, th, tw, dm, (b - s) * th * tw, d, argmax)
                else:
                    _input_tiles(x, b, pt, pl, uh, uw, th, tw, v, (b - s) * th * tw, d)
                    _output_grad_tiles(g, b, th, tw, dm, (b - s) * th * tw, d, argmax)
            for k in range(len(slabs)):
                xi = slabs[k]
                # dU[xi] += V[xi]^T @ dM[xi]   (Cin, Cout), summed over the tiles
                blas.gemm_call(gemm, ints, True, False, cin, cout, rows, v[xi].ctypes.data, cin,
                               dm[xi].ctypes.data, cout, one, du[t, xi].ctypes.data, cout, one)
                if with_dx:  # dV[xi] = dM[xi] @ U[xi]^T, into V[xi]'s place (read for the last time above)
                    blas.gemm_rows(gemm, ints, rows, cin, cout, dm[xi].ctypes.data, cout,
                                   u_t[xi].ctypes.data, cin, v[xi].ctypes.data, cin, one)
            if with_dx:  # (V's other slabs are 0, as dV there is: see slabs_of)
                for b in range(s, e):
                    dx[b] = 0
                    if nine:
                        _input_grad_tiles9(v, (b - s) * th * tw, dx, b, pt, pl, th, tw, d)
                    else:
                        _input_grad_tiles(v, (b - s) * th * tw, dx, b, pt, pl, uh, uw, th, tw, d)


def slabs_of(pt: int, pl: int, up: tuple[int, int]) -> np.ndarray:
    """The basis positions xi = 4 r + q whose V is not 0 for every tile. Reading an image upsampled
    2x with an odd padding, a tile's rows 1 and 2 copy the same small row, so V's row 2 (d2 - d1)
    is 0 (likewise columns): 9 GEMMs instead of 16, 9 multiply-adds per 2x2 outputs."""
    rows = [0, 1, 3] if up[0] == 2 and pt % 2 else [0, 1, 2, 3]
    cols = [0, 1, 3] if up[1] == 2 and pl % 2 else [0, 1, 2, 3]
    return np.array([4 * r + q for r in rows for q in cols], dtype=np.int64)


def _scratch(n, th, tw, cin, cout, itemsize, extra, scratch_of):
    """(images per group, the threads' scratch (threads, per thread)), plus ``extra`` elements
    after it (a flat view), for n images of th*tw tiles."""
    group = max(1, min(GROUP_BYTES // (16 * th * tw * (cin + cout) * itemsize),
                       math.ceil(n / numba.get_num_threads())))
    threads = min(numba.get_num_threads(), math.ceil(n / group))
    per_thread = 16 * ((group * th * tw + 1) * (cin + cout) + max(cin, cout))
    flat = scratch_of(threads * per_thread + extra)
    return group, flat[:threads * per_thread].reshape(threads, per_thread), flat[threads * per_thread:]


def _check(x, kernel, out, argmax, pt, pl, up, what):
    """The kernels trust the shapes: x (N, H, W, Cin) and out (N, Ho, Wo, Cout) (pooled: half that,
    with a uint8 argmax alike) of one dtype, a (3, 3, Cin, Cout) kernel, and an output the size a
    padding of 0 to 2 on each side gives (pt, pl above and left; an output of another size is an
    error, not a convolution with other padding)."""
    ok = x.ndim == out.ndim == 4 and kernel.shape[:2] == (3, 3) and kernel.shape[2] == x.shape[3]
    ok = ok and out.shape[0] == x.shape[0] and out.shape[3] == kernel.shape[3]
    ok = ok and x.dtype == kernel.dtype == out.dtype and x.flags.c_contiguous and out.flags.c_contiguous
    ok = ok and (argmax is None or (argmax.shape == out.shape and argmax.dtype == np.uint8))
    if ok:
        ho, wo = (2 * out.shape[1], 2 * out.shape[2]) if argmax is not None else out.shape[1:3]
        for size, n_out, before in ((x.shape[1] * up[0], ho, pt), (x.shape[2] * up[1], wo, pl)):
            ok = ok and n_out >= 1 and 0 <= before <= 2 and 0 <= n_out + 2 - before - size <= 2
    if not ok:
        raise ValueError(f"{what}: inconsistent arrays: x {x.shape} {x.dtype}, kernel {kernel.shape} {kernel.dtype}, "
                         f"output {out.shape} {out.dtype}" + ("" if argmax is None else f", argmax {argmax.shape}")
                         + f" (padding {pt} above, {pl} left, input read upsampled by {up})")


def _pooling(argmax, up):
    """``no_argmax(argmax)``, after checking that an upsampled input is not also pooled."""
    if argmax is not None and up != (1, 1):
        raise ValueError(f"winograd: pooling the output of an upsampled input is not supported, got up={up}")
    return no_argmax(argmax)


def forward(x, kernel, pt, pl, bias, act, out, scratch_of, up=(1, 1), argmax=None) -> np.ndarray | None:
    """out (N, Ho, Wo, Cout) <- act(conv(x, kernel) + bias) for a 3x3 kernel at stride 1, or None
    where it cannot run (no OpenBLAS found). x (N, H, W, Cin) C-contiguous, kernel (3, 3, Cin,
    Cout), (pt, pl) the padding on top and left (Ho, Wo from out's shape, the rest zero-padded),
    bias (Cout,), act an activation code, ``scratch_of(size)`` a flat array of x's dtype. ``up``
    = (uh, uw): convolve x upsampled by that much (nearest neighbour, as UpSampling2D) without
    forming it; pt, pl, Ho, Wo then refer to the upsampled image. ``argmax`` (N, Ho/2, Wo/2,
    Cout) of ``pool.argmax_dtype(2, 2)``: out (the same shape) and argmax <- the 2x2 max
    pooling of that output (as :func:`npae.fast.pool.maxpool_forward`; Ho, Wo even, a monotone act), each tile
    pooled as it is written."""
    openblas = blas.find()
    if openblas is None:
        return None
    n, _, _, cin = x.shape
    th, tw = out.shape[1:3] if argmax is not None else tiles(*out.shape[1:3])
    cout = kernel.shape[3]
    _check(x, kernel, out, argmax, pt, pl, up, "winograd.forward")
    if bias.shape != (cout,) or bias.dtype != x.dtype:
        raise ValueError(f"winograd.forward: expected a bias of shape {(cout,)} and dtype {x.dtype}, got "
                         f"{bias.shape} {bias.dtype}")
    group, scratch, _ = _scratch(n, th, tw, cin, cout, x.itemsize, 0, scratch_of)
    with openblas.single_threaded():
        _forward(openblas.gemm(x.dtype), np.empty(0, openblas.int_dtype), x, transform_kernel(kernel),
                 slabs_of(pt, pl, up), pt, pl, *up, bias, act, out, scratch, group, _pooling(argmax, up))
    return out


def backward(x, g, kernel, pt, pl, kernel_grad, dx, scratch_of, up=(1, 1), argmax=None) -> np.ndarray | None:
    """The backward pass of :func:`forward`'s convolution, or None where it cannot run (then
    nothing is written): ``kernel_grad`` (3, 3, Cin, Cout) <- dL/dkernel and, unless dx is None,
    dx (N, H, W, Cin) <- dL/dx, from x (N, H, W, Cin) and g = dL/dz (N, Ho, Wo, Cout) (after
    the activation's derivative; the bias gradient is the caller's); ``up`` as in forward. With
    ``argmax`` (from forward), g (N, Ho/2, Wo/2, Cout) is the gradient at the pooled winners."""
    openblas = blas.find()
    if openblas is None:
        return None
    n, _, _, cin = x.shape
    th, tw = g.shape[1:3] if argmax is not None else tiles(*g.shape[1:3])
    cout = kernel.shape[3]
    _check(x, kernel, g, argmax, pt, pl, up, "winograd.backward")
    if kernel_grad.shape != kernel.shape or kernel_grad.dtype != x.dtype or (
            dx is not None and (dx.shape != x.shape or dx.dtype != x.dtype)):
        raise ValueError(f"winograd.backward: expected gradients shaped like the kernel {kernel.shape} and the "
                         f"input {x.shape}")
    group, scratch, rest = _scratch(n, th, tw, cin, cout, x.itemsize, numba.get_num_threads() * 16 * cin * cout,
                                    scratch_of)  # and after it, each thread's dU
    du = rest[:scratch.shape[0] * 16 * cin * cout].reshape(scratch.shape[0], 16, cin, cout)
    u_t = np.ascontiguousarray(transform_kernel(kernel).transpose(0, 2, 1))  # (16, Cout, Cin)
    with openblas.single_threaded():
        _backward(openblas.gemm(x.dtype), np.empty(0, openblas.int_dtype), x, g, u_t, slabs_of(pt, pl, up),
                  pt, pl, *up, du, dx if dx is not None else x[:0], scratch, group, dx is not None,
                  _pooling(argmax, up))
    kernel_grad_of(du.sum(axis=0), kernel_grad)
    return kernel_grad
