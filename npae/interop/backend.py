"""Which Keras backend npae.interop uses, and importing Keras (never at npae's import).

Keras 3 takes its backend from ``KERAS_BACKEND``, else from its configuration file
(``$KERAS_HOME/keras.json``, by default ``~/.keras/keras.json``), else tensorflow, and fails to
import when that backend is not installed. Keras also writes that file, naming tensorflow, the
first time it is imported. So before Keras's first import, where ``KERAS_BACKEND`` is unset and
the file names no backend that is installed (no file, no "backend" entry, or one whose package is
missing), npae sets ``KERAS_BACKEND`` to the first installed of tensorflow, jax and torch. Without
Keras, or without any backend, the ImportError says ``pip install npae[keras]`` (Keras and JAX).
"""

from __future__ import annotations

import json
import os
import sys
from importlib.util import find_spec

__all__ = ["BACKENDS", "INSTALL_HINT", "choose_keras_backend", "import_keras", "keras_config_path"]

BACKENDS = ("tensorflow", "jax", "torch")  # the order in which a backend is chosen
INSTALL_HINT = "pip install npae[keras]"  # (installs keras and jax)
_BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy",
                    "openvino": "openvino"}


def keras_config_path() -> str:
    """Where Keras reads its configuration file (its own rule: $KERAS_HOME, else ~/.keras, else
    /tmp/.keras when the home directory is not writable)."""
    if "KERAS_HOME" in os.environ:
        folder = os.environ["KERAS_HOME"]
    else:
        home = os.path.expanduser("~")
        folder = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    return os.path.join(os.path.expanduser(folder), "keras.json")


def _installed(backend) -> bool:
    module = _BACKEND_MODULES.get(backend) if isinstance(backend, str) else None
    return module is not None and find_spec(module) is not None


def choose_keras_backend() -> str:
    """The backend Keras will use, set in ``KERAS_BACKEND`` where npae chooses it: an existing
    ``KERAS_BACKEND`` wins, then a keras.json that names an installed backend, else the first
    installed of :data:`BACKENDS` (ImportError if none is)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    try:
        with open(keras_config_path()) as f:
            configured = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        configured = None
    if _installed(configured):
        return configured
    for backend in BACKENDS:
        if _installed(backend):
            os.environ["KERAS_BACKEND"] = backend
            return backend
    raise ImportError(f"npae.interop needs Keras 3 with a backend, and none of {', '.join(BACKENDS)} is installed: "
                      f"{INSTALL_HINT} (installs keras and jax)")


def import_keras():
    """The keras module (version 3), imported with a backend chosen by :func:`choose_keras_backend`
    (once imported, Keras keeps its backend)."""
    if "keras" not in sys.modules:
        if find_spec("keras") is None:
            raise ImportError(f"npae.interop needs Keras 3, which is not installed: {INSTALL_HINT} (installs keras "
                              "and jax)")
        backend = choose_keras_backend()
        try:
            import keras
        except ImportError as err:
            raise ImportError(f"importing Keras with the {backend!r} backend failed ({err}); set KERAS_BACKEND to an "
                              f"installed backend, or {INSTALL_HINT}") from err
    keras = sys.modules["keras"]
    if not str(getattr(keras, "__version__", "0")).startswith("3"):
        raise ImportError(f"npae.interop needs Keras 3, found Keras {keras.__version__}: {INSTALL_HINT}")
    return keras

