"""2-D convolution (cross-correlation, as in Keras), channels-last, as im2col + one GEMM.

Shapes: x (N, H, W, Cin), kernel (kh, kw, Cin, Cout), bias (Cout,), z and a (N, Ho, Wo, Cout).
With K = kh*kw*Cin, im2col turns x into the patch matrix P (N*Ho*Wo, K) whose column order
(di, dj, c) matches the kernel's memory order, so the kernel is used as W = kernel.reshape(K, Cout)
without any transpose:

    forward:  Z = P W + bias                     (N*Ho*Wo, Cout)
    backward: dW = P^T G                         (K, Cout)  -> reshaped to (kh, kw, Cin, Cout)
              dbias = sum over rows of G         (Cout,)
              dP = G W^T;  dx = col2im(dP)       (N, H, W, Cin)   (scatter-add of the patches)

Output size per axis (see ``kernels.window_geometry``): 'valid' floor((n - k) / s) + 1,
'same' ceil(n / s) with TensorFlow's padding (odd pixel at the bottom/right).
"""

from __future__ import annotations

import numpy as np

from .. import initializers, kernels
from .base import Layer, to_pair

__all__ = ["Conv2D", "Convolution2D", "check_padding"]


def check_padding(padding) -> str:
    """'valid' | 'same' (any case) -> lower case; anything else is a clear error."""
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return padding.lower()


def image_geometry(layer, input_shape, window, strides, padding):
    """Validate an (H, W, C) input shape and return (ho, wo, pad_top, pad_left)."""
    if len(input_shape) != 3:
        raise ValueError(
            f"{layer.name}: expected input of shape (batch, height, width, channels), got (batch, "
            f"{', '.join(map(str, input_shape))})"
        )
    try:
        ho, pt, _ = kernels.window_geometry(input_shape[0], window[0], strides[0], padding)
        wo, pl, _ = kernels.window_geometry(input_shape[1], window[1], strides[1], padding)
    except ValueError as err:
        raise ValueError(f"{layer.name}: {err} (input shape {tuple(input_shape)})") from None
    return ho, wo, pt, pl


class Conv2D(Layer):
    """Keras's ``Conv2D(filters, kernel_size, strides=(1, 1), padding='valid', activation=None)``."""

    param_order = ("kernel", "bias")

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid", activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 activity_regularizer=None, name=None, dtype=None, input_shape=None):
        if not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(f"Conv2D: filters must be a positive int, got {filters!r}")
        super().__init__(name=name, dtype=dtype, activation=activation,
                         activity_regularizer=activity_regularizer, input_shape=input_shape)
        self.filters, self.use_bias = int(filters), bool(use_bias)
        self.kernel_size = to_pair(kernel_size, "kernel_size")
        self.strides = to_pair(strides, "strides")
        self.padding = check_padding(padding)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._init_names = (kernel_initializer, bias_initializer)

    def compute_output_shape(self, input_shape):
        ho, wo, _, _ = image_geometry(self, input_shape, self.kernel_size, self.strides, self.padding)
        return (ho, wo, self.filters)

    def _create_params(self, input_shape, rng):
        kh, kw = self.kernel_size
        shape = (kh, kw, input_shape[2], self.filters)
        self.params["kernel"] = self.kernel_initializer(shape, self.dtype, rng)
        if self.use_bias:
            self.params["bias"] = self.bias_initializer((self.filters,), self.dtype, rng)
        self._geom = image_geometry(self, input_shape, self.kernel_size, self.strides, self.padding)

    def _window(self):
        ho, wo, pt, pl = self._geom
        return (*self.kernel_size, *self.strides, pt, pl, ho, wo)

    def forward_linear(self, x, training):
        w2 = self.params["kernel"].reshape(-1, self.filters)  # (K, Cout), a view
        self._cols = kernels.im2col(x, *self._window())  # (N*Ho*Wo, K)
        return self._cols @ w2  # (N*Ho*Wo, Cout); the base class adds bias and activation

    def backward_linear(self, g2):
        # g2 = dL/dz as (N*Ho*Wo, Cout)
        w2 = self.params["kernel"].reshape(-1, self.filters)
        np.matmul(self._cols.T, g2, out=self.grads["kernel"].reshape(w2.shape))  # (K, Cout)
        if not self.needs_input_grad:
            return None
        dcols = g2 @ w2.T  # (N*Ho*Wo, K)
        h, w, c = self.input_shape
        return kernels.col2im(dcols, self._cols.shape[0] // (self._geom[0] * self._geom[1]), h, w, c,
                              *self._window())

    def get_config(self):
        names = [n if isinstance(n, str) else "glorot_uniform" for n in self._init_names]
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "activation": self.activation.name,
                "use_bias": self.use_bias, "kernel_initializer": names[0], "bias_initializer": names[1]}


Convolution2D = Conv2D  # the Keras 2 name the tutorial imports
