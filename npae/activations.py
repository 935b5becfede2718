"""Activations by Keras's names: ``Dense(64, activation="relu")``, or ``npae.activations.relu(x)``
on an array. The maths (forward and backward) is in :mod:`npae.functional.activations`.

Supported: linear, relu, sigmoid, tanh, leaky_relu (negative slope 0.2, as Keras's function),
elu (alpha 1.0), softplus, silu (also called swish), softmax (over the last axis, Keras's
``axis=-1``: the one activation that is not element-wise).
"""

from __future__ import annotations

import numpy as np

from .functional import activations as ops

__all__ = ["Activation", "get", "serialize", "linear", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus",
           "silu", "swish", "softmax"]

_DEFAULT_ALPHA = {"leaky_relu": 0.2, "elu": 1.0}


class Activation:
    """One activation: its ``name`` (one of :data:`npae.functional.activations.NAMES`) and, for
    leaky_relu and elu, ``alpha`` (the negative slope, or elu's alpha). Calling it on an array
    applies it."""

    def __init__(self, name: str, alpha: float | None = None):
        if name not in ops.NAMES:
            raise ValueError(f"unknown activation {name!r}: expected one of {', '.join(ops.NAMES)} or None")
        self.name = name
        self.alpha = float(_DEFAULT_ALPHA.get(name, 0.0) if alpha is None else alpha)

    def forward(self, z: np.ndarray) -> tuple[np.ndarray, ops.ActivationCache]:
        """a = f(z) and the cache for :meth:`backward` (see :func:`npae.functional.activations.forward`)."""
        return ops.forward(z, self.name, self.alpha)

    def backward(self, da: np.ndarray, cache: ops.ActivationCache) -> np.ndarray:
        """dL/dz from dL/da."""
        return ops.backward(da, cache)

    def __call__(self, x) -> np.ndarray:
        return self.forward(np.asarray(x))[0]

    def __eq__(self, other) -> bool:
        return isinstance(other, Activation) and (self.name, self.alpha) == (other.name, other.alpha)

    def __hash__(self) -> int:
        return hash((self.name, self.alpha))

    def __repr__(self) -> str:
        return self.name if self.name not in _DEFAULT_ALPHA else f"{self.name}(alpha={self.alpha})"


def _function(name: str):
    def apply(x):
        return Activation(name)(x)

    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = f"Keras's ``activations.{name}``: applies {name} element-wise to an array."
    return apply


linear, relu, sigmoid, tanh = _function("linear"), _function("relu"), _function("sigmoid"), _function("tanh")
leaky_relu, elu, softplus, silu = _function("leaky_relu"), _function("elu"), _function("softplus"), _function("silu")
swish = silu


def softmax(x, axis: int = -1) -> np.ndarray:
    """Keras's ``activations.softmax(x, axis=-1)``: exp(x) / sum exp(x) along ``axis`` (computed
    stably, see :func:`npae.functional.activations.softmax`). As a layer's activation
    (``activation="softmax"`` or ``activation=npae.activations.softmax``) it is taken over the last
    axis, as in Keras."""
    x = np.asarray(x)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"softmax: axis must be an int in [{-x.ndim}, {x.ndim - 1}] for an array of shape {x.shape}, "
                         f"got {axis!r}")
    return np.moveaxis(Activation("softmax")(np.moveaxis(x, axis, -1)), -1, axis)


_FUNCTIONS = {f: f.__name__ for f in (linear, relu, sigmoid, tanh, leaky_relu, elu, softplus, silu, softmax)}


def get(identifier) -> Activation:
    """None (linear), a name ('relu', 'swish', ...), one of this module's functions, or an
    :class:`Activation` -> an Activation. Any other callable is refused: npae needs each
    activation's derivative, which it has for the names above only."""
    if identifier is None:
        return Activation("linear")
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str):
        name = identifier.lower()
        return Activation("silu" if name == "swish" else name)
    if callable(identifier) and identifier in _FUNCTIONS:
        return Activation(_FUNCTIONS[identifier])
    if isinstance(identifier, dict) and "name" in identifier:  # what serialize() writes
        return Activation(identifier["name"], identifier.get("alpha"))
    raise ValueError(f"unsupported activation {identifier!r}: npae computes the derivative of its own "
                     f"activations only; give one of {', '.join(ops.NAMES)} (by name or npae.activations.<name>)")


def serialize(activation: Activation) -> str | dict:
    """The name, or {name, alpha} where alpha differs from the default (what get() reads back)."""
    if activation.name in _DEFAULT_ALPHA and activation.alpha != _DEFAULT_ALPHA[activation.name]:
        return {"name": activation.name, "alpha": activation.alpha}
    return activation.name
