"""Keras's ``Sequential``: a stack of layers, each applied to the output of the one before."""

from __future__ import annotations

import numpy as np

from ..graph import SymbolicTensor
from ..layers import Input, InputLayer, Layer
from ..layers.base import unique_name
from .model import Model

__all__ = ["Sequential"]


class Sequential(Model):
    """A plain stack: ``Sequential([Input(shape=(784,)), Dense(64, activation='relu'), ...])``, or
    ``Sequential()`` and ``add(layer)``. A layer may be a model (``Sequential([encoder, decoder])``).
    Without an Input (or a first layer's ``input_shape``) it is built by its first data, by
    ``build((None, ...))`` or when called on a tensor. Unlike functional models its ``layers``
    omit the InputLayer, as in Keras."""

    def __init__(self, layers=None, name: str | None = None, **kwargs):
        self._stack: list[Layer] = []
        self._input: SymbolicTensor | None = None
        super().__init__(name=name or unique_name("Sequential"), **kwargs)
        for layer in layers or []:
            self.add(layer)

    def _empty_allowed(self) -> bool:
        return True

    @property
    def layers(self) -> list[Layer]:
        return list(self._stack)

    def add(self, layer) -> None:
        """Add a layer (or an ``Input``, first) on top of the stack."""
        if isinstance(layer, SymbolicTensor):
            if self._input is not None or self._stack:
                raise ValueError(f"{self.name}: an Input can only come first")
            if not isinstance(layer.layer, InputLayer):
                raise ValueError(f"{self.name}: add() takes layers or an Input, got the tensor {layer!r}")
            self._input = layer
            return
        if isinstance(layer, InputLayer):
            if self._input is not None or self._stack:
                raise ValueError(f"{self.name}: an InputLayer can only come first")
            self._input = layer.output
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}: expected a layer, got {type(layer).__name__}")
        if self._input is None and not self._stack:  # a first layer that knows its input shape gives it
            if isinstance(layer, Model):
                if layer.built:
                    self._input = Input(shape=layer.graph.inputs[0].sample_shape)
            elif layer.input_shape is not None:
                self._input = Input(shape=layer.input_shape)
        self._stack.append(layer)
        if self.__dict__.get("_frozen"):
            layer.trainable = False
        if self._input is not None:
            try:
                self._connect()
            except (ValueError, TypeError):
                self._stack.pop()
                if self._stack:
                    self._connect()
                raise
        self._paths = {}
        self._resolved_metrics = None

    def _connect(self) -> None:
        """Apply the stack to the input and take the graph between them."""
        t = self._input
        for layer in self._stack:
            t = layer(t)
            if not isinstance(t, SymbolicTensor):
                raise ValueError(f"{self.name}: {layer.name} has several outputs; a Sequential needs layers with one")
        self._set_graph(self._input, t)
        self.objective = None

    def build(self, input_shape=None) -> None:
        """Build every layer for ``input_shape`` (Keras's ``(None, ...)``, or without the batch axis),
        checking each link."""
        if self._input is None:
            if input_shape is None:
                raise ValueError(f"{self.name}: the input shape is unknown; start with Input(shape=...) or call "
                                 "build((None, ...))")
            shape = tuple(input_shape)
            self._input = Input(shape=shape[1:] if shape and shape[0] is None else shape)
        if self._stack:
            self._connect()

    def _build_for(self, xs: list[np.ndarray], form: str, keys) -> None:
        if len(xs) != 1:
            raise ValueError(f"{self.name}: a Sequential takes one input, got {len(xs)}")
        self.build(np.shape(xs[0])[1:])
        if not self._stack:
            raise ValueError(f"{self.name}: this Sequential has no layers yet")
