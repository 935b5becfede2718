"""The direct stride-1 convolution, for layers with few channels: no patch matrix at all.

Forward, backward and the variants the planner asks for (an upsampled input read on the fly, a
2x2 max pooling done inside the kernel), all computing what :mod:`npae.functional.conv` computes:

    z[n, i, j, o] = sum over (a, b, c) of x[n, i - pt + a, j - pl + b, c] * w[a, b, c, o]
    dw[a, b, c, o] = sum over (n, i, j) of x[n, i - pt + a, j - pl + b, c] * g[n, i, j, o]
    dx = conv(g, w turned 180 degrees with its channel axes swapped), padded kh-1-pt above
         (the adjoint of a correlation is the correlation with the flipped kernel)
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .elementwise import activate
from .phases import fold_kernel, unfold_kernel_grad, upsampled_phases
from .pool import code_shift, max_of_2x2, no_argmax
from .runtime import chunks, inline, parallel_sums, serial, serial_sums

__all__ = ["conv2d_s1", "conv2d_s1_maxpool2x2", "conv2d_s1_input_grad", "conv2d_s1_kernel_grad"]


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
@serial
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


@serial
def _store_planes(zs, wp, ob, ph, uh, uw, bias, act, one):
    """Planes zs (C, nh*wp) back to channels-last ob (ho, wo, C) as act(z + bias) (act coded as in
    npae.fast.elementwise), dropping the junk columns: output (i, j) of phase ph = (py, px, _, _, _, _, nh,
    nw) is pixel (py + uh*i, px + uw*j)."""
    c = zs.shape[0]
    py, px, nh, nw = ph[0], ph[1], ph[6], ph[7]
    for i in range(nh):
        orow = ob[py + uh * i]
        for j in range(nw):
            o = orow[px + uw * j]
            for oo in range(c):
                o[oo] = activate(zs[oo, i * wp + j] + bias[oo], act, one)


@serial_sums
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
@serial
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


@parallel_sums
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
    _check(x, w, bias, out, (x.shape[0], ho, wo, w.shape[3]), "conv2d_s1")
    _check_window(x, w, pt, pl, ho, wo, up, "conv2d_s1")
    phases, taps = upsampled_phases(*w.shape[:2], pt, pl, ho, wo, up)
    return _conv2d_s1(x, fold_kernel(w, phases, taps), phases, *up, out, chunks(x.shape[0]), bias, act)


@parallel_sums
def _conv2d_s1_maxpool2x2(x, wf, phases, bias, act, pooled, argmax, chunks):
    n, _, _, cin = x.shape
    cout = wf.shape[4]
    pt, pl, wp, hp = _plane_layout(phases)
    ho, wo = phases[0, 6], phases[0, 7]
    one, s = pooled.dtype.type(1), code_shift(argmax.itemsize)
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
                    max_of_2x2(zb, 2 * i, 2 * j, pooled[b, i, j], argmax[b, i, j], s)
    return pooled


def conv2d_s1_maxpool2x2(x, w, pt, pl, ho, wo, bias, act, pooled, argmax):
    """:func:`conv2d_s1` (act(convolution + bias), ho x wo outputs, both even) followed by 2x2 max
    pooling at stride 2, image by image without writing the convolution's output: fills pooled
    (N, ho/2, wo/2, Cout) and argmax (the same shape, ``argmax_dtype(2, 2)``) as
    :func:`maxpool_forward` would, and returns pooled. For a monotone act the pooled values are
    act(max of z + bias), and relu's or sigmoid's derivative at each winner follows from them."""
    if ho % 2 or wo % 2:
        raise ValueError(f"conv2d_s1_maxpool2x2: the output must have even sizes, got {ho}x{wo}")
    _check(x, w, bias, pooled, (x.shape[0], ho // 2, wo // 2, w.shape[3]), "conv2d_s1_maxpool2x2")
    if argmax.shape != pooled.shape or argmax.dtype != np.uint8:
        raise ValueError(f"conv2d_s1_maxpool2x2: expected a uint8 argmax of shape {pooled.shape}, got "
                         f"{argmax.dtype} {argmax.shape}")
    _check_window(x, w, pt, pl, ho, wo, (1, 1), "conv2d_s1_maxpool2x2")
    phases, taps = upsampled_phases(*w.shape[:2], pt, pl, ho, wo, (1, 1))
    return _conv2d_s1_maxpool2x2(x, fold_kernel(w, phases, taps), phases, bias, act, pooled, argmax,
                                 chunks(x.shape[0]))


@parallel_sums
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
    _check_grad(g, w, dx, argmax, "conv2d_s1_input_grad")
    _check_window(dx, w, pt, pl, ho, wo, up, "conv2d_s1_input_grad")
    phases, taps = upsampled_phases(*w.shape[:2], pt, pl, ho, wo, up)
    folded = fold_kernel(w, phases, taps)
    flipped = np.zeros((*folded.shape[:3], folded.shape[4], folded.shape[3]), w.dtype)  # (P, kh, kw, Cout, Cin)
    for r, (kph, kpw) in enumerate(phases[:, 4:6]):  # each in its top-left corner, as fold_kernel leaves them
        flipped[r, :kph, :kpw] = folded[r, kph - 1::-1, kpw - 1::-1].transpose(0, 1, 3, 2)
    return _conv2d_s1_input_grad(g, flipped, phases, *up, dx, chunks(g.shape[0]), no_argmax(argmax))


def _check(x, w, bias, out, shape, what):
    """The kernels trust their arrays' shapes: check them (x (N, H, W, Cin), w (kh, kw, Cin, Cout),
    bias (Cout,), out ``shape``, one dtype)."""
    ok = x.ndim == 4 and w.ndim == 4 and x.shape[3] == w.shape[2] and bias.shape == (w.shape[3],)
    ok = ok and out.shape == tuple(shape) and x.dtype == w.dtype == bias.dtype == out.dtype
    if not ok:
        raise ValueError(f"{what}: inconsistent arrays: x {x.shape} {x.dtype}, w {w.shape} {w.dtype}, bias "
                         f"{bias.shape} {bias.dtype}, out {out.shape} {out.dtype} (expected out {tuple(shape)})")


def _check_window(x, w, pt, pl, ho, wo, up, what):
    """ho x wo outputs of w's window over x (N, H, W, C) read upsampled by ``up``: the padding on each
    side (pt above, and below what makes the windows fit) must lie in [0, k - 1], as
    npae.functional.conv.output_size gives it at stride 1. (Outputs, gradients and images of
    disagreeing sizes are an error, not a convolution with other padding.)"""
    for size, out, k, before, u in ((x.shape[1], ho, w.shape[0], pt, up[0]), (x.shape[2], wo, w.shape[1], pl, up[1])):
        after = out + k - 1 - before - size * u
        if out < 1 or not (0 <= before < k and 0 <= after < k):
            raise ValueError(f"{what}: {ho}x{wo} outputs of a {w.shape[0]}x{w.shape[1]} window with padding {pt} "
                             f"above and {pl} left do not fit an image of {x.shape[1] * up[0]}x{x.shape[2] * up[1]}")


def _check_grad(g, w, x, argmax, what):
    """g (N, ho, wo, Cout), w (kh, kw, Cin, Cout), x (N, H, W, Cin) of one dtype; argmax g's shape."""
    ok = g.ndim == w.ndim == x.ndim == 4 and g.shape[0] == x.shape[0] and g.shape[3] == w.shape[3]
    ok = ok and x.shape[3] == w.shape[2] and g.dtype == w.dtype == x.dtype
    ok = ok and (argmax is None or (argmax.shape == g.shape and argmax.dtype == np.uint8))
    if not ok:
        raise ValueError(f"{what}: inconsistent arrays: gradient {g.shape} {g.dtype}, kernel {w.shape} {w.dtype}, "
                         f"image {x.shape} {x.dtype}" + ("" if argmax is None else f", argmax {argmax.shape}"))


@inline
def _fill_grad_planes(g, argmax, b, py, px, uh, uw, top, left, wp, planes):
    """:func:`_fill_planes` of image b's output gradient, phase (py, px): g[b, py::uh, px::uw]; or,
    with a non-empty argmax (g the gradient of a 2x2 max pooling of the output, no phases), its
    unpooling, written straight into the planes: each pooled gradient to its window's winner, 0
    to the other three."""
    if argmax.size == 0:
        _fill_planes(g[b, py::uh, px::uw], top, left, wp, planes)
        return
    gp, ap = g[b], argmax[b]
    hp, c, s = planes.shape[1] // wp, gp.shape[2], code_shift(argmax.itemsize)
    zero = planes.dtype.type(0)
    for y in range(min(2 * gp.shape[0], hp - top)):
        for xx in range(min(2 * gp.shape[1], wp - left)):
            q, gv, av = (y + top) * wp + xx + left, gp[y >> 1, xx >> 1], ap[y >> 1, xx >> 1]
            code = argmax.dtype.type((y & 1) << s | (xx & 1))
            for ch in range(c):
                planes[ch, q] = gv[ch] if av[ch] == code else zero


@parallel_sums
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
    _check_grad(g, dw, x, argmax, "conv2d_s1_kernel_grad")
    _check_window(x, dw, pt, pl, ho, wo, up, "conv2d_s1_kernel_grad")
    phases, taps = upsampled_phases(*dw.shape[:2], pt, pl, ho, wo, up)
    dwf = np.empty((len(phases), phases[:, 4].max(), phases[:, 5].max(), *dw.shape[2:]), dw.dtype)
    _conv2d_s1_kernel_grad(x, g, phases, *up, dwf, chunks(x.shape[0]), no_argmax(argmax))
    return unfold_kernel_grad(dwf, taps, dw)

