"""What a path is: the one interface the reference path (:mod:`npae.reference`) and the fast path
(:mod:`npae.fast`) implement, and what a model hands them.

A model gives a path its flattened graph (:class:`npae.graph.FlatGraph`) and one :class:`Head`
per output that has a loss. Batches go in and out as lists, one array per model input, target
and output, in the model's order:

    path.loss_value(xs, ys, training, outputs)  -> Losses   the objective on one batch
    path.gradients(xs, ys, grads, outputs)      -> Losses   and dL/dw into grads[key]
    path.step(optimizer, params, grads)                     one update of every weight
    path.gather(src, idx, out)                  -> out      out <- src[idx], a batch
    path.predict(xs, outs)                      -> outs     outs[k][...] <- output k

``outputs`` (a list with an array or None per model output) receives the outputs of the same
forward pass, for the metrics.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from .losses import Loss

__all__ = ["Head", "Losses", "Path"]


class Head(NamedTuple):
    """The loss on one model output.

    output : the output's index in the model's outputs.
    loss : the loss, ``loss.forward(y_pred, y_true)``.
    weight : its weight in the objective (``compile(loss_weights=...)``).
    logits : the layer making the output stops before its activation and ``loss`` takes the
        logits: a sigmoid before binary cross-entropy (TensorFlow's stable form), a softmax before
        categorical cross-entropy (log-softmax), on both paths. ``loss.logits_activation`` names
        that activation ("sigmoid" or "softmax"), to apply where the output itself is reported.
    """

    output: int
    loss: Loss
    weight: float = 1.0
    logits: bool = False


class Losses(NamedTuple):
    """The objective on one batch: ``total`` = sum of weight * head loss, plus every activity
    penalty; ``heads`` the loss of each head, unweighted, in the order of the heads."""

    total: float
    heads: tuple[float, ...]


class Path(Protocol):
    """The interface of every path; see the module docstring."""

    def loss_value(self, xs: list[np.ndarray], ys: list[np.ndarray | None], training: bool = False,
                   outputs: list[np.ndarray | None] | None = None) -> Losses: ...

    def gradients(self, xs: list[np.ndarray], ys: list[np.ndarray | None], grads: dict[str, np.ndarray],
                  outputs: list[np.ndarray | None] | None = None) -> Losses: ...

    def step(self, optimizer, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None: ...

    def gather(self, src: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray: ...

    def predict(self, xs: list[np.ndarray], outs: list[np.ndarray]) -> list[np.ndarray]: ...
