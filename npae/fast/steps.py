"""The typed steps of a plan: each runs one or more layers' forward and backward passes on the
fast kernels, with its buffers in the plan's workspace and its per-call state in what ``forward``
returns, never on the layer.

    out, saved = step.forward(x, ws, dest)     dest: an array to write the output into, or None
    dx = step.backward(g, saved, ws, grads)    g = dL/d(out); fills grads[key] for the step's
                                               trainable weights; dx None where not needed

Each step computes what its layers' reference passes compute (the tests hold them against each
other); how a step differs from running its layers one by one is in its docstring.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..functional import conv_transpose
from ..functional.batchnorm import moving_average
from ..functional.conv import output_size
from ..layers import (
    Activation,
    Add,
    Average,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Conv2DTranspose,
    Dense,
    Flatten,
    MaxPooling2D,
    Reshape,
    Subtract,
    UpSampling2D,
)
from ..layers.base import Layer, param_key
from . import batchnorm, conv_direct, conv_gemm, conv_im2col, dense_stack, winograd
from .blas import matmul
from .elementwise import ACT_CODES, act_backward, bias_act_forward, mse_with_grad, sigmoid_bce_with_grad
from .policy import PATCH_BLOCK_BYTES, ConvAlgo
from .pool import argmax_dtype, maxpool_backward, maxpool_forward
from .upsample import upsample_backward, upsample_forward

__all__ = ["Step", "DenseStep", "ConvStep", "ConvTransposeStep", "BatchNormStep", "PoolStep", "UpsampleStep",
           "ActivationStep", "ReshapeStep", "MergeStep", "ReferenceStep", "DenseStackStep", "LossStep",
           "STEP_FOR_LAYER"]


def _write(grads: dict, key: str, value: np.ndarray, accumulate: bool) -> None:
    """grads[key] = value, or += where a shared layer's other use has written it already."""
    if accumulate:
        grads[key] += value
    else:
        grads[key][...] = value


@functools.lru_cache(maxsize=64)
def _zeros(n: int, dtype: str) -> np.ndarray:
    """n zeros of ``dtype``, made once: the bias of a layer without one (read, never written)."""
    return np.zeros(n, dtype)


def _rows(a: np.ndarray) -> np.ndarray:
    """(rows, last axis) view of a C-contiguous array."""
    return a.reshape(-1, a.shape[-1])


@dataclass(eq=False)
class Step:
    """What every step has: the layers it runs and how its gradient flows.

    layer : the (first) layer the step runs.
    needs_dx : whether its input gradient is needed (not for the first step).
    grad_is_dz : its backward pass receives dL/dz, the gradient before its activation (the step
        above took the activation's derivative, see PoolStep.through_relu).
    accumulate : a shared layer whose gradients another use has written already: add to them.
    logits : the forward pass stops before the layer's activation (the loss takes the logits).
    training : the forward pass runs in training mode (a plan's mode: "train").
    ops : how many of the graph's ops (layer applications) the step runs: more than one where
        the planner fused them (a convolution with its pooling, say).
    """

    layer: Layer
    needs_dx: bool = True
    grad_is_dz: bool = False
    accumulate: bool = False
    logits: bool = False
    training: bool = True
    ops: int = 1

    @property
    def name(self) -> str:
        return type(self).__name__

    def describe(self) -> str:
        """One line saying what this step runs and how."""
        return f"{self.name}({self.layer.name})"

    def output_shape(self) -> tuple[int, ...]:
        return self.layer.output_shape

    def forward(self, x: np.ndarray, ws, dest: np.ndarray | None) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def backward(self, g: np.ndarray, saved, ws, grads: dict) -> np.ndarray | None:
        raise NotImplementedError

    def layer_loss(self, saved) -> float:
        """The loss the step's layer adds to the objective (``Layer.layer_loss``), from what
        ``forward`` returned (the layer's own cache, for a step that runs its reference passes)."""
        return self.layer.layer_loss(saved)

    def _out(self, ws, shape, dtype, dest):
        """Where the output goes: the caller's ``dest``, or a buffer of this step's."""
        return dest.reshape(shape) if dest is not None else ws.buffer((self, "out"), shape, dtype)


class _Activated(Step):
    """A step whose layer ends in an activation, applied in the fused kernel where it has a code."""

    def _code(self) -> int | None:
        """The fused kernels' activation code, 0 at the logits, None for one without a kernel."""
        return 0 if self.logits else ACT_CODES.get(self.layer.activation.name)

    def _activate(self, z: np.ndarray, bias: np.ndarray):
        """z (..., units), C-contiguous <- act(z + bias), in place where a kernel does it; returns
        the output and, for an activation without a kernel, the reference activation's cache."""
        code = self._code()
        if code is not None:
            bias_act_forward(_rows(z), bias, code)
            return z, None
        z += bias
        return self.layer.activation.forward(z)

    def _deactivate(self, g: np.ndarray, a: np.ndarray, act_cache) -> np.ndarray:
        """dL/dz from dL/da (both shaped like the output), in place where a kernel does it."""
        if self.logits or self.grad_is_dz:
            return g
        if act_cache is not None:
            return self.layer.activation.backward(g, act_cache)
        code = self._code()
        if code:
            act_backward(_rows(g), _rows(a), code, _rows(g))
        return g

    def _bias_grad(self, g2: np.ndarray, ws, grads: dict) -> None:
        key = param_key(self.layer, "bias")
        if key in grads:  # dL/dbias = ones^T g2, a GEMV (np.sum(axis=0) of a tall array is slower)
            ones = ws.ones(g2.shape[0], g2.dtype)
            if self.accumulate:
                grads[key] += ones @ g2
            else:
                np.dot(ones, g2, out=grads[key])

    def _bias(self, dtype) -> np.ndarray:
        bias = self.layer.params.get("bias")
        return _zeros(self.layer.output_shape[-1], np.dtype(dtype).name) if bias is None else bias


@dataclass(eq=False)
class DenseStep(_Activated):
    """A Dense layer: z = x W (GEMM) then act(z + b) in one pass; backward act', bias GEMV, two GEMMs."""


    def forward(self, x, ws, dest):
        w = self.layer.params["kernel"]
        z = self._out(ws, (x.shape[0], w.shape[1]), x.dtype, dest)
        matmul(x, w, z)
        a, act_cache = self._activate(z, self._bias(x.dtype))
        return a, (x, a, act_cache)

    def backward(self, g, saved, ws, grads):
        x, a, act_cache = saved
        g = self._deactivate(g, a, act_cache)
        self._bias_grad(g, ws, grads)
        w = self.layer.params["kernel"]
        key = param_key(self.layer, "kernel")
        if key in grads:
            matmul(x.T, g, grads[key], accumulate=self.accumulate)
        if not self.needs_dx:
            return None
        return matmul(g, w.T, ws.grad_array(x.shape, g.dtype, busy=g))


@dataclass(eq=False)
class ActivationStep(_Activated):
    """An Activation layer: act(x) in one pass into a buffer (x is left as it is)."""


    def forward(self, x, ws, dest):
        z = self._out(ws, x.shape, x.dtype, dest)
        np.copyto(z, x)
        a, act_cache = self._activate(z, _zeros(x.shape[-1], x.dtype.name))
        return a, (a, act_cache)

    def backward(self, g, saved, ws, grads):
        a, act_cache = saved
        return self._deactivate(np.ascontiguousarray(g), a, act_cache)


@dataclass(eq=False)
class ReshapeStep(Step):
    """Flatten or Reshape: a view of the input, and of the gradient."""

    def forward(self, x, ws, dest):
        return x.reshape((x.shape[0], *self.layer.output_shape)), None

    def backward(self, g, saved, ws, grads):
        return g.reshape((g.shape[0], *self.layer.input_shape))


@dataclass(eq=False)
class PoolStep(Step):
    """MaxPooling2D. With ``through_relu`` (the step below ends in a relu) its backward pass hands
    that step dL/dz: the winners whose pooled value is 0 get no gradient."""

    through_relu: bool = False

    def describe(self):
        return f"PoolStep({self.layer.name}{', through_relu' if self.through_relu else ''})"

    @cached_property
    def _geometry(self):
        (ho, wo, _), (h, w, _) = self.layer.output_shape, self.layer.input_shape
        return _window(h, w, self.layer.pool_size, self.layer.strides, self.layer.padding, ho, wo)

    def forward(self, x, ws, dest):
        kh, kw, sh, sw, pt, pl, ho, wo = self._geometry
        shape = (x.shape[0], ho, wo, x.shape[3])
        argmax = ws.buffer((self, "argmax"), shape, argmax_dtype(kh, kw))
        out, argmax = maxpool_forward(x, kh, kw, sh, sw, pt, pl, ho, wo, argmax, self._out(ws, shape, x.dtype, dest))
        return out, (argmax, out)

    def backward(self, g, saved, ws, grads):
        if not self.needs_dx:
            return None
        argmax, out = saved
        kh, kw, sh, sw, pt, pl, _, _ = self._geometry
        h, w, c = self.layer.input_shape
        dx = ws.grad_array((g.shape[0], h, w, c), g.dtype, busy=g)
        return maxpool_backward(g, argmax, h, w, kh, kw, sh, sw, pt, pl, dx, relu_of=out if self.through_relu else None)


@dataclass(eq=False)
class UpsampleStep(Step):
    """UpSampling2D, on its own (where the convolution after it does not read it on the fly)."""

    def forward(self, x, ws, dest):
        out = self._out(ws, (x.shape[0], *self.layer.output_shape), x.dtype, dest)
        return upsample_forward(x, *self.layer.size, out), None

    def backward(self, g, saved, ws, grads):
        if not self.needs_dx:
            return None
        dx = ws.grad_array((g.shape[0], *self.layer.input_shape), g.dtype, busy=g)
        return upsample_backward(g, *self.layer.size, dx)


def _window(h, w, pool_size, strides, padding, ho, wo):
    """(kh, kw, sh, sw, pt, pl, ho, wo) of a sliding window over an h x w image."""
    pt = output_size(h, pool_size[0], strides[0], padding)[1]
    pl = output_size(w, pool_size[1], strides[1], padding)[1]
    return (*pool_size, *strides, pt, pl, ho, wo)


@dataclass(eq=False)
class ConvStep(_Activated):
    """A Conv2D by ``algo`` (:class:`npae.fast.policy.ConvAlgo`), bias and activation applied as the
    output is written.

    up : (uh, uw): the input is the image before an UpSampling2D, read upsampled on the fly (the
        UpSampling2D is not run on its own); the input gradient is the small image's.
    pool : the MaxPooling2D after it, run inside the kernel (2x2 at stride 2): the output is the
        pooled one and the backward pass starts from the pooled gradient; the convolution's own
        output and its gradient are never written.
    """

    algo: ConvAlgo = ConvAlgo.IM2COL
    up: tuple[int, int] | None = None
    pool: MaxPooling2D | None = None
    block_bytes: int = PATCH_BLOCK_BYTES

    def describe(self):
        parts = [self.layer.name, self.algo.value]
        if self.up:
            parts.append(f"reads {self.up[0]}x{self.up[1]} upsampled")
        if self.pool is not None:
            parts.append(f"pools ({self.pool.name})")
        return f"ConvStep({', '.join(parts)})"

    def output_shape(self):
        return self.pool.output_shape if self.pool is not None else self.layer.output_shape

    @cached_property
    def _geometry(self) -> conv_im2col.Geometry:
        (h, w, _), (ho, wo, _) = self.layer.input_shape, self.layer.output_shape
        kh, kw, sh, sw, pt, pl, _, _ = _window(h, w, self.layer.kernel_size, self.layer.strides, self.layer.padding,
                                               ho, wo)
        return conv_im2col.Geometry(ho, wo, pt, pl, kh, kw, sh, sw)

    def forward(self, x, ws, dest):
        layer, geom, up = self.layer, self._geometry, self.up or (1, 1)
        kernel, n, cout = layer.params["kernel"], x.shape[0], layer.filters
        bias, code = self._bias(x.dtype), self._code()
        fused = code if code is not None else 0  # what the kernels apply as they write
        x = np.ascontiguousarray(x)
        argmax = None
        if self.pool is not None:
            shape = (n, geom.ho // 2, geom.wo // 2, cout)
            argmax = ws.buffer((self, "argmax"), shape, argmax_dtype(2, 2))
        else:
            shape = (n, geom.ho, geom.wo, cout)
        z = self._out(ws, shape, x.dtype, dest)
        kept = None
        if self.algo is ConvAlgo.DIRECT:
            if argmax is None:
                conv_direct.conv2d_s1(x, kernel, geom.pt, geom.pl, geom.ho, geom.wo, z, up=up, bias=bias, act=fused)
            else:
                conv_direct.conv2d_s1_maxpool2x2(x, kernel, geom.pt, geom.pl, geom.ho, geom.wo, bias, fused, z, argmax)
        elif self.algo is ConvAlgo.WINOGRAD:
            winograd.forward(x, kernel, geom.pt, geom.pl, bias, fused, z, self._scratch_of(ws, x.dtype), up, argmax)
        else:
            done = None
            if self.algo is ConvAlgo.GEMM_KERNEL:
                plan, _ = conv_im2col.phase_plan(kernel, geom, up)
                windows = np.array([g.window for g in plan], dtype=np.int64)
                at = np.array([g.at or (0, 0) for g in plan], dtype=np.int64)
                done = conv_gemm.forward(x, windows, [g.w2 for g in plan], at, up, bias, fused, z,
                                         self._scratch_of(ws, x.dtype))
            if done is None:
                kept = conv_im2col.forward(x, kernel, geom, up, _rows(z), ws, self, self.block_bytes)
                bias_act_forward(_rows(z), bias, fused)
        act_cache = None
        if code is None:  # an activation without a fused kernel: the reference one, after
            z, act_cache = self.layer.activation.forward(z)
        return z, (x, z, act_cache, argmax, kept)

    def _scratch_of(self, ws, dtype):
        return lambda size: ws.take_scratch(self, size, dtype)

    def backward(self, g, saved, ws, grads):
        x, a, act_cache, argmax, kept = saved
        layer, geom, up = self.layer, self._geometry, self.up or (1, 1)
        kernel = layer.params["kernel"]
        g2 = _rows(self._deactivate(np.ascontiguousarray(g), a, act_cache))  # dL/dz (pooled output's if pooled)
        self._bias_grad(g2, ws, grads)
        key = param_key(layer, "kernel")
        want_dw = key in grads
        dw = (ws.buffer((self, "dw"), kernel.shape, kernel.dtype) if self.accumulate else grads[key]) if want_dw \
            else ws.buffer((self, "dw"), kernel.shape, kernel.dtype)
        h, w = x.shape[1], x.shape[2]
        dx = ws.grad_array((x.shape[0], h, w, kernel.shape[2]), g2.dtype, busy=g2) if self.needs_dx else None
        g4 = g2.reshape(g.shape)
        if self.algo is ConvAlgo.DIRECT:
            if want_dw:
                conv_direct.conv2d_s1_kernel_grad(x, g4, geom.pt, geom.pl, dw, up=up, argmax=argmax)
            if dx is not None:
                conv_direct.conv2d_s1_input_grad(g4, kernel, geom.pt, geom.pl, dx, up=up, argmax=argmax)
        elif self.algo is ConvAlgo.WINOGRAD:
            winograd.backward(x, g4, kernel, geom.pt, geom.pl, dw, dx, self._scratch_of(ws, g2.dtype), up, argmax)
        else:
            conv_im2col.backward(x, g2, kernel, geom, up, dw if want_dw else None, dx, ws, self, kept,
                                 self.block_bytes)
        if want_dw and self.accumulate:
            grads[key] += dw
        return dx


@dataclass(eq=False)
class ConvTransposeStep(_Activated):
    """A Conv2DTranspose, as the adjoint of the convolution it transposes (see
    :mod:`npae.functional.conv_transpose`): that convolution maps (Ho, Wo, filters) images to the
    layer's (H, W, Cin) inputs with the layer's kernel, strides and crop as its padding. So

        forward         z = conv^T(x): the convolution's input-gradient pass with x as its output
                        gradient (conv_im2col.backward, no kernel gradient); then act(z + bias)
        input gradient  dx = conv(dz): the convolution's forward pass (conv_im2col.forward)
        kernel grad.    dK = im2col(dz)^T x: the convolution's kernel gradient with dz as its
                        input and x as its output gradient (the patches of the last block of
                        dz are reused from the input-gradient pass).
    """

    block_bytes: int = PATCH_BLOCK_BYTES

    @cached_property
    def _geometry(self) -> conv_im2col.Geometry:
        layer = self.layer
        (h, w, _), (kh, kw), (sh, sw) = layer.input_shape, layer.kernel_size, layer.strides
        ph, pw = layer.output_padding or (None, None)
        pt = conv_transpose.output_size(h, kh, sh, layer.padding, ph)[1]
        pl = conv_transpose.output_size(w, kw, sw, layer.padding, pw)[1]
        return conv_im2col.Geometry(h, w, pt, pl, kh, kw, sh, sw)

    def forward(self, x, ws, dest):
        layer = self.layer
        z = self._out(ws, (x.shape[0], *layer.output_shape), x.dtype, dest)
        x2 = _rows(np.ascontiguousarray(x))  # the convolution's output gradient (N*H*W, Cin)
        conv_im2col.backward(z, x2, layer.params["kernel"], self._geometry, (1, 1), None, z, ws, self, None,
                             self.block_bytes)  # z's values are not read: it is the shape and the output
        a, act_cache = self._activate(z, self._bias(x.dtype))
        return a, (x, a, act_cache)

    def backward(self, g, saved, ws, grads):
        x, a, act_cache = saved
        kernel, geom = self.layer.params["kernel"], self._geometry
        g2 = _rows(self._deactivate(np.ascontiguousarray(g), a, act_cache))  # dL/dz (N*Ho*Wo, filters)
        self._bias_grad(g2, ws, grads)
        dz = g2.reshape(a.shape)
        dx, kept = None, None
        if self.needs_dx:
            dx = ws.grad_array(x.shape, g2.dtype, busy=g2)
            kept = conv_im2col.forward(dz, kernel, geom, (1, 1), _rows(dx), ws, self, self.block_bytes)
        key = param_key(self.layer, "kernel")
        if key in grads:
            dw = ws.buffer((self, "dw"), kernel.shape, kernel.dtype) if self.accumulate else grads[key]
            conv_im2col.backward(dz, _rows(np.ascontiguousarray(x)), kernel, geom, (1, 1), dw, None, ws, self, kept,
                                 self.block_bytes)
            if self.accumulate:
                grads[key] += dw
        return dx


@dataclass(eq=False)
class BatchNormStep(Step):
    """A BatchNormalization over the last axis (:mod:`npae.fast.batchnorm`'s kernels): the batch's
    statistics in training (and the moving ones updated, as the layer does), the moving ones in
    inference or when the layer is frozen (Keras's rule). With ``relu`` (a ReLU layer after it,
    fused by the planner) the ReLU runs in the same passes and its own output is never written."""

    relu: Layer | None = None

    def describe(self):
        return f"BatchNormStep({self.layer.name}{', ' + self.relu.name if self.relu is not None else ''})"

    def output_shape(self):
        return self.layer.output_shape

    def forward(self, x, ws, dest):
        layer, p, dtype = self.layer, self.layer.params, x.dtype
        x2 = _rows(np.ascontiguousarray(x))
        out = self._out(ws, x.shape, dtype, dest)
        batch = self.training and layer.trainable
        if batch:
            mean64, var64 = batchnorm.batch_stats(x2)
            mean, var = mean64.astype(dtype), var64.astype(dtype)
            for k, stat in (("moving_mean", mean), ("moving_variance", var)):
                p[k][...] = moving_average(p[k], stat, layer.momentum)
        else:
            mean, var = p["moving_mean"], p["moving_variance"]
        inv = (1.0 / np.sqrt(var + dtype.type(layer.epsilon))).astype(dtype)
        gamma, beta = p.get("gamma"), p.get("beta")
        scale = inv * gamma if gamma is not None else inv
        shift = beta if beta is not None else _zeros(x2.shape[1], dtype.name)
        batchnorm.normalize(x2, mean, scale, shift, self.relu is not None, _rows(out))
        return out, (x2, out, mean, inv, scale, batch)

    def backward(self, g, saved, ws, grads):
        x2, out, mean, inv, scale, batch = saved
        g2, a2, relu = _rows(np.ascontiguousarray(g)), _rows(out), self.relu is not None
        keys = {name: param_key(self.layer, name) for name in ("gamma", "beta")}
        wanted = [name for name, key in keys.items() if key in grads]
        sums = batchnorm.backward_sums(g2, a2, x2, mean, inv, relu) if batch or wanted else None
        for name in wanted:  # dL/dgamma = sum dy * xhat, dL/dbeta = sum dy
            _write(grads, keys[name], sums[1 if name == "gamma" else 0].astype(g2.dtype), self.accumulate)
        if not self.needs_dx:
            return None
        dx = ws.grad_array(g.shape, g2.dtype, busy=g2)
        if batch:
            batchnorm.backward_dx(g2, a2, x2, mean, inv, scale, sums, relu, _rows(dx))
        else:
            batchnorm.affine_dx(g2, a2, scale, relu, _rows(dx))
        return dx


@dataclass(eq=False)
class MergeStep(Step):
    """Add, Subtract, Average (inputs of one shape) and Concatenate, written into a buffer of the
    workspace (no new array per batch), the same sums in the same order as the reference passes
    (:mod:`npae.functional.merge`). Backward: Add hands dL/dout itself to every input (the plan
    copies it for all but the first, since a step may overwrite its gradient), Subtract and
    Average scaled copies; Concatenate hands each input its slice of dL/dout, a view."""

    def forward(self, xs, ws, dest):
        n, layer = xs[0].shape[0], self.layer
        out = self._out(ws, (n, *layer.output_shape), xs[0].dtype, dest)
        if isinstance(layer, Concatenate):
            at = 0
            for x in xs:  # along the axis, each input's block in turn
                size = x.shape[self._axis(x.ndim)]
                out[self._cut(x.ndim, at, at + size)] = x
                at += size
            return out, None
        if len(xs) == 1:
            np.copyto(out, xs[0])
        else:
            (np.subtract if isinstance(layer, Subtract) else np.add)(xs[0], xs[1], out=out)
            for x in xs[2:]:
                out += x
        if isinstance(layer, Average):
            out /= len(xs)
        return out, None

    def _axis(self, ndim: int) -> int:
        return self.layer.axis + ndim if self.layer.axis < 0 else self.layer.axis

    def _cut(self, ndim: int, start: int, stop: int) -> tuple:
        return (slice(None),) * self._axis(ndim) + (slice(start, stop),)

    def backward(self, g, saved, ws, grads):
        if not self.needs_dx:
            return None
        layer, k = self.layer, len(self.layer.input_shape)
        if isinstance(layer, Concatenate):
            dxs, at = [], 0
            for shape in layer.input_shape:
                size = shape[self._axis(len(shape) + 1) - 1]
                dxs.append(g[self._cut(g.ndim, at, at + size)])
                at += size
            return dxs
        if isinstance(layer, Subtract):
            return [g, -1.0 * g]
        if isinstance(layer, Average):
            return [(1.0 / k) * g for _ in range(k)]
        return [g] * k

    @staticmethod
    def runs(layer) -> bool:
        """Whether this step runs ``layer`` (else its reference passes do): no broadcasting."""
        return isinstance(layer, Concatenate) or len({tuple(s) for s in layer.input_shape}) == 1


@dataclass(eq=False)
class ReferenceStep(Step):
    """A layer the fast path has no kernels for (a user's own Layer subclass): its reference passes."""


    def forward(self, x, ws, dest):
        if self.logits:
            return self.layer.forward(x, self.training, logits=True)
        return self.layer.forward(x, self.training)

    def backward(self, g, saved, ws, grads):
        if not self.needs_dx and not self.layer.trainable_param_names():
            return None
        dx, layer_grads = self.layer.backward(g, saved)
        for name, grad in layer_grads.items():
            key = param_key(self.layer, name)
            if key in grads:
                _write(grads, key, grad, self.accumulate)
        return dx if self.needs_dx else None


@dataclass(eq=False)
class DenseStackStep(Step):
    """A prediction through a model of Dense layers only, as one kernel (:mod:`npae.fast.dense_stack`):
    each thread carries blocks of rows through every layer."""

    layers: tuple[Dense, ...] = field(default_factory=tuple)

    def describe(self):
        return f"DenseStackStep({', '.join(layer.name for layer in self.layers)})"

    def output_shape(self):
        return self.layers[-1].output_shape

    def forward(self, x, ws, dest):
        out = self._out(ws, (x.shape[0], self.layers[-1].units), x.dtype, dest)
        kernels = [layer.params["kernel"] for layer in self.layers]
        biases = [layer.params.get("bias", _zeros(layer.units, x.dtype.name)) for layer in self.layers]
        acts = [ACT_CODES[layer.activation.name] for layer in self.layers]
        if dense_stack.forward(x, kernels, biases, acts, out, lambda size: ws.take_scratch(self, size, x.dtype)) \
                is None:
            raise RuntimeError("DenseStackStep: OpenBLAS is not available (the planner should not have chosen it)")
        return out, None


@dataclass(eq=False)
class LossStep:
    """The loss on one model output: value and dL/dy in one pass for the sigmoid + BCE from
    logits and for MSE (:mod:`npae.fast.elementwise`), the reference loss otherwise. ``output``,
    ``weight`` and ``logits`` are its head's (:class:`npae.paths.Head`)."""

    loss: Any
    kind: str  # "sigmoid_bce", "mse" or "reference"
    output: int = 0
    weight: float = 1.0
    logits: bool = False

    def describe(self) -> str:
        return f"LossStep({self.kind})"

    def forward(self, y_pred: np.ndarray, y_true: np.ndarray, ws) -> tuple[float, Any]:
        if y_pred.shape != y_true.shape:
            raise ValueError(f"loss: y_pred and y_true must have the same shape, got {y_pred.shape} and "
                             f"{y_true.shape}")
        if self.kind == "reference":
            return self.loss.forward(y_pred, y_true)
        p2 = np.ascontiguousarray(y_pred).reshape(len(y_pred), -1)
        t2 = np.ascontiguousarray(y_true, dtype=y_pred.dtype).reshape(p2.shape)
        grad = ws.buffer((self, "grad"), p2.shape, p2.dtype)
        f = sigmoid_bce_with_grad if self.kind == "sigmoid_bce" else mse_with_grad
        return f(p2, t2, grad) / p2.size, grad.reshape(y_pred.shape)

    def backward(self, saved) -> np.ndarray:
        return self.loss.backward(saved) if self.kind == "reference" else saved


STEP_FOR_LAYER = {Dense: DenseStep, Conv2D: ConvStep, Conv2DTranspose: ConvTransposeStep,
                  BatchNormalization: BatchNormStep, MaxPooling2D: PoolStep, UpSampling2D: UpsampleStep,
                  Activation: ActivationStep, Flatten: ReshapeStep, Reshape: ReshapeStep, Add: MergeStep,
                  Subtract: MergeStep, Average: MergeStep, Concatenate: MergeStep}
