"""plot_model, Keras's ``keras.utils.plot_model`` drawn with matplotlib: the picture is written, and
its layout (``npae.modelplot.layout``) has every node once, every edge once, no two boxes
overlapping and no arrow through a box, for chains, skips, several inputs and outputs, shared
layers and nested models, drawn whole or expanded, in every direction."""

import itertools
import os

import matplotlib.image as mpimg
import pytest

import npae
from npae.layers import Add, BatchNormalization, Concatenate, Dense, Input
from npae.modelplot import layout, plot_model
from npae.models import Model, Sequential

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    return os.path.isfile(path) and open(path, "rb").read(8) == PNG_MAGIC


def not_blank(path) -> bool:
    return float(mpimg.imread(path)[..., :3].std()) > 0.02


def two_in_two_out():
    a, b = Input(shape=(16,), name="features"), Input(shape=(4,), name="metadata")
    joined = Concatenate(name="join")([Dense(32, activation="relu", name="trunk")(a),
                                       Dense(8, activation="relu", name="meta_dense")(b)])
    head = Dense(8, activation="tanh", name="meta_head")(joined)
    return Model([a, b], [Dense(16, name="reconstruction")(joined), Dense(4, name="meta_out")(head)],
                 name="two_in_two_out")


def vae_like():
    """Model(x, decoder(encoder(x)[2])) with a 3-output encoder."""
    x = Input(shape=(784,), name="vae_input")
    h = Dense(64, activation="relu", name="enc_hidden")(x)
    mean, log_var = Dense(2, name="z_mean")(h), Dense(2, name="z_log_var")(h)
    encoder = Model(x, [mean, log_var, Add(name="z")([mean, Dense(2, name="noise")(log_var)])], name="encoder")
    code = Input(shape=(2,), name="code")
    decoder = Model(code, Dense(784, activation="sigmoid", name="dec_out")(Dense(64, name="dec_hidden")(code)),
                    name="decoder")
    image = Input(shape=(784,), name="image")
    return Model(image, decoder(encoder(image)[2]), name="vae")


def sequential_of_sequentials():
    encoder = Sequential([Input(shape=(784,), name="seq_in"), Dense(32, activation="relu", name="s_enc")],
                         name="seq_encoder")
    decoder = Sequential([Dense(784, activation="sigmoid", name="s_dec")], name="seq_decoder")
    return Sequential([encoder, decoder], name="seq_autoencoder")


def shared_and_late():
    """A layer applied twice, a merge reading one tensor twice, an input read only at the end."""
    a, late = Input(shape=(8,), name="a"), Input(shape=(8,), name="late")
    shared = Dense(8, name="shared")
    h = Add(name="twice")([shared(shared(a))] * 2)
    for i in range(3):
        h = Dense(8, name=f"deep_{i}")(h)
    return Model([a, late], Concatenate(name="join_late")([h, late]), name="shared_and_late")


def siamese():
    """One nested model (itself holding a Sequential) called on two inputs."""
    inner = Sequential([Input(shape=(8,), name="emb_in"), Dense(4, name="emb")], name="embed")
    x = Input(shape=(8,), name="tower_in")
    tower = Model(x, inner(Dense(8, name="pre")(x)), name="tower")
    left, right = Input(shape=(8,), name="left"), Input(shape=(8,), name="right")
    return Model([left, right], Concatenate(name="pair")([tower(left), tower(right)]), name="siamese")


MODELS = {"unet": lambda: npae.autoencoders.unet(seed=0)[0],
          "convolutional": lambda: npae.autoencoders.convolutional(seed=0)[0],
          "two_in_two_out": two_in_two_out, "vae": vae_like, "seq_of_seqs": sequential_of_sequentials,
          "shared_and_late": shared_and_late, "siamese": siamese}


def overlap(p, q) -> bool:
    return p.x < q.x + q.w and q.x < p.x + p.w and p.y < q.y + q.h and q.y < p.y + p.h


def inside(box, frame) -> bool:
    return frame.x <= box.x and box.x + box.w <= frame.x + frame.w and frame.y <= box.y and \
        box.y + box.h <= frame.y + frame.h


def on_border(point, box) -> bool:
    x, y = point
    within = box.x - 1e-6 <= x <= box.x + box.w + 1e-6 and box.y - 1e-6 <= y <= box.y + box.h + 1e-6
    return within and min(abs(x - box.x), abs(x - box.x - box.w), abs(y - box.y), abs(y - box.y - box.h)) < 1e-6


def check_layout(lay):
    """No two boxes overlap; a frame holds its model's boxes and cuts no other; every arrow leaves
    its source's border and ends on its destination's, its straight runs through no box; all in
    the figure."""
    for p, q in itertools.combinations(lay.boxes, 2):
        assert not overlap(p, q), f"{p.name} overlaps {q.name}"
    for box in lay.boxes:
        around = [f.label.split(" (")[0] for f in lay.frames if inside(box, f)]
        assert sorted(around) == sorted(box.models), box.name
        assert sum(overlap(box, f) for f in lay.frames) == len(around), f"a frame cuts {box.name}"
    for edge in lay.edges:
        assert on_border(edge.points[0], lay.boxes[edge.src]) and on_border(edge.points[-1], lay.boxes[edge.dst])
        for (x0, y0), (x1, y1) in zip(edge.points[::2], edge.points[1::2]):
            assert x0 == pytest.approx(x1) or y0 == pytest.approx(y1)  # along the flow
            for box in lay.boxes:
                assert not (box.x + 0.5 < max(x0, x1) and min(x0, x1) < box.x + box.w - 0.5 and
                            box.y + 0.5 < max(y0, y1) and min(y0, y1) < box.y + box.h - 0.5), \
                    f"{lay.boxes[edge.src].name} -> {lay.boxes[edge.dst].name} runs through {box.name}"
    for box in lay.boxes:
        assert 0 < box.x and box.x + box.w < lay.width and 0 < box.y and box.y + box.h < lay.height


def names(lay, edges=True):
    boxes = [b.name for b in lay.boxes]
    return sorted((boxes[e.src], boxes[e.dst]) for e in lay.edges) if edges else sorted(boxes)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("rankdir", ["TB", "LR", "BT", "RL"])
def test_no_two_boxes_overlap_and_no_arrow_crosses_a_box(name, rankdir):
    model = MODELS[name]()
    for expand, shapes in itertools.product([False, True], repeat=2):
        lay = layout(model, show_shapes=shapes, expand_nested=expand, rankdir=rankdir, show_dtype=shapes,
                     show_layer_activations=shapes, show_trainable=True)
        check_layout(lay)
        assert lay == layout(model, show_shapes=shapes, expand_nested=expand, rankdir=rankdir, show_dtype=shapes,
                             show_layer_activations=shapes, show_trainable=True)  # the same every time


def test_unet_png_is_written_and_sized_to_the_graph(tmp_path):
    model = MODELS["unet"]()
    path = plot_model(model, tmp_path / "unet.png", show_shapes=True, dpi=100)
    assert path == str(tmp_path / "unet.png") and isinstance(path, str)
    assert is_png(path) and not_blank(path)
    assert os.listdir(tmp_path) == ["unet.png"]  # written atomically: no temporary file left
    lay = layout(model, show_shapes=True)
    height, width = mpimg.imread(path).shape[:2]
    assert (width, height) == (pytest.approx(lay.width * 100 / 72, abs=2), pytest.approx(lay.height * 100 / 72, abs=2))
    assert height > 2 * width  # a deep graph, drawn top to bottom


def test_every_node_and_edge_once():
    model = MODELS["unet"]()
    lay = layout(model)
    graph = model.graph
    assert names(lay, edges=False) == sorted(layer.name for layer in model.layers)  # 13: the input too
    expected = sorted({(t.node.layer.name, node.layer.name) for node in graph.nodes for t in node.inputs})
    assert names(lay) == expected and len(expected) == 14  # Add and Concatenate each get two arrows
    assert [len(b.lines) for b in lay.boxes if b.kind in ("Add", "Concatenate")] == [1, 1]  # titles alone
    lay = layout(shared_and_late())
    assert names(lay, edges=False).count("shared") == 2  # one box per node: a layer used twice, twice
    assert names(lay).count(("shared", "twice")) == 1  # Add()([h, h]): one arrow
    assert len(lay.boxes) == 9 and len(lay.edges) == 8
    by_name = {b.name: b for b in lay.boxes}
    assert by_name["late"].y == pytest.approx(by_name["deep_2"].y + (by_name["deep_2"].h - by_name["late"].h) / 2)


def test_several_inputs_and_outputs():
    lay = layout(two_in_two_out(), show_shapes=True)
    assert names(lay) == sorted([("features", "trunk"), ("metadata", "meta_dense"), ("trunk", "join"),
                                 ("meta_dense", "join"), ("join", "reconstruction"), ("join", "meta_head"),
                                 ("meta_head", "meta_out")])
    boxes = {b.name: b for b in lay.boxes}
    assert boxes["features"].y == boxes["metadata"].y  # both inputs on the first rank
    assert boxes["join"].lines[1:] == ("Input shape: [(None, 32), (None, 8)]", "Output shape: (None, 40)")


def test_labels_follow_the_show_arguments():
    model = MODELS["unet"]()
    assert {b.lines for b in layout(model).boxes if b.kind == "Conv2D"} == {("Conv2D",)}  # Keras 3: no names
    boxes = {b.kind: b for b in layout(model, show_shapes=True, show_layer_names=True).boxes}  # (the last of each)
    assert boxes["InputLayer"].lines == ("unet_input (InputLayer)", "Output shape: (None, 28, 28, 1)")
    conv = next(b for b in layout(model, show_shapes=True, show_layer_names=True).boxes if b.kind == "Conv2D")
    assert conv.lines == (f"{conv.name} (Conv2D)", "Input shape: (None, 28, 28, 1)",
                          "Output shape: (None, 28, 28, 32)")
    assert boxes["Concatenate"].lines[1:] == ("Input shape: [(None, 28, 28, 32),", "    (None, 28, 28, 32)]",
                                              "Output shape: (None, 28, 28, 64)")  # wrapped between shapes
    everything = layout(model, show_shapes=True, show_dtype=True, show_layer_activations=True, show_trainable=True,
                        show_layer_names=True)
    conv = next(b for b in everything.boxes if b.kind == "Conv2D")
    assert conv.lines[1] == "Activation: relu" and conv.lines[-2:] == ("Output dtype: float32", "Trainable")
    pool = next(b for b in everything.boxes if b.kind == "MaxPooling2D")
    assert "Trainable" not in pool.lines and "Output dtype: float32" in pool.lines  # no weights: not said
    assert [b.lines for b in layout(model, show_layer_names=False).boxes][:2] == [("InputLayer",), ("Conv2D",)]
    frozen = Sequential([Input(shape=(5,)), Dense(3, name="frozen_dense", trainable=False),
                         BatchNormalization(name="bn")], name="frozen")
    lines = {b.name: b.lines for b in layout(frozen, show_trainable=True).boxes}
    assert lines["frozen_dense"][-1] == "Non-trainable" and lines["bn"][-1] == "Trainable"
    add = [next(b for b in layout(model, **kw).boxes if b.kind == "Add") for kw in ({}, {"show_shapes": True})]
    assert add[1].w > add[0].w + 40 and add[1].h > add[0].h + 20  # boxes are sized to their text


def test_nested_models_whole_or_expanded(tmp_path):
    model = vae_like()
    whole = layout(model, show_shapes=True)
    assert [(b.name, b.kind) for b in whole.boxes] == [("image", "InputLayer"), ("encoder", "Functional"),
                                                        ("decoder", "Functional")]
    assert names(whole) == [("encoder", "decoder"), ("image", "encoder")] and not whole.frames
    assert whole.boxes[1].lines[-2:] == ("Output shape: [(None, 2), (None, 2),", "    (None, 2)]")
    expanded = layout(model, expand_nested=True)
    assert len(expanded.boxes) == 10 and [f.label for f in expanded.frames] == ["encoder (Functional)",
                                                                             "decoder (Functional)"]
    assert names(expanded) == sorted([("image", "vae_input"), ("vae_input", "enc_hidden"), ("enc_hidden", "z_mean"),
                                      ("enc_hidden", "z_log_var"), ("z_log_var", "noise"), ("z_mean", "z"),
                                      ("noise", "z"), ("z", "code"), ("code", "dec_hidden"),
                                      ("dec_hidden", "dec_out")])  # into a frame: to its Input; out: from the box
    assert {b.name: b.models for b in expanded.boxes}["z"] == ("encoder",)
    check_layout(expanded)
    seqs = layout(sequential_of_sequentials(), expand_nested=True)
    assert [f.label for f in seqs.frames] == ["seq_encoder (Sequential)", "seq_decoder (Sequential)"]
    assert ("s_enc", "s_dec") not in names(seqs) and len(seqs.boxes) == 5 and len(seqs.edges) == 4
    deep = layout(siamese(), expand_nested=True)  # one model called twice: drawn twice, nested two deep
    assert [f.label for f in deep.frames] == ["tower (Functional)", "embed (Sequential)"] * 2
    assert sum(b.models == ("tower", "embed") for b in deep.boxes) == 4 and len(deep.edges) == 10
    path = plot_model(model, tmp_path / "vae.png", expand_nested=True, show_shapes=True, dpi=72)
    assert is_png(path) and not_blank(path)


def test_top_to_bottom_or_left_to_right():
    model = MODELS["convolutional"]()
    for rankdir, after in [("TB", lambda s, d: d.y + d.h < s.y), ("BT", lambda s, d: d.y > s.y + s.h),
                           ("LR", lambda s, d: d.x > s.x + s.w), ("RL", lambda s, d: d.x + d.w < s.x)]:
        lay = layout(model, rankdir=rankdir)
        assert lay.rankdir == rankdir and all(after(lay.boxes[e.src], lay.boxes[e.dst]) for e in lay.edges)
    tb, lr = layout(model), layout(model, rankdir="LR")
    assert tb.height > 3 * tb.width and lr.width > 3 * lr.height  # a chain: one box a rank
    assert len({round(b.x + b.w / 2, 6) for b in tb.boxes}) == 1  # and straight


@pytest.mark.parametrize("suffix, magic", [(".pdf", b"%PDF"), (".svg", b"<?xml"), ("", PNG_MAGIC)])
def test_the_extension_gives_the_format(tmp_path, suffix, magic):
    path = plot_model(two_in_two_out(), str(tmp_path / f"model{suffix}"))
    assert open(path, "rb").read(len(magic)) == magic


def test_bad_arguments_are_clear_errors(tmp_path):
    model = two_in_two_out()
    target = tmp_path / "model.png"
    with pytest.raises(ValueError, match=r"rankdir must be one of 'TB', 'LR'.*got 'XY'"):
        plot_model(model, target, rankdir="XY")
    with pytest.raises(ValueError, match="rankdir"):
        layout(model, rankdir="tb")
    with pytest.raises(ValueError, match=r"cannot write a \.dot file.*\.png.*graphviz"):
        plot_model(model, tmp_path / "model.dot")
    with pytest.raises(TypeError, match="to_file must be a file path"):
        plot_model(model, 42)
    for dpi in (0, -5, True, "200", float("nan")):
        with pytest.raises(ValueError, match="dpi must be a positive number"):
            plot_model(model, target, dpi=dpi)
    with pytest.raises(TypeError, match="show_shapes must be True or False"):
        plot_model(model, target, show_shapes="yes")
    with pytest.raises(TypeError, match="expected an npae Model"):
        plot_model(Dense(3), target)
    with pytest.raises(NotImplementedError, match="splines='curved' is a graphviz argument"):
        plot_model(MODELS["unet"](), target, splines="curved")
    with pytest.raises(ValueError, match="not been built"):
        plot_model(Sequential([Dense(3)]), target)
    assert not os.listdir(tmp_path)  # nothing written


def test_a_long_model_stays_within_the_image_size_limit(tmp_path):
    x = h = Input(shape=(4,), name="long_in")
    for i in range(60):
        h = Dense(4, name=f"layer_{i}")(h)
    model = Model(x, h, name="long")
    assert layout(model, rankdir="LR", show_layer_names=True).width * 400 / 72 > 40000  # more than Agg can write
    path = plot_model(model, tmp_path / "long.png", rankdir="LR", dpi=400, show_layer_names=True)  # dpi lowered
    assert 29000 < mpimg.imread(path).shape[1] <= 30000 and not_blank(path)
