"""One seeded ``numpy.random.Generator`` behind every random draw in npae.

Weight initialisers, shuffling and noise all draw from :func:`get_generator` unless they are handed
a generator of their own, so ``npae.set_random_seed(0)`` (Keras: ``keras.utils.set_random_seed``)
reproduces a model exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

_generator = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Reset the global generator so later weight inits and shuffles repeat exactly."""
    global _generator
    _generator = np.random.default_rng(seed)


def get_generator() -> np.random.Generator:
    """The global generator (seeded by :func:`set_random_seed`)."""
    return _generator


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[np.random.Generator]:
    """Temporarily replace the global generator by one seeded with ``seed`` (None: no change)."""
    global _generator
    if seed is None:
        yield _generator
        return
    saved, _generator = _generator, np.random.default_rng(seed)
    try:
        yield _generator
    finally:
        _generator = saved
