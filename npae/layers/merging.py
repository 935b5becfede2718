"""Merge layers: Keras's Add, Subtract, Multiply, Average, Maximum, Minimum and Concatenate, and
their lowercase functional forms (``add([a, b])`` is ``Add()([a, b])``).

A merge layer takes a list of inputs (``many_inputs = True``): its shapes are lists of sample
shapes, one per input, and its passes take and give lists of arrays, in the inputs' order:

    build([s_1, ..., s_k])                       input_shape = [s_1, ..., s_k], output_shape = s
    out, cache = layer.forward([x_1, ..., x_k])  x_i (N, *s_i) -> out (N, *s)
    dxs, grads = layer.backward(dout, cache)     dxs = [dx_1, ..., dx_k], dx_i (N, *s_i); grads = {}

As in Keras 3, a merge takes k >= 1 inputs (Subtract exactly 2), all with the same batch size.
The element-wise merges broadcast sample shapes (sizes of 1, and missing leading axes), the
gradients summed back over the broadcast axes; Concatenate joins along one sample axis. The maths
of both passes: :mod:`npae.functional.merge`. Merge layers have no weights.
"""

from __future__ import annotations

import numpy as np

from ..checks import non_negative_int, pop_keras_only
from ..functional import merge
from ..graph import SymbolicTensor
from .base import Layer

__all__ = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "add", "subtract",
           "multiply", "average", "maximum", "minimum", "concatenate"]


def _batch_shape(shape: tuple[int, ...]) -> str:
    return f"(batch, {', '.join(map(str, shape))})" if shape else "(batch,)"


class _Merge(Layer):
    """The shared part of every merge layer: the list checks, build, and the element-wise passes
    (each subclass names its functional forward and backward in ``_passes``)."""

    many_inputs = True
    param_order = ()
    min_inputs, max_inputs = 1, None  # how many inputs a call takes (None: no upper bound)
    _passes: tuple = ()  # (forward, backward) of npae.functional.merge

    def __init__(self, **kwargs):
        # input_shape=(...) describes one input: a merge layer cannot start a Sequential model
        super().__init__(**pop_keras_only(type(self).__name__, kwargs, {"input_shape": None}))

    @property
    def _who(self) -> str:
        return f"{type(self).__name__} layer {self.name!r}"

    def _check_count(self, k: int) -> None:
        if self.max_inputs == self.min_inputs and k != self.min_inputs:
            raise ValueError(f"{self._who}: expects exactly {self.min_inputs} inputs, got {k}")
        if k < self.min_inputs or (self.max_inputs is not None and k > self.max_inputs):
            raise ValueError(f"{self._who}: expects a list of at least {self.min_inputs} input, got {k}")

    def _shape_list(self, input_shapes) -> list[tuple[int, ...]]:
        """``input_shapes`` as a list of tuples (sample shapes, no batch axis), their number checked."""
        if not isinstance(input_shapes, (list, tuple)) or not all(isinstance(s, (list, tuple)) for s in input_shapes):
            raise ValueError(f"{self._who}: expects a list of input shapes (one tuple per input, without the batch "
                             f"axis), got {input_shapes!r}")
        self._check_count(len(input_shapes))
        return [tuple(non_negative_int(d, f"{self._who}: input {i}'s shape entry") for d in s)
                for i, s in enumerate(input_shapes)]

    def build(self, input_shapes, rng: np.random.Generator | None = None) -> None:
        """Check the list of sample shapes, record them and the output's; no weights."""
        shapes = self._shape_list(input_shapes)
        self.output_shape = self.compute_output_shape(shapes)
        self.input_shape = shapes
        self.params = {}
        self.built = True

    def compute_output_shape(self, input_shapes) -> tuple[int, ...]:
        """The broadcast of the sample shapes (see :func:`npae.functional.merge.broadcast_shapes`)."""
        try:
            return merge.broadcast_shapes(self._shape_list(input_shapes))
        except ValueError as e:
            raise ValueError(f"{self._who}: {e}") from None

    def _check_inputs(self, xs) -> list[np.ndarray]:
        """``xs`` as a list of arrays of the layer's dtype, one per input, each of shape
        (batch, *input_shape[i]) with one batch size (building the layer if needed)."""
        if not isinstance(xs, (list, tuple)):
            got = f"one array of shape {xs.shape}" if hasattr(xs, "shape") else type(xs).__name__
            raise ValueError(f"{self._who}: expects a list of inputs (one array per input), got {got}")
        self._check_count(len(xs))
        arrays = []
        for i, x in enumerate(xs):
            if isinstance(x, SymbolicTensor):
                raise TypeError(f"{self._who}: forward takes arrays, got the symbolic tensor {x!r} as input {i}; "
                                "call the layer on symbolic tensors instead, layer([a, b])")
            a = np.asarray(x)
            if a.dtype.kind not in "fiub":
                raise TypeError(f"{self._who}: input {i} must be a numeric array, got dtype {a.dtype}")
            if a.ndim == 0:
                raise ValueError(f"{self._who}: input {i} is a scalar; expected an array with a batch axis")
            arrays.append(a)
        for i, a in enumerate(arrays[1:], 1):
            if a.shape[0] != arrays[0].shape[0]:
                raise ValueError(f"{self._who}: inputs have different batch sizes: input 0 of shape {arrays[0].shape} "
                                 f"and input {i} of shape {a.shape}")
        if not self.built:
            self.build([a.shape[1:] for a in arrays])
        if len(arrays) != len(self.input_shape):
            raise ValueError(f"{self._who}: was built for {len(self.input_shape)} inputs, got {len(arrays)}")
        for i, (a, shape) in enumerate(zip(arrays, self.input_shape)):
            if a.shape[1:] != shape:
                raise ValueError(f"{self._who}: expected input {i} of shape {_batch_shape(shape)}, got {a.shape}")
        return [a if a.dtype == self.dtype else a.astype(self.dtype) for a in arrays]

    def forward(self, xs, training: bool = False):
        """out (N, *output_shape), cache, from xs = [x_1 (N, *s_1), ..., x_k (N, *s_k)]."""
        return self._passes[0](self._check_inputs(xs))

    def backward(self, dout, cache):
        """[dx_1 (N, *s_1), ..., dx_k (N, *s_k)] and {} (no weights) from dout (N, *output_shape)."""
        return self._passes[1](dout, cache), {}


class Add(_Merge):
    """Keras's ``Add()``: out = x_1 + ... + x_k, element-wise (broadcasting); dx_i = dout summed over
    x_i's broadcast axes."""

    _passes = (merge.add_forward, merge.sum_backward)


class Subtract(_Merge):
    """Keras's ``Subtract()``: out = x_1 - x_2, exactly two inputs (broadcasting); dx_1 = dout,
    dx_2 = -dout, each summed over its broadcast axes."""

    min_inputs = max_inputs = 2
    _passes = (merge.subtract_forward, merge.sum_backward)


class Multiply(_Merge):
    """Keras's ``Multiply()``: out = x_1 * ... * x_k, element-wise (broadcasting); dx_i = dout times
    the product of the other inputs, summed over x_i's broadcast axes."""

    _passes = (merge.multiply_forward, merge.multiply_backward)


class Average(_Merge):
    """Keras's ``Average()``: out = (x_1 + ... + x_k) / k, element-wise (broadcasting); dx_i = dout / k
    summed over x_i's broadcast axes."""

    _passes = (merge.average_forward, merge.sum_backward)


class _Extremum(_Merge):
    """Maximum and Minimum: the gradient goes to the winner alone, on a tie the first of the tied
    inputs (the lowest i). The winner is also the kink mask (:meth:`kinks`): a gradient check skips
    any step that changes it, which every step on a tied value does in one direction or the other."""

    def kinks(self, cache):
        """[the winner (N, *output_shape)]: which input each output came from."""
        return [cache.winner]


class Maximum(_Extremum):
    """Keras's ``Maximum()``: out = the largest x_i at each place (broadcasting); dx_i = dout where
    x_i won (ties: the first of the tied inputs), 0 elsewhere, summed over x_i's broadcast axes."""

    _passes = (merge.maximum_forward, merge.extremum_backward)


class Minimum(_Extremum):
    """Keras's ``Minimum()``: out = the smallest x_i at each place (broadcasting); dx_i = dout where
    x_i won (ties: the first of the tied inputs), 0 elsewhere, summed over x_i's broadcast axes."""

    _passes = (merge.minimum_forward, merge.extremum_backward)


class Concatenate(_Merge):
    """Keras's ``Concatenate(axis=-1)``: the inputs joined along ``axis``, a sample axis of the
    batch (N, *s): 1 .. rank or -rank .. -1 (negative counts from the end, as in Keras). Shapes:
    x_i (N, ..., d_i, ...) -> (N, ..., d_1 + ... + d_k, ...); the inputs have one rank and equal
    sizes off the axis (no broadcasting). dx_i is dout's slice at x_i's place. Keras also
    concatenates along the batch axis (axis 0) on arrays; npae refuses it."""

    def __init__(self, axis: int = -1, **kwargs):
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Concatenate: axis must be an int, got {axis!r}")
        super().__init__(**kwargs)
        self.axis = int(axis)
        if self.axis == 0:
            self._refuse_batch_axis(None)

    def _refuse_batch_axis(self, rank: int | None):
        where = "" if rank is None else f" of inputs of rank {rank + 1} (with the batch axis)"
        raise NotImplementedError(f"{self._who}: axis={self.axis} is the batch axis{where}: Keras concatenates "
                                  "along it on arrays, npae only along a sample axis (1, 2, ... or -1, -2, ...)")

    def compute_output_shape(self, input_shapes) -> tuple[int, ...]:
        """The shared sample shape, with the inputs' sizes along the axis added up."""
        shapes = self._shape_list(input_shapes)
        rank = len(shapes[0])
        if self.axis == -(rank + 1) and all(len(s) == rank for s in shapes):
            self._refuse_batch_axis(rank)
        try:
            return merge.concat_shape(shapes, self.axis)
        except ValueError as e:
            raise ValueError(f"{self._who}: {e}") from None

    def forward(self, xs, training: bool = False):
        """out (N, *output_shape), cache, from xs = [x_1 (N, *s_1), ..., x_k (N, *s_k)]."""
        return merge.concatenate_forward(self._check_inputs(xs), self.axis)

    def backward(self, dout, cache):
        """[dx_1 (N, *s_1), ..., dx_k (N, *s_k)], dout's pieces (copies), and {} (no weights)."""
        return merge.concatenate_backward(dout, cache), {}

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def add(inputs, **kwargs):
    """Keras's ``add(inputs)``: ``Add(**kwargs)(inputs)``, on symbolic tensors or arrays."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """Keras's ``subtract(inputs)``: ``Subtract(**kwargs)(inputs)``, exactly two inputs."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Keras's ``multiply(inputs)``: ``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """Keras's ``average(inputs)``: ``Average(**kwargs)(inputs)``."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """Keras's ``maximum(inputs)``: ``Maximum(**kwargs)(inputs)``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """Keras's ``minimum(inputs)``: ``Minimum(**kwargs)(inputs)``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis: int = -1, **kwargs):
    """Keras's ``concatenate(inputs, axis=-1)``: ``Concatenate(axis=axis, **kwargs)(inputs)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)
