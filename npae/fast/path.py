"""The fast path as a model runs it: a plan per mode, built once, and a workspace per plan and
thread, so that several threads can predict with one model (each with its own buffers; the
batches take turns, see :data:`npae.fast.runtime.KERNEL_LOCK`)."""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from ..graph import FlatGraph
from ..paths import Head, Losses
from . import blas, elementwise
from .memory import Workspace
from .plan import Plan
from .planner import plan
from .runtime import KERNEL_LOCK

__all__ = ["FastPath", "running_kernels"]


@contextlib.contextmanager
def running_kernels():
    """Hold the kernels (:data:`npae.fast.runtime.KERNEL_LOCK`: one batch at a time) with OpenBLAS
    single-threaded (see :func:`_one_openblas_thread`), around every run of a plan."""
    with KERNEL_LOCK, _one_openblas_thread():
        yield


def _one_openblas_thread():
    """The fast path's GEMMs run on Numba's threads (npae.fast.blas.matmul), each calling OpenBLAS
    single-threaded: OpenBLAS's own pool is never woken, so its idle threads never spin on the
    cores the kernels need (whatever the process set OPENBLAS_THREAD_TIMEOUT to, or imported
    first), and the thread count, which changes GEMM's rounding, is always the same. The caller's
    setting comes back after the call."""
    openblas = blas.find()
    return openblas.single_threaded() if openblas is not None else contextlib.nullcontext()


class FastPath:
    """Runs a model's graph and its losses on the fast path (:class:`npae.paths.Path`; the
    arguments are :class:`npae.reference.ReferencePath`'s)."""

    def __init__(self, flat: FlatGraph, heads: list[Head] | tuple = ()):
        self.flat, self.heads = flat, list(heads)
        self.layers = list(dict.fromkeys(op.layer for op in flat.ops))
        self._plans: dict = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def dtype(self) -> np.dtype:
        return next((layer.dtype for layer in self.layers if layer.params), np.dtype(np.float32))

    def plan(self, mode: str) -> Plan:
        """The plan for "train", "evaluate" or "predict" (built on first use, and again when a
        layer is frozen or unfrozen: the backward pass runs only where a weight trains)."""
        key = (mode, tuple(layer.trainable for layer in self.layers))
        found = self._plans.get(key)
        if found is None:
            with self._lock:
                found = self._plans.get(key)
                if found is None:
                    found = self._plans[key] = plan(self.flat, self.heads, mode, self.dtype)
        return found

    def workspace(self, mode: str) -> Workspace:
        """This thread's workspace for ``mode``'s plan."""
        spaces = self._local.__dict__.setdefault("spaces", {})
        ws = spaces.get(mode)
        if ws is None:
            ws = spaces[mode] = Workspace()
        return ws

    def gradients(self, xs, ys, grads: dict, outputs=None) -> Losses:
        with running_kernels():
            return self.plan("train").gradients(xs, ys, self.workspace("train"), grads, None, outputs)

    def loss_value(self, xs, ys, training: bool = False, outputs=None) -> Losses:
        mode = "train" if training else "evaluate"
        with running_kernels():
            return self.plan(mode).loss_value(xs, ys, self.workspace(mode), outputs)

    def predict(self, xs, outs):
        with running_kernels():
            return self.plan("predict").predict(xs, self.workspace("predict"), outs)

    def step(self, optimizer, params: dict, grads: dict) -> None:
        """One optimizer update with the compiled update functions."""
        with KERNEL_LOCK:
            optimizer.step(params, grads, elementwise)

    def gather(self, src: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out <- src[idx] (a batch of the training set) on all cores."""
        if src.dtype == out.dtype and src.flags.c_contiguous:
            with KERNEL_LOCK:
                elementwise.gather_rows(src.reshape(len(src), -1), idx, out.reshape(len(idx), -1))
        else:
            out[...] = src[idx]
        return out
