"""Prediction through Dense layers in one kernel that calls OpenBLAS's GEMM from Numba's threads
(the planner's DenseStackStep, for a model of Dense layers only).

Layer by layer, a prediction is a GEMM on OpenBLAS's threads, bias + relu on Numba's, a GEMM on
OpenBLAS's, bias + sigmoid on Numba's: the two cores change hands four times, and each hand-over
(waking the other pool, the caches it finds cold) cost as much as the sigmoid itself. The kernel
here keeps to Numba's threads: each takes its share of the rows and calls OpenBLAS's GEMM itself,
with OpenBLAS held to one thread (:mod:`npae.fast.blas`):

    for each block of rows x_b                       (m, d_0), m <= BLOCK_ROWS
        h_1 = act_1(x_b @ W_1 + b_1)                 (m, d_1)   GEMM, then one pass for bias + act
        h_2 = act_2(h_1 @ W_2 + b_2)                 (m, d_2)   (h_1, h_2 in two scratch slabs of
        ...                                                      the thread's own, L2-sized)
        out_b = act_L(h_{L-1} @ W_L + b_L)           (m, d_L)   written into the output

It computes the layers' reference passes (:mod:`npae.functional.dense` and
:mod:`npae.functional.activations`), which the tests hold it against.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from . import blas
from .elementwise import activate
from .runtime import inline_contract, parallel_contract

__all__ = ["BLOCK_ROWS", "forward"]

BLOCK_ROWS = 128  # rows per block: 128 x 784 float32 inputs are 400 KB, within a core's L2


@parallel_contract
def _dense_stack(gemm, ints, x, kernels, biases, acts, out, scratch, block):
    """out <- the stack applied to x, block by block; x (n, d_0) and out (n, d_L) C-contiguous,
    kernels[l] (d_l, d_l+1) C-contiguous, biases[l] (d_l+1,), acts[l] an activation code,
    scratch (threads, 2, block * max d_l) (each thread's two slabs); ``ints`` an empty array of
    the GEMM's integer type."""
    n, threads, layers = x.shape[0], scratch.shape[0], len(kernels)
    one, size = x.dtype.type(1), x.itemsize
    flat_out = out.reshape(out.size)
    blocks = (n + block - 1) // block
    for t in prange(threads):
        for blk in range(t, blocks, threads):
            r0 = blk * block
            m = min(block, n - r0)
            src, ld_src = np.intp(x.ctypes.data) + r0 * x.shape[1] * size, x.shape[1]
            for k in range(layers):
                w = kernels[k]
                units = w.shape[1]
                if k == layers - 1:  # the last layer writes its rows of the output
                    dst, base = flat_out, r0 * units
                else:  # the others take turns with the thread's two slabs
                    dst, base = scratch[t, k % 2], 0
                addr = np.intp(dst.ctypes.data) + base * size
                # dst[base:] as (m, units) = src (m, w.shape[0]) @ w (w.shape[0], units)
                blas.gemm_rows(gemm, ints, m, units, w.shape[0], src, ld_src, w.ctypes.data, units, addr, units,
                               one)
                _bias_act_rows(dst[base:base + m * units].reshape(m, units), biases[k], acts[k], one)
                src, ld_src = addr, units


@inline_contract
def _bias_act_rows(z, b, act, one):
    """z <- act(z + b) for z (m, units) C-contiguous, b (units,): one thread's pass."""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] = activate(z[i, j] + b[j], act, one)




def forward(x: np.ndarray, kernels, biases, acts, out: np.ndarray, scratch_of) -> np.ndarray | None:
    """out (n, d_L) <- the stack of dense layers applied to x (n, d_0), or None where OpenBLAS was
    not found (then nothing is done).

    Parameters
    ----------
    x : (n, d_0), C-contiguous.
    kernels : per layer l a (d_l, d_l+1) array; biases : per layer a (d_l+1,) array.
    acts : per layer an activation code (:data:`npae.fast.elementwise.ACT_CODES`).
    out : (n, d_L), C-contiguous, x's dtype.
    scratch_of : ``scratch_of(size)`` -> a flat array of x's dtype for the blocks in flight.
    """
    openblas = blas.find()
    if openblas is None:
        return None
    n, dtype = x.shape[0], x.dtype
    dims = [x.shape[1] if x.ndim == 2 else -1] + [np.shape(w)[1] if np.ndim(w) == 2 else -1 for w in kernels]
    ok = x.ndim == 2 and x.flags.c_contiguous and out.flags.c_contiguous and out.dtype == dtype
    ok = ok and len(kernels) == len(biases) == len(acts) > 0 and out.shape == (n, dims[-1])
    ok = ok and all(np.shape(w) == (dims[k], dims[k + 1]) and np.shape(b) == (dims[k + 1],)
                    for k, (w, b) in enumerate(zip(kernels, biases)))
    if not ok:
        raise ValueError(f"dense_stack.forward: expected C-contiguous x (n, d_0), kernels (d_l, d_l+1), biases "
                         f"(d_l+1,) and out (n, d_L) of one dtype, got x {x.shape} {dtype}, kernels "
                         f"{[np.shape(w) for w in kernels]}, out {out.shape} {out.dtype}")
    if n == 0:
        return out
    # the GEMM reads plain C arrays of x's dtype: the weights already are (no copy then)
    kernels = tuple(np.ascontiguousarray(w, dtype=dtype) for w in kernels)
    biases = tuple(np.ascontiguousarray(b, dtype=dtype) for b in biases)
    threads = numba.get_num_threads()
    block = min(BLOCK_ROWS, max(8, math.ceil(n / threads)))  # small batches: every thread a block
    width = 2 * block * max(w.shape[1] for w in kernels)
    threads = min(threads, math.ceil(n / block))
    scratch = scratch_of(threads * width).reshape(threads, 2, width // 2)
    with openblas.single_threaded():
        _dense_stack(openblas.gemm(dtype), np.empty(0, openblas.int_dtype), x, kernels, biases,
                     np.asarray(acts, dtype=np.int64), out, scratch, block)
    return out
