"""The planner: a model's layers, loss and mode -> a plan of typed steps, and the plan's runs.

    plan(layers, loss, logits, mode, dtype)  ->  Plan(steps=[ConvStep(conv2d, direct, pools
                                                 (max_pooling2d)), ConvStep(conv2d_1, im2col), ...],
                                                 loss=LossStep(sigmoid_bce))

A plan is built in three moves, each a small function:

1. one step per layer (:data:`npae.fast.steps.STEP_FOR_LAYER`), each convolution with the
   algorithm :func:`npae.fast.policy.conv_algorithm` picks;
2. rewrite rules, each a pure function from a list of steps to a list of steps, applied in order:
   :func:`fuse_upsampling`, :func:`fuse_pooling`, :func:`fuse_batchnorm_relu`,
   :func:`pool_through_relu` (training), :func:`dense_stack` (prediction), then
   :func:`mark_gradients` (which steps need an input gradient, which add into a shared layer's
   gradients; the backward pass stops at :func:`first_backward`, the lowest trainable step);
3. the loss step: the fused kernels for sigmoid + BCE from logits and MSE, the reference loss
   otherwise.

Running a plan (:meth:`Plan.gradients`, :meth:`Plan.loss_value`, :meth:`Plan.predict`) walks the
steps with a :class:`npae.fast.memory.Workspace` that holds every buffer; the per-call state (what
each step's backward needs) lives in local lists. Modes: "train" (training forward, loss,
backward), "evaluate" (inference forward and loss), "predict" (inference forward).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..functional import activations
from ..layers import Layer
from ..losses import BinaryCrossentropy, Loss, MeanSquaredError
from . import blas, policy
from .elementwise import ACT_CODES
from .steps import (
    STEP_FOR_LAYER,
    ActivationStep,
    BatchNormStep,
    ConvStep,
    DenseStackStep,
    DenseStep,
    LossStep,
    PoolStep,
    ReferenceStep,
    Step,
    UpsampleStep,
)

__all__ = ["MODES", "Plan", "plan", "steps_for", "fuse_upsampling", "fuse_pooling", "pool_through_relu",
           "fuse_batchnorm_relu", "first_backward", "dense_stack", "mark_gradients"]

MODES = ("train", "evaluate", "predict")
Timer = Callable[[Step, str, float], None]


_PASSES = ("forward", "backward", "_activate", "_deactivate", "_check_input")


def _step_class(layer: Layer):
    """The step that runs ``layer``: that of its class or of a base class whose passes it does not
    override; a layer the fast path does not know runs its reference passes."""
    for cls in type(layer).__mro__:
        step = STEP_FOR_LAYER.get(cls)
        if step is not None:
            own = all(getattr(type(layer), name, None) is getattr(cls, name, None) for name in _PASSES)
            return step if own else ReferenceStep
    return ReferenceStep


def steps_for(layers: list[Layer], logits: bool, training: bool, have_openblas: bool) -> list[Step]:
    """One step per layer, each convolution with its algorithm; the last stops at its logits."""
    steps = []
    for i, layer in enumerate(layers):
        cls = _step_class(layer)
        options = {"logits": logits and i == len(layers) - 1, "training": training}
        if cls is ConvStep:
            (ho, wo, cout), cin = layer.output_shape, layer.input_shape[2]
            options["algo"] = policy.conv_algorithm(layer.kernel_size, layer.strides, cin, cout, (ho, wo), training,
                                                    have_openblas)
        if cls is BatchNormStep and layer.channel_axis(layer.input_shape) != len(layer.input_shape):
            cls = ReferenceStep  # the kernels normalise the last axis only
        steps.append(cls(layer, **options))
    return steps


def fuse_batchnorm_relu(steps: list[Step]) -> list[Step]:
    """[BatchNormStep, ActivationStep(relu)] -> [BatchNormStep(relu=layer)]: the ReLU runs in the
    normalisation's passes (its input, the normalised values, is never written)."""
    out: list[Step] = []
    for step in steps:
        before = out[-1] if out else None
        if isinstance(step, ActivationStep) and isinstance(before, BatchNormStep) and before.relu is None \
                and step.layer.activation.name == "relu" and not step.logits \
                and before.layer.activity_regularizer is None and step.layer.activity_regularizer is None:
            out[-1] = replace(before, relu=step.layer)
        else:
            out.append(step)
    return out


def fuse_upsampling(steps: list[Step]) -> list[Step]:
    """[UpsampleStep, ConvStep] -> [ConvStep(up=size)] where the convolution reads the small image
    upsampled on the fly (:func:`npae.fast.policy.reads_upsampled`)."""
    out: list[Step] = []
    for step in steps:
        before = out[-1] if out else None
        if isinstance(step, ConvStep) and isinstance(before, UpsampleStep) and step.up is None \
                and before.layer.activity_regularizer is None and before.layer is not step.layer \
                and policy.reads_upsampled(step.algo, step.layer.strides, before.layer.input_shape[:2]):
            out[-1] = replace(step, up=before.layer.size)
        else:
            out.append(step)
    return out


def fuse_pooling(steps: list[Step]) -> list[Step]:
    """[ConvStep, PoolStep] -> [ConvStep(pool=layer)] where the pooling runs inside the
    convolution's kernel (:func:`npae.fast.policy.pools_in_kernel`)."""
    out: list[Step] = []
    for step in steps:
        before = out[-1] if out else None
        if isinstance(step, PoolStep) and isinstance(before, ConvStep) and before.pool is None \
                and step.layer.activity_regularizer is None and not before.logits:
            conv, pool = before.layer, step.layer
            if policy.pools_in_kernel(before.algo, conv.activation.name, conv.activity_regularizer is not None,
                                      before.up is not None, conv.output_shape[:2], pool.pool_size, pool.strides):
                out[-1] = replace(before, pool=pool)
                continue
        out.append(step)
    return out


def pool_through_relu(steps: list[Step]) -> list[Step]:
    """A PoolStep over a step that ends in a relu hands it dL/dz (see PoolStep.through_relu)."""
    out = list(steps)
    for i in range(1, len(out)):
        below = out[i - 1]
        activation = getattr(below.layer, "activation", None)
        if isinstance(out[i], PoolStep) and hasattr(below, "logits") and not below.logits \
                and not isinstance(below, ReferenceStep) and activation is not None \
                and policy.pools_through_relu(activation.name, below.layer.activity_regularizer is not None):
            out[i] = replace(out[i], through_relu=True)
            out[i - 1] = replace(below, grad_is_dz=True)
    return out


def dense_stack(steps: list[Step], have_openblas: bool) -> list[Step]:
    """A prediction through Dense steps only -> one DenseStackStep."""
    fused = all(isinstance(s, DenseStep) and s.layer.activation.name in ACT_CODES for s in steps)
    if steps and policy.dense_stack(all(isinstance(s, DenseStep) for s in steps), fused, have_openblas):
        return [DenseStackStep(steps[0].layer, layers=tuple(s.layer for s in steps))]
    return steps


def _trains(step: Step) -> bool:
    """Whether fit updates any weight of the step's layers (not frozen, not moving statistics)."""
    return any(layer.trainable_param_names() for layer in (step.layer, *getattr(step, "layers", ())))


def first_backward(steps: list[Step]) -> int:
    """The index of the lowest step with trainable weights (len(steps) if none): the backward
    pass stops there, since nothing below it takes an update (a frozen encoder under a new
    decoder runs forward only)."""
    return next((i for i, step in enumerate(steps) if _trains(step)), len(steps))


def mark_gradients(steps: list[Step]) -> list[Step]:
    """No step at or below :func:`first_backward` needs its input gradient; a shared layer's
    later uses (earlier in the backward pass) write its gradients, its earlier uses add to them."""
    lowest, out = first_backward(steps), []
    for i, step in enumerate(steps):
        later = any(s.layer is step.layer for s in steps[i + 1:])
        out.append(replace(step, needs_dx=i > lowest, accumulate=later))
    return out


def _loss_step(loss: Loss) -> LossStep:
    if type(loss) is BinaryCrossentropy and loss.from_logits:  # (a subclass may compute another loss)
        return LossStep(loss, "sigmoid_bce")
    if type(loss) is MeanSquaredError:
        return LossStep(loss, "mse")
    return LossStep(loss, "reference")


@dataclass(eq=False)
class Plan:
    """The steps of one mode, and the loss step (None for "predict")."""

    steps: list[Step]
    loss: LossStep | None
    mode: str
    first_backward: int = 0  # the backward pass runs steps[first_backward:] (see first_backward())

    def describe(self) -> list[str]:
        """One line per step (and the loss), e.g. for ``npae bench``'s profile."""
        return [s.describe() for s in self.steps] + ([self.loss.describe()] if self.loss else [])

    def forward(self, x: np.ndarray, ws, dest: np.ndarray | None = None, timer: Timer | None = None):
        """The last step's output, and per step its output and saved state."""
        outs, saved, last = [], [], len(self.steps) - 1
        for i, step in enumerate(self.steps):
            t = time.perf_counter() if timer else 0.0
            x, s = step.forward(x, ws, dest if i == last else None)
            if timer:
                timer(step, "forward", time.perf_counter() - t)
            outs.append(x)
            saved.append(s)
        return x, outs, saved

    def _penalties(self, outs) -> float:
        return sum(step.layer.activity_regularizer.penalty(h) for step, h in zip(self.steps, outs)
                   if step.layer.activity_regularizer is not None)

    def _copy_output(self, last: np.ndarray, output: np.ndarray | None) -> None:
        """output[...] = the model's output, from the last step's (its logits where the last step
        stops there: the sigmoid is applied here, for metrics)."""
        if output is not None:
            logits = getattr(self.steps[-1], "logits", False)
            output[...] = (activations.sigmoid(last) if logits else last).reshape(output.shape)

    def loss_value(self, x: np.ndarray, y: np.ndarray, ws, output: np.ndarray | None = None) -> float:
        """The loss plus every activity penalty for one batch (and the output, into ``output``)."""
        out, outs, _ = self.forward(x, ws)
        self._copy_output(out, output)
        return self.loss.forward(out, y, ws)[0] + self._penalties(outs)

    def gradients(self, x: np.ndarray, y: np.ndarray, ws, grads: dict, timer: Timer | None = None,
                  output: np.ndarray | None = None) -> float:
        """Forward, loss and backward for one batch: fills ``grads`` (its keys only) and returns the
        loss plus every activity penalty (and the output, before the backward pass reuses its
        buffers, into ``output``)."""
        out, outs, saved = self.forward(x, ws, timer=timer)
        self._copy_output(out, output)
        value, loss_saved = self.loss.forward(out, y, ws)
        value += self._penalties(outs)
        g = self.loss.backward(loss_saved)
        for i in range(len(self.steps) - 1, self.first_backward - 1, -1):
            step = self.steps[i]
            t = time.perf_counter() if timer else 0.0
            reg = step.layer.activity_regularizer
            if reg is not None:
                g = g + reg.gradient(outs[i])
            g = step.backward(g, saved[i], ws, grads)
            if timer:
                timer(step, "backward", time.perf_counter() - t)
        return value

    def predict(self, x: np.ndarray, ws, out: np.ndarray) -> np.ndarray:
        """out[...] = the output for one batch (the last step writes into it where it can)."""
        res = self.forward(x, ws, dest=out)[0]
        if not np.may_share_memory(res, out):
            out[...] = res.reshape(out.shape)
        return out


def plan(layers: list[Layer], loss: Loss | None, logits: bool, mode: str, dtype=np.float32,
         have_openblas: bool | None = None) -> Plan:
    """The plan for running ``layers`` (and ``loss``) in ``mode``; ``logits``: the last layer stops
    before its activation, and ``loss`` takes the logits."""
    if mode not in MODES:
        raise ValueError(f"plan: mode must be one of {MODES}, got {mode!r}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"plan: the fast path runs float32 or float64, got {np.dtype(dtype)}")
    have_openblas = blas.find() is not None if have_openblas is None else have_openblas
    training = mode == "train"
    predicting = mode == "predict"
    steps = steps_for(layers, logits and not predicting, training, have_openblas)
    steps = fuse_batchnorm_relu(fuse_pooling(fuse_upsampling(steps)))
    if training:
        steps = pool_through_relu(steps)
    if predicting:
        steps = dense_stack(steps, have_openblas)
    steps = mark_gradients(steps)
    return Plan(steps, None if predicting or loss is None else _loss_step(loss), mode, first_backward(steps))
