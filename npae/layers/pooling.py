"""Max pooling and nearest-neighbour upsampling, channels-last.

MaxPooling2D: out[n, i, j, c] = max over the window at (i*sh - pt, j*sw - pl) of x[n, ., ., c],
with padding that never wins (-inf). Backward routes each output gradient to the one input that won
(ties: the first in row-major window order). Output size as Conv2D: 'valid' floor((n - k) / s) + 1,
'same' ceil(n / s), e.g. 7 -> 4 with pool 2, the pad at the bottom/right.

UpSampling2D: out[n, y, x, c] = in[n, y // sh, x // sw, c]; backward sums each sh x sw block.
"""

from __future__ import annotations

from .. import kernels
from .base import Layer, to_pair
from .conv import check_padding, image_geometry

__all__ = ["MaxPooling2D", "UpSampling2D", "MaxPool2D"]


class MaxPooling2D(Layer):
    """Keras's ``MaxPooling2D(pool_size=(2, 2), strides=None, padding='valid')``; strides default to
    the pool size."""

    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid", name=None, dtype=None,
                 input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.pool_size = to_pair(pool_size, "pool_size")
        self.strides = to_pair(strides, "strides") if strides is not None else self.pool_size
        self.padding = check_padding(padding)

    def compute_output_shape(self, input_shape):
        ho, wo, _, _ = image_geometry(self, input_shape, self.pool_size, self.strides, self.padding)
        return (ho, wo, input_shape[2])

    def forward(self, x, training=False):
        x = self._check_input(x)
        ho, wo, pt, pl = image_geometry(self, self.input_shape, self.pool_size, self.strides, self.padding)
        shape = (x.shape[0], ho, wo, x.shape[3])
        argmax = self.workspace("argmax", shape, kernels.argmax_dtype(*self.pool_size))  # reused buffer
        out, self._argmax = kernels.maxpool_forward(x, *self.pool_size, *self.strides, pt, pl, ho, wo, argmax,
                                                    self.result_buffer("out", shape, x.dtype))
        self._out = out  # (for through_relu)
        return out

    def backward(self, grad_out, overwrite_grad=False, through_relu=False):
        """dL/dx from dL/d(output). With ``through_relu`` (a Model sets it when the layer below ends
        in a relu) dL/dz of that layer instead, z its pre-activation: the winners whose pooled
        value is 0 get no gradient (``kernels.maxpool_backward(relu_of=)``), and that layer skips
        its own pass for the relu's derivative."""
        _, _, pt, pl = image_geometry(self, self.input_shape, self.pool_size, self.strides, self.padding)
        dx = self.result_buffer("dx", (grad_out.shape[0], *self.input_shape), grad_out.dtype)
        return kernels.maxpool_backward(grad_out, self._argmax, *self.input_shape[:2], *self.pool_size, *self.strides,
                                        pt, pl, dx, relu_of=self._out if through_relu else None)

    def kink_state(self):
        return [self._argmax] if getattr(self, "_argmax", None) is not None else []

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


MaxPool2D = MaxPooling2D


class UpSampling2D(Layer):
    """Keras's ``UpSampling2D(size=(2, 2))`` with nearest-neighbour interpolation:
    (N, H, W, C) -> (N, H*sh, W*sw, C)."""

    def __init__(self, size=(2, 2), interpolation: str = "nearest", name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        if interpolation != "nearest":
            raise ValueError(f"UpSampling2D: only interpolation='nearest' is supported, got {interpolation!r}")
        self.size = to_pair(size, "size")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.name}: expected input of shape (batch, height, width, channels), got (batch, "
                f"{', '.join(map(str, input_shape))})"
            )
        return (input_shape[0] * self.size[0], input_shape[1] * self.size[1], input_shape[2])

    def forward(self, x, training=False):
        x = self._check_input(x)
        out = self.result_buffer("out", (x.shape[0], *self.output_shape), x.dtype)
        return kernels.upsample_forward(x, *self.size, out)

    def backward(self, grad_out, overwrite_grad=False):
        dx = self.result_buffer("dx", (grad_out.shape[0], *self.input_shape), grad_out.dtype)
        return kernels.upsample_backward(grad_out, *self.size, dx)

    def get_config(self):
        return {**super().get_config(), "size": list(self.size)}
