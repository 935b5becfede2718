"""The functional API's graph: symbolic tensors, the nodes that made them, and the order to run them.

``h = Dense(64)(x)`` runs nothing: it records a :class:`Node` (the layer, the tensors it was
applied to, the tensors it made) and returns its output, a :class:`SymbolicTensor`. A model is the
part of that record between its inputs and its outputs:

    Graph(inputs, outputs)      walks back from the outputs to the inputs (depth first, as Keras's
                                ``map_graph``), checks that every output is computed from the
                                inputs and every input is used, and keeps the nodes in topological
                                order and the layers in Keras's ``model.layers`` order
    flatten(graph)              the same computation as a list of :class:`Op` over numbered
                                tensors, every nested model's graph spliced in where it was called:
                                what the reference path and the fast path run

A layer applied at several places appears in several ops (one set of weights, its gradients
summed); a tensor read by several ops gets the sum of their gradients.

Only layer calls can be recorded: arithmetic on a symbolic tensor (``x * 2``, ``np.exp(x)``) would
need automatic differentiation, which npae does not have; it is refused with an error that says how
to write the operation as a layer with ``forward`` and ``backward``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["SymbolicTensor", "Node", "Graph", "Op", "FlatGraph", "flatten", "GraphError", "is_symbolic",
           "flat_tensors", "NO_AUTODIFF"]

NO_AUTODIFF = ("npae records layer calls only: it has no automatic differentiation to take the gradient of "
               "arbitrary tensor maths. Write the operation as a layer (a Layer subclass with forward(x, training) "
               "and backward(dout, cache); see npae.layers.Layer), or use a layer npae has (Add, Subtract, Multiply, "
               "Concatenate, Activation, Reshape, ...)")


class GraphError(ValueError):
    """A graph that is not a model: an output not computed from the inputs, an unused input, a cycle."""


class SymbolicTensor:
    """A placeholder for a batch of shape (None, *sample_shape): no data, just where it came from.

    As Keras's symbolic tensors, ``shape`` includes the batch axis, as None. ``node`` is the
    :class:`Node` that made it (an Input's node has no inputs) and ``index`` which of that node's
    outputs it is.
    """

    __array_priority__ = 1000  # (so that ndarray + tensor comes here, and is refused)

    def __init__(self, sample_shape, node: Node | None = None, index: int = 0, dtype: str = "float32"):
        self.sample_shape = tuple(int(d) for d in sample_shape)  # without the batch axis
        self.node = node
        self.index = index
        self._dtype = str(dtype)

    @property
    def layer(self):
        """The layer that produced this tensor (an InputLayer for an Input)."""
        return None if self.node is None else self.node.layer

    @property
    def name(self) -> str:
        """The producing layer's name (Keras names an Input's tensor after its layer too)."""
        layer = self.layer
        return getattr(layer, "name", "tensor")

    @property
    def shape(self) -> tuple:
        """(None, *sample_shape), as Keras's ``KerasTensor.shape``."""
        return (None, *self.sample_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    @property
    def dtype(self) -> str:
        """The name of the tensor's dtype (Keras gives a name too)."""
        return self._dtype

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={self.shape} from {self.name!r}>"

    # -- what a symbolic tensor cannot do ----------------------------------------------------
    def _refuse(self, what: str):
        raise TypeError(f"{what} on the symbolic tensor {self!r}: {NO_AUTODIFF}")

    def __array__(self, *args, **kwargs):
        self._refuse("a NumPy function")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        self._refuse(f"numpy.{ufunc.__name__}")

    def __array_function__(self, func, types, args, kwargs):
        self._refuse(f"numpy.{func.__name__}")

    def __bool__(self):
        raise TypeError(f"the truth value of the symbolic tensor {self!r} is unknown: it holds no data until the "
                        "model runs")

    def __iter__(self):
        raise TypeError(f"cannot iterate over the symbolic tensor {self!r} (one tensor, not a list of tensors)")

    def __getitem__(self, item):
        self._refuse(f"indexing [{item!r}]")


def _arithmetic(symbol: str):
    def refuse(self, *args):
        self._refuse(f"the operator {symbol}")

    return refuse


for _name, _symbol in [("add", "+"), ("sub", "-"), ("mul", "*"), ("truediv", "/"), ("floordiv", "//"),
                       ("mod", "%"), ("pow", "**"), ("matmul", "@")]:
    setattr(SymbolicTensor, f"__{_name}__", _arithmetic(_symbol))
    setattr(SymbolicTensor, f"__r{_name}__", _arithmetic(_symbol))
for _name, _symbol in [("neg", "unary -"), ("pos", "unary +"), ("abs", "abs()"), ("lt", "<"), ("le", "<="),
                       ("gt", ">"), ("ge", ">=")]:
    setattr(SymbolicTensor, f"__{_name}__", _arithmetic(_symbol))


class Node:
    """One application of a layer (or of a model used as a layer) to symbolic tensors.

    layer : the layer (for an Input: its InputLayer, with no inputs).
    inputs : the tensors it was applied to, in order.
    outputs : the tensors it made.
    many_inputs : it was called on a list (a merge layer gets its inputs as a list).
    many_outputs : it returned a list (a model with several outputs).
    """

    __slots__ = ("layer", "inputs", "outputs", "many_inputs", "many_outputs")

    def __init__(self, layer, inputs: tuple, output_shapes: list, many_inputs: bool, many_outputs: bool,
                 dtype: str = "float32"):
        self.layer = layer
        self.inputs = tuple(inputs)
        self.many_inputs = many_inputs
        self.many_outputs = many_outputs
        self.outputs = tuple(SymbolicTensor(shape, self, i, dtype) for i, shape in enumerate(output_shapes))

    @property
    def is_input(self) -> bool:
        return not self.inputs

    def __repr__(self) -> str:
        return f"<Node {getattr(self.layer, 'name', '?')}: {len(self.inputs)} -> {len(self.outputs)}>"


def is_symbolic(value) -> bool:
    """Whether ``value`` is a symbolic tensor or a (nested) list / tuple / dict holding one."""
    if isinstance(value, SymbolicTensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(is_symbolic(v) for v in value)
    if isinstance(value, dict):
        return any(is_symbolic(v) for v in value.values())
    return False


def flat_tensors(structure, what: str) -> tuple[list[SymbolicTensor], list[str] | None]:
    """The tensors of a model's ``inputs`` or ``outputs`` argument (a tensor, a list or tuple of
    tensors, or a dict of them: in the order of its sorted keys, as Keras 3), and the dict's keys
    in that order (None unless a dict)."""
    keys = None
    if isinstance(structure, dict):
        keys = list(structure)
        if not all(isinstance(k, str) for k in keys):
            raise TypeError(f"Model: the keys of a dict of {what} must be strings, got {keys!r}")
        keys = sorted(keys)  # Keras 3 flattens a dict in the order of its sorted keys
        items = [structure[k] for k in keys]
    elif isinstance(structure, (list, tuple)):
        items = list(structure)
    else:
        items = [structure]
    if not items:
        raise ValueError(f"Model: give at least one tensor as {what}")
    for t in items:
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"Model: {what} must be tensors from Input(...) or layer calls, got "
                            f"{type(t).__name__}{' (a nested list: give a flat list)' if isinstance(t, list) else ''}")
    return items, keys


class Graph:
    """The nodes between a model's inputs and outputs.

    Attributes
    ----------
    inputs, outputs : the model's tensors, in order.
    nodes : every node needed for the outputs, the inputs' own nodes excluded, in topological
        order (each after the nodes that made its inputs).
    layers : the inputs' layers and the layers of those nodes, each once, in Keras's
        ``model.layers`` order (by depth from the outputs, ties in the order first met walking
        back from the outputs).
    """

    def __init__(self, inputs: list[SymbolicTensor], outputs: list[SymbolicTensor], owner: str = "Model"):
        self.inputs, self.outputs = list(inputs), list(outputs)
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise GraphError(f"{owner}: the same tensor is given twice as an input")
        for t in self.inputs:
            if t.node is None or not t.node.is_input:
                raise GraphError(f"{owner}: the input {t!r} is not an Input: give tensors made by Input(shape=...) "
                                 "as a model's inputs")
        declared = {id(t) for t in self.inputs}
        finished: set[int] = set()
        in_progress: set[int] = set()
        order: list[Node] = []  # topological, the inputs' nodes included
        first_seen: dict[int, int] = {}  # id(layer) -> when the walk first met it (Keras's tie-break)
        for out in self.outputs:
            # an iterative depth-first walk: a deep model must not hit Python's recursion limit
            stack = [(out, f"output {out.name!r}", False)]
            while stack:
                tensor, wanted_by, expanded = stack.pop()
                node = tensor.node
                if node is None:
                    raise GraphError(f"{owner}: {tensor!r} was not made by a layer call")
                if expanded:
                    in_progress.discard(id(node))
                    if id(node) not in finished:
                        finished.add(id(node))
                        order.append(node)
                    continue
                if id(node) in finished:
                    continue
                if id(node) in in_progress:
                    raise GraphError(f"{owner}: the graph has a cycle through {node.layer.name!r}")
                if node.is_input and id(tensor) not in declared:
                    raise GraphError(f"{owner}: the outputs are not all computed from the given inputs: "
                                     f"{wanted_by} needs the Input {node.layer.name!r}, which is not among the "
                                     f"model's inputs {[t.name for t in self.inputs]}")
                first_seen.setdefault(id(node.layer), len(first_seen))
                in_progress.add(id(node))
                stack.append((tensor, wanted_by, True))
                for parent in reversed(node.inputs):
                    stack.append((parent, f"layer {node.layer.name!r}", False))
        reached = {id(node) for node in order}
        for t in self.inputs:
            if id(t.node) not in reached:
                raise GraphError(f"{owner}: the input {t.name!r} feeds nothing: no output is computed from it")
        self.nodes = [node for node in order if not node.is_input]
        self.layers = _keras_order(order, first_seen)


def _keras_order(order: list[Node], first_seen: dict[int, int]) -> list:
    """The layers of ``order`` (nodes in topological order) by decreasing depth, the most
    operations between a layer and an output first, ties by when the walk from the outputs first
    met them: Keras's ``model.layers`` (and so its weight order)."""
    node_depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    layers: dict[int, Any] = {}
    members = {id(n) for n in order}
    for node in reversed(order):
        d = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = d
        node_depth[id(node)] = d
        layers[id(node.layer)] = node.layer
        for t in node.inputs:
            if t.node is not None and id(t.node) in members:
                node_depth[id(t.node)] = max(d + 1, node_depth.get(id(t.node), 0))
    ordered = sorted(layers, key=lambda k: (-layer_depth[k], first_seen[k]))
    return [layers[k] for k in ordered]


class Op(NamedTuple):
    """One layer application in a flattened graph, over numbered tensors."""

    layer: Any
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    many_inputs: bool  # the layer takes a list
    many_outputs: bool  # the layer returns a list


class FlatGraph(NamedTuple):
    """A model's computation as ops over numbered tensors (nested models spliced in).

    ops : in topological order. inputs, outputs : the model's tensors' numbers (an output may be
    an input, or appear twice). shapes : every tensor's sample shape, by number.
    """

    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]

    def consumers(self) -> list[list[int]]:
        """For each tensor, the indices of the ops that read it (an op reading it twice is listed twice)."""
        found: list[list[int]] = [[] for _ in self.shapes]
        for i, op in enumerate(self.ops):
            for t in op.inputs:
                found[t].append(i)
        return found

    def producers(self) -> list[int | None]:
        """For each tensor, the index of the op that makes it (None for an input)."""
        found: list[int | None] = [None] * len(self.shapes)
        for i, op in enumerate(self.ops):
            for t in op.outputs:
                found[t] = i
        return found

    def is_chain(self) -> bool:
        """One input, one output, and each op reads exactly the tensor the op before it made (the
        shape of every model of the autoencoder tutorial)."""
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            return False
        current = self.inputs[0]
        for op in self.ops:
            if op.many_inputs or op.many_outputs or op.inputs != (current,):
                return False
            current = op.outputs[0]
        counts = self.consumers()
        return current == self.outputs[0] and all(len(c) <= 1 for c in counts)


def flatten(graph: Graph) -> FlatGraph:
    """The graph as ops over numbered tensors, with every node whose layer is a model (an object
    with a ``graph`` attribute holding a :class:`Graph`) replaced by that model's own ops."""
    shapes: list[tuple[int, ...]] = []
    ops: list[Op] = []

    def new_tensor(shape) -> int:
        shapes.append(tuple(shape))
        return len(shapes) - 1

    def splice(g: Graph, input_ids: list[int], depth: int) -> list[int]:
        if depth > 100:
            raise GraphError("models are nested more than 100 deep (does a model contain itself?)")
        ids: dict[int, int] = {id(t): n for t, n in zip(g.inputs, input_ids)}
        for node in g.nodes:
            args = [ids[id(t)] for t in node.inputs]
            inner = getattr(node.layer, "graph", None)
            if isinstance(inner, Graph):
                outs = splice(inner, args, depth + 1)
            else:
                outs = [new_tensor(t.sample_shape) for t in node.outputs]
                ops.append(Op(node.layer, tuple(args), tuple(outs), node.many_inputs, node.many_outputs))
            for t, n in zip(node.outputs, outs):
                ids[id(t)] = n
        return [ids[id(t)] for t in g.outputs]

    inputs = [new_tensor(t.sample_shape) for t in graph.inputs]
    outputs = splice(graph, inputs, 0)
    return FlatGraph(tuple(ops), tuple(inputs), tuple(outputs), tuple(shapes))
