"""Shared fixtures. The tests find their data the way users do, through npae's own loader: a
folder named by NPAE_DATA_DIR, the cache, /usr/share/datasets, or else the verified download of
the MNIST test set (11 MB, once). Nothing else is needed: the data sets the CLI and the examples
read are written from those 10,000 real digits."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from npae import datasets

# The tests compile the fast path's kernels in the foreground, so that each test runs the path it
# names (a test of the background compile sets this back itself, in a process of its own).
os.environ["NPAE_BACKGROUND_COMPILE"] = "0"

TRAIN = 8000  # the first TRAIN test digits stand in for a training split, the rest for a test split


@pytest.fixture(scope="session")
def mnist_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The real MNIST test digits (10000, 28, 28) uint8 and their labels."""
    return datasets.mnist.load_test_data()


@pytest.fixture(scope="session")
def mnist_test_images(mnist_test_split) -> np.ndarray:
    """The real MNIST test digits as float32 in [0, 1], shape (10000, 784)."""
    return mnist_test_split[0].reshape(-1, 784).astype(np.float32) / 255.0


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in the IDX format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_split(folder: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    images, labels = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                      "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}[split]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{images}.gz").write_bytes(gzip.compress(idx_bytes(x), mtime=0))
    (folder / f"{labels}.gz").write_bytes(gzip.compress(idx_bytes(y), mtime=0))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory, mnist_test_split) -> Path:
    """A data folder as NPAE_DATA_DIR names one: mnist/ and fashion-mnist/ (the same digits: the
    code under test needs the format, not the classes), each with a training split (the first
    8,000 real digits) and a test split (the other 2,000)."""
    root = tmp_path_factory.mktemp("data")
    x, y = mnist_test_split
    for name in ("mnist", "fashion-mnist"):
        write_split(root / name, "train", x[:TRAIN], y[:TRAIN])
        write_split(root / name, "test", x[TRAIN:], y[TRAIN:])
    return root


@pytest.fixture
def data_env(data_root, monkeypatch) -> Path:
    """NPAE_DATA_DIR pointed at :func:`data_root` for this test."""
    monkeypatch.setenv("NPAE_DATA_DIR", str(data_root))
    return data_root
