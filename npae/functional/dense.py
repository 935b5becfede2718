"""A fully connected (dense) layer's linear part: z = x W + b.

Forward, for a batch of N rows:

    z = x @ W + b          x (N, D), W (D, U), b (U,), z (N, U)

Backward, from the upstream gradient dz = dL/dz (N, U), by the chain rule on each entry
z[n, u] = sum_d x[n, d] W[d, u] + b[u]:

    dL/dW = x^T dz         (D, U)   sum over the batch of outer products x[n] dz[n]
    dL/db = sum_n dz[n]    (U,)     every row adds the same bias
    dL/dx = dz W^T         (N, D)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["DenseCache", "forward", "backward"]


class DenseCache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    x: np.ndarray  #: (N, D) the input
    kernel: np.ndarray  #: (D, U) the weights used


def forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None) -> tuple[np.ndarray, DenseCache]:
    """z = x @ kernel + bias.

    Parameters
    ----------
    x : (N, D) input rows.
    kernel : (D, U) weights, Keras's layout.
    bias : (U,) or None (no bias).

    Returns
    -------
    z : (N, U) the pre-activation.
    cache : DenseCache for :func:`backward`.
    """
    z = x @ kernel
    if bias is not None:
        z += bias
    return z, DenseCache(x, kernel)


def backward(dz: np.ndarray, cache: DenseCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of z = x @ kernel + bias.

    Parameters
    ----------
    dz : (N, U) dL/dz.
    cache : from :func:`forward`.

    Returns
    -------
    dx : (N, D) dL/dx = dz @ kernel^T.
    dkernel : (D, U) dL/dkernel = x^T @ dz.
    dbias : (U,) dL/dbias = dz summed over the batch.
    """
    x, kernel = cache
    return dz @ kernel.T, x.T @ dz, dz.sum(axis=0)
