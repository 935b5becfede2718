"""What ``compile`` makes of ``loss``, ``loss_weights`` and ``metrics`` for a model's outputs, with
Keras 3's rules and names:

    loss          one loss (every output gets it), a list (one per output, None for no loss) or a
                  dict {output name: loss}
    loss_weights  a list or a dict of numbers (default 1 each)
    metrics       for one output a list; for several a list with one entry per output (a metric or
                  a list of them, or None) or a dict {output name: metric or list}
    logged as     "loss" (the weighted sum, penalties included), "<output>_loss" for each output
                  with a loss when more than one has one (unweighted), and each metric as its name
                  for a one-output model, "<output>_<name>" otherwise; "val_" before each for the
                  validation data. The list ``evaluate`` returns: "loss", the outputs' losses, then
                  the metrics in output order.

The model's outputs are named after the layers that make them (a dict of outputs: by its keys).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .. import losses as npae_losses
from .. import metrics as npae_metrics
from ..graph import FlatGraph
from ..paths import Head

__all__ = ["Objective", "build_objective"]


class Objective(NamedTuple):
    """A compiled model's losses and metrics, per output (in the model's output order)."""

    names: tuple[str, ...]  # the outputs' names
    losses: tuple  # per output: a Loss, or None (no loss on that output)
    weights: tuple[float, ...]  # per output
    metric_ids: tuple[tuple, ...]  # per output: what compile was given (names or functions)

    @property
    def loss_names(self) -> list[str]:
        """The "<output>_loss" keys (none when at most one output has a loss)."""
        having = [n for n, loss in zip(self.names, self.losses) if loss is not None]
        return [f"{n}_loss" for n in having] if len(having) > 1 else []

    def metric_name(self, output: int, identifier) -> str:
        name = npae_metrics.name_of(identifier)
        return name if len(self.names) == 1 else f"{self.names[output]}_{name}"

    @property
    def log_names(self) -> list[str]:
        """The keys of ``evaluate``'s list and logs, in order."""
        return ["loss", *self.loss_names,
                *(self.metric_name(k, m) for k, ids in enumerate(self.metric_ids) for m in ids)]

    def heads(self, flat: FlatGraph) -> list[Head]:
        """One head per output with a loss. An output that nothing else reads, made by a layer
        whose activation a cross-entropy can take the logits of, hands the loss its logits (both
        paths): a sigmoid with binary cross-entropy (TensorFlow's stable form) and a softmax with
        categorical cross-entropy (log-softmax). The head's loss is then the from-logits form; its
        ``logits_activation`` names the activation the layer stopped before."""
        readers = flat.consumers()
        producers = flat.producers()
        heads = []
        for k, (loss, weight) in enumerate(zip(self.losses, self.weights)):
            if loss is None:
                continue
            if type(loss) is npae_losses.BinaryCrossentropy and loss.fusable and not loss.from_logits:
                wants, on_logits = "sigmoid", npae_losses.BinaryCrossentropy(from_logits=True)
            elif type(loss) is npae_losses.CategoricalCrossentropy and not loss.from_logits:
                wants, on_logits = "softmax", npae_losses.CategoricalCrossentropy(from_logits=True)
            else:  # (a subclass may compute another loss: never fused)
                wants, on_logits = None, None
            t = flat.outputs[k]
            op = flat.ops[producers[t]] if producers[t] is not None else None
            fused = (wants is not None and op is not None and not op.many_outputs and not readers[t]
                     and flat.outputs.count(t) == 1 and getattr(op.layer, "activation", None) is not None
                     and op.layer.activation.name == wants and op.layer.activity_regularizer is None)
            heads.append(Head(k, on_logits if fused else loss, weight, fused))
        return heads

    def resolved_metrics(self, output_shapes: list[tuple]) -> list[list[npae_metrics.Metric]]:
        """Per output, its metrics resolved for the output's shape ("accuracy" depends on it), each
        named as it is logged."""
        found = []
        for k, ids in enumerate(self.metric_ids):
            found.append([npae_metrics.get(m, output_shapes[k])._replace(name=self.metric_name(k, m)) for m in ids])
        return found


def _per_output(value, names: list[str], what: str, single_ok: bool) -> list:
    """``value`` spread over the outputs: a dict by name, a list or tuple in order, or (with
    ``single_ok``) one value for every output."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"compile: {what} names {unknown[0]!r}, which is not an output of the model; its outputs "
                             f"are {names}")
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)) and not single_ok:
        if len(value) != len(names):
            raise ValueError(f"compile: {what} has {len(value)} entries for a model with {len(names)} outputs "
                             f"{names}: give one per output (None for none) or a dict by output name")
        return list(value)
    return [value] * len(names)


def _weight(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"compile: the loss weight of {name!r} must be a finite number, got {value!r}")
    return float(value)


def build_objective(loss, loss_weights, metrics, names: list[str]) -> Objective:
    """The :class:`Objective` for a model whose outputs are ``names``, from compile's arguments
    (checked: unknown names, wrong counts and duplicate log keys are clear errors)."""
    if loss is None:
        raise ValueError("compile: give a loss, e.g. loss='binary_crossentropy'")
    several = isinstance(loss, (list, tuple, dict))
    if several and len(names) == 1 and isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
        several = False
    per = _per_output(loss, names, "loss", single_ok=not several)
    resolved = tuple(None if item is None else npae_losses.get(item) for item in per)
    if all(item is None for item in resolved):
        raise ValueError("compile: no output has a loss; give at least one")
    if loss_weights is None:
        weights = [1.0] * len(names)
    else:
        if not isinstance(loss_weights, (list, tuple, dict)):
            raise TypeError(f"compile: loss_weights must be a list or a dict by output name, got {loss_weights!r}")
        spread = _per_output(loss_weights, names, "loss_weights", single_ok=False)
        weights = [1.0 if w is None else _weight(w, n) for w, n in zip(spread, names)]
    metric_ids = _metrics(metrics, names)
    objective = Objective(tuple(names), resolved, tuple(weights), metric_ids)
    keys = objective.log_names
    clash = sorted({k for k in keys if keys.count(k) > 1})
    if clash:
        raise ValueError(f"compile: two metrics (or a metric and a loss) would be logged as {clash}")
    return objective


def _metrics(metrics, names: list[str]) -> tuple[tuple, ...]:
    if metrics is None:
        return tuple(() for _ in names)
    if isinstance(metrics, str) or callable(metrics) or not isinstance(metrics, (list, tuple, dict)):
        raise TypeError(f"compile: metrics must be a list, e.g. metrics=['mae'], or a dict by output name, got "
                        f"{metrics!r}")
    if isinstance(metrics, dict):
        per = _per_output(metrics, names, "metrics", single_ok=False)
    elif len(names) == 1:
        per = [list(metrics)]
    elif len(metrics) == len(names):
        per = list(metrics)  # one entry (a metric, a list of them, or None) per output, as Keras 3
    else:
        raise ValueError(f"compile: metrics has {len(metrics)} entries for a model with {len(names)} outputs "
                         f"{names}: give one entry per output (a metric, a list, or None) or a dict by output name")
    out = []
    for entry in per:
        ids = [] if entry is None else list(entry) if isinstance(entry, (list, tuple)) else [entry]
        for m in ids:
            npae_metrics.name_of(m)  # (a clear error for anything that is not a metric)
        out.append(tuple(ids))
    return tuple(out)
