"""Every layer and activation passes the float64 gradient check over randomized configurations,
and layers behave like Keras's: shapes, weight layouts, init, and clear errors."""

import numpy as np
import pytest

from npae import blas, gradcheck, initializers, kernels, regularizers
from npae.layers import (
    Activation,
    Conv2D,
    Convolution2D,
    Dense,
    Flatten,
    Input,
    MaxPooling2D,
    ReLU,
    Reshape,
    UpSampling2D,
)


def passes(layer, shape, seed=0):
    report = gradcheck.check_layer(layer, input_shape=shape, seed=seed)
    assert report.passed and all(report.invariants.values()), report.table()
    return report


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid"])
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


@pytest.mark.parametrize("cin,cout,kernel,padding", [
    (4, 1, 3, "same"), (3, 2, 3, "valid"), (5, 2, (2, 4), "same"), (6, 3, (3, 2), "same"), (16, 1, 3, "same"),
    (1, 4, 3, "same"), (1, 3, (2, 3), "valid"),
])
def test_conv2d_direct_mode_gradcheck(cin, cout, kernel, padding):
    # stride 1 with one input channel or fewer outputs than inputs: no patch matrix (kernels.conv2d_s1)
    layer = Conv2D(cout, kernel, padding=padding, activation="relu")
    layer.build((6, 7, cin))
    assert layer.direct_mode
    passes(layer, (6, 7, cin))


def test_conv2d_modes_agree(monkeypatch):
    # the same weights through direct mode and through im2col + GEMM give the same output and gradients
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 9, 8, 5))
    g = rng.standard_normal((3, 9, 8, 2))
    results = []
    for direct in (True, False):
        layer = Conv2D(2, 3, padding="same", activation="relu", dtype=np.float64)
        layer.build(x.shape[1:], np.random.default_rng(0))
        layer.params["bias"][:] = 0.1
        assert layer.direct_mode
        if not direct:
            monkeypatch.setattr(Conv2D, "direct_mode", property(lambda self: False))
        results.append((layer.forward(x, True), layer.backward(g), layer.grads["kernel"].copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("block_bytes,blocks", [(1, 5), (13000, 3)])
def test_conv2d_patch_blocks_agree_with_one_block(block_bytes, blocks):
    # the patch matrix in blocks of 1 or 2 images (uneven last block: an image's patches take
    # 6*5 rows * 27 * 8 bytes = 6480) gives what one block gives
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 6, 5, 3))
    g = rng.standard_normal((5, 6, 5, 4))
    results = []
    for size in (block_bytes, 2**30):
        layer = Conv2D(4, 3, padding="same", activation="relu", dtype=np.float64)
        layer.build(x.shape[1:], np.random.default_rng(0))
        layer.patch_block_bytes = size
        n_blocks = len(layer._image_blocks(5, x.dtype, layer._phase_plan((1, 1))[0]))
        assert not layer.direct_mode and n_blocks == (1 if size == 2**30 else blocks)
        results.append((layer.forward(x, True).copy(), layer.backward(g).copy(), layer.grads["kernel"].copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    layer = Conv2D(4, 3, padding="same", activation="sigmoid")
    layer.build(x.shape[1:])
    layer.patch_block_bytes = block_bytes
    passes(layer, x.shape[1:])


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("up,kernel,padding", [((2, 2), 3, "same"), ((2, 2), 3, "valid"), ((1, 3), (2, 3), "same"),
                                               ((3, 2), (3, 1), "valid")])
def test_conv2d_reading_an_upsampled_input_equals_upsampling_first(monkeypatch, up, kernel, padding, direct):
    # upsampled_input (phase by phase, on both paths; im2col in uneven blocks) = UpSampling2D then
    # the convolution: the same output, the same kernel gradient, and as input gradient the
    # upsampling's backward pass of the convolution's
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 4, 3, 3))
    big = x.repeat(up[0], axis=1).repeat(up[1], axis=2)
    layer = Conv2D(4, kernel, padding=padding, activation="relu", dtype=np.float64)
    layer.build(big.shape[1:], np.random.default_rng(0))
    layer.params["bias"][:] = 0.1
    monkeypatch.setattr(Conv2D, "direct_mode", property(lambda self: direct))
    layer.patch_block_bytes = 25000  # im2col: about 2 images per block, the last one alone
    g = rng.standard_normal((5, *layer.output_shape))
    want = (layer.forward(big, True).copy(), layer.backward(g).copy(), layer.grads["kernel"].copy())
    assert layer.reads_upsampled(up, True) == (not direct)  # (a Model would not fuse so small an image)
    layer.upsampled_input = up
    got = (layer.forward(x, True).copy(), layer.backward(g).copy(), layer.grads["kernel"].copy())
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], kernels.upsample_backward_ref(want[1], *up), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "linear"])
@pytest.mark.parametrize("cin,cout", [(2, 3), (12, 16)])  # direct, and Winograd (with OpenBLAS)
def test_conv2d_pooling_in_its_kernel_equals_pooling_after(activation, dtype, cin, cout):
    # pooled_by: the convolution returns the MaxPooling2D's output and takes its gradient; the
    # same numbers as the two layers one after the other (bias, kernel and input gradients)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 8, 10, cin)).astype(dtype)
    conv = Conv2D(cout, 3, padding="same", activation=activation, dtype=dtype)
    conv.build(x.shape[1:], np.random.default_rng(0))
    conv.params["bias"][:] = np.linspace(-0.5, 0.5, cout)
    pool = MaxPooling2D(2, dtype=dtype)
    pool.build(conv.output_shape)
    assert conv.runs_direct(True) == (cin == 2) and conv.winograd_mode == (cin == 12 and blas.find() is not None)
    assert conv.pools_in_kernel(pool, True) == (conv.runs_direct(True) or conv.winograd_mode)
    g = rng.standard_normal((5, *pool.output_shape)).astype(dtype)
    conv.needs_input_grad = True
    want = [pool.forward(conv.forward(x, True)).copy(), pool._argmax.copy()]
    if not conv.pools_in_kernel(pool, True):
        return  # (Winograd's case where NumPy is not built on OpenBLAS: nothing to fuse)
    want += [conv.backward(pool.backward(g)).copy(), conv.grads["kernel"].copy(), conv.grads["bias"].copy()]
    conv.pooled_by = pool
    got = [conv.forward(x, True).copy(), pool._argmax.copy()]  # the pool's state too (its kink_state)
    got += [conv.backward(g.copy()).copy(), conv.grads["kernel"].copy(), conv.grads["bias"].copy()]
    tol = dict(rtol=1e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, **tol)
    conv.pooled_by = None  # and back to an ordinary layer
    np.testing.assert_allclose(conv.forward(x, True), conv.forward(x, False), **tol)
    assert conv.backward(rng.standard_normal((5, *conv.output_shape)).astype(dtype)).shape == x.shape


def test_conv2d_pools_in_its_kernel_only_where_it_can():
    def pair(cin=1, filters=4, size=8, pool_size=2, strides=None, padding="valid", kernel=3, **kw):
        conv = Conv2D(filters, kernel, padding="same", **kw)
        conv.build((size, size, cin))
        pool = MaxPooling2D(pool_size, strides=strides, padding=padding)
        pool.build(conv.output_shape)
        return conv, pool

    assert pair()[0].pools_in_kernel(pair()[1], True)  # the tutorial's first layer
    conv, pool = pair(padding="same")
    assert conv.pools_in_kernel(pool, True)  # an even output: 'same' is 'valid'
    conv, pool = pair(cin=32, filters=32)  # Winograd's tiles are the windows
    assert conv.pools_in_kernel(pool, True) == conv.winograd_mode == (blas.find() is not None)
    for conv, pool in [pair(size=7), pair(pool_size=3), pair(strides=1), pair(activity_regularizer="l1"),
                       pair(cin=32, filters=32, kernel=(3, 2)), pair(strides=(2, 1))]:
        assert not conv.pools_in_kernel(pool, True), (conv, pool)  # odd size, window, stride, penalty, im2col


def test_conv2d_backward_follows_the_inference_forward():
    # 8 -> 8 trains through im2col but infers directly; a backward after forward(training=False)
    # must still be the gradient of what that forward computed
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 5, 8))
    g = rng.standard_normal((2, 6, 5, 8))
    layer = Conv2D(8, 3, padding="same", activation="relu", dtype=np.float64)
    layer.build(x.shape[1:], np.random.default_rng(0))
    assert layer.direct_inference_mode and not layer.direct_mode
    infer = (layer.forward(x).copy(), layer.backward(g).copy(), layer.grads["kernel"].copy())
    train = (layer.forward(x, True), layer.backward(g), layer.grads["kernel"])
    for a, b in zip(infer, train):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_conv2d_same_with_uneven_padding_gradcheck():
    passes(Conv2D(2, (4, 4), padding="same"), (6, 5, 2))  # total pad 3: 1 before, 2 after
    passes(Conv2D(2, (2, 2), strides=2, padding="same"), (7, 7, 1))


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
    (Activation("linear"), (4,)),
])
def test_shape_and_activation_layers_gradcheck(layer, shape):
    passes(layer, shape)


def test_npae_gradcheck_is_callable_and_a_module():
    import npae

    report = npae.gradcheck(Dense(2, activation="sigmoid"), input_shape=(3,))
    assert report.passed and "dense" in report.table() and "worst rel err" in report.table()
    assert npae.gradcheck.check_layer is gradcheck.check_layer
    assert npae.gradcheck("mse", np.full((2, 2), 0.3), np.zeros((2, 2))).passed


def test_gradcheck_detects_a_wrong_backward():
    class BadDense(Dense):
        def backward_linear(self, grad_z):
            dx = super().backward_linear(grad_z)
            self.grads["bias"] *= 1.01  # a 1% error
            return dx

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


def test_layer_outputs_are_not_shared_between_calls():
    for layer, shape in [(Activation("sigmoid"), (4,)), (Conv2D(2, 3, padding="same", activation="relu"), (5, 5, 3)),
                         (MaxPooling2D(2), (4, 4, 2))]:
        layer.build(shape)
        rng = np.random.default_rng(0)
        x1, x2 = rng.standard_normal((2, *shape)), rng.standard_normal((2, *shape))
        y1 = layer.forward(x1.astype(np.float32))
        g1 = layer.backward(np.ones_like(y1))
        y1c, g1c = y1.copy(), g1.copy()
        y2 = layer.forward(x2.astype(np.float32))
        layer.backward(2 * np.ones_like(y2))
        np.testing.assert_array_equal(y1, y1c)
        np.testing.assert_array_equal(g1, g1c)


def test_sigmoid_is_stable_at_extreme_inputs():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = Activation("sigmoid").forward(np.array([[-1000.0, 1000.0, 0.0]], np.float32))
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
            shapes.append(t.shape[0])
    assert shapes == [14, 7, 4, 8, 16, 14, 28]
    assert t.shape == (28, 28, 1)


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


def test_float64_on_request():
    d = Dense(3, dtype="float64")
    assert d.forward(np.ones((2, 4))).dtype == np.float64
    assert Dense(3).forward(np.ones((2, 4))).dtype == np.float32


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


@pytest.mark.parametrize("make,message", [
    (lambda: Dense(3, activation="tanhh"), r"unknown activation 'tanhh': expected one of"),
    (lambda: Conv2D(3, 3, padding="full"), r"padding must be 'valid' or 'same', got 'full'"),
    (lambda: MaxPooling2D(padding="zero"), r"padding must be 'valid' or 'same'"),
    (lambda: Conv2D(3, (0, 3)), r"kernel_size must be a positive int or a pair"),
    (lambda: Dense(0), r"units must be a positive int"),
])
def test_bad_configuration_is_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_shared_layer_called_on_wrong_shape():
    d = Dense(4)
    d(Input(shape=(3,)))
    with pytest.raises(ValueError, match=r"built for input shape \(3,\) and cannot be called on .* \(5,\)"):
        d(Input(shape=(5,)))


def test_backward_never_updates_weights():
    d = Dense(3, activation="relu")
    d.build((4,))
    before = d.get_weights()
    d.forward(np.ones((2, 4), np.float32))
    d.backward(np.ones((2, 3), np.float32))
    for a, b in zip(before, d.get_weights()):
        np.testing.assert_array_equal(a, b)
