"""The Layer contract every layer follows.

A layer is configured in ``__init__``, creates its weights in ``build(input_shape)``, says its
output shape without running (``compute_output_shape``), computes in ``forward(x, training)`` and
keeps what its backward needs, and in ``backward(grad_out)`` fills ``grads`` (same keys and
shapes as ``params``) and returns the gradient with respect to its input. Shapes exclude the
batch axis, as in Keras's ``input_shape``.

Layers with an ``activation`` split the work: ``forward`` = activation(linear part + bias), and
``backward`` = ``backward_linear(activation'(a) * grad)`` plus the bias gradient. A model whose last
layer ends in a sigmoid and whose loss is binary cross-entropy uses ``forward_logits`` and
``backward_logits`` (dL/dz directly) instead.

Results (outputs and input gradients) are new arrays, except while a Model's own methods run the
layer (``reuse_buffers``): then they live in buffers the layer keeps, because the model reads each
one before the layer runs again, or in arrays the model lends (``lent``: predict's output, and the
input gradients, which take turns in two arrays). ``backward(grad_out, overwrite_grad=True)`` lets a
layer use ``grad_out`` itself as scratch (the model passes it for gradients that came from another
layer). Scratch memory used within one call (``take_scratch``) is shared by a model's layers.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

from .. import activations, elementwise, regularizers

__all__ = ["Layer", "Scratch", "to_pair"]

_name_counts: Counter = Counter()


def _unique_name(cls_name: str) -> str:
    # Keras's rule: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, ReLU -> re_lu
    base = re.sub(r"([a-z])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls_name)).lower()
    n = _name_counts[base]
    _name_counts[base] += 1
    return base if n == 0 else f"{base}_{n}"


class Scratch:
    """Scratch memory for a layer's internal use within one call (im2col's patch blocks), which
    the layers of a model share, as they run one at a time: one flat array, grown when needed.
    ``owner`` is the layer that took it last, so a layer can tell whether what it left there is
    still there."""

    def __init__(self):
        self.array: np.ndarray | None = None
        self.owner: Layer | None = None

    def take(self, owner: Layer, shape: tuple[int, ...], dtype) -> np.ndarray:
        size = math.prod(shape)
        if self.array is None or self.array.size < size or self.array.dtype != dtype:
            self.array = np.empty(size, dtype=dtype)
        self.owner = owner
        return self.array[:size].reshape(shape)


_ones_by_dtype: dict[np.dtype, np.ndarray] = {}


def _ones(rows: int, dtype) -> np.ndarray:
    """A read-only vector of ``rows`` ones, one kept per dtype for all layers (grown when needed)."""
    buf = _ones_by_dtype.get(np.dtype(dtype))
    if buf is None or buf.size < rows:
        buf = _ones_by_dtype[np.dtype(dtype)] = np.ones(rows, dtype=dtype)
        buf.flags.writeable = False
    return buf[:rows]


def to_pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of positive ints -> (int, int); anything else is a clear error."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])


class Layer:
    """Base class of all layers.

    Attributes
    ----------
    params, grads : dict[str, np.ndarray] with the same keys and shapes (empty without weights).
    input_shape, output_shape : tuple[int, ...] without the batch axis, set by ``build``.
    needs_input_grad : a model clears it on its first layer, whose input gradient nobody uses.
    """

    param_order: tuple[str, ...] = ()  # Keras's weight order, e.g. ("kernel", "bias")
    # Set by a Model while its own methods (compute_gradients, evaluate, predict) run the layer:
    # they consume every result before the layer runs again, so results may live in kept buffers.
    reuse_buffers: bool = False
    # Arrays a Model lends for one call, by result name: {"out": ...} (predict's output slice) or
    # {"dx": ...} (an array shared by the layers' input gradients). Flat and contiguous.
    lent: dict[str, np.ndarray] | None = None
    # Internal scratch memory; a Model gives all its layers the same one (``Scratch``).
    scratch: Scratch | None = None

    def __init__(self, name: str | None = None, dtype=None, activation=None, activity_regularizer=None,
                 input_shape: tuple[int, ...] | None = None):
        self.name = name or _unique_name(type(self).__name__)
        self.dtype = np.dtype(dtype or np.float32)
        if self.dtype.kind != "f":
            raise ValueError(f"{self.name}: dtype must be a float type, got {self.dtype}")
        self.activation = activations.get(activation)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.built = False
        self.input_shape: tuple[int, ...] | None = tuple(input_shape) if input_shape else None
        self.output_shape: tuple[int, ...] | None = None
        self.needs_input_grad = True
        self._out: np.ndarray | None = None

    # -- configuration and shapes -----------------------------------------------------------
    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator | None = None) -> None:
        """Check ``input_shape`` (no batch axis), create the weights, record both shapes."""
        input_shape = tuple(int(d) for d in input_shape)
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = input_shape
        self._create_params(input_shape, rng)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.built = True

    def _create_params(self, input_shape, rng) -> None:
        """Layers with weights fill ``self.params`` here."""

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Output shape (no batch axis) for an input shape, without running the layer."""
        return tuple(input_shape)

    def get_config(self) -> dict:
        """The constructor arguments that rebuild this layer (JSON-serialisable)."""
        cfg = {"name": self.name, "dtype": self.dtype.name}
        if self.activity_regularizer is not None:
            cfg["activity_regularizer"] = self.activity_regularizer.get_config()
        return cfg

    # -- computation ---------------------------------------------------------------------------
    def _check_input(self, x: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Cast to the layer's dtype and insist on (batch, *shape), by default (batch, *input_shape):
        never broadcast silently."""
        x = np.asarray(x)
        if not self.built:
            self.build(x.shape[1:])
        shape = shape or self.input_shape
        if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
            raise ValueError(f"{self.name}: expected input of shape (batch, {', '.join(map(str, shape))}), "
                             f"got {x.shape}")
        return x if x.dtype == self.dtype else x.astype(self.dtype)

    # Layers with an activation implement forward_linear (x -> z2 = the linear part without bias, as
    # a 2-D (rows, units) array) and backward_linear (dL/dz2 -> dL/dx, filling the kernel's grads).
    # The base class adds the bias and the activation in one fused pass (or the layer's own kernel
    # does, as it writes: forward_linear_bias_act), and takes their derivatives.
    def forward_linear(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward_linear(self, grad_z2: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def workspace(self, name: str, shape: tuple[int, ...], dtype=None) -> np.ndarray:
        """A scratch array of ``shape`` kept by the layer and reused from step to step (for internal
        buffers such as im2col's patch matrix, never for outputs handed to the caller)."""
        dtype = np.dtype(dtype or self.dtype)
        size = math.prod(shape)  # (np.prod takes ~20 us, and this runs several times per layer and step)
        ws = self.__dict__.setdefault("_workspaces", {})
        buf = ws.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = ws[name] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def take_scratch(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """Scratch memory for use within this call only (shared with the model's other layers)."""
        if self.scratch is None:
            self.scratch = Scratch()
        return self.scratch.take(self, shape, np.dtype(dtype))

    def result_buffer(self, name: str, shape: tuple[int, ...], dtype=None) -> np.ndarray:
        """An array for a result handed to the caller, ``name`` "out" (the output) or "dx" (the
        input gradient): the array the model lent for it, else a kept workspace while
        ``reuse_buffers`` is set, else a new array. Reusing saves the page faults of fresh
        memory: a new 13 MB output costs ~3,200 of them, about 2 ms, every step."""
        dtype = np.dtype(dtype or self.dtype)
        lent = self.lent.get(name) if self.lent else None
        if lent is not None and lent.dtype == dtype and lent.size >= math.prod(shape):
            return lent[:math.prod(shape)].reshape(shape)
        if self.reuse_buffers:
            return self.workspace(name, shape, dtype)
        return np.empty(shape, dtype=dtype)

    def _bias(self) -> np.ndarray:
        bias = self.params.get("bias")
        if bias is None:
            bias = np.zeros(self.output_shape[-1], dtype=self.dtype)
        return bias

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """a = activation(linear(x) + bias), shape (N, *output_shape)."""
        x = self._check_input(x)
        self._out2 = self.forward_linear_bias_act(x, training, self.activation.code)
        self._out = self._out2.reshape((x.shape[0], *self.output_shape))
        return self._out

    def forward_logits(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """z = linear(x) + bias, the pre-activation (used for sigmoid + BCE from logits)."""
        x = self._check_input(x)
        z2 = self.forward_linear_bias_act(x, training, 0)
        self._out = None
        return z2.reshape((x.shape[0], *self.output_shape))

    def forward_linear_bias_act(self, x: np.ndarray, training: bool, act: int) -> np.ndarray:
        """act(linear(x) + bias) as (rows, units), ``act`` an activation code (0: none). A layer
        whose own kernel can add the bias and apply ``act`` as it writes overrides this."""
        return elementwise.bias_act_forward(self.forward_linear(x, training), self._bias(), act)

    def backward(self, grad_out: np.ndarray, overwrite_grad: bool = False) -> np.ndarray | None:
        """dL/dx from dL/d(output); fills ``self.grads``. Adds the activity penalty's gradient.
        With ``overwrite_grad`` the caller will not read ``grad_out`` again and it may be reused."""
        if self.activity_regularizer is not None:
            grad_out = grad_out + self.activity_regularizer.gradient(self._out)  # a new array
            overwrite_grad = True
        g2 = grad_out.reshape(self._out2.shape)
        if self.activation.code != 0:  # dL/dz = dL/da * act'(a), from the kept output a
            dz = g2 if overwrite_grad else self.workspace("grad_z", g2.shape, g2.dtype)
            g2 = elementwise.act_backward(g2, self._out2, self.activation.code, dz)
        return self._backward_z2(g2)

    def backward_logits(self, grad_z: np.ndarray) -> np.ndarray | None:
        """dL/dx from dL/dz, the gradient with respect to the pre-activation."""
        return self._backward_z2(grad_z.reshape(-1, self.output_shape[-1]))

    def _backward_z2(self, g2: np.ndarray) -> np.ndarray | None:
        if "bias" in self.params:  # dL/dbias = sum over rows = ones^T g2, as a GEMV (6x faster here
            np.dot(_ones(g2.shape[0], g2.dtype), g2, out=self.grads["bias"])  # than np.sum(axis=0))
        return self.backward_linear(g2)

    def regularization_loss(self) -> float:
        """The activity penalty of the last forward pass (0.0 without a regulariser)."""
        if self.activity_regularizer is None or self._out is None:
            return 0.0
        return self.activity_regularizer.penalty(self._out)

    def kink_state(self) -> list[np.ndarray]:
        """Masks that change when an input crosses a non-differentiable point (for gradcheck)."""
        states = []
        if self._out is not None:
            for src in (self.activation, self.activity_regularizer):
                s = src.kink_state(self._out) if src is not None else None
                if s is not None:
                    states.append(s)
        return states

    # -- weights -------------------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights in Keras's order (kernel, then bias)."""
        return [self.params[k].copy() for k in self.param_order if k in self.params]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Set weights in Keras's order; shapes must match exactly."""
        keys = [k for k in self.param_order if k in self.params]
        if len(weights) != len(keys):
            raise ValueError(f"{self.name}: expected {len(keys)} weight arrays ({keys}), got {len(weights)}")
        for k, w in zip(keys, weights):
            w = np.asarray(w)
            if w.shape != self.params[k].shape:
                raise ValueError(f"{self.name}.{k}: expected shape {self.params[k].shape}, got {w.shape}")
            self.params[k][...] = w

    def count_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def astype(self, dtype) -> None:
        """Cast weights and gradients to ``dtype`` (e.g. float64 for exact gradient checks)."""
        self.dtype = np.dtype(dtype)
        self.__dict__.pop("_workspaces", None)
        self.params = {k: v.astype(self.dtype) for k, v in self.params.items()}
        self.grads = {k: v.astype(self.dtype) for k, v in self.grads.items()}

    # -- the functional API --------------------------------------------------------------------
    def __call__(self, tensor):
        """Apply this layer to a symbolic tensor (from ``Input``) and return the output tensor.

        An unbuilt layer is built for the tensor's shape; a built one (a shared layer) must be
        called on exactly the shape it was built for.
        """
        from ..graph import SymbolicTensor

        if not isinstance(tensor, SymbolicTensor):
            raise TypeError(
                f"{self.name}: layers are called on symbolic tensors from npae.layers.Input, "
                f"got {type(tensor).__name__}; to run on data use model.predict or layer.forward"
            )
        if not self.built:
            self.build(tensor.shape)
        elif tuple(tensor.shape) != self.input_shape:
            raise ValueError(
                f"{self.name} was built for input shape {self.input_shape} and cannot be called on "
                f"a tensor of shape {tuple(tensor.shape)}"
            )
        return SymbolicTensor(self.output_shape, layer=self, parent=tensor)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.input_shape}->{self.output_shape}>"
