"""Sampling: the variational autoencoder's reparameterization trick and KL term as one layer."""

from __future__ import annotations

import numpy as np

from ..checks import number
from ..functional import sampling
from .base import Layer
from .noise import seeded_generator

__all__ = ["Sampling"]


class Sampling(Layer):
    """``Sampling(kl_weight=1.0, seed=None)([z_mean, z_log_var])``: z = z_mean + exp(z_log_var / 2)
    * eps, eps ~ N(0, 1) drawn from the layer's generator ``rng`` (seeded with ``seed``, or from
    npae's global generator when the layer is made) in training and in prediction, as keras-io's
    VAE layer does; and it adds ``kl_weight`` * the batch mean of the KL divergence
    -1/2 sum(1 + z_log_var - z_mean^2 - exp(z_log_var)) to the model's objective (Keras's
    ``add_loss``: it is part of ``loss`` in fit and evaluate), its gradient included in the
    backward pass. The maths and both gradients: :mod:`npae.functional.sampling`.

    Shapes: z_mean, z_log_var (N, *s) (the same s), z (N, *s). With ``loss="binary_crossentropy"``
    (a mean over the 784 pixels) ``kl_weight=1/784`` gives the Keras blog's VAE objective / 784.
    """

    many_inputs = True
    has_loss = True

    def __init__(self, kl_weight: float = 1.0, seed: int | None = None, **kwargs):
        self.kl_weight = number(kl_weight, "Sampling: kl_weight", 0.0)
        self.seed = seed
        super().__init__(**kwargs)
        self.rng = seeded_generator(seed, "Sampling")

    def build(self, input_shapes, rng: np.random.Generator | None = None) -> None:
        self.output_shape = self.compute_output_shape(input_shapes)
        self.input_shape = [tuple(int(d) for d in s) for s in input_shapes]
        self.params = {}
        self.built = True

    def compute_output_shape(self, input_shapes):
        if not isinstance(input_shapes, (list, tuple)) or len(input_shapes) != 2 or \
                not all(isinstance(s, (list, tuple)) for s in input_shapes):
            raise ValueError(f"{self.name}: Sampling takes a list of two tensors, [z_mean, z_log_var], got "
                             f"{input_shapes!r}")
        mean, log_var = (tuple(int(d) for d in s) for s in input_shapes)
        if mean != log_var:
            raise ValueError(f"{self.name}: z_mean and z_log_var must have one shape, got {mean} and {log_var}")
        return mean

    def forward(self, xs, training=False):
        """z (N, *s) from [z_mean, z_log_var] (a fresh eps from ``rng`` each call), and the cache."""
        if not isinstance(xs, (list, tuple)) or len(xs) != 2:
            raise ValueError(f"{self.name}: Sampling takes [z_mean, z_log_var], got {type(xs).__name__}")
        if not self.built:
            self.build([np.shape(x)[1:] for x in xs])
        z_mean, z_log_var = (self._check_input(x, shape) for x, shape in zip(xs, self.input_shape))
        if len(z_mean) != len(z_log_var):
            raise ValueError(f"{self.name}: z_mean and z_log_var hold {len(z_mean)} and {len(z_log_var)} samples")
        eps = self.rng.standard_normal(z_mean.shape).astype(self.dtype, copy=False)
        return sampling.forward(z_mean, z_log_var, eps, self.kl_weight)

    def backward(self, dout, cache):
        """[dL/dz_mean, dL/dz_log_var] (N, *s) each, through z and through the KL term; no weights."""
        return list(sampling.backward(dout, cache)), {}

    def layer_loss(self, cache) -> float:
        """kl_weight * the batch mean of the KL divergence (see :mod:`npae.functional.sampling`)."""
        return sampling.kl(cache)

    def get_config(self):
        return {**super().get_config(), "kl_weight": self.kl_weight, "seed": self.seed}
