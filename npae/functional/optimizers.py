"""One optimizer step for one parameter array p with gradient g, in place: the parameter and the
optimizer's slot arrays (same shape as p) are updated where they are. Keras 3's update forms:

    sgd:       p -= lr g                                       (momentum 0)
               v = momentum v - lr g;  p += v                  (momentum)
               v = momentum v - lr g;  p += momentum v - lr g  (nesterov)
    rmsprop:   s = rho s + (1 - rho) g^2
               (centered: a = rho a + (1 - rho) g;  s' = s - a^2, else s' = s)
               step = lr g / sqrt(s' + eps)
               (momentum: m = momentum m + step;  p -= m, else p -= step)
    adam:      m = m + (g - m)(1 - b1);  v = v + (g^2 - v)(1 - b2)
               p -= lr_t m / (sqrt(v) + eps),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
               (t the step number from 1; eps is added after the bias correction: Keras's
               "epsilon hat")
    adadelta:  E[g2] = rho E[g2] + (1 - rho) g^2
               d = sqrt(E[dx2] + eps) / sqrt(E[g2] + eps) g
               E[dx2] = rho E[dx2] + (1 - rho) d^2;  p -= lr d

Scalars are cast to p's dtype, so a float32 model updates in float32.

Before the update, Keras's optional gradient clipping (one of them, given to the optimizer):

    clipnorm c:         g = g c / max(||g||, c)            each weight's gradient on its own
    global_clipnorm c:  g = g c / max(||G||, c)            ||G||: the norm of all gradients together
    clipvalue c:        g = clip(g, -c, c)                 element by element
"""

from __future__ import annotations

import numpy as np

__all__ = ["sgd_update", "rmsprop_update", "adam_update", "adadelta_update", "clip_gradients"]


def clip_gradients(grads: list[np.ndarray], clipnorm: float | None = None, global_clipnorm: float | None = None,
                   clipvalue: float | None = None) -> list[np.ndarray]:
    """The gradients clipped as the module docstring says (new arrays; the same arrays when no
    clipping is asked for). The norms are taken in float64."""
    if clipnorm:
        out = []
        for g in grads:
            norm = float(np.sqrt(np.sum(np.square(g, dtype=np.float64))))
            out.append(g * g.dtype.type(clipnorm / max(norm, clipnorm)))
        return out
    if global_clipnorm:
        norm = float(np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads)))
        scale = global_clipnorm / max(norm, global_clipnorm) if np.isfinite(norm) else float("nan")
        return [g * g.dtype.type(scale) for g in grads]
    if clipvalue:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return list(grads)


def sgd_update(p: np.ndarray, g: np.ndarray, lr: float, momentum: float = 0.0, nesterov: bool = False,
               velocity: np.ndarray | None = None) -> None:
    """One SGD step on p (and ``velocity`` when momentum > 0), in place."""
    f = p.dtype.type
    if not momentum:
        p -= f(lr) * g
        return
    velocity *= f(momentum)
    velocity -= f(lr) * g
    if nesterov:
        p += f(momentum) * velocity - f(lr) * g
    else:
        p += velocity


def rmsprop_update(p: np.ndarray, g: np.ndarray, velocity: np.ndarray, lr: float, rho: float, eps: float,
                   momentum: float = 0.0, momentum_slot: np.ndarray | None = None,
                   average_gradient: np.ndarray | None = None) -> None:
    """One RMSprop step on p and its slots, in place; ``average_gradient`` given means centered."""
    f = p.dtype.type
    velocity[...] = f(rho) * velocity + f(1 - rho) * np.square(g)
    denominator = velocity
    if average_gradient is not None:
        average_gradient[...] = f(rho) * average_gradient + f(1 - rho) * g
        denominator = velocity - np.square(average_gradient)
    step = f(lr) * g / np.sqrt(denominator + f(eps))
    if momentum:
        momentum_slot[...] = f(momentum) * momentum_slot + step
        p -= momentum_slot
    else:
        p -= step


def adam_update(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr_t: float, beta_1: float,
                beta_2: float, eps: float) -> None:
    """One Adam step on p, m and v, in place; ``lr_t`` is the bias-corrected learning rate."""
    f = p.dtype.type
    m += (g - m) * f(1 - beta_1)
    v += (np.square(g) - v) * f(1 - beta_2)
    p -= f(lr_t) * m / (np.sqrt(v) + f(eps))


def adadelta_update(p: np.ndarray, g: np.ndarray, accum_grad: np.ndarray, accum_delta: np.ndarray, lr: float,
                    rho: float, eps: float) -> None:
    """One Adadelta step on p and its two running averages, in place."""
    f = p.dtype.type
    accum_grad[...] = f(rho) * accum_grad + f(1 - rho) * np.square(g)
    d = np.sqrt(accum_delta + f(eps)) / np.sqrt(accum_grad + f(eps)) * g
    accum_delta[...] = f(rho) * accum_delta + f(1 - rho) * np.square(d)
    p -= f(lr) * d
