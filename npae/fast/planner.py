"""The planner: a model's graph, losses and mode -> a plan of typed steps.

    plan(flat, heads, mode, dtype)  ->  Plan(segments=[Segment(steps=[ConvStep(conv2d, direct, pools
                                        (max_pooling2d)), ConvStep(conv2d_1, im2col), ...])],
                                        losses=[LossStep(sigmoid_bce)])

A plan is built in four moves, each a small function:

1. the graph's ops are cut into segments (:func:`segments_of`): runs of ops where each reads only
   the tensor the op before it made, which nothing else reads and which is no model output (a
   chain model is one segment; a U-Net has one per run between its skips and merges);
2. one step per op (:data:`npae.fast.steps.STEP_FOR_LAYER`), each convolution with the algorithm
   :func:`npae.fast.policy.conv_algorithm` picks;
3. rewrite rules, each a pure function from a segment's steps to steps, applied in order:
   :func:`fuse_upsampling`, :func:`fuse_pooling`, :func:`fuse_batchnorm_relu`,
   :func:`pool_through_relu` (training), :func:`dense_stack` (prediction, a one-segment model).
   Within a segment every edge has one reader, so a fusion never hides a tensor another step reads;
4. :func:`mark_gradients`: which steps the backward pass runs (those with a trainable weight at or
   before them, that a loss depends on), which need their input gradient, which add into a shared
   layer's gradients; and the loss step of each head (the fused kernels for sigmoid + BCE from
   logits and for MSE, the reference loss otherwise).

Running a plan (:mod:`npae.fast.plan`) walks the segments with a
:class:`npae.fast.memory.Workspace` that holds every buffer; the per-call state lives in local
lists. Modes: "train" (training forward, losses, backward), "evaluate" (inference forward and
losses), "predict" (inference forward).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..graph import FlatGraph, Op
from ..layers import Layer
from ..losses import BinaryCrossentropy, MeanSquaredError
from ..paths import Head
from ..reference import backward_ops
from . import blas, policy
from .elementwise import ACT_CODES
from .plan import Plan, Segment
from .steps import (
    STEP_FOR_LAYER,
    ActivationStep,
    BatchNormStep,
    ConvStep,
    DenseStackStep,
    DenseStep,
    LossStep,
    MergeStep,
    PoolStep,
    ReferenceStep,
    Step,
    UpsampleStep,
)

__all__ = ["MODES", "Plan", "plan", "segments_of", "steps_for", "fuse_upsampling", "fuse_pooling",
           "pool_through_relu", "fuse_batchnorm_relu", "dense_stack", "mark_gradients"]

MODES = ("train", "evaluate", "predict")


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


def steps_for(layers: list[Layer], logits: bool | list[bool], training: bool, have_openblas: bool) -> list[Step]:
    """One step per layer, each convolution with its algorithm; ``logits[i]``: layer i stops
    before its activation (its output goes to a sigmoid or softmax + cross-entropy loss; one bool: the last
    layer does)."""
    if isinstance(logits, bool):
        logits = [logits and i == len(layers) - 1 for i in range(len(layers))]
    steps = []
    for layer, stops in zip(layers, logits):
        cls = _step_class(layer)
        options = {"logits": stops, "training": training}
        if cls is ConvStep:
            (ho, wo, cout), cin = layer.output_shape, layer.input_shape[2]
            options["algo"] = policy.conv_algorithm(layer.kernel_size, layer.strides, cin, cout, (ho, wo), training,
                                                    have_openblas)
        if cls is BatchNormStep and layer.channel_axis(layer.input_shape) != len(layer.input_shape):
            cls = ReferenceStep  # the kernels normalise the last axis only
        if cls is MergeStep and not MergeStep.runs(layer):
            cls = ReferenceStep  # a merge that broadcasts
        steps.append(cls(layer, **options))
    return steps


def segments_of(flat: FlatGraph) -> list[list[int]]:
    """The graph's ops (by index, in order) cut into runs where each op reads only the tensor the
    op before it made, which no other op reads and which is no model output: inside a run every
    edge has one reader, so steps may fuse across it. Ops with several inputs or outputs stand
    alone."""
    readers = flat.consumers()
    outputs = set(flat.outputs)
    runs: list[list[int]] = []
    for i, op in enumerate(flat.ops):
        if runs and not (op.many_inputs or op.many_outputs):
            before = flat.ops[runs[-1][-1]]
            link = before.outputs[0]
            if not before.many_outputs and op.inputs == (link,) and len(readers[link]) == 1 and link not in outputs:
                runs[-1].append(i)
                continue
        runs.append([i])
    return runs


def fuse_batchnorm_relu(steps: list[Step]) -> list[Step]:
    """[BatchNormStep, ActivationStep(relu)] -> [BatchNormStep(relu=layer)]: the ReLU runs in the
    normalisation's passes (its input, the normalised values, is never written)."""
    out: list[Step] = []
    for step in steps:
        before = out[-1] if out else None
        if isinstance(step, ActivationStep) and isinstance(before, BatchNormStep) and before.relu is None \
                and step.layer.activation.name == "relu" and not step.logits \
                and before.layer.activity_regularizer is None and step.layer.activity_regularizer is None:
            out[-1] = replace(before, relu=step.layer, ops=before.ops + step.ops)
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
            out[-1] = replace(step, up=before.layer.size, ops=before.ops + step.ops)
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
                out[-1] = replace(before, pool=pool, ops=before.ops + step.ops)
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
        return [DenseStackStep(steps[0].layer, layers=tuple(s.layer for s in steps), ops=sum(s.ops for s in steps))]
    return steps


def _loss_step(head: Head) -> LossStep:
    loss, extra = head.loss, {"output": head.output, "weight": head.weight, "logits": head.logits}
    if type(loss) is BinaryCrossentropy and loss.from_logits:  # (a subclass may compute another loss)
        return LossStep(loss, "sigmoid_bce", **extra)
    if type(loss) is MeanSquaredError:
        return LossStep(loss, "mse", **extra)
    return LossStep(loss, "reference", **extra)


def mark_gradients(segments: list[Segment], step_runs: list[list[bool]], producer_runs: list[bool]) -> list[str]:
    """Set, on the segments and their steps, what the backward pass does (in place; the steps are
    replaced by marked copies): ``runs_backward`` (how many of a segment's last steps run),
    ``needs_dx`` (a step's input gradient is read: the step below it runs, or, for a segment's
    first step, a step making one of its inputs runs), ``accumulate`` (a shared layer's weights
    already have a gradient from a use the backward pass met first: add to it).
    ``step_runs[k][i]``: whether step i of segment k runs (False for a prefix, True after);
    ``producer_runs[k]``: whether anything making segment k's inputs runs backward. Returns the
    trainable weights' keys no running step writes (their gradient is 0)."""
    written: set[int] = set()
    for seg, runs, below in zip(segments, step_runs, producer_runs):
        seg.runs_backward = sum(runs)
        for i, step in enumerate(seg.steps):
            needs_dx = runs[i - 1] if i > 0 else below
            seg.steps[i] = replace(step, needs_dx=bool(runs[i] and needs_dx))
    for seg in reversed(segments):  # the backward pass's order
        for i in range(len(seg.steps) - 1, len(seg.steps) - 1 - seg.runs_backward, -1):
            step = seg.steps[i]
            if step.layer.trainable_param_names():
                seg.steps[i] = replace(step, accumulate=id(step.layer) in written)
                written.add(id(step.layer))
    return sorted({f"{layer.name}/{name}" for seg in segments for step in seg.steps for layer in [step.layer]
                   if id(layer) not in written for name in layer.trainable_param_names()})


def plan(flat: FlatGraph, heads: list[Head], mode: str, dtype=np.float32, have_openblas: bool | None = None) -> Plan:
    """The plan for running a model's graph (and its heads' losses) in ``mode``."""
    if mode not in MODES:
        raise ValueError(f"plan: mode must be one of {MODES}, got {mode!r}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"plan: the fast path runs float32 or float64, got {np.dtype(dtype)}")
    have_openblas = blas.find() is not None if have_openblas is None else have_openblas
    training, predicting = mode == "train", mode == "predict"
    heads = [] if predicting else list(heads)
    producers = flat.producers()
    stops = {producers[flat.outputs[h.output]] for h in heads if h.logits}
    runs = backward_ops(flat, heads) if training else [False] * len(flat.ops)
    segments, op_runs, producer_runs = [], [], []
    runs_of_segments = segments_of(flat)
    whole = len(runs_of_segments) == 1 and len(flat.inputs) == 1 and len(flat.outputs) == 1
    for members in runs_of_segments:
        ops: list[Op] = [flat.ops[i] for i in members]
        steps = steps_for([op.layer for op in ops], [i in stops for i in members], training, have_openblas)
        steps = _rewrite(steps, training, predicting and whole, have_openblas)
        # the backward pass runs a segment's steps from the first whose ops run to its end (a step
        # in between that nothing trains through gets a zero gradient: correct, and rare)
        first_running = next((k for k, i in enumerate(members) if runs[i]), len(members))
        flags, done = [], 0
        for step in steps:
            done += step.ops  # (the ops a step runs: more than one where a rule fused them)
            flags.append(done > first_running)
        first, last = ops[0], ops[-1]
        segments.append(Segment(steps, first.inputs, last.outputs, first.many_inputs, last.many_outputs))
        op_runs.append(flags)
        producer_runs.append(any(producers[t] is not None and runs[producers[t]] for t in first.inputs))
    unwritten = mark_gradients(segments, op_runs, producer_runs) if training else []
    losses = [_loss_step(h) for h in heads]
    return Plan(segments, losses, mode, flat.inputs, flat.outputs, len(flat.shapes), tuple(unwritten))


def _rewrite(steps: list[Step], training: bool, whole_prediction: bool, have_openblas: bool) -> list[Step]:
    """The rewrite rules on one segment's steps."""
    for rule in [fuse_upsampling, fuse_pooling, fuse_batchnorm_relu, *([pool_through_relu] if training else [])]:
        steps = rule(steps)
    return dense_stack(steps, have_openblas) if whole_prediction else steps
