"""Conv2D: Keras's 2-D convolution layer, channels-last."""

from __future__ import annotations

from .. import activations, initializers
from ..checks import pop_keras_only, positive_int, to_pair
from ..functional import conv
from .base import CHANNELS_LAST, ActivatedCache, Layer, check_padding

__all__ = ["Conv2D", "Convolution2D", "image_shape"]

_OFF = {"data_format": CHANNELS_LAST, "dilation_rate": (1, 1), "groups": 1, "kernel_regularizer": None,
        "bias_regularizer": None, "kernel_constraint": None, "bias_constraint": None, "lora_rank": None}


def image_shape(layer: Layer, input_shape) -> tuple[int, int, int]:
    """``input_shape`` as (H, W, C), or a clear error naming the layer."""
    if len(input_shape) != 3:
        raise ValueError(f"{layer.name}: expected input of shape (batch, height, width, channels), got (batch, "
                         f"{', '.join(map(str, input_shape))})")
    return tuple(input_shape)


def window_output(layer: Layer, input_shape, window, strides, padding) -> tuple[int, int]:
    """(Ho, Wo) of a sliding window over an (H, W, C) input (:func:`npae.functional.conv.output_size`)."""
    h, w, _ = image_shape(layer, input_shape)
    try:
        return (conv.output_size(h, window[0], strides[0], padding)[0],
                conv.output_size(w, window[1], strides[1], padding)[0])
    except ValueError as err:
        raise ValueError(f"{layer.name}: {err} (input shape {tuple(input_shape)})") from None


class Conv2D(Layer):
    """Keras's ``Conv2D(filters, kernel_size, strides=(1, 1), padding='valid', activation=None)``:
    a = activation(conv(x, kernel) + bias), a cross-correlation as in every framework.

    Shapes: x (N, H, W, Cin), kernel (kh, kw, Cin, filters), bias (filters,), a (N, Ho, Wo,
    filters), with per axis Ho = floor((H - kh) / sh) + 1 for 'valid' and ceil(H / sh) for 'same'
    (TensorFlow's padding: the odd pixel at the bottom/right). The maths of both passes:
    :mod:`npae.functional.conv` (im2col and a matrix product).
    """

    param_order = ("kernel", "bias")

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid", activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 activity_regularizer=None, **kwargs):
        self.filters = positive_int(filters, "Conv2D: filters")
        super().__init__(activity_regularizer=activity_regularizer, **pop_keras_only("Conv2D", kwargs, _OFF))
        self.kernel_size = to_pair(kernel_size, "kernel_size")
        self.strides = to_pair(strides, "strides")
        self.padding = check_padding(padding)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def compute_output_shape(self, input_shape):
        return (*window_output(self, input_shape, self.kernel_size, self.strides, self.padding), self.filters)

    def weight_shapes(self, input_shape):
        kernel = (*self.kernel_size, image_shape(self, input_shape)[2], self.filters)
        return {"kernel": kernel, **({"bias": (self.filters,)} if self.use_bias else {})}

    def forward(self, x, training=False, logits=False):
        """a (N, Ho, Wo, filters), cache; with ``logits``, z = conv(x) + bias instead of a."""
        x = self._check_input(x)
        z, linear = conv.forward(x, self.params["kernel"], self.params.get("bias"), self.strides, self.padding)
        a, act = self._activate(z, logits)
        return a, ActivatedCache(linear, act)

    def backward(self, dout, cache):
        """dL/dx (N, H, W, Cin) and {"kernel", "bias"} gradients from dout (N, Ho, Wo, filters)."""
        dz = self._deactivate(dout, cache.act)
        dx, dkernel, dbias = conv.backward(dz, cache.linear)
        return dx, {"kernel": dkernel, "bias": dbias} if self.use_bias else {"kernel": dkernel}

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


Convolution2D = Conv2D  # the Keras 2 name the tutorial imports
