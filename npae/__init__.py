"""npae: a small, exact, fast neural-network library in NumPy + Numba, with hand-written
forward and backward passes, and the six classic MNIST autoencoders built on it.

The reference path (:mod:`npae.functional`, :mod:`npae.layers`, :mod:`npae.reference`) is plain
NumPy; the fast path (:mod:`npae.fast`) imports Numba only when a model first uses it.
"""

from . import (
    activations,
    autoencoders,
    backend,
    callbacks,
    datasets,
    functional,
    gradcheck,
    initializers,
    layers,
    losses,
    models,
    optimizers,
    regularizers,
    utils,
)
from .device import device
from .gradcheck import check_layer, check_loss, check_model
from .layers import Input
from .models import Model, Sequential, load_model
from .random import set_random_seed
from .saving import ModelFileError

__version__ = "0.4.0"

__all__ = ["activations", "autoencoders", "backend", "callbacks", "datasets", "functional", "initializers", "interop",
           "layers",
           "losses", "models", "optimizers", "regularizers", "utils", "gradcheck", "check_layer", "check_loss",
           "check_model", "Input",
           "Model", "Sequential", "load_model", "ModelFileError", "set_random_seed", "device", "__version__"]


def __getattr__(name: str):
    # npae.interop (the bridge to Keras) is imported when first used: most runs never need it
    if name == "interop":
        import importlib

        return importlib.import_module(".interop", __name__)
    raise AttributeError(f"module 'npae' has no attribute {name!r}")
