"""Dropout, SpatialDropout2D and GaussianNoise: regularising noise, active in training only.

Each layer draws from its own ``numpy.random.Generator``, its attribute ``rng``: seeded with
``seed``, or else with a draw from npae's global generator when the layer is made (so
``npae.set_random_seed`` before building a model reproduces its noise too). A gradient check
(:mod:`npae.gradcheck`) restores ``rng``'s state before each forward pass, so every pass sees the
same draw.
"""

from __future__ import annotations

import numpy as np

from .. import random as npae_random
from ..checks import non_negative_int, number, pop_keras_only
from ..functional import noise
from .base import CHANNELS_LAST, Layer

__all__ = ["Dropout", "SpatialDropout2D", "GaussianNoise", "seeded_generator"]


def seeded_generator(seed, owner: str) -> np.random.Generator:
    """A layer's own generator: seeded with ``seed``, or else with a draw from npae's global one."""
    if seed is None:
        return np.random.default_rng(int(npae_random.get_generator().integers(2**63)))
    return np.random.default_rng(non_negative_int(seed, f"{owner}: seed"))


def _noise_shape(noise_shape) -> tuple[int | None, ...] | None:
    """Keras's noise_shape: None, or one entry per axis of the batch (the batch axis first), each a
    positive int or None (that axis's size)."""
    if noise_shape is None:
        return None
    try:
        if isinstance(noise_shape, str):
            raise TypeError
        shape = tuple(noise_shape)
    except TypeError:
        raise ValueError(f"Dropout: noise_shape must be a tuple of positive ints or None, one per axis of the "
                         f"batch, e.g. (None, 1, 1, C); got {noise_shape!r}") from None
    for d in shape:
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0):
            raise ValueError(f"Dropout: noise_shape entries must be positive ints or None, got {noise_shape!r}")
    return tuple(None if d is None else int(d) for d in shape)


class Dropout(Layer):
    """Keras's ``Dropout(rate, noise_shape=None, seed=None)``: in training each unit is zeroed with
    probability ``rate`` and the others are scaled by 1 / (1 - rate); at inference it is the
    identity.

    ``noise_shape`` (with the batch axis, None for "as the input") shares one draw along axes of
    size 1, e.g. (None, 1, 1, C) drops whole channels of (N, H, W, C) images. The maths:
    :mod:`npae.functional.noise`.
    """

    def __init__(self, rate: float, noise_shape=None, seed: int | None = None, **kwargs):
        self.rate = number(rate, "Dropout: rate", 0.0, 1.0, high_open=True)
        self.noise_shape = _noise_shape(noise_shape)
        self.seed = None if seed is None else non_negative_int(seed, "Dropout: seed")
        super().__init__(**kwargs)
        self.rng = seeded_generator(seed, "Dropout")

    def compute_output_shape(self, input_shape):
        if self.noise_shape is not None:
            self._mask_shape(None, tuple(input_shape))
        return tuple(input_shape)

    def _mask_shape(self, n: int | None, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The mask's shape for a batch of n (None: check the other axes only)."""
        full = (n, *input_shape)
        if self.noise_shape is None:
            return full
        if len(self.noise_shape) != len(full):
            raise ValueError(f"{self.name}: noise_shape {self.noise_shape} has {len(self.noise_shape)} entries; the "
                             f"batches (batch, {', '.join(map(str, input_shape))}) have {len(full)} axes")
        shape = tuple(d if s is None else s for s, d in zip(self.noise_shape, full))
        if any(s is not None and d is not None and s not in (1, d) for s, d in zip(shape, full)):
            raise ValueError(f"{self.name}: noise_shape {self.noise_shape} does not broadcast to batches of shape "
                             f"{full}: each entry must be None, 1 or that axis's size")
        return shape

    def forward(self, x, training=False):
        """y like x: x itself (as the layer's dtype) at inference; in training, a fresh mask from
        ``rng`` (cache: the mask and 1 - rate)."""
        x = self._check_input(x)
        if not training or self.rate == 0.0:
            return x, None
        mask = self.rng.random(self._mask_shape(len(x), self.input_shape)) >= self.rate  # P(keep) = 1 - rate
        return noise.dropout_forward(x, mask, self.rate)

    def backward(self, dout, cache):
        return (dout if cache is None else noise.dropout_backward(dout, cache)), {}

    def get_config(self):
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape), "seed": self.seed}


class SpatialDropout2D(Layer):
    """Keras's ``SpatialDropout2D(rate, data_format=None, seed=None)``: dropout of whole feature
    maps. In training each channel of each image is zeroed with probability ``rate`` (one draw
    shared by all its pixels) and the kept ones are scaled by 1 / (1 - rate); at inference it is
    the identity. Inputs are images (batch, height, width, channels), channels last (npae's only
    ``data_format``). The maths: :mod:`npae.functional.noise`."""

    def __init__(self, rate: float, data_format=None, seed: int | None = None, **kwargs):
        pop_keras_only("SpatialDropout2D", {"data_format": data_format}, {"data_format": CHANNELS_LAST})
        self.rate = number(rate, "SpatialDropout2D: rate", 0.0, 1.0, high_open=True)
        self.seed = None if seed is None else non_negative_int(seed, "SpatialDropout2D: seed")
        super().__init__(**kwargs)
        self.rng = seeded_generator(seed, "SpatialDropout2D")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: SpatialDropout2D takes images (batch, height, width, channels), got "
                             f"inputs of shape (batch, {', '.join(map(str, input_shape))})")
        return tuple(input_shape)

    def forward(self, x, training=False):
        """y like x (N, H, W, C): x itself at inference; in training, a fresh (N, C) mask from
        ``rng`` (cache: the mask and 1 - rate)."""
        x = self._check_input(x)
        if not training or self.rate == 0.0:
            return x, None
        keep = self.rng.random((len(x), x.shape[3])) >= self.rate  # P(keep) = 1 - rate
        return noise.spatial_dropout2d_forward(x, keep, self.rate)

    def backward(self, dout, cache):
        return (dout if cache is None else noise.spatial_dropout2d_backward(dout, cache)), {}

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class GaussianNoise(Layer):
    """Keras's ``GaussianNoise(stddev, seed=None)``: in training adds noise drawn from
    N(0, stddev^2) to every unit; at inference it is the identity. The maths:
    :mod:`npae.functional.noise`."""

    def __init__(self, stddev: float, seed: int | None = None, **kwargs):
        self.stddev = number(stddev, "GaussianNoise: stddev", 0.0)
        self.seed = None if seed is None else non_negative_int(seed, "GaussianNoise: seed")
        super().__init__(**kwargs)
        self.rng = seeded_generator(seed, "GaussianNoise")

    def forward(self, x, training=False):
        """y like x: x itself at inference; in training x + stddev * a standard normal draw from ``rng``."""
        x = self._check_input(x)
        if not training or self.stddev == 0.0:
            return x, None
        return noise.gaussian_noise_forward(x, self.stddev * self.rng.standard_normal(x.shape))

    def backward(self, dout, cache):
        return noise.gaussian_noise_backward(dout), {}

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}
