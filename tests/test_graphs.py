"""Graphs, not chains: models with merges, forks, several inputs and outputs, shared layers and
nested models run the same numbers on both paths (1e-10 in float64), pass float64 gradient
checks, and follow Keras's rules for what a model is."""

import copy

import numpy as np
import pytest

import npae
from npae.gradcheck import check_model
from npae.layers import (
    Add,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Conv2DTranspose,
    Dense,
    Flatten,
    Input,
    MaxPooling2D,
    Multiply,
    Reshape,
    Subtract,
    UpSampling2D,
)
from npae.models import Model, Sequential


def two_in_two_out():
    """Two inputs, two outputs; a layer applied twice; a tensor read by three layers; a merge of
    three; an output (sigmoid + cross-entropy) and an Add output."""
    x, z = Input((6,), name="x"), Input((3,), name="z")
    h = Dense(5, activation="relu", name="h")(x)
    shared = Dense(5, activation="tanh", name="shared")
    a, b = shared(h), shared(Dense(5, name="zh")(z))
    out1 = Dense(4, activation="sigmoid", name="out1")(Concatenate(name="cat")([a, b, h]))
    out2 = Add(name="out2")([a, b])
    model = Model([x, z], [out1, out2])
    model.compile(optimizer="adam", loss=["binary_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                  metrics=[["mae"], None])
    return model


def unet_like():
    """A small U-Net: conv, pool, conv, strided Conv2DTranspose added to the conv before the pool,
    concatenated with the input's features, a sigmoid conv."""
    x = Input((8, 8, 1), name="img")
    c1 = Conv2D(3, 3, padding="same", activation="relu")(x)
    c2 = Conv2D(4, 3, padding="same", activation="relu")(MaxPooling2D(2)(c1))
    up = Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu")(c2)
    merged = Concatenate()([Add()([up, c1]), x])
    out = Conv2D(1, 3, padding="same", activation="sigmoid")(merged)
    model = Model(x, out)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def nested():
    """An encoder with three outputs, a decoder, and an autoencoder calling both (``encoder(x)[2]``),
    with a BatchNormalization inside the encoder."""
    x = Input((10,), name="enc_in")
    h = BatchNormalization(name="bn")(Dense(6, activation="relu", name="e1")(x))
    z_mean, z_log_var = Dense(2, name="z_mean")(h), Dense(2, name="z_log_var")(h)
    z = Add(name="z")([z_mean, z_log_var])
    encoder = Model(x, [z_mean, z_log_var, z], name="encoder")
    code = Input((2,), name="code")
    decoder = Model(code, Dense(10, activation="sigmoid", name="d1")(Dense(6, activation="relu", name="d0")(code)),
                    name="decoder")
    inputs = Input((10,), name="ae_in")
    model = Model(inputs, decoder(encoder(inputs)[2]), name="ae")
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    return model


def vae_like():
    """An output that is also read inside the model (z_mean: a loss on it and the decoder reads it),
    a Subtract and a Multiply, a Sequential inside, and dict outputs."""
    x = Input((4, 3), name="seq")
    flat = Flatten()(x)
    z_mean = Dense(3, name="z_mean")(flat)
    gate = Dense(3, activation="sigmoid", name="gate")(flat)
    inner = Sequential([Dense(5, activation="elu"), Dense(12, activation="sigmoid"), Reshape((4, 3))], name="inner")
    recon = inner(Multiply()([Subtract()([z_mean, gate]), gate]))
    model = Model(x, {"recon": recon, "z": z_mean})
    model.compile(optimizer="sgd", loss={"recon": "mse", "z": "mae"}, loss_weights={"recon": 2.0, "z": 0.25},
                  metrics={"recon": ["mse"]})
    return model


def pooled_branches():
    """One conv read by a pooling, an upsampling and a Concatenate (no fusion may hide it); a
    layer applied at two depths."""
    x = Input((6, 6, 2), name="im")
    c = Conv2D(4, 3, padding="same", activation="relu", name="c")(x)
    back = UpSampling2D(2)(MaxPooling2D(2)(c))
    twice = Conv2D(4, 3, padding="same", activation="relu", name="twice")
    out = Conv2D(2, 1, activation="sigmoid", name="out")(Concatenate()([twice(twice(back)), c]))
    model = Model(x, out)
    model.compile(optimizer="adam", loss="mse")
    return model


BUILDERS = {"two_in_two_out": two_in_two_out, "unet_like": unet_like, "nested": nested, "vae_like": vae_like,
            "pooled_branches": pooled_branches}


def data_for(model, n=6, seed=0):
    """x and y as the model takes them (a list, a dict or one array), targets in (0, 1)."""
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(0.05, 0.95, (n, *t.shape[1:])) for t in model.inputs]
    ys = [rng.uniform(0.05, 0.95, (n, *t.shape[1:])) for t in model.outputs]
    x = xs[0] if len(xs) == 1 else xs
    y = dict(zip(model.output_names, ys)) if isinstance(model.output, dict) else ys[0] if len(ys) == 1 else ys
    return x, y


def built(name, jit, seed=0):
    npae.set_random_seed(seed)
    model = BUILDERS[name]().astype("float64")
    model.jit_compile = jit
    return model


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_both_paths_give_the_same_numbers_in_float64(name):
    ref, fast = built(name, False), built(name, True)
    x, y = data_for(ref)
    assert [w.tolist() for w in ref.get_weights()] == [w.tolist() for w in fast.get_weights()]
    for a, b in zip(np.atleast_1d(ref.evaluate(x, y, verbose=0)), np.atleast_1d(fast.evaluate(x, y, verbose=0))):
        assert abs(a - b) < 1e-10
    assert abs(ref.compute_gradients(x, y) - fast.compute_gradients(x, y)) < 1e-10
    assert len(ref.gradients()) == len(fast.gradients()) == len(ref.trainable_weights)
    for (key, g), f in zip(ref.gradients().items(), fast.gradients().values()):  # (auto names differ: by order)
        np.testing.assert_allclose(f, g, rtol=0, atol=1e-10, err_msg=key)
    assert any(np.abs(g).max() > 0 for g in ref.gradients().values())
    h_ref = ref.fit(x, y, epochs=3, batch_size=4, shuffle=False, verbose=0).history
    h_fast = fast.fit(x, y, epochs=3, batch_size=4, shuffle=False, verbose=0).history
    assert h_ref.keys() == h_fast.keys()
    for key in h_ref:
        np.testing.assert_allclose(h_fast[key], h_ref[key], rtol=0, atol=1e-10, err_msg=key)
    for a, b in zip(ref.get_weights(), fast.get_weights()):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-10)
    p_ref, p_fast = ref.predict(x, verbose=0), fast.predict(x, verbose=0)
    pairs = zip(p_ref.values(), p_fast.values()) if isinstance(p_ref, dict) else \
        zip(p_ref, p_fast) if isinstance(p_ref, list) else [(p_ref, p_fast)]
    for a, b in pairs:
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-10)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_float64_gradient_check_of_every_weight(name, jit):
    model = built(name, jit, seed=1)
    x, y = data_for(model, n=3, seed=1)
    report = check_model(model, x, y, mode="projection", n_projections=3, jit_compile=jit)
    assert report.passed, report.table()
    assert len(report.checks) == len(model.trainable_weights)
    assert sum(c.checked for c in report.checks) >= len(report.checks)


def test_a_wrong_backward_in_a_graph_is_caught_by_the_gradient_check():
    class HalfGradientAdd(Add):  # a merge whose backward hands its second input half the gradient
        def backward(self, dout, cache):
            dxs, grads = super().backward(dout, cache)
            return [dxs[0], 0.5 * dxs[1]], grads

    x = Input((4,))
    a, b = Dense(3, name="a")(x), Dense(3, name="b")(x)
    model = Model(x, Dense(2, name="out")(HalfGradientAdd()([a, b])))
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    data = np.random.default_rng(0).random((4, 4))
    report = check_model(model, data, data[:, :2], raise_on_failure=False)
    failed = {c.name for c in report.checks if not c.passed}
    assert failed == {"b/kernel", "b/bias"}


def test_a_tensor_read_twice_gets_the_sum_of_both_gradients():
    # y = W2 relu(W1 x) + W1 x: W1's gradient is the sum over both paths (checked against a hand sum)
    x = Input((3,))
    h = Dense(3, use_bias=False, name="w1")(x)
    out = Add()([Dense(3, use_bias=False, name="w2")(h), h])
    model = Model(x, out)
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    model.astype("float64")
    rng = np.random.default_rng(0)
    xv, yv = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    w1, w2 = model.get_weights()
    model.compute_gradients(xv, yv)
    hv = xv @ w1
    g = 2 * (hv @ w2 + hv - yv) / yv.size  # dL/dout of the mean squared error
    dh = g @ w2.T + g  # the two paths into h, summed
    np.testing.assert_allclose(model.gradients()["w1/kernel"], xv.T @ dh, rtol=1e-12)
    np.testing.assert_allclose(model.gradients()["w2/kernel"], hv.T @ g, rtol=1e-12)


def test_keras_layer_order_and_weight_order_of_a_graph():
    npae.set_random_seed(0)
    model = two_in_two_out()
    assert [layer.name for layer in model.layers] == ["x", "z", "h", "zh", "shared", "cat", "out1", "out2"]
    assert [w.shape for w in model.get_weights()] == [(6, 5), (5,), (3, 5), (5,), (5, 5), (5,), (15, 4), (4,)]
    assert model.count_params() == 6 * 5 + 5 + 3 * 5 + 5 + 5 * 5 + 5 + 15 * 4 + 4


# -- what is not a model ---------------------------------------------------------------------
def test_graphs_that_are_not_models_are_clear_errors():
    a, b = Input((3,), name="a"), Input((3,), name="b")
    with pytest.raises(ValueError, match="the input 'b' feeds nothing"):
        Model([a, b], Dense(1)(a))
    with pytest.raises(ValueError, match="needs the Input 'b', which is not among the model's inputs"):
        Model(a, Add()([Dense(3)(a), b]))
    with pytest.raises(ValueError, match="same tensor is given twice"):
        Model([a, a], Dense(1)(a))
    with pytest.raises(ValueError, match="is not an Input"):
        Model(Dense(3)(a), Dense(1)(a))
    with pytest.raises(TypeError, match="must be tensors from Input"):
        Model(a, np.zeros(3))
    named = Dense(2, name="twin")
    with pytest.raises(ValueError, match="two layers are named 'twin'"):
        Model(a, Dense(2, name="twin")(named(a)))


def test_merges_that_do_not_fit_name_both_shapes():
    a, b = Input((28, 28, 32)), Input((14, 14, 32))
    with pytest.raises(ValueError, match=r"incompatible shapes \(28, 28, 32\) and \(14, 14, 32\)"):
        Add()([a, b])
    with pytest.raises(ValueError, match=r"\(28, 28, 32\) and \(14, 14, 32\)"):
        Concatenate()([a, b])
    with pytest.raises(TypeError, match="takes one tensor, got a list of 2"):
        Dense(3)([a, b])
    with pytest.raises(TypeError, match="takes a list of tensors"):
        Add()(a)


def test_arithmetic_on_symbolic_tensors_points_to_writing_a_layer():
    x = Input((3,))
    h = Dense(3)(x)
    for attempt in (lambda: h * 2, lambda: 1.0 - h, lambda: np.exp(h), lambda: h[:, 0], lambda: -h):
        with pytest.raises(TypeError, match="no automatic differentiation.*forward.*backward"):
            attempt()


def test_a_keras_style_layer_with_call_says_what_npae_needs():
    class Scale(npae.layers.Layer):
        def call(self, x):
            return 2 * x

    with pytest.raises(NotImplementedError, match=r"defines Keras's call\(\).*forward\(x, training\)"):
        Scale()(np.ones((2, 3)))


def test_layer_input_and_output_as_keras():
    x = Input((4,), name="in4")
    d = Dense(3, name="d3")
    h = d(x)
    assert d.input is x and d.output is h
    model = Model(x, Dense(2)(h))
    encoder = Model(model.input, model.get_layer("d3").output)  # a Keras idiom: a sub-model by layer name
    assert encoder.output_shape == (None, 3)
    d(Input((4,)))
    with pytest.raises(AttributeError, match="called on 2 tensors"):
        _ = d.output


def test_the_planner_does_not_fuse_across_a_fork():
    npae.set_random_seed(0)
    model = pooled_branches()
    plan = model.path.plan("train")
    described = plan.describe()
    # conv "c" is read by the pooling and by the Concatenate: its pooling runs as a step of its own
    assert any(line.startswith("PoolStep(") for line in described)
    assert not any("pools" in line for line in described if line.startswith("ConvStep(c,"))
    assert len(plan.segments) > 1


def test_an_output_without_a_loss_gets_no_gradient_and_is_predicted():
    x = Input((4,))
    h = Dense(3, name="h")(x)
    side = Dense(2, name="side")(h)
    main = Dense(4, name="main")(h)
    for jit in (False, True):
        model = Model(x, [main, side])
        model.compile(optimizer="sgd", loss=["mse", None], jit_compile=jit)
        data = np.random.default_rng(0).random((5, 4)).astype(np.float32)
        before = model.get_layer("side").get_weights()
        hist = model.fit(data, [data, None], epochs=1, batch_size=5, verbose=0)
        assert list(hist.history) == ["loss"]  # (one output with a loss: Keras logs "loss" only)
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_layer("side").get_weights()))
        assert not np.any(model.gradients()["side/kernel"])
        main_out, side_out = model.predict(data, verbose=0)
        assert main_out.shape == (5, 4) and side_out.shape == (5, 2)


def test_two_threads_predict_a_graph_correctly():
    import threading

    npae.set_random_seed(0)
    model = unet_like()
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype(np.float32)
    want = model.predict(x, batch_size=8, verbose=0)
    got = [None, None]

    def run(i):
        got[i] = model.predict(x, batch_size=8, verbose=0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in got:
        np.testing.assert_array_equal(g, want)


def test_a_deep_copy_of_a_graph_trains_on_its_own():
    npae.set_random_seed(0)
    model = nested()
    clone = copy.deepcopy(model)
    x, y = data_for(model)
    before = model.get_weights()
    clone.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(before, clone.get_weights()))
