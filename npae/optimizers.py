"""Optimizers: ``step(params, grads)`` updates every parameter in place.

State lives in the optimizer, one dict of slot arrays per parameter, keyed by the parameter's
key ``"<layer name>/<param name>"``; a layer never holds an optimizer, and backward never updates.

    SGD:      v = momentum v - lr g;  p += v            (momentum 0: p -= lr g)
    Adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
              p -= lr_t m / (sqrt(v) + eps),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
              (Keras's "epsilon hat" form: eps is added after the bias correction of lr.)
    Adadelta: E[g2] = rho E[g2] + (1 - rho) g^2
              d = sqrt(E[dx2] + eps) / sqrt(E[g2] + eps) * g
              E[dx2] = rho E[dx2] + (1 - rho) d^2;  p -= lr d

Adadelta's learning rate defaults to 1.0, as in Zeiler's paper and the Keras 2 the autoencoder
tutorial used. Keras 3 changed the default to 0.001, which scales every step by 1/1000: with it the
tutorial's autoencoders barely move in 50 epochs. Pass ``learning_rate=0.001`` to reproduce Keras 3.
"""

from __future__ import annotations

import math

import numpy as np

from . import elementwise

__all__ = ["Optimizer", "SGD", "Adam", "Adadelta", "get", "OPTIMIZERS"]


class Optimizer:
    """Base class. ``iterations`` counts completed steps; ``state[key][slot]`` are arrays."""

    slots: tuple[str, ...] = ()

    def __init__(self, learning_rate: float):
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Apply one update to every ``params[key]`` from ``grads[key]`` (same shapes), in place."""
        self.iterations += 1
        for key, p in params.items():
            g = grads[key]
            if key not in self.state:
                self.state[key] = {s: np.zeros_like(p) for s in self.slots}
            self._update(p, g, self.state[key])

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        cfg = {k: v for k, v in vars(self).items() if k not in ("state", "iterations", "slots")}
        return {"class_name": type(self).__name__, "config": cfg}


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum. Keras defaults."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(learning_rate)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.slots = ("velocity",) if momentum else ()

    def _update(self, p, g, state):
        lr = p.dtype.type(self.learning_rate)
        if not self.momentum:
            p -= lr * g
            return
        v = state["velocity"]
        v *= p.dtype.type(self.momentum)
        v -= lr * g
        if self.nesterov:
            p += p.dtype.type(self.momentum) * v - lr * g
        else:
            p += v


class Adam(Optimizer):
    """Adam (Kingma & Ba) with Keras's defaults and epsilon-hat form."""

    slots = ("m", "v")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _update(self, p, g, state):
        t = self.iterations
        lr_t = self.learning_rate * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        elementwise.adam_update(_flat(p), _flat(g), _flat(state["m"]), _flat(state["v"]), lr_t,
                                self.beta_1, self.beta_2, self.epsilon)


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012); default lr 1.0 as in the paper (see the module docstring)."""

    slots = ("accum_grad", "accum_delta")

    def __init__(self, learning_rate: float = 1.0, rho: float = 0.95, epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.rho, self.epsilon = float(rho), float(epsilon)

    def _update(self, p, g, state):
        elementwise.adadelta_update(_flat(p), _flat(g), _flat(state["accum_grad"]), _flat(state["accum_delta"]),
                                    self.learning_rate, self.rho, self.epsilon)


def _flat(a: np.ndarray) -> np.ndarray:
    """A 1-D view (never a copy: the update must land in the parameter itself)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"optimizer: parameters and slots must be C-contiguous, got strides {a.strides}")
    return a.reshape(-1)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adadelta": Adadelta}


def get(identifier: str | Optimizer | dict) -> Optimizer:
    """Resolve 'sgd' | 'adam' | 'adadelta' | an Optimizer | a saved config dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        name = identifier.get("class_name", "").lower()
        if name in OPTIMIZERS:
            return OPTIMIZERS[name](**identifier.get("config", {}))
    elif isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}: expected one of {sorted(OPTIMIZERS)} or an Optimizer")
