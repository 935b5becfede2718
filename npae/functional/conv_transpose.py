"""2-D transposed convolution ("deconvolution"), channels-last: the adjoint of a convolution.

Shapes: x (N, H, W, Cin), kernel (kh, kw, F, Cin) (Keras's layout: filters, then input channels),
bias (F,), z (N, Ho, Wo, F).

**The adjoint relation.** Let conv_K be the convolution of :mod:`npae.functional.conv` with the
same kernel K, strides and padding, read as a map from F-channel images of size (Ho, Wo) to
Cin-channel images of size (H, W) (K is (kh, kw, F, Cin), a Conv2D kernel from F to Cin channels).
Conv2DTranspose maps the other way, (H, W, Cin) -> (Ho, Wo, F), and is its transpose:

    z = conv_K^T(x) + bias,   i.e.   <conv_K^T(x), y> = <x, conv_K(y)>   for every y (N, Ho, Wo, F)

so its forward pass is a Conv2D's input-gradient pass (:func:`npae.functional.conv.backward`'s dx,
with dz := x), and its input gradient is a Conv2D's forward pass. Element by element: every input
pixel stamps the kernel, scaled, onto the output, at the stride:

    zfull[n, i*sh + a, j*sw + b, f] += x[n, i, j, c] * kernel[a, b, f, c]     (i < H, j < W, a < kh, b < kw)

    zfull (N, (H - 1) sh + kh, (W - 1) sw + kw, F), the "full" transposed convolution; then
    z = zfull[:, pt:pt + Ho, pl:pl + Wo, :] + bias    (rows past zfull's end are zeros: output_padding)

As matrices (X = x as (N*H*W, Cin), W = kernel as (K, Cin) with K = kh*kw*F, the row order of
:func:`npae.functional.conv.im2col`'s columns):

    forward:   C = X W^T                     (N*H*W, K): one kernel-sized stamp per input pixel
               zfull = col2im(C)             stamps added into place, then cropped, + bias
    backward:  dP = im2col(dz, padded)       (N*H*W, K): the window of dz each stamp landed on
               dX = dP W                     (N*H*W, Cin)  -> dx (N, H, W, Cin)
               dW = dP^T X                   (K, Cin)      -> dkernel (kh, kw, F, Cin)
               dbias = sum of dz over (N, Ho, Wo)

**Output size** along one axis (Keras 3's rules, ``compute_conv_transpose_output_shape`` in
keras/src/backend/common/backend_utils.py), input length n, kernel k, stride s, output padding p:

    'valid':  out = (n - 1) s + k + p,          p defaults to max(s - k, 0),   crop pt = 0
    'same':   out = (n - 1) s + (k mod 2) + p,  p defaults to s - (k mod 2),   crop pt = max(k - (k mod 2) - p, 0) // 2

so without p, 'same' gives out = n s and 'valid' (n - 1) s + max(k, s). The crop pt is the
padding before of the Conv2D whose adjoint this is: for 'same' that is TensorFlow's SAME padding
of a conv from out back to n (the odd pixel of the padding at the bottom/right), which is also
what Keras's JAX backend computes; output_padding's extra rows land at the bottom/right.
One case has no 'same' Conv2D behind it: 'same' with an even k and p = 0 gives out = (n - 1) s,
and a 'same' conv maps that to n - 1, not n; z is then the adjoint of the conv with explicit
padding (pt, (n - 1) s + k - out - pt) = (k / 2, k / 2), which does map out back to n.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .conv import col2im, im2col

__all__ = ["ConvTransposeCache", "output_size", "forward", "backward"]


def output_size(n: int, k: int, s: int, padding: str, output_padding: int | None = None) -> tuple[int, int]:
    """Output length of a transposed convolution along one axis, and its crop.

    Parameters
    ----------
    n : input length (>= 1).
    k : kernel length.
    s : stride.
    padding : 'valid' or 'same'.
    output_padding : extra rows at the end (>= 0; Keras requires < s), or None for Keras's default.

    Returns
    -------
    (out, crop) : z along this axis is the full transposed convolution (length (n - 1) s + k) from
        index ``crop`` on, ``out`` long (zeros past its end).

    Raises
    ------
    ValueError : for an unknown padding, a negative output_padding or an empty output.
    """
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    if output_padding is not None and output_padding < 0:
        raise ValueError(f"output_padding must be >= 0, got {output_padding}")
    if padding == "valid":
        p = max(s - k, 0) if output_padding is None else output_padding
        out, crop = (n - 1) * s + k + p, 0
    else:
        p = s - k % 2 if output_padding is None else output_padding
        out, crop = (n - 1) * s + k % 2 + p, max(k - k % 2 - p, 0) // 2
    if out < 1:
        raise ValueError(f"a transposed convolution of an input of size {n} with kernel {k}, stride {s}, "
                         f"padding {padding!r} and output_padding {output_padding} gives an empty output")
    return out, crop


class ConvTransposeCache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    x: np.ndarray  #: (N, H, W, Cin) the input
    kernel: np.ndarray  #: (kh, kw, F, Cin)
    strides: tuple[int, int]  #: (sh, sw)
    crops: tuple[int, int]  #: (pt, pl): rows and columns cut off the top and left of zfull
    padded_hw: tuple[int, int]  #: (Hp, Wp): zfull's size, grown to hold every output row and column


def forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None, strides=(1, 1),
            padding: str = "valid", output_padding=None) -> tuple[np.ndarray, ConvTransposeCache]:
    """z = conv_transpose(x, kernel) + bias.

    Parameters
    ----------
    x : (N, H, W, Cin).
    kernel : (kh, kw, F, Cin), Keras's layout.
    bias : (F,) or None.
    strides : (sh, sw).
    padding : 'valid' or 'same'.
    output_padding : None or (ph, pw), see :func:`output_size`.

    Returns
    -------
    z : (N, Ho, Wo, F), the sizes from :func:`output_size`.
    cache : ConvTransposeCache for :func:`backward`.
    """
    n, h, w, cin = x.shape
    kh, kw, f, _ = kernel.shape
    sh, sw = strides
    ph, pw = (None, None) if output_padding is None else output_padding
    ho, pt = output_size(h, kh, sh, padding, ph)
    wo, pl = output_size(w, kw, sw, padding, pw)
    hp, wp = max((h - 1) * sh + kh, pt + ho), max((w - 1) * sw + kw, pl + wo)
    stamps = x.reshape(-1, cin) @ kernel.reshape(-1, cin).T  # C = X W^T (N*H*W, kh*kw*F)
    zfull = col2im(stamps, (n, hp, wp, f), kh, kw, sh, sw, h, w)  # (N, Hp, Wp, F)
    z = zfull[:, pt:pt + ho, pl:pl + wo, :]
    z = z + bias if bias is not None else z.copy()
    return z, ConvTransposeCache(x, kernel, (sh, sw), (pt, pl), (hp, wp))


def backward(dz: np.ndarray, cache: ConvTransposeCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of z = conv_transpose(x, kernel) + bias, from dz = dL/dz.

    Element by element (dzfull = dz placed at (pt, pl) in zeros of zfull's size, as in the
    module docstring):

        dL/dx[n, i, j, c]      = sum over (a, b, f) of dzfull[n, i*sh + a, j*sw + b, f] * kernel[a, b, f, c]
        dL/dkernel[a, b, f, c] = sum over (n, i, j) of dzfull[n, i*sh + a, j*sw + b, f] * x[n, i, j, c]
        dL/dbias[f]            = sum over (n, i, j) of dz[n, i, j, f]

    so dx is a Conv2D's forward pass over dz (kernel K, same strides and padding, no bias). As
    matrices: dP = im2col(dzfull) (N*H*W, K), dX = dP W, dW = dP^T X.

    Parameters
    ----------
    dz : (N, Ho, Wo, F) dL/dz.
    cache : from :func:`forward`.

    Returns
    -------
    dx : (N, H, W, Cin).
    dkernel : (kh, kw, F, Cin).
    dbias : (F,).
    """
    x, kernel, (sh, sw), (pt, pl), (hp, wp) = cache
    n, h, w, cin = x.shape
    _, ho, wo, f = dz.shape
    dzfull = np.pad(dz, ((0, 0), (pt, hp - pt - ho), (pl, wp - pl - wo), (0, 0)))
    cols = im2col(dzfull, kernel.shape[0], kernel.shape[1], sh, sw, h, w)  # dP (N*H*W, K)
    dx = (cols @ kernel.reshape(-1, cin)).reshape(n, h, w, cin)
    dkernel = (cols.T @ x.reshape(-1, cin)).reshape(kernel.shape)
    return dx, dkernel, dz.sum(axis=(0, 1, 2))
