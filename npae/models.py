"""Keras's models: ``Model`` (functional) and ``Sequential``, with compile, fit, evaluate, predict,
summary, weights and model files.

One batch of ``fit``: the model gathers the batch, its path (:class:`npae.reference.ReferencePath`
with ``compile(jit_compile=False)``, else the planned fast path of :mod:`npae.fast`) runs the
forward pass, the loss and the backward pass and fills the gradients, and the optimizer updates the
weights from them; then the callbacks run. The two paths give the same numbers.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import sys
import threading
import warnings

import numpy as np

from . import callbacks as cbks
from . import losses, optimizers
from . import metrics as npae_metrics
from . import random as npae_random
from .checks import non_negative_int, pop_keras_only, positive_int
from .graph import SymbolicTensor, trace_chain
from .layers import Input, InputLayer, Layer
from .layers import deserialize as deserialize_layer
from .layers.base import check_weight, param_key, unique_name
from .reference import ReferencePath
from .saving import ModelFile, ModelFileError, write_model_file

__all__ = ["Model", "Sequential", "load_model", "Input"]


class Model:
    """A functional model: ``Model(inputs=x, outputs=h)`` (also Keras 2's ``Model(input=x, output=h)``).

    ``layers`` lists the InputLayer first, as Keras does, so ``model.layers[-1]`` is the last
    layer. A layer applied more than once (``h = d(d(x))``) has its weights once and its
    gradients summed over its uses.
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None, *, input=None, output=None,  # noqa: A002
                 trainable: bool = True, **kwargs):
        pop_keras_only("Model", kwargs, {}, strict=True)
        if not isinstance(trainable, (bool, np.bool_)):
            raise TypeError(f"Model: trainable must be True or False, got {trainable!r}")
        self._frozen = not trainable  # Keras's Model(trainable=False): every layer frozen
        inputs = inputs if inputs is not None else input
        outputs = outputs if outputs is not None else output
        self.name = name or unique_name("Functional")
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: losses.Loss | None = None
        self._metric_ids: list = []
        self.stop_training = False
        self.history = None
        self._jit_compile: bool | str = "auto"
        self._paths: dict = {}
        self.metadata: dict | None = None  # what load_model found saved with the model
        if inputs is None and outputs is None and isinstance(self, Sequential):
            self._input_layer, self._chain = None, []
            return
        if inputs is None or outputs is None:
            raise ValueError("Model: give both inputs and outputs, e.g. Model(inputs=x, outputs=h)")
        chain = trace_chain(inputs, outputs)
        self._input_layer, self._chain = chain[0], chain[1:]
        self._check_names()
        if self._frozen:
            self.trainable = False

    # -- structure -----------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The input layer, then every layer once, in order (Keras's ``model.layers``)."""
        return [self._input_layer, *self._unique_layers()]

    def _unique_layers(self) -> list[Layer]:
        return list(dict.fromkeys(self._chain))

    def _check_names(self) -> None:
        seen: dict[str, Layer] = {}
        for layer in [self._input_layer, *self._chain]:
            if layer is not None and seen.setdefault(layer.name, layer) is not layer:
                raise ValueError(f"{self.name}: two layers are named {layer.name!r}; layer names in a model must "
                                 "be unique")

    @property
    def input_shape(self) -> tuple:
        return (None, *self._input_layer.input_shape)

    @property
    def output_shape(self) -> tuple:
        last = self._chain[-1] if self._chain else self._input_layer
        return (None, *last.output_shape)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the model's weights (of its input layer, for a model without weights)."""
        fallback = self._input_layer.dtype if self._input_layer is not None else np.dtype(np.float32)
        return next((layer.dtype for layer in self._chain if layer.params), fallback)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name, or by its index in ``layers`` (Keras's ``get_layer``)."""
        if (name is None) == (index is None):
            raise ValueError("get_layer: give exactly one of name= or index=")
        if index is not None:
            layers = self.layers
            if isinstance(index, bool) or not isinstance(index, int) or not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer: index must be an int in [0, {len(layers)}), got {index!r}")
            return layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r}; the layers are {[lyr.name for lyr in self.layers]}")

    def parameters(self) -> dict[str, np.ndarray]:
        """Every weight, keyed ``"<layer name>/<weight name>"`` (the optimizer's state keys)."""
        return {param_key(layer, k): v for layer in self._unique_layers() for k, v in layer.params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients of the last training step, keyed as :meth:`parameters`, one per trainable
        weight: the arrays the paths write into, kept from step to step (the next step overwrites
        them: copy what you want to keep)."""
        want = {param_key(layer, k): layer.params[k] for layer in self._unique_layers()
                for k in layer.trainable_param_names()}
        have = self.__dict__.get("_grads")
        if have is None or have.keys() != want.keys() or any(have[k].shape != v.shape or have[k].dtype != v.dtype
                                                             for k, v in want.items()):
            have = self._grads = {k: np.zeros_like(v) for k, v in want.items()}
        return have

    @property
    def weights(self) -> list[np.ndarray]:
        """Every weight (the arrays themselves), layer by layer in Keras's order."""
        return [w for layer in self._unique_layers() for w in layer.weights]

    @property
    def trainable(self) -> bool:
        """Whether any layer of the model is trainable. Setting it sets every layer's ``trainable``
        (Keras's ``encoder.trainable = False`` freezes an encoder that shares its layers with an
        autoencoder: the autoencoder's next batches leave them alone)."""
        return any(layer.trainable for layer in self._unique_layers())

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{self.name}: trainable must be True or False, got {value!r}")
        self._frozen = not value  # (layers a Sequential adds later follow it, as in Keras)
        for layer in self._unique_layers():
            layer.trainable = bool(value)

    def _trainable_flags(self) -> tuple[bool, ...]:
        return tuple(layer.trainable for layer in self._unique_layers())

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        """The weights fit updates, layer by layer."""
        return [w for layer in self._unique_layers() for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        """The weights fit does not update through gradients (frozen layers, moving statistics)."""
        return [w for layer in self._unique_layers() for w in layer.non_trainable_weights]

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self._unique_layers())

    def get_weights(self) -> list[np.ndarray]:
        """Copies of all weights in Keras's order: layer by layer, kernel then bias."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights) -> None:
        """Set all weights from a list in :meth:`get_weights` order (e.g. from a Keras model). Every
        array is checked (count, shape, real numbers) before any is set."""
        weights = list(weights)
        targets = [(layer, k) for layer in self._unique_layers() for k in layer.param_order if k in layer.params]
        if len(weights) != len(targets):
            raise ValueError(f"{self.name}: expected {len(targets)} weight arrays, got {len(weights)}")
        checked = [check_weight(w, layer.params[k].shape, f"{layer.name}.{k}") for (layer, k), w in
                   zip(targets, weights)]
        for (layer, k), w in zip(targets, checked):
            layer.params[k][...] = w

    def astype(self, dtype) -> Model:
        """Cast every weight and optimizer slot to ``dtype`` (float64 for gradient checks)."""
        for layer in (self._input_layer, *self._unique_layers()):
            if layer is not None:
                layer.astype(dtype)
        if self.optimizer is not None:
            for slots in self.optimizer.state.values():
                for s in slots:
                    slots[s] = slots[s].astype(dtype)
        self._paths = {}
        return self

    # -- compile -------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly: bool = False, steps_per_execution: int = 1, jit_compile="auto",
                auto_scale_loss: bool = True) -> None:
        """Choose the optimizer ('rmsprop' | 'adam' | 'adadelta' | 'sgd' | an instance), the loss
        ('mse' | 'mae' | 'binary_crossentropy' | 'binary_crossentropy_clipped' | an instance) and
        the path: ``jit_compile=False`` runs every batch on the NumPy reference path
        (:mod:`npae.reference`), ``"auto"`` (Keras's default) or True on the compiled fast path
        (:mod:`npae.fast`). Both give the same numbers. The arguments are Keras's, in its order;
        ``run_eagerly=True`` means the reference path; ``loss_weights``, ``weighted_metrics``,
        ``steps_per_execution`` and ``auto_scale_loss`` are accepted only at their defaults."""
        pop_keras_only("compile", {"loss_weights": loss_weights, "weighted_metrics": weighted_metrics,
                                   "steps_per_execution": steps_per_execution, "auto_scale_loss": auto_scale_loss},
                       {"loss_weights": None, "weighted_metrics": None, "steps_per_execution": 1,
                        "auto_scale_loss": True})
        if run_eagerly:  # Keras's "run step by step, without compiling": npae's reference path
            jit_compile = False
        if loss is None:
            raise ValueError("compile: give a loss, e.g. loss='binary_crossentropy'")
        if jit_compile not in (True, False, "auto"):
            raise ValueError(f"compile: jit_compile must be True, False or 'auto', got {jit_compile!r}")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self._metric_ids = self._compile_metrics(metrics)
        self.__dict__.pop("_resolved_metrics", None)
        self._jit_compile = jit_compile
        self._paths = {}

    def _compile_metrics(self, metrics) -> list:
        """The metrics compile was given, checked: known names or functions, logged under names that
        do not collide (resolved against the output shape at first use: :attr:`_metrics`)."""
        if metrics is None:
            return []
        if isinstance(metrics, dict):
            raise NotImplementedError("compile: metrics as a dict (one list per output) is for models with several "
                                      "outputs, which npae does not have; give a list, e.g. metrics=['mae']")
        if isinstance(metrics, str) or callable(metrics) or not isinstance(metrics, (list, tuple)):
            raise TypeError(f"compile: metrics must be a list, e.g. metrics=['mae'], got {metrics!r}")
        names = [npae_metrics.name_of(m) for m in metrics]
        clash = sorted({n for n in names if names.count(n) > 1 or n == "loss"})
        if clash:
            raise ValueError(f"compile: two metrics (or a metric and the loss) would be logged as {clash}")
        return list(metrics)

    @property
    def _metrics(self) -> list[npae_metrics.Metric]:
        """The compiled metrics, resolved for the model's output shape ("accuracy" depends on it)."""
        ids = self.__dict__.get("_metric_ids")
        if not ids:
            return []
        shape = self.output_shape
        cached = self.__dict__.get("_resolved_metrics")
        if cached is None or cached[0] != shape:
            cached = self._resolved_metrics = (shape, [npae_metrics.get(m, shape) for m in ids])
        return cached[1]

    @property
    def metrics_names(self) -> list[str]:
        """The keys ``evaluate(..., return_dict=True)`` returns, in the order of its list: "loss",
        then the compiled metrics' names."""
        return ["loss", *(npae_metrics.name_of(m) for m in self.__dict__.get("_metric_ids") or [])]

    @property
    def jit_compile(self) -> bool:
        """Whether batches run on the compiled fast path (False: the NumPy reference path). Keras's
        settable property: ``model.jit_compile = False`` switches a model, compiled or not (an
        encoder that shares a compiled autoencoder's layers, say), to the reference path."""
        return self._jit_compile is not False

    @jit_compile.setter
    def jit_compile(self, value) -> None:
        if value not in (True, False, "auto"):
            raise ValueError(f"jit_compile must be True, False or 'auto', got {value!r}")
        self._jit_compile = value
        self._paths = {}

    @property
    def fuses_sigmoid_into_loss(self) -> bool:
        """Whether the last layer's sigmoid meets binary cross-entropy, computed from the logits
        (both paths do this: it is TensorFlow's stable form, not a speed trick)."""
        last = self._chain[-1] if self._chain else None
        return (type(self.loss) is losses.BinaryCrossentropy and self.loss.fusable and not self.loss.from_logits
                and last is not None and last.activation is not None and last.activation.name == "sigmoid"
                and last.activity_regularizer is None)

    @property
    def path(self):
        """What runs this model's batches: a :class:`npae.reference.ReferencePath`, or with
        ``jit_compile`` a :class:`npae.fast.FastPath`, whose ``plan(mode)`` shows the steps. On a
        machine whose kernels are not compiled yet it is a :class:`npae.fast.warm.WarmingPath`
        (the reference path until a background process has compiled them, then the fast path)
        or a :class:`npae.fast.warm.ForegroundPath` (a FastPath that says it compiles first)."""
        return self._path()

    def _path(self, jit: bool | None = None):
        """The object that runs batches: ReferencePath or the fast path's, built once per setting."""
        jit = self.jit_compile if jit is None else jit
        path = self._paths.get(jit)
        if path is None:  # (compile, astype and Sequential.add start afresh)
            dtypes = {layer.dtype for layer in self._chain if layer.params}
            if len(dtypes) > 1:
                named = ", ".join(f"{layer.name} {layer.dtype}" for layer in self._unique_layers() if layer.params)
                raise ValueError(f"{self.name}: the layers of one model must share one dtype, got {named}; cast "
                                 "them with model.astype('float32') or astype('float64')")
            fused = self.fuses_sigmoid_into_loss
            head = losses.BinaryCrossentropy(from_logits=True) if fused else self.loss
            if jit:
                from .fast.warm import fast_path_for  # the fast path imports Numba: only when asked for

                path = fast_path_for(self._chain, head, fused, self._description(), self._jit_compile == "auto",
                                     self.optimizer)
            else:
                path = ReferencePath(self._chain, head, fused)
            self._paths[jit] = path
        return path

    def _description(self) -> dict | None:
        """get_config(), where a background process can rebuild the model from it (None otherwise)."""
        from .layers import LAYER_CLASSES

        if any(type(layer).__name__ not in LAYER_CLASSES or LAYER_CLASSES[type(layer).__name__] is not type(layer)
               for layer in self._unique_layers()) or self._input_layer is None:
            return None
        try:
            config = self.get_config()
            json.dumps(config)
        except (TypeError, ValueError):
            return None
        if self.loss is not None:
            config["compile"] = {**(config["compile"] or {}), "loss": losses.serialize(self.loss)}
        return config

    def _require_compiled(self) -> None:
        if self.loss is None:
            raise RuntimeError(f"{self.name}: call compile(optimizer=..., loss=...) before fit or evaluate")

    # -- one batch -----------------------------------------------------------------------------
    def forward(self, x, training: bool = False) -> np.ndarray:
        """The output for x, layer by layer on the reference path (new arrays; for reading and
        stepping through, whatever ``compile`` chose)."""
        return ReferencePath(self._chain).forward(self._as_input(x), training)[0]

    def compute_loss(self, x, y, training: bool = True) -> float:
        """The training objective on one batch: the loss plus every activity penalty."""
        self._require_compiled()
        x, y = self._check_data(x, y)
        return self._path().loss_value(self._as_input(x), self._as_target(y), training)

    def compute_gradients(self, x, y) -> float:
        """Forward, loss and backward on one batch; fills :meth:`gradients` and returns the loss."""
        self._require_compiled()
        x, y = self._check_data(x, y)
        return self._path().gradients(self._as_input(x), self._as_target(y), self.gradients())

    def kinks(self, x, y) -> list[np.ndarray]:
        """Masks that change where the training objective at (x, y) has no derivative (for
        :func:`npae.gradcheck.check_model`)."""
        self._require_compiled()
        return self._path(jit=False).kinks(self._as_input(x), self._as_target(y))

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict: bool = False):
        """One optimizer step on one batch; returns the loss before the step (no step if it is
        not finite), or with compiled metrics ``[loss, *metrics]`` (a dict with ``return_dict``),
        the metrics on the outputs of the same forward pass, as Keras. ``sample_weight`` and
        ``class_weight`` (Keras's) are not supported: only None."""
        pop_keras_only("train_on_batch", {"sample_weight": sample_weight, "class_weight": class_weight},
                       {"sample_weight": None, "class_weight": None})
        self._require_compiled()
        x, y = self._check_batch(x, y, "train_on_batch")
        xb, yb = self._as_input(x), self._as_target(y)
        pb = np.empty_like(yb) if self._metrics else None
        value = self._path().gradients(xb, yb, self.gradients()) if pb is None else \
            self._path().gradients(xb, yb, self.gradients(), output=pb)
        if math.isfinite(value):
            self._path().step(self.optimizer, self.parameters(), self.gradients())
        return self._batch_result(value, yb, pb, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict: bool = False):
        """The loss (penalties included) on one batch, in inference mode (with compiled metrics:
        as :meth:`train_on_batch` returns them). ``sample_weight`` is not supported: only None."""
        pop_keras_only("test_on_batch", {"sample_weight": sample_weight}, {"sample_weight": None})
        self._require_compiled()
        x, y = self._check_batch(x, y, "test_on_batch")
        xb, yb = self._as_input(x), self._as_target(y)
        pb = np.empty_like(yb) if self._metrics else None
        value = self._path().loss_value(xb, yb) if pb is None else self._path().loss_value(xb, yb, output=pb)
        return self._batch_result(value, yb, pb, return_dict)

    def _check_batch(self, x, y, where: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._check_data(x, y)
        if len(x) == 0:
            raise ValueError(f"{self.name}: {where} got an empty batch (x has shape {x.shape}): a batch needs at "
                             "least one sample")
        self.loss.check_targets(y)
        return x, y

    def _batch_result(self, value: float, y: np.ndarray, output: np.ndarray | None, return_dict: bool):
        sums = _Sums(self._metrics)
        sums.add(value, y, output)
        logs = sums.means()
        if return_dict:
            return logs
        return logs["loss"] if not self._metrics else [logs[k] for k in self.metrics_names]

    def predict_on_batch(self, x) -> np.ndarray:
        """The output for one batch."""
        return self.predict(x, batch_size=max(len(np.asarray(x)), 1), verbose=0)

    # -- data ----------------------------------------------------------------------------------
    def _check_x(self, x, what: str = "x") -> np.ndarray:
        x = np.asarray(x)
        want = self.input_shape[1:]
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: {what} must hold real numbers, got dtype {x.dtype}")
        if x.ndim != len(want) + 1 or x.shape[1:] != want:
            raise ValueError(f"{self.name}: expected {what} of shape (n, {', '.join(map(str, want))}), got {x.shape}")
        return x

    def _check_data(self, x, y, what: str = "") -> tuple[np.ndarray, np.ndarray]:
        x = self._check_x(x, f"{what}x")
        if y is None:
            raise ValueError(f"{self.name}: give {what}y, the targets (for an autoencoder y is x: fit(x, x))")
        y = np.asarray(y)
        want = self.output_shape[1:]
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: {what}y must hold real numbers, got dtype {y.dtype}")
        if y.shape != (len(x), *want):
            raise ValueError(f"{self.name}: expected {what}y of shape ({len(x)}, {', '.join(map(str, want))}) to "
                             f"match {what}x and the model's output, got {y.shape}")
        return x, y

    def _as_input(self, x) -> np.ndarray:
        return np.ascontiguousarray(self._check_x(x), dtype=self.dtype)

    def _as_target(self, y) -> np.ndarray:
        return np.ascontiguousarray(y, dtype=self.dtype)

    # -- fit / evaluate / predict --------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose="auto", callbacks=None,
            validation_split: float = 0.0, validation_data=None, shuffle: bool = True, class_weight=None,
            sample_weight=None, initial_epoch: int = 0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, *, seed: int | None = None):
        """Train for ``epochs`` passes over (x, y) in shuffled mini-batches; returns a History.

        Each epoch logs ``loss`` (the sample-weighted mean of the batch losses, penalties
        included), each compiled metric (its mean over the epoch's samples, computed on the
        outputs of the same forward passes) and, with ``validation_data=(xv, yv)`` or
        ``validation_split`` (the last fraction of x and y, taken before shuffling, as Keras),
        ``val_loss`` and ``val_<metric>``. A non-finite loss
        stops training before its batch is applied. Ctrl-C stops after the current batch: the
        interrupted epoch is not counted (``history.interrupted`` is True). ``initial_epoch``
        (Keras's meaning): run epochs ``initial_epoch .. epochs - 1``, e.g. to resume after
        :meth:`load_weights`; with a ``seed`` the resumed run is the same as an unbroken one.
        ``verbose``: 0 silent, 1 or "auto" a progress bar, 2 one line per epoch. The arguments
        are Keras's, in its order; ``class_weight``, ``sample_weight``, ``steps_per_epoch``,
        ``validation_steps``, ``validation_batch_size`` and ``validation_freq`` are accepted only
        at their defaults (npae does not implement them: anything else is a NotImplementedError).
        """
        pop_keras_only("fit", {"class_weight": class_weight, "sample_weight": sample_weight,
                               "steps_per_epoch": steps_per_epoch, "validation_steps": validation_steps,
                               "validation_batch_size": validation_batch_size, "validation_freq": validation_freq},
                       {"class_weight": None, "sample_weight": None, "steps_per_epoch": None,
                        "validation_steps": None, "validation_batch_size": None, "validation_freq": 1})
        self._require_compiled()
        verbose = cbks.verbosity(verbose, "fit")
        batch_size = 32 if batch_size is None else positive_int(batch_size, "fit: batch_size")
        epochs = non_negative_int(epochs, "fit: epochs")
        initial_epoch = non_negative_int(initial_epoch, "fit: initial_epoch")
        if seed is not None:
            seed = non_negative_int(seed, "fit: seed")
        x, y = self._check_data(x, y)
        if validation_split:
            x, y, validation_data = _split_off(x, y, validation_split, validation_data)
        if len(x) == 0:
            raise ValueError(f"{self.name}: fit got no training samples (x has shape {x.shape})")
        self.loss.check_targets(y)
        if validation_data is not None:
            validation_data = self._check_validation(validation_data)
        # with a seed, epoch e shuffles with its own generator seeded (seed, e): a run resumed at
        # initial_epoch=e sees the same batches as one that never stopped
        rng = npae_random.get_generator()
        n, steps = len(x), math.ceil(len(x) / batch_size)
        names = self.metrics_names
        logged = [*names, *([f"val_{k}" for k in names] if validation_data is not None else [])]
        callbacks = cbks.CallbackList(callbacks, model=self, verbose=verbose, epochs=epochs, steps=steps,
                                      metrics=logged)
        path, flags = self._path(), None
        xbuf = np.empty((min(batch_size, n), *x.shape[1:]), dtype=self.dtype)  # reused every batch
        ybuf = None if y is x else np.empty((min(batch_size, n), *y.shape[1:]), dtype=self.dtype)
        pbuf = np.empty((min(batch_size, n), *y.shape[1:]), dtype=self.dtype) if self._metrics else None
        self.stop_training = False
        callbacks.on_train_begin()
        with _StopOnInterrupt() as interrupt:
            for epoch in range(initial_epoch, epochs):
                if seed is not None:
                    rng = np.random.default_rng([seed, epoch])
                order = rng.permutation(n) if shuffle else np.arange(n)
                callbacks.on_epoch_begin(epoch)
                sums, diverged = _Sums(self._metrics), False
                for step in range(steps):
                    idx = order[step * batch_size:(step + 1) * batch_size]
                    xb = _gather(path, x, idx, xbuf)  # (B, ...) views of the buffers
                    yb = xb if y is x else _gather(path, y, idx, ybuf)  # an autoencoder's target is its input
                    pb = None if pbuf is None else pbuf[:len(idx)]  # the outputs, for the metrics
                    callbacks.on_train_batch_begin(step)
                    if flags != (now := self._trainable_flags()):  # a callback froze or unfroze a layer
                        flags, params, grads = now, self.parameters(), self.gradients()
                    value = path.gradients(xb, yb, grads) if pb is None else path.gradients(xb, yb, grads, output=pb)
                    if not callbacks.on_batch_loss(epoch, step, value):
                        diverged = True  # non-finite loss: the step is not applied
                        break
                    path.step(self.optimizer, params, grads)
                    sums.add(value, yb, pb)
                    callbacks.on_train_batch_end(step, sums.means())
                    if interrupt.requested or self.stop_training:
                        break
                # an epoch cut short by Ctrl-C or a diverging loss is not an epoch; one a callback
                # stopped (stop_training) ends as in Keras: validated and logged over its batches
                if interrupt.requested or diverged:
                    break
                logs = sums.means()
                if validation_data is not None:
                    val = self._evaluate(*validation_data, batch_size)
                    logs.update({f"val_{k}": v for k, v in val.items()})
                callbacks.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        callbacks.history.interrupted = interrupt.requested
        callbacks.on_train_end()
        self.history = callbacks.history
        return self.history

    def _check_validation(self, data):
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            what = f"a {type(data).__name__}" + (f" of {len(data)}" if isinstance(data, (tuple, list)) else "")
            raise ValueError(f"{self.name}: validation_data must be a tuple (x_val, y_val), got {what}")
        if len(data) == 3 and data[2] is not None:
            raise NotImplementedError(f"{self.name}: validation_data with sample weights (x, y, sample_weight) is "
                                      "not supported by npae")
        xv, yv = self._check_data(data[0], data[1], "validation ")
        if len(xv) == 0:
            raise ValueError(f"{self.name}: validation_data holds no samples")
        self.loss.check_targets(yv, "validation y")
        return xv, yv

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict: bool = False):
        """The loss (penalties included) over (x, y), computed in batches in inference mode, as a
        float; with compiled metrics the list ``[loss, *metrics]`` (in :attr:`metrics_names`'
        order), or with ``return_dict`` a dict of them (Keras's return values). ``verbose``: 0
        silent, 1 or "auto" a progress bar, 2 one line. ``sample_weight``, ``steps`` and
        ``callbacks`` (Keras's) are not supported: only None."""
        pop_keras_only("evaluate", {"sample_weight": sample_weight, "steps": steps, "callbacks": callbacks},
                       {"sample_weight": None, "steps": None, "callbacks": None})
        self._require_compiled()
        verbose = cbks.verbosity(verbose, "evaluate")
        batch_size = 32 if batch_size is None else positive_int(batch_size, "evaluate: batch_size")
        x, y = self._check_data(x, y)
        if len(x) == 0:
            raise ValueError(f"{self.name}: evaluate got no samples (x has shape {x.shape})")
        self.loss.check_targets(y)
        logs = self._evaluate(x, y, batch_size, verbose)
        if return_dict:
            return logs
        return logs["loss"] if not self._metrics else [logs[k] for k in self.metrics_names]

    def _evaluate(self, x, y, batch_size, verbose: int = 0) -> dict[str, float]:
        path, sums = self._path(), _Sums(self._metrics)
        bar = _pass_bar(verbose, math.ceil(len(x) / batch_size))
        pbuf = np.empty((min(batch_size, len(x)), *y.shape[1:]), dtype=self.dtype) if self._metrics else None
        for step, s in enumerate(range(0, len(x), batch_size)):
            xb = np.ascontiguousarray(x[s:s + batch_size], dtype=self.dtype)
            yb = self._as_target(y[s:s + batch_size])
            pb = None if pbuf is None else pbuf[:len(xb)]
            value = path.loss_value(xb, yb) if pb is None else path.loss_value(xb, yb, output=pb)
            sums.add(value, yb, pb)
            if bar is not None:
                bar.on_batch_end(step, sums.means())
        logs = sums.means()
        if bar is not None:
            bar.on_epoch_end(0, logs)
        return logs

    def predict(self, x, batch_size: int | None = None, verbose="auto", steps=None, callbacks=None) -> np.ndarray:
        """Outputs (n, *output_shape), computed batch by batch into one array. ``verbose``: 0
        silent, 1 or "auto" a progress bar, 2 one line. ``steps`` and ``callbacks`` (Keras's) are
        not supported: only None."""
        pop_keras_only("predict", {"steps": steps, "callbacks": callbacks}, {"steps": None, "callbacks": None})
        verbose = cbks.verbosity(verbose, "predict")
        batch_size = 32 if batch_size is None else positive_int(batch_size, "predict: batch_size")
        x = self._check_x(x)
        out = np.empty((len(x), *self.output_shape[1:]), dtype=self.dtype)
        path = self._path()
        bar = _pass_bar(verbose, math.ceil(len(x) / batch_size))
        for step, s in enumerate(range(0, len(x), batch_size)):
            path.predict(np.ascontiguousarray(x[s:s + batch_size], dtype=self.dtype), out[s:s + batch_size])
            if bar is not None:
                bar.on_batch_end(step)
        if bar is not None:
            bar.on_epoch_end(0)
        return out

    def __call__(self, x, training: bool = False):
        """Data in, data out: the output for the whole array x, on the model's path."""
        if isinstance(x, SymbolicTensor):
            raise TypeError("npae models cannot be nested in other models; call their layers instead")
        if training:
            return self.forward(x, training=True)
        return self.predict(x, batch_size=256, verbose=0)  # (in batches: one huge batch would keep its buffers)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_paths"] = {}  # (rebuilt on first use: plans hold per-thread workspaces)
        return state

    def __deepcopy__(self, memo):
        clone = copy.copy(self)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            if key != "_paths":
                setattr(clone, key, copy.deepcopy(value, memo))
        clone._paths = {}
        return clone

    # -- reporting and files ------------------------------------------------------------------
    def summary(self, print_fn=print) -> None:
        """Print layers, output shapes and parameter counts the way Keras does."""
        if self._input_layer is None:
            raise ValueError(f"{self.name}: this model has not been built yet; start it with Input(shape=...) "
                             "or call build(input_shape) first")
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
        trainable = sum(w.size for w in self.trainable_weights)
        print_fn(f"Total params: {self.count_params():,}\nTrainable params: {trainable:,}\n"
                 f"Non-trainable params: {self.count_params() - trainable:,}")
        print_fn("_" * sum(w))

    def get_config(self) -> dict:
        """The JSON description of the architecture (and compile settings) a model file holds."""
        if self._input_layer is None:
            raise ValueError(f"{self.name}: a model without an input shape cannot be described")
        first_use: dict[int, int] = {}
        specs = []
        for i, layer in enumerate(self._chain):
            if id(layer) in first_use:  # a shared layer: its first use holds it
                specs.append({"class_name": "SharedLayer", "config": {"index": first_use[id(layer)]}})
            else:
                first_use[id(layer)] = i
                specs.append({"class_name": type(layer).__name__, "config": layer.get_config()})
        opt = self.optimizer
        return {"class_name": type(self).__name__, "name": self.name, "input_shape": list(self.input_shape[1:]),
                "dtype": self.dtype.name, "input_name": self._input_layer.name, "layers": specs,
                "compile": None if opt is None else {"optimizer": opt.get_config(), "loss": losses.serialize(self.loss),
                                                     "metrics": [m for m in self._metric_ids
                                                                 if isinstance(m, str)],
                                                     "iterations": opt.iterations, "jit_compile": self._jit_compile}}

    def to_json(self, **kwargs) -> str:
        """The architecture as a JSON string (Keras's ``to_json``): the layers and their settings,
        no weights and no compile settings; :func:`model_from_json` rebuilds it (with fresh
        weights). ``kwargs`` go to ``json.dumps`` (e.g. ``indent=2``)."""
        config = self.get_config()
        config["compile"] = None
        return json.dumps({"format": JSON_FORMAT, "class_name": config["class_name"], "config": config}, **kwargs)

    def save(self, path, *, metadata: dict | None = None) -> None:
        """Architecture, weights and optimizer state in one .npz, written atomically; ``metadata``
        (JSON-serialisable) is stored with them, and comes back as ``load_model(path).metadata``."""
        path = os.fspath(path)
        if path.endswith((".keras", ".h5", ".hdf5")):
            raise ValueError(f"save: {path!r} names a Keras format; npae writes its own .npz model files "
                             "(e.g. 'model.npz'), which Keras cannot read; move weights with get_weights()")
        config = self.get_config()
        if metadata is not None:
            json.dumps(metadata)  # (a clear TypeError now, not a half-written file later)
            config["metadata"] = metadata
        unsaved = [npae_metrics.name_of(m) for m in self._metric_ids if not isinstance(m, str)]
        if unsaved:
            warnings.warn(f"save: the metric functions {unsaved} are not saved (a file holds no code); after "
                          "load_model, compile again with them to log them", stacklevel=2)
        opt = self.optimizer
        slot_keys = [(k, s) for k, slots in (opt.state.items() if opt else []) for s in slots]
        if config["compile"] is not None:
            config["compile"]["slots"] = [list(ks) for ks in slot_keys]
        arrays = {f"weight_{i}": w for i, w in enumerate(self.get_weights())}
        arrays.update({f"opt_{j}": opt.state[k][s] for j, (k, s) in enumerate(slot_keys)})
        write_model_file(path, config, arrays)

    def save_weights(self, path) -> None:
        """The architecture and weights, without the optimizer, in one .npz written atomically
        (:meth:`load_weights` reads it back; so does :func:`load_model`, uncompiled)."""
        path = os.fspath(path)
        if path.endswith((".h5", ".hdf5", ".keras")):
            raise ValueError(f"save_weights: {path!r} names a Keras format; npae writes .npz files "
                             "(e.g. 'model.weights.npz')")
        config = self.get_config()
        config["compile"] = None
        write_model_file(path, config, {f"weight_{i}": w for i, w in enumerate(self.get_weights())})

    def load_weights(self, path) -> None:
        """Copy the weights (and, when both models use the same optimizer, its state and step
        count) from a model file written by :meth:`save` into this model, which must have the same
        layers in the same order. Used to resume training; errors name what differs."""
        def layout(model):
            return [(type(layer).__name__, {k: v.shape for k, v in layer.params.items()})
                    for layer in model._unique_layers()]

        other = load_model(path)
        mine, theirs = layout(self), layout(other)
        if mine != theirs:
            raise ModelFileError(f"{path!s}: holds a different architecture: expected layers {mine}, got {theirs}")
        self.set_weights(other.get_weights())
        opt, saved = self.optimizer, other.optimizer
        if opt is not None and saved is not None and opt.get_config() == saved.get_config():
            opt.iterations = saved.iterations
            # optimizer state is keyed "<layer name>/<weight>"; names may differ between
            # processes, so parameters are matched by position
            opt.state = {key: {s: a.copy() for s, a in saved.state[old].items()}
                         for key, old in zip(self.parameters(), other.parameters()) if old in saved.state}


class Sequential(Model):
    """A plain stack: ``Sequential([Input(shape=(784,)), Dense(64, activation='relu'), ...])``.
    Unlike functional models its ``layers`` omit the InputLayer, as in Keras."""

    def __init__(self, layers=None, name: str | None = None, **kwargs):
        super().__init__(name=name or unique_name("Sequential"), **kwargs)
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self) -> list[Layer]:
        return self._unique_layers()

    def add(self, layer) -> None:
        if isinstance(layer, SymbolicTensor):
            if self._input_layer is not None or self._chain:
                raise ValueError(f"{self.name}: an Input can only come first")
            self._input_layer = layer.layer
            return
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._chain:
                raise ValueError(f"{self.name}: an InputLayer can only come first")
            self._input_layer = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}: expected a layer, got {type(layer).__name__}")
        if self._input_layer is None and not self._chain and layer.input_shape is not None:
            self._input_layer = InputLayer(layer.input_shape)
        self._chain.append(layer)
        if self.__dict__.get("_frozen"):
            layer.trainable = False
        if self._input_layer is not None:
            try:
                self.build()
            except ValueError:
                self._chain.pop()
                raise
        self._check_names()
        self._paths = {}

    def build(self, input_shape=None) -> None:
        """Build every layer for ``input_shape`` (without batch axis), checking each link."""
        if self._input_layer is None:
            if input_shape is None:
                raise ValueError(f"{self.name}: the input shape is unknown; start with Input(shape=...)")
            self._input_layer = InputLayer(tuple(input_shape))
        t = SymbolicTensor(self._input_layer.input_shape, layer=self._input_layer)
        for layer in self._chain:
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


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


#: A model description whose weights would take more than this is refused before any allocation.
MAX_MODEL_BYTES = _physical_memory() // 2


class _Blueprint:
    """What a model description asks for, worked out without allocating a weight: the layers
    (unbuilt), the input, and each weight's key, shape and dtype in ``get_weights`` order."""

    def __init__(self, config: dict, custom_objects: dict | None):
        if not isinstance(config, dict):
            raise ValueError(f"a model description is a JSON object, got {type(config).__name__}")
        specs, shape = config["layers"], config["input_shape"]
        if not isinstance(specs, list) or not isinstance(shape, list):
            raise ValueError("'layers' and 'input_shape' must be lists")
        self.config = config
        self.input = Input(shape=tuple(shape), name=config.get("input_name"), dtype=config["dtype"])
        self.chain: list[Layer] = []
        self.weights: list[tuple[str, tuple[int, ...], np.dtype]] = []
        seen: dict[int, tuple[int, ...]] = {}
        current = self.input.sample_shape
        for spec in specs:
            if isinstance(spec, dict) and spec.get("class_name") == "SharedLayer":
                index = spec.get("config", {}).get("index") if isinstance(spec.get("config"), dict) else None
                if not isinstance(index, int) or not 0 <= index < len(self.chain):
                    raise ValueError(f"a shared layer must name an earlier layer's index, got {spec!r}")
                layer = self.chain[index]
                if seen[id(layer)] != current:
                    raise ValueError(f"{layer.name} is applied to shapes {seen[id(layer)]} and {current}")
            else:
                layer = deserialize_layer(spec, custom_objects)
                seen[id(layer)] = current
                shapes = layer.weight_shapes(current)
                for key in layer.param_order:
                    if key in shapes:
                        self.weights.append((param_key(layer, key), tuple(shapes[key]), layer.dtype))
            current = tuple(layer.compute_output_shape(current))
            self.chain.append(layer)
        need = sum(math.prod(shape) * dtype.itemsize for _, shape, dtype in self.weights)
        if need > MAX_MODEL_BYTES:
            raise ValueError(f"its weights would take {need / 2**30:,.1f} GiB, more than half of this machine's "
                             f"memory ({MAX_MODEL_BYTES / 2**30:,.1f} GiB)")

    def build(self) -> Model:
        """The model itself (now the weights are allocated)."""
        t = self.input
        for layer in self.chain:
            t = layer(t)
        config = self.config
        if config.get("class_name") == "Sequential":
            model = Sequential(name=config.get("name"))
            model._input_layer, model._chain = self.input.layer, list(self.chain)
            return model
        return Model(self.input, t, name=config.get("name"))


JSON_FORMAT = "npae.model"  # what to_json writes, so that model_from_json knows its own JSON


def model_from_json(json_string: str, custom_objects: dict | None = None) -> Model:
    """The (uncompiled) model :meth:`Model.to_json` described, weights freshly initialised
    (Keras's ``model_from_json``); ``custom_objects`` maps class names to Layer subclasses.
    A Keras model's JSON is refused with a ValueError that says so."""
    try:
        spec = json.loads(json_string)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model_from_json: expected the JSON string Model.to_json() returns: {err}") from None
    if not isinstance(spec, dict) or spec.get("format") != JSON_FORMAT or not isinstance(spec.get("config"), dict):
        keras = isinstance(spec, dict) and ("module" in spec or "keras_version" in spec or "backend" in spec)
        raise ValueError("model_from_json: " + (
            "this JSON describes a Keras model (Keras's to_json); npae reads the JSON of npae's own to_json. Build the "
            "model with npae.layers and move the weights with get_weights() / set_weights()" if keras else
            f"expected the JSON object Model.to_json() returns ({{'format': '{JSON_FORMAT}', 'config': ...}})"))
    try:
        return model_from_config(spec["config"], custom_objects)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ValueError(f"model_from_json: the JSON does not describe a consistent model: {type(err).__name__}: "
                         f"{err}") from None


def model_from_config(config: dict, custom_objects: dict | None = None) -> Model:
    """The (uncompiled) model a :meth:`Model.get_config` description gives, weights freshly initialised."""
    return _Blueprint(config, custom_objects).build()


def load_model(path, custom_objects: dict | None = None, compile: bool = True) -> Model:  # noqa: A002
    """Load a model written by :meth:`Model.save` (never unpickles): its architecture, weights and,
    with ``compile``, its optimizer and loss with the optimizer's state.

    Every array is checked against what the description asks for (count, shape, float dtype)
    before the model is built; anything inconsistent is a :class:`ModelFileError`."""
    with ModelFile(path) as mf:
        try:
            plan = _Blueprint(mf.config, custom_objects)
            if mf.config.get("metadata") is not None and not isinstance(mf.config["metadata"], dict):
                raise ValueError("'metadata' must be a JSON object")
            names = set(mf.names())
            stored = sum(1 for n in names if n.startswith("weight_"))
            if stored != len(plan.weights) or any(f"weight_{i}" not in names for i in range(stored)):
                raise ModelFileError(f"{path!s}: holds {stored} weight arrays, its description asks for "
                                     f"{len(plan.weights)}")
            for i, (_, shape, _) in enumerate(plan.weights):
                mf.check(f"weight_{i}", shape)
            comp, slots = mf.config.get("compile"), []
            if comp is not None and compile:
                if not isinstance(comp, dict):
                    raise ValueError("'compile' must be a JSON object")
                optimizer = optimizers.get(comp["optimizer"])
                loss = losses.get(comp["loss"])
                iterations = comp["iterations"]
                shapes = {key: shape for key, shape, _ in plan.weights}
                if not isinstance(comp["slots"], list):
                    raise ValueError("'slots' must be a list")
                for j, pair in enumerate(comp["slots"]):
                    if not (isinstance(pair, list) and len(pair) == 2 and pair[0] in shapes
                            and pair[1] in optimizer.slot_names()):
                        raise ModelFileError(f"{path!s}: optimizer slot {pair!r} does not belong to this model and "
                                             f"its {type(optimizer).__name__}")
                    mf.check(f"opt_{j}", shapes[pair[0]])
                    slots.append((j, *pair))
            model = plan.build()
            model.set_weights([mf.array(f"weight_{i}", shape) for i, (_, shape, _) in enumerate(plan.weights)])
            if comp is not None and compile:
                jit = comp.get("jit_compile", "auto")
                jit = jit if jit in (True, False, "auto") else "auto"
                metrics = comp.get("metrics") or []
                if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
                    raise ValueError(f"'metrics' must be a list of metric names, got {metrics!r}")
                model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit)
                model.optimizer.iterations = iterations
                params = model.parameters()
                for j, key, slot in slots:
                    array = mf.array(f"opt_{j}", params[key].shape)
                    model.optimizer.state.setdefault(key, {})[slot] = array.astype(params[key].dtype)
            model.metadata = mf.config.get("metadata")
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, NotImplementedError) as err:
            raise ModelFileError(f"{path!s}: the file does not describe a consistent model: "
                                 f"{type(err).__name__}: {err}") from None
    return model


def _split_off(x, y, fraction, validation_data):
    """Keras's validation_split: the last ``fraction`` of the samples, before any shuffling."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fit: validation_split must be a number in (0, 1), got {fraction!r}")
    if validation_data is not None:
        warnings.warn("fit: validation_data is given, so validation_split is not used", stacklevel=3)
        return x, y, validation_data
    cut = int(len(x) * (1 - fraction))
    if cut == 0 or cut == len(x):
        raise ValueError(f"fit: validation_split={fraction} of {len(x)} samples leaves an empty training or "
                         "validation set")
    return x[:cut], y[:cut], (x[cut:], y[cut:])


class _Sums:
    """Running sums of the loss and the metrics over the samples of an epoch (or an evaluation),
    each batch weighted by its size."""

    def __init__(self, metrics: list):
        self.metrics, self.loss, self.n = metrics, 0.0, 0
        self.values, self.counts = [0.0] * len(metrics), [0] * len(metrics)

    def add(self, loss: float, y: np.ndarray, output: np.ndarray | None) -> None:
        self.loss += loss * len(y)
        self.n += len(y)
        for i, metric in enumerate(self.metrics):
            total, count = metric.batch_sum(y, output)
            self.values[i] += total
            self.counts[i] += count

    def means(self) -> dict[str, float]:
        return {"loss": self.loss / max(self.n, 1),
                **{m.name: v / max(c, 1) for m, v, c in zip(self.metrics, self.values, self.counts)}}


def _pass_bar(verbose: int, steps: int):
    """The progress bar of one evaluate or predict pass, or None when silent (or with no batch)."""
    if not verbose or steps == 0:
        return None
    bar = cbks.ProgbarLogger(verbose, epochs=None, steps=steps)
    bar.on_epoch_begin(0)
    return bar


def _gather(path, src: np.ndarray, idx: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """Copy rows ``src[idx]`` into the front of ``buf`` (the path's way: on all cores on the fast path)."""
    return path.gather(src, idx, buf[:len(idx)])


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


__all__ += ["model_from_config", "model_from_json"]
