"""2-D max pooling, channels-last.

Forward: each output is the largest input in its window,

    out[n, i, j, ch] = max over (a, b) of xp[n, i*sh + a, j*sw + b, ch]      (a < kh, b < kw)

where xp is the input padded by the sizes of :func:`conv.output_size` ('valid' or 'same'; e.g.
7 -> 4 with a 2x2 window and 'same', the pad at the bottom/right). The padding never wins: the
winner is the first pixel of the image that holds the window's maximum.

Backward: max is linear in its winner and constant in the others, so each output's gradient goes
to the one input that won its window (ties: the first in row-major window order), and inputs that
won several overlapping windows collect every one of those gradients:

    dx[n, r, q, ch] = sum over the windows (i, j) that pixel (r, q) won of dout[n, i, j, ch]

Shapes: x (N, H, W, C), out and dout (N, Ho, Wo, C), dx (N, H, W, C).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .conv import output_size

__all__ = ["MaxPoolCache", "forward", "backward"]


class MaxPoolCache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    x_shape: tuple[int, int, int, int]  #: (N, H, W, C)
    winner: np.ndarray  #: (N, Ho, Wo, C) int: each window's winner, a * kw + b within the window
    pool_size: tuple[int, int]  #: (kh, kw)
    strides: tuple[int, int]  #: (sh, sw)
    pads: tuple[int, int]  #: (top, left)


def forward(x: np.ndarray, pool_size=(2, 2), strides=None, padding: str = "valid") -> tuple[np.ndarray, MaxPoolCache]:
    """Max over each window.

    Parameters
    ----------
    x : (N, H, W, C).
    pool_size : (kh, kw).
    strides : (sh, sw); None means the pool size (Keras's default).
    padding : 'valid' or 'same'.

    Returns
    -------
    out : (N, Ho, Wo, C).
    cache : MaxPoolCache for :func:`backward`.
    """
    n, h, w, c = x.shape
    kh, kw = pool_size
    sh, sw = strides or pool_size
    ho, pt, pb = output_size(h, kh, sh, padding)
    wo, pl, pr = output_size(w, kw, sw, padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
    inside = np.pad(np.ones((h, w), bool), ((pt, pb), (pl, pr)))  # which padded pixels are the image's
    windows = np.empty((n, ho, wo, c, kh * kw), dtype=x.dtype)  # every window's kh*kw values, row-major
    real = np.empty((ho, wo, 1, kh * kw), dtype=bool)
    for a in range(kh):
        for b in range(kw):
            rows, cols = slice(a, a + sh * (ho - 1) + 1, sh), slice(b, b + sw * (wo - 1) + 1, sw)
            windows[..., a * kw + b] = xp[:, rows, cols, :]
            real[..., 0, a * kw + b] = inside[rows, cols]
    # the winner: the first image pixel holding the window's maximum (padding never wins, even a
    # tie with an input of -inf; a window whose maximum is NaN keeps its first image pixel)
    best = np.where(real, windows, -np.inf).max(axis=-1, keepdims=True)
    candidates = real & (windows == best)
    winner = np.where(candidates.any(axis=-1), candidates.argmax(axis=-1), np.broadcast_to(real.argmax(axis=-1),
                                                                                          candidates.shape[:-1]))
    out = np.take_along_axis(windows, winner[..., None], axis=-1)[..., 0]
    return out, MaxPoolCache(x.shape, winner, (kh, kw), (sh, sw), (pt, pl))


def backward(dout: np.ndarray, cache: MaxPoolCache) -> np.ndarray:
    """dL/dx: each window's gradient added onto its winner.

    Parameters
    ----------
    dout : (N, Ho, Wo, C) dL/dout.
    cache : from :func:`forward`.

    Returns
    -------
    dx : (N, H, W, C).
    """
    (n, h, w, c), winner, (kh, kw), (sh, sw), (pt, pl) = cache
    _, ho, wo, _ = dout.shape
    # the winner's row and column in the image (they lie inside it: padding never wins)
    y = np.arange(ho)[None, :, None, None] * sh - pt + winner // kw
    x = np.arange(wo)[None, None, :, None] * sw - pl + winner % kw
    batch = np.broadcast_to(np.arange(n)[:, None, None, None], dout.shape)
    channel = np.broadcast_to(np.arange(c)[None, None, None, :], dout.shape)
    dx = np.zeros((n, h, w, c), dtype=dout.dtype)
    np.add.at(dx, (batch, y, x, channel), dout)  # unbuffered: a pixel that won twice gets both
    return dx
