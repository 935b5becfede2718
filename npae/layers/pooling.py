"""Max pooling and nearest-neighbour upsampling, channels-last."""

from __future__ import annotations

from ..checks import pop_keras_only, to_pair
from ..functional import pool, upsample
from .base import CHANNELS_LAST, Layer, check_padding
from .conv import image_shape, window_output

__all__ = ["MaxPooling2D", "MaxPool2D", "UpSampling2D"]


class MaxPooling2D(Layer):
    """Keras's ``MaxPooling2D(pool_size=(2, 2), strides=None, padding='valid')``: the largest value
    of each window; strides default to the pool size.

    Shapes: x (N, H, W, C) -> (N, Ho, Wo, C), Ho as for Conv2D ('valid' floor((H - kh) / sh) + 1,
    'same' ceil(H / sh), e.g. 7 -> 4 with pool 2: the pad at the bottom/right never wins). The
    maths of both passes: :mod:`npae.functional.pool`.
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid", **kwargs):
        super().__init__(**pop_keras_only("MaxPooling2D", kwargs, {"data_format": CHANNELS_LAST}))
        self.pool_size = to_pair(pool_size, "pool_size")
        self.strides = to_pair(strides, "strides") if strides is not None else self.pool_size
        self.padding = check_padding(padding)

    def compute_output_shape(self, input_shape):
        return (*window_output(self, input_shape, self.pool_size, self.strides, self.padding), input_shape[2])

    def forward(self, x, training=False):
        return pool.forward(self._check_input(x), self.pool_size, self.strides, self.padding)

    def backward(self, dout, cache):
        return pool.backward(dout, cache), {}

    def kinks(self, cache):
        return [cache.winner]

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


MaxPool2D = MaxPooling2D


class UpSampling2D(Layer):
    """Keras's ``UpSampling2D(size=(2, 2))``, nearest neighbour: (N, H, W, C) -> (N, H*sh, W*sw, C),
    every pixel copied into an sh x sw block. The maths: :mod:`npae.functional.upsample`."""

    def __init__(self, size=(2, 2), interpolation: str = "nearest", **kwargs):
        super().__init__(**pop_keras_only("UpSampling2D", kwargs, {"data_format": CHANNELS_LAST}))
        if interpolation != "nearest":
            raise NotImplementedError(f"UpSampling2D: interpolation={interpolation!r} is not supported by npae "
                                      "(only 'nearest')")
        self.size = to_pair(size, "size")

    def compute_output_shape(self, input_shape):
        h, w, c = image_shape(self, input_shape)
        return (h * self.size[0], w * self.size[1], c)

    def forward(self, x, training=False):
        return upsample.forward(self._check_input(x), self.size)

    def backward(self, dout, cache):
        return upsample.backward(dout, cache), {}

    def get_config(self):
        return {**super().get_config(), "size": list(self.size)}
