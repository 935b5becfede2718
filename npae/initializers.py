"""Weight initialisers with Keras's names and fan rules.

Fans as Keras computes them: for a dense kernel (in, out), fan_in = in and fan_out = out; for a conv
kernel (kh, kw, cin, cout), the receptive field kh*kw multiplies both: fan_in = kh*kw*cin,
fan_out = kh*kw*cout.
"""

from __future__ import annotations

import math

import numpy as np

from . import random as npae_random

__all__ = ["compute_fans", "glorot_uniform", "he_uniform", "zeros", "get"]


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape, as Keras computes them."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape, dtype=np.float32, rng: np.random.Generator | None = None) -> np.ndarray:
    """U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = compute_fans(tuple(shape))
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    rng = rng or npae_random.get_generator()
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he_uniform(shape, dtype=np.float32, rng: np.random.Generator | None = None) -> np.ndarray:
    """U(-limit, limit) with limit = sqrt(6 / fan_in) (He et al., 2015)."""
    fan_in, _ = compute_fans(tuple(shape))
    rng = rng or npae_random.get_generator()
    return rng.uniform(-math.sqrt(6.0 / fan_in), math.sqrt(6.0 / fan_in), size=shape).astype(dtype)


def zeros(shape, dtype=np.float32, rng: np.random.Generator | None = None) -> np.ndarray:
    """All zeros (Keras's default bias)."""
    return np.zeros(shape, dtype=dtype)


_INITIALIZERS = {"glorot_uniform": glorot_uniform, "he_uniform": he_uniform, "zeros": zeros}


def get(identifier):
    """Resolve an initialiser name (or pass a callable ``f(shape, dtype, rng)`` through)."""
    if callable(identifier):
        return identifier
    if identifier in _INITIALIZERS:
        return _INITIALIZERS[identifier]
    raise ValueError(f"unknown initializer {identifier!r}: expected one of {sorted(_INITIALIZERS)}")
