"""Shared fixtures: the read-only data sets beside the repository."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get("NPAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
        raise RuntimeError(f"the shared data directory is missing: {SHARED_DATA} (set NPAE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist_test_images(shared_data) -> np.ndarray:
    """The real MNIST test digits as float32 in [0, 1], shape (10000, 784)."""
    raw = gzip.open(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").read()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0
