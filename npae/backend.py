"""The ``keras.backend`` helpers autoencoder programs call that need no automatic
differentiation: ``int_shape``, ``clear_session``, ``image_data_format``, ``floatx``, ``epsilon``.

Keras's backend tensor functions (``K.exp``, ``K.mean``, ``K.square``, ...), used in custom losses
and Lambda layers, compute on tensors whose gradient a framework then derives automatically; npae
has no automatic differentiation, so it has none of them, and asking for one says so.
"""

from __future__ import annotations

import numpy as np

from .graph import NO_AUTODIFF, SymbolicTensor
from .layers.base import reset_names

__all__ = ["int_shape", "clear_session", "image_data_format", "floatx", "epsilon"]


def int_shape(x) -> tuple:
    """The shape of a symbolic tensor (None for the batch axis) or of an array, as a tuple."""
    if isinstance(x, SymbolicTensor):
        return x.shape
    return tuple(int(d) for d in np.shape(x))


def clear_session() -> None:
    """Start layer and model names afresh (``dense``, ``dense_1``, ... again), as Keras does.
    npae keeps no other global state between models."""
    reset_names()


def image_data_format() -> str:
    """npae's images are channels-last: (batch, height, width, channels)."""
    return "channels_last"


def floatx() -> str:
    """The default dtype of weights: float32."""
    return "float32"


def epsilon() -> float:
    """Keras's fuzz factor, 1e-7 (what binary cross-entropy clips probabilities with)."""
    return 1e-7


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(f"npae.backend has no {name!r}: Keras's backend tensor functions compute on tensors whose "
                         f"gradient is then derived automatically; {NO_AUTODIFF}")
