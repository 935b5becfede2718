"""Flatten and Reshape: views of the input, and of the gradient."""

from __future__ import annotations

import math

import numpy as np

from ..checks import pop_keras_only
from .base import CHANNELS_LAST, Layer

__all__ = ["Flatten", "Reshape"]


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), a view (no copy) of a contiguous input."""

    def __init__(self, **kwargs):
        super().__init__(**pop_keras_only("Flatten", kwargs, {"data_format": CHANNELS_LAST}))

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        x = self._check_input(x)
        return x.reshape(x.shape[0], -1), None

    def backward(self, dout, cache):
        return dout.reshape((dout.shape[0], *self.input_shape)), {}


class Reshape(Layer):
    """Keras's ``Reshape(target_shape)``: (N, *input_shape) -> (N, *target_shape); one entry of
    target_shape may be -1 (inferred)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target = (target_shape,) if isinstance(target_shape, (int, np.integer)) else tuple(target_shape)
        if not target or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or (d <= 0 and d != -1)
                             for d in target) or target.count(-1) > 1:
            raise ValueError(f"Reshape: target_shape must be positive ints with at most one -1, got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in target)

    def compute_output_shape(self, input_shape):
        size, target = math.prod(input_shape), list(self.target_shape)
        if -1 in target:
            known = math.prod(d for d in target if d != -1)
            if size % known:
                raise ValueError(f"{self.name}: cannot reshape {tuple(input_shape)} ({size} values) into "
                                 f"{self.target_shape}")
            target[target.index(-1)] = size // known
        if math.prod(target) != size:
            raise ValueError(f"{self.name}: cannot reshape {tuple(input_shape)} ({size} values) into "
                             f"{self.target_shape} ({math.prod(target)} values)")
        return tuple(target)

    def forward(self, x, training=False):
        x = self._check_input(x)
        return x.reshape((x.shape[0], *self.output_shape)), None

    def backward(self, dout, cache):
        return dout.reshape((dout.shape[0], *self.input_shape)), {}

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
