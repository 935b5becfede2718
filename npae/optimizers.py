"""Optimizers with Keras's names, defaults and update forms: ``step(params, grads)`` updates every
parameter in place. The update maths: :mod:`npae.functional.optimizers`.

State lives in the optimizer, one dict of slot arrays per parameter, keyed like the model's
parameters (``"<layer name>/<weight name>"``); a layer never holds an optimizer, and a backward
pass never updates. ``step`` takes the update functions from ``ops``, NumPy's by default; the fast
path hands in its compiled twins (:mod:`npae.fast.elementwise`), which have the same signatures.

Adadelta's learning rate defaults to 1.0, as in Zeiler's paper and the Keras 2 the autoencoder
tutorial used. Keras 3 changed the default to 0.001, which scales every step by 1/1000: with it the
tutorial's autoencoders barely move in 50 epochs. Pass ``learning_rate=0.001`` to reproduce Keras 3.
"""

from __future__ import annotations

import math

import numpy as np

from .checks import non_negative_int, number, pop_keras_only
from .functional import optimizers as reference_ops

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "Adadelta", "get", "OPTIMIZERS"]

_OFF = {"weight_decay": None, "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
        "loss_scale_factor": None, "gradient_accumulation_steps": None, "jit_compile": frozenset({True, False, "auto"})}


class Optimizer:
    """Base class. ``iterations`` counts completed steps; ``state[key][slot]`` are arrays.
    ``clipnorm``, ``global_clipnorm`` and ``clipvalue`` (at most one) clip the gradients before
    each update, as Keras does (:func:`npae.functional.optimizers.clip_gradients`)."""

    slots: tuple[str, ...] = ()

    def __init__(self, learning_rate: float, name: str | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None, **kwargs):
        pop_keras_only(type(self).__name__, kwargs, _OFF, strict=True)
        who = type(self).__name__
        self.learning_rate = number(learning_rate, f"{who}: learning_rate", 0.0)
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        given = [k for k, v in clips.items() if v is not None]
        if len(given) > 1:
            raise ValueError(f"{who}: only one of clipnorm, clipvalue and global_clipnorm can be set, got {given}")
        for key, value in clips.items():
            setattr(self, key, None if value is None else number(value, f"{who}: {key}", 0.0, low_open=True))
        self.name = name or type(self).__name__.lower()
        self._iterations = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    @property
    def iterations(self) -> int:
        return self._iterations

    @iterations.setter
    def iterations(self, value: int) -> None:
        self._iterations = non_negative_int(value, f"{type(self).__name__}: iterations")

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], ops=reference_ops) -> None:
        """Apply one update to every ``params[key]`` that has a ``grads[key]`` (same shape), in place
        (the gradients clipped first where the optimizer was asked to; ``grads`` is left as it is)."""
        self._iterations += 1
        if self.clipnorm or self.global_clipnorm or self.clipvalue:
            grads = dict(zip(grads, reference_ops.clip_gradients(list(grads.values()), self.clipnorm,
                                                                 self.global_clipnorm, self.clipvalue)))
        for key, g in grads.items():
            p = params[key]
            state = self.state.get(key)
            if state is None:
                state = self.state[key] = {s: np.zeros_like(p) for s in self.slot_names()}
            self._update(ops, p, g, state)

    def slot_names(self) -> tuple[str, ...]:
        """The names of the arrays kept per parameter."""
        return self.slots

    def _update(self, ops, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        cfg = {k: v for k, v in vars(self).items() if k not in ("state", "_iterations", "name")
               and not (k in ("clipnorm", "clipvalue", "global_clipnorm") and v is None)}
        return {"class_name": type(self).__name__, "config": cfg}


class SGD(Optimizer):
    """Keras's ``SGD(learning_rate=0.01, momentum=0.0, nesterov=False)``."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = number(momentum, "SGD: momentum", 0.0, 1.0)
        self.nesterov = bool(nesterov)

    def slot_names(self):
        return ("velocity",) if self.momentum else ()

    def _update(self, ops, p, g, state):
        ops.sgd_update(p, g, self.learning_rate, self.momentum, self.nesterov, state.get("velocity"))


class RMSprop(Optimizer):
    """Keras's ``RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False)``,
    Keras's default optimizer."""

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,
                 centered: bool = False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = number(rho, "RMSprop: rho", 0.0, 1.0, high_open=True)
        self.momentum = number(momentum, "RMSprop: momentum", 0.0, 1.0)
        self.epsilon = number(epsilon, "RMSprop: epsilon", 0.0)
        self.centered = bool(centered)

    def slot_names(self):
        return ("velocity", *(("momentum",) if self.momentum else ()), *(("average_gradient",) if self.centered
                                                                          else ()))

    def _update(self, ops, p, g, state):
        ops.rmsprop_update(p, g, state["velocity"], self.learning_rate, self.rho, self.epsilon, self.momentum,
                           state.get("momentum"), state.get("average_gradient"))


class Adam(Optimizer):
    """Keras's ``Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)``."""

    slots = ("m", "v")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **kwargs):
        if amsgrad:
            raise NotImplementedError("Adam: amsgrad=True is a Keras argument npae does not support")
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = number(beta_1, "Adam: beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = number(beta_2, "Adam: beta_2", 0.0, 1.0, high_open=True)
        self.epsilon = number(epsilon, "Adam: epsilon", 0.0)

    def _update(self, ops, p, g, state):
        t = self.iterations
        lr_t = self.learning_rate * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        ops.adam_update(p, g, state["m"], state["v"], lr_t, self.beta_1, self.beta_2, self.epsilon)


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012); default learning rate 1.0 as in the paper (see the module docstring)."""

    slots = ("accum_grad", "accum_delta")

    def __init__(self, learning_rate: float = 1.0, rho: float = 0.95, epsilon: float = 1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = number(rho, "Adadelta: rho", 0.0, 1.0, high_open=True)
        self.epsilon = number(epsilon, "Adadelta: epsilon", 0.0, low_open=True)

    def _update(self, ops, p, g, state):
        ops.adadelta_update(p, g, state["accum_grad"], state["accum_delta"], self.learning_rate, self.rho,
                            self.epsilon)


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adadelta": Adadelta}


def get(identifier) -> Optimizer:
    """'sgd' | 'rmsprop' | 'adam' | 'adadelta' (any case), an Optimizer, or a saved config dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        name = str(identifier.get("class_name", "")).lower()
        config = identifier.get("config", {})
        if name in OPTIMIZERS and isinstance(config, dict):
            return OPTIMIZERS[name](**config)
    elif isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}: expected one of {sorted(OPTIMIZERS)} or an Optimizer")
