"""Merges: several tensors in, one out (Keras's Add, Subtract, Multiply, Average, Maximum, Minimum
and Concatenate).

Element-wise merges of k inputs x_1 .. x_k (k >= 1; subtract takes exactly 2):

    add:       out = x_1 + x_2 + ... + x_k         d out / d x_i = 1
    subtract:  out = x_1 - x_2                     d out / d x_1 = 1,  d out / d x_2 = -1
    multiply:  out = x_1 * x_2 * ... * x_k         d out / d x_i = prod over j != i of x_j
    average:   out = (x_1 + ... + x_k) / k         d out / d x_i = 1 / k
    maximum:   out = max over i of x_i             d out / d x_i = 1 if x_i is the winner, else 0
    minimum:   out = min over i of x_i             d out / d x_i = 1 if x_i is the winner, else 0

The winner of maximum (minimum) is the first input, the lowest i, that holds the largest
(smallest) value, so of tied inputs only the first gets the gradient. A NaN wins, as in
``np.maximum``. The sums and products are taken left to right, as Keras takes them.

Broadcasting (Keras's rule, which is NumPy's on the sample shapes): sample shapes are aligned on
their last axes, a shorter one gets axes of size 1 inserted right after the batch axis, and at
every axis the sizes must be equal or 1; the output takes the larger. The batch axis is never
broadcast. E.g. (N, 3, 4) with (N, 4) or (N, 1, 4) gives (N, 3, 4); (N, 3, 1) with (N, 1, 4)
gives (N, 3, 4); (N, 3, 4) with (N, 3) does not merge. An input repeated along an axis fed every
output along it, so its gradient is the sum over that axis:

    dx_i = sum over x_i's broadcast axes of (dout * d out / d x_i)     then reshaped to x_i's shape

Concatenation along a sample axis a (never the batch axis 0; negative a counts from the end):

    out = [x_1 | x_2 | ... | x_k] along a       x_i (N, ..., d_i, ...)  out (N, ..., d_1 + ... + d_k, ...)
    dx_i = dout's slice at x_i's place along a

Shapes: x_i (N, *s_i), out and dout (N, *s), dx_i (N, *s_i). Every array returned is new: never
an input, dout, or a view of either.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["SumCache", "MultiplyCache", "ExtremumCache", "ConcatCache", "broadcast_shapes", "concat_shape",
           "add_forward", "subtract_forward", "average_forward", "sum_backward", "multiply_forward",
           "multiply_backward", "maximum_forward", "minimum_forward", "extremum_backward", "concatenate_forward",
           "concatenate_backward"]


class SumCache(NamedTuple):
    """What :func:`sum_backward` needs from add, subtract or average."""

    shapes: tuple[tuple[int, ...], ...]  #: each input's shape (N, *s_i)
    coefs: tuple[float, ...]  #: out = sum of coefs[i] * x_i


class MultiplyCache(NamedTuple):
    """What :func:`multiply_backward` needs from :func:`multiply_forward`."""

    shapes: tuple[tuple[int, ...], ...]  #: each input's shape (N, *s_i)
    xs: tuple[np.ndarray, ...]  #: the inputs, reshaped to the output's rank (size-1 axes inserted)


class ExtremumCache(NamedTuple):
    """What :func:`extremum_backward` needs from maximum or minimum."""

    shapes: tuple[tuple[int, ...], ...]  #: each input's shape (N, *s_i)
    winner: np.ndarray  #: (N, *s) int: the input each output came from (the first of equal ones)


class ConcatCache(NamedTuple):
    """What :func:`concatenate_backward` needs from :func:`concatenate_forward`."""

    sizes: tuple[int, ...]  #: d_i, each input's size along the axis
    axis: int  #: the axis, counted from 0 (the batch axis)


def broadcast_shapes(shapes) -> tuple[int, ...]:
    """The output sample shape of an element-wise merge of these sample shapes (no batch axis).

    Two shapes merge when, aligned on their last axes, every pair of sizes is equal or has a 1;
    the output takes the larger size, and a shorter shape's missing leading axes count as 1.
    A ValueError names the first two shapes (in input order) that do not merge.
    """
    shapes = [tuple(s) for s in shapes]
    for i, a in enumerate(shapes):
        for b in shapes[i + 1:]:
            if any(p != q and 1 not in (p, q) for p, q in zip(reversed(a), reversed(b))):
                raise ValueError(f"inputs have incompatible shapes {a} and {b}")
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + s for s in shapes]
    return tuple(max(sizes) if 0 not in sizes else 0 for sizes in zip(*padded))


def concat_shape(shapes, axis: int) -> tuple[int, ...]:
    """The output sample shape of concatenating these sample shapes along ``axis``, an axis of the
    batch (1 .. rank, or -rank .. -1 where rank is the sample rank). The ranks must be equal, and
    every size off the axis too; a ValueError names the first shape that differs from the first."""
    shapes = [tuple(s) for s in shapes]
    first, rank = shapes[0], len(shapes[0])
    for s in shapes[1:]:
        if len(s) != rank:
            raise ValueError(f"inputs have incompatible shapes {first} and {s}: concatenation needs equal ranks")
    a = (axis + rank + 1 if axis < 0 else axis) - 1  # the axis within the sample shape
    if not 0 <= a < rank:
        raise ValueError(f"axis {axis} is not a sample axis of inputs of shape (batch, "
                         f"{', '.join(map(str, first))})")
    for s in shapes[1:]:
        if s[:a] + s[a + 1:] != first[:a] + first[a + 1:]:
            raise ValueError(f"inputs have incompatible shapes {first} and {s} for concatenation on axis {axis}: "
                             "all other axes must match")
    return first[:a] + (sum(s[a] for s in shapes),) + first[a + 1:]


def _expanded(xs) -> list[np.ndarray]:
    """Each x (N, *s_i) viewed as (N, 1, ..., 1, *s_i), all of the largest rank; equal N checked."""
    if len({x.shape[0] for x in xs}) > 1:
        raise ValueError(f"inputs have different batch sizes: shapes {[x.shape for x in xs]}")
    rank = max(x.ndim for x in xs)
    return [x.reshape(x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:]) for x in xs]


def _fold(op, xs) -> np.ndarray:
    """op(...op(op(x_1, x_2), x_3)..., x_k) with broadcasting, a new array (a copy of x_1 if k = 1)."""
    xs = _expanded(xs)
    out = xs[0].copy() if len(xs) == 1 else op(xs[0], xs[1])
    for x in xs[2:]:
        out = op(out, x)
    return out


def _reduce_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """g (N, *s) summed over the axes that broadcasting added to an input of shape (N, *s_i):
    the inserted leading axes, then (kept as size 1) the axes where s_i has a 1 and s does not."""
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(1, 1 + lead)))
    axes = tuple(a for a in range(1, g.ndim) if shape[a] == 1 and g.shape[a] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _shapes(xs) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(x.shape) for x in xs)


def add_forward(xs) -> tuple[np.ndarray, SumCache]:
    """out (N, *s) = x_1 + ... + x_k, for xs a list of k >= 1 arrays (N, *s_i) that broadcast."""
    return _fold(np.add, xs), SumCache(_shapes(xs), (1.0,) * len(xs))


def subtract_forward(xs) -> tuple[np.ndarray, SumCache]:
    """out (N, *s) = x_1 - x_2, for exactly two arrays (N, *s_1), (N, *s_2) that broadcast."""
    if len(xs) != 2:
        raise ValueError(f"subtract takes exactly 2 inputs, got {len(xs)}")
    return _fold(np.subtract, xs), SumCache(_shapes(xs), (1.0, -1.0))


def average_forward(xs) -> tuple[np.ndarray, SumCache]:
    """out (N, *s) = (x_1 + ... + x_k) / k: the sum first, then one division (as Keras)."""
    k = len(xs)
    return _fold(np.add, xs) / k, SumCache(_shapes(xs), (1.0 / k,) * k)


def sum_backward(dout: np.ndarray, cache: SumCache) -> list[np.ndarray]:
    """[dx_1, ..., dx_k] of add, subtract or average: dx_i (N, *s_i) = coefs[i] * dout summed over
    x_i's broadcast axes, from dout (N, *s)."""
    return [_reduce_to(c * dout, shape).reshape(shape) for c, shape in zip(cache.coefs, cache.shapes)]


def multiply_forward(xs) -> tuple[np.ndarray, MultiplyCache]:
    """out (N, *s) = x_1 * ... * x_k, for xs a list of k >= 1 arrays (N, *s_i) that broadcast."""
    return _fold(np.multiply, xs), MultiplyCache(_shapes(xs), tuple(_expanded(xs)))


def multiply_backward(dout: np.ndarray, cache: MultiplyCache) -> list[np.ndarray]:
    """[dx_1, ..., dx_k]: dx_i (N, *s_i) = dout * (product of the other inputs), summed over x_i's
    broadcast axes. The products of the others come from running products from the left and from
    the right (no division, so a zero input is no problem)."""
    xs, k = cache.xs, len(cache.xs)
    left, right = [None] * k, [None] * k  # left[i] = x_1 ... x_{i-1}, right[i] = x_{i+1} ... x_k
    for i in range(1, k):
        left[i] = xs[i - 1] if left[i - 1] is None else left[i - 1] * xs[i - 1]
        j = k - 1 - i
        right[j] = xs[j + 1] if right[j + 1] is None else xs[j + 1] * right[j + 1]
    dxs = []
    for i, shape in enumerate(cache.shapes):
        g = dout.copy()
        for other in (left[i], right[i]):
            if other is not None:
                g = g * other
        dxs.append(_reduce_to(g, shape).reshape(shape))
    return dxs


def _extremum(xs, pick) -> tuple[np.ndarray, ExtremumCache]:
    stacked = np.stack(np.broadcast_arrays(*_expanded(xs)))  # (k, N, *s)
    winner = pick(stacked, axis=0)  # the first index of the extreme value
    out = np.take_along_axis(stacked, winner[None], axis=0)[0]
    return out, ExtremumCache(_shapes(xs), winner)


def maximum_forward(xs) -> tuple[np.ndarray, ExtremumCache]:
    """out (N, *s) = the largest of x_1 .. x_k at each place, and which input gave it (the first
    of tied ones), for xs a list of k >= 1 arrays (N, *s_i) that broadcast."""
    return _extremum(xs, np.argmax)


def minimum_forward(xs) -> tuple[np.ndarray, ExtremumCache]:
    """out (N, *s) = the smallest of x_1 .. x_k at each place (ties: the first input), as
    :func:`maximum_forward`."""
    return _extremum(xs, np.argmin)


def extremum_backward(dout: np.ndarray, cache: ExtremumCache) -> list[np.ndarray]:
    """[dx_1, ..., dx_k] of maximum or minimum: dx_i (N, *s_i) = dout where input i won, 0
    elsewhere, summed over x_i's broadcast axes."""
    return [_reduce_to(np.where(cache.winner == i, dout, 0).astype(dout.dtype, copy=False), shape).reshape(shape)
            for i, shape in enumerate(cache.shapes)]


def concatenate_forward(xs, axis: int = -1) -> tuple[np.ndarray, ConcatCache]:
    """out = the xs joined along ``axis``.

    Parameters
    ----------
    xs : k >= 1 arrays (N, *s_i), of one rank, equal off the axis.
    axis : a sample axis: 1 .. ndim - 1, or -(ndim - 1) .. -1 (counted from the end).

    Returns
    -------
    out : (N, *s), s the shared sample shape with the sizes along the axis added up.
    cache : ConcatCache for :func:`concatenate_backward`.
    """
    ndim = xs[0].ndim
    a = axis + ndim if axis < 0 else axis
    if not 1 <= a < ndim:
        raise ValueError(f"concatenate: axis {axis} is not a sample axis of inputs of rank {ndim}")
    out = np.concatenate(xs, axis=a)  # (np.concatenate checks the other axes)
    return out, ConcatCache(tuple(x.shape[a] for x in xs), a)


def concatenate_backward(dout: np.ndarray, cache: ConcatCache) -> list[np.ndarray]:
    """[dx_1, ..., dx_k]: dout (N, *s) cut along the axis into pieces of sizes d_1 .. d_k (copies)."""
    return [piece.copy() for piece in np.split(dout, np.cumsum(cache.sizes)[:-1], axis=cache.axis)]
