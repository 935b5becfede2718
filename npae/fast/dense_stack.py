"""Prediction through Dense layers in one kernel that calls OpenBLAS's GEMM from Numba's threads.

Layer by layer, predicting 256 images with the vanilla autoencoder is a GEMM on OpenBLAS's
threads, bias + relu on Numba's, a GEMM on OpenBLAS's, bias + sigmoid on Numba's: the two cores
change hands four times, and each hand-over (waking the other pool, the caches it finds cold)
cost as much as the sigmoid itself. The kernels here keep to Numba's threads: each takes its
share of the rows and calls OpenBLAS's GEMM itself, with OpenBLAS held to one thread
(:mod:`npae.blas`).

A stack of Dense layers (``DenseStack``, used by ``Model.predict`` when every layer is a Dense):

    for each block of rows x_b                       (m, d_0), m <= BLOCK_ROWS
        h_1 = act_1(x_b @ W_1 + b_1)                 (m, d_1)   GEMM, then one pass for bias + act
        h_2 = act_2(h_1 @ W_2 + b_2)                 (m, d_2)   (h_1, h_2 in two scratch slabs of
        ...                                                      the thread's own, L2-sized)
        out_b = act_L(h_{L-1} @ W_L + b_L)           (m, d_L)   written into the output

The arithmetic is the layer-by-layer path's (the same GEMMs on fewer rows at a time, the same
bias + activation code, ``elementwise.activate``); :func:`dense_stack_forward_ref` is the NumPy
twin. (Conv2D's im2col path does the same in npae/conv_gemm.py.)
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from . import blas
from .elementwise import activate, bias_act_forward_ref

__all__ = ["BLOCK_ROWS", "DenseStack", "dense_stack_forward_ref"]

BLOCK_ROWS = 128  # rows per block: 128 x 784 float32 inputs are 400 KB, within a core's L2


@numba.njit(cache=True, parallel=True, fastmath={"contract"})
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


@numba.njit(cache=True, inline="always", fastmath={"contract"})
def _bias_act_rows(z, b, act, one):
    """z <- act(z + b) for z (m, units) C-contiguous, b (units,): one thread's pass."""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] = activate(z[i, j] + b[j], act, one)


def dense_stack_forward_ref(x, kernels, biases, acts):
    """The twin: layer after layer in NumPy, act(x @ W + b)."""
    for w, b, act in zip(kernels, biases, acts):
        x = bias_act_forward_ref(x @ w, b, act)
    return x


class DenseStack:
    """A model's Dense layers (all its layers, in order) run as :func:`_dense_stack`.

    ``DenseStack.of(layers)`` gives one, or None when a layer is not a Dense or npae.blas found
    no OpenBLAS; ``forward(x, out)`` fills ``out``. Keeps its scratch slabs from call to call
    (fresh memory would cost page faults every call)."""

    def __init__(self, layers: list, openblas: blas.OpenBLAS):
        self.layers, self.openblas = layers, openblas
        self._scratch = np.empty(0, dtype=layers[0].dtype)
        self._ints = np.empty(0, dtype=openblas.int_dtype)

    @classmethod
    def of(cls, layers) -> DenseStack | None:
        from .layers.core import Dense  # (here: the layers import this module)

        if not layers or not all(type(layer) is Dense for layer in layers):
            return None
        openblas = blas.find()
        return None if openblas is None else cls(list(layers), openblas)

    def forward(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out (n, d_L) <- the layers applied to x (n, d_0); both C-contiguous in the layers' dtype."""
        n, dtype = x.shape[0], x.dtype
        want = (n, self.layers[-1].units)
        if not (x.flags.c_contiguous and out.flags.c_contiguous and out.dtype == dtype and out.shape == want
                and x.ndim == 2 and x.shape[1] == self.layers[0].input_shape[0] and dtype.kind == "f"):
            raise ValueError(f"DenseStack.forward: expected C-contiguous x (n, {self.layers[0].input_shape[0]}) "
                             f"and out {want} of one float dtype, got x {x.shape} {dtype} and out "
                             f"{out.shape} {out.dtype}")
        if n == 0:
            return out
        # the GEMM reads plain C arrays of x's dtype: the weights already are (no copy then)
        kernels = tuple(np.ascontiguousarray(layer.params["kernel"], dtype=dtype) for layer in self.layers)
        biases = tuple(np.ascontiguousarray(layer._bias(), dtype=dtype) for layer in self.layers)
        acts = np.array([layer.activation.code for layer in self.layers], dtype=np.int64)
        threads = numba.get_num_threads()
        block = min(BLOCK_ROWS, max(8, math.ceil(n / threads)))  # small batches: every thread a block
        width = 2 * block * max(w.shape[1] for w in kernels)
        if self._scratch.size < threads * width or self._scratch.dtype != dtype:
            self._scratch = np.empty(threads * width, dtype=dtype)
        scratch = self._scratch[:threads * width].reshape(threads, 2, width // 2)
        threads = min(threads, math.ceil(n / block))
        with self.openblas.single_threaded():
            _dense_stack(self.openblas.gemm(dtype), self._ints, x, kernels, biases, acts, out,
                         scratch[:threads], block)
        return out

