"""npae: a small, exact, fast neural-network library in NumPy + Numba, with hand-written
forward and backward passes, and the six classic MNIST autoencoders built on it."""

from . import (
           _threads,  # noqa: F401  (first: it sets OpenBLAS's thread timeout before NumPy loads)
           activations,
           callbacks,
           datasets,
           gradcheck,
           initializers,
           layers,
           losses,
           models,
           optimizers,
           regularizers,
)
from .gradcheck import check_layer, check_loss, check_model
from .models import Model, Sequential, load_model
from .random import set_random_seed

__version__ = "0.1.0"

__all__ = ["activations", "callbacks", "datasets", "initializers", "layers", "losses", "models", "optimizers",
           "regularizers", "gradcheck", "check_layer", "check_loss", "check_model", "Model", "Sequential",
           "load_model", "set_random_seed", "__version__"]
