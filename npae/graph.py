"""The functional API's symbolic tensors: ``h = Dense(64)(x)`` records, in the tensor h, the layer
that produced it and the tensor it was applied to. ``Model(x, h)`` walks back from the output to
the input and gets the chain of layers to run (:func:`trace_chain`). Only chains are supported
(one input, one output, no merges): every model of the autoencoder tutorial is one. A layer may
appear in a chain more than once (a shared layer).
"""

from __future__ import annotations

__all__ = ["SymbolicTensor", "trace_chain"]


class SymbolicTensor:
    """A placeholder for a batch of shape (None, *sample_shape): no data, just where it came from.
    As Keras's symbolic tensors, ``shape`` includes the batch axis, as None."""

    def __init__(self, sample_shape, layer=None, parent: SymbolicTensor | None = None):
        self.sample_shape = tuple(int(d) for d in sample_shape)  # without the batch axis
        self.layer = layer  # the layer that produced this tensor (an InputLayer for an Input)
        self.parent = parent  # the tensor that layer was applied to (None for an Input)

    @property
    def shape(self) -> tuple:
        """(None, *sample_shape), as Keras's ``KerasTensor.shape``."""
        return (None, *self.sample_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    @property
    def dtype(self) -> str:
        """The name of the dtype of the layer that produced it (Keras gives a name too)."""
        return str(getattr(self.layer, "dtype", "float32"))

    def __repr__(self) -> str:
        name = getattr(self.layer, "name", None)
        return f"<SymbolicTensor shape={self.shape} from {name!r}>"


def trace_chain(inputs, outputs) -> list:
    """The layers from ``inputs`` to ``outputs``, the input's InputLayer first. Raises on anything
    but a single chain from one input to one output."""
    inputs = _single(inputs, "inputs")
    outputs = _single(outputs, "outputs")
    chain, t = [], outputs
    while t.parent is not None:
        chain.append(t.layer)
        t = t.parent
    if t is not inputs:
        raise ValueError(f"Model: the output {outputs!r} is not computed from the given input {inputs!r}; "
                         "build the output by calling layers on that Input")
    chain.append(inputs.layer)
    return chain[::-1]


def _single(t, what):
    if isinstance(t, (list, tuple)):
        if len(t) != 1:
            raise ValueError(f"Model: npae supports exactly one tensor as {what}, got {len(t)}")
        t = t[0]
    if isinstance(t, dict):
        raise ValueError(f"Model: npae supports exactly one tensor as {what}, got a dict")
    if not isinstance(t, SymbolicTensor):
        raise TypeError(f"Model: {what} must be a tensor from Input(...) or a layer call, got {type(t).__name__}")
    return t
