"""Activations a = f(z) and their backward passes dz = dL/dz from da = dL/da.

Element-wise, dz = da * f'(z):

    linear:      a = z                                   f'(z) = 1
    relu:        a = max(z, 0)                           f'(z) = 1[z > 0]
    sigmoid:     a = 1 / (1 + exp(-z))                   f'(z) = a (1 - a)
    tanh:        a = tanh(z)                             f'(z) = 1 - a^2
    leaky_relu:  a = z if z > 0 else slope * z           f'(z) = 1 if z > 0 else slope
    elu:         a = z if z > 0 else alpha (exp(z) - 1)  f'(z) = 1 if z > 0 else a + alpha
    softplus:    a = log(1 + exp(z))                     f'(z) = sigmoid(z)
    silu:        a = z sigmoid(z)                        f'(z) = s (1 + z (1 - s)),  s = sigmoid(z)

Over the last axis (Keras's softmax, ``axis=-1``), each row z[..., :] of C values at once:

    softmax:     a = exp(z - m) / sum_c exp(z_c - m),  m = max_c z_c  (the same a for any m; with
                 the row's largest value no exponential overflows and the sum is >= 1)
                 dz = a * (da - sum_c da_c a_c)        (the Jacobian da_i/dz_j = a_i (1[i = j] - a_j)
                                                        applied to da, a row at a time)

(relu's derivative at exactly 0 is taken as 0, as in every framework.) The exponentials are
evaluated only at non-positive arguments, so no input overflows: with e = exp(-|z|) in (0, 1],
sigmoid(z) = 1 / (1 + e) for z >= 0 and e / (1 + e) for z < 0, and
softplus(z) = max(z, 0) + log(1 + e).

Every array has the same shape, any shape (softmax: at least one axis, C = its last): z, a, da, dz.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ActivationCache", "NAMES", "forward", "backward", "apply", "sigmoid", "softmax", "log_softmax", "kink"]

NAMES = ("linear", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "silu", "softmax")


class ActivationCache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    name: str  #: one of NAMES
    z: np.ndarray  #: the input
    a: np.ndarray  #: the output
    alpha: float  #: leaky_relu's negative slope, or elu's alpha (unused by the others)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), without ever taking exp of a positive number."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1, e) / (1 + e)


def softmax(z: np.ndarray) -> np.ndarray:
    """exp(z - max) / sum exp(z - max) over the last axis: (..., C) -> (..., C), each row summing to 1."""
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax(z) over the last axis, (..., C) -> (..., C): (z - m) - log sum exp(z - m),
    m = the row's max; finite for any finite z (no log of an underflowed 0)."""
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _forward(name: str, z: np.ndarray, alpha: float) -> np.ndarray:
    if name == "linear":
        return z.copy()
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if name == "elu":
        return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))
    if name == "softplus":
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    if name == "silu":
        return z * sigmoid(z)
    if name == "softmax":
        if z.ndim == 0:
            raise ValueError("softmax: expected an array with at least one axis (the classes, last), got a scalar")
        return softmax(z)
    raise ValueError(f"unknown activation {name!r}: expected one of {', '.join(NAMES)}")


def forward(z: np.ndarray, name: str, alpha: float = 0.0) -> tuple[np.ndarray, ActivationCache]:
    """a = f(z) for the activation ``name``.

    Parameters
    ----------
    z : any shape.
    name : one of :data:`NAMES`.
    alpha : leaky_relu's slope for z < 0, or elu's alpha.

    Returns
    -------
    a : the shape of z (a new array).
    cache : ActivationCache for :func:`backward`.
    """
    a = _forward(name, z, alpha).astype(z.dtype, copy=False)
    return a, ActivationCache(name, z, a, alpha)


def backward(da: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """dL/dz = dL/da * f'(z).

    Parameters
    ----------
    da : dL/da, the shape of z.
    cache : from :func:`forward`.

    Returns
    -------
    dz : the shape of z (a new array).
    """
    name, z, a, alpha = cache
    if name == "linear":
        return da.copy()
    if name == "relu":
        return np.where(z > 0, da, 0).astype(da.dtype, copy=False)
    if name == "sigmoid":
        return da * a * (1 - a)
    if name == "tanh":
        return da * (1 - a * a)
    if name == "leaky_relu":
        return da * np.where(z > 0, 1, alpha).astype(da.dtype, copy=False)
    if name == "elu":
        return da * np.where(z > 0, 1, a + alpha).astype(da.dtype, copy=False)
    if name == "softplus":
        return da * sigmoid(z)
    if name == "silu":
        s = sigmoid(z)
        return da * s * (1 + z * (1 - s))
    if name == "softmax":
        return a * (da - np.sum(da * a, axis=-1, keepdims=True))
    raise ValueError(f"unknown activation {name!r}: expected one of {', '.join(NAMES)}")


def apply(name: str, z: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """a = f(z) alone, without a cache: e.g. the output's activation applied to the logits a
    layer stopped at (a sigmoid or softmax head, :class:`npae.paths.Head`). z any shape; a like z."""
    return forward(z, name, alpha)[0]


def kink(cache: ActivationCache) -> np.ndarray | None:
    """A mask that changes where z crosses a point without a derivative (relu's and leaky_relu's
    0, and elu's 0 unless alpha is 1, where its two slopes meet), or None for a smooth activation.
    Gradient checks skip coordinates whose finite difference crosses one."""
    if cache.name in ("relu", "leaky_relu") or (cache.name == "elu" and cache.alpha != 1.0):
        return cache.z > 0
    return None
