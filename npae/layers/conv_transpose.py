"""Conv2DTranspose: Keras's transposed 2-D convolution layer, channels-last."""

from __future__ import annotations

import numbers

from .. import activations, initializers
from ..checks import non_negative_int, pop_keras_only, positive_int, to_pair
from ..functional import conv_transpose
from .base import CHANNELS_LAST, ActivatedCache, Layer, check_padding
from .conv import image_shape

__all__ = ["Conv2DTranspose", "Convolution2DTranspose"]

_OFF = {"data_format": CHANNELS_LAST, "dilation_rate": (1, 1), "groups": 1, "kernel_regularizer": None,
        "bias_regularizer": None, "kernel_constraint": None, "bias_constraint": None}


def _output_padding(value, strides) -> tuple[int, int] | None:
    """None, or an int / pair of ints in [0, stride) per axis (Keras's rule) -> (ph, pw)."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        pair = tuple(non_negative_int(v, "Conv2DTranspose: output_padding") for v in pair)
    except TypeError:
        raise ValueError(f"Conv2DTranspose: output_padding must be None, an int or a pair of ints, got {value!r}") \
            from None
    if len(pair) != 2:
        raise ValueError(f"Conv2DTranspose: output_padding must be None, an int or a pair of ints, got {value!r}")
    if any(p >= s for p, s in zip(pair, strides)):
        raise ValueError(f"Conv2DTranspose: output_padding must be smaller than the stride along each axis, got "
                         f"output_padding={pair} with strides={strides}")
    return pair


class Conv2DTranspose(Layer):
    """Keras's ``Conv2DTranspose(filters, kernel_size, strides=(1, 1), padding='valid',
    output_padding=None, activation=None)``: a = activation(conv_transpose(x, kernel) + bias), the
    adjoint of a Conv2D with the same kernel, strides and padding (it maps that Conv2D's output
    shape back to its input shape).

    Shapes: x (N, H, W, Cin), kernel (kh, kw, filters, Cin) (Keras's layout), bias (filters,),
    a (N, Ho, Wo, filters), with per axis (k the kernel, s the stride, p the output_padding)
    Ho = (H - 1) s + k + p for 'valid' (p defaults to max(s - k, 0)) and (H - 1) s + (k mod 2) + p
    for 'same' (p defaults to s - (k mod 2), so Ho = H s). The maths of both passes:
    :mod:`npae.functional.conv_transpose`.
    """

    param_order = ("kernel", "bias")

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid", output_padding=None,
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", activity_regularizer=None, **kwargs):
        self.filters = positive_int(filters, "Conv2DTranspose: filters")
        super().__init__(activity_regularizer=activity_regularizer,
                         **pop_keras_only("Conv2DTranspose", kwargs, _OFF))
        self.kernel_size = to_pair(kernel_size, "kernel_size")
        self.strides = to_pair(strides, "strides")
        self.padding = check_padding(padding)
        self.output_padding = _output_padding(output_padding, self.strides)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def compute_output_shape(self, input_shape):
        h, w, _ = image_shape(self, input_shape)
        ph, pw = self.output_padding or (None, None)
        try:
            ho = conv_transpose.output_size(h, self.kernel_size[0], self.strides[0], self.padding, ph)[0]
            wo = conv_transpose.output_size(w, self.kernel_size[1], self.strides[1], self.padding, pw)[0]
        except ValueError as err:
            raise ValueError(f"{self.name}: {err} (input shape {tuple(input_shape)})") from None
        return ho, wo, self.filters

    def weight_shapes(self, input_shape):
        kernel = (*self.kernel_size, self.filters, image_shape(self, input_shape)[2])
        return {"kernel": kernel, **({"bias": (self.filters,)} if self.use_bias else {})}

    def forward(self, x, training=False, logits=False):
        """a (N, Ho, Wo, filters), cache; with ``logits``, z = conv_transpose(x) + bias instead of a."""
        x = self._check_input(x)
        z, linear = conv_transpose.forward(x, self.params["kernel"], self.params.get("bias"), self.strides,
                                           self.padding, self.output_padding)
        a, act = self._activate(z, logits)
        return a, ActivatedCache(linear, act)

    def backward(self, dout, cache):
        """dL/dx (N, H, W, Cin) and {"kernel", "bias"} gradients from dout (N, Ho, Wo, filters)."""
        dz = self._deactivate(dout, cache.act)
        dx, dkernel, dbias = conv_transpose.backward(dz, cache.linear)
        return dx, {"kernel": dkernel, "bias": dbias} if self.use_bias else {"kernel": dkernel}

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding,
                "output_padding": None if self.output_padding is None else list(self.output_padding),
                "data_format": "channels_last", "dilation_rate": [1, 1],
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


Convolution2DTranspose = Conv2DTranspose  # Keras's other name for it
