"""Conv2D's im2col forward pass as one Numba kernel calling OpenBLAS's GEMM from Numba's threads.

Block by block through NumPy, a convolution's forward pass is im2col on Numba's threads, a GEMM
on OpenBLAS's, bias + activation on Numba's: the two cores change thread pools three times per
block (see npae/inference.py for what a hand-over costs). Here each Numba thread takes a few
images at a time (patches and GEMM output about PATCH_BYTES, in its own cache) and calls
OpenBLAS's GEMM itself, held to one thread (:mod:`npae.blas`). For each output phase p (one for
a plain convolution; one per phase of an upsampled input, whose folded kernel and window
Conv2D._phase_plan gives):

    P = im2col(x_g)                           (g*nh*nw, K_p)   a group of images
    Z = P @ W_p                               (g*nh*nw, Cout)
    out[g, py::uh, px::uw] = act(Z + bias)    (g, nh, nw, Cout)

The same arithmetic as Conv2D's NumPy path (:func:`forward_ref` is the twin); ``forward`` returns
None, doing nothing, where npae.blas found no OpenBLAS. (The backward pass stays in NumPy: done
the same way it measured no faster, its two GEMMs being nearly all of its time.)
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from . import blas, kernels
from .elementwise import activate, bias_act_forward_ref

__all__ = ["PATCH_BYTES", "forward", "forward_ref"]

PATCH_BYTES = 512 * 1024  # a thread's patches and GEMM output: about half a core's L2


def _groups(x, windows, kernels_p, cout, scratch_of):
    """(group size, threads, scratch (threads, group * per image)) for x's images."""
    n = x.shape[0]
    per_image = max(int(nh * nw * (w.shape[0] + cout)) for (*_, nh, nw), w in zip(windows, kernels_p))
    group = max(1, min(PATCH_BYTES // (per_image * x.itemsize), math.ceil(n / numba.get_num_threads())))
    threads = min(numba.get_num_threads(), math.ceil(n / group))
    return group, threads, scratch_of(threads * group * per_image).reshape(threads, group * per_image)


@numba.njit(cache=True, parallel=True, fastmath={"contract"})
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
                    kernels.im2col_image(x, b, kh, kw, sh, sw, pt, pl, nh, nw, cols, (b - s) * nh * nw)
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
    (an int64 array (P, 8), the arguments of kernels.im2col), ``kernels_p[p]`` (K_p, Cout),
    ``at[p]`` = (py, px) the phase's first output row and column (int64 (P, 2)), every up[0]-th
    row and up[1]-th column from there ((0, 0) and (1, 1) for a plain convolution); bias (Cout,);
    act an activation code; ``scratch_of(size)`` a flat array of x's dtype for scratch."""
    openblas = blas.find()
    if openblas is None:
        return None
    kernels_p = tuple(np.ascontiguousarray(w, dtype=x.dtype) for w in kernels_p)
    group, threads, scratch = _groups(x, windows, kernels_p, out.shape[3], scratch_of)
    with openblas.single_threaded():
        _forward(openblas.gemm(x.dtype), np.empty(0, openblas.int_dtype), x, windows, kernels_p, at,
                 np.array(up, dtype=np.int64), bias, act, out, scratch, group)
    return out


def forward_ref(x, windows, kernels_p, at, up, bias, act, out):
    """The twin of :func:`forward`: kernels.im2col_ref and a matmul per phase, then bias + act."""
    uh, uw = up
    for (kh, kw, sh, sw, pt, pl, nh, nw), w2, (py, px) in zip(windows, kernels_p, at):
        p = kernels.im2col_ref(x, kh, kw, sh, sw, pt, pl, nh, nw)
        out[:, py::uh, px::uw] = (p @ w2).reshape(x.shape[0], nh, nw, -1)
    bias_act_forward_ref(out.reshape(-1, out.shape[3]), bias, act)
    return out
