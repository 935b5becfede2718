"""Activity penalties: a term added to the loss for a layer's output h (N, ...), and its gradient,
which the model adds to the gradient flowing into that output.

Keras divides activity penalties by the batch size N (tf.keras, and Keras >= 3.14), so the
penalty is per sample and does not grow with the batch:

    l1:  P = l1 * sum |h| / N          dP/dh = l1 * sign(h) / N        (sign(0) = 0)
    l2:  P = l2 * sum h^2 / N          dP/dh = 2 * l2 * h / N
"""

from __future__ import annotations

import numpy as np

__all__ = ["l1_forward", "l1_backward", "l2_forward", "l2_backward"]


def l1_forward(h: np.ndarray, l1: float) -> float:
    """P = l1 * sum|h| / N for h (N, ...), summed in float64."""
    return l1 * float(np.abs(h).sum(dtype=np.float64)) / h.shape[0]


def l1_backward(h: np.ndarray, l1: float) -> np.ndarray:
    """dP/dh = l1 * sign(h) / N, the shape of h."""
    return np.sign(h) * h.dtype.type(l1 / h.shape[0])


def l2_forward(h: np.ndarray, l2: float) -> float:
    """P = l2 * sum h^2 / N for h (N, ...), summed in float64."""
    return l2 * float(np.square(h).sum(dtype=np.float64)) / h.shape[0]


def l2_backward(h: np.ndarray, l2: float) -> np.ndarray:
    """dP/dh = 2 * l2 * h / N, the shape of h."""
    return h * h.dtype.type(2 * l2 / h.shape[0])
