"""Model files: a model's description (JSON) <-> its layers, and its weights <-> the archive.

A description (``get_config()``, ``to_json()``, the ``npae_config`` of a model file) lists every
layer once and each model's graph as nodes that refer to layers by number::

    {"class_name": "Functional", "name": "vae",
     "layers": [{"class_name": "InputLayer", "config": {...}}, {"class_name": "Dense", ...}, ...],
     "models": [{"class_name": "Functional", "name": "encoder", "nodes": [...], ...}, ...],
     "nodes": [{"layer": 0, "args": []}, {"model": 0, "args": [[0, 0]]}, ...],
     "inputs": [[0, 0]], "outputs": [[2, 0]], "input_keys": null, "output_keys": null}

``layers`` are in the order of the model's weights (``get_weights()``); ``models`` are the nested
models, each after the models it calls; a node is a layer's (or a model's) call on ``args``,
[node, output] pairs of earlier nodes of the same model. Version 1 files (npae 0.3: a chain,
``"layers"`` with ``SharedLayer`` entries) still load.

Reading never trusts the description: :class:`Blueprint` works out every layer's shapes and
every weight's shape without allocating anything, refuses what does not fit together, and refuses
weights or activations larger than the machine could hold, before the model is built.
"""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np

from .. import losses, optimizers
from .. import metrics as npae_metrics
from ..graph import Graph
from ..layers import InputLayer, Layer
from ..layers import deserialize as deserialize_layer
from ..layers.base import param_key
from ..saving import ModelFile, ModelFileError, write_model_file

__all__ = ["JSON_FORMAT", "MAX_MODEL_BYTES", "describe", "Blueprint", "save_model", "save_weights", "load_weights",
           "read_model_file"]

JSON_FORMAT = "npae.model"  # what to_json writes, so that model_from_json knows its own JSON


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


#: A description whose weights (or one sample's activations) would take more than this is refused
#: before any allocation.
MAX_MODEL_BYTES = _physical_memory() // 2


# -- model -> description ---------------------------------------------------------------------
def _form(structure) -> tuple[str, list[str] | None]:
    if isinstance(structure, dict):
        return "dict", list(structure)
    return ("list", None) if isinstance(structure, list) else ("one", None)


def describe(model) -> dict:
    """The description of ``model`` (see the module docstring), without compile settings."""
    leaves = model.leaf_layers()
    index = {id(layer): i for i, layer in enumerate(leaves)}
    models: list = []
    model_index: dict[int, int] = {}

    def graph_of(m) -> dict:
        graph: Graph = m.graph
        nodes = [t.node for t in graph.inputs] + list(graph.nodes)
        where = {id(node): i for i, node in enumerate(nodes)}
        entries = []
        for node in nodes:
            layer = node.layer
            if hasattr(layer, "graph") and isinstance(getattr(layer, "graph", None), Graph):
                if id(layer) not in model_index:
                    models.append(graph_of(layer))
                    model_index[id(layer)] = len(models) - 1
                ref = {"model": model_index[id(layer)]}
            else:
                ref = {"layer": index[id(layer)]}
            entries.append({**ref, "args": [[where[id(t.node)], t.index] for t in node.inputs],
                            "list": node.many_inputs})
        in_form, in_keys = _form(m.input)
        out_form, out_keys = _form(m.output)
        return {"class_name": "Sequential" if type(m).__name__ == "Sequential" else "Functional", "name": m.name,
                "nodes": entries, "inputs": [[where[id(t.node)], t.index] for t in graph.inputs],
                "outputs": [[where[id(t.node)], t.index] for t in graph.outputs], "input_form": in_form,
                "input_keys": in_keys, "output_form": out_form, "output_keys": out_keys}

    top = graph_of(model)
    return {**top, "dtype": model.dtype.name, "layers": [_layer_spec(layer) for layer in leaves], "models": models}


def _layer_spec(layer: Layer) -> dict:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


# -- description -> layers (checked, nothing allocated) ---------------------------------------
def _ref(pair, nodes: int, what: str) -> tuple[int, int]:
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                for v in pair)):
        raise ValueError(f"{what}: a tensor is [node, output], got {pair!r}")
    if not 0 <= pair[0] < nodes or pair[1] < 0:
        raise ValueError(f"{what}: [node, output] {pair!r} does not name an earlier node")
    return pair[0], pair[1]


def _from_v1(config: dict) -> dict:
    """A version 1 description (a chain: ``input_shape``, ``layers`` with SharedLayer entries) in
    today's form."""
    specs, shape = config["layers"], config["input_shape"]
    if not isinstance(specs, list) or not isinstance(shape, list):
        raise ValueError("'layers' and 'input_shape' must be lists")
    input_spec = {"class_name": "InputLayer", "config": {"input_shape": shape, "dtype": config["dtype"],
                                                         **({"name": config["input_name"]}
                                                            if config.get("input_name") else {})}}
    layers, nodes, first = [input_spec], [{"layer": 0, "args": []}], {}
    for i, spec in enumerate(specs):
        if isinstance(spec, dict) and spec.get("class_name") == "SharedLayer":
            at = spec.get("config", {}).get("index") if isinstance(spec.get("config"), dict) else None
            if not isinstance(at, int) or isinstance(at, bool) or at not in first:
                raise ValueError(f"a shared layer must name an earlier layer's index, got {spec!r}")
            ref = first[at]
        else:
            layers.append(spec)
            ref = first[i] = len(layers) - 1
        nodes.append({"layer": ref, "args": [[len(nodes) - 1, 0]], "list": False})
    cls = "Sequential" if config.get("class_name") == "Sequential" else "Functional"
    return {**config, "class_name": cls, "layers": layers, "models": [], "nodes": nodes, "inputs": [[0, 0]],
            "outputs": [[len(nodes) - 1, 0]], "input_form": "one", "output_form": "one"}


class Blueprint:
    """What a description asks for, worked out without allocating a weight: the layers (unbuilt,
    in weight order), every tensor's shape, and each weight's key, shape and dtype in
    ``get_weights`` order. Any inconsistency is a ValueError (or KeyError, TypeError) naming it."""

    def __init__(self, config: dict, custom_objects: dict | None = None):
        if not isinstance(config, dict):
            raise ValueError(f"a model description is a JSON object, got {type(config).__name__}")
        if "nodes" not in config:
            config = _from_v1(config)
        self.config = config
        specs, models = config["layers"], config.get("models") or []
        if not isinstance(specs, list) or not isinstance(models, list):
            raise ValueError("'layers' and 'models' must be lists")
        self.layers: list[Layer] = [deserialize_layer(spec, custom_objects) for spec in specs]
        self.models = [*models, config]  # the top model last: each model only calls earlier ones
        self.input_shapes: dict[int, object] = {}  # id(layer) -> the shape(s) it is applied to
        self.io: list[tuple[list, list]] = []  # per model: (input shapes, output shapes)
        per_sample = 0
        for m, desc in enumerate(self.models):
            if not isinstance(desc, dict):
                raise ValueError(f"model {m} of the description is not an object")
            shapes, elements = self._shapes_of(desc, m)
            per_sample += elements
        self.weights: list[tuple[str, tuple[int, ...], np.dtype]] = []
        for layer in self.layers:
            if isinstance(layer, InputLayer):
                continue
            if id(layer) not in self.input_shapes:
                raise ValueError(f"the layer {layer.name!r} is never applied")
            shapes = layer.weight_shapes(self.input_shapes[id(layer)])
            self.weights += [(param_key(layer, k), tuple(shapes[k]), layer.dtype) for k in layer.param_order
                             if k in shapes]
        names = [key for key, _, _ in self.weights]
        if len(set(names)) != len(names):
            raise ValueError("two layers with weights have the same name")
        need = sum(math.prod(shape) * dtype.itemsize for _, shape, dtype in self.weights)
        if need > MAX_MODEL_BYTES:
            raise ValueError(f"its weights would take {need / 2**30:,.1f} GiB, more than half of this machine's "
                             f"memory ({MAX_MODEL_BYTES / 2**30:,.1f} GiB)")
        if per_sample * 4 > MAX_MODEL_BYTES:
            raise ValueError(f"one sample's activations would take {per_sample * 4 / 2**30:,.1f} GiB, more than half "
                             f"of this machine's memory ({MAX_MODEL_BYTES / 2**30:,.1f} GiB)")
        self.activation_elements = per_sample

    def _shapes_of(self, desc: dict, m: int) -> tuple[list, int]:
        """Each node's output shapes in model ``m`` (checking every call), and the number of values
        its tensors hold for one sample."""
        nodes = desc["nodes"]
        if not isinstance(nodes, list):
            raise ValueError("'nodes' must be a list")
        out: list[list[tuple[int, ...]]] = []
        elements = 0
        for i, node in enumerate(nodes):
            if not isinstance(node, dict) or not isinstance(node.get("args"), list):
                raise ValueError(f"node {i}: expected {{'layer' or 'model': n, 'args': [...]}}, got {node!r}")
            args = [_ref(pair, i, f"node {i}") for pair in node["args"]]
            shapes = []
            for n, k in args:
                if k >= len(out[n]):
                    raise ValueError(f"node {i}: node {n} has no output {k}")
                shapes.append(out[n][k])
            if "model" in node:
                j = node["model"]
                if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < m:
                    raise ValueError(f"node {i}: 'model' must name an earlier model, got {j!r}")
                want, made = self.io[j]
                if shapes != want:
                    raise ValueError(f"node {i}: model {j} takes shapes {want}, is given {shapes}")
                out.append(list(made))
                continue
            j = node.get("layer")
            if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < len(self.layers):
                raise ValueError(f"node {i}: 'layer' must name a layer, got {j!r}")
            layer = self.layers[j]
            if isinstance(layer, InputLayer):
                if args:
                    raise ValueError(f"node {i}: an InputLayer takes no arguments")
                made = tuple(layer.input_shape)
            else:
                if not args:
                    raise ValueError(f"node {i}: {layer.name} is applied to nothing")
                given = shapes if layer.many_inputs else shapes[0]
                if not layer.many_inputs and (len(shapes) != 1 or node.get("list")):
                    raise ValueError(f"node {i}: {layer.name} takes one tensor, is given {len(shapes)}")
                seen = self.input_shapes.setdefault(id(layer), given)
                if seen != given:
                    raise ValueError(f"node {i}: {layer.name} is applied to shapes {seen} and {given}")
                made = tuple(layer.compute_output_shape(given))
            elements += math.prod(made)
            out.append([made])
        inputs = [out[n][k] for n, k in (_ref(p, len(nodes), "inputs") for p in desc["inputs"])]
        outputs = [out[n][k] for n, k in (_ref(p, len(nodes), "outputs") for p in desc["outputs"])]
        self.io.append((inputs, outputs))
        return out, elements


def read_model_file(path, custom_objects: dict | None, compile: bool):  # noqa: A002
    """(blueprint, weights in order, compile settings or None, optimizer slots [(key, slot, array)],
    metadata) of a model file, every array checked against the description before it is read."""
    with ModelFile(path) as mf:
        try:
            plan = Blueprint(mf.config, custom_objects)
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
                shapes = {key: shape for key, shape, _ in plan.weights}
                if not isinstance(comp["slots"], list):
                    raise ValueError("'slots' must be a list")
                for j, pair in enumerate(comp["slots"]):
                    if not (isinstance(pair, list) and len(pair) == 2 and pair[0] in shapes
                            and pair[1] in optimizer.slot_names()):
                        raise ModelFileError(f"{path!s}: optimizer slot {pair!r} does not belong to this model and "
                                             f"its {type(optimizer).__name__}")
                    mf.check(f"opt_{j}", shapes[pair[0]])
                for j, (key, slot) in enumerate(comp["slots"]):
                    slots.append((key, slot, mf.array(f"opt_{j}", shapes[key])))
            weights = [mf.array(f"weight_{i}", shape) for i, (_, shape, _) in enumerate(plan.weights)]
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, NotImplementedError, RecursionError) as err:
            raise ModelFileError(f"{path!s}: the file does not describe a consistent model: "
                                 f"{type(err).__name__}: {err}") from None
        return plan, weights, (comp if compile else None), slots, mf.config.get("metadata")


def compile_arguments(comp: dict) -> dict:
    """compile()'s arguments from a file's compile settings (checked)."""
    jit = comp.get("jit_compile", "auto")
    loss = comp["loss"]
    if isinstance(loss, list):
        loss = [None if item is None else losses.get(item) for item in loss]
    else:
        loss = losses.get(loss)
    args = {"optimizer": optimizers.get(comp["optimizer"]), "loss": loss,
            "jit_compile": jit if jit in (True, False, "auto") else "auto"}
    if comp.get("loss_weights") is not None:
        args["loss_weights"] = list(comp["loss_weights"])
    metrics = comp.get("output_metrics") if comp.get("output_metrics") is not None else comp.get("metrics")
    if metrics:
        flat = [m for entry in metrics for m in (entry if isinstance(entry, list) else [entry])]
        if not all(isinstance(m, str) for m in flat):
            raise ValueError(f"'metrics' must list metric names, got {metrics!r}")
        for m in flat:
            npae_metrics.name_of(m)
        args["metrics"] = metrics
    return args


# -- weights <-> archive ---------------------------------------------------------------------
def _check_path(path, what: str) -> str:
    path = os.fspath(path)
    if path.endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(f"{what}: {path!r} names a Keras format; npae writes its own .npz model files "
                         "(e.g. 'model.npz'), which Keras cannot read; move weights with get_weights(), or a whole "
                         "model with npae.interop.to_keras")
    return path


def save_model(model, path, metadata: dict | None) -> None:
    """Description, compile settings, weights and optimizer state in one archive, atomically."""
    path = _check_path(path, "save")
    config = model.get_config()
    if metadata is not None:
        json.dumps(metadata)  # (a clear TypeError now, not a half-written file later)
        config["metadata"] = metadata
    obj = model.objective
    unsaved = [npae_metrics.name_of(m) for ids in (obj.metric_ids if obj else ()) for m in ids
               if not isinstance(m, str)]
    if unsaved:
        warnings.warn(f"save: the metric functions {unsaved} are not saved (a file holds no code); after "
                      "load_model, compile again with them to log them", stacklevel=3)
    opt = model.optimizer
    slot_keys = [(k, s) for k, slots in (opt.state.items() if opt else []) for s in slots]
    if config["compile"] is not None:
        config["compile"]["slots"] = [list(ks) for ks in slot_keys]
    arrays = {f"weight_{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"opt_{j}": opt.state[k][s] for j, (k, s) in enumerate(slot_keys)})
    write_model_file(path, config, arrays)


def save_weights(model, path) -> None:
    """The description and the weights, without the optimizer, in one archive, atomically."""
    path = _check_path(path, "save_weights")
    config = describe(model)
    config["compile"] = None
    write_model_file(path, config, {f"weight_{i}": w for i, w in enumerate(model.get_weights())})


def _layout(layers) -> list:
    return [(type(layer).__name__, {k: tuple(s) for k, s in shapes.items()}) for layer, shapes in layers]


def load_weights(model, path) -> None:
    """Copy a file's weights (and its optimizer's state, where ``model`` uses the same optimizer)
    into ``model``, after comparing the two layouts through the file's description."""
    plan, weights, comp, slots, _ = read_model_file(path, None, compile=True)
    mine = _layout((layer, {k: v.shape for k, v in layer.params.items()}) for layer in model.leaf_layers()
                   if not isinstance(layer, InputLayer))
    theirs = _layout((layer, layer.weight_shapes(plan.input_shapes[id(layer)])) for layer in plan.layers
                     if not isinstance(layer, InputLayer))
    if mine != theirs:
        raise ModelFileError(f"{path!s}: holds a different architecture: expected layers {mine}, got {theirs}")
    model.set_weights(weights)
    opt = model.optimizer
    if opt is None or comp is None:
        return
    saved = optimizers.get(comp["optimizer"])
    if opt.get_config() != saved.get_config():
        return
    opt.iterations = comp.get("iterations", 0)
    # optimizer state is keyed "<layer name>/<weight>"; names may differ between processes, so
    # weights are matched by position
    keys = dict(zip((key for key, _, _ in plan.weights), model.parameters()))
    params = model.parameters()
    opt.state = {}
    for key, slot, array in slots:
        mine_key = keys[key]
        opt.state.setdefault(mine_key, {})[slot] = array.astype(params[mine_key].dtype)
