"""Metrics: what ``compile(metrics=[...])`` logs beside the loss, with Keras's names and maths.

A metric is a function ``fn(y_true, y_pred) -> values`` of a batch, reduced as Keras's metric
wrappers reduce it: the values are averaged over every sample of the epoch (or of the evaluated
set), each batch weighted by its size (a function that returns one number for the batch counts
once per batch, as Keras's ``Mean`` counts it). The metrics are computed on the model's output, after its
final activation, in the same training-mode forward pass as the loss (before the weights are
updated), as Keras does. They are reported, never differentiated.

    name (Keras's aliases)                          values per sample, y (B, ..., d)
    "mean_squared_error" ("mse")                    mean over the last axis of (y_pred - y_true)^2
    "mean_absolute_error" ("mae")                   mean over the last axis of |y_pred - y_true|
    "binary_accuracy"                               mean over the last axis of y_true == (y_pred > 0.5)
    "categorical_accuracy"                          argmax(y_true, -1) == argmax(y_pred, -1)
    "binary_crossentropy"                           mean over the last axis of -[y log p + (1-y) log(1-p)],
                                                    p = y_pred clipped to [1e-7, 1 - 1e-7]
    "categorical_crossentropy"                      sum over the last axis of -y log p, p = y_pred divided
                                                    by its sum over the last axis, clipped to
                                                    [1e-7, 1 - 1e-7]
    "accuracy" ("acc")                              binary_accuracy where the output's last axis has
                                                    size 1, else categorical_accuracy (Keras's choice,
                                                    made when the model's output shape is known)

A name is checked when the model is compiled; "accuracy" is resolved at the first batch, when the
output shape is known (a model may be compiled before it is built, as in Keras). Two metrics that
would be logged under one name (or under "loss") are refused at compile: their history columns
would collide.

``binary_accuracy`` compares y_true with 0 or 1 exactly (as Keras): on an autoencoder's grey-level
targets it counts only the pixels that are exactly 0 or 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = ["Metric", "get", "mean_squared_error", "mean_absolute_error", "binary_accuracy", "categorical_accuracy",
           "binary_crossentropy", "categorical_crossentropy", "mse", "mae", "NAMES"]

EPSILON = 1e-7  # Keras's backend epsilon: the clip of the cross-entropy's probabilities


def mean_squared_error(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(B, ...) mean over the last axis of (y_pred - y_true)^2, in float64."""
    return np.mean(np.square(np.asarray(y_pred, np.float64) - y_true), axis=-1)


def mean_absolute_error(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(B, ...) mean over the last axis of |y_pred - y_true|, in float64."""
    return np.mean(np.abs(np.asarray(y_pred, np.float64) - y_true), axis=-1)


def binary_accuracy(y_true: np.ndarray, y_pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(B, ...) the fraction over the last axis where y_true equals (y_pred > threshold) as 0 or 1."""
    return np.mean(np.asarray(y_true) == (np.asarray(y_pred) > threshold), axis=-1, dtype=np.float64)


def categorical_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(B, ...) 1.0 where the largest entry of y_true and of y_pred (last axis) are at the same
    index (the first of equal maxima, as NumPy's argmax), else 0.0."""
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def binary_crossentropy(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(B, ...) mean over the last axis of -[y log p + (1 - y) log(1 - p)], p = y_pred clipped to
    [1e-7, 1 - 1e-7] (Keras's metric clips probabilities; it does not see logits)."""
    p = np.clip(np.asarray(y_pred, np.float64), EPSILON, 1.0 - EPSILON)
    y = np.asarray(y_true, np.float64)
    return np.mean(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)), axis=-1)


def categorical_crossentropy(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(B, ...) sum over the last axis (the classes) of -y log p, p = y_pred divided by its sum
    over the last axis and clipped to [1e-7, 1 - 1e-7] (Keras's metric takes probabilities: on a
    model whose softmax output meets categorical cross-entropy it sees the softmax's output)."""
    p = np.asarray(y_pred, np.float64)
    p = np.clip(p / np.sum(p, axis=-1, keepdims=True), EPSILON, 1.0 - EPSILON)
    return -np.sum(np.asarray(y_true, np.float64) * np.log(p), axis=-1)


mse, mae = mean_squared_error, mean_absolute_error

_FUNCTIONS: dict[str, Callable] = {
    "mean_squared_error": mean_squared_error, "mse": mean_squared_error,
    "mean_absolute_error": mean_absolute_error, "mae": mean_absolute_error,
    "binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
    "binary_crossentropy": binary_crossentropy, "categorical_crossentropy": categorical_crossentropy,
}
NAMES = (*_FUNCTIONS, "accuracy", "acc")


class Metric(NamedTuple):
    """A metric as a model logs it: ``name`` (the history key; ``val_<name>`` for the validation
    data), ``fn`` (y_true, y_pred) -> per-sample values, and ``identifier`` (what compile was
    given, kept to save the compile settings; None for a function, which is not saved)."""

    name: str
    fn: Callable
    identifier: str | None

    def batch_sum(self, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, int]:
        """(sum, count) of the batch's values for the epoch's mean: the per-sample means of
        ``fn``'s values summed over the B samples (count B), or a function's single value (count
        1: Keras's Mean counts a scalar once, whatever the batch size)."""
        values = np.asarray(self.fn(y_true, y_pred), dtype=np.float64)
        if values.ndim == 0:
            return float(values), 1
        if values.shape[0] != len(y_true):
            raise ValueError(f"metric {self.name!r} returned values of shape {values.shape} for a batch of "
                             f"{len(y_true)} samples: expected one value per sample (or per sample and position)")
        return float(values.reshape(len(y_true), -1).mean(axis=1).sum()), len(y_true)


def name_of(identifier) -> str:
    """The name ``identifier`` is logged under (a string as given, a function's ``__name__``);
    a clear error for anything that is neither a known name nor a function."""
    if callable(identifier) and not isinstance(identifier, str):
        return getattr(identifier, "__name__", None) or type(identifier).__name__
    if not isinstance(identifier, str):
        raise ValueError(f"a metric is a name ({', '.join(NAMES)}) or a function fn(y_true, y_pred), got "
                         f"{identifier!r}")
    if identifier.lower() not in NAMES:
        raise ValueError(f"unknown metric {identifier!r}: expected one of {', '.join(NAMES)}, or a function "
                         "fn(y_true, y_pred)")
    return identifier


def get(identifier, output_shape: tuple) -> Metric:
    """The metric ``identifier`` names (a string above, any case) or is (a function
    ``fn(y_true, y_pred)`` returning per-sample values or their mean; logged under its
    ``__name__``), for a model whose output has shape ``output_shape`` (batch axis first)."""
    name = name_of(identifier)
    if not isinstance(identifier, str):
        return Metric(name, identifier, None)
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        return Metric(name, binary_accuracy if output_shape[-1] == 1 else categorical_accuracy, identifier)
    return Metric(name, _FUNCTIONS[key], identifier)
