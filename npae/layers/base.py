"""The layer contract every npae layer follows (Keras's objects, CS231n's passes).

A layer is configured in ``__init__``, creates its weights in ``build(input_shape)`` and says its
output shape without running (``compute_output_shape``). On data it offers two passes, which
keep nothing on the layer, so one layer can run in several threads, or twice in one model:

    out, cache = layer.forward(x, training)      x (N, *input_shape) -> out (N, *output_shape)
    dx, grads  = layer.backward(dout, cache)     dout like out; dx like x; grads like params

``grads`` maps each weight's name ("kernel", "bias") to its gradient; the model adds them up
(a layer used twice gets the sum of both uses' gradients). Each layer's passes call the NumPy
operations of :mod:`npae.functional`, where the maths and the shapes are written down. Shapes
given to a layer exclude the batch axis, as in Keras's ``input_shape``.

Layers with an ``activation`` compute a = activation(z), z their linear part. Called with
``logits=True`` they stop at z: a model whose last sigmoid meets binary cross-entropy computes
the loss from z (see :mod:`npae.functional.losses`), and the backward pass then starts at dz.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, NamedTuple

import numpy as np

from .. import activations, regularizers
from ..checks import pop_keras_only, positive_int
from ..functional.activations import ActivationCache, kink
from ..graph import NO_AUTODIFF, Node, SymbolicTensor, is_symbolic

__all__ = ["Layer", "ActivatedCache", "CHANNELS_LAST", "check_padding", "check_weight", "unique_name", "param_key",
           "reset_names"]

_name_counts: Counter = Counter()
CHANNELS_LAST = frozenset({None, "channels_last"})  # data_format values npae accepts
# weights larger than this are refused at build with a clear error rather than a MemoryError
MAX_WEIGHT_ELEMENTS = 2**31


def reset_names() -> None:
    """Forget the names given so far: the next Dense is ``dense`` again (``clear_session``)."""
    _name_counts.clear()


def unique_name(cls_name: str) -> str:
    """Keras's naming rule: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, then _1, _2, ..."""
    base = re.sub(r"([a-z])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls_name)).lower()
    n = _name_counts[base]
    _name_counts[base] += 1
    return base if n == 0 else f"{base}_{n}"


def check_padding(padding) -> str:
    """'valid' | 'same' (any case) -> lower case; anything else is a clear error."""
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return padding.lower()


def param_key(layer: Layer, name: str) -> str:
    """A weight's key in a model, "<layer name>/<weight name>": the keys of ``model.parameters()``,
    ``model.gradients()`` and the optimizer's state."""
    return f"{layer.name}/{name}"


class ActivatedCache(NamedTuple):
    """The cache of a layer with an activation: its linear part's, and the activation's (None
    when the forward pass stopped at the logits)."""

    linear: Any
    act: ActivationCache | None


class Layer:
    """Base class of all layers.

    Attributes
    ----------
    params : dict[str, np.ndarray], the weights by name ("kernel", "bias"), empty without weights.
    input_shape, output_shape : tuple[int, ...] without the batch axis, set by ``build``.
    trainable : whether fit updates this layer's weights (Keras's ``layer.trainable``).
    """

    param_order: tuple[str, ...] = ()  # Keras's weight order, e.g. ("kernel", "bias")
    many_inputs = False  # True: called on a list of tensors (a merge), forward gets a list of arrays
    # True (on the class, or an instance: an LSTM with return_state): output_shape is a list of
    # shapes, forward returns a list of arrays, backward gets a list of gradients (zeros where no
    # loss depends on an output)
    many_outputs = False
    has_loss = False  # True: layer_loss(cache) adds to the training objective (Keras's add_loss)
    # weights that training does not update through gradients (BatchNormalization's moving statistics)
    non_trainable_params: tuple[str, ...] = ()
    activation: activations.Activation | None = None

    def __init__(self, name: str | None = None, dtype=None, trainable: bool = True, activity_regularizer=None,
                 input_shape: tuple[int, ...] | None = None, **kwargs):
        pop_keras_only(type(self).__name__, kwargs, {"autocast": True, "batch_size": None}, strict=True)
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string without '/', got {name!r}")
        self.name = name or unique_name(type(self).__name__)
        try:
            self.dtype = np.dtype(dtype or np.float32)
        except TypeError:
            raise ValueError(f"{self.name}: dtype must be 'float32' or 'float64', got {dtype!r}") from None
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"{self.name}: dtype must be 'float32' or 'float64', got {self.dtype}")
        self.trainable = bool(trainable)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.params: dict[str, np.ndarray] = {}
        self.built = False
        self.input_shape: tuple[int, ...] | None = None
        if input_shape is not None:
            self.input_shape = tuple(positive_int(d, f"{self.name}: input_shape entry") for d in input_shape)
        self.output_shape: tuple[int, ...] | None = None

    # -- configuration and shapes -----------------------------------------------------------
    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator | None = None) -> None:
        """Check ``input_shape`` (no batch axis), create the weights, record both shapes."""
        input_shape = tuple(int(d) for d in input_shape)
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = input_shape
        self.params = {}
        for key, shape in self.weight_shapes(input_shape).items():
            size = math.prod(shape)
            if size > MAX_WEIGHT_ELEMENTS:
                raise ValueError(f"{self.name}: its {key} of shape {shape} would hold {size:,} values "
                                 f"({size * self.dtype.itemsize / 2**30:,.1f} GiB); npae refuses weights of more "
                                 f"than {MAX_WEIGHT_ELEMENTS:,} values")
        self._create_params(input_shape, rng)
        self.built = True

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The shape of each weight for this input shape, without creating any."""
        return {}

    def _create_params(self, input_shape, rng) -> None:
        """Fill ``self.params``: each weight of :meth:`weight_shapes`, in its order, drawn by the
        layer's ``<weight name>_initializer`` (Keras's naming: ``kernel_initializer``,
        ``gamma_initializer``, ...). A layer whose weights are made otherwise overrides this."""
        for key, shape in self.weight_shapes(input_shape).items():
            self.params[key] = getattr(self, f"{key}_initializer")(shape, self.dtype, rng)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Output shape (no batch axis) for an input shape, without running the layer."""
        return tuple(input_shape)

    def get_config(self) -> dict:
        """The constructor arguments that rebuild this layer (JSON-serialisable)."""
        cfg = {"name": self.name, "dtype": self.dtype.name}
        if not self.trainable:
            cfg["trainable"] = False
        if self.activity_regularizer is not None:
            cfg["activity_regularizer"] = self.activity_regularizer.get_config()
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        """The layer ``get_config`` describes."""
        return cls(**config)

    # -- computation ---------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> tuple[np.ndarray, Any]:
        """out, cache: the output (N, *output_shape) and what :meth:`backward` needs."""
        raise NotImplementedError(self._missing_pass("forward"))

    def backward(self, dout: np.ndarray, cache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """dx, grads: dL/dx (N, *input_shape) and dL/d(each weight) from dout = dL/dout."""
        raise NotImplementedError(self._missing_pass("backward"))

    def _missing_pass(self, which: str) -> str:
        kind = type(self).__name__
        if callable(getattr(type(self), "call", None)):
            return (f"{self.name}: {kind} defines Keras's call(), which npae cannot run: {NO_AUTODIFF}. Give {kind} "
                    "forward(x, training) -> (out, cache) and backward(dout, cache) -> (dx, grads) instead of call()")
        return f"{self.name}: {kind} does not define {which}(); a layer needs forward(x, training) and " \
               "backward(dout, cache)"

    def layer_loss(self, cache) -> float:
        """The loss this layer adds to the model's objective (Keras's ``add_loss``), from a forward
        pass's cache: for a layer with ``has_loss`` (a variational autoencoder's KL term). Its
        gradient with respect to the layer's inputs comes out of :meth:`backward`, added to the
        gradient that flows back through the outputs. 0.0 here."""
        return 0.0

    def kinks(self, cache) -> list[np.ndarray]:
        """Masks that change when an input crosses a point without a derivative (a relu's zero,
        a max pool's winner), from a forward pass's cache; gradient checks skip such steps."""
        if isinstance(cache, ActivatedCache) and cache.act is not None:
            mask = kink(cache.act)
            return [] if mask is None else [mask]
        return []

    def _check_input(self, x, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """``x`` as an array of the layer's dtype and of shape (batch, *input_shape) (building the
        layer if needed): never broadcast silently."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiu" and x.dtype != np.bool_:
            raise TypeError(f"{self.name}: expected a numeric input, got dtype {x.dtype}")
        if not self.built:
            self.build(x.shape[1:])
        shape = shape or self.input_shape
        if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
            raise ValueError(f"{self.name}: expected input of shape (batch, {', '.join(map(str, shape))}), "
                             f"got {x.shape}")
        return x if x.dtype == self.dtype else x.astype(self.dtype)

    def _activate(self, z: np.ndarray, logits: bool) -> tuple[np.ndarray, ActivationCache | None]:
        """a = activation(z), or z itself with ``logits``."""
        if logits:
            return z, None
        return self.activation.forward(z)

    def _deactivate(self, dout: np.ndarray, act: ActivationCache | None) -> np.ndarray:
        """dL/dz from dL/da (or dL/dz itself after a forward pass with ``logits``)."""
        return dout if act is None else self.activation.backward(dout, act)

    # -- weights -------------------------------------------------------------------------------
    @property
    def weights(self) -> list[np.ndarray]:
        """The weights themselves (not copies), in Keras's order."""
        return [self.params[k] for k in self.param_order if k in self.params]

    def trainable_param_names(self) -> list[str]:
        """The names of the weights fit updates: none for a frozen layer (``trainable = False``)."""
        if not self.trainable:
            return []
        return [k for k in self.param_order if k in self.params and k not in self.non_trainable_params]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return [self.params[k] for k in self.trainable_param_names()]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        trainable = set(self.trainable_param_names())
        return [self.params[k] for k in self.param_order if k in self.params and k not in trainable]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights in Keras's order (kernel, then bias)."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights) -> None:
        """Set weights in Keras's order. Each must be a real-valued array of exactly the weight's
        shape; nothing is set unless all are."""
        keys = [k for k in self.param_order if k in self.params]
        weights = list(weights)
        if len(weights) != len(keys):
            raise ValueError(f"{self.name}: expected {len(keys)} weight arrays ({', '.join(keys)}), "
                             f"got {len(weights)}")
        checked = [check_weight(w, self.params[k].shape, f"{self.name}.{k}") for k, w in zip(keys, weights)]
        self.check_weights(dict(zip(keys, checked)))
        for k, w in zip(keys, checked):
            self.params[k][...] = w

    def check_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Refuse weights this layer cannot mean (a ValueError naming the layer and the weight),
        before any is set; ``weights`` maps some of the weights' names to arrays of their shapes.
        A no-op here: BatchNormalization refuses negative or non-finite moving statistics."""

    def count_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def astype(self, dtype) -> None:
        """Cast the weights to ``dtype`` (e.g. float64 for exact gradient checks)."""
        self.dtype = np.dtype(dtype)
        self.params = {k: v.astype(self.dtype) for k, v in self.params.items()}

    # -- the functional API --------------------------------------------------------------------
    def __call__(self, inputs, training: bool = False):
        """On a symbolic tensor (from ``Input`` or a layer call), or a list of them for a layer
        that takes several (``Concatenate()([a, b])``): the output tensor, recorded for building a
        ``Model``; an unbuilt layer is built for the tensors' shapes, a built one (a shared layer)
        must get those shapes again. On an array (or a list of arrays): the output array (Keras's
        eager call)."""
        if not is_symbolic(inputs):
            return self.forward(inputs, training)[0]
        tensors, listed = self._symbolic_inputs(inputs)
        shapes = [t.sample_shape for t in tensors]
        shape = shapes if self.many_inputs else shapes[0]
        if not self.built:
            self.build(shape)
        elif (list(shape) if self.many_inputs else shape) != (list(self.input_shape) if self.many_inputs
                                                             else self.input_shape):
            raise ValueError(f"{self.name} was built for input shape {self.input_shape} and cannot be called on "
                             f"{'tensors of shapes ' + str(shapes) if self.many_inputs else 'a tensor of shape '}"
                             f"{'' if self.many_inputs else str(tensors[0].shape)}")
        many = bool(self.many_outputs)
        node = Node(self, tensors, list(self.output_shape) if many else [self.output_shape], listed, many,
                    self.dtype.name)
        self._inbound_nodes.append(node)
        return list(node.outputs) if many else node.outputs[0]

    def _symbolic_inputs(self, inputs) -> tuple[list[SymbolicTensor], bool]:
        """The symbolic tensors a call got, and whether as a list; a clear error for a mix of
        tensors and arrays, or for a list given to a layer that takes one tensor."""
        listed = isinstance(inputs, (list, tuple))
        tensors = list(inputs) if listed else [inputs]
        bad = [type(t).__name__ for t in tensors if not isinstance(t, SymbolicTensor)]
        if bad:
            raise TypeError(f"{self.name}: called on a mix of symbolic tensors and {bad[0]}: give only tensors "
                            "from Input(...) or layer calls")
        if self.many_inputs:
            if not listed:
                raise TypeError(f"{self.name}: {type(self).__name__} takes a list of tensors, e.g. "
                                f"{type(self).__name__}()([a, b]), got one tensor")
            return tensors, True
        if len(tensors) != 1:
            raise TypeError(f"{self.name}: {type(self).__name__} takes one tensor, got a list of {len(tensors)}; merge "
                            "them first (Concatenate, Add, ...)")
        return tensors, False

    @property
    def _inbound_nodes(self) -> list:
        """The nodes of this layer's calls on symbolic tensors, in order."""
        nodes = self.__dict__.get("_nodes")
        if nodes is None:
            nodes = self.__dict__["_nodes"] = []
        return nodes

    def _only_node(self, what: str):
        nodes = self._inbound_nodes
        if not nodes:
            raise AttributeError(f"{self.name} has not been called on a tensor yet, so it has no {what}")
        if len(nodes) > 1 and any(n.inputs != nodes[0].inputs for n in nodes[1:]):
            raise AttributeError(f"{self.name} has been called on {len(nodes)} tensors, so its {what} is ambiguous; "
                                 f"use the tensors its calls returned")
        return nodes[0]

    @property
    def input(self):
        """The tensor this layer was called on (Keras's ``layer.input``; a list for a merge)."""
        node = self._only_node("input")
        return list(node.inputs) if node.many_inputs else node.inputs[0]

    @property
    def output(self):
        """The tensor this layer's call made (Keras's ``layer.output``)."""
        node = self._only_node("output")
        return list(node.outputs) if node.many_outputs else node.outputs[0]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_nodes", None)  # (the symbolic calls are not part of a copied or pickled layer)
        return state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.input_shape}->{self.output_shape}>"


def check_weight(w, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A weight array given from outside (set_weights, a model file): real numbers (float, int or
    bool) of exactly ``shape``; objects, strings, complex numbers and records are refused."""
    w = np.asarray(w) if not isinstance(w, np.ndarray) else w
    if w.dtype.kind not in "fiub":
        raise ValueError(f"{what}: expected an array of real numbers, got dtype {w.dtype}")
    if w.shape != tuple(shape):
        raise ValueError(f"{what}: expected shape {tuple(shape)}, got {w.shape}")
    return w
