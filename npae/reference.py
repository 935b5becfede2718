"""The reference path: one batch through a model's graph and back, in NumPy, nothing else.

``compile(..., jit_compile=False)`` runs every batch of ``fit``, ``evaluate`` and ``predict``
here; the fast path (:mod:`npae.fast`) must give the same numbers. The model hands over its graph
as ops in topological order (:class:`npae.graph.FlatGraph`: each op one layer applied to numbered
tensors, nested models spliced in) and a loss per output (:class:`npae.paths.Head`). One
training step, for inputs xs and targets ys:

    forward   value[input k] = xs[k]
              for each op, in topological order:
                  value[op.outputs], cache[op] = op.layer.forward(value[op.inputs], training=True)
              (a layer whose sigmoid (softmax) meets binary (categorical) cross-entropy stops at
              its logits)
    loss      L = sum over heads of weight * loss(value[head's output], y)  +  each penalty P(h)
                  +  each layer's own loss (a VAE's KL term: ``layer.layer_loss(cache)``)
    backward  grad[head's output] = weight * dloss/d(output), for each head
              for each op, in reverse order (if it or an op before it has trainable weights,
              and L depends on its output):
                  g = grad[op.outputs] + dP/dh
                  dinputs, dweights = op.layer.backward(g, cache[op])
                  grad[each of op.inputs] += its dinput     a tensor read twice: summed
                  dL/dw += dweights                         a layer applied twice: summed

then the model's optimizer updates every weight from its gradient. It is micrograd's algorithm
with layers for nodes: a topological order walked forward, then backward in reverse with += at
every fan-out. Caches and gradients live in this function's locals, never on the layers: two
threads can run one model.
"""

from __future__ import annotations

import numpy as np

from .functional import activations
from .functional import optimizers as reference_ops
from .graph import FlatGraph
from .layers.base import param_key
from .paths import Head, Losses

__all__ = ["ReferencePath", "backward_ops"]


def backward_ops(flat: FlatGraph, heads: list[Head]) -> list[bool]:
    """For each op, whether the backward pass runs it: the objective depends on its output (a loss
    or a penalty is computed from it, or from an op after it) and it, or an op before it, has
    weights that training updates. Nothing else can change a trainable weight's gradient."""
    producers = flat.producers()
    trains_here_or_before = []
    for op in flat.ops:
        before = any(producers[t] is not None and trains_here_or_before[producers[t]] for t in op.inputs)
        trains_here_or_before.append(before or bool(op.layer.trainable_param_names()))
    matters = [False] * len(flat.shapes)  # the objective depends on this tensor
    for head in heads:
        matters[flat.outputs[head.output]] = True
    runs = [False] * len(flat.ops)
    for i in range(len(flat.ops) - 1, -1, -1):
        op = flat.ops[i]
        if op.layer.activity_regularizer is not None or op.layer.has_loss or any(matters[t] for t in op.outputs):
            for t in op.inputs:
                matters[t] = True
            runs[i] = trains_here_or_before[i]
    return runs


class ReferencePath:
    """Runs a model's graph and its losses on the reference path (:class:`npae.paths.Path`).

    Parameters
    ----------
    flat : the model's graph, flattened.
    heads : the loss on each output that has one (none: prediction only).
    """

    def __init__(self, flat: FlatGraph, heads: list[Head] | tuple = ()):
        self.flat, self.heads = flat, list(heads)
        producers = flat.producers()
        # the ops whose output a sigmoid (softmax) + cross-entropy head takes as logits
        self.stops_at_logits = {producers[flat.outputs[h.output]] for h in self.heads if h.logits}

    def forward(self, xs: list[np.ndarray], training: bool = False, logits: bool = True
                ) -> tuple[list[np.ndarray | None], list]:
        """The value of every tensor (by number) and every op's cache, for one batch; with
        ``logits`` the ops before a sigmoid (softmax) + cross-entropy head stop at their logits."""
        value: list = [None] * len(self.flat.shapes)
        for t, x in zip(self.flat.inputs, xs):
            value[t] = x
        caches = []
        for i, op in enumerate(self.flat.ops):
            args = [value[t] for t in op.inputs] if op.many_inputs else value[op.inputs[0]]
            if logits and i in self.stops_at_logits:
                out, cache = op.layer.forward(args, training, logits=True)
            else:
                out, cache = op.layer.forward(args, training)
            for t, v in zip(op.outputs, out if op.many_outputs else [out]):
                value[t] = v
            caches.append(cache)
        return value, caches

    def _objective(self, xs, ys, training):
        value, caches = self.forward(xs, training)
        heads, loss_caches, total = [], [], 0.0
        for head in self.heads:
            v, cache = head.loss.forward(value[self.flat.outputs[head.output]], ys[head.output])
            heads.append(v)
            loss_caches.append(cache)
            total += v if head.weight == 1.0 else head.weight * v
        for op, cache in zip(self.flat.ops, caches):
            if op.layer.activity_regularizer is not None:
                total += sum(op.layer.activity_regularizer.penalty(value[t]) for t in op.outputs)
            if op.layer.has_loss:  # a layer's own loss (a VAE's KL term): its gradient comes from its backward
                total += op.layer.layer_loss(cache)
        return Losses(total, tuple(heads)), value, caches, loss_caches

    def _copy_outputs(self, value, outputs) -> None:
        """outputs[k][...] = the model's output k (its sigmoid or softmax applied where the head took
        logits)."""
        logits = {h.output: h.loss.logits_activation for h in self.heads if h.logits}
        for k, out in enumerate(outputs or ()):
            if out is not None:
                v = value[self.flat.outputs[k]]
                out[...] = activations.apply(logits[k], v) if k in logits else v

    def loss_value(self, xs, ys, training=False, outputs=None) -> Losses:
        """The objective on one batch (and the outputs, into ``outputs``)."""
        losses, value, _, _ = self._objective(xs, ys, training)
        self._copy_outputs(value, outputs)
        return losses

    def gradients(self, xs, ys, grads, outputs=None) -> Losses:
        """One forward and backward pass in training mode: dL/dw into ``grads[key]`` for every key
        it holds (keys as :func:`npae.layers.base.param_key`; frozen weights are left out), the
        objective returned, the outputs (before the update) written into ``outputs``."""
        losses, value, caches, loss_caches = self._objective(xs, ys, True)
        self._copy_outputs(value, outputs)
        grad: list = [None] * len(self.flat.shapes)  # dL/d(tensor), by number

        def add(t, g):
            grad[t] = g if grad[t] is None else grad[t] + g

        for head, cache in zip(self.heads, loss_caches):
            g = head.loss.backward(cache)
            add(self.flat.outputs[head.output], g if head.weight == 1.0 else head.weight * g)
        total: dict[str, np.ndarray] = {}
        for i in [i for i, runs in enumerate(backward_ops(self.flat, self.heads)) if runs][::-1]:
            op = self.flat.ops[i]
            reg = op.layer.activity_regularizer
            gs = []
            for t in op.outputs:
                g = grad[t] if grad[t] is not None else np.zeros((len(xs[0]), *self.flat.shapes[t]), value[t].dtype)
                gs.append(g + reg.gradient(value[t]) if reg is not None else g)
            dx, layer_grads = op.layer.backward(gs if op.many_outputs else gs[0], caches[i])
            for t, d in zip(op.inputs, dx if op.many_inputs else [dx]):
                add(t, d)
            for name, g in layer_grads.items():
                key = param_key(op.layer, name)
                if key in grads:
                    total[key] = total[key] + g if key in total else g
        for key, g in grads.items():
            g[...] = total[key] if key in total else 0.0  # (no loss depends on a weight: its gradient is 0)
        return losses

    def step(self, optimizer, params: dict, grads: dict) -> None:
        """One optimizer update with the NumPy update functions (:mod:`npae.functional.optimizers`)."""
        optimizer.step(params, grads, reference_ops)

    def gather(self, src: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out <- src[idx] (a batch of the training set)."""
        if src.dtype == out.dtype:
            return np.take(src, idx, axis=0, out=out)
        out[...] = src[idx]
        return out

    def predict(self, xs: list[np.ndarray], outs: list[np.ndarray]) -> list[np.ndarray]:
        """outs[k][...] = the model's output k for one batch."""
        value, _ = self.forward(xs, False, logits=False)
        for t, out in zip(self.flat.outputs, outs):
            out[...] = value[t]
        return outs

    def kinks(self, xs, ys) -> list[np.ndarray]:
        """Every mask that changes where the training objective has no derivative at (xs, ys) (a
        relu's zero, a pool's winner, an L1 penalty's zero, a clip bound), for gradient checks."""
        _, value, caches, loss_caches = self._objective(xs, ys, True)
        masks = [m for op, cache in zip(self.flat.ops, caches) for m in op.layer.kinks(cache)]
        for op in self.flat.ops:
            reg = op.layer.activity_regularizer
            for t in op.outputs if reg is not None else ():
                if (m := reg.kink(value[t])) is not None:
                    masks.append(m)
        for head, cache in zip(self.heads, loss_caches):
            if (m := head.loss.kink(cache)) is not None:
                masks.append(m)
        return masks
