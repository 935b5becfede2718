"""A plan and its runs: the steps of one mode, grouped in segments over the graph's tensors.

A segment is a chain of steps (each reads what the step before it made) between numbered tensors
of the model's graph: a chain model is one segment; a graph has one per run of layers between
its forks, merges and outputs. The forward pass runs the segments in order, keeping every
tensor's value; the backward pass runs them in reverse, each tensor's gradient summed over the
segments that read it (the first contribution is kept in the workspace's gradient arrays,
marked as held so no step overwrites it, and the others are added to it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..functional import activations
from ..paths import Losses
from .steps import LossStep, Step

__all__ = ["Segment", "Plan", "Timer"]

Timer = Callable[[Step, str, float], None]


@dataclass(eq=False)
class Segment:
    """Steps run one after the other between graph tensors.

    inputs : the tensors the first step reads (several for a merge: it gets a list).
    outputs : the tensors the last step makes (several only for a layer with several outputs).
    runs_backward : how many of the last steps run in the backward pass (the others, below every
        trainable weight, do not).
    """

    steps: list[Step]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    many_inputs: bool = False
    many_outputs: bool = False
    runs_backward: int = 0


@dataclass(eq=False)
class Plan:
    """The segments of one mode, the loss step of each head (none for "predict"), and the graph's
    input and output tensors."""

    segments: list[Segment]
    losses: list[LossStep]
    mode: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    n_tensors: int
    unwritten: tuple[str, ...] = ()  # trainable weights no running step writes: their gradient is 0
    steps: list[Step] = field(init=False)

    def __post_init__(self):
        self.steps = [step for seg in self.segments for step in seg.steps]

    @property
    def loss(self) -> LossStep | None:
        """The loss step of a model with one head."""
        return self.losses[0] if len(self.losses) == 1 else None

    @property
    def first_backward(self) -> int:
        """The index in ``steps`` of the lowest step the backward pass runs (len(steps) if none)."""
        i, found = 0, len(self.steps)
        for seg in self.segments:
            if seg.runs_backward:
                found = min(found, i + len(seg.steps) - seg.runs_backward)
            i += len(seg.steps)
        return found

    def describe(self) -> list[str]:
        """One line per step (and per loss), e.g. for ``npae bench``'s profile."""
        return [s.describe() for s in self.steps] + [loss.describe() for loss in self.losses]

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, xs: list[np.ndarray], ws, dest: np.ndarray | None = None, timer: Timer | None = None):
        """Every tensor's value (by number) and, per segment, each step's saved state. ``dest``: where
        a one-segment plan's last step writes its output."""
        value: list = [None] * self.n_tensors
        for t, x in zip(self.inputs, xs):
            value[t] = x
        saved: list[list] = []
        for seg in self.segments:
            x = [value[t] for t in seg.inputs] if seg.many_inputs else value[seg.inputs[0]]
            kept, last = [], len(seg.steps) - 1
            for i, step in enumerate(seg.steps):
                t0 = time.perf_counter() if timer else 0.0
                x, s = step.forward(x, ws, dest if i == last else None)
                if timer:
                    timer(step, "forward", time.perf_counter() - t0)
                kept.append((x, s))
            for t, v in zip(seg.outputs, x if seg.many_outputs else [x]):
                value[t] = v
            saved.append(kept)
        return value, saved

    def _penalties(self, saved) -> float:
        """Every activity penalty and every layer's own loss (Keras's add_loss) of one forward pass."""
        total = 0.0
        for seg, kept in zip(self.segments, saved):
            for step, (out, s) in zip(seg.steps, kept):
                if step.layer.activity_regularizer is not None:
                    for h in out if isinstance(out, list) else [out]:
                        total += step.layer.activity_regularizer.penalty(h)
                if step.layer.has_loss:
                    total += step.layer_loss(s)
        return total

    def _copy_outputs(self, value, outputs) -> None:
        """outputs[k][...] = the model's output k (the sigmoid or softmax applied where its step stopped
        at logits)."""
        logits = {loss.output: loss.loss.logits_activation for loss in self.losses if loss.logits}
        for k, out in enumerate(outputs or ()):
            if out is not None:
                v = value[self.outputs[k]]
                out[...] = (activations.apply(logits[k], v) if k in logits else v).reshape(out.shape)

    def _losses(self, value, ys, ws, training_penalties: float):
        heads, saved, total = [], [], 0.0
        for loss in self.losses:
            v, s = loss.forward(value[self.outputs[loss.output]], ys[loss.output], ws)
            heads.append(v)
            saved.append(s)
            total += v if loss.weight == 1.0 else loss.weight * v
        return Losses(total + training_penalties, tuple(heads)), saved

    def loss_value(self, xs, ys, ws, outputs=None) -> Losses:
        """The objective on one batch (and the outputs, into ``outputs``)."""
        value, saved = self.forward(xs, ws)
        self._copy_outputs(value, outputs)
        return self._losses(value, ys, ws, self._penalties(saved))[0]

    # -- backward --------------------------------------------------------------------------------
    def gradients(self, xs, ys, ws, grads: dict, timer: Timer | None = None, outputs=None) -> Losses:
        """Forward, losses and backward for one batch: fills ``grads`` (its keys only) and returns the
        objective (and the outputs, before the backward pass reuses their buffers, into ``outputs``)."""
        value, saved = self.forward(xs, ws, timer=timer)
        self._copy_outputs(value, outputs)
        losses, loss_saved = self._losses(value, ys, ws, self._penalties(saved))
        pool = ws.gradients
        grad: list = [None] * self.n_tensors

        def add(t: int, g: np.ndarray) -> None:
            if grad[t] is None:
                grad[t] = g
                pool.hold(g)
            else:
                grad[t] += g

        for loss, s in zip(self.losses, loss_saved):
            g = loss.backward(s)
            if loss.weight != 1.0:
                g *= loss.weight
            add(self.outputs[loss.output], g)
        for seg, kept in zip(reversed(self.segments), reversed(saved)):
            if not seg.runs_backward:
                continue
            gs = []
            for t in seg.outputs:
                g = grad[t]
                if g is None:  # no loss depends on this output of a layer with several
                    g = ws.buffer((seg, "zero", t), value[t].shape, value[t].dtype)
                    g[...] = 0
                else:
                    pool.release(g)
                    grad[t] = None
                gs.append(g)
            g = gs if seg.many_outputs else gs[0]
            for i in range(len(seg.steps) - 1, len(seg.steps) - 1 - seg.runs_backward, -1):
                step, (out, s) = seg.steps[i], kept[i]
                t0 = time.perf_counter() if timer else 0.0
                reg = step.layer.activity_regularizer
                if reg is not None:
                    g = [a + reg.gradient(h) for a, h in zip(g, out)] if isinstance(out, list) else \
                        g + reg.gradient(out)
                g = step.backward(g, s, ws, grads)
                if timer:
                    timer(step, "backward", time.perf_counter() - t0)
            if g is None:
                continue
            ds = g if seg.many_inputs else [g]
            for j, (t, d) in enumerate(zip(seg.inputs, ds)):
                if d is None:
                    continue
                if any(np.may_share_memory(d, other) for other in ds[:j] if other is not None):
                    copy = ws.grad_array(d.shape, d.dtype, busy=d)  # (a merge handed one array to two inputs)
                    np.copyto(copy, d)
                    d = copy
                add(t, d)
        for t in range(self.n_tensors):  # (gradients reaching the inputs: nothing reads them)
            if grad[t] is not None:
                pool.release(grad[t])
        for key in self.unwritten:
            if key in grads:
                grads[key][...] = 0.0
        return losses

    # -- prediction ------------------------------------------------------------------------------
    def predict(self, xs, ws, outs: list[np.ndarray]) -> list[np.ndarray]:
        """outs[k][...] = output k for one batch (a one-segment plan's last step writes into it)."""
        one = len(self.segments) == 1 and len(outs) == 1 and not self.segments[0].many_outputs
        value, _ = self.forward(xs, ws, dest=outs[0] if one else None)
        for t, out in zip(self.outputs, outs):
            res = value[t]
            if not np.may_share_memory(res, out):
                out[...] = res.reshape(out.shape)
        return outs
