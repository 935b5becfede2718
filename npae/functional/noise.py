"""Training-time noise: inverted dropout and additive Gaussian noise.

Both take their random draw as an input, so each pass is a deterministic function of it (the layers
of :mod:`npae.layers.noise` draw it from their own generator, in training only).

**Dropout** with rate r keeps each unit with probability 1 - r and scales the kept ones by
1 / (1 - r), so that the expected output is the input ("inverted" dropout: inference is the identity):

    y = where(mask, x / (1 - r), 0)         x (N, ...), mask bool, broadcastable to x, y like x
    dL/dx = where(mask, dy / (1 - r), 0)

The mask may have size 1 along axes where every unit shares one draw (Keras's ``noise_shape``).

**Spatial dropout** (Keras's SpatialDropout2D) is dropout with one draw per image and channel,
shared by every pixel of that channel: whole feature maps are dropped or kept,

    y[n, i, j, c] = x[n, i, j, c] / (1 - r) if keep[n, c] else 0     x, y (N, H, W, C), keep (N, C)
    dL/dx[n, i, j, c] = dy[n, i, j, c] / (1 - r) if keep[n, c] else 0

**Gaussian noise** adds a draw e of N(0, stddev^2) to every unit:

    y = x + e                               x, e, y (N, ...)
    dL/dx = dy                              (e does not depend on x)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["DropoutCache", "dropout_forward", "dropout_backward", "spatial_dropout2d_forward",
           "spatial_dropout2d_backward", "gaussian_noise_forward", "gaussian_noise_backward"]


class DropoutCache(NamedTuple):
    """What :func:`dropout_backward` needs from :func:`dropout_forward`."""

    mask: np.ndarray  #: bool, broadcastable to x: True where the unit is kept
    keep: float  #: 1 - rate


def dropout_forward(x: np.ndarray, mask: np.ndarray, rate: float) -> tuple[np.ndarray, DropoutCache]:
    """y = x / (1 - rate) where ``mask``, else 0.

    Parameters
    ----------
    x : (N, ...) the input.
    mask : bool array broadcastable to x (e.g. x's shape, or 1 along shared axes): the kept units.
    rate : the fraction dropped, in [0, 1).

    Returns
    -------
    y : like x, in x's dtype.
    cache : DropoutCache for :func:`dropout_backward`.
    """
    keep = 1.0 - rate
    y = np.where(mask, x / x.dtype.type(keep), x.dtype.type(0))
    return y, DropoutCache(mask, keep)


def dropout_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """dL/dx = dout / (1 - rate) where the unit was kept, else 0 (like dout)."""
    mask, keep = cache
    return np.where(mask, dout / dout.dtype.type(keep), dout.dtype.type(0))


def spatial_dropout2d_forward(x: np.ndarray, keep: np.ndarray, rate: float) -> tuple[np.ndarray, DropoutCache]:
    """y = x / (1 - rate) in the kept channels of each image, 0 in the others.

    Parameters
    ----------
    x : (N, H, W, C) images, channels last.
    keep : bool (N, C): True where channel c of image n is kept (one draw for all its H * W pixels).
    rate : the fraction dropped, in [0, 1).

    Returns
    -------
    y : (N, H, W, C), in x's dtype.
    cache : DropoutCache (its mask (N, 1, 1, C)) for :func:`spatial_dropout2d_backward`.
    """
    if x.ndim != 4 or np.shape(keep) != (x.shape[0], x.shape[3]):
        raise ValueError(f"spatial_dropout2d: expected images x (N, H, W, C) and a mask keep (N, C), got x "
                         f"{x.shape} and keep {np.shape(keep)}")
    return dropout_forward(x, np.asarray(keep)[:, None, None, :], rate)


def spatial_dropout2d_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """dL/dx = dout / (1 - rate) in the kept channels, else 0 ((N, H, W, C), like dout)."""
    return dropout_backward(dout, cache)


def gaussian_noise_forward(x: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, None]:
    """y = x + noise.

    Parameters
    ----------
    x : (N, ...) the input.
    noise : like x (or broadcastable to it), the draw of N(0, stddev^2).

    Returns
    -------
    y : like x, in x's dtype.
    cache : None (the backward pass needs nothing).
    """
    return x + noise.astype(x.dtype, copy=False), None


def gaussian_noise_backward(dout: np.ndarray, cache: None = None) -> np.ndarray:
    """dL/dx = dout (a copy: the noise is a constant of the pass)."""
    return dout.copy()
