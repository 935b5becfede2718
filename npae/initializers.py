"""Weight initialisers with Keras's names and fan rules.

Fans as Keras computes them: for a dense kernel (in, out), fan_in = in and fan_out = out; for a conv
kernel (kh, kw, cin, cout), the receptive field kh*kw multiplies both: fan_in = kh*kw*cin,
fan_out = kh*kw*cout. Each initialiser is ``f(shape, dtype, rng) -> array``; without an ``rng`` it
draws from npae's global generator (:func:`npae.set_random_seed`).
"""

from __future__ import annotations

import math
import re

import numpy as np

from . import random as npae_random

__all__ = ["compute_fans", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
           "lecun_normal", "random_uniform", "random_normal", "zeros", "ones", "get", "serialize"]

# a standard normal truncated to [-2, 2] has this standard deviation; Keras's "normal" variance
# scaling divides by it so that the truncated draws have the intended variance
_TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape, as Keras computes them."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _rng(rng):
    return rng or npae_random.get_generator()


def _uniform(limit, shape, dtype, rng):
    return _rng(rng).uniform(-limit, limit, size=shape).astype(dtype)


def _truncated_normal(std, shape, dtype, rng):
    """N(0, std^2) redrawn outside two standard deviations (Keras's TruncatedNormal)."""
    rng, out = _rng(rng), np.empty(math.prod(shape))
    filled = 0
    while filled < out.size:
        draw = rng.standard_normal(out.size - filled)
        draw = draw[np.abs(draw) <= 2]
        out[filled:filled + draw.size] = draw
        filled += draw.size
    return (std * out).reshape(shape).astype(dtype)


def glorot_uniform(shape, dtype=np.float32, rng=None) -> np.ndarray:
    """U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010; Keras's default)."""
    fan_in, fan_out = compute_fans(tuple(shape))
    return _uniform(math.sqrt(6.0 / (fan_in + fan_out)), shape, dtype, rng)


def glorot_normal(shape, dtype=np.float32, rng=None) -> np.ndarray:
    """Truncated normal with standard deviation sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = compute_fans(tuple(shape))
    return _truncated_normal(math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD, shape, dtype, rng)


def he_uniform(shape, dtype=np.float32, rng=None) -> np.ndarray:
    """U(-limit, limit), limit = sqrt(6 / fan_in) (He et al., 2015)."""
    return _uniform(math.sqrt(6.0 / compute_fans(tuple(shape))[0]), shape, dtype, rng)


def he_normal(shape, dtype=np.float32, rng=None) -> np.ndarray:
    """Truncated normal with standard deviation sqrt(2 / fan_in)."""
    return _truncated_normal(math.sqrt(2.0 / compute_fans(tuple(shape))[0]) / _TRUNCATED_STD, shape, dtype, rng)


def lecun_uniform(shape, dtype=np.float32, rng=None) -> np.ndarray:
    """U(-limit, limit), limit = sqrt(3 / fan_in)."""
    return _uniform(math.sqrt(3.0 / compute_fans(tuple(shape))[0]), shape, dtype, rng)


def lecun_normal(shape, dtype=np.float32, rng=None) -> np.ndarray:
    """Truncated normal with standard deviation sqrt(1 / fan_in)."""
    return _truncated_normal(math.sqrt(1.0 / compute_fans(tuple(shape))[0]) / _TRUNCATED_STD, shape, dtype, rng)


def random_uniform(shape, dtype=np.float32, rng=None) -> np.ndarray:
    """U(-0.05, 0.05) (Keras's RandomUniform defaults)."""
    return _uniform(0.05, shape, dtype, rng)


def random_normal(shape, dtype=np.float32, rng=None) -> np.ndarray:
    """N(0, 0.05^2) (Keras's RandomNormal defaults)."""
    return (0.05 * _rng(rng).standard_normal(shape)).astype(dtype)


def zeros(shape, dtype=np.float32, rng=None) -> np.ndarray:
    """All zeros (Keras's default bias)."""
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype=np.float32, rng=None) -> np.ndarray:
    """All ones."""
    return np.ones(shape, dtype=dtype)


_INITIALIZERS = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform,
                                         lecun_normal, random_uniform, random_normal, zeros, ones)}


def get(identifier):
    """An initialiser by Keras's name (any case, e.g. 'GlorotUniform' or 'glorot_uniform'), or a
    callable ``f(shape, dtype, rng)`` passed through."""
    if callable(identifier):
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:  # Keras's serialised form
        identifier = identifier["class_name"]
    if isinstance(identifier, str):
        key = identifier if identifier in _INITIALIZERS else \
            "_".join(part.lower() for part in re.findall(r"[A-Z][a-z]*", identifier))
        if key in _INITIALIZERS:
            return _INITIALIZERS[key]
    raise ValueError(f"unknown initializer {identifier!r}: expected one of {sorted(_INITIALIZERS)} or a callable "
                     "f(shape, dtype, rng)")


def serialize(initializer) -> str:
    """The name a saved model records; a custom callable cannot be saved and is a clear error."""
    for name, f in _INITIALIZERS.items():
        if initializer is f:
            return name
    raise ValueError(f"cannot save the custom initializer {initializer!r}: a saved model records initialisers "
                     f"by name ({', '.join(sorted(_INITIALIZERS))})")
