"""Models from descriptions and files: ``load_model``, ``model_from_json``, ``model_from_config``."""

from __future__ import annotations

import json

from ..layers import InputLayer
from ..saving import ModelFileError
from .files import JSON_FORMAT, Blueprint, compile_arguments, read_model_file
from .model import Model
from .sequential import Sequential

__all__ = ["load_model", "model_from_json", "model_from_config"]


def build(plan: Blueprint) -> Model:
    """The model a checked :class:`npae.models.files.Blueprint` describes (its layers are the
    blueprint's objects: a layer shared by two nested models stays one layer)."""
    built: list[Model] = []
    for desc in plan.models:
        tensors: list[list] = []
        for node in desc["nodes"]:
            args = [tensors[n][k] for n, k in node["args"]]
            if "model" in node:
                inner = built[node["model"]]
                out = inner(args if len(args) > 1 or node.get("list") else args[0])
            else:
                layer = plan.layers[node["layer"]]
                out = layer.output if isinstance(layer, InputLayer) else layer(args if layer.many_inputs else args[0])
            tensors.append(list(out.values()) if isinstance(out, dict) else out if isinstance(out, list) else [out])
        inputs = [tensors[n][k] for n, k in desc["inputs"]]
        outputs = [tensors[n][k] for n, k in desc["outputs"]]
        if desc.get("class_name") == "Sequential":
            model = Sequential(name=desc.get("name"))
            if len(inputs) != 1 or len(outputs) != 1:
                raise ValueError(f"the Sequential {desc.get('name')!r} must have one input and one output")
            model.add(inputs[0])
            for node in desc["nodes"][1:]:
                model.add(plan.layers[node["layer"]] if "layer" in node else built[node["model"]])
        else:
            model = Model(_structure(inputs, desc.get("input_form"), desc.get("input_keys")),
                          _structure(outputs, desc.get("output_form"), desc.get("output_keys")), name=desc.get("name"))
        built.append(model)
    return built[-1]


def _structure(tensors: list, form, keys):
    if form == "dict":
        if not isinstance(keys, list) or len(keys) != len(tensors) or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"a dict of {len(tensors)} tensors needs {len(tensors)} string keys, got {keys!r}")
        return dict(zip(keys, tensors))
    if form == "list":
        return list(tensors)
    if len(tensors) != 1:
        raise ValueError(f"{len(tensors)} tensors given as one")
    return tensors[0]


def model_from_config(config: dict, custom_objects: dict | None = None) -> Model:
    """The (uncompiled) model a :meth:`Model.get_config` description gives, weights freshly initialised."""
    return build(Blueprint(config, custom_objects))


def model_from_json(json_string: str, custom_objects: dict | None = None) -> Model:
    """The (uncompiled) model :meth:`Model.to_json` described, weights freshly initialised
    (Keras's ``model_from_json``); ``custom_objects`` maps class names to Layer subclasses.
    A Keras model's JSON is refused with a ValueError that says so."""
    try:
        spec = json.loads(json_string)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model_from_json: expected the JSON string Model.to_json() returns: {err}") from None
    except RecursionError:
        raise ValueError("model_from_json: the JSON nests values too deeply to describe a model") from None
    if not isinstance(spec, dict) or spec.get("format") != JSON_FORMAT or not isinstance(spec.get("config"), dict):
        keras = isinstance(spec, dict) and ("module" in spec or "keras_version" in spec or "backend" in spec)
        raise ValueError("model_from_json: " + (
            "this JSON describes a Keras model (Keras's to_json); npae reads the JSON of npae's own to_json. Build the "
            "model with npae.layers and move the weights with get_weights() / set_weights(), or convert a Keras "
            "model with npae.interop.from_keras" if keras else
            f"expected the JSON object Model.to_json() returns ({{'format': '{JSON_FORMAT}', 'config': ...}})"))
    try:
        return model_from_config(spec["config"], custom_objects)
    except (KeyError, TypeError, ValueError, IndexError, NotImplementedError, RecursionError) as err:
        raise ValueError(f"model_from_json: the JSON does not describe a consistent model: {type(err).__name__}: "
                         f"{err}") from None


def load_model(path, custom_objects: dict | None = None, compile: bool = True) -> Model:  # noqa: A002
    """Load a model written by :meth:`Model.save` (never unpickles): its architecture, weights and,
    with ``compile``, its optimizer and losses with the optimizer's state.

    Every array is checked against what the description asks for (count, shape, float dtype)
    before the model is built; anything inconsistent is a :class:`npae.ModelFileError`."""
    plan, weights, comp, slots, metadata = read_model_file(path, custom_objects, compile)
    try:
        model = build(plan)
        keys = [key for key, _, _ in plan.weights]
        found = dict(zip(keys, weights))
        for layer in plan.layers:  # (by object: the built model's own weight order may differ)
            for k in layer.param_order:
                key = f"{layer.name}/{k}"
                if key in found:
                    layer.params[k][...] = found[key]
        if comp is not None:
            model.compile(**compile_arguments(comp))
            model.optimizer.iterations = comp.get("iterations", 0)
            params = model.parameters()
            for key, slot, array in slots:
                model.optimizer.state.setdefault(key, {})[slot] = array.astype(params[key].dtype)
        model.metadata = metadata
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, NotImplementedError) as err:
        raise ModelFileError(f"{path!s}: the file does not describe a consistent model: "
                             f"{type(err).__name__}: {err}") from None
    return model
