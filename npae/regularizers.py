"""Activity regularisers, Keras's ``regularizers.l1`` / ``l2``: a penalty on a layer's output h,
added to the loss (the maths: :mod:`npae.functional.regularizers`).

``l1(l)`` adds  l * sum|h| / batch_size  (tf.keras and Keras >= 3.14 divide activity penalties by the
batch size), whose gradient is  l * sign(h) / batch_size.  The tutorial's ``l1(10e-5)`` is l = 1e-4.
"""

from __future__ import annotations

import math

import numpy as np

from .functional import regularizers as ops

__all__ = ["Regularizer", "L1", "L2", "l1", "l2", "get"]


def _factor(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


class Regularizer:
    """Base class: ``penalty(h) -> float`` and ``gradient(h) -> dpenalty/dh`` (the shape of h)."""

    def penalty(self, h: np.ndarray) -> float:
        raise NotImplementedError

    def gradient(self, h: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def kink(self, h: np.ndarray) -> np.ndarray | None:
        """A mask that changes where the penalty has no derivative (for gradient checks)."""
        return None

    def get_config(self) -> dict:
        return {"class_name": type(self).__name__, "config": dict(vars(self))}

    def __call__(self, h) -> float:
        return self.penalty(np.asarray(h))


class L1(Regularizer):
    """penalty = l1 * sum|h| / batch_size."""

    def __init__(self, l1: float = 0.01):
        self.l1 = _factor(l1, "L1")

    def penalty(self, h):
        return ops.l1_forward(h, self.l1)

    def gradient(self, h):
        return ops.l1_backward(h, self.l1)

    def kink(self, h):
        return np.sign(h)


class L2(Regularizer):
    """penalty = l2 * sum h^2 / batch_size."""

    def __init__(self, l2: float = 0.01):
        self.l2 = _factor(l2, "L2")

    def penalty(self, h):
        return ops.l2_forward(h, self.l2)

    def gradient(self, h):
        return ops.l2_backward(h, self.l2)


def l1(l1: float = 0.01) -> L1:  # noqa: E741 - Keras's own spelling
    """Keras's ``regularizers.l1``."""
    return L1(l1)


def l2(l2: float = 0.01) -> L2:
    """Keras's ``regularizers.l2``."""
    return L2(l2)


def get(identifier) -> Regularizer | None:
    """None, a Regularizer, Keras's names "l1" / "l2" (factor 0.01, as Keras), or a saved config
    dict -> Regularizer."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in ("l1", "l2"):
        return L1() if identifier.lower() == "l1" else L2()
    if isinstance(identifier, dict) and identifier.get("class_name") in ("L1", "L2") \
            and isinstance(identifier.get("config", {}), dict):
        cls = L1 if identifier["class_name"] == "L1" else L2
        try:
            return cls(**identifier.get("config", {}))
        except TypeError as err:
            raise ValueError(f"bad regularizer config {identifier!r}: {err}") from None
    raise ValueError(f"unknown regularizer {identifier!r}: expected regularizers.l1(...) or l2(...), or 'l1' / 'l2'")
