"""Nearest-neighbour upsampling by whole factors (Keras's ``UpSampling2D``), channels-last.

Forward: every pixel becomes an sh x sw block of copies,

    out[n, r, q, ch] = x[n, r // sh, q // sw, ch]         x (N, H, W, C) -> out (N, H*sh, W*sw, C)

Backward: each input pixel fed sh*sw outputs, so its gradient is the sum of theirs (a sum over
each block of dout, not a subsample of it):

    dx[n, i, j, ch] = sum over a < sh, b < sw of dout[n, i*sh + a, j*sw + b, ch]
"""

from __future__ import annotations

import numpy as np

__all__ = ["forward", "backward"]


def forward(x: np.ndarray, size=(2, 2)) -> tuple[np.ndarray, tuple[int, int]]:
    """Repeat every pixel ``size`` = (sh, sw) times down and across.

    Parameters
    ----------
    x : (N, H, W, C).
    size : (sh, sw).

    Returns
    -------
    out : (N, H*sh, W*sw, C).
    cache : (sh, sw).
    """
    sh, sw = size
    return np.repeat(np.repeat(x, sh, axis=1), sw, axis=2), (sh, sw)


def backward(dout: np.ndarray, cache: tuple[int, int]) -> np.ndarray:
    """dL/dx: the sum over each sh x sw block of dout.

    Parameters
    ----------
    dout : (N, H*sh, W*sw, C).
    cache : (sh, sw) from :func:`forward`.

    Returns
    -------
    dx : (N, H, W, C).
    """
    sh, sw = cache
    n, hh, ww, c = dout.shape
    return dout.reshape(n, hh // sh, sh, ww // sw, sw, c).sum(axis=(2, 4))
