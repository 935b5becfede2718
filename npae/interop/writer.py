"""npae -> Keras: :func:`to_keras` builds the Keras twin of an npae model, layer call by layer
call, copies the weights, and (``compile=True``) compiles it as the npae model is compiled."""

from __future__ import annotations

import warnings
from typing import Any

from .. import activations as npae_activations
from .. import initializers as npae_initializers
from .. import losses as npae_losses
from .. import metrics as npae_metrics
from .. import optimizers as npae_optimizers
from .. import regularizers as npae_regularizers
from ..layers import LAYER_CLASSES
from ..models import Model, Sequential
from .backend import import_keras
from .tables import (
    CARRIED,
    NAME_AND_DTYPE_ONLY,
    OPTIMIZER_ARGS,
    ConversionError,
    default_initializer,
    flat_list,
    form_of,
)

__all__ = ["to_keras", "KerasWriter", "keras_compile_args"]


def to_keras(model: Model, compile: bool = False):  # noqa: A002 - Keras's own argument name
    """The Keras 3 model of ``model`` (an npae Model, Sequential, or built Model subclass), with
    its weights.

    Every layer becomes its Keras twin under the same name, with the same arguments, dtype,
    activity regularizer and ``trainable`` flag (a frozen layer stays frozen); a nested model
    becomes a nested Keras model (a Sequential a ``keras.Sequential``), built once and called
    wherever ``model`` calls it; a shared layer is one Keras layer called at each of its places.
    Inputs and outputs keep their form (one tensor, a list or a dict) and names.

    With ``compile=True`` and a compiled ``model``, the Keras model is compiled with the same
    optimizer class and hyperparameters (SGD, RMSprop, Adam, Adadelta, the actual learning
    rate), the losses per output, the loss weights and the metric names (an uncompiled model
    gives an uncompiled Keras model). The optimizer's state
    (its slots and iteration count) is not carried over: Keras's starts afresh. npae computes
    binary cross-entropy on a sigmoid output from the logits, as TensorFlow does, and categorical
    cross-entropy on a softmax output from the logits (log-softmax), while Keras on the JAX and
    torch backends clips the probabilities to [1e-7, 1 - 1e-7]: losses differ in the last digits
    (and more where the sigmoid or softmax saturates).

    A layer, activation, regularizer, loss or metric Keras has no equivalent for (a custom Layer
    subclass, an activation with a non-default alpha, a metric function) is a
    :class:`ConversionError`.
    """
    keras = import_keras()
    if not isinstance(model, Model):
        raise TypeError(f"to_keras: expected an npae Model, got {type(model).__name__}")
    writer = KerasWriter(keras)
    keras_model = writer.model(model)
    for layer, twin in writer.pairs:
        if layer.params:
            twin.set_weights(layer.get_weights())
        for key, name in writer.initializers.get(id(twin), {}).items():
            setattr(twin, key, keras.initializers.get(name))
    if compile and model.optimizer is not None and model.loss is not None:
        keras_model.compile(**keras_compile_args(keras, model))
    return keras_model


class KerasWriter:
    """Builds the Keras twin of npae models, each npae layer and model converted once."""

    def __init__(self, keras):
        self.keras = keras
        self.twins: dict[int, Any] = {}  # id(npae layer or model) -> its Keras twin
        self.pairs: list[tuple[Any, Any]] = []  # (npae leaf layer, Keras layer), for the weights
        # id(Keras layer) -> {argument: initializer name}: each layer is built with zeros (its weights
        # are overwritten at once: random draws would only cost time, seconds per shape on JAX), and
        # its initializers are set afterwards
        self.initializers: dict[int, dict[str, str]] = {}

    def model(self, model: Model):
        if id(model) in self.twins:
            return self.twins[id(model)]
        try:
            graph = model.graph
        except ValueError as err:
            raise ValueError(f"to_keras: {err}") from None
        inputs = {id(t): self.keras.Input(shape=t.sample_shape, dtype=t.layer.dtype.name, name=t.layer.name)
                  for t in graph.inputs}
        if isinstance(model, Sequential):
            twin = self.keras.Sequential([inputs[id(graph.inputs[0])], *(self.op(layer) for layer in model.layers)],
                                         name=model.name)
        else:  # a functional model, or a subclass's traced graph
            tensors = dict(inputs)
            for node in graph.nodes:
                args = [tensors[id(t)] for t in node.inputs]
                op = self.op(node.layer)
                if isinstance(node.layer, Model):
                    result = op(form_of(node.layer.input, args))
                    outs = [result[k] for k in node.layer.output] if isinstance(result, dict) else flat_list(result)
                else:
                    outs = [op(args if node.many_inputs else args[0])]
                tensors.update((id(t), k) for t, k in zip(node.outputs, outs))
            twin = self.keras.Model(form_of(model.input, [tensors[id(t)] for t in flat_list(model.input)]),
                                    form_of(model.output, [tensors[id(t)] for t in flat_list(model.output)]),
                                    name=model.name)
        self.twins[id(model)] = twin
        return twin

    def op(self, layer):
        """The Keras twin of a layer or a nested model."""
        if isinstance(layer, Model):
            return self.model(layer)
        if id(layer) not in self.twins:
            self.twins[id(layer)] = self.leaf(layer)
            self.pairs.append((layer, self.twins[id(layer)]))
        return self.twins[id(layer)]

    def leaf(self, layer):
        cls = type(layer).__name__
        if cls not in CARRIED or LAYER_CLASSES.get(cls) is not type(layer):
            raise ConversionError(f"to_keras: layer {layer.name!r} ({cls}): npae.interop converts npae's own layers "
                                  f"only ({', '.join(CARRIED)}), not a Layer subclass: Keras cannot run its forward "
                                  "and backward")
        kwargs = {"name": layer.name, "dtype": layer.dtype.name}
        if cls not in NAME_AND_DTYPE_ONLY:
            kwargs["trainable"] = bool(layer.trainable)
        elif layer.activity_regularizer is not None:
            raise ConversionError(f"to_keras: layer {layer.name!r} ({cls}): Keras's {cls} takes no "
                                  "activity_regularizer")
        initializers = {}
        for key in CARRIED[cls]:
            if key.endswith("_initializer"):
                kwargs[key] = "zeros"
                try:
                    initializers[key] = npae_initializers.serialize(getattr(layer, key))
                except ValueError:
                    initializers[key] = default_initializer(key)
                    warnings.warn(f"to_keras: layer {layer.name!r} ({cls}): its custom {key} has no Keras name; the "
                                  f"Keras layer takes {initializers[key]} (the weights are copied, so only a "
                                  "re-initialisation differs)", stacklevel=4)
            elif key == "activation":
                kwargs[key] = self.activation(layer)
            elif key == "negative_slope":
                kwargs[key] = layer.activation.alpha
            else:
                kwargs[key] = getattr(layer, key)
        if layer.activity_regularizer is not None:
            kwargs["activity_regularizer"] = self.regularizer(layer)
        twin = getattr(self.keras.layers, cls)(**kwargs)
        if cls in NAME_AND_DTYPE_ONLY:
            twin.trainable = bool(layer.trainable)
        self.initializers[id(twin)] = initializers
        return twin

    @staticmethod
    def activation(layer) -> str:
        spec = npae_activations.serialize(layer.activation)
        if isinstance(spec, dict):
            raise ConversionError(f"to_keras: layer {layer.name!r} ({type(layer).__name__}): activation {spec['name']} "
                                  f"with alpha={spec['alpha']} has no Keras name (Keras's {spec['name']} has alpha "
                                  f"{npae_activations.Activation(spec['name']).alpha}); use a LeakyReLU layer")
        return spec

    def regularizer(self, layer):
        reg = layer.activity_regularizer
        if type(reg) is npae_regularizers.L1:
            return self.keras.regularizers.L1(l1=reg.l1)
        if type(reg) is npae_regularizers.L2:
            return self.keras.regularizers.L2(l2=reg.l2)
        raise ConversionError(f"to_keras: layer {layer.name!r} ({type(layer).__name__}): activity_regularizer="
                              f"{type(reg).__name__} has no Keras equivalent (L1 and L2 do)")


def keras_compile_args(keras, model: Model) -> dict:
    """compile()'s arguments for the Keras twin of a compiled npae model."""
    opt = model.optimizer
    cls = type(opt).__name__
    if cls not in OPTIMIZER_ARGS or getattr(npae_optimizers, cls) is not type(opt):
        raise ConversionError(f"to_keras: the optimizer {cls} has no Keras equivalent (npae's SGD, RMSprop, Adam and "
                              "Adadelta do)")
    optimizer = getattr(keras.optimizers, cls)(**{k: getattr(opt, k) for k in OPTIMIZER_ARGS[cls]})
    obj = model.objective
    several = len(obj.names) > 1
    as_dict = isinstance(model.output, dict)

    def loss_of(loss):
        if loss is None:
            return None
        if type(loss) is npae_losses.BinaryCrossentropy:
            return keras.losses.BinaryCrossentropy(from_logits=True) if loss.from_logits else "binary_crossentropy"
        if type(loss) is npae_losses.CategoricalCrossentropy:
            return keras.losses.CategoricalCrossentropy(from_logits=True) if loss.from_logits else loss.name
        if type(loss) in (npae_losses.MeanSquaredError, npae_losses.MeanAbsoluteError):
            return loss.name
        raise ConversionError(f"to_keras: the loss {type(loss).__name__} has no Keras equivalent")

    def metrics_of(ids):
        bad = [m for m in ids if not isinstance(m, str)]
        if bad:
            raise ConversionError(f"to_keras: the metric function {npae_metrics.name_of(bad[0])!r} works on NumPy "
                                  "arrays, which Keras does not give it: compile with metric names")
        return list(ids)

    def per_output(values):
        return dict(zip(obj.names, values)) if as_dict else list(values)

    args = {"optimizer": optimizer}
    if several:
        args["loss"] = per_output(loss_of(loss) for loss in obj.losses)
        args["loss_weights"] = per_output(obj.weights)
        if any(obj.metric_ids):
            args["metrics"] = per_output(metrics_of(ids) or None for ids in obj.metric_ids)
    else:
        args["loss"] = loss_of(obj.losses[0])
        if obj.weights[0] != 1.0:
            args["loss_weights"] = [obj.weights[0]]
        if obj.metric_ids[0]:
            args["metrics"] = metrics_of(obj.metric_ids[0])
    return args

