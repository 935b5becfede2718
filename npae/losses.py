"""Losses with Keras's names and reduction (the mean over every element); the maths of both
passes: :mod:`npae.functional.losses`.

    loss = npae.losses.get("mse")
    value = loss(y_true, y_pred)                     Keras's argument order, a float
    value, cache = loss.forward(y_pred, y_true)      the two passes, as a model runs them
    dy = loss.backward(cache)                        dL/dy_pred, the shape of y_pred
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .checks import pop_keras_only
from .functional import losses as ops

__all__ = ["Loss", "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy", "CategoricalCrossentropy", "get",
           "serialize", "LOSSES"]


class Loss:
    """A loss: ``forward(y_pred, y_true) -> (value, cache)``, ``backward(cache) -> dL/dy_pred``.

    ``logits_activation``: for a loss computed from logits, the activation that turns them into
    the predictions ("sigmoid" for binary, "softmax" for categorical cross-entropy); None for a
    loss of the predictions themselves. A model whose output layer stopped at its logits for
    such a loss applies it to report the output (``npae.functional.activations.apply``)."""

    name = "loss"
    logits_activation: str | None = None

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

    @property
    def logits_activation(self) -> str | None:
        return "sigmoid" if self.from_logits else None

    def get_config(self):
        return {"from_logits": self.from_logits, "fusable": self.fusable}


class CategoricalCrossentropy(Loss):
    """Keras's ``CategoricalCrossentropy(from_logits=False)``: per row of C class probabilities
    (the last axis), -sum_c y_true_c log p_c, averaged over the rows (the batch, and for images
    every pixel).

    On probabilities it takes Keras's form: each row divided by its sum, then clipped to
    [1e-7, 1 - 1e-7]. A model whose last layer ends in a softmax hands this loss the logits
    instead, as a sigmoid's output with binary cross-entropy: the stable log-softmax form, without
    the clip. ``from_logits=True`` takes logits from any output. The targets are one-hot rows (or
    class probabilities) of the output's shape: ``npae.utils.to_categorical`` makes them from
    integer labels.
    """

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, **kwargs):
        pop_keras_only("CategoricalCrossentropy", kwargs, {**_OFF, "label_smoothing": 0.0, "axis": -1}, strict=True)
        self.from_logits = bool(from_logits)

    @property
    def logits_activation(self) -> str | None:
        return "softmax" if self.from_logits else None

    def forward(self, y_pred, y_true):
        if np.ndim(y_pred) and np.shape(y_true) != np.shape(y_pred) and np.shape(y_true)[-1:] == (1,):
            raise ValueError(f"categorical_crossentropy: y_true has shape {np.shape(y_true)}, the output "
                             f"{np.shape(y_pred)}: the targets must be one-hot rows of the output's shape (integer "
                             "labels need npae.utils.to_categorical(labels, num_classes) first)")
        return (ops.softmax_cce_forward if self.from_logits else ops.cce_forward)(y_pred, y_true)

    def backward(self, cache):
        return (ops.softmax_cce_backward if self.from_logits else ops.cce_backward)(cache)

    def kink(self, cache):
        if self.from_logits:
            return None
        q = cache.y_pred / np.sum(cache.y_pred, axis=-1, keepdims=True)
        return (q >= ops.EPSILON) & (q <= 1 - ops.EPSILON)

    def check_targets(self, y, what="y"):
        if y.size and y.dtype.kind in "fiub":
            low, high = float(np.min(y)), float(np.max(y))
            if not (0.0 <= low and high <= 1.0):  # (NaN fails too)
                raise ValueError(f"categorical_crossentropy: the targets {what} must be one-hot rows (or class "
                                 f"probabilities) in [0, 1], got values in [{low:g}, {high:g}]; integer labels need "
                                 "npae.utils.to_categorical(labels, num_classes) first")
        if y.ndim and y.shape[-1] == 1:
            warnings.warn(f"categorical_crossentropy: the targets {what} have one class (last axis of size 1): the "
                          "loss is 0 whatever the output; a yes/no target wants binary_crossentropy, integer labels "
                          "npae.utils.to_categorical", stacklevel=3)

    def get_config(self):
        return {"from_logits": self.from_logits}


_OFF = {"reduction": frozenset({"sum_over_batch_size", "auto", None}), "name": None, "dtype": None}

LOSSES = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError, "MeanSquaredError": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError, "MeanAbsoluteError": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy, "BinaryCrossentropy": BinaryCrossentropy,
    "binary_crossentropy_clipped": lambda: BinaryCrossentropy(fusable=False),
    "categorical_crossentropy": CategoricalCrossentropy, "CategoricalCrossentropy": CategoricalCrossentropy,
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
    if type(loss) not in (BinaryCrossentropy, CategoricalCrossentropy) or not loss.from_logits:
        return loss.name
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
