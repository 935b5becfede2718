"""Keras -> npae: :func:`from_keras` reads a Keras Sequential or Functional model through Keras's
public API (``get_config()`` for the layers and their calls, ``get_layer()`` and
``get_weights()`` for the live layers, ``get_compile_config()`` for the compile settings) and
builds the npae model, layer call by layer call.

A Functional model's config lists its layers, each with its ``inbound_nodes``: one entry per call,
whose ``args`` hold the tensors it was called on as ``{"class_name": "__keras_tensor__",
"config": {"keras_history": [layer name, call index, output index]}}``; ``input_layers`` and
``output_layers`` name the model's tensors the same way, except that there a nested functional
model's calls count from 1 (Keras counts the node it made when it was built). A nested model's
outputs are numbered in Keras's flattening order (a dict's keys sorted).
"""

from __future__ import annotations

import warnings
from typing import Any

from .. import losses as npae_losses
from .. import metrics as npae_metrics
from .. import optimizers as npae_optimizers
from .. import regularizers as npae_regularizers
from ..layers import LAYER_CLASSES, Input
from ..models import Model, Sequential
from .backend import import_keras
from .tables import (
    ACTIVATIONS,
    ALIASES,
    CARRIED,
    COMMON,
    INITIALIZER_DEFAULTS,
    INITIALIZER_NAMES,
    LOSS_NAMES,
    METRIC_CLASSES,
    OPTIMIZER_ARGS,
    PASSED_THROUGH,
    TUPLES,
    ConversionError,
    default_initializer,
    flat_list,
    float32_clean,
    shown,
)

__all__ = ["from_keras", "KerasReader", "npae_compile_args"]


def from_keras(keras_model, compile: bool = False) -> Model:  # noqa: A002 - Keras's own argument name
    """The npae model of a Keras 3 Sequential or Functional model (nested ones too, any depth),
    with its weights.

    The model is read through Keras's public API: ``get_config()`` (the layers, their calls and
    the inputs and outputs), ``get_layer(name)`` and ``get_weights()``. Each Keras layer's config
    maps to npae's constructor arguments (see :data:`CARRIED` and :data:`PASSED_THROUGH`): dtype
    policies become 'float32' or 'float64', initializers npae's names where npae has them (else
    npae's default, with a warning: the weights are copied anyway), activity regularizers L1 and
    L2. A layer is frozen where Keras's is, or where a model enclosing it is.

    Refused with a :class:`ConversionError` that names the layer and the argument: a layer class
    npae lacks (LSTM, Conv1D, ...), Lambda and custom layers, a subclassed Keras model (no graph
    to read: rebuild it with npae layers and copy the weights with ``set_weights``), arguments npae
    does not implement (``dilation_rate=(2, 2)``, ``kernel_regularizer``, ...), activations npae
    lacks, dtypes other than float32 / float64, and variable sample shapes (None inside).

    With ``compile=True`` and a compiled Keras model, the npae model is compiled with the same
    optimizer (SGD, RMSprop, Adam, Adadelta with their hyperparameters), losses (mse, mae,
    binary and categorical cross-entropy), loss weights and metrics; anything else there is
    refused. The
    optimizer's state is not carried over.
    """
    keras = import_keras()
    if not isinstance(keras_model, keras.Model):
        raise TypeError(f"from_keras: expected a keras.Model, got {type(keras_model).__name__}")
    reader = KerasReader(keras)
    model = reader.model(keras_model, frozen=False)
    for layer, live in reader.pairs:
        if layer.params:
            layer.set_weights(live.get_weights())
    if compile and getattr(keras_model, "compiled", False):
        model.compile(**npae_compile_args(keras_model))
    return model


class KerasReader:
    """Builds npae models from Keras ones, each Keras layer and model converted once."""

    def __init__(self, keras):
        self.keras = keras
        self.made: dict[int, Any] = {}  # id(Keras layer or model) -> the npae layer or model
        self.pairs: list[tuple[Any, Any]] = []  # (npae leaf layer, Keras layer), for the weights

    def model(self, km, frozen: bool) -> Model:
        if id(km) in self.made:
            return self.made[id(km)]
        frozen = frozen or not km.trainable
        if isinstance(km, self.keras.Sequential):
            model = self.sequential(km, frozen)
        else:
            try:
                config = km.get_config()
            except Exception:  # noqa: BLE001 - a subclass's get_config may raise anything
                config = None
            if not (isinstance(config, dict) and {"layers", "input_layers", "output_layers"} <= config.keys()):
                raise ConversionError(f"from_keras: model {km.name!r} ({type(km).__name__}) is a subclassed Keras "
                                      "model: it has no graph to read (its call() is Python code). Rebuild it with "
                                      "npae layers (the functional API, or an npae Model subclass) and copy the "
                                      "weights with set_weights(keras_model.get_weights())")
            model = self.functional(km, config, frozen)
        self.made[id(km)] = model
        return model

    def op(self, live, frozen: bool):
        """The npae twin of a Keras layer or nested model."""
        if isinstance(live, self.keras.Model):
            return self.model(live, frozen)
        if id(live) not in self.made:
            self.made[id(live)] = self.leaf(live, frozen)
            self.pairs.append((self.made[id(live)], live))
        return self.made[id(live)]

    def input(self, live, model_name: str):
        config = live.get_config()
        name = config.get("name", live.name)
        for key in ("sparse", "ragged", "optional"):
            if config.get(key):
                raise ConversionError(f"from_keras: input {name!r} of {model_name!r}: {key}=True is not supported by "
                                      "npae")
        return Input(shape=self.sample_shape(config.get("batch_shape"), f"input {name!r} of {model_name!r}"),
                     dtype=_dtype(config.get("dtype"), f"input {name!r}"), name=name)

    @staticmethod
    def sample_shape(batch_shape, where: str) -> tuple:
        if batch_shape is None:
            raise ValueError(f"from_keras: {where}: the Keras model is not built (its input shape is unknown): build "
                             "it with an Input, or call build((None, ...)) first")
        shape = tuple(batch_shape)[1:]  # (a fixed batch size is dropped: npae takes any batch)
        if any(d is None for d in shape):
            raise ConversionError(f"from_keras: {where}: the sample shape {shape} has a variable size (None); npae "
                                  "needs every axis but the batch fixed")
        return shape

    def leaf(self, live, frozen: bool):
        cls = type(live).__name__
        where = f"from_keras: layer {live.name!r} ({cls})"
        if cls == "Lambda":
            raise ConversionError(f"{where}: a Lambda layer runs arbitrary code, whose gradient npae cannot take; "
                                  "write it as an npae Layer with forward(x, training) and backward(dout, cache)")
        builtin = getattr(self.keras.layers, cls, None) is type(live)
        if cls not in CARRIED or not builtin:
            what = f"npae has no {cls} layer" if builtin else "a custom layer"
            raise ConversionError(f"{where}: {what}; npae has {', '.join(CARRIED)} (write others as npae Layers with "
                                  "forward and backward)")
        config = live.get_config()
        # (a config without "trainable": a class whose constructor lacks it, NAME_AND_DTYPE_ONLY)
        kwargs = {"name": config.get("name", live.name), "dtype": _dtype(config.get("dtype"), where),
                  "trainable": bool(config.get("trainable", live.trainable)) and not frozen}
        if config.get("activity_regularizer") is not None:
            kwargs["activity_regularizer"] = _regularizer(config["activity_regularizer"], where)
        for key, value in config.items():
            if key in COMMON:
                continue
            if key in CARRIED[cls] or key in ALIASES.get(cls, ()):
                kwargs[key] = _carried(key, value, where)
            elif key in PASSED_THROUGH.get(cls, ()):
                kwargs[key] = shown(value)
            elif value is not None:
                raise ConversionError(f"{where}: {key}={shown(value)!r} is a Keras argument npae does not know")
        try:
            return LAYER_CLASSES[cls](**kwargs)
        except NotImplementedError as err:
            message = str(err).removeprefix(f"{cls}: ")
            raise ConversionError(f"{where}: {message}") from None
        except (TypeError, ValueError) as err:
            raise ConversionError(f"{where}: {err}") from None

    def sequential(self, km, frozen: bool) -> Sequential:
        config = km.get_config()
        entries = config.get("layers") or []
        if entries and entries[0].get("class_name") == "InputLayer":
            first = entries[0]["config"]
            shape, dtype, name = first.get("batch_shape"), first.get("dtype"), first.get("name")
        else:
            shape, dtype, name = config.get("build_input_shape"), config.get("dtype"), None
        where = f"the input of {km.name!r}"
        layers = [self.op(live, frozen) for live in km.layers]
        x = Input(shape=self.sample_shape(shape, where), dtype=_dtype(dtype, f"from_keras: {where}"), name=name)
        return _built(lambda: Sequential([x, *layers], name=config.get("name", km.name)), km.name)

    def functional(self, km, config: dict, frozen: bool) -> Model:
        entries = config["layers"]
        ops: dict[str, Any] = {}  # layer name -> npae layer or model
        outputs: dict[str, list[list]] = {}  # layer name -> per call, its output tensors (Keras's order)
        for entry in entries:
            name = entry["name"]
            live = km.get_layer(name)
            if type(live) is self.keras.layers.InputLayer:
                outputs[name] = [[self.input(live, km.name)]]
            else:
                ops[name] = self.op(live, frozen)
                outputs[name] = []
        pending = {e["name"]: list(e.get("inbound_nodes") or []) for e in entries if e["name"] in ops}
        while any(pending.values()):  # as Keras: each call once its inputs exist, a layer's calls in order
            progressed = False
            for entry in entries:
                queue = pending.get(entry["name"], [])
                while queue:
                    args = _node_args(queue[0], outputs, f"from_keras: layer {entry['name']!r} of {km.name!r}")
                    if args is None:
                        break
                    queue.pop(0)
                    outputs[entry["name"]].append(_built(lambda e=entry, a=args: self.call(ops[e["name"]], a), km.name))
                    progressed = True
            if not progressed:
                raise ValueError(f"from_keras: the config of {km.name!r} has calls whose inputs never exist: "
                                 f"{[k for k, v in pending.items() if v]}")
        functional = {name for name, op in ops.items() if isinstance(op, Model) and not isinstance(op, Sequential)}

        def tensor(ref):
            name, node, index = ref
            # (in inputs and outputs, Keras counts a nested functional model's own first node too)
            return outputs[name][node - (name in functional)][index]

        return Model(_map_refs(config["input_layers"], tensor), _map_refs(config["output_layers"], tensor),
                     name=config.get("name", km.name))

    def call(self, op, args) -> list:
        """Call an npae layer or model on ``args``; its outputs in Keras's order (a dict's outputs by
        Keras's sorted flattening)."""
        if isinstance(op, Model) and isinstance(args, dict):
            args = {k: args[k] for k in op.input_names}
        result = op(args)
        if isinstance(result, dict):
            keys = list(result)
            order = self.keras.tree.flatten({k: i for i, k in enumerate(keys)})
            return [result[keys[i]] for i in order]
        return flat_list(result)


def _built(build, model_name: str):
    """build(), where a layer refuses an argument only once it sees its input's shape (Softmax's
    axis: -1, or the last axis's index) as a ConversionError naming the model (the layer's own
    message names the layer and the argument)."""
    try:
        return build()
    except ConversionError:
        raise
    except NotImplementedError as err:
        raise ConversionError(f"from_keras: model {model_name!r}: {err}") from None


def _map_refs(structure, tensor):
    """Keras's input_layers / output_layers ([name, node, index] leaves in lists or dicts) as tensors."""
    if isinstance(structure, (list, tuple)) and len(structure) == 3 and isinstance(structure[0], str):
        return tensor(structure)
    if isinstance(structure, dict):
        return {k: _map_refs(v, tensor) for k, v in structure.items()}
    return [_map_refs(v, tensor) for v in structure]


def _node_args(node: dict, outputs: dict, where: str):
    """The tensors one serialised call takes (a tensor, a list or a dict of them), or None while one
    of them does not exist yet."""
    kwargs = node.get("kwargs") or {}
    # (Keras records training=False on layers with a training argument; the call's own training
    # flag overrides it, as in npae)
    extra = {k: v for k, v in kwargs.items() if not _nothing(v) and not (k == "training" and v is False)}
    if extra:
        raise ConversionError(f"{where}: called with {', '.join(f'{k}={v!r}' for k, v in extra.items())}, which npae "
                              "layers do not take")
    args = node.get("args") or []
    if len(args) != 1:
        raise ConversionError(f"{where}: called with {len(args)} positional arguments; npae layers take one (a tensor "
                              "or a list of tensors)")
    missing = object()

    def resolve(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            name, k, index = value["config"]["keras_history"]
            calls = outputs.get(name)
            if calls is None:
                raise ValueError(f"{where}: reads the unknown layer {name!r}")
            return calls[k][index] if k < len(calls) else missing
        if isinstance(value, dict):
            return {key: resolve(v) for key, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [resolve(v) for v in value]
        raise ConversionError(f"{where}: called with the constant {value!r}; npae layers take tensors only")

    resolved = resolve(args[0])
    return None if any(t is missing for t in flat_list(resolved)) else resolved


def _nothing(value) -> bool:
    """None, or a list or dict of nothing else (a nested model's ``mask={'a': None, 'b': None}``)."""
    if isinstance(value, dict):
        return all(_nothing(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_nothing(v) for v in value)
    return value is None


def _dtype(value, where: str) -> str:
    """A Keras dtype or DTypePolicy config as 'float32' or 'float64'."""
    if value is None:
        return "float32"
    name = value.get("config", {}).get("name") if isinstance(value, dict) else getattr(value, "name", value)
    if name not in ("float32", "float64"):
        raise ConversionError(f"{where}: dtype={name!r} is not supported by npae (float32 or float64)")
    return name


def _regularizer(spec, where: str):
    """A Keras activity regularizer config as npae's L1 or L2 (an L1L2 with one factor 0 too)."""
    cls = spec.get("class_name") if isinstance(spec, dict) else spec
    config = spec.get("config") or {} if isinstance(spec, dict) else {}
    if isinstance(cls, str) and cls.lower() in ("l1", "l2") and not config:  # ("l1": Keras's factor 0.01)
        return npae_regularizers.get(cls.lower())
    if cls in ("L1", "L2"):
        config = {cls.lower(): config.get(cls.lower(), 0.01)}
    used = {k: float32_clean(v) for k, v in config.items() if k in ("l1", "l2") and v}
    if cls in ("L1", "L2", "L1L2") and len(used) <= 1:
        if not used:
            return None  # (factors 0: no penalty)
        key, factor = used.popitem()
        return (npae_regularizers.L1 if key == "l1" else npae_regularizers.L2)(factor)
    raise ConversionError(f"{where}: activity_regularizer={shown(spec)!r} is not supported by npae (L1 or L2 only)")


def _carried(key: str, value, where: str):
    """A Keras config value as npae's constructor takes it."""
    if key == "activation":
        name = value if isinstance(value, str) else None
        if name is None or name.lower() not in ACTIVATIONS:
            raise ConversionError(f"{where}: activation={shown(value)!r} is not supported by npae (it has "
                                  f"{', '.join(ACTIVATIONS)})")
        return name.lower()
    if key.endswith("_initializer"):
        return _initializer(value, key, where)
    return tuple(value) if key in TUPLES and isinstance(value, list) else value


def _initializer(spec, key: str, where: str):
    cls = spec.get("class_name") if isinstance(spec, dict) else spec
    config = spec.get("config") or {} if isinstance(spec, dict) else {}
    name = INITIALIZER_NAMES.get(cls) or (cls if cls in INITIALIZER_NAMES.values() else None)
    defaults = INITIALIZER_DEFAULTS.get(cls, {})
    extra = {k: v for k, v in config.items() if k != "seed" and v is not None and defaults.get(k) != v}
    if name is not None and not extra:
        return name
    fallback = default_initializer(key)
    warnings.warn(f"{where}: {key}={shown(spec)!r} has no npae equivalent; npae's layer takes {fallback} (the "
                  "weights are copied, so only a re-initialisation differs)", stacklevel=6)
    return fallback


# -- Keras compile settings -> npae ---------------------------------------------------------------
def npae_compile_args(km) -> dict:
    """compile()'s arguments for the npae twin of a compiled Keras model."""
    config = km.get_compile_config() or {}
    where = f"from_keras: the compile settings of {km.name!r}"
    opt = km.optimizer
    cls = type(opt).__name__
    if cls not in OPTIMIZER_ARGS:
        raise ConversionError(f"{where}: the optimizer {cls} is not supported by npae (SGD, RMSprop, Adam, Adadelta)")
    opt_config = dict(opt.get_config())
    if not isinstance(opt_config.get("learning_rate"), (int, float)):
        raise ConversionError(f"{where}: learning_rate={shown(opt_config.get('learning_rate'))!r} (a schedule) is "
                              "not supported by npae (a number only)")
    opt_config["learning_rate"] = float32_clean(opt_config["learning_rate"])
    try:
        optimizer = getattr(npae_optimizers, cls)(**opt_config)
    except (NotImplementedError, TypeError) as err:
        raise ConversionError(f"{where}: {str(err).removeprefix(f'{cls}: ')}") from None
    if config.get("weighted_metrics") is not None:
        raise ConversionError(f"{where}: weighted_metrics are not supported by npae")
    if config.get("loss") is None:
        raise ConversionError(f"{where}: the Keras model is compiled without a loss (a custom train_step?); npae "
                              "needs one")
    weights = config.get("loss_weights")
    if isinstance(weights, (int, float)):
        weights = [weights]
    return {"optimizer": optimizer, "loss": _structure(config.get("loss"), lambda v: _loss(v, where)),
            "loss_weights": weights, "metrics": _metrics(config.get("metrics"), where)}


def _structure(value, convert):
    if isinstance(value, dict) and "class_name" not in value:
        return {k: None if v is None else convert(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [None if v is None else convert(v) for v in value]
    return convert(value)


def _loss(spec, where: str):
    cls = spec.get("class_name") if isinstance(spec, dict) else None
    config = dict(spec.get("config") or {}) if isinstance(spec, dict) and cls != "function" else {}
    name = spec if isinstance(spec, str) else spec.get("config") if cls == "function" else LOSS_NAMES.get(cls)
    if not isinstance(name, str) or name not in npae_losses.LOSSES or name == "binary_crossentropy_clipped":
        raise ConversionError(f"{where}: the loss {shown(spec)!r} is not supported by npae (mse, mae, "
                              "binary_crossentropy, categorical_crossentropy)")
    config.pop("name", None)  # (a display name; npae logs losses by output name, as Keras)
    try:
        return type(npae_losses.get(name))(**config)
    except (NotImplementedError, TypeError) as err:
        raise ConversionError(f"{where}: loss {name}: {err}") from None


def _metric(spec, where: str):
    if isinstance(spec, dict):
        cls = spec.get("class_name")
        config = spec.get("config")
        if cls == "function" and isinstance(config, str):
            spec = config
        elif cls in METRIC_CLASSES and isinstance(config, dict) and config.get("name") == METRIC_CLASSES[cls] \
                and not config.get("from_logits") and not config.get("label_smoothing") \
                and config.get("threshold", 0.5) == 0.5 and config.get("axis", -1) == -1:
            spec = METRIC_CLASSES[cls]
    if not isinstance(spec, str) or spec.lower() not in npae_metrics.NAMES:
        raise ConversionError(f"{where}: the metric {shown(spec)!r} is not supported by npae (it has "
                              f"{', '.join(npae_metrics.NAMES)})")
    return spec


def _metrics(value, where: str):
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _metrics(v, where) if isinstance(v, list) else None if v is None else _metric(v, where)
                for k, v in value.items()}
    return [_metrics(v, where) if isinstance(v, list) else None if v is None else _metric(v, where) for v in value]

