"""Fused element-wise kernels: one pass over memory where NumPy would make three to six.

Each Numba kernel ``f`` has a NumPy twin ``f_ref`` with the same signature and result; the tests
hold them against each other. Activations are coded as ints: 0 linear, 1 relu, 2 sigmoid.

    bias_act_forward(z, b, act)        z <- act(z + b)                (in place; z is (rows, units))
    act_backward(g, a, act, out)       out <- g * act'(a)             (derivative from the output a)
    sigmoid_bce_with_grad(z, t, grad)  sum of BCE(sigmoid(z), t); grad <- (sigmoid(z) - t) / numel
    mse_with_grad(y, t, grad)          sum of (y - t)^2;              grad <- 2 (y - t) / numel
    adam_update / adadelta_update      one optimizer step on flat arrays, in place

Loss sums are accumulated in float64 per row, then added in a fixed order: results are
bit-identical run to run.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = ["ACT_CODES", "bias_act_forward", "bias_act_forward_ref", "act_backward", "act_backward_ref",
           "sigmoid_bce_with_grad", "sigmoid_bce_with_grad_ref", "mse_with_grad", "mse_with_grad_ref",
           "adam_update", "adam_update_ref", "adadelta_update", "adadelta_update_ref"]

ACT_CODES = {"linear": 0, "relu": 1, "sigmoid": 2}
# fastmath "reassoc" lets LLVM vectorise the float64 loss sums (MSE over (256, 784): 0.187 ->
# 0.048 ms); only reassociation and contraction, no assumptions about NaN or inf (TerminateOnNaN
# needs them). The kernels over (rows, cols) batches run their rows in parallel (a launch costs
# ~4 us with the TBB layer, see npae/_threads.py); each row's sum is formed in a fixed order by
# one thread and the row sums are added in order, so results are bit-identical run to run. The
# optimizer steps, on weight arrays that are mostly small, stay serial.
_jit = numba.njit(cache=True, fastmath={"reassoc", "contract"})
_rows = numba.njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})


@_rows
def _bias_act(z, b, act, e):
    # z <- z + b, then relu in place; for sigmoid, leave e = -|z| for NumPy's SIMD exp
    rows, cols = z.shape
    for i in prange(rows):
        for j in range(cols):
            v = z[i, j] + b[j]
            if act == 1 and v < 0:
                v = 0
            z[i, j] = v
            if act == 2:
                e[i, j] = -abs(v)


@_rows
def _sigmoid_from_exp(z, e, one):
    # with e = exp(-|z|) in (0, 1]: sigmoid(z) = 1 / (1 + e) for z >= 0, e / (1 + e) otherwise.
    # ``one`` has z's dtype: a literal 1 would promote float32 maths to float64 (4x slower here).
    rows, cols = z.shape
    for i in prange(rows):
        for j in range(cols):
            r = one / (one + e[i, j])
            z[i, j] = r if z[i, j] >= 0 else e[i, j] * r


def bias_act_forward(z, b, act, scratch=None):
    """z <- act(z + b) in place, z (rows, units), b (units,). The exponential comes from NumPy's
    vectorised exp (float32 exp in a Numba loop measured 8x slower here); ``scratch`` (shape of z)
    may be lent for it instead of a new array."""
    e = (np.empty_like(z) if scratch is None else scratch) if act == 2 else z
    _bias_act(z, b, act, e)
    if act == 2:
        np.exp(e, out=e)
        _sigmoid_from_exp(z, e, z.dtype.type(1))
    return z


def bias_act_forward_ref(z, b, act, scratch=None):
    z += b
    if act == 1:
        np.maximum(z, 0, out=z)
    elif act == 2:
        e = np.exp(-np.abs(z))
        z[...] = np.where(z >= 0, 1, e) / (1 + e)
    return z


@_rows
def _act_backward(g, a, act, out, zero, one):
    rows, cols = g.shape
    for i in prange(rows):
        for j in range(cols):
            if act == 1:
                out[i, j] = g[i, j] if a[i, j] > zero else zero
            elif act == 2:
                out[i, j] = g[i, j] * a[i, j] * (one - a[i, j])
            else:
                out[i, j] = g[i, j]
    return out


def act_backward(g, a, act, out):
    """out <- g * act'(a), all (rows, units); act' from the output a."""
    return _act_backward(g, a, act, out, g.dtype.type(0), g.dtype.type(1))


def act_backward_ref(g, a, act, out):
    if act == 1:
        out[...] = np.where(a > 0, g, 0)
    elif act == 2:
        out[...] = g * a * (1 - a)
    else:
        out[...] = g
    return out


@_rows
def _bce_from_exp(z, t, grad, one, inv_n):
    # grad holds e = exp(-|z|) on entry and dL/dz = (sigmoid(z) - t) / numel on exit.
    # loss = sum(max(z, 0) - z t) + sum log(1 + e); the logs are taken of products of 32 factors
    # (each in (1, 2], so a float64 product cannot overflow): 32x fewer logarithms.
    rows, cols = z.shape
    row_sums = np.empty(rows, dtype=np.float64)
    for i in prange(rows):
        s, prod = 0.0, 1.0
        for j in range(cols):
            v, y, e = z[i, j], t[i, j], grad[i, j]
            s += max(v, 0) - v * y
            prod *= 1.0 + e
            if j % 32 == 31:
                s += np.log(prod)
                prod = 1.0
            r = one / (one + e)
            grad[i, j] = ((r if v >= 0 else e * r) - y) * inv_n
        row_sums[i] = s + np.log(prod)
    total = 0.0
    for i in range(rows):  # in order: the same sum on every run
        total += row_sums[i]
    return total


def sigmoid_bce_with_grad(z, t, grad):
    """Sum over all elements of BCE(sigmoid(z), t), computed from the logits; fills grad (shape of z)
    with (sigmoid(z) - t) / numel. z, t, grad are (rows, cols)."""
    np.negative(np.abs(z, out=grad), out=grad)
    np.exp(grad, out=grad)
    return _bce_from_exp(z, t, grad, z.dtype.type(1), z.dtype.type(1 / z.size))


def sigmoid_bce_with_grad_ref(z, t, grad):
    e = np.exp(-np.abs(z))
    grad[...] = (np.where(z >= 0, 1, e) / (1 + e) - t) / z.size
    return float(np.sum(np.maximum(z, 0) - z * t + np.log1p(e), dtype=np.float64))


def mse_with_grad(y, t, grad):
    """Sum of (y - t)^2 over all elements; fills grad with 2 (y - t) / numel. All (rows, cols)."""
    return _mse_with_grad(y, t, grad, y.dtype.type(2 / y.size))


@_rows
def _mse_with_grad(y, t, grad, scale):
    rows, cols = y.shape
    row_sums = np.empty(rows, dtype=np.float64)
    for i in prange(rows):
        s = 0.0
        for j in range(cols):
            d = y[i, j] - t[i, j]
            s += d * d
            grad[i, j] = d * scale
        row_sums[i] = s
    total = 0.0
    for i in range(rows):  # in order: the same sum on every run
        total += row_sums[i]
    return total


def mse_with_grad_ref(y, t, grad):
    d = y - t
    grad[...] = d * (2.0 / y.size)
    return float(np.sum(np.square(d), dtype=np.float64))


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, eps):
    """One Adam step on flat arrays, in place (scalars cast to the parameters' dtype)."""
    f = p.dtype.type
    _adam_update(p, g, m, v, f(lr_t), f(1 - beta_1), f(1 - beta_2), f(eps))


@_jit
def _adam_update(p, g, m, v, lr_t, one_minus_b1, one_minus_b2, eps):
    # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr_t m / (sqrt(v) + eps)
    for i in range(p.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_b1
        vi = v[i] + (gi * gi - v[i]) * one_minus_b2
        m[i], v[i] = mi, vi
        p[i] -= lr_t * mi / (np.sqrt(vi) + eps)


def adam_update_ref(p, g, m, v, lr_t, beta_1, beta_2, eps):
    m += (g - m) * (1 - beta_1)
    v += (np.square(g) - v) * (1 - beta_2)
    p -= lr_t * m / (np.sqrt(v) + eps)


def adadelta_update(p, g, acc_grad, acc_delta, lr, rho, eps):
    """One Adadelta step on flat arrays, in place (scalars cast to the parameters' dtype)."""
    f = p.dtype.type
    _adadelta_update(p, g, acc_grad, acc_delta, f(lr), f(rho), f(1 - rho), f(eps))


@_jit
def _adadelta_update(p, g, acc_grad, acc_delta, lr, rho, one_minus_rho, eps):
    # E[g2] = rho E[g2] + (1 - rho) g^2;  d = sqrt(E[dx2] + eps) / sqrt(E[g2] + eps) g
    # E[dx2] = rho E[dx2] + (1 - rho) d^2;  p -= lr d
    for i in range(p.size):
        gi = g[i]
        ag = rho * acc_grad[i] + one_minus_rho * gi * gi
        d = np.sqrt(acc_delta[i] + eps) / np.sqrt(ag + eps) * gi
        acc_grad[i] = ag
        acc_delta[i] = rho * acc_delta[i] + one_minus_rho * d * d
        p[i] -= lr * d


def adadelta_update_ref(p, g, acc_grad, acc_delta, lr, rho, eps):
    acc_grad *= rho
    acc_grad += (1 - rho) * np.square(g)
    d = np.sqrt(acc_delta + eps) / np.sqrt(acc_grad + eps) * g
    acc_delta *= rho
    acc_delta += (1 - rho) * np.square(d)
    p -= lr * d
