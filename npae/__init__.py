"""npae: a small, exact, fast neural-network library in NumPy + Numba, with hand-written
forward and backward passes, and the six classic MNIST autoencoders built on it.

The reference path (:mod:`npae.functional`, :mod:`npae.layers`, :mod:`npae.reference`) is plain
NumPy; the fast path (:mod:`npae.fast`) imports Numba only when a model first uses it.
"""

import os as _os

_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # (before NumPy loads: see docs/performance.md)

from . import (  # noqa: E402
    activations,
    autoencoders,
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
)
from .gradcheck import check_layer, check_loss, check_model  # noqa: E402
from .layers import Input  # noqa: E402
from .models import Model, Sequential, load_model  # noqa: E402
from .random import set_random_seed  # noqa: E402
from .saving import ModelFileError  # noqa: E402

__version__ = "0.2.0"

__all__ = ["activations", "autoencoders", "callbacks", "datasets", "functional", "initializers", "layers", "losses",
           "models", "optimizers", "regularizers", "gradcheck", "check_layer", "check_loss", "check_model", "Input",
           "Model", "Sequential", "load_model", "ModelFileError", "set_random_seed", "__version__"]
