"""Batch normalisation (Ioffe and Szegedy, 2015), over every axis of x but one, the channel axis.

Shapes: x (N, ..., C, ...) of any rank, C = x.shape[axis] channels; gamma, beta, and the moving
statistics (C,), broadcast along every other axis. Each channel c is normalised over the M = x.size / C
values x_i that share it (the batch, and for images every pixel: M = N*H*W for (N, H, W, C), axis=-1).

**Training** uses the statistics of the batch itself, the variance biased (divided by M, as Keras
3's ``ops.moments``):

    mu    = (1/M) sum_i x_i                                  (C,)
    var   = (1/M) sum_i (x_i - mu)^2                         (C,)
    inv   = 1 / sqrt(var + eps)                              (C,)
    xhat_i = (x_i - mu) * inv                                like x
    y_i   = gamma * xhat_i + beta                            like x

and the layer keeps a moving average of mu and var for inference (:func:`moving_average`).

**Inference** uses given statistics (the moving mean and variance), constants with respect to the
batch, so the map is per-channel affine, y = a x + b with a = gamma / sqrt(variance + eps) and
b = beta - a * mean (see :func:`inference_backward`).

Without ``scale`` (gamma None) gamma is 1; without ``center`` (beta None) beta is 0; their gradients
are then None. The derivation of the training backward pass is in :func:`backward`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["BatchNormCache", "InferenceCache", "reduction_axes", "forward", "backward", "inference_forward",
           "inference_backward", "moving_average"]


class BatchNormCache(NamedTuple):
    """What :func:`backward` needs from :func:`forward` (and the batch statistics, which the layer
    folds into its moving averages)."""

    xhat: np.ndarray  #: like x, the normalised input (x - mu) * inv
    inv: np.ndarray  #: (C,) 1 / sqrt(var + eps)
    gamma: np.ndarray | None  #: (C,) the scale used, or None (scale 1)
    axis: int  #: the channel axis, in [0, x.ndim)
    mean: np.ndarray  #: (C,) the batch mean mu
    var: np.ndarray  #: (C,) the batch variance (biased: divided by M)


class InferenceCache(NamedTuple):
    """What :func:`inference_backward` needs from :func:`inference_forward`."""

    xhat: np.ndarray  #: like x, (x - mean) * inv with the given mean
    inv: np.ndarray  #: (C,) 1 / sqrt(variance + eps) with the given variance
    gamma: np.ndarray | None  #: (C,) or None
    axis: int  #: the channel axis, in [0, x.ndim)


def reduction_axes(ndim: int, axis: int) -> tuple[int, ...]:
    """Every axis of an ``ndim``-array but ``axis`` (which may be negative): the axes summed over."""
    axis = axis % ndim
    return tuple(i for i in range(ndim) if i != axis)


def _along(v: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast along ``axis`` of an ``ndim``-array: (1, .., C, .., 1)."""
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


def _affine(xhat, gamma, beta, axis):
    out = xhat * _along(gamma, xhat.ndim, axis) if gamma is not None else xhat.copy()
    if beta is not None:
        out += _along(beta, xhat.ndim, axis)
    return out


def forward(x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None, axis: int = -1,
            epsilon: float = 1e-3) -> tuple[np.ndarray, BatchNormCache]:
    """Training mode: y = gamma * (x - mu) / sqrt(var + eps) + beta with the batch's mu and var.

    Parameters
    ----------
    x : (N, ..., C, ...) the input, C = x.shape[axis].
    gamma : (C,) the scale, or None (no scale).
    beta : (C,) the offset, or None (no offset).
    axis : the channel axis (negative counts from the end).
    epsilon : added to the variance.

    Returns
    -------
    y : like x.
    cache : BatchNormCache for :func:`backward`; ``cache.mean`` and ``cache.var`` (C,) are the
        batch statistics.
    """
    axis = axis % x.ndim
    axes = reduction_axes(x.ndim, axis)
    mean = x.mean(axis=axes)  # mu (C,)
    centred = x - _along(mean, x.ndim, axis)  # x - mu
    var = np.mean(centred * centred, axis=axes)  # biased variance (C,)
    inv = 1.0 / np.sqrt(var + x.dtype.type(epsilon))  # (C,)
    xhat = centred * _along(inv, x.ndim, axis)
    return _affine(xhat, gamma, beta, axis), BatchNormCache(xhat, inv, gamma, axis, mean, var)


def backward(dout: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of training-mode batch normalisation, through the batch mean and variance.

    For one channel, with sums over its M values i and dy = dout:

        dL/dbeta  = sum_i dy_i                                          (C,)
        dL/dgamma = sum_i dy_i * xhat_i                                 (C,)
        dxhat_i   = dy_i * gamma                                        like x

    Every x_j reaches the loss three ways: through xhat_j directly, through var and through mu.
    With xhat_i = (x_i - mu) * (var + eps)^(-1/2):

        dL/dvar = sum_i dxhat_i * (x_i - mu) * (-1/2) * (var + eps)^(-3/2)          (C,)
        dL/dmu  = sum_i dxhat_i * (-inv)  +  dL/dvar * (-2/M) * sum_i (x_i - mu)    (C,)
                = -inv * sum_i dxhat_i                         (the second sum is 0)
        dL/dx_j = dxhat_j * inv  +  dL/dvar * 2 (x_j - mu) / M  +  dL/dmu / M       like x

    (since dvar/dx_j = 2 (x_j - mu) / M and dmu/dx_j = 1/M). Writing x_j - mu = xhat_j / inv, so
    that dL/dvar * 2 (x_j - mu) / M = -inv * xhat_j * mean_i(dxhat_i * xhat_i), the three terms
    collect into the form computed here:

        dL/dx_j = inv * (dxhat_j - mean_i(dxhat_i) - xhat_j * mean_i(dxhat_i * xhat_i))

    (means over the channel's M values). It removes from dxhat its mean and its component along
    xhat: the normalised output cannot move its mean or its spread, so neither can x through it.

    Parameters
    ----------
    dout : like x, dL/dy.
    cache : from :func:`forward`.

    Returns
    -------
    dx : like x.
    dgamma : (C,), or None without gamma.
    dbeta : (C,), or None without beta (when ``forward`` had ``beta=None``, the caller knows).
    """
    xhat, inv, gamma, axis = cache.xhat, cache.inv, cache.gamma, cache.axis
    nd = dout.ndim
    axes = reduction_axes(nd, axis)
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dxhat = dout * _along(gamma, nd, axis) if gamma is not None else dout
    mean_dxhat = _along(dxhat.mean(axis=axes), nd, axis)
    mean_dxhat_xhat = _along((dxhat * xhat).mean(axis=axes), nd, axis)
    dx = _along(inv, nd, axis) * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)
    return dx, (dgamma if gamma is not None else None), dbeta


def inference_forward(x: np.ndarray, mean: np.ndarray, variance: np.ndarray, gamma: np.ndarray | None,
                      beta: np.ndarray | None, axis: int = -1, epsilon: float = 1e-3
                      ) -> tuple[np.ndarray, InferenceCache]:
    """Inference mode: y = gamma * (x - mean) / sqrt(variance + eps) + beta with given statistics.

    Parameters
    ----------
    x : (N, ..., C, ...) the input, C = x.shape[axis].
    mean, variance : (C,) the statistics to normalise with (the layer's moving averages).
    gamma, beta : (C,) or None, as in :func:`forward`.
    axis : the channel axis.  epsilon : added to the variance.

    Returns
    -------
    y : like x.
    cache : InferenceCache for :func:`inference_backward`.
    """
    axis = axis % x.ndim
    inv = 1.0 / np.sqrt(variance + x.dtype.type(epsilon))
    xhat = (x - _along(mean, x.ndim, axis)) * _along(inv, x.ndim, axis)
    return _affine(xhat, gamma, beta, axis), InferenceCache(xhat, inv, gamma, axis)


def inference_backward(dout: np.ndarray, cache: InferenceCache):
    """Gradients of inference-mode batch normalisation: y = a x + b per channel, with
    a = gamma * inv, inv = (variance + eps)^(-1/2), and nothing depending on the batch.

    With sums over the channel's M values i and dy = dout:

        dL/dx        = a * dy                                           like x
        dL/dgamma    = sum_i dy_i * xhat_i                              (C,)
        dL/dbeta     = sum_i dy_i                                       (C,)
        dL/dmean     = -a * sum_i dy_i                                  (C,)
        dL/dvariance = sum_i dy_i * gamma * (x_i - mean) * (-1/2) (variance + eps)^(-3/2)
                     = -(1/2) * gamma * inv^2 * sum_i dy_i * xhat_i     (C,)

    The statistics' gradients are exact but unused in training (moving statistics are not trained
    by gradients); they let a gradient check cover every input of the map.

    Parameters
    ----------
    dout : like x, dL/dy.
    cache : from :func:`inference_forward`.

    Returns
    -------
    dx : like x.
    dgamma : (C,) or None without gamma.
    dbeta : (C,).
    dmean : (C,).
    dvariance : (C,).
    """
    xhat, inv, gamma, axis = cache
    nd = dout.ndim
    axes = reduction_axes(nd, axis)
    a = gamma * inv if gamma is not None else inv
    dbeta = dout.sum(axis=axes)
    dy_xhat = (dout * xhat).sum(axis=axes)
    g = gamma if gamma is not None else 1.0
    return (dout * _along(a, nd, axis), dy_xhat if gamma is not None else None, dbeta, -a * dbeta,
            -0.5 * g * inv * inv * dy_xhat)


def moving_average(moving: np.ndarray, value: np.ndarray, momentum: float) -> np.ndarray:
    """Keras's update of a moving statistic: moving * momentum + value * (1 - momentum), a new
    array (the layer writes it into its weight)."""
    return moving * moving.dtype.type(momentum) + value * moving.dtype.type(1.0 - momentum)
