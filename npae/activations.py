"""Element-wise activations. Each derivative is written in terms of the output, so a layer need only
keep ``a`` (the fused kernels in :mod:`npae.elementwise` compute both directions):

    relu:    a = max(z, 0)            da/dz = 1[a > 0]
    sigmoid: a = 1 / (1 + exp(-z))    da/dz = a (1 - a)
    linear:  a = z                    da/dz = 1
"""

from __future__ import annotations

import numpy as np

__all__ = ["Activation", "ReLU", "Sigmoid", "get", "sigmoid", "ACTIVATIONS"]


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Numerically stable logistic function: never evaluates exp of a positive number.

    With e = exp(-|z|) in (0, 1]:  sigmoid(z) = 1 / (1 + e) for z >= 0, e / (1 + e) for z < 0.
    """
    e = np.exp(-np.abs(z))
    num = np.where(z >= 0, np.ones((), dtype=e.dtype), e)
    return np.divide(num, 1 + e, out=out)


class Activation:
    """An element-wise activation, by name: 'relu', 'sigmoid' or 'linear'.

    The arithmetic lives in the fused kernels of :mod:`npae.elementwise` (``bias_act_forward``,
    ``act_backward`` and their NumPy twins), selected by ``code``; this object names the activation
    and, for gradient checks, says where its derivative jumps.
    """

    name = "linear"
    code = 0  # the activation's code for the fused kernels in npae.elementwise

    def kink_state(self, a: np.ndarray) -> np.ndarray | None:
        """Where the derivative is discontinuous, a mask that changes when a kink is crossed."""
        return None

    def __repr__(self) -> str:
        return self.name


class ReLU(Activation):
    name = "relu"
    code = 1

    def kink_state(self, a):
        return a > 0


class Sigmoid(Activation):
    name = "sigmoid"
    code = 2


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "linear": Activation}


def get(identifier: str | Activation | None) -> Activation:
    """Resolve 'relu' | 'sigmoid' | 'linear' | None (linear) | an Activation instance."""
    if identifier is None:
        return Activation()
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str) and identifier in ACTIVATIONS:
        return ACTIVATIONS[identifier]()
    raise ValueError(f"unknown activation {identifier!r}: expected one of {sorted(ACTIVATIONS)} or None")
