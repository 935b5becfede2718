"""Losses with Keras's reduction: the mean over the last axis, then over the batch. Every sample
has the same number of values, so that is the mean over all M = y.size elements, and each
element's gradient carries a factor 1/M.

    mse:   L = (1/M) sum (y - t)^2                        dL/dy = 2 (y - t) / M
    mae:   L = (1/M) sum |y - t|                          dL/dy = sign(y - t) / M
    bce on probabilities p, clipped to [eps, 1 - eps] (Keras's eps = 1e-7):
           L = -(1/M) sum (t log p + (1 - t) log(1 - p))  dL/dy = (p - t) / (p (1 - p)) / M where y
                                                          is inside the clip bounds, 0 outside
    sigmoid + bce on logits z, p = sigmoid(z) (the stable form TensorFlow uses when a sigmoid
    output meets binary cross-entropy):
           L = (1/M) sum (max(z, 0) - z t + log(1 + exp(-|z|)))
           dL/dz = (sigmoid(z) - t) / M

The last gradient is the reason for fusing: the sigmoid's derivative p (1 - p) cancels the
bce's denominator, leaving p - t, which neither overflows nor divides by zero.

Shapes: y_pred (or z), y_true and the gradient all alike, e.g. (N, 784). The loss value is a
Python float, summed in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import sigmoid

__all__ = ["LossCache", "EPSILON", "mse_forward", "mse_backward", "mae_forward", "mae_backward", "bce_forward",
           "bce_backward", "sigmoid_bce_forward", "sigmoid_bce_backward"]

EPSILON = 1e-7  # Keras's backend epsilon, the clip bound of bce on probabilities


class LossCache(NamedTuple):
    """What a loss's backward needs from its forward."""

    y_pred: np.ndarray  #: the prediction (probabilities, or logits for sigmoid_bce)
    y_true: np.ndarray  #: the target, in y_pred's dtype


def _pair(y_pred: np.ndarray, y_true: np.ndarray) -> LossCache:
    if y_pred.shape != np.shape(y_true):
        raise ValueError(f"loss: y_pred and y_true must have the same shape, got {y_pred.shape} and "
                         f"{np.shape(y_true)}")
    return LossCache(y_pred, np.asarray(y_true, dtype=y_pred.dtype))


def mse_forward(y_pred: np.ndarray, y_true: np.ndarray) -> tuple[float, LossCache]:
    """Mean squared error. Returns (L, cache)."""
    c = _pair(y_pred, y_true)
    return float(np.mean(np.square(c.y_pred - c.y_true), dtype=np.float64)), c


def mse_backward(cache: LossCache) -> np.ndarray:
    """dL/dy_pred = 2 (y - t) / M."""
    y, t = cache
    return (y - t) * y.dtype.type(2 / y.size)


def mae_forward(y_pred: np.ndarray, y_true: np.ndarray) -> tuple[float, LossCache]:
    """Mean absolute error. Returns (L, cache)."""
    c = _pair(y_pred, y_true)
    return float(np.mean(np.abs(c.y_pred - c.y_true), dtype=np.float64)), c


def mae_backward(cache: LossCache) -> np.ndarray:
    """dL/dy_pred = sign(y - t) / M (0 where y == t)."""
    y, t = cache
    return np.sign(y - t) * y.dtype.type(1 / y.size)


def bce_forward(y_pred: np.ndarray, y_true: np.ndarray, epsilon: float = EPSILON) -> tuple[float, LossCache]:
    """Binary cross-entropy of probabilities, clipped to [epsilon, 1 - epsilon]. Returns (L, cache)."""
    c = _pair(y_pred, y_true)
    p = np.clip(c.y_pred, epsilon, 1 - epsilon)
    per = -(c.y_true * np.log(p) + (1 - c.y_true) * np.log1p(-p))
    return float(np.mean(per, dtype=np.float64)), c


def bce_backward(cache: LossCache, epsilon: float = EPSILON) -> np.ndarray:
    """dL/dy_pred = (p - t) / (p (1 - p)) / M inside the clip bounds, 0 outside (the clip's
    derivative)."""
    y, t = cache
    p = np.clip(y, epsilon, 1 - epsilon)
    inside = (y >= epsilon) & (y <= 1 - epsilon)
    return np.where(inside, (p - t) / (p * (1 - p)) / y.size, 0).astype(y.dtype, copy=False)


def sigmoid_bce_forward(logits: np.ndarray, y_true: np.ndarray) -> tuple[float, LossCache]:
    """Binary cross-entropy of sigmoid(logits), computed from the logits. Returns (L, cache)."""
    c = _pair(logits, y_true)
    z, t = c
    per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return float(np.mean(per, dtype=np.float64)), c


def sigmoid_bce_backward(cache: LossCache) -> np.ndarray:
    """dL/dlogits = (sigmoid(z) - t) / M."""
    z, t = cache
    return ((sigmoid(z) - t) / z.size).astype(z.dtype, copy=False)
