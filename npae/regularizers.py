"""Activity regularisers: a penalty on a layer's output h, added to the loss.

``l1(l)`` adds  l * sum|h| / batch_size  (tf.keras and Keras >= 3.14 divide activity penalties by the
batch size), whose gradient is  l * sign(h) / batch_size.  The tutorial's ``l1(10e-5)`` is l = 1e-4.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Regularizer", "L1", "L2", "l1", "l2", "get"]


class Regularizer:
    """Base class: ``penalty(h) -> float`` and ``gradient(h) -> dpenalty/dh`` (shape of h)."""

    def penalty(self, h: np.ndarray) -> float:
        raise NotImplementedError

    def gradient(self, h: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"class_name": type(self).__name__, "config": dict(vars(self))}


class L1(Regularizer):
    """penalty = l1 * sum|h| / batch_size."""

    def __init__(self, l1: float = 0.01):
        self.l1 = float(l1)

    def penalty(self, h):
        return self.l1 * float(np.abs(h).sum(dtype=np.float64)) / h.shape[0]

    def gradient(self, h):
        return (self.l1 / h.shape[0]) * np.sign(h)

    def kink_state(self, h):
        return np.sign(h)


class L2(Regularizer):
    """penalty = l2 * sum h^2 / batch_size."""

    def __init__(self, l2: float = 0.01):
        self.l2 = float(l2)

    def penalty(self, h):
        return self.l2 * float(np.square(h).sum(dtype=np.float64)) / h.shape[0]

    def gradient(self, h):
        return (2 * self.l2 / h.shape[0]) * h

    def kink_state(self, h):
        return None


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
    if isinstance(identifier, dict) and identifier.get("class_name") in ("L1", "L2"):
        cls = L1 if identifier["class_name"] == "L1" else L2
        return cls(**identifier["config"])
    raise ValueError(f"unknown regularizer {identifier!r}: expected regularizers.l1(...) or l2(...), or 'l1' / 'l2'")
