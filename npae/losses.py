"""Losses with Keras's names and reduction (the mean over every element); the maths of both
passes: :mod:`npae.functional.losses`.

    loss = npae.losses.get("mse")
    value = loss(y_true, y_pred)                     Keras's argument order, a float
    value, cache = loss.forward(y_pred, y_true)      the two passes, as a model runs them
    dy = loss.backward(cache)                        dL/dy_pred, the shape of y_pred
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .checks import pop_keras_only
from .functional import losses as ops

__all__ = ["Loss", "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy", "get", "serialize", "LOSSES"]


class Loss:
    """A loss: ``forward(y_pred, y_true) -> (value, cache)``, ``backward(cache) -> dL/dy_pred``."""

    name = "loss"

    def forward(self, y_pred: np.ndarray, y_true: np.ndarray) -> tuple[float, Any]:
        raise NotImplementedError

    def backward(self, cache) -> np.ndarray:
        raise NotImplementedError

    def kink(self, cache) -> np.ndarray | None:
        """A mask that changes where the loss has no derivative (for gradient checks), or None."""
        return None

    def check_targets(self, y: np.ndarray, what: str = "y") -> None:
        """Refuse targets this loss cannot mean (checked once per fit / evaluate call)."""

    def get_config(self) -> dict:
        return {}

    def __call__(self, y_true, y_pred) -> float:
        """The loss value, Keras's order: ``loss(y_true, y_pred)``."""
        return self.forward(np.asarray(y_pred), np.asarray(y_true))[0]


class MeanSquaredError(Loss):
    """Keras's ``MeanSquaredError``: L = mean((y_pred - y_true)^2)."""

    name = "mse"

    def __init__(self, **kwargs):
        pop_keras_only("MeanSquaredError", kwargs, _OFF, strict=True)

    def forward(self, y_pred, y_true):
        return ops.mse_forward(y_pred, y_true)

    def backward(self, cache):
        return ops.mse_backward(cache)


class MeanAbsoluteError(Loss):
    """Keras's ``MeanAbsoluteError``: L = mean(|y_pred - y_true|)."""

    name = "mae"

    def __init__(self, **kwargs):
        pop_keras_only("MeanAbsoluteError", kwargs, _OFF, strict=True)

    def forward(self, y_pred, y_true):
        return ops.mae_forward(y_pred, y_true)

    def backward(self, cache):
        return ops.mae_backward(cache)

    def kink(self, cache):
        return np.sign(cache.y_pred - cache.y_true)


class BinaryCrossentropy(Loss):
    """Keras's ``BinaryCrossentropy(from_logits=False)``.

    On probabilities it clips them to [1e-7, 1 - 1e-7] (Keras's epsilon). A model whose last
    layer ends in a sigmoid hands this loss the logits instead (``fusable``, TensorFlow does the
    same): the stable form, without the clip. ``npae.losses.get("binary_crossentropy_clipped")``
    turns that off, to compare with frameworks that clip the probabilities.
    """

    def __init__(self, from_logits: bool = False, fusable: bool = True, **kwargs):
        pop_keras_only("BinaryCrossentropy", kwargs, {**_OFF, "label_smoothing": 0.0, "axis": -1}, strict=True)
        self.from_logits, self.fusable = bool(from_logits), bool(fusable)
        self.name = "binary_crossentropy" if self.fusable else "binary_crossentropy_clipped"

    def forward(self, y_pred, y_true):
        return (ops.sigmoid_bce_forward if self.from_logits else ops.bce_forward)(y_pred, y_true)

    def backward(self, cache):
        return (ops.sigmoid_bce_backward if self.from_logits else ops.bce_backward)(cache)

    def kink(self, cache):
        if self.from_logits:
            return None
        return (cache.y_pred >= ops.EPSILON) & (cache.y_pred <= 1 - ops.EPSILON)

    def check_targets(self, y, what="y"):
        if y.size and y.dtype.kind in "fiub":
            low, high = float(np.min(y)), float(np.max(y))
            if not (0.0 <= low and high <= 1.0):  # (NaN fails too)
                raise ValueError(f"binary_crossentropy: the targets {what} must lie in [0, 1], got values in "
                                 f"[{low:g}, {high:g}] (images in 0..255 need x / 255 first)")

    def get_config(self):
        return {"from_logits": self.from_logits, "fusable": self.fusable}


_OFF = {"reduction": frozenset({"sum_over_batch_size", "auto", None}), "name": None, "dtype": None}

LOSSES = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError, "MeanSquaredError": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError, "MeanAbsoluteError": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy, "BinaryCrossentropy": BinaryCrossentropy,
    "binary_crossentropy_clipped": lambda: BinaryCrossentropy(fusable=False),
}


def get(identifier) -> Loss:
    """A Loss instance, a name from :data:`LOSSES`, or a saved config dict -> a Loss."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in LOSSES:
        return LOSSES[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in LOSSES \
            and isinstance(identifier.get("config", {}), dict):
        return LOSSES[identifier["class_name"]](**identifier.get("config", {}))
    names = sorted(k for k in LOSSES if k.islower())
    raise ValueError(f"unknown loss {identifier!r}: expected one of {names} or a Loss instance")


def serialize(loss: Loss) -> str | dict:
    """The loss's name where that rebuilds it, else {"class_name", "config"}."""
    if type(loss) is not BinaryCrossentropy or not loss.from_logits:
        return loss.name
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
