"""The ``keras.utils`` helpers autoencoder programs use: ``to_categorical``, ``set_random_seed``,
``plot_model`` (a picture of a model's graph: :mod:`npae.modelplot`)."""

from __future__ import annotations

import numpy as np

from .random import set_random_seed

__all__ = ["to_categorical", "set_random_seed", "plot_model"]


def to_categorical(y, num_classes: int | None = None, dtype="float32") -> np.ndarray:
    """Class indices (n,) (or (n, 1)) -> one-hot rows (n, num_classes), Keras's ``to_categorical``.

    ``num_classes`` defaults to the largest index + 1; an index that is negative, not a whole
    number, or not below ``num_classes`` is a clear error."""
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        raise ValueError(f"to_categorical: expected whole-number class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: class indices must be >= 0, got {int(y.min())}")
    n = int(y.max()) + 1 if num_classes is None and y.size else int(num_classes or 0)
    if y.size and y.max() >= n:
        raise ValueError(f"to_categorical: index {int(y.max())} is not below num_classes={n}")
    out = np.zeros((*y.shape, n), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out


def plot_model(model, to_file="model.png", **kwargs) -> str:
    """Keras's ``plot_model``: a picture of ``model``'s graph (see :func:`npae.modelplot.plot_model`,
    which this calls; imported when first used)."""
    from .modelplot import plot_model as draw

    return draw(model, to_file, **kwargs)
