"""Dense, stand-alone activations, Flatten, Reshape and the input placeholder."""

from __future__ import annotations

import math

import numpy as np

from .. import initializers
from .base import Layer

__all__ = ["InputLayer", "Dense", "Activation", "ReLU", "Flatten", "Reshape"]


class InputLayer(Layer):
    """The placeholder at the start of a functional model: passes data through unchanged."""

    def __init__(self, input_shape: tuple[int, ...], name: str | None = None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.build(input_shape)

    def forward(self, x, training=False):
        return self._check_input(x)

    def backward(self, grad_out, overwrite_grad=False):
        return grad_out

    def get_config(self):
        return {**super().get_config(), "input_shape": list(self.input_shape)}


class Dense(Layer):
    """Fully connected layer: a = activation(x @ kernel + bias).

    Shapes: x (N, in), kernel (in, units), bias (units,), a (N, units).
    Backward, with g = dL/dz (N, units):
        dL/dkernel = x^T g   (in, units);   dL/dbias = sum_n g   (units,);   dL/dx = g kernel^T   (N, in)
    """

    param_order = ("kernel", "bias")

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 activity_regularizer=None, name=None, dtype=None, input_shape=None, input_dim=None):
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        if input_dim is not None:
            input_shape = (input_dim,)
        super().__init__(name=name, dtype=dtype, activation=activation,
                         activity_regularizer=activity_regularizer, input_shape=input_shape)
        self.units, self.use_bias = int(units), bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._init_names = (kernel_initializer, bias_initializer)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"{self.name}: Dense expects input of shape (batch, features), got (batch, "
                f"{', '.join(map(str, input_shape))}); add a Flatten layer first"
            )
        return (self.units,)

    def _create_params(self, input_shape, rng):
        self.params["kernel"] = self.kernel_initializer((input_shape[0], self.units), self.dtype, rng)
        if self.use_bias:
            self.params["bias"] = self.bias_initializer((self.units,), self.dtype, rng)

    def forward_linear(self, x, training):
        self._x = x  # (N, in), kept for dL/dkernel
        z = self.result_buffer("out", (x.shape[0], self.units), x.dtype)
        return np.matmul(x, self.params["kernel"], out=z)  # (N, units); the base adds bias and activation

    def backward_linear(self, grad_z):
        np.matmul(self._x.T, grad_z, out=self.grads["kernel"])  # (in, units)
        if not self.needs_input_grad:
            return None
        dx = self.result_buffer("dx", self._x.shape, grad_z.dtype)
        return np.matmul(grad_z, self.params["kernel"].T, out=dx)  # (N, in)

    def get_config(self):
        names = [n if isinstance(n, str) else "glorot_uniform" for n in self._init_names]
        return {**super().get_config(), "units": self.units, "activation": self.activation.name,
                "use_bias": self.use_bias, "kernel_initializer": names[0], "bias_initializer": names[1]}


class Activation(Layer):
    """An activation as a layer of its own: ``Activation('relu')``. Shape in = shape out."""

    def __init__(self, activation, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, activation=activation, input_shape=input_shape)

    def forward_linear(self, x, training):
        z = self.result_buffer("out", (x.size // x.shape[-1], x.shape[-1]), x.dtype)
        np.copyto(z, x.reshape(z.shape))
        return z  # (rows, last axis); the base applies the activation

    def backward_linear(self, grad_z):
        # grad_z may live in this layer's grad_z workspace: hand the caller an array of its own
        dx = self.result_buffer("dx", (grad_z.size // math.prod(self.input_shape), *self.input_shape), grad_z.dtype)
        np.copyto(dx, grad_z.reshape(dx.shape))
        return dx

    def get_config(self):
        return {**super().get_config(), "activation": self.activation.name}


class ReLU(Activation):
    """``Activation('relu')`` under Keras's class name."""

    def __init__(self, name=None, dtype=None, input_shape=None):
        super().__init__("relu", name=name, dtype=dtype, input_shape=input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("activation")
        return cfg


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), a view (no copy) of a contiguous input."""

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        x = self._check_input(x)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out, overwrite_grad=False):
        return grad_out.reshape((grad_out.shape[0], *self.input_shape))


class Reshape(Layer):
    """(N, *input_shape) -> (N, *target_shape); one entry of target_shape may be -1."""

    def __init__(self, target_shape, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.target_shape = tuple(int(d) for d in target_shape)

    def compute_output_shape(self, input_shape):
        size, target = math.prod(input_shape), list(self.target_shape)
        if target.count(-1) > 1:
            raise ValueError(f"{self.name}: at most one -1 in target_shape, got {self.target_shape}")
        if -1 in target:
            known = math.prod(d for d in target if d != -1)
            if known == 0 or size % known:
                raise ValueError(f"{self.name}: cannot reshape {input_shape} into {self.target_shape}")
            target[target.index(-1)] = size // known
        if math.prod(target) != size:
            raise ValueError(
                f"{self.name}: cannot reshape {tuple(input_shape)} ({size} values) into "
                f"{self.target_shape} ({math.prod(target)} values)"
            )
        return tuple(target)

    def forward(self, x, training=False):
        x = self._check_input(x)
        return x.reshape((x.shape[0], *self.output_shape))

    def backward(self, grad_out, overwrite_grad=False):
        return grad_out.reshape((grad_out.shape[0], *self.input_shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
