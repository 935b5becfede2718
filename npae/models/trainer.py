"""Keras's ``Trainer``: compile, the path that runs batches, ``*_on_batch``, and the fit, evaluate
and predict loops (a base class of :class:`npae.models.Model`).

One batch of ``fit``: the trainer gathers the batch (one array per input and target), its path
(:class:`npae.reference.ReferencePath` with ``compile(jit_compile=False)``, else the planned fast
path of :mod:`npae.fast`) runs the forward pass, the losses and the backward pass and fills the
gradients, and the optimizer updates the weights from them; then the callbacks run. The two
paths give the same numbers.
"""

from __future__ import annotations

import json
import math

import numpy as np

from .. import callbacks as cbks
from .. import losses as npae_losses
from .. import optimizers
from .. import random as npae_random
from ..checks import non_negative_int, pop_keras_only, positive_int
from ..paths import Losses
from ..reference import ReferencePath
from .data import Batches, StopOnInterrupt, Sums, is_batches, pass_bar, split_batch, split_off
from .files import MAX_MODEL_BYTES
from .objective import Objective, build_objective

__all__ = ["Trainer"]


class Trainer:
    """Compile, fit, evaluate, predict (see the module docstring). Needs from the model:
    ``flat``, ``input_names``, ``output_names``, ``graph``, ``dtype``, ``parameters()``,
    ``gradients()``, ``_unique_layers()``, ``_trainable_flags()``, ``_build_for()``."""

    def __init__(self):
        self.optimizer: optimizers.Optimizer | None = None
        self.objective: Objective | None = None
        self._compile_args: dict | None = None
        self.stop_training = False
        self.history = None
        self._jit_compile: bool | str = "auto"
        self._paths: dict = {}
        self.metadata: dict | None = None  # what load_model found saved with the model

    # -- compile -------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly: bool = False, steps_per_execution: int = 1, jit_compile="auto",
                auto_scale_loss: bool = True) -> None:
        """Choose the optimizer ('rmsprop' | 'adam' | 'adadelta' | 'sgd' | an instance), the loss
        ('mse' | 'mae' | 'binary_crossentropy' | 'binary_crossentropy_clipped' | a Loss; for several
        outputs one for all, a list or a dict by output name), ``loss_weights`` (a list or dict),
        the metrics (see :mod:`npae.models.objective`) and the path: ``jit_compile=False`` runs
        every batch on the NumPy reference path (:mod:`npae.reference`), ``"auto"`` (Keras's
        default) or True on the compiled fast path (:mod:`npae.fast`). Both give the same numbers.
        The arguments are Keras's, in its order; ``run_eagerly=True`` means the reference path;
        ``weighted_metrics``, ``steps_per_execution`` and ``auto_scale_loss`` are accepted only at
        their defaults."""
        pop_keras_only("compile", {"weighted_metrics": weighted_metrics, "steps_per_execution": steps_per_execution,
                                   "auto_scale_loss": auto_scale_loss},
                       {"weighted_metrics": None, "steps_per_execution": 1, "auto_scale_loss": True})
        if run_eagerly:  # Keras's "run step by step, without compiling": npae's reference path
            jit_compile = False
        if loss is None:
            raise ValueError("compile: give a loss, e.g. loss='binary_crossentropy'")
        if jit_compile not in (True, False, "auto"):
            raise ValueError(f"compile: jit_compile must be True, False or 'auto', got {jit_compile!r}")
        self.optimizer = optimizers.get(optimizer)
        self._compile_args = {"loss": loss, "loss_weights": loss_weights, "metrics": metrics}
        self.objective = None
        if self._graph_ready():
            self.objective = build_objective(loss, loss_weights, metrics, self.output_names)
        else:  # a subclass or an empty Sequential: checked now for one output, again once built
            build_objective(loss, loss_weights, metrics, ["output"]) if not isinstance(loss, (list, dict)) else None
        self._jit_compile = jit_compile
        self._paths = {}

    def _graph_ready(self) -> bool:
        return self.__dict__.get("_graph") is not None

    @property
    def loss(self):
        """The loss compile was given (one Loss; a list or dict of them as given, resolved)."""
        obj = self._objective_or_none()
        if obj is None:
            return None if self._compile_args is None else npae_losses.get(self._compile_args["loss"]) \
                if not isinstance(self._compile_args["loss"], (list, tuple, dict)) else self._compile_args["loss"]
        if len(obj.losses) == 1:
            return obj.losses[0]
        if self._out_form == "dict" or isinstance(self._compile_args["loss"], dict):
            return {n: loss for n, loss in zip(obj.names, obj.losses) if loss is not None}
        return list(obj.losses)

    def _objective_or_none(self) -> Objective | None:
        if self.objective is None and self._compile_args is not None and self._graph_ready():
            self.objective = build_objective(**self._compile_args, names=self.output_names)
        return self.objective

    def _require_compiled(self) -> Objective:
        obj = self._objective_or_none()
        if obj is None:
            raise RuntimeError(f"{self.name}: call compile(optimizer=..., loss=...) before fit or evaluate")
        return obj

    @property
    def metrics_names(self) -> list[str]:
        """The keys ``evaluate(..., return_dict=True)`` returns, in the order of its list: "loss",
        each output's loss (for several), then the compiled metrics' names."""
        obj = self._objective_or_none()
        if obj is None and self._compile_args is not None and not isinstance(self._compile_args["loss"], (list, dict)):
            obj = build_objective(**self._compile_args, names=["output"])  # (not built yet: one output, as Keras)
        return obj.log_names if obj is not None else ["loss"]

    def _metrics(self) -> list[list]:
        """Per output, the compiled metrics resolved for its shape."""
        obj = self._require_compiled()
        shapes = [t.shape for t in self.graph.outputs]
        cached = self.__dict__.get("_resolved_metrics")
        if cached is None or cached[0] is not obj:
            cached = self._resolved_metrics = (obj, obj.resolved_metrics(shapes))
        return cached[1]

    def _compile_config(self) -> dict | None:
        """The compile settings a model file keeps (metric functions are not kept: no code in files)."""
        obj, opt = self._objective_or_none(), self.optimizer
        if opt is None or obj is None:
            return None
        names = [n for ids in obj.metric_ids for n in ids if isinstance(n, str)]
        per_output = [[m for m in ids if isinstance(m, str)] for ids in obj.metric_ids]
        config = {"optimizer": opt.get_config(), "iterations": opt.iterations, "jit_compile": self._jit_compile,
                  "metrics": names if len(obj.names) == 1 else None}
        if len(obj.names) == 1:
            config["loss"] = npae_losses.serialize(obj.losses[0])
        else:
            config["loss"] = [None if loss is None else npae_losses.serialize(loss) for loss in obj.losses]
            config["loss_weights"] = list(obj.weights)
            config["output_metrics"] = per_output
        return config

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
        """Whether an output's sigmoid meets binary cross-entropy, computed from the logits (both
        paths do this: it is TensorFlow's stable form, not a speed trick)."""
        obj = self._objective_or_none()
        return obj is not None and any(h.logits for h in obj.heads(self.flat))

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
            layers = [layer for layer in self._unique_layers() if layer.params]
            if len({layer.dtype for layer in layers}) > 1:
                named = ", ".join(f"{layer.name} {layer.dtype}" for layer in layers)
                raise ValueError(f"{self.name}: the layers of one model must share one dtype, got {named}; cast "
                                 "them with model.astype('float32') or astype('float64')")
            obj = self._objective_or_none()
            heads = obj.heads(self.flat) if obj is not None else []
            if jit:
                from ..fast.warm import fast_path_for  # the fast path imports Numba: only when asked for

                path = fast_path_for(self.flat, heads, self._description(), self._jit_compile == "auto",
                                     self.optimizer)
            else:
                path = ReferencePath(self.flat, heads)
            self._paths[jit] = path
        return path

    def _description(self) -> dict | None:
        """get_config(), where a background process can rebuild the model from it (None otherwise)."""
        from ..layers import LAYER_CLASSES

        if any(LAYER_CLASSES.get(type(layer).__name__) is not type(layer) for layer in self._unique_layers()):
            return None
        try:
            config = self.get_config()
            json.dumps(config)
        except (TypeError, ValueError, NotImplementedError):
            return None
        return config

    def _cast_optimizer(self, dtype) -> None:
        if self.optimizer is not None:
            for slots in self.optimizer.state.values():
                for s in slots:
                    slots[s] = slots[s].astype(dtype)
        self._paths = {}

    # -- data ----------------------------------------------------------------------------------
    def _inputs_of(self, x, what: str = "x") -> list[np.ndarray]:
        """x as one checked array per model input (built first for a subclass or a Sequential
        without an Input, from x's shapes)."""
        if not self._graph_ready():
            arrays, form, keys = _unbuilt_inputs(x, what)
            self._build_for(arrays, form, keys)
        names = self.input_names
        arrays = _per_slot(x, names, what, "input")
        return [self._checked(a, t.sample_shape, f"{what}" if len(names) == 1 else f"{what}[{n!r}]")
                for a, t, n in zip(arrays, self.graph.inputs, names)]

    def _targets_of(self, y, n: int, what: str = "y") -> list[np.ndarray | None]:
        """y as one checked array per model output with a loss (None for the others)."""
        obj = self._require_compiled()
        if y is None:
            raise ValueError(f"{self.name}: give {what}, the targets (for an autoencoder y is x: fit(x, x))")
        names = obj.names
        wanted = [loss is not None or bool(ids) for loss, ids in zip(obj.losses, obj.metric_ids)]
        arrays = _per_slot(y, names, what, "output", optional=[not w for w in wanted])
        out = []
        for a, t, name, want in zip(arrays, self.graph.outputs, names, wanted):
            if not want or a is None:
                if want:
                    raise ValueError(f"{self.name}: give the targets of the output {name!r} (it has a loss or "
                                     "metrics)")
                out.append(None)
                continue
            label = what if len(names) == 1 else f"{what}[{name!r}]"
            out.append(self._checked(a, t.sample_shape, label, n))
        return out

    def _checked(self, a, sample_shape: tuple, label: str, n: int | None = None) -> np.ndarray:
        """``a`` as an array of real numbers of shape (n, *sample_shape) (a target: n as x's)."""
        a = np.asarray(a)
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: {label} must hold real numbers, got dtype {a.dtype}")
        if a.ndim != len(sample_shape) + 1 or a.shape[1:] != tuple(sample_shape) or (n is not None and len(a) != n):
            shape = ", ".join(map(str, sample_shape))
            match = "" if n is None else " to match x and the model's output"
            raise ValueError(f"{self.name}: expected {label} of shape ({'n' if n is None else n}, {shape}){match}, got "
                             f"{a.shape}")
        return a

    def _data(self, x, y, what: str = "") -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        xs = self._inputs_of(x, f"{what}x")
        n = _count(xs, self.name, what)
        return xs, self._targets_of(y, n, f"{what}y")

    def _batch_of(self, batch, what: str):
        """A generator's batch as (xs, ys) in the model's dtype."""
        x, y = split_batch(batch, what)
        xs, ys = self._data(x, y)
        self._check_batch_memory(len(xs[0]), what)
        return [self._as(a) for a in xs], [None if a is None else self._as(a) for a in ys]

    def _as(self, a) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=self.dtype)

    def _check_targets(self, ys, what: str = "y") -> None:
        for loss, y in zip(self._require_compiled().losses, ys):
            if loss is not None and y is not None:
                loss.check_targets(y, what)

    # -- one batch -----------------------------------------------------------------------------
    def forward(self, x, training: bool = False):
        """The output for x (a list or dict for several), op by op on the reference path (new
        arrays; for reading and stepping through, whatever ``compile`` chose)."""
        xs = [self._as(a) for a in self._inputs_of(x)]
        path = ReferencePath(self.flat)
        value, _ = path.forward(xs, training, logits=False)
        return self._out_form_of([value[t] for t in self.flat.outputs])

    def _out_form_of(self, outs: list):
        if self._out_form == "dict":
            return dict(zip(self._out_keys, outs))
        return outs if self._out_form == "list" or len(outs) > 1 else outs[0]

    def compute_loss(self, x, y, training: bool = True) -> float:
        """The training objective on one batch: the weighted losses plus every activity penalty."""
        xs, ys = self._data(x, y)
        return self._path().loss_value([self._as(a) for a in xs], [None if a is None else self._as(a) for a in ys],
                                       training).total

    def compute_gradients(self, x, y) -> float:
        """Forward, losses and backward on one batch; fills :meth:`gradients` and returns the objective."""
        xs, ys = self._data(x, y)
        return self._path().gradients([self._as(a) for a in xs], [None if a is None else self._as(a) for a in ys],
                                      self.gradients()).total

    def kinks(self, x, y) -> list[np.ndarray]:
        """Masks that change where the training objective at (x, y) has no derivative (for
        :func:`npae.gradcheck.check_model`)."""
        xs, ys = self._data(x, y)
        return self._path(jit=False).kinks([self._as(a) for a in xs], [None if a is None else self._as(a) for a in ys])

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict: bool = False):
        """One optimizer step on one batch; returns the loss before the step (no step if it is
        not finite), or with compiled metrics (or several outputs) the list in
        :attr:`metrics_names`' order (a dict with ``return_dict``), the metrics on the outputs of
        the same forward pass, as Keras. ``sample_weight`` and ``class_weight`` (Keras's) are not
        supported: only None."""
        pop_keras_only("train_on_batch", {"sample_weight": sample_weight, "class_weight": class_weight},
                       {"sample_weight": None, "class_weight": None})
        xs, ys, outs = self._one_batch(x, y, "train_on_batch")
        state = self._state()
        kept = [a.copy() for a in state]
        losses = self._path().gradients(xs, ys, self.gradients(), outs)
        if math.isfinite(losses.total):
            self._path().step(self.optimizer, self.parameters(), self.gradients())
        else:
            _restore(state, kept)
        return self._batch_result(losses, xs, ys, outs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict: bool = False):
        """The objective on one batch, in inference mode (with compiled metrics: as
        :meth:`train_on_batch` returns them). ``sample_weight`` is not supported: only None."""
        pop_keras_only("test_on_batch", {"sample_weight": sample_weight}, {"sample_weight": None})
        xs, ys, outs = self._one_batch(x, y, "test_on_batch")
        return self._batch_result(self._path().loss_value(xs, ys, False, outs), xs, ys, outs, return_dict)

    def _state(self) -> list[np.ndarray]:
        """The weights a training forward pass changes without the optimizer (BatchNormalization's
        moving statistics): a step that is not applied (a non-finite loss) puts them back."""
        return [layer.params[k] for layer in self._unique_layers() for k in layer.non_trainable_params
                if k in layer.params]

    def _check_batch_memory(self, batch: int, where: str) -> None:
        """Refuse a batch whose activations alone would take more than half the machine's memory
        (a clear error, not a MemoryError from deep inside a layer)."""
        values = sum(math.prod(shape) for shape in self.flat.shapes)
        need = batch * values * self.dtype.itemsize
        if need > MAX_MODEL_BYTES:
            raise ValueError(f"{self.name}: {where} on a batch of {batch} would need {need / 2**30:,.1f} GiB for its "
                             f"activations ({values:,} values per sample), more than half of this machine's memory "
                             f"({MAX_MODEL_BYTES / 2**30:,.1f} GiB); use a smaller batch_size")

    def _one_batch(self, x, y, where: str):
        xs, ys = self._data(x, y)
        if len(xs[0]) == 0:
            raise ValueError(f"{self.name}: {where} got an empty batch (x has shape {xs[0].shape}): a batch needs at "
                             "least one sample")
        self._check_batch_memory(len(xs[0]), where)
        self._check_targets(ys)
        xs, ys = [self._as(a) for a in xs], [None if a is None else self._as(a) for a in ys]
        outs = [np.empty((len(xs[0]), *t.sample_shape), self.dtype) if ms else None
                for ms, t in zip(self._metrics(), self.graph.outputs)]
        return xs, ys, outs

    def _batch_result(self, losses: Losses, xs, ys, outs, return_dict: bool):
        obj = self._require_compiled()
        sums = Sums(obj.loss_names, self._metrics())
        sums.add(losses, len(xs[0]), ys, outs)
        logs = sums.means()
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else [logs[k] for k in self.metrics_names]

    def predict_on_batch(self, x):
        """The output(s) for one batch."""
        n = len(self._inputs_of(x)[0])
        return self.predict(x, batch_size=max(n, 1), verbose=0)

    # -- fit / evaluate / predict --------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose="auto", callbacks=None,
            validation_split: float = 0.0, validation_data=None, shuffle: bool = True, class_weight=None,
            sample_weight=None, initial_epoch: int = 0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, *, seed: int | None = None):
        """Train for ``epochs`` passes over (x, y) in shuffled mini-batches; returns a History.

        ``x``, ``y``: arrays (lists or dicts for several inputs or outputs), or for ``x`` a
        generator or iterable of batches ``(x, y)`` with ``steps_per_epoch`` batches per epoch
        (None: until it is exhausted), as Keras. Each epoch logs ``loss`` (the sample-weighted
        mean of the batch objectives, penalties included), each output's loss (for several) and
        each compiled metric (its mean over the epoch's samples, computed on the outputs of the
        same forward passes) and, with ``validation_data`` ((xv, yv), or a generator with
        ``validation_steps``) or ``validation_split`` (the last fraction of the arrays, taken
        before shuffling, as Keras), the same with ``val_``. A non-finite loss stops training
        before its batch is applied. Ctrl-C stops after the current batch: the interrupted epoch
        is not counted (``history.interrupted`` is True). ``initial_epoch`` (Keras's meaning):
        run epochs ``initial_epoch .. epochs - 1``, e.g. to resume after :meth:`load_weights`;
        with a ``seed`` the resumed run is the same as an unbroken one. ``verbose``: 0 silent, 1
        or "auto" a progress bar, 2 one line per epoch. ``class_weight``, ``sample_weight``,
        ``validation_batch_size`` and ``validation_freq`` are accepted only at their defaults.
        """
        pop_keras_only("fit", {"class_weight": class_weight, "sample_weight": sample_weight,
                               "validation_batch_size": validation_batch_size, "validation_freq": validation_freq},
                       {"class_weight": None, "sample_weight": None, "validation_batch_size": None,
                        "validation_freq": 1})
        verbose = cbks.verbosity(verbose, "fit")
        batch_size = 32 if batch_size is None else positive_int(batch_size, "fit: batch_size")
        epochs = non_negative_int(epochs, "fit: epochs")
        initial_epoch = non_negative_int(initial_epoch, "fit: initial_epoch")
        if seed is not None:
            seed = non_negative_int(seed, "fit: seed")
        steps_per_epoch = None if steps_per_epoch is None else positive_int(steps_per_epoch, "fit: steps_per_epoch")
        validation_steps = None if validation_steps is None else positive_int(validation_steps,
                                                                              "fit: validation_steps")
        if is_batches(x):
            if y is not None:
                raise ValueError("fit: x is a generator of (x, y) batches, so y must not be given")
            if validation_split:
                raise ValueError("fit: validation_split needs arrays; with a generator give validation_data")
            source = Batches(x, steps_per_epoch, "fit")
            self._inputs_of(split_batch(source.peek(), "fit")[0])  # (builds an unbuilt model)
            self._require_compiled()
            data = _GeneratorEpochs(self, source)
        else:
            xs, ys = self._data(x, y)
            if validation_split:
                xs, ys, validation_data = split_off(xs, ys, validation_split, validation_data)
            if len(xs[0]) == 0:
                raise ValueError(f"{self.name}: fit got no training samples (x has shape {xs[0].shape})")
            self._check_targets(ys)
            self._check_batch_memory(min(batch_size, len(xs[0])), "fit")
            data = _ArrayEpochs(self, xs, ys, batch_size, shuffle, steps_per_epoch)
        validation = self._validation(validation_data, validation_steps) if validation_data is not None else None
        names = self.metrics_names
        logged = [*names, *([f"val_{k}" for k in names] if validation is not None else [])]
        callbacks = cbks.CallbackList(callbacks, model=self, verbose=verbose, epochs=epochs, steps=data.steps,
                                      metrics=logged)
        self.stop_training = False
        callbacks.on_train_begin()
        with StopOnInterrupt() as interrupt:
            self._epochs(data, initial_epoch, epochs, seed, callbacks, interrupt, validation, batch_size)
        callbacks.history.interrupted = interrupt.requested
        callbacks.on_train_end()
        self.history = callbacks.history
        return self.history

    def _epochs(self, data, initial_epoch, epochs, seed, callbacks, interrupt, validation, batch_size) -> None:
        path, flags, obj = self._path(), None, self._require_compiled()
        state = self._state()
        kept = [a.copy() for a in state]
        rng = npae_random.get_generator()
        for epoch in range(initial_epoch, epochs):
            if seed is not None:  # epoch e shuffles with its own generator: a run resumed there sees the same batches
                rng = np.random.default_rng([seed, epoch])
            callbacks.on_epoch_begin(epoch)
            sums, diverged, steps = Sums(obj.loss_names, self._metrics()), False, 0
            for step, (xs, ys, outs) in enumerate(data.batches(path, rng)):
                callbacks.on_train_batch_begin(step)
                if flags != (now := self._trainable_flags()):  # a callback froze or unfroze a layer
                    flags, params, grads = now, self.parameters(), self.gradients()
                for a, k in zip(state, kept):  # (a few numbers: BatchNormalization's moving statistics)
                    k[...] = a
                losses = path.gradients(xs, ys, grads, outs)
                if not callbacks.on_batch_loss(epoch, step, losses.total):
                    diverged = True  # non-finite loss: the step is not applied, nor its moving statistics
                    _restore(state, kept)
                    break
                path.step(self.optimizer, params, grads)
                sums.add(losses, len(xs[0]), ys, outs)
                steps += 1
                callbacks.on_train_batch_end(step, sums.means())
                if interrupt.requested or self.stop_training:
                    break
            # an epoch cut short by Ctrl-C or a diverging loss is not an epoch; one a callback
            # stopped (stop_training) ends as in Keras: validated and logged over its batches
            if interrupt.requested or diverged or (steps == 0 and data.exhausted()):
                break
            logs = sums.means()
            if validation is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate(validation, batch_size).items()})
            callbacks.on_epoch_end(epoch, logs)
            if self.stop_training or data.exhausted():
                break

    def _validation(self, data, steps):
        """validation_data as (xs, ys) arrays, or a :class:`Batches` of a generator."""
        if is_batches(data):
            return Batches(data, steps, "validation_data")
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            what = f"a {type(data).__name__}" + (f" of {len(data)}" if isinstance(data, (tuple, list)) else "")
            raise ValueError(f"{self.name}: validation_data must be a tuple (x_val, y_val), got {what}")
        if len(data) == 3 and data[2] is not None:
            raise NotImplementedError(f"{self.name}: validation_data with sample weights (x, y, sample_weight) is "
                                      "not supported by npae")
        xv, yv = self._data(data[0], data[1], "validation ")
        if len(xv[0]) == 0:
            raise ValueError(f"{self.name}: validation_data holds no samples")
        self._check_targets(yv, "validation y")
        return xv, yv

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict: bool = False):
        """The objective over (x, y) (arrays, or a generator of batches with ``steps`` of them),
        computed in batches in inference mode, as a float; with compiled metrics or several
        outputs the list in :attr:`metrics_names`' order, or with ``return_dict`` a dict (Keras's
        return values). ``verbose``: 0 silent, 1 or "auto" a progress bar, 2 one line.
        ``sample_weight`` and ``callbacks`` (Keras's) are not supported: only None."""
        pop_keras_only("evaluate", {"sample_weight": sample_weight, "callbacks": callbacks},
                       {"sample_weight": None, "callbacks": None})
        verbose = cbks.verbosity(verbose, "evaluate")
        batch_size = 32 if batch_size is None else positive_int(batch_size, "evaluate: batch_size")
        steps = None if steps is None else positive_int(steps, "evaluate: steps")
        if is_batches(x):
            if y is not None:
                raise ValueError("evaluate: x is a generator of (x, y) batches, so y must not be given")
            data = Batches(x, steps, "evaluate")
            self._inputs_of(split_batch(data.peek(), "evaluate")[0])
            self._require_compiled()
        else:
            xs, ys = self._data(x, y)
            if len(xs[0]) == 0:
                raise ValueError(f"{self.name}: evaluate got no samples (x has shape {xs[0].shape})")
            self._check_targets(ys)
            if steps is not None:  # Keras's steps on arrays: the first steps batches
                cut = steps * batch_size
                xs, ys = [a[:cut] for a in xs], [None if a is None else a[:cut] for a in ys]
            data = (xs, ys)
        logs = self._evaluate(data, batch_size, verbose)
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else [logs[k] for k in self.metrics_names]

    def _evaluate(self, data, batch_size, verbose: int = 0) -> dict[str, float]:
        path, obj = self._path(), self._require_compiled()
        metrics = self._metrics()
        sums = Sums(obj.loss_names, metrics)
        if isinstance(data, Batches):
            batches, total = (self._batch_of(b, "evaluate") for b in data.epoch()), data.steps
        else:
            xs, ys = data
            n = len(xs[0])
            self._check_batch_memory(min(batch_size, n), "evaluate")
            batches = (([self._as(a[s:s + batch_size]) for a in xs],
                        [None if a is None else self._as(a[s:s + batch_size]) for a in ys])
                       for s in range(0, n, batch_size))
            total = math.ceil(n / batch_size)
        bar = pass_bar(verbose, total)
        for step, (xb, yb) in enumerate(batches):
            outs = [np.empty((len(xb[0]), *t.sample_shape), self.dtype) if ms else None
                    for ms, t in zip(metrics, self.graph.outputs)]
            sums.add(path.loss_value(xb, yb, False, outs), len(xb[0]), yb, outs)
            if bar is not None:
                bar.on_batch_end(step, sums.means())
        logs = sums.means()
        if bar is not None:
            bar.on_epoch_end(0, logs)
        return logs

    def predict(self, x, batch_size: int | None = None, verbose="auto", steps=None, callbacks=None):
        """Outputs (n, *output_shape), computed batch by batch into one array per output (a list
        or dict of them for a model whose outputs were given so); ``x`` may also be a generator of
        input batches (``steps`` of them). ``verbose``: 0 silent, 1 or "auto" a progress bar, 2 one
        line. ``callbacks`` (Keras's) is not supported: only None."""
        pop_keras_only("predict", {"callbacks": callbacks}, {"callbacks": None})
        verbose = cbks.verbosity(verbose, "predict")
        batch_size = 32 if batch_size is None else positive_int(batch_size, "predict: batch_size")
        steps = None if steps is None else positive_int(steps, "predict: steps")
        if is_batches(x):
            source = Batches(x, steps, "predict")
            parts = [self.predict(split_batch(b, "predict")[0], batch_size=batch_size, verbose=0)
                     for b in source.epoch()]
            if not parts:
                raise ValueError("predict: the generator yields no batches")
            return _concatenate(parts)
        xs = self._inputs_of(x)
        if steps is not None:  # Keras's steps on arrays: the first steps batches
            xs = [a[:steps * batch_size] for a in xs]
        n = _count(xs, self.name, "")
        self._check_batch_memory(max(min(batch_size, n), 1), "predict")
        dtype = self.dtype
        outs = [np.empty((n, *t.sample_shape), dtype=dtype) for t in self.graph.outputs]
        path = self._path()
        bar = pass_bar(verbose, math.ceil(n / batch_size))
        for step, s in enumerate(range(0, n, batch_size)):
            path.predict([np.ascontiguousarray(a[s:s + batch_size], dtype=dtype) for a in xs],
                         [o[s:s + batch_size] for o in outs])
            if bar is not None:
                bar.on_batch_end(step)
        if bar is not None:
            bar.on_epoch_end(0)
        return self._out_form_of(outs)

    def _call_eager(self, x, training: bool = False):
        """Data in, data out: the output for the whole of x, on the model's path."""
        if training:
            return self.forward(x, training=True)
        return self.predict(x, batch_size=256, verbose=0)  # (in batches: one huge batch would keep its buffers)


class _ArrayEpochs:
    """The batches of arrays: shuffled per epoch, gathered into buffers reused every batch."""

    def __init__(self, model: Trainer, xs, ys, batch_size: int, shuffle: bool, steps: int | None):
        self.model, self.xs, self.ys, self.shuffle = model, xs, ys, shuffle
        self.n = len(xs[0])
        self.batch_size = batch_size
        self.steps = math.ceil(self.n / batch_size) if steps is None else steps
        dtype, b = model.dtype, min(batch_size, self.n)
        self.xbufs = [np.empty((b, *x.shape[1:]), dtype) for x in xs]
        # an autoencoder's target is its input: gathered once
        self.ybufs = [None if y is None or y is xs[0] else np.empty((b, *y.shape[1:]), dtype) for y in ys]
        self.outs = [np.empty((b, *t.sample_shape), dtype) if ms else None
                     for ms, t in zip(model._metrics(), model.graph.outputs)]

    def exhausted(self) -> bool:
        return False

    def batches(self, path, rng):
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        per_epoch = math.ceil(self.n / self.batch_size)
        for step in range(self.steps):
            k = step % per_epoch  # (steps_per_epoch beyond one pass starts the pass again)
            idx = order[k * self.batch_size:(k + 1) * self.batch_size]
            xs = [path.gather(x, idx, buf[:len(idx)]) for x, buf in zip(self.xs, self.xbufs)]
            ys = [None if y is None else xs[0] if buf is None else path.gather(y, idx, buf[:len(idx)])
                  for y, buf in zip(self.ys, self.ybufs)]
            yield xs, ys, [None if o is None else o[:len(idx)] for o in self.outs]


class _GeneratorEpochs:
    """The batches of a generator (:class:`npae.models.data.Batches`), each checked and converted."""

    def __init__(self, model: Trainer, source: Batches):
        self.model, self.source = model, source
        self.steps = source.steps

    def exhausted(self) -> bool:
        return self.source.exhausted

    def batches(self, path, rng):
        metrics = self.model._metrics()
        for batch in self.source.epoch():
            xs, ys = self.model._batch_of(batch, "fit")
            self.model._check_targets(ys)
            outs = [np.empty((len(xs[0]), *t.sample_shape), self.model.dtype) if ms else None
                    for ms, t in zip(metrics, self.model.graph.outputs)]
            yield xs, ys, outs


def _per_slot(value, names: list[str], what: str, kind: str, optional: list[bool] | None = None) -> list:
    """``value`` as one entry per model input (or output): the array itself for one, a list or
    tuple in order, or a dict by name."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"{what}: {unknown[0]!r} is not an {kind} of the model; its {kind}s are {names}")
        missing = [n for i, n in enumerate(names) if n not in value and not (optional and optional[i])]
        if missing:
            raise ValueError(f"{what}: no data for the {kind} {missing[0]!r} (the dict has {list(value)})")
        return [value.get(n) for n in names]
    if len(names) == 1:
        if isinstance(value, (list, tuple)) and len(value) == 1 and hasattr(value[0], "shape"):
            return [value[0]]
        return [value]
    if not isinstance(value, (list, tuple)) or len(value) != len(names):
        got = f"a list of {len(value)}" if isinstance(value, (list, tuple)) else f"one {type(value).__name__}"
        raise ValueError(f"{what}: the model has {len(names)} {kind}s {names}: give a list of {len(names)} arrays or a "
                         f"dict by {kind} name, got {got}")
    return list(value)


def _restore(state: list[np.ndarray], kept: list[np.ndarray]) -> None:
    for a, k in zip(state, kept):
        a[...] = k


def _unbuilt_inputs(x, what: str):
    """(arrays, form, keys) of data for a model not built yet: a dict or a list of several arrays
    are several inputs; anything else is one."""
    if isinstance(x, dict):
        return [np.asarray(v) for v in x.values()], "dict", list(x)
    if isinstance(x, (list, tuple)) and len(x) > 1 and all(isinstance(v, np.ndarray) for v in x):
        return list(x), "list", None
    a = np.asarray(x[0] if isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray) else x)
    if a.ndim < 2:
        raise ValueError(f"{what}: expected a batch of shape (n, ...), got {a.shape}")
    return [a], "one", None


def _count(xs: list[np.ndarray], name: str, what: str) -> int:
    sizes = {len(a) for a in xs}
    if len(sizes) > 1:
        raise ValueError(f"{name}: the {what}x arrays hold different numbers of samples: {[len(a) for a in xs]}")
    return sizes.pop()


def _concatenate(parts: list):
    first = parts[0]
    if isinstance(first, dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in first}
    if isinstance(first, list):
        return [np.concatenate([p[i] for p in parts]) for i in range(len(first))]
    return np.concatenate(parts)
