"""Winograd's F(2x2, 3x3) convolution (npae.winograd): its kernels, its NumPy twins and the Conv2D
layers that take it give im2col's numbers, forward and backward, in float32 and float64."""

import numpy as np
import pytest
from test_inference import needs_openblas

from npae import blas, kernels, winograd
from npae.layers import Conv2D

CASES = [  # (N, H, W, Cin, Cout, padding, up): even and odd sizes, 'same' and 'valid', read upsampled
    (3, 14, 14, 32, 32, "same", (1, 1)), (2, 7, 7, 5, 3, "same", (1, 1)), (2, 9, 6, 4, 6, "valid", (1, 1)),
    (1, 5, 8, 3, 2, "same", (1, 1)), (2, 3, 3, 2, 3, "valid", (1, 1)), (1, 1, 2, 3, 2, "same", (1, 1)),
    (3, 7, 7, 32, 32, "same", (2, 2)), (2, 5, 4, 5, 3, "same", (2, 2)), (2, 4, 5, 4, 6, "valid", (2, 2)),
    (2, 3, 4, 3, 2, "same", (1, 2)), (2, 3, 3, 3, 2, "same", (3, 2)), (1, 1, 1, 2, 2, "same", (2, 2))]


def im2col_conv(x, kernel, pt, pl, ho, wo, g, up):
    """Output, kernel gradient and input gradient by im2col of x upsampled (kernels' twins): the
    reference."""
    big = kernels.upsample_forward_ref(x, *up)
    n, h, w, cin = big.shape
    cout = kernel.shape[3]
    p = kernels.im2col_ref(big, 3, 3, 1, 1, pt, pl, ho, wo)
    out = (p @ kernel.reshape(-1, cout)).reshape(n, ho, wo, cout)
    kernel_grad = (p.T @ g.reshape(-1, cout)).reshape(kernel.shape)
    d_big = np.zeros_like(big)
    kernels.col2im(g.reshape(-1, cout) @ kernel.reshape(-1, cout).T, n, h, w, cin, 3, 3, 1, 1, pt, pl, ho, wo, d_big)
    return out, kernel_grad, kernels.upsample_backward_ref(d_big, *up)


def problem(case, dtype, seed=0):
    n, h, w, cin, cout, padding, up = case
    rng = np.random.default_rng(seed)
    (ho, pt, _), (wo, pl, _) = (kernels.window_geometry(h * up[0], 3, 1, padding),
                                kernels.window_geometry(w * up[1], 3, 1, padding))
    x = rng.standard_normal((n, h, w, cin)).astype(dtype)
    kernel = rng.standard_normal((3, 3, cin, cout)).astype(dtype)
    g = rng.standard_normal((n, ho, wo, cout)).astype(dtype)
    return x, kernel, g, (pt, pl, ho, wo), up


def assert_close(got, want):
    """Equal up to rounding: a few ulps of the largest value (sums of hundreds of terms of either
    sign, added in another order: an element near 0 carries its neighbours' rounding)."""
    eps = np.finfo(want.dtype).eps
    np.testing.assert_allclose(got, want, rtol=0, atol=64 * eps * max(1.0, float(np.abs(want).max())))


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("group_bytes", [winograd.GROUP_BYTES, 1])  # 1: one image per group
def test_kernels_give_im2cols_numbers(monkeypatch, case, dtype, group_bytes):
    monkeypatch.setattr(winograd, "GROUP_BYTES", group_bytes)
    x, kernel, g, (pt, pl, ho, wo), up = problem(case, dtype)
    want_out, want_kernel_grad, want_dx = im2col_conv(x, kernel, pt, pl, ho, wo, g, up)
    bias = np.linspace(-1, 1, kernel.shape[3]).astype(dtype)
    scratch = lambda size: np.full(size, np.nan, dtype)  # noqa: E731  (nothing read before written)
    out = np.full(g.shape, np.nan, dtype)
    assert winograd.forward(x, kernel, pt, pl, bias, 0, out, scratch, up) is out
    assert_close(out, want_out + bias)
    winograd.forward(x, kernel, pt, pl, bias, 1, out, scratch, up)  # relu, as it writes
    assert_close(out, np.maximum(want_out + bias, 0))
    kernel_grad, dx = np.full_like(kernel, np.nan), np.full_like(x, np.nan)
    assert winograd.backward(x, g, kernel, pt, pl, kernel_grad, dx, scratch, up) is kernel_grad
    assert_close(kernel_grad, want_kernel_grad)
    assert_close(dx, want_dx)
    kernel_grad[...] = np.nan  # without the input gradient: the same kernel gradient
    winograd.backward(x, g, kernel, pt, pl, kernel_grad, None, scratch, up)
    assert_close(kernel_grad, want_kernel_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_twins_give_im2cols_numbers(case, dtype):
    x, kernel, g, (pt, pl, ho, wo), up = problem(case, dtype, seed=1)
    want_out, want_kernel_grad, want_dx = im2col_conv(x, kernel, pt, pl, ho, wo, g, up)
    bias = np.linspace(-1, 1, kernel.shape[3]).astype(dtype)
    out = winograd.forward_ref(x, kernel, pt, pl, bias, 2, np.empty_like(g), up)
    assert_close(out, 1 / (1 + np.exp(-(want_out + bias))))
    kernel_grad, dx = np.empty_like(kernel), np.full_like(x, np.nan)
    winograd.backward_ref(x, g, kernel, pt, pl, kernel_grad, dx, up)
    assert_close(kernel_grad, want_kernel_grad)
    assert_close(dx, want_dx)


def test_kernel_transform_and_its_adjoint():
    # <G w G^T, dU> = <w, G^T dU G> for every w and dU: kernel_grad_of is transform_kernel's adjoint
    rng = np.random.default_rng(2)
    w, du = rng.standard_normal((3, 3, 4, 5)), rng.standard_normal((16, 4, 5))
    u = winograd.transform_kernel(w)
    assert u.shape == (16, 4, 5) and u.flags.c_contiguous
    np.testing.assert_allclose(u[0], w[0, 0])  # the corner of the basis is the corner tap itself
    dw = winograd.kernel_grad_of(du, np.empty_like(w))
    assert np.isclose(np.vdot(u, du), np.vdot(w, dw), rtol=1e-12)


def test_slabs_left_out_reading_an_image_upsampled_2x():
    assert len(winograd.slabs_of(1, 1, (1, 1))) == 16
    assert list(winograd.slabs_of(1, 1, (2, 2))) == [0, 1, 3, 4, 5, 7, 12, 13, 15]  # r, q in (0, 1, 3)
    assert len(winograd.slabs_of(0, 0, (2, 2))) == 16  # even padding: no tile row repeats inside
    assert len(winograd.slabs_of(1, 0, (2, 2))) == 12


def test_which_layers_take_it():
    def layer(filters, kernel_size, cin, **kw):
        conv = Conv2D(filters, kernel_size, padding="same", **kw)
        conv.build((14, 14, cin), np.random.default_rng(0))
        return conv

    expected = blas.find() is not None  # and only where npae can call OpenBLAS's GEMM itself
    assert layer(32, 3, 32).winograd_mode == expected  # the denoiser's 32 -> 32
    assert layer(16, 3, 16).winograd_mode == expected  # 256 channel pairs
    assert not layer(8, 3, 8).winograd_mode  # few channels: the direct kernel
    assert not layer(1, 3, 32).winograd_mode  # the last conv: direct
    assert not layer(32, (3, 2), 32).winograd_mode
    assert not layer(32, 3, 32, strides=2).winograd_mode
    up = layer(32, 3, 32)
    up.upsampled_input = (2, 2)  # the decoder's: read upsampled, 9 slabs
    assert up.winograd_mode == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding,up", [("same", None), ("valid", None), ("same", (2, 2)), ("valid", (2, 2))])
def test_layer_gives_the_numpy_paths_numbers(monkeypatch, padding, up, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 7, 6, 12)).astype(dtype)
    layer = Conv2D(16, 3, padding=padding, activation="relu", dtype=dtype)  # 192 channel pairs
    layer.build(x.shape[1:] if up is None else (14, 12, 12), np.random.default_rng(0))
    layer.params["bias"][:] = np.linspace(-1, 1, 16)
    layer.upsampled_input = up
    g = rng.standard_normal((5, *layer.output_shape)).astype(dtype)

    def passes(training):
        return layer.forward(x, training).copy(), layer.backward(g).copy(), layer.grads["kernel"].copy()

    got = [passes(True), passes(False)]
    assert layer._path == ("winograd" if blas.find() is not None else "im2col")
    monkeypatch.setattr(blas, "find", lambda: None)  # without OpenBLAS: NumPy's im2col blocks
    want = passes(True)
    assert not layer.winograd_mode and layer._path == "im2col"
    for result in got:
        for a, b in zip(result, want):
            assert_close(a, b)


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [0, 1, 2])
def test_kernels_pool_each_tile(act, dtype):
    # argmax=: the output's 2x2 max pooling (a tile is a window), as kernels.maxpool_forward gives
    # it; the backward pass from the pooled gradient = from its unpooling
    x, kernel, _, (pt, pl, ho, wo), _ = problem((3, 6, 8, 5, 7, "same", (1, 1)), dtype, seed=2)
    bias = np.linspace(-1, 1, 7).astype(dtype)
    scratch = lambda size: np.full(size, np.nan, dtype)  # noqa: E731
    plain = winograd.forward(x, kernel, pt, pl, bias, act, np.empty((3, ho, wo, 7), dtype), scratch)
    want, want_argmax = kernels.maxpool_forward_ref(plain, 2, 2, 2, 2, 0, 0, ho // 2, wo // 2)
    pooled, argmax = np.full(want.shape, np.nan, dtype), np.full(want.shape, 9, np.uint8)
    assert winograd.forward(x, kernel, pt, pl, bias, act, pooled, scratch, argmax=argmax) is pooled
    np.testing.assert_array_equal(pooled, want)
    np.testing.assert_array_equal(argmax, want_argmax)
    g = np.random.default_rng(3).standard_normal(want.shape).astype(dtype)
    unpooled = kernels.maxpool_backward_ref(g, argmax, ho, wo, 2, 2, 2, 2, 0, 0)
    want_kernel_grad, want_dx = np.empty_like(kernel), np.empty_like(x)
    winograd.backward(x, unpooled, kernel, pt, pl, want_kernel_grad, want_dx, scratch)
    kernel_grad, dx = np.full_like(kernel, np.nan), np.full_like(x, np.nan)
    winograd.backward(x, g, kernel, pt, pl, kernel_grad, dx, scratch, argmax=argmax)
    assert_close(kernel_grad, want_kernel_grad)
    assert_close(dx, want_dx)
    with pytest.raises(ValueError, match="upsampled input is not supported"):
        winograd.forward(x, kernel, pt, pl, bias, act, pooled, scratch, up=(2, 2), argmax=argmax)
