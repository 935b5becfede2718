"""Losses with Keras's reduction: the mean over the last axis, then over the batch. Every sample
has the same number of values, so that is the mean over all M = y.size elements, and each
element's gradient carries a factor 1/M. (Categorical cross-entropy sums over the last axis
instead, the C classes, then takes the mean over the R = y.size / C rows: its factor is 1/R.)

    mse:   L = (1/M) sum (y - t)^2                        dL/dy = 2 (y - t) / M
    mae:   L = (1/M) sum |y - t|                          dL/dy = sign(y - t) / M
    bce on probabilities p, clipped to [eps, 1 - eps] (Keras's eps = 1e-7):
           L = -(1/M) sum (t log p + (1 - t) log(1 - p))  dL/dy = (p - t) / (p (1 - p)) / M where y
                                                          is inside the clip bounds, 0 outside
    sigmoid + bce on logits z, p = sigmoid(z) (the stable form TensorFlow uses when a sigmoid
    output meets binary cross-entropy):
           L = (1/M) sum (max(z, 0) - z t + log(1 + exp(-|z|)))
           dL/dz = (sigmoid(z) - t) / M

    cce on probabilities y (..., C), each row normalised by its sum S = sum_c y_c and clipped
    (Keras's form): q = y / S, p = clip(q, eps, 1 - eps),
           L = -(1/R) sum_rows sum_c t_c log p_c
           dL/dy_j = -(1/(R S)) (t_j u_j / q_j - sum_c t_c u_c)      u_c = 1 if eps <= q_c <= 1 - eps
                                                                     else 0 (the clip's derivative)
    softmax + cce on logits z (..., C), log p = log_softmax(z) (Keras's from_logits=True, and what
    a softmax output meeting categorical cross-entropy computes, as a sigmoid's meeting bce):
           L = -(1/R) sum_rows sum_c t_c log_softmax(z)_c
           dL/dz = (softmax(z) sum_c t_c - t) / R                   (softmax(z) - t for one-hot t)

The last gradients are the reason for fusing: the sigmoid's derivative p (1 - p) cancels the
bce's denominator, leaving p - t, which neither overflows nor divides by zero (and the softmax's
Jacobian cancels the cce's 1 / p alike).

Shapes: y_pred (or z), y_true and the gradient all alike, e.g. (N, 784) or (N, 10) for cce. The
loss value is a Python float, summed in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import log_softmax, sigmoid, softmax

__all__ = ["LossCache", "EPSILON", "mse_forward", "mse_backward", "mae_forward", "mae_backward", "bce_forward",
           "bce_backward", "sigmoid_bce_forward", "sigmoid_bce_backward", "cce_forward", "cce_backward",
           "softmax_cce_forward", "softmax_cce_backward"]

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


def _rows(c: LossCache) -> int:
    """R, the number of rows (samples times positions) the class axis is summed within."""
    if c.y_pred.ndim == 0:
        raise ValueError("categorical_crossentropy: expected arrays with a class axis (the last), got scalars")
    return c.y_pred.size // max(c.y_pred.shape[-1], 1)


def cce_forward(y_pred: np.ndarray, y_true: np.ndarray, epsilon: float = EPSILON) -> tuple[float, LossCache]:
    """Categorical cross-entropy of probabilities y_pred (..., C), Keras's form: each row divided
    by its sum, clipped to [epsilon, 1 - epsilon], then -sum_c t_c log p_c averaged over the rows.
    Returns (L, cache)."""
    c = _pair(y_pred, y_true)
    rows = _rows(c)
    y = c.y_pred
    p = np.clip(y / np.sum(y, axis=-1, keepdims=True), epsilon, 1 - epsilon)
    return float(-np.sum(c.y_true * np.log(p), dtype=np.float64) / rows), c


def cce_backward(cache: LossCache, epsilon: float = EPSILON) -> np.ndarray:
    """dL/dy_j = -(t_j u_j / q_j - sum_c t_c u_c) / (R S), q = y / S, S the row's sum, u the clip's
    derivative (1 inside [epsilon, 1 - epsilon], 0 outside), like y_pred."""
    y, t = cache
    rows = _rows(cache)
    total = np.sum(y, axis=-1, keepdims=True)
    q = y / total
    inside = (q >= epsilon) & (q <= 1 - epsilon)
    tu = np.where(inside, t, 0)  # t_c u_c
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(inside, tu / q, 0)  # (q = 0 is outside the clip: no division there)
    g = -(first - np.sum(tu, axis=-1, keepdims=True)) / (total * rows)
    return g.astype(y.dtype, copy=False)


def softmax_cce_forward(logits: np.ndarray, y_true: np.ndarray) -> tuple[float, LossCache]:
    """Categorical cross-entropy of softmax(logits) over the last axis, from the logits (..., C):
    -sum_c t_c log_softmax(z)_c averaged over the rows. Returns (L, cache)."""
    c = _pair(logits, y_true)
    rows = _rows(c)
    return float(-np.sum(c.y_true * log_softmax(c.y_pred), dtype=np.float64) / rows), c


def softmax_cce_backward(cache: LossCache) -> np.ndarray:
    """dL/dlogits = (softmax(z) sum_c t_c - t) / R (softmax(z) - t over R for one-hot rows)."""
    z, t = cache
    rows = _rows(cache)
    return ((softmax(z) * np.sum(t, axis=-1, keepdims=True) - t) / rows).astype(z.dtype, copy=False)
