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
    """The arrays that the input gradients of a backward pass take turns in.

    A step reads its gradient from one and writes its input gradient into another: the first
    that neither holds the gradient it reads (``busy``) nor is *held*. The plan holds a tensor's
    gradient while it waits for the step that made the tensor (in a graph, other gradients are
    computed meanwhile: a skip connection's, say) and for the other readers' contributions to be
    added to it. A chain holds nothing, so its backward pass takes turns in two arrays. The steps
    take them in the same order every call; each grows, in the first call, to the largest
    gradient it holds.
    """

    def __init__(self):
        self.arrays: list[np.ndarray | None] = [None, None]
        self.held: list[np.ndarray] = []

    def hold(self, a: np.ndarray) -> None:
        """Keep ``a`` (a tensor's gradient, or a view of one of the arrays) from being picked."""
        self.held.append(a)

    def release(self, a: np.ndarray) -> None:
        """Let the arrays under ``a`` be picked again (``a`` is read now, or no longer needed)."""
        for i, h in enumerate(self.held):
            if h is a:
                del self.held[i]
                return

    def pick(self, size: int, dtype, busy: np.ndarray) -> np.ndarray:
        """A flat array of at least ``size`` elements that overlaps neither ``busy`` nor a held gradient."""
        for k, a in enumerate(self.arrays):
            if a is not None and (np.may_share_memory(a, busy) or any(np.may_share_memory(a, h) for h in self.held)):
                continue
            if a is None or a.size < size or a.dtype != dtype:
                a = self.arrays[k] = np.empty(size, dtype=dtype)
            return a
        a = np.empty(size, dtype=dtype)  # every array is busy or held: one more
        self.arrays.append(a)
        return a


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
