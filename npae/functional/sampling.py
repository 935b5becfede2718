"""The reparameterization trick and the KL term of a variational autoencoder.

An encoder gives, per sample, the mean m and the log-variance v of a diagonal Gaussian q(z|x)
over the code (the latent). Sampling z from it directly would leave no gradient for m and v, so
the draw is written as a deterministic function of them and of noise that does not depend on
them (Kingma and Welling, 2014):

    z = m + exp(v / 2) * eps,        eps ~ N(0, 1), one draw per element

so dz/dm = 1 and dz/dv = exp(v / 2) * eps / 2 = (z - m) / 2. The KL divergence of q(z|x) from
the prior N(0, 1), per sample (summed over the code's elements j), and as the model adds it to
its objective (the mean over the batch of N samples, times a weight w):

    KL_n = -1/2 sum_j (1 + v_j - m_j^2 - exp(v_j))
    L_KL = w * (1/N) sum_n KL_n

with the derivatives

    dL_KL/dm = w * m / N
    dL_KL/dv = w * (exp(v) - 1) / (2 N)

The backward pass adds these to what flows back through z:

    dL/dm = dL/dz + w m / N
    dL/dv = dL/dz * exp(v / 2) * eps / 2 + w (exp(v) - 1) / (2 N)

Shapes: m, v, eps, z and their gradients (N, *s) (s the code's shape, e.g. (2,)).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["SamplingCache", "forward", "kl", "backward"]


class SamplingCache(NamedTuple):
    """What :func:`backward` needs from :func:`forward`."""

    z_mean: np.ndarray  #: m (N, *s)
    z_log_var: np.ndarray  #: v (N, *s)
    scale: np.ndarray  #: exp(v / 2) (N, *s)
    eps: np.ndarray  #: the noise (N, *s)
    kl_weight: float  #: w


def forward(z_mean: np.ndarray, z_log_var: np.ndarray, eps: np.ndarray,
            kl_weight: float) -> tuple[np.ndarray, SamplingCache]:
    """z = m + exp(v / 2) * eps, (N, *s) like m, and the cache (see the module docstring)."""
    scale = np.exp(z_log_var / z_log_var.dtype.type(2))
    return z_mean + scale * eps, SamplingCache(z_mean, z_log_var, scale, eps, float(kl_weight))


def kl(cache: SamplingCache) -> float:
    """L_KL = w * the mean over the batch of -1/2 sum_j (1 + v - m^2 - exp(v)), summed in float64."""
    m, v = cache.z_mean.astype(np.float64), cache.z_log_var.astype(np.float64)
    per_sample = -0.5 * np.sum((1.0 + v - m * m - np.exp(v)).reshape(len(m), -1), axis=1)
    return cache.kl_weight * float(np.mean(per_sample)) if len(m) else 0.0


def backward(dz: np.ndarray, cache: SamplingCache) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dm, dL/dv), each (N, *s), from dz = dL/dz: through z and through the KL term."""
    m, v, scale, eps, w = cache
    f = dz.dtype.type
    coef = f(w / max(len(m), 1))
    d_mean = dz + coef * m
    d_log_var = dz * scale * eps / f(2) + coef * (scale * scale - f(1)) / f(2)  # (exp(v) = scale^2)
    return d_mean, d_log_var
