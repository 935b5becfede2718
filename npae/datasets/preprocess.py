"""The preprocessing the tutorial writes by hand, as functions."""

from __future__ import annotations

import numpy as np

__all__ = ["to_float", "flatten", "to_images", "add_noise"]


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] (``x.astype('float32') / 255.``)."""
    return np.asarray(x, dtype=np.float32) / np.float32(255.0)


def flatten(x: np.ndarray) -> np.ndarray:
    """(n, 28, 28[, 1]) -> (n, 784)."""
    x = np.asarray(x)
    return x.reshape(len(x), -1)


def to_images(x: np.ndarray, shape=(28, 28, 1)) -> np.ndarray:
    """(n, 784) or (n, 28, 28) -> (n, 28, 28, 1), channels-last."""
    x = np.asarray(x)
    if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
        raise ValueError(f"cannot shape samples of {x.shape[1:]} into {tuple(shape)}")
    return x.reshape((len(x), *shape))


def add_noise(x: np.ndarray, factor: float = 0.5, seed: int | None = None) -> np.ndarray:
    """x + factor * N(0, 1), clipped to [0, 1] (the denoising tutorial's corruption); same dtype as x."""
    x = np.asarray(x)
    rng = np.random.default_rng(seed)
    noisy = x + factor * rng.standard_normal(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64)
    return np.clip(noisy, 0.0, 1.0, out=noisy).astype(x.dtype if x.dtype.kind == "f" else np.float32, copy=False)
