"""Argument checks shared by the Keras-facing objects: each returns the value in its canonical
form or raises a ValueError (TypeError for an unexpected keyword) that names the argument, what
was expected and what was given."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["positive_int", "non_negative_int", "to_pair", "number", "pop_keras_only"]


def positive_int(value, name: str) -> int:
    """``value`` as an int > 0; a bool, a float or anything else is a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def non_negative_int(value, name: str) -> int:
    """``value`` as an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def to_pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of positive ints -> (int, int); anything else is a clear error."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        pair = tuple(pair)
    except TypeError:
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}") from None
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                                 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def number(value, name: str, low: float = -math.inf, high: float = math.inf, low_open: bool = False,
           high_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (an open end where ``*_open``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    ok = ok and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {span}, got {value!r}")
    return float(value)


def pop_keras_only(owner: str, kwargs: dict, off: dict[str, Any], strict: bool = False) -> dict:
    """Take out of ``kwargs`` the Keras arguments npae does not implement: each is accepted at its
    "off" value (``off[name]``; a frozenset lists several spellings of it) and is a clear
    NotImplementedError otherwise. Returns the other keywords; with ``strict`` there must be none
    (a TypeError, as for a Python function)."""
    rest = {k: v for k, v in kwargs.items() if k not in off}
    if strict and rest:
        raise TypeError(f"{owner}: unexpected keyword argument {next(iter(rest))!r}")
    for key, value in kwargs.items():
        if key not in off:
            continue
        default = off[key]
        if isinstance(default, frozenset):
            same = value in default
            default = sorted(default, key=repr)[-1]
        elif isinstance(default, tuple):
            same = to_pair(value, key) == default
        else:
            same = value is None if default is None else value == default
        if not same:
            raise NotImplementedError(f"{owner}: {key}={value!r} is a Keras argument npae does not support "
                                      f"(only {key}={default!r})")
    return rest
