"""The one-kernel prediction of Dense stacks (npae.inference) and the OpenBLAS it calls (npae.blas):
the same numbers as the layer-by-layer forward, every chunk and dtype, and OpenBLAS's thread
count given back."""

import sys

import numba
import numpy as np
import pytest

from npae import autoencoders, blas, conv_gemm, inference
from npae.layers import Conv2D, Dense, Flatten, Input
from npae.models import Model, Sequential


def numpy_uses_openblas() -> bool:
    info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return "openblas" in info["name"].lower() and sys.platform.startswith("linux")


def test_openblas_found_exactly_where_numpy_uses_it():
    found = blas.find()
    assert (found is not None) == numpy_uses_openblas(), (found, np.show_config(mode="dicts"))
    if found is not None:
        assert "openblas" in found.path.lower() and found.int_dtype in (np.int32, np.int64)


needs_openblas = pytest.mark.skipif(not numpy_uses_openblas(), reason="NumPy is not built on OpenBLAS here")


def small_stack(dtype):
    model = Sequential([Dense(7, activation="relu", input_shape=(5,)), Dense(3, use_bias=False),
                        Dense(6, activation="sigmoid")])
    model.build()
    for layer in model.layers:  # non-zero biases, so a missing bias term would show
        if "bias" in layer.params:
            layer.params["bias"][...] = np.linspace(-1, 1, layer.units)
    return model.astype(dtype)


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["vanilla", "deep", "sparse", "small"])
@pytest.mark.parametrize("n", [1, 7, 300])
def test_dense_stack_prediction_is_the_layer_by_layer_forward(name, n, dtype):
    model = small_stack(dtype) if name == "small" else autoencoders.BUILDERS[name](seed=0)[0].astype(dtype)
    assert model._dense_stack() is not None
    x = np.random.default_rng(n).uniform(-1, 2, (n, model.input_shape[1])).astype(dtype)
    pred = model.predict(x, batch_size=4)
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(pred, model.forward(x), **tol)  # forward: layer after layer
    layers = model._layers
    ref = inference.dense_stack_forward_ref(x, [layer.params["kernel"] for layer in layers],
                                            [layer._bias() for layer in layers],
                                            [layer.activation.code for layer in layers])
    np.testing.assert_allclose(pred, ref, **tol)
    assert pred.dtype == dtype and pred.shape == (n, model.output_shape[1])


@needs_openblas
def test_dense_stack_on_one_thread_and_on_inputs_to_cast_in_chunks():
    model = autoencoders.vanilla(seed=0)[0]
    x = np.random.default_rng(0).random((4100, 784))  # float64, Fortran order: cast in chunks of 4096
    x = np.asfortranarray(x)
    want = model.forward(x.astype(np.float32))
    np.testing.assert_allclose(model.predict(x, batch_size=5), want, rtol=2e-5, atol=1e-6)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        np.testing.assert_allclose(model.predict(x[:300]), want[:300], rtol=2e-5, atol=1e-6)
    finally:
        numba.set_num_threads(before)
    assert model.predict(x[:0]).shape == (0, 784)


@needs_openblas
def test_dense_stack_reads_weights_of_any_layout_and_rejects_bad_arrays():
    model = small_stack(np.float32)
    first = model._layers[0]
    first.params["kernel"] = np.asfortranarray(first.params["kernel"])  # (set by hand, not set_weights)
    x = np.random.default_rng(2).random((9, 5), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), model.forward(x), rtol=2e-5, atol=1e-6)
    stack, out = model._dense_stack(), np.empty((9, 6), np.float32)
    for bad_x, bad_out in [(np.asfortranarray(x), out), (x, out[:, :5]), (x, out.astype(np.float64)),
                           (x[:, :4].copy(), out)]:
        with pytest.raises(ValueError, match=r"expected C-contiguous x \(n, 5\) and out \(9, 6\)"):
            stack.forward(bad_x, bad_out)


@needs_openblas
def test_prediction_gives_openblas_its_thread_count_back():
    # the kernel runs OpenBLAS single-threaded; the caller's own GEMMs must not stay that way
    openblas = blas.find()
    model = autoencoders.deep(seed=0)[0]
    before = openblas.threads()
    try:
        for threads in (2, 1, 3):
            openblas.set_threads(threads)
            model.predict(np.ones((512, 784), np.float32), batch_size=256)
            assert openblas.threads() == threads
    finally:
        openblas.set_threads(before)


def test_only_models_made_of_dense_layers_take_the_kernel():
    inp = Input(shape=(4, 4, 1))
    conv = Model(inp, Dense(3)(Flatten()(Conv2D(2, 3, padding="same")(inp))))
    assert conv._dense_stack() is None
    model = Sequential([Dense(4, activation="relu", input_shape=(3,))])
    first = model._dense_stack()
    model.add(Dense(2, activation="sigmoid"))  # a Sequential that grows gets a new stack
    x = np.random.default_rng(1).random((5, 3), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), model.forward(x), rtol=2e-5, atol=1e-6)
    if numpy_uses_openblas():
        assert first is not None and model._dense_stack() is not first
        assert [type(layer) for layer in model._dense_stack().layers] == [Dense, Dense]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("up,kernel,padding,strides", [
    (None, (3, 2), "same", 1), (None, (2, 3), "valid", (2, 1)), ((2, 2), (3, 2), "same", 1),
    ((1, 3), (2, 3), "same", 1), ((3, 2), (3, 1), "valid", 1)])  # (3x3 at stride 1 is Winograd's)
def test_conv2d_gemm_kernel_gives_the_numpy_paths_numbers(monkeypatch, up, kernel, padding, strides, dtype):
    # with OpenBLAS, the im2col forward pass of a layer with more than 128 channel pairs runs as one
    # kernel (npae.conv_gemm: a group of images per thread, phase by phase on an upsampled input);
    # without, through NumPy block by block: the same output, and after it the same gradients
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4, 3, 12)).astype(dtype)
    big = x if up is None else x.repeat(up[0], axis=1).repeat(up[1], axis=2)
    layer = Conv2D(12, kernel, strides=strides, padding=padding, activation="sigmoid", dtype=dtype)
    layer.build(big.shape[1:], np.random.default_rng(0))
    layer.params["bias"][:] = np.linspace(-1, 1, 12)
    layer.upsampled_input = up
    assert not layer.runs_direct(False) and not layer.runs_direct(True)  # 144 channel pairs: im2col
    g = rng.standard_normal((5, *layer.output_shape)).astype(dtype)
    calls = []
    spy = conv_gemm.forward
    monkeypatch.setattr(conv_gemm, "forward", lambda *a: calls.append(1) or spy(*a))

    def passes(training):
        return layer.forward(x, training).copy(), layer.backward(g).copy(), layer.grads["kernel"].copy()

    got = [passes(False), passes(True)]
    monkeypatch.setattr(conv_gemm, "PATCH_BYTES", 1)  # one image per group: threads share the images
    got += [passes(False), passes(True)]
    assert len(calls) == 4
    monkeypatch.setattr(blas, "find", lambda: None)
    want = passes(True)
    got.append(passes(False))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for result in got:
        for a, b in zip(result, want):
            np.testing.assert_allclose(a, b, **tol)


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("up", [None, (2, 2), (1, 3)])
def test_conv2d_gemm_forward_matches_its_twin(up, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 4, 6)).astype(dtype)
    layer = Conv2D(7, 3, padding="same", dtype=dtype)
    layer.build(x.shape[1:] if up is None else (5 * up[0], 4 * up[1], 6), np.random.default_rng(0))
    args = (x, *layer._gemm_plan(up or (1, 1)), up or (1, 1), rng.standard_normal(7).astype(dtype), 2)
    out = np.empty((3, *layer.output_shape), dtype)
    assert conv_gemm.forward(*args, out, lambda size: np.empty(size, dtype)) is out
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, conv_gemm.forward_ref(*args, np.empty_like(out)), **tol)
