"""The memory a plan runs in: owned by the plan's workspace (one per plan and thread), never by
the layers, and kept from call to call.

Fresh memory per batch is slow (a new 13 MB output costs ~3,200 page faults), so every step
writes its output into a buffer it keeps here; each is read before that step runs again (the
next batch). Three kinds of buffer:

- per-step buffers (:meth:`Workspace.buffer`): a step's output, argmax, gradient scratch;
- the two gradient arrays (:class:`GradientArrays`): a gradient is dead once the step below has
  read it, so the input gradients of all steps take turns in two arrays;
- one scratch array (:class:`Scratch`) for memory used within one call of one step (im2col's
  patch blocks, Winograd's tiles), shared by all steps since they run one at a time.

Whatever a caller is handed (a prediction, a loss value) is copied out or written into the
caller's own array; nothing handed out is overwritten later.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Workspace", "GradientArrays", "Scratch"]


class Scratch:
    """One flat array for use within one call of one step, grown when needed. ``owner`` is the
    step that took it last, so a step can tell whether what it left there is still there."""

    def __init__(self):
        self.array: np.ndarray | None = None
        self.owner = None

    def take(self, owner, size: int, dtype) -> np.ndarray:
        """A flat array of ``size`` elements of ``dtype``."""
        dtype = np.dtype(dtype)
        if self.array is None or self.array.size < size or self.array.dtype != dtype:
            self.array = np.empty(size, dtype=dtype)
        self.owner = owner
        return self.array[:size]


class GradientArrays:
    """The two arrays that the input gradients of a backward pass take turns in.

    A step reads its gradient from one and writes its input gradient into the other (the first
    one that does not hold the gradient it reads; the steps take them in the same order every
    call). Each grows, in the first call, to the largest gradient it holds.
    """

    def __init__(self):
        self.arrays: list[np.ndarray | None] = [None, None]

    def pick(self, size: int, dtype, busy: np.ndarray) -> np.ndarray:
        """A flat array of at least ``size`` elements that does not overlap ``busy``."""
        for k, a in enumerate(self.arrays):
            if a is not None and np.may_share_memory(a, busy):
                continue
            if a is None or a.size < size or a.dtype != dtype:
                a = self.arrays[k] = np.empty(size, dtype=dtype)
            return a
        raise AssertionError("busy overlaps both gradient arrays")  # cannot happen: busy is one array


class Workspace:
    """The buffers of one plan in one thread."""

    def __init__(self):
        self._buffers: dict = {}
        self.gradients = GradientArrays()
        self.scratch = Scratch()
        self._ones: np.ndarray | None = None

    def buffer(self, key, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An array of ``shape`` kept under ``key`` (a step and a name) and reused from call to call."""
        dtype = np.dtype(dtype)
        size = math.prod(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._buffers[key] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def grad_array(self, shape: tuple[int, ...], dtype, busy: np.ndarray) -> np.ndarray:
        """An input gradient's array: one of the two gradient arrays, not the one ``busy`` is in."""
        return self.gradients.pick(math.prod(shape), np.dtype(dtype), busy)[:math.prod(shape)].reshape(shape)

    def take_scratch(self, owner, size: int, dtype) -> np.ndarray:
        """Scratch memory for use within this call of ``owner`` only."""
        return self.scratch.take(owner, size, dtype)

    def ones(self, rows: int, dtype) -> np.ndarray:
        """A read-only vector of ``rows`` ones (the bias gradient is ones^T dZ, a GEMV)."""
        if self._ones is None or self._ones.size < rows or self._ones.dtype != dtype:
            self._ones = np.ones(rows, dtype=dtype)
            self._ones.flags.writeable = False
        return self._ones[:rows]
