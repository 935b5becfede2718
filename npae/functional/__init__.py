"""The reference path: every operation's forward and backward pass in plain NumPy.

One small module per operation. Each follows one contract (the CS231n one):

    out, cache = forward(inputs..., config...)     cache: what the backward pass needs
    grads      = backward(dout, cache)             dout = dL/dout, same shape as out

The docstrings give the maths and every array's shape. Nothing here imports Numba, keeps state
between calls or writes into its inputs (the optimizer updates excepted: they update their
parameter and slot arrays in place, as an optimizer must). The layers of :mod:`npae.layers` call
these functions; the fast path (:mod:`npae.fast`) is tested against them.

Shapes use N for the batch, images are channels-last: (N, H, W, C).
"""

from . import (
    activations,
    batchnorm,
    conv,
    conv_transpose,
    dense,
    losses,
    noise,
    optimizers,
    pool,
    regularizers,
    upsample,
)

__all__ = ["activations", "batchnorm", "conv", "conv_transpose", "dense", "losses", "noise", "optimizers", "pool",
           "regularizers", "upsample"]
