"""Conv2DTranspose: float64 gradient checks over random configurations, Keras 3's output sizes
(worked out by hand from its formulas), the adjoint relation with Conv2D, golden values worked
out by hand, training inside a Model on both paths, and its configuration and errors."""

import copy

import numpy as np
import pytest

import npae
from npae import gradcheck, regularizers
from npae.functional import conv, conv_transpose
from npae.layers import Conv2D, Input
from npae.layers.conv_transpose import Conv2DTranspose, Convolution2DTranspose
from npae.models import Model
from npae.optimizers import Adam


def passes(layer, shape, seed=0):
    """Gradient check with a random bias: with Keras's zero bias, an output pixel no stamp reaches
    (between the stamps, or in output_padding) sits exactly on a relu's kink."""
    rng = np.random.default_rng(seed)
    if not layer.built:
        layer.build(shape, rng=rng)
    if "bias" in layer.params:
        layer.params["bias"][...] = rng.normal(0.0, 0.5, layer.params["bias"].shape)
    report = gradcheck.check_layer(layer, input_shape=shape, seed=seed)
    assert report.passed and all(report.invariants.values()), report.table()
    assert all(c.checked > 0 for c in report.checks), report.table()
    return report


# -- (a) gradient checks ------------------------------------------------------------------------

def test_gradcheck_random_configs():
    rng = np.random.default_rng(7)
    checked = 0
    for seed in range(24):
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        padding = ["valid", "same"][seed % 2]
        output_padding = None if seed % 3 == 0 else (int(rng.integers(0, sh)), int(rng.integers(0, sw)))
        shape = (int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 4)))
        layer = Conv2DTranspose(int(rng.integers(1, 4)), (kh, kw), strides=(sh, sw), padding=padding,
                                output_padding=output_padding, use_bias=seed % 5 != 4,
                                activation=["linear", "relu", "sigmoid", "tanh"][seed % 4])
        try:
            layer.build(shape, rng=np.random.default_rng(seed))
        except ValueError as err:  # 'same', an even kernel and output_padding 0 on a 1-pixel input
            assert "empty output" in str(err)
            continue
        passes(layer, shape, seed)
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("kwargs,shape", [
    ({"kernel_size": 3, "strides": 2, "padding": "same"}, (4, 4, 2)),  # 4 -> 8, the odd pixel cropped
    ({"kernel_size": 4, "strides": 2, "padding": "same", "output_padding": 0}, (3, 5, 1)),  # (n - 1) s
    ({"kernel_size": 1, "strides": 3, "padding": "valid"}, (3, 2, 2)),  # zero rows between the stamps
    ({"kernel_size": (2, 5), "strides": (3, 1), "padding": "valid", "output_padding": (2, 0)}, (2, 3, 2)),
    ({"kernel_size": 1, "strides": 2, "padding": "same", "output_padding": 1}, (3, 3, 1)),  # zero row at the end
])
def test_gradcheck_edge_cases(kwargs, shape):
    passes(Conv2DTranspose(2, activation="elu", **kwargs), shape)


def test_gradcheck_with_an_activity_penalty():
    passes(Conv2DTranspose(2, 3, strides=2, padding="same", activation="relu",
                           activity_regularizer=regularizers.l1(0.1)), (3, 3, 2))


# -- (b) output shapes against Keras 3's rules, worked out by hand -------------------------------

# (n, kernel, stride, padding, output_padding) -> Keras 3's output length; the arithmetic in the comment.
KERAS_SIZES = [
    (7, 3, 2, "same", None, 14),  # n s = 14
    (14, 3, 2, "same", None, 28),  # the tutorial's 7 -> 14 -> 28
    (5, 3, 1, "same", None, 5),  # n s = 5
    (4, 5, 3, "same", None, 12),  # n s = 12
    (4, 2, 2, "same", None, 8),  # n s = 8
    (7, 3, 2, "valid", None, 15),  # (7-1)*2 + 3 + max(2-3, 0) = 15
    (10, 2, 2, "valid", None, 20),  # Keras's docstring example: (4, 10, 8, 128) -> (4, 20, 16, 32)
    (8, 2, 2, "valid", None, 16),
    (5, 3, 1, "valid", None, 7),  # 4 + 3 = 7
    (4, 1, 3, "valid", None, 12),  # 3*3 + 1 + max(3-1, 0) = 12
    (4, 2, 3, "valid", None, 12),  # 9 + 2 + 1 = 12
    (7, 3, 2, "valid", 0, 15),  # 12 + 3 + 0
    (7, 3, 2, "valid", 1, 16),  # 12 + 3 + 1
    (4, 2, 3, "valid", 0, 11),  # 9 + 2 + 0
    (4, 2, 3, "valid", 2, 13),  # 9 + 2 + 2
    (7, 3, 2, "same", 0, 13),  # (7-1)*2 + 3 mod 2 + 0 = 13
    (7, 3, 2, "same", 1, 14),  # 12 + 1 + 1
    (7, 4, 2, "same", 0, 12),  # 12 + 0 + 0
    (7, 4, 2, "same", 1, 13),  # 12 + 0 + 1
    (5, 2, 1, "same", 0, 4),  # 4 + 0 + 0
    (5, 5, 3, "same", 2, 15),  # 12 + 1 + 2
    (1, 3, 1, "valid", None, 3),
    (1, 1, 1, "same", None, 1),
]


@pytest.mark.parametrize("n,k,s,padding,output_padding,expected", KERAS_SIZES)
def test_output_size_is_keras(n, k, s, padding, output_padding, expected):
    assert conv_transpose.output_size(n, k, s, padding, output_padding)[0] == expected
    layer = Conv2DTranspose(3, (k, 1), strides=(s, 1), padding=padding,
                            output_padding=None if output_padding is None else (output_padding, 0))
    assert layer.compute_output_shape((n, 2, 5)) == (expected, 2, 3)
    z, _ = conv_transpose.forward(np.ones((1, n, 2, 5)), np.ones((k, 1, 3, 5)), None, (s, 1), padding,
                                  None if output_padding is None else (output_padding, 0))
    assert z.shape == (1, expected, 2, 3)


def test_layer_shapes_and_weight_layout():
    inp = Input(shape=(7, 5, 4))
    layer = Conv2DTranspose(6, (3, 2), strides=2, padding="same")
    out = layer(inp)
    assert out.shape == (None, 14, 10, 6)
    assert layer.weight_shapes((7, 5, 4)) == {"kernel": (3, 2, 6, 4), "bias": (6,)}  # (kh, kw, filters, in)
    assert [w.shape for w in layer.get_weights()] == [(3, 2, 6, 4), (6,)]
    assert layer.count_params() == 3 * 2 * 6 * 4 + 6
    assert Conv2DTranspose(6, 3, use_bias=False).weight_shapes((7, 5, 4)) == {"kernel": (3, 3, 6, 4)}
    assert Convolution2DTranspose is Conv2DTranspose


# -- (c) the adjoint relation with Conv2D --------------------------------------------------------

ADJOINT_CASES = [  # (input (H, W), kernel, strides, padding, output_padding)
    ((4, 5), (3, 3), (1, 1), "valid", None), ((4, 5), (3, 3), (1, 1), "same", None),
    ((3, 4), (3, 3), (2, 2), "same", None), ((3, 4), (3, 2), (2, 3), "valid", None),
    ((3, 3), (4, 4), (2, 2), "same", None), ((3, 3), (5, 5), (3, 3), "same", None),
    ((3, 3), (1, 1), (3, 2), "valid", None), ((3, 3), (2, 2), (3, 3), "same", None),
    ((3, 4), (3, 3), (2, 2), "valid", (1, 1)), ((3, 4), (3, 3), (2, 2), "same", (0, 1)),
    ((2, 3), (5, 4), (3, 2), "same", (2, 1)), ((3, 2), (2, 3), (3, 3), "valid", (2, 0)),
]


@pytest.mark.parametrize("hw,k,s,padding,output_padding", ADJOINT_CASES)
def test_forward_is_the_adjoint_of_conv2d(hw, k, s, padding, output_padding):
    """<conv_transpose(x), y> == <x, conv(y)>: npae's Conv2D with the same kernel, strides and
    padding, run on the transposed convolution's output shape, gives back x's shape."""
    rng = np.random.default_rng(sum(hw) + sum(k) + sum(s))
    x = rng.standard_normal((2, *hw, 3))
    kernel = rng.standard_normal((*k, 4, 3))  # (kh, kw, F, Cin): a Conv2D kernel from 4 channels to 3
    z, _ = conv_transpose.forward(x, kernel, None, s, padding, output_padding)
    y = rng.standard_normal(z.shape)
    cy, _ = conv.forward(y, kernel, None, s, padding)
    assert cy.shape == x.shape
    lhs, rhs = np.sum(z * y), np.sum(x * cy)
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12), (lhs, rhs)


def test_same_with_an_even_kernel_and_no_output_padding_is_the_adjoint_of_an_explicitly_padded_conv():
    """'same', k = 4, s = 2, output_padding 0: Keras's output is (n - 1) s, and no 'same' Conv2D
    maps that back to n; the transposed convolution is the adjoint of the conv with padding
    (k / 2, k / 2) = (2, 2): (n - 1) s + 4 - 4 windows of stride 2 give n again."""
    rng = np.random.default_rng(3)
    x, kernel = rng.standard_normal((2, 3, 3, 2)), rng.standard_normal((4, 4, 3, 2))
    z, _ = conv_transpose.forward(x, kernel, None, (2, 2), "same", (0, 0))
    assert z.shape == (2, 4, 4, 3)
    y = rng.standard_normal(z.shape)
    cy, _ = conv.forward(np.pad(y, ((0, 0), (2, 2), (2, 2), (0, 0))), kernel, None, (2, 2), "valid")
    assert cy.shape == x.shape
    assert np.sum(z * y) == pytest.approx(np.sum(x * cy), rel=1e-12)


def test_input_gradient_is_conv2d_forward():
    rng = np.random.default_rng(4)
    x, kernel = rng.standard_normal((2, 3, 4, 2)), rng.standard_normal((3, 3, 5, 2))
    z, cache = conv_transpose.forward(x, kernel, rng.standard_normal(5), (2, 2), "same")
    dz = rng.standard_normal(z.shape)
    dx, _, dbias = conv_transpose.backward(dz, cache)
    np.testing.assert_allclose(dx, conv.forward(dz, kernel, None, (2, 2), "same")[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dbias, dz.sum(axis=(0, 1, 2)), rtol=1e-12)


# -- (d) golden values worked out by hand ---------------------------------------------------------

X = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
K = np.array([[1.0, 10.0], [100.0, 1000.0]]).reshape(2, 2, 1, 1)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_golden_stride_2_stamps_the_kernel_without_overlap(padding):
    """Stride 2, kernel 2: each input pixel x[i, j] writes x[i, j] * K into the 2x2 block at (2i, 2j);
    'valid' and 'same' both give 4x4 here ((2 - 1) 2 + 2 = 2 * 2), with nothing cropped."""
    z, _ = conv_transpose.forward(X, K, np.array([0.5]), (2, 2), padding)
    expected = np.array([[1, 10, 2, 20],
                         [100, 1000, 200, 2000],
                         [3, 30, 4, 40],
                         [300, 3000, 400, 4000]], dtype=float) + 0.5
    np.testing.assert_array_equal(z[0, :, :, 0], expected)
    layer = Conv2DTranspose(1, 2, strides=2, padding=padding, dtype="float64")
    layer.build((2, 2, 1))
    layer.set_weights([K, np.array([0.5])])
    np.testing.assert_array_equal(layer(X)[0, :, :, 0], expected)


def test_golden_stride_1_stamps_overlap_and_add():
    z, _ = conv_transpose.forward(X, K, None, (1, 1), "valid")
    expected = np.array([[1, 10 + 2, 20],
                         [100 + 3, 1000 + 200 + 30 + 4, 2000 + 40],
                         [300, 3000 + 400, 4000]], dtype=float)
    np.testing.assert_array_equal(z[0, :, :, 0], expected)


@pytest.mark.parametrize("padding,output_padding,expected", [
    ("valid", None, [1, 10, 102, 20, 200]),  # the full result, (2 - 1) 2 + 3 = 5
    ("valid", 1, [1, 10, 102, 20, 200, 0]),  # one more column, at the right, nothing lands there
    ("same", None, [1, 10, 102, 20]),  # 2 * 2 = 4: the odd column cropped at the right
    ("same", 0, [10, 102, 20]),  # 2 + 1 + 0 = 3: one column cropped on each side
])
def test_golden_1d_crops(padding, output_padding, expected):
    """One row x = [1, 2], kernel [1, 10, 100], stride 2: the full result is x0 K at 0 and x1 K at 2,
    [1, 10, 100 + 2, 20, 200]; each padding keeps a window of it."""
    x = np.array([1.0, 2.0]).reshape(1, 1, 2, 1)
    kernel = np.array([1.0, 10.0, 100.0]).reshape(1, 3, 1, 1)
    op = None if output_padding is None else (0, output_padding)
    z, _ = conv_transpose.forward(x, kernel, None, (1, 2), padding, op)
    np.testing.assert_array_equal(z[0, 0, :, 0], expected)


def test_golden_gradients():
    """For the stride-2 case each output pixel has one source, so dx[i, j] = sum over the block of
    dz * K, and dK[a, b] = sum over (i, j) of dz[2i + a, 2j + b] x[i, j]."""
    _, cache = conv_transpose.forward(X, K, np.zeros(1), (2, 2), "valid")
    dz = np.arange(16.0).reshape(1, 4, 4, 1)
    dx, dkernel, dbias = conv_transpose.backward(dz, cache)
    # dz blocks: (0,0) [[0,1],[4,5]], (0,1) [[2,3],[6,7]], (1,0) [[8,9],[12,13]], (1,1) [[10,11],[14,15]]
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0 + 10 + 400 + 5000, 2 + 30 + 600 + 7000],
                                                   [8 + 90 + 1200 + 13000, 10 + 110 + 1400 + 15000]])
    # dK[0, 0] = 1*0 + 2*2 + 3*8 + 4*10 = 68, dK[0, 1] = 1*1 + 2*3 + 3*9 + 4*11 = 78, ...
    np.testing.assert_array_equal(dkernel[:, :, 0, 0], [[68, 78], [108, 118]])
    assert dbias[0] == 120


# -- (e) inside a Model, on both paths ------------------------------------------------------------

def autoencoder(seed=0, size=28):
    npae.set_random_seed(seed)
    inp = Input(shape=(size, size, 1))
    h = Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)  # 28 -> 14
    h = Conv2D(4, 3, strides=2, padding="same", activation="relu")(h)  # 14 -> 7
    h = Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(h)  # 7 -> 14
    out = Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid")(h)  # 14 -> 28
    return Model(inp, out)


def digits(mnist_test_images, n):
    return mnist_test_images[:n].reshape(-1, 28, 28, 1)


@pytest.mark.parametrize("jit", [False, "auto"])
def test_conv_autoencoder_trains(mnist_test_images, jit):
    x = digits(mnist_test_images, 256)
    model = autoencoder()
    model.compile(optimizer=Adam(learning_rate=0.01), loss="binary_crossentropy", jit_compile=jit)
    assert model.fuses_sigmoid_into_loss  # the last Conv2DTranspose hands the loss its logits
    assert model.output_shape == (None, 28, 28, 1)
    before = model.evaluate(x, x, batch_size=64)
    history = model.fit(x, x, epochs=4, batch_size=32, verbose=0, seed=0)
    after = model.evaluate(x, x, batch_size=64)
    assert after < 0.8 * before, (before, after, history.history["loss"])
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_the_two_paths_give_the_same_gradients(mnist_test_images):
    x = digits(mnist_test_images, 6).astype(np.float64)
    ref = autoencoder(seed=1).astype("float64")
    fast = copy.deepcopy(ref)
    ref.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=False)
    fast.compile(optimizer="adam", loss="binary_crossentropy")
    assert fast.jit_compile and not ref.jit_compile
    assert any(type(s).__name__ == "ConvTransposeStep" for s in fast.path.plan("train").steps)
    values = [m.compute_gradients(x, x) for m in (ref, fast)]
    assert values[1] == pytest.approx(values[0], rel=1e-10)
    grads_ref, grads_fast = ref.gradients(), fast.gradients()
    assert sorted(grads_ref) == sorted(grads_fast) and any("conv2d_transpose" in k for k in grads_ref)
    for key, g in grads_ref.items():
        scale = max(np.abs(g).max(), 1e-300)
        assert np.abs(grads_fast[key] - g).max() <= 1e-10 * scale, key
        assert np.abs(g).max() > 0, key
    np.testing.assert_allclose(fast.predict(x, batch_size=4), ref.predict(x, batch_size=4), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("jit", [False, True])
def test_check_model_full(jit):
    npae.set_random_seed(2)
    inp = Input(shape=(7, 7, 2))
    h = Conv2D(3, 3, strides=2, padding="valid", activation="tanh")(inp)  # 7 -> 3
    h = Conv2DTranspose(2, 3, strides=2, padding="valid", output_padding=0, activation="tanh")(h)  # 3 -> 7
    out = Conv2DTranspose(1, (2, 3), strides=1, padding="same", activation="sigmoid")(h)  # 7 -> 7
    model = Model(inp, out)
    model.compile(optimizer="sgd", loss="binary_crossentropy", jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 7, 7, 2))
    report = npae.check_model(model, x, x[..., :1], mode="full")
    assert report.passed and sum(c.checked for c in report.checks) == model.count_params(), report.table()


# -- (f) configuration and errors -----------------------------------------------------------------

def test_get_config_round_trip():
    layer = Conv2DTranspose(5, (3, 2), strides=(2, 3), padding="SAME", output_padding=(1, 2), activation="relu",
                            use_bias=False, kernel_initializer="he_normal", name="up", dtype="float64")
    cfg = layer.get_config()
    assert cfg == {"name": "up", "dtype": "float64", "filters": 5, "kernel_size": [3, 2], "strides": [2, 3],
                   "padding": "same", "output_padding": [1, 2], "data_format": "channels_last",
                   "dilation_rate": [1, 1], "activation": "relu", "use_bias": False,
                   "kernel_initializer": "he_normal", "bias_initializer": "zeros"}
    again = Conv2DTranspose.from_config(cfg)
    assert again.get_config() == cfg
    assert again.compute_output_shape((4, 4, 3)) == layer.compute_output_shape((4, 4, 3)) == (8, 11, 5)
    assert Conv2DTranspose.from_config(Conv2DTranspose(2, 3).get_config()).output_padding is None


def test_a_layer_runs_like_its_round_tripped_copy():
    layer = Conv2DTranspose(2, 3, strides=2, padding="valid", output_padding=1, activation="sigmoid")
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 4)).astype(np.float32)
    out = layer(x)
    copy_ = Conv2DTranspose.from_config(layer.get_config())
    copy_.build((3, 3, 4))
    copy_.set_weights(layer.get_weights())
    np.testing.assert_array_equal(copy_(x), out)
    assert out.shape == (2, 8, 8, 2)


@pytest.mark.parametrize("kwargs,words", [
    ({"data_format": "channels_first"}, "data_format"),
    ({"dilation_rate": 2}, "dilation_rate"),
    ({"groups": 2}, "groups"),
    ({"kernel_regularizer": "l2"}, "kernel_regularizer"),
    ({"bias_regularizer": "l1"}, "bias_regularizer"),
    ({"kernel_constraint": "max_norm"}, "kernel_constraint"),
    ({"bias_constraint": "non_neg"}, "bias_constraint"),
])
def test_unsupported_keras_arguments_are_refused(kwargs, words):
    with pytest.raises(NotImplementedError, match=words):
        Conv2DTranspose(2, 3, **kwargs)


def test_supported_values_of_keras_only_arguments_are_accepted():
    layer = Conv2DTranspose(2, 3, data_format="channels_last", dilation_rate=(1, 1), kernel_regularizer=None)
    assert layer.compute_output_shape((4, 4, 1)) == (6, 6, 2)


@pytest.mark.parametrize("kwargs,words", [
    ({"output_padding": 1}, "smaller than the stride"),  # stride 1: no output_padding but 0
    ({"strides": 2, "output_padding": 2}, "smaller than the stride"),
    ({"strides": (2, 3), "output_padding": (1, 3)}, "smaller than the stride"),
    ({"strides": 2, "output_padding": -1}, "non-negative"),
    ({"strides": 2, "output_padding": (1, 1, 1)}, "pair"),
    ({"strides": 2, "output_padding": 1.0}, "output_padding"),
    ({"strides": 2, "output_padding": True}, "output_padding"),
    ({"padding": "full"}, "padding"),
    ({"strides": 0}, "strides"),
    ({"kernel_size": (3, 0)}, "kernel_size"),
])
def test_bad_values_are_clear_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Conv2DTranspose(2, **{"kernel_size": 3, **kwargs})


def test_bad_filters_and_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="filters"):
        Conv2DTranspose(0, 3)
    with pytest.raises(ValueError, match="height, width, channels"):
        Conv2DTranspose(2, 3).build((5, 5))
    with pytest.raises(ValueError, match="empty output"):  # 'same', kernel 2, output_padding 0: (1 - 1) 1 + 0 + 0
        Conv2DTranspose(2, 2, padding="same", output_padding=0).build((1, 4, 1))
    layer = Conv2DTranspose(2, 3)
    layer.build((4, 4, 1))
    with pytest.raises(ValueError, match="expected input of shape"):
        layer.forward(np.zeros((1, 4, 5, 1)))
    with pytest.raises(ValueError, match="padding"):
        conv_transpose.output_size(3, 3, 1, "full")
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose.output_size(3, 3, 2, "valid", -1)
