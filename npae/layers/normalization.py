"""BatchNormalization, with Keras 3's semantics."""

from __future__ import annotations

import numpy as np

from .. import initializers
from ..checks import number, pop_keras_only
from ..functional import batchnorm
from .base import Layer

__all__ = ["BatchNormalization"]

# Keras arguments npae does not implement, each accepted only at its "off" value. The last four are
# Keras 2's (tf.keras); Keras 3 no longer has them.
_BN_OFF = {"beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None,
           "synchronized": False, "renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99,
           "fused": frozenset({None, False}), "virtual_batch_size": None, "adjustment": None}


def _flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"BatchNormalization: {name} must be True or False, got {value!r}")
    return bool(value)


def _axis_arg(axis) -> int:
    """Keras 3 takes one int; Keras 2's list of one is accepted, several axes are not implemented."""
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise NotImplementedError(f"BatchNormalization: axis={axis!r} normalises several axes together, which "
                                      "npae does not support (give one axis, e.g. axis=-1)")
        axis = axis[0]
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"BatchNormalization: axis must be an int (e.g. -1, the channels), got {axis!r}")
    return int(axis)


class BatchNormalization(Layer):
    """Keras's ``BatchNormalization(axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True)``.

    Normalises each channel (the entries along ``axis``) over every other axis: the batch, and for
    images every pixel. ``axis`` counts the batch axis, as in Keras: for (N, H, W, C) images
    ``axis=-1`` (or 3) is the channels, ``axis=1`` the rows; the batch axis itself is refused.

    - **Training** (``forward(x, training=True)`` as in ``fit``): y = gamma * (x - mu) /
      sqrt(var + epsilon) + beta with the batch's mean mu and (biased) variance var, and the moving
      statistics are updated in place, moving = moving * momentum + batch * (1 - momentum).
    - **Inference** (``training=False``: ``evaluate``, ``predict``): the moving mean and variance
      normalise instead, and nothing changes.
    - A **frozen** layer (``trainable = False``) runs in inference mode even in training, as in
      Keras 3, and its moving statistics stay as they are.

    Weights, in Keras's order: gamma (with ``scale``), beta (with ``center``), moving_mean and
    moving_variance, each (C,) for C = input_shape[axis]; the moving statistics are not trainable
    (:attr:`non_trainable_params`), so ``fit`` never gives them gradients. The maths of both
    passes: :mod:`npae.functional.batchnorm`.
    """

    param_order = ("gamma", "beta", "moving_mean", "moving_variance")
    non_trainable_params = ("moving_mean", "moving_variance")

    def __init__(self, axis=-1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", **kwargs):
        self.axis = _axis_arg(axis)
        self.momentum = number(momentum, "BatchNormalization: momentum", 0.0, 1.0)
        self.epsilon = number(epsilon, "BatchNormalization: epsilon", 0.0, low_open=True)
        self.center = _flag(center, "center")
        self.scale = _flag(scale, "scale")
        super().__init__(**pop_keras_only("BatchNormalization", kwargs, _BN_OFF))
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    # -- shapes and weights --------------------------------------------------------------------
    def channel_axis(self, input_shape: tuple[int, ...]) -> int:
        """The normalised axis of a batch (N, *input_shape), in [1, len(input_shape)]."""
        rank = len(input_shape) + 1
        if not -rank <= self.axis < rank:
            raise ValueError(f"{self.name}: axis={self.axis} is out of range for inputs of rank {rank} "
                             f"(batch, {', '.join(map(str, input_shape))}); expected an axis in [{-rank + 1}, {rank})")
        axis = self.axis % rank
        if axis == 0:
            raise ValueError(f"{self.name}: axis={self.axis} is the batch axis; BatchNormalization normalises each "
                             "channel over the batch, so axis must name a feature axis (e.g. -1)")
        return axis

    def compute_output_shape(self, input_shape):
        self.channel_axis(tuple(input_shape))
        return tuple(input_shape)

    def weight_shapes(self, input_shape):
        shape = (input_shape[self.channel_axis(tuple(input_shape)) - 1],)
        names = [k for k, on in (("gamma", self.scale), ("beta", self.center)) if on]
        return {k: shape for k in [*names, "moving_mean", "moving_variance"]}

    # -- computation ---------------------------------------------------------------------------
    def forward(self, x, training=False):
        """y like x, and the cache. In training (and not frozen) the batch statistics normalise and
        the moving statistics are updated in place; otherwise the moving statistics normalise."""
        x = self._check_input(x)
        axis = self.channel_axis(self.input_shape)
        p = self.params
        if training and self.trainable:
            out, cache = batchnorm.forward(x, p.get("gamma"), p.get("beta"), axis, self.epsilon)
            for k, batch in (("moving_mean", cache.mean), ("moving_variance", cache.var)):
                p[k][...] = batchnorm.moving_average(p[k], batch, self.momentum)
            return out, cache
        return batchnorm.inference_forward(x, p["moving_mean"], p["moving_variance"], p.get("gamma"), p.get("beta"),
                                           axis, self.epsilon)

    def backward(self, dout, cache):
        """dL/dx like x, and the gradient of every weight: through the batch statistics after a
        training pass (the moving statistics' are then 0: the output does not depend on them), of
        the per-channel affine map after an inference pass."""
        p = self.params
        if isinstance(cache, batchnorm.BatchNormCache):
            dx, dgamma, dbeta = batchnorm.backward(dout, cache)
            dmean, dvariance = np.zeros_like(p["moving_mean"]), np.zeros_like(p["moving_variance"])
        else:
            dx, dgamma, dbeta, dmean, dvariance = batchnorm.inference_backward(dout, cache)
        grads = {"gamma": dgamma, "beta": dbeta, "moving_mean": dmean, "moving_variance": dvariance}
        return dx, {k: grads[k] for k in self.param_order if k in p}

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer)}
