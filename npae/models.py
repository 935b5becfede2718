"""Keras-style models: a chain of layers with compile, fit, evaluate, predict, save and summary.

One batch through ``fit`` (shapes for the 784-64-784 autoencoder, batch N = 256):

    x_batch (N, 784) -> Dense.forward -> (N, 64) -> Dense.forward -> z (N, 784), a = sigmoid(z)
    loss.forward(z, y_batch) -> scalar       (fused sigmoid + BCE from the logits z)
    + activity penalties of the layers (e.g. l1 * sum|h| / N)
    loss.backward() -> dL/dz (N, 784)
    Dense.backward_linear(dL/dz) -> (N, 64) -> Dense.backward -> (input gradient not needed)
    optimizer.step(params, grads): every "<layer>/<param>" updated in place
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading

import numpy as np

from . import callbacks as cbks
from . import elementwise, losses, optimizers
from . import random as npae_random
from .elementwise import ACT_CODES
from .graph import Input, SymbolicTensor, trace_chain
from .inference import DenseStack
from .layers.base import Layer, Scratch, _unique_name
from .layers.conv import Conv2D
from .layers.core import InputLayer
from .layers.pooling import MaxPooling2D, UpSampling2D

__all__ = ["Model", "Sequential", "load_model"]


class Model:
    """A functional model: ``Model(inputs=x, outputs=h)`` (also ``Model(input=x, output=h)``).

    ``layers`` lists the InputLayer first, as Keras does, so ``model.layers[-1]`` is the last layer.
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None, *, input=None, output=None):  # noqa: A002
        inputs = inputs if inputs is not None else input
        outputs = outputs if outputs is not None else output
        self.name = name or _unique_name("Functional")
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: losses.Loss | None = None
        self.stop_training = False
        self.history = None
        self._gradient_arrays = _GradientArrays()
        self._scratch = Scratch()
        if inputs is None and outputs is None and isinstance(self, Sequential):
            self._input_layer, self._layers = None, []
            return
        if inputs is None or outputs is None:
            raise ValueError("Model: give both inputs and outputs, e.g. Model(inputs=x, outputs=h)")
        chain = trace_chain(inputs, outputs)
        self._input_layer, self._layers = chain[0], chain[1:]

    # -- structure -----------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return [self._input_layer, *self._layers]

    @property
    def input_shape(self) -> tuple:
        return (None, *self._input_layer.input_shape)

    @property
    def output_shape(self) -> tuple:
        last = self._layers[-1] if self._layers else self._input_layer
        return (None, *last.output_shape)

    @property
    def dtype(self) -> np.dtype:
        return next((layer.dtype for layer in self._layers if layer.params), np.dtype(np.float32))

    def parameters(self) -> dict[str, np.ndarray]:
        """Every weight, keyed ``"<layer name>/<param name>"`` (the optimizer's state keys)."""
        return {f"{layer.name}/{k}": v for layer in self._layers for k, v in layer.params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients of the last backward pass, with the keys of :meth:`parameters`."""
        return {f"{layer.name}/{k}": v for layer in self._layers for k, v in layer.grads.items()}

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self._layers)

    def get_weights(self) -> list[np.ndarray]:
        """All weights in Keras's order: layer by layer, kernel then bias."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Set all weights from a list in :meth:`get_weights` order (e.g. from a Keras model)."""
        expected = sum(len(layer.get_weights()) for layer in self._layers)
        if len(weights) != expected:
            raise ValueError(f"{self.name}: expected {expected} weight arrays, got {len(weights)}")
        i = 0
        for layer in self._layers:
            k = len(layer.get_weights())
            layer.set_weights(weights[i:i + k])
            i += k

    def astype(self, dtype) -> Model:
        """Cast every weight and optimizer slot to ``dtype`` (float64 for gradient checks), and the
        input layer, which casts the data (a Sequential's ``layers`` leaves it out)."""
        for layer in (self._input_layer, *self._layers):
            if layer is not None:
                layer.astype(dtype)
        self._gradient_arrays = _GradientArrays()
        if self.optimizer is not None:
            for slots in self.optimizer.state.values():
                for s in slots:
                    slots[s] = slots[s].astype(dtype)
        return self

    # -- compile and one step ------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, **_ignored) -> None:
        """Choose the optimizer ('adam' | 'adadelta' | 'sgd' | instance) and loss
        ('mse' | 'binary_crossentropy' | 'binary_crossentropy_clipped' | instance)."""
        if loss is None:
            raise ValueError("compile: give a loss, e.g. loss='binary_crossentropy'")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        last = self._layers[-1] if self._layers else None
        # A final sigmoid followed by BCE is computed from the logits (stable, TensorFlow's path).
        self._fused = (isinstance(self.loss, losses.BinaryCrossentropy) and self.loss.fusable
                       and not self.loss.from_logits and last is not None and last.activation.name == "sigmoid"
                       and last.activity_regularizer is None)
        if self._fused:
            self._logit_loss = losses.BinaryCrossentropy(from_logits=True)

    def _require_compiled(self) -> None:
        if self.loss is None:
            raise RuntimeError(f"{self.name}: call compile(optimizer=..., loss=...) before fit or evaluate")

    @contextlib.contextmanager
    def _reusing_buffers(self):
        """Within compute_gradients, evaluate and predict every layer result is used before that
        layer runs again, so layers and losses write results into kept buffers (see
        ``Layer.result_buffer``). Restores the previous setting, so these methods can nest. The
        layers also share one scratch memory (``Scratch``)."""
        for layer in self._layers:
            layer.scratch = self._scratch
        parts = [*self._layers, self.loss, getattr(self, "_logit_loss", None)]
        parts = [p for p in parts if p is not None]
        before = [p.reuse_buffers for p in parts]
        for p in parts:
            p.reuse_buffers = True
        try:
            yield
        finally:
            for p, b in zip(parts, before):
                p.reuse_buffers = b

    def forward(self, x: np.ndarray, training: bool = False, logits: bool = False) -> np.ndarray:
        """Run the layers in order: (N, *input_shape) -> (N, *output_shape). With ``logits`` the last
        layer stops before its activation."""
        return self._forward(x, training, logits, fuse=False)

    def _forward(self, x: np.ndarray, training: bool, logits: bool, fuse: bool = True) -> np.ndarray:
        out = self._input_layer.forward(x)
        for step in self._forward_steps(training, logits, fuse):
            out = self._layer_forward(out, training, *step)
        return out

    def _forward_steps(self, training: bool, logits: bool, fuse: bool = True) -> list[tuple]:
        """(layer, from_logits, upsampled_input, pooled_by) for every layer that runs, in order;
        kept for the backward pass.

        With ``fuse`` (the model's own methods; ``forward`` runs every layer as it is), an
        UpSampling2D followed by a Conv2D is left out when the Conv2D says so
        (``Conv2D.reads_upsampled``) and the convolution reads its input upsampled on the fly
        (``upsampled_input``): the same result without the upsampled tensor or its gradient. A
        MaxPooling2D after a Conv2D that can pool in its kernel (``Conv2D.pools_in_kernel``) is
        left out too: the convolution returns the pooled output (``pooled_by``) and takes its
        gradient, without the convolution's own output or its gradient."""
        layers, steps = self._layers, []
        for i, layer in enumerate(layers):
            before = layers[i - 1] if i > 0 else None
            up = None
            if fuse and isinstance(layer, Conv2D) and isinstance(before, UpSampling2D) and \
                    layer.reads_upsampled(before.size, training):
                steps.pop()
                up = before.size
            if fuse and isinstance(layer, MaxPooling2D) and isinstance(before, Conv2D) and steps[-1][2] is None \
                    and before.pools_in_kernel(layer, training):
                steps[-1] = (before, False, None, layer)
                continue
            steps.append((layer, logits and i == len(layers) - 1, up, None))
        self._steps = steps
        return steps

    @staticmethod
    def _layer_forward(x: np.ndarray, training: bool, layer: Layer, from_logits: bool, up, pool=None) -> np.ndarray:
        """One step of :meth:`_forward_steps` (``up`` and ``pool``, if any, set on the layer for
        this call only)."""
        if up is None and pool is None:
            return layer.forward_logits(x, training) if from_logits else layer.forward(x, training)
        layer.upsampled_input, layer.pooled_by = up, pool
        try:
            return Model._layer_forward(x, training, layer, from_logits, None)
        finally:
            layer.upsampled_input = layer.pooled_by = None

    def compute_loss(self, x: np.ndarray, y: np.ndarray, training: bool = True) -> float:
        """Forward pass, then loss + every activity penalty (the training objective)."""
        self._require_compiled()
        with self._reusing_buffers():
            out = self._forward(x, training, logits=self._fused)
            value = (self._logit_loss if self._fused else self.loss).forward(out, y)
            return value + sum(layer.regularization_loss() for layer in self._layers)

    def compute_gradients(self, x: np.ndarray, y: np.ndarray) -> float:
        """Forward, loss, backward through the layers in reverse; fills every ``layer.grads``."""
        with self._reusing_buffers():
            value = self.compute_loss(x, y, training=True)
            grad = (self._logit_loss if self._fused else self.loss).backward()
            for layer, *how in self._backward_steps():
                grad = self._layer_backward(layer, grad, *how)
        return value

    def _backward_steps(self) -> list[tuple[Layer, bool, bool, tuple[int, int] | None, bool]]:
        """(layer, from_logits, overwrite_grad, upsampled_input, through_relu) for the layers the
        last forward pass ran, in reverse, and ``needs_input_grad`` set on each (nobody needs dL/dx
        of the first). A fused last layer takes dL/dz from the loss (``backward_logits``). A
        gradient from the layer above is used once and may be overwritten; the loss's own (when
        unfused) stays what ``loss.backward()`` returns. A MaxPooling2D over a relu layer (without
        an activity penalty) hands that layer dL/dz (``through_relu``), which it takes as from
        logits: one pass over the gradient instead of two."""
        steps, last, gets_dz = [], len(self._steps) - 1, False
        for i in range(last, -1, -1):
            layer, from_logits, up, _ = self._steps[i]
            layer.needs_input_grad = i > 0
            below = self._steps[i - 1][0] if i > 0 else None
            through_relu = isinstance(layer, MaxPooling2D) and below is not None and \
                below.activation.code == ACT_CODES["relu"] and below.activity_regularizer is None
            steps.append((layer, from_logits or gets_dz, i < last or self._fused, up, through_relu))
            gets_dz = through_relu  # the layer below then takes dL/dz as from logits
        return steps

    def _layer_backward(self, layer: Layer, grad: np.ndarray, from_logits: bool, overwrite: bool, up=None,
                        through_relu: bool = False):
        """One step of :meth:`_backward_steps`, the layer's input gradient written into an array
        lent from the model's shared gradient arrays (``_GradientArrays``); with ``up``, a gradient
        for the image before that upsampling."""
        if layer.needs_input_grad:
            size = grad.shape[0] * math.prod(layer.input_shape) // math.prod(up or (1, 1))
            layer.lent = {"dx": self._gradient_arrays.pick(size, grad.dtype, busy=grad)}
        try:
            if from_logits:
                return layer.backward_logits(grad)
            if through_relu:
                return layer.backward(grad, overwrite_grad=overwrite, through_relu=True)
            return layer.backward(grad, overwrite_grad=overwrite)
        finally:
            layer.lent = None

    def train_on_batch(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimizer step on one batch; returns the loss before the step."""
        value = self.compute_gradients(*self._check_data(x, y))
        if math.isfinite(value):
            self.optimizer.step(self.parameters(), self.gradients())
        return value

    # -- data ----------------------------------------------------------------------------------
    def _check_x(self, x, what="x") -> np.ndarray:
        x = np.asarray(x)
        want = self.input_shape[1:]
        if x.ndim != len(want) + 1 or x.shape[1:] != want:
            raise ValueError(f"{self.name}: expected {what} of shape (n, {', '.join(map(str, want))}), "
                             f"got {x.shape}")
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: {what} must be numeric, got dtype {x.dtype}")
        return x

    def _check_data(self, x, y):
        x = self._check_x(x)
        y = np.asarray(y)
        want = self.output_shape[1:]
        if y.shape != (len(x), *want):
            raise ValueError(f"{self.name}: expected y of shape ({len(x)}, {', '.join(map(str, want))}) to match "
                             f"x and the model's output, got {y.shape}")
        return x, y

    # -- fit / evaluate / predict --------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size: int = 32, epochs: int = 1, verbose: int = 1, callbacks=None,
            validation_data=None, shuffle: bool = True, seed: int | None = None, initial_epoch: int = 0):
        """Train for ``epochs`` passes over (x, y) in shuffled mini-batches; returns a History.

        Each epoch logs ``loss`` (the sample-weighted mean of the batch losses, penalties
        included) and, with ``validation_data=(xv, yv)``, ``val_loss``. A non-finite loss stops
        training before its batch is applied; Ctrl-C stops after the current batch.
        ``initial_epoch`` (Keras's meaning): run epochs ``initial_epoch .. epochs - 1``, e.g. to
        resume after :meth:`load_weights`; with a ``seed`` the resumed run is the same as an
        uninterrupted one.
        """
        self._require_compiled()
        _check_positive_int(initial_epoch, "initial_epoch", allow_zero=True)
        x, y = self._check_data(x, y)
        if validation_data is not None:
            validation_data = self._check_data(*validation_data)
        _check_positive_int(batch_size, "batch_size")
        _check_positive_int(epochs, "epochs", allow_zero=True)
        # with a seed, epoch e shuffles with its own generator seeded (seed, e): a run resumed at
        # initial_epoch=e sees the same batches as one that never stopped
        rng = npae_random.get_generator()
        n, steps = len(x), math.ceil(len(x) / batch_size)
        callbacks = cbks.CallbackList(callbacks, model=self, verbose=verbose, epochs=epochs, steps=steps)
        xbuf = np.empty((min(batch_size, n), *x.shape[1:]), dtype=self.dtype)  # reused every batch
        ybuf = None if y is x else np.empty((min(batch_size, n), *y.shape[1:]), dtype=self.dtype)
        params, grads = self.parameters(), self.gradients()
        self.stop_training = False
        callbacks.on_train_begin()
        with _StopOnInterrupt() as interrupt:
            for epoch in range(initial_epoch, epochs):
                if seed is not None:
                    rng = np.random.default_rng([seed, epoch])
                order = rng.permutation(n) if shuffle else np.arange(n)
                callbacks.on_epoch_begin(epoch)
                total, seen = 0.0, 0
                for step in range(steps):
                    idx = order[step * batch_size:(step + 1) * batch_size]
                    xb = _gather(x, idx, xbuf)  # (B, ...) views of the buffers
                    yb = xb if y is x else _gather(y, idx, ybuf)  # an autoencoder's target is its input
                    value = self.compute_gradients(xb, yb)  # forward, loss, backward
                    if not callbacks.on_batch_loss(epoch, step, value):
                        break  # non-finite loss: the step is not applied
                    self.optimizer.step(params, grads)
                    total, seen = total + value * len(idx), seen + len(idx)
                    callbacks.on_batch_end(step, {"loss": total / seen})
                    if interrupt.requested or self.stop_training:
                        break
                if seen == 0:
                    break
                logs = {"loss": total / seen}
                if validation_data is not None:
                    logs["val_loss"] = self.evaluate(*validation_data, batch_size=batch_size)
                callbacks.on_epoch_end(epoch, logs)
                if interrupt.requested or self.stop_training:
                    break
        callbacks.on_train_end()
        self.history = callbacks.history
        return self.history

    def evaluate(self, x, y, batch_size: int = 32, verbose: int = 0) -> float:
        """The loss (penalties included) over (x, y), computed in batches."""
        self._require_compiled()
        x, y = self._check_data(x, y)
        _check_positive_int(batch_size, "batch_size")
        total = 0.0
        for s in range(0, len(x), batch_size):
            xb = np.asarray(x[s:s + batch_size], dtype=self.dtype)
            yb = np.asarray(y[s:s + batch_size], dtype=self.dtype)
            total += self.compute_loss(xb, yb, training=False) * len(xb)
        return total / max(len(x), 1)

    def predict(self, x, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """Outputs (n, *output_shape), computed into one preallocated array: batch by batch (the
        last layer writes each batch's output straight into it), or, for a model of Dense layers
        only, by one kernel per chunk of rows (``npae.inference``; batch_size then only bounds
        the memory of casting x to the model's dtype)."""
        x = self._check_x(x)
        _check_positive_int(batch_size, "batch_size")
        out = np.empty((len(x), *self.output_shape[1:]), dtype=self.dtype)
        stack = self._dense_stack()
        if stack is not None:
            return self._predict_dense_stack(stack, x, batch_size, out)
        last = self._layers[-1] if self._layers else None
        with self._reusing_buffers():  # each batch's output is used (copied, or lent) before the next
            try:
                for s in range(0, len(x), batch_size):
                    target = out[s:s + batch_size]
                    if last is not None:
                        last.lent = {"out": target.reshape(-1)}
                    res = self._forward(np.asarray(x[s:s + batch_size], dtype=self.dtype), False, False)
                    if not np.may_share_memory(res, target):  # (0.7 us; comparing .ctypes.data: 5.5)
                        target[...] = res  # a layer that returns a view of its input (Flatten, ...)
            finally:
                if last is not None:
                    last.lent = None
        return out

    def _dense_stack(self) -> DenseStack | None:
        """The model's layers as one inference kernel, if they are all Dense (kept: it holds
        scratch memory)."""
        layers, kept = tuple(self._layers), self.__dict__.get("_stack")
        if kept is None or kept[0] != layers:  # (a Sequential can grow)
            kept = self._stack = (layers, DenseStack.of(layers))
        return kept[1]

    def _predict_dense_stack(self, stack: DenseStack, x: np.ndarray, batch_size: int, out: np.ndarray):
        ready = x.dtype == self.dtype and x.flags.c_contiguous  # rows of x are then passed as they are
        chunk = max(len(x) if ready else max(batch_size, 4096), 1)
        for s in range(0, len(x), chunk):
            stack.forward(np.ascontiguousarray(x[s:s + chunk], dtype=self.dtype), out[s:s + chunk])
        return out

    def __call__(self, x):
        """Data in, data out (``model(x)`` = ``model.predict(x)``)."""
        if isinstance(x, SymbolicTensor):
            raise TypeError("npae models cannot be nested in other models; call their layers instead")
        return self.predict(x)

    # -- reporting and files ------------------------------------------------------------------
    def summary(self, print_fn=print) -> None:
        """Print layers, output shapes and parameter counts the way Keras does."""
        rows = [(f"{layer.name} ({type(layer).__name__})", str((None, *layer.output_shape)),
                 f"{layer.count_params():,}") for layer in self.layers]
        w = [max(28, *(len(r[0]) + 2 for r in rows)), max(26, *(len(r[1]) + 2 for r in rows)), 12]
        line = "=" * sum(w)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * sum(w))
        print_fn("Layer (type)".ljust(w[0]) + "Output Shape".ljust(w[1]) + "Param #")
        print_fn(line)
        for r in rows:
            print_fn(r[0].ljust(w[0]) + r[1].ljust(w[1]) + r[2])
        print_fn(line)
        total = self.count_params()
        print_fn(f"Total params: {total:,}\nTrainable params: {total:,}\nNon-trainable params: 0")
        print_fn("_" * sum(w))

    def save(self, path) -> None:
        """Architecture, weights and optimizer state in one .npz, written atomically."""
        from .io import save_model

        save_model(self, path)

    def load_weights(self, path) -> None:
        """Copy the weights (and, when both models use the same optimizer, its state and step
        count) from a model file written by :meth:`save` into this model, which must have the same
        layers in the same order. Used to resume training; errors name what differs."""
        from .io import ModelFileError, load_model

        def layout(model):
            return [(type(layer).__name__, {k: v.shape for k, v in layer.params.items()}) for layer in model._layers]

        other = load_model(path)
        mine, theirs = layout(self), layout(other)
        if mine != theirs:
            raise ModelFileError(f"{os.fspath(path)!r} holds a different architecture: expected layers {mine}, "
                                 f"got {theirs}")
        self.set_weights(other.get_weights())
        opt, saved = self.optimizer, other.optimizer
        if opt is not None and saved is not None and opt.get_config() == saved.get_config():
            opt.iterations = saved.iterations
            saved_state = saved.state
            # optimizer state is keyed "<layer name>/<param>"; layer names may differ between
            # processes, so match parameters by position
            opt.state = {key: {s: a.copy() for s, a in saved_state[old].items()}
                         for key, old in zip(self.parameters(), other.parameters()) if old in saved_state}


class Sequential(Model):
    """A plain stack: ``Sequential([Input(shape=(784,)), Dense(64, activation='relu'), ...])``.
    Unlike functional models its ``layers`` omit the InputLayer, as in Keras."""

    def __init__(self, layers=None, name: str | None = None):
        super().__init__(name=name or _unique_name("Sequential"))
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def add(self, layer) -> None:
        if isinstance(layer, SymbolicTensor):
            if self._input_layer is not None or self._layers:
                raise ValueError(f"{self.name}: an Input can only come first")
            self._input_layer = layer.layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}: expected a layer, got {type(layer).__name__}")
        if self._input_layer is None and not self._layers and layer.input_shape is not None:
            self._input_layer = InputLayer(layer.input_shape)
        self._layers.append(layer)
        if self._input_layer is not None:
            self.build()

    def build(self, input_shape=None) -> None:
        """Build every layer for ``input_shape`` (without batch axis), checking each link."""
        if self._input_layer is None:
            if input_shape is None:
                raise ValueError(f"{self.name}: the input shape is unknown; start with Input(shape=...)")
            self._input_layer = InputLayer(tuple(input_shape))
        t = SymbolicTensor(self._input_layer.input_shape, layer=self._input_layer)
        for layer in self._layers:
            t = layer(t)

    @property
    def input_shape(self):
        if self._input_layer is None:
            raise ValueError(f"{self.name}: the input shape is unknown; start with Input(shape=...)")
        return super().input_shape

    def _check_x(self, x, what="x"):
        if self._input_layer is None:
            self.build(np.shape(x)[1:])
        return super()._check_x(x, what)


class _GradientArrays:
    """The two arrays that a backward pass writes the layers' input gradients into, in turn.

    A gradient is dead once the layer below has read it, so two arrays serve every layer: a layer
    reads its gradient from one and writes its input gradient into the other (the first one that
    does not hold the gradient it reads; the layers take them in the same order every step). Each
    grows, in the first step, to the largest gradient it holds: for the denoising model 25 + 6 MB
    per batch of 256, where one array per layer took 80 MB.
    """

    def __init__(self):
        self.arrays: list[np.ndarray | None] = [None, None]

    def pick(self, size: int, dtype, busy: np.ndarray) -> np.ndarray:
        """A flat array of at least ``size`` elements that does not overlap ``busy``."""
        for k, a in enumerate(self.arrays):
            if a is not None and np.may_share_memory(a, busy):
                continue
            if a is None or a.size < size or a.dtype != dtype:
                a = self.arrays[k] = np.empty(size, dtype=dtype)
            return a
        raise AssertionError("busy overlaps both gradient arrays")  # cannot happen: busy is one array


def _gather(src: np.ndarray, idx: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """Copy rows ``src[idx]`` into the front of ``buf`` (no new allocation when dtypes agree)."""
    out = buf[:len(idx)]
    if src.dtype == buf.dtype and src.flags.c_contiguous:
        elementwise.gather_rows(src.reshape(len(src), -1), idx, out.reshape(len(idx), -1))
    elif src.dtype == buf.dtype:
        np.take(src, idx, axis=0, out=out)
    else:
        out[...] = src[idx]
    return out


def _check_positive_int(value, name: str, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = ok and (value > 0 or (allow_zero and value == 0))
    if not ok:
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} int, got {value!r}")


class _StopOnInterrupt:
    """During fit, the first Ctrl-C asks to stop after the current batch (weights stay consistent);
    a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._saved = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupted: stopping after the current batch (press Ctrl-C again to abort now)",
              file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._saved = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            signal.signal(signal.SIGINT, self._saved)
        return False


def load_model(path) -> Model:
    """Load a model written by :meth:`Model.save` (never unpickles)."""
    from .io import load_model as _load

    return _load(path)


# Input is re-exported for ``from npae.models import Input`` convenience.
__all__ += ["Input"]
