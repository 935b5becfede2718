"""Every layer passes the float64 gradient check over randomized configurations on the reference
path, and layers behave like Keras's: shapes, weight layouts, init, and clear errors."""

import numpy as np
import pytest

from npae import gradcheck, initializers, regularizers
from npae.layers import (
    Activation,
    Conv2D,
    Convolution2D,
    Dense,
    Flatten,
    Input,
    LeakyReLU,
    MaxPooling2D,
    ReLU,
    Reshape,
    Softmax,
    UpSampling2D,
)


def passes(layer, shape, seed=0):
    report = gradcheck.check_layer(layer, input_shape=shape, seed=seed)
    assert report.passed and all(report.invariants.values()), report.table()
    return report


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "elu", "softplus", "silu", "leaky_relu",
                                        "softmax"])
def test_dense_gradcheck(activation):
    rng = np.random.default_rng(0)
    for seed in range(3):
        passes(Dense(int(rng.integers(1, 6)), activation=activation), (int(rng.integers(1, 7)),), seed)


def test_dense_with_l1_activity_penalty_gradcheck():
    report = passes(Dense(5, activation="relu", activity_regularizer=regularizers.l1(0.3)), (4,))
    assert report.checks[0].checked > 0


def test_conv2d_gradcheck_random_configs():
    rng = np.random.default_rng(1)
    for seed in range(8):
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        padding = ["valid", "same"][seed % 2]
        h, w = int(rng.integers(kh, 8)), int(rng.integers(kw, 8))
        layer = Conv2D(int(rng.integers(1, 4)), (kh, kw), strides=(sh, sw), padding=padding,
                       activation=["linear", "relu", "sigmoid"][seed % 3])
        passes(layer, (h, w, int(rng.integers(1, 4))), seed)


def test_conv2d_same_with_uneven_padding_gradcheck():
    passes(Conv2D(2, (4, 4), padding="same"), (6, 5, 2))  # total pad 3: 1 before, 2 after
    passes(Conv2D(2, (2, 2), strides=2, padding="same"), (7, 7, 1))
    passes(Conv2D(3, (5, 5), strides=(2, 3), padding="same", activation="tanh"), (9, 8, 2))


@pytest.mark.parametrize("pool,strides,padding,shape", [
    ((2, 2), None, "valid", (6, 6, 2)), ((2, 2), None, "same", (7, 7, 2)), ((3, 3), (2, 2), "same", (7, 8, 1)),
    ((3, 2), (1, 2), "valid", (5, 6, 3)),
])
def test_maxpool_gradcheck(pool, strides, padding, shape):
    passes(MaxPooling2D(pool, strides=strides, padding=padding), shape)


@pytest.mark.parametrize("size", [(2, 2), (3, 1), (1, 2)])
def test_upsampling_gradcheck(size):
    passes(UpSampling2D(size), (3, 4, 2))


@pytest.mark.parametrize("layer,shape", [
    (Flatten(), (3, 2, 2)), (Reshape((2, -1)), (6,)), (Activation("sigmoid"), (5,)), (ReLU(), (3, 3)),
    (Activation("linear"), (4,)), (LeakyReLU(0.1), (2, 3)), (Activation("tanh"), (4, 2)),
    (Activation("softmax"), (5,)), (Softmax(), (3, 2, 4)), (Softmax(axis=3), (2, 2, 3)),
    (Conv2D(3, 2, activation="softmax"), (4, 4, 2)),
])
def test_shape_and_activation_layers_gradcheck(layer, shape):
    passes(layer, shape)


def test_softmax_layer_is_kerass_over_the_last_axis_only():
    x = np.random.default_rng(3).standard_normal((2, 3, 4))
    out = Softmax(dtype="float64")(x)
    np.testing.assert_allclose(out, np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(Softmax(axis=2, dtype="float64")(x), out)  # (axis 2 is the last of (N, 3, 4))
    np.testing.assert_array_equal(Activation("softmax", dtype="float64")(x), out)
    assert Softmax().activation.name == "softmax" and Softmax(name="probs").get_config() == {
        "name": "probs", "dtype": "float32", "axis": -1}
    with pytest.raises(NotImplementedError, match=r"axis=1 is not supported by npae \(only the last axis: -1, or 2 "
                                                  r"for inputs of shape \(batch, 3, 4\)\)"):
        Softmax(axis=1)(Input(shape=(3, 4)))
    with pytest.raises(NotImplementedError, match="axis=-2 is not supported"):
        Softmax(axis=-2)
    with pytest.raises(NotImplementedError, match=r"axis=\[1, 2\] \(several axes\)"):
        Softmax(axis=[1, 2])
    with pytest.raises(ValueError, match="axis must be an int"):
        Softmax(axis="last")


def test_leaky_relu_takes_keras_2s_alpha_as_keras_3_does():
    with pytest.warns(UserWarning, match="alpha is deprecated"):
        layer = LeakyReLU(alpha=0.2)
    assert layer.activation.alpha == 0.2 and layer.get_config()["negative_slope"] == 0.2
    assert "alpha" not in layer.get_config()
    assert LeakyReLU().activation.alpha == 0.3 and LeakyReLU(0.1).activation.alpha == 0.1
    with pytest.raises(ValueError, match="negative_slope or alpha .* not both; got negative_slope=0.3 and alpha=0.2"):
        LeakyReLU(negative_slope=0.3, alpha=0.2)
    with pytest.raises(ValueError, match="negative_slope must be a number >= 0"), pytest.warns(UserWarning):
        LeakyReLU(alpha=-1.0)


def test_layer_passes_are_the_reference_operations():
    # a layer's forward and backward are the functional operations, and keep nothing on the layer
    from npae.functional import activations, conv

    rng = np.random.default_rng(2)
    layer = Conv2D(3, 3, padding="same", activation="relu", dtype="float64")
    x = rng.standard_normal((2, 5, 6, 2))
    out, cache = layer.forward(x, training=True)
    z, _ = conv.forward(x, layer.params["kernel"], layer.params["bias"], (1, 1), "same")
    np.testing.assert_array_equal(out, activations.forward(z, "relu")[0])
    before = dict(vars(layer))
    g = rng.standard_normal(out.shape)
    dx, grads = layer.backward(g, cache)
    assert set(grads) == {"kernel", "bias"} and dx.shape == x.shape
    assert vars(layer).keys() == before.keys() and all(vars(layer)[k] is before[k] for k in before)
    logits, logit_cache = layer.forward(x, training=True, logits=True)
    np.testing.assert_array_equal(logits, z)
    np.testing.assert_array_equal(layer.backward(g, logit_cache)[1]["bias"], g.sum(axis=(0, 1, 2)))


def test_npae_gradcheck_is_callable_and_a_module():
    import npae

    report = npae.gradcheck(Dense(2, activation="sigmoid"), input_shape=(3,))
    assert report.passed and "dense" in report.table() and "worst rel err" in report.table()
    assert npae.gradcheck.check_layer is gradcheck.check_layer
    assert npae.gradcheck("mse", np.full((2, 2), 0.3), np.zeros((2, 2))).passed


def test_gradcheck_detects_a_wrong_backward():
    class BadDense(Dense):
        def backward(self, dout, cache):
            dx, grads = super().backward(dout, cache)
            return dx, {**grads, "bias": grads["bias"] * 1.01}  # a 1% error

    report = gradcheck.check_layer(BadDense(3), input_shape=(4,), raise_on_failure=False)
    assert not report.passed
    failed = [c.name for c in report.checks if not c.passed]
    assert len(failed) == 1 and failed[0].endswith(".bias")
    with pytest.raises(gradcheck.GradcheckError, match=r"bias wrong at index \(\d+,\)"):
        gradcheck.check_layer(BadDense(3), input_shape=(4,))


def test_gradcheck_skips_relu_kinks_and_counts_them():
    # 1e-9 is within every step the checker tries (eps, eps/10, eps/100) of ReLU's kink: skipped;
    # 3e-7 is within eps but not eps/10: checked with the smaller step
    x = np.array([[1e-9, -1e-9, 3e-7, 0.5, -0.5]])
    report = gradcheck.check_layer(ReLU(), x=x)
    assert report.checks[0].skipped == 2 and report.checks[0].checked == 3


def test_gradcheck_skips_max_pool_ties_it_would_cross():
    # two inputs 1e-9 apart in one window: any step moves the argmax, at every eps the checker tries
    x = np.zeros((1, 2, 2, 1))
    x[0, 0, 0, 0], x[0, 0, 1, 0] = 1.0, 1.0 - 1e-9
    report = gradcheck.check_layer(MaxPooling2D(2), x=x)
    assert report.checks[0].skipped == 2 and report.passed


def test_layer_outputs_are_new_arrays_every_call():
    for layer, shape in [(Activation("sigmoid"), (4,)), (Conv2D(2, 3, padding="same", activation="relu"), (5, 5, 3)),
                         (MaxPooling2D(2), (4, 4, 2))]:
        layer.build(shape)
        rng = np.random.default_rng(0)
        x1, x2 = rng.standard_normal((2, *shape)), rng.standard_normal((2, *shape))
        y1, c1 = layer.forward(x1.astype(np.float32))
        g1, _ = layer.backward(np.ones_like(y1), c1)
        y1c, g1c = y1.copy(), g1.copy()
        y2, c2 = layer.forward(x2.astype(np.float32))
        layer.backward(2 * np.ones_like(y2), c2)
        np.testing.assert_array_equal(y1, y1c)
        np.testing.assert_array_equal(g1, g1c)


def test_eager_call_on_an_array_is_the_forward_output():
    layer = Dense(3, activation="sigmoid")
    x = np.random.default_rng(1).random((2, 4), dtype=np.float32)
    np.testing.assert_array_equal(layer(x), layer.forward(x)[0])


def test_sigmoid_is_stable_at_extreme_inputs():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = Activation("sigmoid").forward(np.array([[-1000.0, 1000.0, 0.0]], np.float32))
    np.testing.assert_array_equal(out, [[0.0, 1.0, 0.5]])


def test_tutorial_conv_autoencoder_shapes():
    x = Input(shape=(28, 28, 1))
    shapes = []
    t = x
    for layer in [Conv2D(16, (3, 3), activation="relu", padding="same"), MaxPooling2D((2, 2), padding="same"),
                  Conv2D(8, (3, 3), activation="relu", padding="same"), MaxPooling2D((2, 2), padding="same"),
                  Conv2D(8, (3, 3), activation="relu", padding="same"), MaxPooling2D((2, 2), padding="same"),
                  Conv2D(8, (3, 3), activation="relu", padding="same"), UpSampling2D((2, 2)),
                  Conv2D(8, (3, 3), activation="relu", padding="same"), UpSampling2D((2, 2)),
                  Conv2D(16, (3, 3), activation="relu"), UpSampling2D((2, 2)),
                  Conv2D(1, (3, 3), activation="sigmoid", padding="same")]:
        t = layer(t)
        if not isinstance(layer, Conv2D) or layer.padding == "valid":
            shapes.append(t.shape[1])
    assert shapes == [14, 7, 4, 8, 16, 14, 28]
    assert t.shape == (None, 28, 28, 1)  # Keras: the batch axis as None


def test_weight_layouts_match_keras():
    d = Dense(64)
    d.build((784,))
    assert d.params["kernel"].shape == (784, 64) and d.params["bias"].shape == (64,)
    c = Convolution2D(16, (3, 3))
    c.build((28, 28, 1))
    assert c.params["kernel"].shape == (3, 3, 1, 16) and c.params["bias"].shape == (16,)
    assert [w.shape for w in c.get_weights()] == [(3, 3, 1, 16), (16,)]


def test_glorot_uniform_fans_and_seeded_init():
    assert initializers.compute_fans((784, 64)) == (784, 64)
    assert initializers.compute_fans((3, 3, 8, 16)) == (72, 144)
    w = initializers.glorot_uniform((3, 3, 8, 16), rng=np.random.default_rng(0))
    limit = np.sqrt(6 / (72 + 144))
    assert w.dtype == np.float32 and np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit
    a, b = Dense(8), Dense(8)
    a.build((5,), rng=np.random.default_rng(7))
    b.build((5,), rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.params["kernel"], b.params["kernel"])
    assert not a.params["bias"].any()


def test_keras_initializer_names():
    assert initializers.get("GlorotUniform") is initializers.glorot_uniform
    w = initializers.he_normal((400, 300), rng=np.random.default_rng(0))
    assert abs(w.std() - np.sqrt(2 / 400)) < 0.05 * np.sqrt(2 / 400) and np.abs(w).max() <= 2 * np.sqrt(2 / 400) / 0.879
    with pytest.raises(ValueError, match="unknown initializer 'nope'"):
        initializers.get("nope")


def test_float64_on_request():
    d = Dense(3, dtype="float64")
    assert d.forward(np.ones((2, 4)))[0].dtype == np.float64
    assert Dense(3).forward(np.ones((2, 4)))[0].dtype == np.float32


@pytest.mark.parametrize("make,shape,message", [
    (lambda: Dense(4), (2, 3, 5), r"Dense expects input of shape \(batch, features\), got \(batch, 2, 3, 5\)"),
    (lambda: Conv2D(4, 3), (10, 10), r"expected input of shape \(batch, height, width, channels\)"),
    (lambda: Conv2D(4, 5), (4, 4, 1), r"expected an input of at least 5, got 4"),
    (lambda: MaxPooling2D(3), (2, 2, 1), r"expected an input of at least 3, got 2"),
])
def test_bad_shapes_are_clear_errors_at_construction(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make()(Input(shape=shape))


def test_wrong_channel_count_and_rank_at_runtime():
    c = Conv2D(2, 3, padding="same")
    c.build((5, 5, 3))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 5, 5, 3\), got \(2, 5, 5, 1\)"):
        c.forward(np.zeros((2, 5, 5, 1), np.float32))
    d = Dense(2)
    d.build((4,))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 4\), got \(4,\)"):
        d.forward(np.zeros(4, np.float32))


@pytest.mark.parametrize("make,error,message", [
    (lambda: Dense(3, activation="tanhh"), ValueError, r"activation 'tanhh': expected one of"),
    (lambda: Conv2D(3, 3, padding="full"), ValueError, r"padding must be 'valid' or 'same', got 'full'"),
    (lambda: MaxPooling2D(padding="zero"), ValueError, r"padding must be 'valid' or 'same'"),
    (lambda: Conv2D(3, (0, 3)), ValueError, r"kernel_size must be a positive int or a pair"),
    (lambda: Dense(0), ValueError, r"units must be a positive int"),
    (lambda: Dense(True), ValueError, r"units must be a positive int, got True"),
    (lambda: Reshape((-2, -4)), ValueError, r"target_shape must be positive ints with at most one -1"),
    (lambda: Dense(3, kernel_regularizer="l2"), NotImplementedError, r"kernel_regularizer='l2' is a Keras argument"),
    (lambda: Conv2D(3, 3, dilation_rate=2), NotImplementedError, r"dilation_rate=2 is a Keras argument"),
    (lambda: Conv2D(3, 3, data_format="channels_first"), NotImplementedError, r"data_format='channels_first'"),
    (lambda: Dense(3, wibble=1), TypeError, r"unexpected keyword argument 'wibble'"),
    (lambda: Dense(3, activation=np.tanh), ValueError, r"unsupported activation"),
])
def test_bad_configuration_is_a_clear_error(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_keras_off_values_are_accepted():
    Conv2D(3, 3, data_format="channels_last", dilation_rate=(1, 1), groups=1, kernel_regularizer=None)
    MaxPooling2D(data_format=None)
    Dense(3, kernel_constraint=None, bias_regularizer=None)


def test_shared_layer_called_on_wrong_shape():
    d = Dense(4)
    d(Input(shape=(3,)))
    with pytest.raises(ValueError, match=r"built for input shape \(3,\) and cannot be called on .* \(None, 5\)"):
        d(Input(shape=(5,)))


def test_backward_never_updates_weights():
    d = Dense(3, activation="relu")
    d.build((4,))
    before = d.get_weights()
    _, cache = d.forward(np.ones((2, 4), np.float32))
    d.backward(np.ones((2, 3), np.float32), cache)
    for a, b in zip(before, d.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad,message", [
    ([np.array([None] * 12, dtype=object).reshape(4, 3), np.zeros(3)], "expected an array of real numbers"),
    ([np.zeros((4, 3), complex), np.zeros(3)], "expected an array of real numbers, got dtype complex"),
    ([np.array(["1"] * 12).reshape(4, 3), np.zeros(3)], "expected an array of real numbers"),
    ([np.zeros((3, 4)), np.zeros(3)], r"expected shape \(4, 3\), got \(3, 4\)"),
    ([np.zeros((4, 3))], r"expected 2 weight arrays"),
])
def test_set_weights_refuses_what_would_become_wrong_numbers(bad, message):
    d = Dense(3)
    d.build((4,))
    before = d.get_weights()
    with pytest.raises(ValueError, match=message):
        d.set_weights(bad)
    for a, b in zip(before, d.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_huge_layers_are_refused_before_allocating():
    with pytest.raises(ValueError, match="npae refuses weights of more than"):
        Dense(10**9)(Input(shape=(784,)))
