"""The functional API: ``Input`` and the symbolic tensors that layer calls pass along.

``x = Input(shape=(784,)); h = Dense(64)(x)`` records, in each tensor, the layer that produced it
and the tensor it was applied to. ``Model(x, h)`` walks back from the output to the input and gets
the chain of layers to run. Only chains are supported (one input, one output, no merges), which is
every model of the autoencoder tutorial.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SymbolicTensor", "Input", "trace_chain"]


class SymbolicTensor:
    """A placeholder for a batch of shape (None, *shape): no data, just where it came from."""

    def __init__(self, shape, layer=None, parent: SymbolicTensor | None = None):
        self.shape = tuple(int(d) for d in shape)
        self.layer = layer  # the layer that produced this tensor (an InputLayer for an Input)
        self.parent = parent  # the tensor that layer was applied to (None for an Input)

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape=(None, {', '.join(map(str, self.shape))}) from {self.layer.name!r}>"


def Input(shape=None, name: str | None = None, dtype=None, batch_shape=None) -> SymbolicTensor:  # noqa: N802
    """Keras's ``Input(shape=(...))``: the entry of a functional model (shape without batch axis)."""
    from .layers.core import InputLayer

    if shape is None and batch_shape is not None:
        shape = tuple(batch_shape)[1:]
    if shape is None:
        raise ValueError("Input: give shape=(...) without the batch axis, e.g. Input(shape=(784,))")
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not shape or any(not isinstance(d, (int, np.integer)) or d <= 0 for d in shape):
        raise ValueError(f"Input: shape must be positive ints without the batch axis, got {shape!r}")
    return SymbolicTensor(shape, layer=InputLayer(shape, name=name, dtype=dtype))


def trace_chain(inputs, outputs) -> list:
    """The layers from ``inputs`` to ``outputs``, the InputLayer first. Raises on anything but a
    single chain from one input to one output."""
    inputs = _single(inputs, "inputs")
    outputs = _single(outputs, "outputs")
    chain, t = [], outputs
    while t.parent is not None:
        chain.append(t.layer)
        t = t.parent
    if t is not inputs:
        raise ValueError(
            f"Model: the output {outputs!r} is not computed from the given input {inputs!r}; "
            "build the output by calling layers on that Input"
        )
    chain.append(inputs.layer)
    return chain[::-1]


def _single(t, what):
    if isinstance(t, (list, tuple)):
        if len(t) != 1:
            raise ValueError(f"Model: npae supports exactly one tensor as {what}, got {len(t)}")
        t = t[0]
    if not isinstance(t, SymbolicTensor):
        raise TypeError(f"Model: {what} must be a tensor from Input(...) or a layer call, got {type(t).__name__}")
    return t
