"""Keras's ``Model``: a graph of layers between inputs and outputs, itself a layer.

    Model(inputs=x, outputs=h)              a functional model (lists or dicts for several)
    class AE(Model): def call(self, x): ... a subclass: ``call`` is traced on symbolic tensors at
                                            the first build (first batch, or ``build(shape)``), then
                                            it runs as a graph
    encoder(x)                              a model called on a tensor is one node of another
                                            model's graph; its layers (and weights) stay its own

This file holds the structure: layers, inputs and outputs, weights, freezing, the summary and the
description. Training is the :class:`npae.models.trainer.Trainer`'s; files are
:mod:`npae.models.files`'s.
"""

from __future__ import annotations

import copy
import inspect
import json

import numpy as np

from ..checks import pop_keras_only
from ..graph import FlatGraph, Graph, GraphError, Node, SymbolicTensor, flat_tensors, flatten, is_symbolic
from ..layers import Input, InputLayer, Layer
from ..layers.base import check_weight, param_key, unique_name
from . import files
from .trainer import Trainer

__all__ = ["Model"]


class Model(Trainer, Layer):
    """A model: ``Model(inputs=x, outputs=h)`` (also Keras 2's ``Model(input=x, output=h)``), or a
    subclass that defines ``call(inputs)`` with layer calls.

    ``layers`` lists the InputLayer(s) first, as Keras does, then every layer once (a model
    used as a layer counts as one); a layer applied more than once has its weights once and its
    gradients summed over its uses. Inputs and outputs given as lists or dicts keep that form:
    ``predict`` returns a list (or a dict) for them, and ``fit`` takes data in the same form.
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None, *, input=None, output=None,  # noqa: A002
                 trainable: bool = True, **kwargs):
        pop_keras_only("Model", kwargs, {}, strict=True)
        if not isinstance(trainable, (bool, np.bool_)):
            raise TypeError(f"Model: trainable must be True or False, got {trainable!r}")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"Model: name must be a non-empty string without '/', got {name!r}")
        inputs = inputs if inputs is not None else input
        outputs = outputs if outputs is not None else output
        self.name = name or unique_name(self._default_name())
        self._frozen = not trainable  # Keras's Model(trainable=False): every layer frozen
        self._graph: Graph | None = None
        self._flat: FlatGraph | None = None
        self._in_form, self._out_form = "one", "one"  # how inputs / outputs were given: one, list, dict
        self._in_keys, self._out_keys = None, None
        self.activity_regularizer = None
        self.built = False
        Trainer.__init__(self)
        if inputs is None and outputs is None:
            if type(self).call is Model.call and not self._empty_allowed():
                raise ValueError("Model: give both inputs and outputs, e.g. Model(inputs=x, outputs=h), or subclass "
                                 "Model and define call(inputs)")
            return
        if inputs is None or outputs is None:
            raise ValueError("Model: give both inputs and outputs, e.g. Model(inputs=x, outputs=h)")
        self._set_graph(inputs, outputs)

    def _default_name(self) -> str:
        return "Functional" if type(self) is Model else type(self).__name__

    def _empty_allowed(self) -> bool:
        """Whether a model without inputs and outputs is fine (a Sequential fills itself later)."""
        return False

    def _set_graph(self, inputs, outputs) -> None:
        """Take the graph between ``inputs`` and ``outputs`` (tensors, lists or dicts of them)."""
        ins, self._in_keys = flat_tensors(inputs, "inputs")
        outs, self._out_keys = flat_tensors(outputs, "outputs")
        self._in_form = "dict" if self._in_keys is not None else "list" if isinstance(inputs, (list, tuple)) else "one"
        self._out_form = "dict" if self._out_keys is not None else "list" if isinstance(outputs, (list, tuple)) \
            else "one"
        try:
            graph = Graph(ins, outs, owner=self.name)
        except GraphError:
            raise
        self._graph, self._flat = graph, None
        self._check_names()
        self.built = True
        if self._frozen:
            self.trainable = False

    # -- the model as a Keras layer ------------------------------------------------------------
    def __setattr__(self, key, value):
        # Keras tracks the layers a subclass assigns, in order: they are its ``layers`` and give its
        # weight order
        if isinstance(value, Layer) and value is not self and not key.startswith("_"):
            tracked = self.__dict__.setdefault("_tracked", [])
            if not any(v is value for v in tracked):
                tracked.append(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Layer) for v in value) \
                and not key.startswith("_"):
            tracked = self.__dict__.setdefault("_tracked", [])
            tracked.extend(v for v in value if not any(v is t for t in tracked))
        object.__setattr__(self, key, value)

    def call(self, inputs, training=None):
        """A subclass's computation, by layer calls (traced on symbolic tensors at its first build)."""
        raise NotImplementedError(f"{self.name}: a Model subclass defines call(inputs)")

    @property
    def graph(self) -> Graph:
        """The model's graph (built on first use for a subclass, from the data's shape)."""
        if self._graph is None:
            raise ValueError(f"{self.name}: this model has not been built yet: call it on data (fit, predict) or "
                             "call build(input_shape) first" + ("" if type(self).call is Model.call else
                                                                 ", e.g. build((None, 28, 28, 1))"))
        return self._graph

    @property
    def flat(self) -> FlatGraph:
        """The graph as the paths run it: every layer application, nested models spliced in."""
        if self._flat is None:
            self._flat = flatten(self.graph)
            self._check_unique_weights(self._flat)
        return self._flat

    def build(self, input_shape=None) -> None:
        """Build a subclassed model for ``input_shape`` (Keras's, with the batch axis: ``(None, 784)``;
        a list of shapes for several inputs) by tracing ``call`` on symbolic tensors."""
        if self._graph is not None:
            return
        if input_shape is None:
            raise ValueError(f"{self.name}: build needs the input shape, e.g. build((None, 784))")
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        tensors = [Input(shape=_sample_shape(s), name=f"{self.name}_input" + (f"_{i}" if i else ""))
                   for i, s in enumerate(shapes)]
        self._trace(tensors if isinstance(input_shape, list) else tensors[0])

    def _trace(self, inputs) -> None:
        """Run the subclass's ``call`` on symbolic ``inputs`` and keep the graph it made."""
        params = inspect.signature(self.call).parameters
        try:
            outputs = self.call(inputs, training=False) if "training" in params else self.call(inputs)
        except NotImplementedError:
            raise
        except TypeError as err:
            if "symbolic tensor" in str(err):
                raise TypeError(f"{self.name}.call: {err}") from None
            raise
        if not is_symbolic(outputs):
            raise TypeError(f"{self.name}.call returned {type(outputs).__name__}, not tensors made by layer calls")
        self._set_graph(inputs, outputs)

    def _build_for(self, xs: list[np.ndarray], form: str, keys) -> None:
        """Build a subclassed model (or an empty Sequential) for data ``xs``."""
        tensors = [Input(shape=np.shape(x)[1:], name=f"{self.name}_input" + (f"_{i}" if i else ""))
                   for i, x in enumerate(xs)]
        self._trace(dict(zip(keys, tensors)) if form == "dict" else tensors if form == "list" else tensors[0])

    def __call__(self, inputs, training: bool = False):
        """On symbolic tensors: this model as one node of another model's graph, returning its
        outputs in its own form (``encoder(x)[2]``). On data: the outputs, on the model's path."""
        if is_symbolic(inputs):
            return self._call_symbolic(inputs)
        return self._call_eager(inputs, training)

    def _call_symbolic(self, inputs):
        tensors, keys = flat_tensors(inputs, "inputs")
        if self._graph is None:
            self._build_symbolic(tensors, keys, inputs)
        want = [t.sample_shape for t in self.graph.inputs]
        got = [t.sample_shape for t in tensors]
        if want != got:
            raise ValueError(f"{self.name} takes inputs of shapes {[(None, *s) for s in want]}, got "
                             f"{[(None, *s) for s in got]}")
        node = Node(self, tensors, [t.sample_shape for t in self.graph.outputs], len(tensors) > 1,
                    len(self.graph.outputs) > 1, self.dtype.name)
        self._inbound_nodes.append(node)
        outs = list(node.outputs)
        if self._out_form == "dict":
            return dict(zip(self._out_keys, outs))
        return outs if self._out_form == "list" or len(outs) > 1 else outs[0]

    def _build_symbolic(self, tensors, keys, inputs) -> None:
        """Build an unbuilt model (a subclass, a Sequential without an Input) for symbolic inputs."""
        form = "dict" if keys is not None else "list" if isinstance(inputs, (list, tuple)) else "one"
        self._build_for([np.empty((0, *t.sample_shape)) for t in tensors], form, keys)

    @property
    def input(self):
        """The model's input tensor(s), in the form they were given (Keras's ``model.input``)."""
        return self._form(self.graph.inputs, self._in_form, self._in_keys)

    @property
    def output(self):
        """The model's output tensor(s), in the form they were given (Keras's ``model.output``)."""
        return self._form(self.graph.outputs, self._out_form, self._out_keys)

    @property
    def inputs(self) -> list[SymbolicTensor]:
        return list(self.graph.inputs)

    @property
    def outputs(self) -> list[SymbolicTensor]:
        return list(self.graph.outputs)

    @staticmethod
    def _form(items: list, form: str, keys):
        if form == "dict":
            return dict(zip(keys, items))
        return list(items) if form == "list" or len(items) > 1 else items[0]

    @property
    def input_names(self) -> list[str]:
        """The inputs' names (their InputLayers'), the keys of a dict of input data."""
        return list(self._in_keys) if self._in_keys is not None else [t.name for t in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        """The outputs' names: the layers that make them (a dict of outputs: its keys), made unique."""
        if self._out_keys is not None:
            return list(self._out_keys)
        names: list[str] = []
        for t in self.graph.outputs:
            name, i = t.name, 1
            while name in names:
                name, i = f"{t.name}_{i}", i + 1
            names.append(name)
        return names

    # -- structure -----------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The input layers, then every layer once, in Keras's order (a nested model counts as one);
        for a subclass, the layers it assigned to attributes, in order."""
        if type(self).call is not Model.call and "_tracked" in self.__dict__:
            return list(self.__dict__["_tracked"])
        return list(self.graph.layers) if self._graph is not None else []

    def leaf_layers(self) -> list[Layer]:
        """Every layer, nested models opened (their InputLayers too), each once, in weight order
        (Keras's: ``layers`` in order, a nested model's in its own order)."""
        key = (id(self._graph), len(self.__dict__.get("_tracked", ())))
        cached = self.__dict__.get("_leaves")
        if self._graph is not None and cached is not None and cached[0] == key:
            return list(cached[1])  # (asked for on every batch: the walk is kept while the graph is)
        found: dict[int, Layer] = {}

        def walk(model: Model) -> None:
            inputs = [t.layer for t in model.graph.inputs] if model.built else []
            for layer in [*inputs, *model.layers]:
                if isinstance(layer, Model):
                    walk(layer)
                elif id(layer) not in found:
                    found[id(layer)] = layer

        walk(self)
        if self._graph is not None:  # (a subclass's layers that no attribute holds)
            for op in self.flat.ops:
                found.setdefault(id(op.layer), op.layer)
            self._leaves = (key, list(found.values()))
        return list(found.values())

    def _unique_layers(self) -> list[Layer]:
        """The computing layers with their place in the weight order (InputLayers left out)."""
        return [layer for layer in self.leaf_layers() if not isinstance(layer, InputLayer)]

    def _check_names(self) -> None:
        seen: dict[str, Layer] = {}
        for layer in self.graph.layers:
            if seen.setdefault(layer.name, layer) is not layer:
                raise ValueError(f"{self.name}: two layers are named {layer.name!r}; layer names in a model must "
                                 "be unique")

    def _check_unique_weights(self, flat: FlatGraph) -> None:
        seen: dict[str, Layer] = {}
        for op in flat.ops:
            if op.layer.params and seen.setdefault(op.layer.name, op.layer) is not op.layer:
                raise ValueError(f"{self.name}: two different layers with weights are named {op.layer.name!r} (one "
                                 "inside a nested model); npae keys weights by layer name: rename one of them")

    @property
    def input_shape(self):
        """(None, *shape) of the input, a list of them for several inputs (Keras's)."""
        shapes = [t.shape for t in self.graph.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        """(None, *shape) of the output, a list of them for several outputs (Keras's)."""
        shapes = [t.shape for t in self.graph.outputs]
        return shapes[0] if len(shapes) == 1 and self._out_form == "one" else shapes

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the model's weights (of its first input, for a model without weights)."""
        if self._graph is None:
            return np.dtype(np.float32)
        layers = self._unique_layers()
        fallback = self.graph.inputs[0].layer.dtype
        return next((layer.dtype for layer in layers if layer.params), fallback)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name, or by its index in ``layers`` (Keras's ``get_layer``)."""
        if (name is None) == (index is None):
            raise ValueError("get_layer: give exactly one of name= or index=")
        layers = self.layers
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer: index must be an int in [0, {len(layers)}), got {index!r}")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r}; the layers are {[lyr.name for lyr in layers]}")

    # -- weights -------------------------------------------------------------------------------
    @property
    def params(self) -> dict:
        """A model holds no weights of its own: its layers do (see :meth:`parameters`)."""
        return {}

    @params.setter
    def params(self, value) -> None:
        if value:
            raise AttributeError(f"{self.name}: a model's weights are its layers'")

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

    def trainable_param_names(self) -> list[str]:
        return []

    @property
    def trainable(self) -> bool:
        """Whether any layer of the model is trainable. Setting it sets every layer's ``trainable``
        (Keras's ``encoder.trainable = False`` freezes an encoder that shares its layers with an
        autoencoder: the autoencoder's next batches leave them alone)."""
        layers = self._unique_layers()
        return any(layer.trainable for layer in layers) if layers else not self.__dict__.get("_frozen", False)

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
        per_layer: dict[int, dict] = {}
        for (layer, k), w in zip(targets, checked):
            per_layer.setdefault(id(layer), {})[k] = w
        for layer in self._unique_layers():
            if id(layer) in per_layer:
                layer.check_weights(per_layer[id(layer)])
        for (layer, k), w in zip(targets, checked):
            layer.params[k][...] = w

    def astype(self, dtype) -> Model:
        """Cast every weight and optimizer slot to ``dtype`` (float64 for gradient checks)."""
        for layer in self.leaf_layers():
            layer.astype(dtype)
        self._cast_optimizer(dtype)
        return self

    # -- copies --------------------------------------------------------------------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_paths"] = {}  # (rebuilt on first use: plans hold per-thread workspaces)
        state.pop("_nodes", None)
        state.pop("_leaves", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __deepcopy__(self, memo):
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            if key in ("_paths", "_nodes", "_leaves"):
                continue
            object.__setattr__(clone, key, copy.deepcopy(value, memo))
        clone._paths = {}
        return clone

    # -- reporting and files ------------------------------------------------------------------
    def summary(self, print_fn=print) -> None:
        """Print layers, output shapes and parameter counts the way Keras does (a nested model is one
        row, of type Functional or Sequential)."""
        if self._graph is None:
            raise ValueError(f"{self.name}: this model has not been built yet: start it with Input(shape=...), or "
                             "call build(input_shape) or fit first")

        def shape(layer):
            if isinstance(layer, Model):
                return str(layer.output_shape)
            return str((None, *layer.output_shape)) if not isinstance(layer.output_shape, list) else \
                str([(None, *s) for s in layer.output_shape])

        rows = [(f"{layer.name} ({_kind(layer)})", shape(layer), f"{layer.count_params():,}") for layer in self.layers]
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
        config = files.describe(self)
        config["compile"] = self._compile_config()
        return config

    def to_json(self, **kwargs) -> str:
        """The architecture as a JSON string (Keras's ``to_json``): the layers and their settings,
        no weights and no compile settings; :func:`npae.models.model_from_json` rebuilds it (with
        fresh weights). ``kwargs`` go to ``json.dumps`` (e.g. ``indent=2``)."""
        config = files.describe(self)
        config["compile"] = None
        return json.dumps({"format": files.JSON_FORMAT, "class_name": config["class_name"], "config": config},
                          **kwargs)

    def save(self, path, *, metadata: dict | None = None) -> None:
        """Architecture, weights and optimizer state in one .npz, written atomically; ``metadata``
        (JSON-serialisable) is stored with them, and comes back as ``load_model(path).metadata``."""
        files.save_model(self, path, metadata)

    def save_weights(self, path) -> None:
        """The architecture and weights, without the optimizer, in one .npz written atomically
        (:meth:`load_weights` reads it back; so does :func:`npae.models.load_model`, uncompiled)."""
        files.save_weights(self, path)

    def load_weights(self, path) -> None:
        """Copy the weights (and, when both use the same optimizer, its state and step count) from
        a model file written by :meth:`save` or :meth:`save_weights` into this model, which must have
        the same layers with the same weight shapes in the same order (compared through the file's
        description, before anything is read). Used to resume training; errors name what differs."""
        files.load_weights(self, path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _kind(layer) -> str:
    if isinstance(layer, Model):
        return "Functional" if type(layer) is Model else type(layer).__name__
    return type(layer).__name__


def _sample_shape(shape) -> tuple:
    """A shape given to build: Keras's (None, ...) with the batch axis, or without it."""
    shape = tuple(shape)
    return shape[1:] if shape and shape[0] is None else shape
