"""The input placeholder and Dense."""

from __future__ import annotations

import numpy as np

from .. import activations, initializers
from ..checks import pop_keras_only, positive_int
from ..functional import dense
from ..graph import Node, SymbolicTensor
from .base import ActivatedCache, Layer

__all__ = ["Input", "InputLayer", "Dense"]

_KERNEL_OFF = {"kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None,
               "bias_constraint": None, "lora_rank": None}


def _shape_arg(shape, batch_shape, owner: str) -> tuple[int, ...]:
    if shape is None and batch_shape is not None:
        shape = tuple(batch_shape)[1:]
    if shape is None:
        raise ValueError(f"{owner}: give shape=(...) without the batch axis, e.g. Input(shape=(784,))")
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0 for d in shape):
        raise ValueError(f"{owner}: shape must be positive ints without the batch axis, got {shape!r}")
    return tuple(int(d) for d in shape)


class InputLayer(Layer):
    """The placeholder at the start of a model (Keras's ``InputLayer``): passes data through."""

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None, input_shape=None,
                 **kwargs):
        shape = _shape_arg(shape if shape is not None else input_shape, batch_shape, "InputLayer")
        super().__init__(name=name, dtype=dtype, **pop_keras_only("InputLayer", kwargs, {"sparse": None}))
        self.build(shape)
        self._inbound_nodes.append(Node(self, (), [self.input_shape], False, False, self.dtype.name))

    def forward(self, x, training=False):
        return self._check_input(x), None

    def backward(self, dout, cache):
        return dout, {}

    def get_config(self):
        return {**super().get_config(), "input_shape": list(self.input_shape)}


def Input(shape=None, batch_size=None, dtype=None, name: str | None = None, batch_shape=None,  # noqa: N802
          **kwargs) -> SymbolicTensor:
    """Keras's ``Input(shape=(...))``: the symbolic entry of a functional model (shape without
    the batch axis)."""
    layer = InputLayer(shape, batch_size, dtype, batch_shape, name, **kwargs)
    return layer.output


class Dense(Layer):
    """Keras's ``Dense(units, activation=None, use_bias=True)``: a = activation(x @ kernel + bias).

    Shapes: x (N, D), kernel (D, units), bias (units,), a (N, units). The maths of both passes:
    :mod:`npae.functional.dense` (and :mod:`npae.functional.activations`).
    """

    param_order = ("kernel", "bias")

    def __init__(self, units: int, activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", activity_regularizer=None, input_dim: int | None = None, **kwargs):
        self.units = positive_int(units, "Dense: units")
        if input_dim is not None:
            kwargs["input_shape"] = (input_dim,)
        super().__init__(activity_regularizer=activity_regularizer, **pop_keras_only("Dense", kwargs, _KERNEL_OFF))
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"{self.name}: Dense expects input of shape (batch, features), got (batch, "
                             f"{', '.join(map(str, input_shape))}); add a Flatten layer first")
        return (self.units,)

    def weight_shapes(self, input_shape):
        return {"kernel": (input_shape[0], self.units), **({"bias": (self.units,)} if self.use_bias else {})}

    def forward(self, x, training=False, logits=False):
        """a (N, units), cache; with ``logits``, z = x @ kernel + bias instead of a."""
        x = self._check_input(x)
        z, linear = dense.forward(x, self.params["kernel"], self.params.get("bias"))
        a, act = self._activate(z, logits)
        return a, ActivatedCache(linear, act)

    def backward(self, dout, cache):
        """dL/dx (N, D) and {"kernel": (D, units), "bias": (units,)} from dout (N, units)."""
        dz = self._deactivate(dout, cache.act)
        dx, dkernel, dbias = dense.backward(dz, cache.linear)
        return dx, {"kernel": dkernel, "bias": dbias} if self.use_bias else {"kernel": dkernel}

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias, "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}
