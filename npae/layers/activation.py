"""Activations as layers of their own: Activation, ReLU, LeakyReLU, Softmax."""

from __future__ import annotations

import warnings

import numpy as np

from .. import activations
from ..checks import pop_keras_only
from .base import ActivatedCache, Layer

__all__ = ["Activation", "ReLU", "LeakyReLU", "Softmax"]

_UNSET = object()  # (an argument not given, told apart from one given at its default)


class Activation(Layer):
    """Keras's ``Activation('relu')``: an activation as a layer of its own; any shape in = out."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def forward(self, x, training=False, logits=False):
        return self._activate(self._check_input(x), logits)

    def backward(self, dout, cache):
        return self._deactivate(dout, cache), {}

    def kinks(self, cache):
        return super().kinks(ActivatedCache(None, cache))

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class ReLU(Activation):
    """Keras's ``ReLU()`` layer (only its defaults: no max_value, slope or threshold)."""

    def __init__(self, **kwargs):
        kwargs = pop_keras_only("ReLU", kwargs, {"max_value": None, "negative_slope": 0.0, "threshold": 0.0})
        super().__init__("relu", **kwargs)

    def get_config(self):
        return {k: v for k, v in super().get_config().items() if k != "activation"}


class LeakyReLU(Activation):
    """Keras's ``LeakyReLU(negative_slope=0.3)``: a = z for z > 0, negative_slope * z otherwise.

    ``alpha`` is Keras 2's name for ``negative_slope``; Keras 3 still takes it, with a warning
    that it is deprecated, and so does npae. Giving both is an error (Keras 3 would silently use
    ``alpha``)."""

    def __init__(self, negative_slope: float = _UNSET, **kwargs):
        if "alpha" in kwargs:
            alpha = kwargs.pop("alpha")
            if negative_slope is not _UNSET:
                raise ValueError(f"LeakyReLU: give negative_slope or alpha (Keras 2's name for it), not both; got "
                                 f"negative_slope={negative_slope!r} and alpha={alpha!r}")
            warnings.warn("LeakyReLU: the argument alpha is deprecated (Keras 2's name); use negative_slope instead",
                          UserWarning, stacklevel=2)
            negative_slope = alpha
        negative_slope = 0.3 if negative_slope is _UNSET else negative_slope
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) or negative_slope < 0:
            raise ValueError(f"LeakyReLU: negative_slope must be a number >= 0, got {negative_slope!r}")
        super().__init__(activations.Activation("leaky_relu", float(negative_slope)), **kwargs)

    def get_config(self):
        cfg = {k: v for k, v in super().get_config().items() if k != "activation"}
        return {**cfg, "negative_slope": self.activation.alpha}


class Softmax(Activation):
    """Keras's ``Softmax(axis=-1)``: a = exp(z) / sum exp(z) over the last axis (computed stably,
    see :mod:`npae.functional.activations`); any shape in = out.

    Only the last axis is supported: ``axis=-1``, or its index counting the batch axis (2 for
    inputs (batch, 5, 3)); another axis is a NotImplementedError when the layer is built. Keras's
    ``mask`` argument of the call does not exist in npae."""

    def __init__(self, axis: int = -1, **kwargs):
        if isinstance(axis, (list, tuple)):
            raise NotImplementedError(f"Softmax: axis={axis!r} (several axes) is not supported by npae (only the last "
                                      "axis, axis=-1)")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Softmax: axis must be an int (npae supports the last axis, -1), got {axis!r}")
        self.axis = int(axis)
        if self.axis < -1:
            raise NotImplementedError(f"Softmax: axis={self.axis} is not supported by npae (only the last axis, "
                                      "axis=-1)")
        super().__init__("softmax", **kwargs)

    def compute_output_shape(self, input_shape):
        last = len(input_shape)  # the last axis's index, counting the batch axis (0)
        if self.axis not in (-1, last):
            raise NotImplementedError(f"{self.name}: axis={self.axis} is not supported by npae (only the last axis: "
                                      f"-1, or {last} for inputs of shape (batch, {', '.join(map(str, input_shape))}))")
        return tuple(input_shape)

    def get_config(self):
        cfg = {k: v for k, v in super().get_config().items() if k != "activation"}
        return {**cfg, "axis": self.axis}
