"""Keras's ``plot_model``: a picture of a model's graph, drawn with matplotlib alone (no pydot, no graphviz).

    plot_model(model, "model.png", show_shapes=True)   one box per node of the model's graph (its
                                                       Inputs too), an arrow per edge; returns the path
    layout(model, show_shapes=True)                    where every box, arrow and frame goes, without
                                                       drawing anything: a :class:`Layout`

The layout is layered (Sugiyama's method): a node sits on the rank of its longest path from the
inputs (an input just before its first reader), an edge that skips ranks passes through a slot
reserved for it on each rank between, barycentre sweeps order each rank to reduce crossings, and
least squares place the items across the flow to keep edges short and long ones straight. Arrows
run straight along the flow inside a rank and curve only between ranks, so none crosses a box. An
expanded nested model is laid out the same way inside a labelled frame, which its parent places
as one tall box. Sizes are in points (1/72 inch) and the figure is sized to the graph, so the
text keeps its size whatever the model.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .graph import Graph
from .layers import InputLayer
from .models.model import Model
from .saving import atomic_write

__all__ = ["plot_model", "layout", "Layout", "Box", "Edge", "Frame", "RANKDIRS"]

RANKDIRS = ("TB", "LR", "BT", "RL")  # graphviz's: top to bottom, left to right, and their mirrors
_FONT = "DejaVu Sans"  # matplotlib's own font: on every machine, so the widths measured hold
_TITLE, _HEAD, _BODY = 12.0, 10.0, 8.5  # font sizes (points): the figure's title, a box's title, its other lines
_PAD_X, _PAD_Y, _LINE = 8.0, 4.5, 1.4  # inside a box: around the text; line height / font size
_HEAD_H = _HEAD * _LINE + 2 * _PAD_Y  # the height of a box's title band
_RANK_GAP, _BOX_GAP, _SLOT_GAP = 34.0, 18.0, 9.0  # between ranks; between boxes; beside an edge's slot
_FRAME_PAD, _MARGIN = 10.0, 14.0  # inside a nested model's frame; around the figure
_MAX_PIXELS = 30000  # a side: Agg cannot write 2**16 pixels, so the dpi is lowered for a huge graph
_COLOURS = {  # a box's title band, by the npae module of its layer (other layers: near black, as Keras)
    "InputLayer": "#2e7d32", "Model": "#455a64", "core": "#00695c", "conv": "#1565c0", "conv_transpose": "#283593",
    "pooling": "#6a1b9a", "reshaping": "#6a1b9a", "merging": "#d84315", "normalization": "#5d4037",
    "noise": "#5d4037", "activation": "#ad1457"}


class Box(NamedTuple):
    """One node drawn. ``lines``: its text, the title ("name (ClassName)") first; ``x, y, w, h``: its
    rectangle in points (x, y its lower-left corner, y up); ``models``: the names of the nested
    models it is drawn inside, outermost first; ``colour``: its title band's."""

    name: str
    kind: str
    lines: tuple[str, ...]
    x: float
    y: float
    w: float
    h: float
    models: tuple[str, ...]
    colour: str


class Edge(NamedTuple):
    """An arrow from ``boxes[src]`` to ``boxes[dst]``. ``points``: pairs of points, each a straight
    run along the flow (the first leaves ``src``, the last ends on ``dst``), joined by curves."""

    src: int
    dst: int
    points: tuple[tuple[float, float], ...]


class Frame(NamedTuple):
    """An expanded nested model: its label ("encoder (Functional)"), its rectangle as a box's, and
    the lower-left corner of its label."""

    label: str
    x: float
    y: float
    w: float
    h: float
    text_x: float
    text_y: float


class Layout(NamedTuple):
    """What :func:`plot_model` draws: boxes, edges (one per pair of boxes), frames, and the
    figure's size in points, title and margins included."""

    title: str
    rankdir: str
    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]
    frames: tuple[Frame, ...]
    width: float
    height: float


@lru_cache(maxsize=4096)
def _width(text: str, size: float, bold: bool = False) -> float:
    """The width in points of ``text`` in npae's font at ``size`` points."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties(family=_FONT, size=size, weight="bold" if bold else "normal")
    return text_to_path.get_text_width_height_descent(text, prop, ismath=False)[0]


def _kind(layer) -> str:
    return "Functional" if type(layer) is Model else type(layer).__name__


def _shape_lines(key: str, tensors) -> list[str]:
    """``key: (None, 28, 28, 1)``, or for several tensors ``key: [(None, 2), (None, 2)]`` wrapped
    between shapes when long."""
    parts = [str(t.shape) for t in tensors]
    lines = [f"{key}: {'[' if len(parts) > 1 else ''}{parts[0]}"]
    for p in parts[1:]:
        if len(lines[-1]) + len(p) > 42:
            lines[-1] += ","
            lines.append(f"    {p}")
        else:
            lines[-1] += f", {p}"
    lines[-1] += "]" if len(parts) > 1 else ""
    return lines


def _label(node, opts: dict) -> list[str]:
    """A node's text as Keras's plot_model writes it: title, activation, shapes, dtype, trainable."""
    layer, kind = node.layer, _kind(node.layer)
    lines = [f"{layer.name} ({kind})" if opts["show_layer_names"] else kind]
    activation = getattr(layer, "activation", None)
    if opts["show_layer_activations"] and activation is not None:
        lines.append(f"Activation: {getattr(activation, 'name', activation)}")
    if opts["show_shapes"]:
        lines += [] if isinstance(layer, InputLayer) else _shape_lines("Input shape", node.inputs)
        lines += _shape_lines("Output shape", node.outputs)
    if opts["show_dtype"]:
        dtypes = sorted({t.dtype for t in node.outputs})
        lines.append(f"Output dtype: {dtypes[0] if len(dtypes) == 1 else dtypes}")
    if opts["show_trainable"] and layer.count_params():  # as Keras: only for layers with weights
        lines.append("Trainable" if layer.trainable else "Non-trainable")
    return lines


class _Item:
    """A box, a nested model's frame (a block), an edge's slot or a frame's label, on a rank of a
    level. ``along`` / ``across``: its size along the flow and across it; ``x``: its centre across
    within its level; ``a, c``: its corner, in absolute flow coordinates."""

    def __init__(self, kind: str, along: float, across: float, box: int = -1, level: _Level | None = None):
        self.kind, self.along, self.across, self.box, self.level = kind, along, across, box, level
        self.rank, self.x, self.a, self.c = 0, 0.0, 0.0, 0.0


class _Level:
    """One graph laid out: items, links between neighbouring ranks, edges (source item, output,
    destination item, input, slots), its inputs' items, its outputs' boxes, and for a nested graph
    the slots that carry each output read outside to its last rank (by box: item, output, slots)."""

    def __init__(self):
        self.items: list[_Item] = []
        self.links: list[tuple[int, int]] = []
        self.edges: list[tuple[int, int, int, int, list[int]]] = []
        self.in_items, self.out_boxes, self.exits = [], [], {}
        self.label = ("", -1)  # a nested graph's frame label, and its item
        self.bands: list[tuple[float, float]] = []  # each rank's start and end along the flow
        self.size = (0.0, 0.0)  # along, across

    def add(self, item: _Item, rank: int = 0) -> int:
        self.items.append(item)
        item.rank = rank
        return len(self.items) - 1

    def chain(self, start: int, ranks: range) -> list[int]:
        """Slots on ``ranks``, linked one to the next from item ``start``."""
        slots = [self.add(_Item("slot", 0.0, 0.0), r) for r in ranks]
        self.links += zip([start, *slots], slots)
        return slots

    def src_box(self, item: int, output: int) -> int:
        it = self.items[item]
        return it.box if it.level is None else it.level.out_boxes[output]

    def dst_box(self, item: int, index: int) -> int:
        it = self.items[item]
        return it.box if it.level is None else it.level.items[it.level.in_items[index]].box


def _build(graph: Graph, opts: dict, boxes: list, models: tuple = (), used: frozenset = frozenset(),
           label: str = "") -> _Level:
    """``graph`` laid out in flow coordinates, its nested models too if expanded. For a nested
    graph: ``models`` the names of the models it is in, ``used`` the outputs read outside (they
    leave its frame by its last rank), ``label`` its frame's."""
    level, item_of, pairs, lr = _Level(), {}, set(), opts["rankdir"] in ("LR", "RL")
    nodes = [t.node for t in graph.inputs] + list(graph.nodes)
    read = {id(t) for node in nodes for t in node.inputs} | {id(graph.outputs[k]) for k in used}
    for node in nodes:
        layer = node.layer
        if opts["expand_nested"] and isinstance(layer, Model):
            child = _build(layer.graph, opts, boxes, (*models, layer.name),
                           frozenset(k for k, t in enumerate(node.outputs) if id(t) in read),
                           f"{layer.name} ({_kind(layer)})")
            item = _Item("block", child.size[0] + 2 * _FRAME_PAD, child.size[1] + 2 * _FRAME_PAD, level=child)
        else:
            lines = _label(node, opts)
            w = max([_width(lines[0], _HEAD, True), *(_width(s, _BODY) for s in lines[1:])]) + 2 * _PAD_X
            h = _HEAD_H + (len(lines) - 1) * _BODY * _LINE + (_PAD_Y if len(lines) > 1 else 0)
            module = "InputLayer" if isinstance(layer, InputLayer) else "Model" if isinstance(layer, Model) \
                else type(layer).__module__.rsplit(".", 1)[-1]
            boxes.append(Box(layer.name, _kind(layer), tuple(lines), 0.0, 0.0, w, h, models,
                             _COLOURS.get(module, "#212121")))
            item = _Item("box", w if lr else h, h if lr else w, box=len(boxes) - 1)
        rank = max((level.items[item_of[id(t.node)]].rank + 1 for t in node.inputs), default=0)
        item_of[id(node)] = dst = level.add(item, rank)  # (the longest path from the inputs)
        for j, t in enumerate(node.inputs):
            src = item_of[id(t.node)]
            pair = (level.src_box(src, t.index), level.dst_box(dst, j))
            if pair not in pairs:  # one arrow per pair of boxes (a node reading a tensor twice gets one)
                pairs.add(pair)
                level.edges.append((src, t.index, dst, j, []))
    level.in_items = [item_of[id(t.node)] for t in graph.inputs]
    level.out_boxes = [level.src_box(item_of[id(t.node)], t.index) for t in graph.outputs]
    if label:  # a frame's label: first on the first rank, beside the inputs, where no edge passes
        size = (_HEAD * _LINE, _width(label, _HEAD, True))
        level.label = (label, level.add(_Item("label", *(size[::-1] if lr else size))))
    else:  # the outer graph: an input goes just before its first reader (inside a frame, on top)
        for i in level.in_items:
            level.items[i].rank = min((level.items[d].rank - 1 for s, _, d, _, _ in level.edges if s == i), default=0)
    for src, _, dst, _, slots in level.edges:
        slots += level.chain(src, range(level.items[src].rank + 1, level.items[dst].rank))
        level.links.append((slots[-1] if slots else src, dst))
    last = max(it.rank for it in level.items)
    for t in (graph.outputs[k] for k in sorted(used)):
        src, box = item_of[id(t.node)], level.src_box(item_of[id(t.node)], t.index)
        if box not in level.exits:
            level.exits[box] = (src, t.index, level.chain(src, range(level.items[src].rank + 1, last + 1)))
    _arrange(level)
    return level


def _crossings(level: _Level, pos: list[int]) -> int:
    """How many pairs of links between the same two ranks cross, for the order ``pos``."""
    by_rank: dict[int, list[tuple[int, int]]] = {}
    for u, v in level.links:
        by_rank.setdefault(level.items[u].rank, []).append((pos[u], pos[v]))
    return sum((a1 - a2) * (b1 - b2) < 0 for pairs in by_rank.values()
               for i, (a1, b1) in enumerate(pairs) for a2, b2 in pairs[i + 1:])


def _fit(want: list[float], gaps: list[float], weights: list[float]) -> list[float]:
    """The positions nearest ``want`` (weighted least squares) that keep their order with at least
    ``gaps[i]`` between positions i and i + 1: isotonic regression (pool adjacent violators)."""
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    pools: list[list[float]] = []  # [weighted sum, weight, count]
    for w, o, k in zip(want, offsets, weights):
        pools.append([(w - o) * k, k, 1])
        while len(pools) > 1 and pools[-2][0] / pools[-2][1] > pools[-1][0] / pools[-1][1]:
            s, k, n = pools.pop()
            pools[-1] = [pools[-1][0] + s, pools[-1][1] + k, pools[-1][2] + n]
    return [p[0] / p[1] + offsets[i] for i, p in enumerate(p for p in pools for _ in range(int(p[2])))]


def _arrange(level: _Level) -> None:
    """Order each rank (barycentre sweeps, keeping the order with the fewest crossings), place the
    items across (least squares), and size the ranks along the flow."""
    items = level.items
    ranks: list[list[int]] = [[] for _ in range(max(it.rank for it in items) + 1)]
    for i, it in enumerate(items):
        ranks[it.rank].append(i)
    ranks[0].sort(key=lambda i: items[i].kind != "label")  # a frame's label first, and there it stays
    near: list[list[tuple[int, float]]] = [[] for _ in items]  # neighbours, with the links' weights
    for u, v in level.links:
        w = (1.0, 2.0, 8.0)[(items[u].kind == "slot") + (items[v].kind == "slot")]  # (long edges straight)
        near[u].append((v, w))
        near[v].append((u, w))
    pos = {i: k for rank in ranks for k, i in enumerate(rank)}
    best, fewest = [list(r) for r in ranks], _crossings(level, pos)
    for sweep in range(6):
        for rank in ranks[1:] if sweep % 2 == 0 else ranks[-2::-1]:  # down, then up
            key = {}
            for i in rank:
                side = [pos[n] for n, _ in near[i] if (items[n].rank < items[i].rank) == (sweep % 2 == 0)]
                key[i] = -1.0 if items[i].kind == "label" else sum(side) / len(side) if side else pos[i]
            rank.sort(key=key.__getitem__)
            pos.update((i, k) for k, i in enumerate(rank))
        if (count := _crossings(level, pos)) < fewest:
            best, fewest = [list(r) for r in ranks], count

    def gaps(rank):
        return [(items[a].across + items[b].across) / 2 + (_SLOT_GAP if "slot" in (items[a].kind, items[b].kind)
                                                           else _BOX_GAP) for a, b in zip(rank, rank[1:])]

    # across: the least squares of the links' slants, solved one rank at a time until nothing moves
    # (the first sweep down from the upper neighbours alone)
    for sweep in range(1000):
        moved = 0.0
        for rank in best if sweep % 2 == 0 else best[::-1]:
            want, weights = [], []
            for i in rank:
                links = [(n, w) for n, w in near[i] if sweep or items[n].rank < items[i].rank]
                total = sum(w for _, w in links)
                want.append(sum(items[n].x * w for n, w in links) / total if total else items[i].x)
                weights.append(total or 1e-3)
            for i, x in zip(rank, _fit(want, gaps(rank), weights)):
                moved, items[i].x = max(moved, abs(x - items[i].x)), x
        if sweep and moved < 0.05:
            break
    left = min(it.x - it.across / 2 for it in items)
    start = 0.0
    for rank in best:
        thick = max(items[i].along for i in rank)
        level.bands.append((start, start + thick))
        start += thick + _RANK_GAP
    level.size = (level.bands[-1][1], max(it.x + it.across / 2 for it in items) - left)
    for it in items:
        it.x -= left


def _place(level: _Level, a0: float, c0: float, routes: list, frames: list, at: dict) -> None:
    """Give the items of ``level`` (its content's corner at a0, c0) and of its blocks their absolute
    corners, and collect the frames, the boxes' items (``at``) and the edges' runs (across, along
    start, along end): each straight, from the source box to the destination box."""
    level.bands = [(a0 + s, a0 + e) for s, e in level.bands]
    for it in level.items:
        s, e = level.bands[it.rank]
        it.a, it.c = s + (e - s - it.along) / 2, c0 + it.x - it.across / 2
        if it.level is not None:
            frames.append((it.level.label[0], it, it.level.items[it.level.label[1]]))
            _place(it.level, it.a + _FRAME_PAD, it.c + _FRAME_PAD, routes, frames, at)
        elif it.box >= 0:
            at[it.box] = it
    for src, out, dst, j, slots in level.edges:
        it = level.items[dst]
        end = it if it.level is None else it.level.items[it.level.in_items[j]]  # into a frame: its input's box
        runs = [*_runs_from(level, src, out), *_slot_runs(level, slots),
                [end.c + end.across / 2, level.bands[it.rank][0], end.a]]
        routes.append((level.src_box(src, out), level.dst_box(dst, j), runs))


def _runs_from(level: _Level, item: int, output: int) -> list[list[float]]:
    """The runs from the box making ``output`` of ``item`` to the end of the item's rank."""
    it = level.items[item]
    if it.level is None:
        runs = [[it.c + it.across / 2, it.a + it.along, 0.0]]
    else:  # out of a frame: from the box making that output, through the slots to the frame's last rank
        src, out, slots = it.level.exits[it.level.out_boxes[output]]
        runs = _runs_from(it.level, src, out) + _slot_runs(it.level, slots)
    runs[-1][2] = level.bands[it.rank][1]
    return runs


def _slot_runs(level: _Level, slots: list[int]) -> list[list[float]]:
    return [[level.items[s].c, *level.bands[level.items[s].rank]] for s in slots]


def _spread(routes: list, at: dict) -> None:
    """Spread the arrows leaving (entering) each box across its side, in the order of where they go
    (come from), so that they do not all meet at one point."""
    for end, near, key in ((0, 1, 0), (-1, -2, 1)):
        by_box: dict[int, list] = {}
        for route in routes:
            by_box.setdefault(route[key], []).append(route[2])
        for box, runs in by_box.items():
            runs.sort(key=lambda rs: rs[near][0])
            step = min(16.0, 0.7 * at[box].across / max(1, len(runs) - 1))
            for k, rs in enumerate(runs):
                rs[end][0] = at[box].c + at[box].across / 2 + (k - (len(runs) - 1) / 2) * step


def layout(model, show_shapes: bool = False, show_dtype: bool = False, show_layer_names: bool = False,
           rankdir: str = "TB", expand_nested: bool = False, show_layer_activations: bool = False,
           show_trainable: bool = False) -> Layout:
    """Where :func:`plot_model` draws each box, arrow and frame (the same arguments, less the file
    and the dpi): a :class:`Layout` in points, y up, no two boxes overlapping."""
    opts = _check(model, rankdir, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                  expand_nested=expand_nested, show_layer_activations=show_layer_activations,
                  show_trainable=show_trainable)
    boxes: list[Box] = []
    top = _build(model.graph, opts, boxes)
    routes, frames, at = [], [], {}
    _place(top, 0.0, 0.0, routes, frames, at)
    _spread(routes, at)
    title = f"{model.name} ({_kind(model)})"
    lr = rankdir in ("LR", "RL")
    content, height = top.size[::-1] if not lr else top.size
    width = max(content, _width(title, _TITLE, True))

    def point(a: float, c: float) -> tuple[float, float]:
        a = top.size[0] - a if rankdir in ("BT", "RL") else a
        x, y = (a, c) if lr else (c, a)
        return _MARGIN + (width - content) / 2 + x, _MARGIN + height - y

    def rect(it: _Item) -> tuple[float, float, float, float]:
        (x1, y1), (x2, y2) = point(it.a, it.c), point(it.a + it.along, it.c + it.across)
        return min(x1, x2), min(y1, y2), abs(x2 - x1), abs(y2 - y1)

    return Layout(title, rankdir, tuple(b._replace(**dict(zip("xywh", rect(at[i])))) for i, b in enumerate(boxes)),
                  tuple(Edge(s, d, tuple(point(a, r[0]) for r in runs for a in r[1:])) for s, d, runs in routes),
                  tuple(Frame(label, *rect(frame), *rect(text)[:2]) for label, frame, text in frames),
                  width + 2 * _MARGIN, height + 2 * _MARGIN + 2 * _TITLE)


def _check(model, rankdir, **flags) -> dict:
    if not isinstance(model, Model):
        raise TypeError(f"plot_model: expected an npae Model or Sequential, got {type(model).__name__}")
    if not isinstance(model.graph, Graph):  # (an unbuilt model raises here, saying how to build it)
        raise TypeError(f"plot_model: {model.name} has no graph to draw")
    for key, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"plot_model: {key} must be True or False, got {value!r}")
    if not isinstance(rankdir, str) or rankdir not in RANKDIRS:
        raise ValueError(f"plot_model: rankdir must be one of {', '.join(map(repr, RANKDIRS))} ('TB' top to bottom, "
                         f"'LR' left to right), got {rankdir!r}")
    return {**{k: bool(v) for k, v in flags.items()}, "rankdir": rankdir}


def plot_model(model, to_file="model.png", show_shapes: bool = False, show_dtype: bool = False,
               show_layer_names: bool = False, rankdir: str = "TB", expand_nested: bool = False, dpi: float = 200,
               show_layer_activations: bool = False, show_trainable: bool = False, splines: str = "ortho") -> str:
    """Draw ``model``'s graph to ``to_file``, as Keras's ``keras.utils.plot_model`` (matplotlib, no graphviz).

    Keras 3's arguments and defaults. One box per node of the graph, Inputs included, titled
    "name (ClassName)" with ``show_layer_names`` (the class alone without), with
    ``show_layer_activations`` the activation, with ``show_shapes`` the input and output shapes
    as "(None, 28, 28, 1)", with ``show_dtype`` the output dtype, with ``show_trainable``
    "Trainable" or "Non-trainable" (layers with weights); one arrow from each node to each node
    reading one of its outputs. ``rankdir``: "TB" (top to bottom),
    "LR" (left to right), or their mirrors "BT", "RL". A nested model is one box (its class
    Functional or Sequential) unless ``expand_nested``, which draws its nodes inside a labelled frame.

    The format follows the extension (png without one, as Keras): any matplotlib writes (png, pdf,
    svg, jpg, ...). ``dpi`` applies to raster formats (lowered if the image would exceed 30,000
    pixels a side). The file is written atomically. Returns its path (Keras returns an IPython image).
    ``splines`` (graphviz's edge style) is accepted at Keras's default "ortho" only: npae draws its
    own curved arrows.
    """
    from matplotlib.backend_bases import FigureCanvasBase
    from matplotlib.figure import Figure

    if not isinstance(to_file, (str, os.PathLike)) or not isinstance(os.fspath(to_file), str) or not str(to_file):
        raise TypeError(f"plot_model: to_file must be a file path (a str or a pathlib.Path), got {to_file!r}")
    path = os.fspath(to_file)
    fmt = os.path.splitext(path)[1][1:].lower() or "png"
    formats = sorted(set(FigureCanvasBase.get_supported_filetypes()) - {"pgf"})  # (pgf would need LaTeX)
    if fmt not in formats:
        raise ValueError(f"plot_model: cannot write a .{fmt} file ({path!r}); matplotlib writes "
                         f"{', '.join('.' + f for f in formats)} (not graphviz's formats such as .dot: npae draws "
                         "without graphviz)")
    if splines != "ortho":
        raise NotImplementedError(f"plot_model: splines={splines!r} is a graphviz argument npae does not support "
                                  "(only splines='ortho'): npae draws with matplotlib")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 0 < dpi < 10000:
        raise ValueError(f"plot_model: dpi must be a positive number (dots per inch), got {dpi!r}")
    lay = layout(model, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                 rankdir=rankdir, expand_nested=expand_nested, show_layer_activations=show_layer_activations,
                 show_trainable=show_trainable)
    fig = Figure(figsize=(lay.width / 72, lay.height / 72))
    _draw(fig, lay)
    dpi = min(float(dpi), _MAX_PIXELS * 72 / max(lay.width, lay.height))
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, facecolor="white"))
    return path


def _draw(fig, lay: Layout) -> None:
    from matplotlib.patches import FancyArrowPatch, Rectangle
    from matplotlib.path import Path

    ax = fig.add_axes((0, 0, 1, 1), xlim=(0, lay.width), ylim=(0, lay.height))
    ax.axis("off")

    def text(x, y, s, size, **kw):
        ax.text(x, y, s.replace("$", r"\$"), fontsize=size, family=_FONT, va="baseline", **kw)

    text(lay.width / 2, lay.height - _MARGIN - _TITLE, lay.title, _TITLE, ha="center", weight="bold")
    for f in lay.frames:
        ax.add_patch(Rectangle((f.x, f.y), f.w, f.h, fc="#f5f7fa", ec="#607d8b", ls=(0, (5, 3)), zorder=0))
        text(f.text_x, f.text_y + _HEAD * 0.4, f.label, _HEAD, weight="bold", color="#37474f", zorder=1)
    for e in lay.edges:
        verts, codes = [e.points[0]], [Path.MOVETO]
        for k in range(0, len(e.points), 2):
            (x0, y0), (x1, y1) = e.points[k], e.points[k + 1]
            if k:  # a curve across the gap between two ranks, leaving and arriving along the flow
                (px, py), mx, my = verts[-1], (verts[-1][0] + x0) / 2, (verts[-1][1] + y0) / 2
                verts += [(px, my), (x0, my)] if lay.rankdir in ("TB", "BT") else [(mx, py), (mx, y0)]
                verts.append((x0, y0))
                codes += [Path.CURVE4] * 3
            if abs(x1 - x0) + abs(y1 - y0) > 0.1:  # (a run of no length would turn the arrow head)
                verts.append((x1, y1))
                codes.append(Path.LINETO)
        ax.add_patch(FancyArrowPatch(path=Path(verts, codes), arrowstyle="-|>", mutation_scale=11, lw=1.3,
                                     color="#455a64", shrinkA=0, shrinkB=0, zorder=2))
    for b in lay.boxes:
        top = b.y + b.h
        ax.add_patch(Rectangle((b.x, b.y), b.w, b.h, fc="white", ec="#263238", zorder=3))
        ax.add_patch(Rectangle((b.x, top - _HEAD_H), b.w, _HEAD_H, fc=b.colour, ec="#263238", zorder=3))
        text(b.x + b.w / 2, top - _PAD_Y - _HEAD * 1.05, b.lines[0], _HEAD, ha="center", color="white",
             weight="bold", zorder=4)
        for k, line in enumerate(b.lines[1:]):
            colour = {"Trainable": "#2e7d32", "Non-trainable": "#c62828"}.get(line)
            text(b.x + _PAD_X, top - _HEAD_H - _PAD_Y - _BODY * (_LINE * k + 1.05), line, _BODY,
                 color=colour or "#212121", weight="bold" if colour else "normal", zorder=4)
