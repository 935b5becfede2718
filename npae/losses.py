"""Losses with Keras's reduction: mean over the last axis, then mean over the rest.

Since every sample has the same last-axis length, that is the mean over all ``numel`` elements,
and the gradient of each element carries a factor 1/numel.

    mse:                 L = mean((y - t)^2)                        dL/dy = 2 (y - t) / numel
    binary_crossentropy: on logits z (fused with a final sigmoid, TensorFlow's path):
                         L = mean(max(z, 0) - z t + log(1 + exp(-|z|)))   dL/dz = (sigmoid(z) - t) / numel
                         on probabilities y, clipped to [eps, 1 - eps] with eps = 1e-7:
                         L = -mean(t log y + (1 - t) log(1 - y))    dL/dy = (y - t) / (y (1 - y)) / numel
"""

from __future__ import annotations

import numpy as np

from . import elementwise

__all__ = ["Loss", "MeanSquaredError", "BinaryCrossentropy", "get", "LOSSES"]


class Loss:
    """``forward(y_pred, y_true) -> float`` caches what ``backward() -> dL/dy_pred`` needs."""

    name = "loss"
    from_logits = False
    reuse_buffers = False  # set by a Model while it runs the loss (see ``Layer.reuse_buffers``)

    def forward(self, y_pred: np.ndarray, y_true: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def kink_state(self) -> np.ndarray | None:
        return None

    def _grad_buffer(self, like: np.ndarray) -> np.ndarray:
        """Where ``forward`` writes dL/dy: last step's array again while ``reuse_buffers`` is set."""
        buf = getattr(self, "_grad", None)
        if self.reuse_buffers and buf is not None and buf.shape == like.shape and buf.dtype == like.dtype:
            return buf
        return np.empty_like(like)

    @staticmethod
    def _check(y_pred, y_true):
        if y_pred.shape != y_true.shape:
            raise ValueError(
                f"loss: y_pred and y_true must have the same shape, got {y_pred.shape} and {y_true.shape}"
            )
        return np.asarray(y_true, dtype=y_pred.dtype)

    def __call__(self, y_pred, y_true) -> float:
        return self.forward(np.asarray(y_pred), np.asarray(y_true))


class MeanSquaredError(Loss):
    """Mean squared error: L = mean((y - t)^2)."""

    name = "mse"

    def forward(self, y_pred, y_true):
        t = self._check(y_pred, y_true)
        y2, t2 = _rows(y_pred), _rows(t)  # (N, rest) views
        self._grad = self._grad_buffer(y_pred)
        # one pass: the sum of squares and dL/dy = 2 (y - t) / numel
        return elementwise.mse_with_grad(y2, t2, self._grad.reshape(y2.shape)) / y_pred.size

    def backward(self):
        return self._grad


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, on logits (``from_logits=True``) or on clipped probabilities.

    Parameters
    ----------
    from_logits : y_pred are logits z (the stable path) instead of probabilities.
    epsilon : clip bound for the probability path (Keras's 1e-7).
    fusable : when a model ends in a sigmoid, it may hand this loss the logits instead of the
        probabilities (TensorFlow does the same). ``binary_crossentropy_clipped`` sets it False, to
        compare with frameworks that clip the probabilities.
    """

    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, epsilon: float = 1e-7, fusable: bool = True):
        self.from_logits, self.epsilon, self.fusable = from_logits, epsilon, fusable
        if not fusable:
            self.name = "binary_crossentropy_clipped"

    def forward(self, y_pred, y_true):
        t = self._check(y_pred, y_true)
        self._t, self._y = t, y_pred
        if self.from_logits:  # one pass: the loss sum and dL/dz = (sigmoid(z) - t) / numel
            z2 = _rows(y_pred)
            self._grad = self._grad_buffer(y_pred)
            return elementwise.sigmoid_bce_with_grad(z2, _rows(t), self._grad.reshape(z2.shape)) / y_pred.size
        else:
            p = np.clip(y_pred, self.epsilon, 1 - self.epsilon)
            per = -(t * np.log(p) + (1 - t) * np.log1p(-p))
            self._p = p
        return float(np.mean(per, dtype=np.float64))

    def backward(self):
        n = self._y.size
        if self.from_logits:
            return self._grad
        p, t = self._p, self._t
        inside = (self._y >= self.epsilon) & (self._y <= 1 - self.epsilon)  # clip passes gradient here
        return np.where(inside, (p - t) / (p * (1 - p)) * (1.0 / n), np.zeros((), dtype=p.dtype))

    def kink_state(self):
        if self.from_logits:
            return None
        return (self._y >= self.epsilon) & (self._y <= 1 - self.epsilon)


def _rows(a: np.ndarray) -> np.ndarray:
    """A C-contiguous (N, rest) view of a batch (a copy only if it was not contiguous)."""
    return np.ascontiguousarray(a).reshape(a.shape[0], -1)


LOSSES = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "binary_crossentropy": BinaryCrossentropy,
    "binary_crossentropy_clipped": lambda: BinaryCrossentropy(fusable=False),
}


def get(identifier: str | Loss) -> Loss:
    """Resolve 'mse' | 'binary_crossentropy' | 'binary_crossentropy_clipped' | a Loss instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in LOSSES:
        return LOSSES[identifier]()
    raise ValueError(f"unknown loss {identifier!r}: expected one of {sorted(LOSSES)} or a Loss instance")
