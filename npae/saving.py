"""Saving and loading whole models: one ``.npz`` holding the architecture (JSON), the weights in
Keras's order and the optimizer's state, so training resumes where it stopped.

Layout of the archive (all plain arrays; loading uses ``allow_pickle=False``):
    npae_config          0-d unicode array with the JSON below
    weight_<i>           the i-th array of ``model.get_weights()``
    opt_<j>              the optimizer slot arrays, in the order listed in the JSON

Writes go to a temporary file in the target's folder, then ``os.replace`` it into place: a crash
mid-write never leaves a half-written model under the target name.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from . import layers as layers_mod
from . import losses, optimizers

__all__ = ["save_model", "load_model", "ModelFileError", "FORMAT", "VERSION"]

FORMAT, VERSION = "npae-model", 1
_LAYER_CLASSES = {name: getattr(layers_mod, name) for name in
                  ("Dense", "Conv2D", "MaxPooling2D", "UpSampling2D", "Activation", "ReLU", "Flatten", "Reshape")}


class ModelFileError(ValueError):
    """A model file is missing, truncated, not an npae model, or does not match its own description."""


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path`` and rename it into place on success."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(model, path) -> None:
    """Write ``model`` (architecture, weights, optimizer state) to ``path`` atomically."""
    opt = model.optimizer
    slot_keys = [(k, s) for k, slots in (opt.state.items() if opt else []) for s in slots]
    config = {
        "format": FORMAT, "version": VERSION,
        "class_name": type(model).__name__, "name": model.name,
        "input_shape": list(model.input_shape[1:]), "dtype": model.dtype.name,
        "input_name": model._input_layer.name,
        "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in model._layers],
        "compile": None if opt is None else {
            "optimizer": opt.get_config(), "loss": model.loss.name, "iterations": opt.iterations,
            "slots": [list(ks) for ks in slot_keys]},
    }
    arrays = {"npae_config": np.array(json.dumps(config))}
    arrays.update({f"weight_{i}": w for i, w in enumerate(model.get_weights())})
    arrays.update({f"opt_{j}": opt.state[k][s] for j, (k, s) in enumerate(slot_keys)})
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_model(path):
    """Rebuild a model saved by :func:`save_model`; every problem is a :class:`ModelFileError`."""
    from .graph import Input
    from .models import Model, Sequential

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"no model file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ModelFileError(f"{path!r} is not a readable npae model (.npz) file: {err}") from None
    if "npae_config" not in arrays:
        raise ModelFileError(f"{path!r} is an .npz file but not an npae model (no 'npae_config' entry)")
    try:
        config = json.loads(str(arrays["npae_config"]))
        if config.get("format") != FORMAT:
            raise ModelFileError(f"{path!r}: unknown format {config.get('format')!r}")
        if config.get("version") != VERSION:
            raise ModelFileError(f"{path!r}: format version {config.get('version')}, this npae reads {VERSION}")
        x = Input(shape=tuple(config["input_shape"]), name=config.get("input_name"), dtype=config["dtype"])
        t = x
        for spec in config["layers"]:
            cls = _LAYER_CLASSES.get(spec["class_name"])
            if cls is None:
                raise ModelFileError(f"{path!r}: unknown layer class {spec['class_name']!r}")
            t = cls(**spec["config"])(t)
        if config["class_name"] == "Sequential":
            model = Sequential([x, *(spec_layer for spec_layer in _chain(t))], name=config["name"])
        else:
            model = Model(x, t, name=config["name"])
        n_weights = sum(1 for k in arrays if k.startswith("weight_"))
        model.set_weights([arrays[f"weight_{i}"] for i in range(n_weights)])
        comp = config["compile"]
        if comp is not None:
            model.compile(optimizer=optimizers.get(comp["optimizer"]), loss=losses.get(comp["loss"]))
            model.optimizer.iterations = int(comp["iterations"])
            for j, (k, s) in enumerate(comp["slots"]):
                model.optimizer.state.setdefault(k, {})[s] = arrays[f"opt_{j}"].copy()
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path!r}: the file does not describe a consistent model: {err}") from None
    return model


def _chain(t):
    out = []
    while t.parent is not None:
        out.append(t.layer)
        t = t.parent
    return out[::-1]
