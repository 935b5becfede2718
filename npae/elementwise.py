"""Fused element-wise kernels: one pass over memory where NumPy would make three to six.

Each Numba kernel ``f`` has a NumPy twin ``f_ref`` with the same signature and result; the tests
hold them against each other. Activations are coded as ints: 0 linear, 1 relu, 2 sigmoid.

    bias_act_forward(z, b, act)        z <- act(z + b)                (in place; z is (rows, units))
    act_backward(g, a, act, out)       out <- g * act'(a)             (derivative from the output a)
    sigmoid_bce_with_grad(z, t, grad)  sum of BCE(sigmoid(z), t); grad <- (sigmoid(z) - t) / numel
    mse_with_grad(y, t, grad)          sum of (y - t)^2;              grad <- 2 (y - t) / numel
    adam_update / adadelta_update      one optimizer step on flat arrays, in place

Rows run in parallel; each thread owns whole rows, and loss sums are reduced per row then added
in a fixed order, so results are bit-identical run to run.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from . import kernels as _kernels  # noqa: F401  (sets the threading layer before any parallel kernel)

__all__ = ["ACT_CODES", "bias_act_forward", "bias_act_forward_ref", "act_backward", "act_backward_ref",
           "sigmoid_bce_with_grad", "sigmoid_bce_with_grad_ref", "mse_with_grad", "mse_with_grad_ref",
           "adam_update", "adam_update_ref", "adadelta_update", "adadelta_update_ref"]

ACT_CODES = {"linear": 0, "relu": 1, "sigmoid": 2}
_jit = numba.njit(cache=True, parallel=True)


@numba.njit(cache=True, inline="always")
def _sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@_jit
def bias_act_forward(z, b, act):
    rows, cols = z.shape
    for i in prange(rows):
        for j in range(cols):
            v = z[i, j] + b[j]
            if act == 1:
                v = max(v, 0)
            elif act == 2:
                v = _sigmoid(v)
            z[i, j] = v
    return z


def bias_act_forward_ref(z, b, act):
    z += b
    if act == 1:
        np.maximum(z, 0, out=z)
    elif act == 2:
        e = np.exp(-np.abs(z))
        z[...] = np.where(z >= 0, 1, e) / (1 + e)
    return z


@_jit
def act_backward(g, a, act, out):
    rows, cols = g.shape
    for i in prange(rows):
        for j in range(cols):
            if act == 1:
                out[i, j] = g[i, j] if a[i, j] > 0 else 0
            elif act == 2:
                out[i, j] = g[i, j] * a[i, j] * (1 - a[i, j])
            else:
                out[i, j] = g[i, j]
    return out


def act_backward_ref(g, a, act, out):
    if act == 1:
        out[...] = np.where(a > 0, g, 0)
    elif act == 2:
        out[...] = g * a * (1 - a)
    else:
        out[...] = g
    return out


@_jit
def sigmoid_bce_with_grad(z, t, grad):
    rows, cols = z.shape
    inv_n = 1.0 / (rows * cols)
    row_sums = np.empty(rows, dtype=np.float64)
    for i in prange(rows):
        s = 0.0
        for j in range(cols):
            v, y = z[i, j], t[i, j]
            # BCE from logits: max(z, 0) - z t + log(1 + exp(-|z|)); its gradient: sigmoid(z) - t
            if v >= 0:
                e = math.exp(-v)
                s += v - v * y + math.log1p(e)
                grad[i, j] = (1.0 / (1.0 + e) - y) * inv_n
            else:
                e = math.exp(v)
                s += -v * y + math.log1p(e)
                grad[i, j] = (e / (1.0 + e) - y) * inv_n
        row_sums[i] = s
    total = 0.0
    for i in range(rows):
        total += row_sums[i]
    return total


def sigmoid_bce_with_grad_ref(z, t, grad):
    e = np.exp(-np.abs(z))
    grad[...] = (np.where(z >= 0, 1, e) / (1 + e) - t) / z.size
    return float(np.sum(np.maximum(z, 0) - z * t + np.log1p(e), dtype=np.float64))


@_jit
def mse_with_grad(y, t, grad):
    rows, cols = y.shape
    scale = 2.0 / (rows * cols)
    row_sums = np.empty(rows, dtype=np.float64)
    for i in prange(rows):
        s = 0.0
        for j in range(cols):
            d = y[i, j] - t[i, j]
            s += d * d
            grad[i, j] = d * scale
        row_sums[i] = s
    total = 0.0
    for i in range(rows):
        total += row_sums[i]
    return total


def mse_with_grad_ref(y, t, grad):
    d = y - t
    grad[...] = d * (2.0 / y.size)
    return float(np.sum(np.square(d), dtype=np.float64))


@_jit
def adam_update(p, g, m, v, lr_t, beta_1, beta_2, eps):
    # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr_t m / (sqrt(v) + eps)
    for i in prange(p.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * (1 - beta_1)
        vi = v[i] + (gi * gi - v[i]) * (1 - beta_2)
        m[i], v[i] = mi, vi
        p[i] -= lr_t * mi / (math.sqrt(vi) + eps)


def adam_update_ref(p, g, m, v, lr_t, beta_1, beta_2, eps):
    m += (g - m) * (1 - beta_1)
    v += (np.square(g) - v) * (1 - beta_2)
    p -= lr_t * m / (np.sqrt(v) + eps)


@_jit
def adadelta_update(p, g, acc_grad, acc_delta, lr, rho, eps):
    # E[g2] = rho E[g2] + (1 - rho) g^2;  d = sqrt(E[dx2] + eps) / sqrt(E[g2] + eps) g
    # E[dx2] = rho E[dx2] + (1 - rho) d^2;  p -= lr d
    for i in prange(p.size):
        gi = g[i]
        ag = rho * acc_grad[i] + (1 - rho) * gi * gi
        d = math.sqrt(acc_delta[i] + eps) / math.sqrt(ag + eps) * gi
        acc_grad[i] = ag
        acc_delta[i] = rho * acc_delta[i] + (1 - rho) * d * d
        p[i] -= lr * d


def adadelta_update_ref(p, g, acc_grad, acc_delta, lr, rho, eps):
    acc_grad *= rho
    acc_grad += (1 - rho) * np.square(g)
    d = np.sqrt(acc_delta + eps) / np.sqrt(acc_grad + eps) * g
    acc_delta *= rho
    acc_delta += (1 - rho) * np.square(d)
    p -= lr * d
