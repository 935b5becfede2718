"""Activations as layers of their own: Activation, ReLU, LeakyReLU."""

from __future__ import annotations

from .. import activations
from ..checks import pop_keras_only
from .base import ActivatedCache, Layer

__all__ = ["Activation", "ReLU", "LeakyReLU"]


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
    """Keras's ``LeakyReLU(negative_slope=0.3)``: a = z for z > 0, negative_slope * z otherwise."""

    def __init__(self, negative_slope: float = 0.3, **kwargs):
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) or negative_slope < 0:
            raise ValueError(f"LeakyReLU: negative_slope must be a number >= 0, got {negative_slope!r}")
        super().__init__(activations.Activation("leaky_relu", float(negative_slope)), **kwargs)

    def get_config(self):
        cfg = {k: v for k, v in super().get_config().items() if k != "activation"}
        return {**cfg, "negative_slope": self.activation.alpha}
