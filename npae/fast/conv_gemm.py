"""Conv2D's patch-matrix forward pass as one Numba kernel calling OpenBLAS's GEMM from Numba's
threads (the GEMM_KERNEL algorithm of :mod:`npae.fast.policy`).

Block by block through NumPy, a convolution's forward pass is im2col on Numba's threads, a GEMM
on OpenBLAS's, bias + activation on Numba's: the two cores change thread pools three times per
block. Here each Numba thread takes a few images at a time (patches and GEMM output about
PATCH_BYTES, in its own cache) and calls OpenBLAS's GEMM itself, held to one thread
(:mod:`npae.fast.blas`). For each output phase p (one for a plain convolution; one per phase of an
upsampled input, whose folded kernel and window :func:`npae.fast.conv_im2col.phase_plan` gives):

    P = im2col(x_g)                           (g*nh*nw, K_p)   a group of images
    Z = P @ W_p                               (g*nh*nw, Cout)
    out[g, py::uh, px::uw] = act(Z + bias)    (g, nh, nw, Cout)

It computes :func:`npae.functional.conv.forward` (the tests hold them together); ``forward``
returns None, doing nothing, where :func:`npae.fast.blas.find` found no OpenBLAS. The backward
pass is :mod:`npae.fast.conv_im2col`'s: done the same way it measured no faster, its two GEMMs
being nearly all of its time.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from . import blas
from .elementwise import activate
from .im2col import im2col_image
from .runtime import parallel_contract

__all__ = ["PATCH_BYTES", "forward"]

PATCH_BYTES = 512 * 1024  # a thread's patches and GEMM output: about half a core's L2


def _groups(x, windows, kernels_p, cout, scratch_of):
    """(group size, threads, scratch (threads, group * per image)) for x's images."""
    n = x.shape[0]
    per_image = max(int(nh * nw * (w.shape[0] + cout)) for (*_, nh, nw), w in zip(windows, kernels_p))
    group = max(1, min(PATCH_BYTES // (per_image * x.itemsize), math.ceil(n / numba.get_num_threads())))
    threads = min(numba.get_num_threads(), math.ceil(n / group))
    return group, threads, scratch_of(threads * group * per_image).reshape(threads, group * per_image)


@parallel_contract
def _forward(gemm, ints, x, windows, kernels_p, at, up, bias, act, out, scratch, group):
    n, cout, threads = x.shape[0], out.shape[3], scratch.shape[0]
    one = x.dtype.type(1)
    uh, uw = up[0], up[1]
    groups = (n + group - 1) // group
    for t in prange(threads):
        for gi in range(t, groups, threads):
            s, e = gi * group, min(n, (gi + 1) * group)
            for p in range(len(kernels_p)):
                kh, kw, sh, sw, pt, pl, nh, nw = windows[p]
                w2 = kernels_p[p]
                k, rows = w2.shape[0], (e - s) * nh * nw
                cols = scratch[t, :rows * k].reshape(rows, k)
                z = scratch[t, rows * k:rows * (k + cout)].reshape(rows, cout)
                for b in range(s, e):
                    im2col_image(x, b, kh, kw, sh, sw, pt, pl, nh, nw, cols, (b - s) * nh * nw)
                blas.gemm_rows(gemm, ints, rows, cout, k, cols.ctypes.data, k, w2.ctypes.data, cout,
                               z.ctypes.data, cout, one)  # Z = P @ W_p
                py, px = at[p, 0], at[p, 1]
                for b in range(s, e):
                    for i in range(nh):
                        for j in range(nw):
                            r = ((b - s) * nh + i) * nw + j
                            for c in range(cout):
                                out[b, py + i * uh, px + j * uw, c] = activate(z[r, c] + bias[c], act, one)


def forward(x, windows, kernels_p, at, up, bias, act, out, scratch_of) -> np.ndarray | None:
    """out (N, Ho, Wo, Cout) <- act(convolution of x + bias), or None where it cannot run.

    x (N, H, W, Cin) C-contiguous; per phase p: ``windows[p]`` = (kh, kw, sh, sw, pt, pl, nh, nw)
    (an int64 array (P, 8), the arguments of npae.fast.im2col.im2col), ``kernels_p[p]`` (K_p, Cout),
    ``at[p]`` = (py, px) the phase's first output row and column (int64 (P, 2)), every up[0]-th
    row and up[1]-th column from there ((0, 0) and (1, 1) for a plain convolution); bias (Cout,);
    act an activation code; ``scratch_of(size)`` a flat array of x's dtype for scratch."""
    openblas = blas.find()
    if openblas is None:
        return None
    kernels_p = tuple(np.ascontiguousarray(w, dtype=x.dtype) for w in kernels_p)
    n, _, _, cin = x.shape
    cout = out.shape[3]
    ok = x.flags.c_contiguous and out.dtype == bias.dtype == x.dtype and out.shape[0] == n
    ok = ok and bias.shape == (cout,) and windows.shape == (len(kernels_p), 8) and at.shape == (len(kernels_p), 2)
    for (kh, kw, _, _, _, _, nh, nw), w2, (py, px) in zip(windows, kernels_p, at):
        # each phase writes its rows py, py + up[0], ... to the end of out (its columns likewise)
        ok = ok and w2.shape == (kh * kw * cin, cout) and min(py, px, nh - 1, nw - 1) >= 0
        ok = ok and py + (nh - 1) * up[0] < out.shape[1] <= py + nh * up[0]
        ok = ok and px + (nw - 1) * up[1] < out.shape[2] <= px + nw * up[1]
    if not ok:
        raise ValueError(f"conv_gemm.forward: inconsistent arrays: x {x.shape} {x.dtype}, kernels "
                         f"{[w.shape for w in kernels_p]}, windows {windows.tolist()}, out {out.shape} {out.dtype}")
    group, threads, scratch = _groups(x, windows, kernels_p, out.shape[3], scratch_of)
    with openblas.single_threaded():
        _forward(openblas.gemm(x.dtype), np.empty(0, openblas.int_dtype), x, windows, kernels_p, at,
                 np.array(up, dtype=np.int64), bias, act, out, scratch, group)
    return out
