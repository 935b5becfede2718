"""2-D convolution (a cross-correlation, as in Keras and every deep-learning library), channels-last,
by im2col and one matrix product.

Shapes: x (N, H, W, Cin), kernel (kh, kw, Cin, Cout), bias (Cout,), z (N, Ho, Wo, Cout).

    z[n, i, j, o] = bias[o] + sum over (a, b, c) of xp[n, i*sh + a, j*sw + b, c] * kernel[a, b, c, o]

(a < kh, b < kw: the kernel tap; c < Cin: the input channel), where xp is x zero-padded by
(pt, pb) rows and (pl, pr) columns (see :func:`output_size`).

im2col copies every window into one row of the patch matrix P, (N*Ho*Wo, K) with K = kh*kw*Cin,
its columns ordered (a, b, c): the row order of the kernel reshaped to W = (K, Cout). Then the
convolution is one matrix product, and its backward pass two more, exactly as for a dense layer:

    forward:   Z = P W + bias                (N*Ho*Wo, Cout)  -> reshaped to (N, Ho, Wo, Cout)
    backward:  dW = P^T dZ                   (K, Cout)        -> reshaped to (kh, kw, Cin, Cout)
               dbias = sum over rows of dZ   (Cout,)
               dP = dZ W^T                   (N*Ho*Wo, K)
               dxp = col2im(dP)              (N, H + pt + pb, W + pl + pr, Cin), then the padding
                                             rows and columns are cut off: dx (N, H, W, Cin)

col2im is the adjoint of im2col: it adds every entry of dP back onto the pixel it was copied from
(a pixel in several windows collects several contributions).

Output size along one axis of length n, window k, stride s (TensorFlow's and Keras's rules):

    'valid':  out = floor((n - k) / s) + 1                  no padding
    'same':   out = ceil(n / s)                             total padding T = max((out - 1) s + k - n, 0),
              pad_before = floor(T / 2), pad_after = T - pad_before   (the odd pixel bottom/right)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["ConvCache", "output_size", "im2col", "col2im", "forward", "backward"]


def output_size(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """Output length and padding of a sliding window along one axis.

    Parameters
    ----------
    n : input length.
    k : window length.
    s : stride.
    padding : 'valid' or 'same'.

    Returns
    -------
    (out, pad_before, pad_after)

    Raises
    ------
    ValueError : for a 'valid' window longer than the input, or an unknown padding.
    """
    if padding == "valid":
        if n < k:
            raise ValueError(f"window of size {k} does not fit a 'valid' input of size {n}: "
                             f"expected an input of at least {k}, got {n}")
        return (n - k) // s + 1, 0, 0
    if padding == "same":
        out = math.ceil(n / s)
        total = max((out - 1) * s + k - n, 0)
        return out, total // 2, total - total // 2
    raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


class ConvCache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    x_shape: tuple[int, int, int, int]  #: (N, H, W, Cin)
    cols: np.ndarray  #: (N*Ho*Wo, kh*kw*Cin) the patch matrix P
    kernel: np.ndarray  #: (kh, kw, Cin, Cout)
    strides: tuple[int, int]  #: (sh, sw)
    pads: tuple[int, int, int, int]  #: (top, bottom, left, right)


def im2col(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, ho: int, wo: int) -> np.ndarray:
    """The patch matrix of an already padded image batch.

    Parameters
    ----------
    xp : (N, Hp, Wp, C) padded input.
    kh, kw : window size.  sh, sw : strides.  ho, wo : number of windows down and across.

    Returns
    -------
    P : (N*ho*wo, kh*kw*C). Row (n, i, j) is the window with top-left corner (i*sh, j*sw),
        its columns in (a, b, c) order: tap row, tap column, channel.
    """
    n, _, _, c = xp.shape
    cols = np.empty((n, ho, wo, kh, kw, c), dtype=xp.dtype)
    for a in range(kh):  # one strided slice per kernel tap: every window's pixel (a, b) at once
        for b in range(kw):
            cols[:, :, :, a, b, :] = xp[:, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw, :]
    return cols.reshape(n * ho * wo, kh * kw * c)


def col2im(dcols: np.ndarray, padded_shape: tuple[int, int, int, int], kh: int, kw: int, sh: int, sw: int,
           ho: int, wo: int) -> np.ndarray:
    """The adjoint of :func:`im2col`: every patch entry added back onto its pixel.

    Parameters
    ----------
    dcols : (N*ho*wo, kh*kw*C), e.g. dL/dP.
    padded_shape : (N, Hp, Wp, C), the shape :func:`im2col` read.

    Returns
    -------
    dxp : (N, Hp, Wp, C). For one tap (a, c) the windows' pixels are distinct, so a strided ``+=``
        per tap loses no update.
    """
    n, _, _, c = padded_shape
    d6 = dcols.reshape(n, ho, wo, kh, kw, c)
    dxp = np.zeros(padded_shape, dtype=dcols.dtype)
    for a in range(kh):
        for b in range(kw):
            dxp[:, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw, :] += d6[:, :, :, a, b, :]
    return dxp


def forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None, strides=(1, 1),
            padding: str = "valid") -> tuple[np.ndarray, ConvCache]:
    """z = conv(x, kernel) + bias.

    Parameters
    ----------
    x : (N, H, W, Cin).
    kernel : (kh, kw, Cin, Cout), Keras's layout.
    bias : (Cout,) or None.
    strides : (sh, sw).
    padding : 'valid' or 'same'.

    Returns
    -------
    z : (N, Ho, Wo, Cout), the sizes from :func:`output_size`.
    cache : ConvCache for :func:`backward`.
    """
    n, h, w, _ = x.shape
    kh, kw, _, cout = kernel.shape
    sh, sw = strides
    ho, pt, pb = output_size(h, kh, sh, padding)
    wo, pl, pr = output_size(w, kw, sw, padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cols = im2col(xp, kh, kw, sh, sw, ho, wo)  # P (N*Ho*Wo, K)
    z = cols @ kernel.reshape(-1, cout)  # Z = P W (N*Ho*Wo, Cout)
    if bias is not None:
        z += bias
    return z.reshape(n, ho, wo, cout), ConvCache(x.shape, cols, kernel, (sh, sw), (pt, pb, pl, pr))


def backward(dz: np.ndarray, cache: ConvCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of z = conv(x, kernel) + bias, from dz = dL/dz.

    Element by element (xp the padded input, as in the module docstring):

        dL/dkernel[a, b, c, o] = sum over (n, i, j) of xp[n, i*sh + a, j*sw + b, c] * dz[n, i, j, o]
        dL/dbias[o]            = sum over (n, i, j) of dz[n, i, j, o]
        dL/dxp[n, r, q, c]     = sum over the windows (i, j) and taps (a, b) with i*sh + a = r and
                                 j*sw + b = q, of kernel[a, b, c, o] * dz[n, i, j, o] (over o too)

    and dx is dL/dxp without the padding. As matrices (P the patch matrix from the cache, W the
    kernel as (K, Cout), dZ = dz as (N*Ho*Wo, Cout)): dW = P^T dZ, dbias = the column sums of dZ,
    dP = dZ W^T, and dxp = col2im(dP).

    Parameters
    ----------
    dz : (N, Ho, Wo, Cout) dL/dz.
    cache : from :func:`forward`.

    Returns
    -------
    dx : (N, H, W, Cin).
    dkernel : (kh, kw, Cin, Cout).
    dbias : (Cout,).
    """
    (n, h, w, cin), cols, kernel, (sh, sw), (pt, pb, pl, pr) = cache
    kh, kw, _, cout = kernel.shape
    _, ho, wo, _ = dz.shape
    dz2 = dz.reshape(-1, cout)  # dZ (N*Ho*Wo, Cout)
    dkernel = (cols.T @ dz2).reshape(kernel.shape)
    dcols = dz2 @ kernel.reshape(-1, cout).T  # dP (N*Ho*Wo, K)
    dxp = col2im(dcols, (n, h + pt + pb, w + pl + pr, cin), kh, kw, sh, sw, ho, wo)
    return dxp[:, pt:pt + h, pl:pl + w, :], dkernel, dz2.sum(axis=0)
