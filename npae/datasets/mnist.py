"""The mnist data set (28x28 grey images, 10 classes), loaded like ``keras.datasets.mnist``."""

from __future__ import annotations

from .loader import load, load_split

__all__ = ["load_data", "load_test_data"]


def load_data(path=None, data_dir=None, download: bool = True):
    """``((x_train, y_train), (x_test, y_test))``: uint8 images (n, 28, 28) and labels (n,).

    ``path`` names this data set's folder, ``data_dir`` a root holding ``mnist/``; see
    :mod:`npae.datasets.loader` for where else it looks and how it downloads.
    """
    return load("mnist", path=path, data_dir=data_dir, download=download)


def load_test_data(path=None, data_dir=None, download: bool = True):
    """Only the test split ``(x_test, y_test)`` (10,000 images)."""
    return load_split("mnist", "test", path=path, data_dir=data_dir, download=download)
