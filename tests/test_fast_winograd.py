"""Winograd's F(2x2, 3x3) convolution kernels (npae.fast.winograd) compute the reference convolution
(npae.functional.conv, of the input upsampled by npae.functional.upsample where it is read
upsampled), forward and backward, in float32 and float64."""

import sys

import numpy as np
import pytest

from npae import functional as ref
from npae.fast import pool, winograd
from npae.fast.elementwise import ACT_CODES


def numpy_uses_openblas() -> bool:
    info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return "openblas" in info["name"].lower() and sys.platform.startswith("linux")


needs_openblas = pytest.mark.skipif(not numpy_uses_openblas(), reason="NumPy is not built on OpenBLAS here")

ACT_NAMES = {code: name for name, code in ACT_CODES.items()}  # 0 linear, 1 relu, 2 sigmoid

CASES = [  # (N, H, W, Cin, Cout, padding, up): even and odd sizes, 'same' and 'valid', read upsampled
    (3, 14, 14, 32, 32, "same", (1, 1)), (2, 7, 7, 5, 3, "same", (1, 1)), (2, 9, 6, 4, 6, "valid", (1, 1)),
    (1, 5, 8, 3, 2, "same", (1, 1)), (2, 3, 3, 2, 3, "valid", (1, 1)), (1, 1, 2, 3, 2, "same", (1, 1)),
    (3, 7, 7, 32, 32, "same", (2, 2)), (2, 5, 4, 5, 3, "same", (2, 2)), (2, 4, 5, 4, 6, "valid", (2, 2)),
    (2, 3, 4, 3, 2, "same", (1, 2)), (2, 3, 3, 3, 2, "same", (3, 2)), (1, 1, 1, 2, 2, "same", (2, 2))]


def reference_conv(x, kernel, padding, g, up):
    """Output, kernel gradient and input gradient of the reference 3x3 convolution of x upsampled by
    ``up`` (the upsampling's backward pass after the convolution's)."""
    big, up_cache = ref.upsample.forward(x, up)
    out, cache = ref.conv.forward(big, kernel, None, (1, 1), padding)
    d_big, kernel_grad, _ = ref.conv.backward(g, cache)
    return out, kernel_grad, ref.upsample.backward(d_big, up_cache)


def problem(case, dtype, seed=0):
    n, h, w, cin, cout, padding, up = case
    rng = np.random.default_rng(seed)
    (ho, pt, _), (wo, pl, _) = (ref.conv.output_size(h * up[0], 3, 1, padding),
                                ref.conv.output_size(w * up[1], 3, 1, padding))
    x = rng.standard_normal((n, h, w, cin)).astype(dtype)
    kernel = rng.standard_normal((3, 3, cin, cout)).astype(dtype)
    g = rng.standard_normal((n, ho, wo, cout)).astype(dtype)
    return x, kernel, g, (pt, pl, ho, wo), up


def assert_close(got, want):
    """Equal up to rounding: a few ulps of the largest value (sums of hundreds of terms of either
    sign, added in another order: an element near 0 carries its neighbours' rounding)."""
    eps = np.finfo(want.dtype).eps
    np.testing.assert_allclose(got, want, rtol=0, atol=64 * eps * max(1.0, float(np.abs(want).max())))


def nan_scratch(dtype):
    return lambda size: np.full(size, np.nan, dtype)  # nothing read before it is written


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("group_bytes", [winograd.GROUP_BYTES, 1])  # 1: one image per group
def test_kernels_give_the_reference_convolutions_numbers(monkeypatch, case, dtype, group_bytes):
    monkeypatch.setattr(winograd, "GROUP_BYTES", group_bytes)
    x, kernel, g, (pt, pl, ho, wo), up = problem(case, dtype)
    want_out, want_kernel_grad, want_dx = reference_conv(x, kernel, case[5], g, up)
    assert want_out.shape == g.shape
    bias = np.linspace(-1, 1, kernel.shape[3]).astype(dtype)
    scratch = nan_scratch(dtype)
    out = np.full(g.shape, np.nan, dtype)
    assert winograd.forward(x, kernel, pt, pl, bias, 0, out, scratch, up) is out
    assert_close(out, want_out + bias)
    for act in (1, 2):  # relu and sigmoid, as it writes
        winograd.forward(x, kernel, pt, pl, bias, act, out, scratch, up)
        assert_close(out, ref.activations.forward(want_out + bias, ACT_NAMES[act])[0])
    kernel_grad, dx = np.full_like(kernel, np.nan), np.full_like(x, np.nan)
    assert winograd.backward(x, g, kernel, pt, pl, kernel_grad, dx, scratch, up) is kernel_grad
    assert_close(kernel_grad, want_kernel_grad)
    assert_close(dx, want_dx)
    kernel_grad[...] = np.nan  # without the input gradient: the same kernel gradient
    winograd.backward(x, g, kernel, pt, pl, kernel_grad, None, scratch, up)
    assert_close(kernel_grad, want_kernel_grad)


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
    assert winograd.tiles(7, 8) == (4, 4) and winograd.tiles(1, 2) == (1, 1)


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [0, 1, 2])
def test_kernels_pool_each_tile(act, dtype):
    # argmax=: the output's 2x2 max pooling (a tile is a window), as the reference pooling gives it;
    # the backward pass from the pooled gradient = from its unpooling
    x, kernel, _, (pt, pl, ho, wo), _ = problem((3, 6, 8, 5, 7, "same", (1, 1)), dtype, seed=2)
    bias = np.linspace(-1, 1, 7).astype(dtype)
    scratch = nan_scratch(dtype)
    plain = winograd.forward(x, kernel, pt, pl, bias, act, np.empty((3, ho, wo, 7), dtype), scratch)
    want, cache = ref.pool.forward(plain, (2, 2))
    pooled, argmax = np.full(want.shape, np.nan, dtype), np.full(want.shape, 9, np.uint8)
    assert winograd.forward(x, kernel, pt, pl, bias, act, pooled, scratch, argmax=argmax) is pooled
    np.testing.assert_array_equal(pooled, want)
    s = pool.code_shift(argmax.itemsize)  # the winner's code dy << s | dx; the reference's index dy * 2 + dx
    np.testing.assert_array_equal((argmax >> s) * 2 + (argmax & ((1 << s) - 1)), cache.winner)
    # the pooled output is the reference's pooling of the reference convolution's, too
    z, _ = ref.conv.forward(x, kernel, bias, (1, 1), "same")
    assert_close(pooled, ref.pool.forward(ref.activations.forward(z, ACT_NAMES[act])[0], (2, 2))[0])
    g = np.random.default_rng(3).standard_normal(want.shape).astype(dtype)
    unpooled = ref.pool.backward(g, cache)
    want_kernel_grad, want_dx = np.empty_like(kernel), np.empty_like(x)
    winograd.backward(x, unpooled, kernel, pt, pl, want_kernel_grad, want_dx, scratch)
    _, conv_cache = ref.conv.forward(x, kernel, None, (1, 1), "same")
    ref_dx, ref_kernel_grad, _ = ref.conv.backward(unpooled, conv_cache)
    assert_close(want_kernel_grad, ref_kernel_grad)
    assert_close(want_dx, ref_dx)
    kernel_grad, dx = np.full_like(kernel, np.nan), np.full_like(x, np.nan)
    winograd.backward(x, g, kernel, pt, pl, kernel_grad, dx, scratch, argmax=argmax)
    assert_close(kernel_grad, want_kernel_grad)
    assert_close(dx, want_dx)
    big_shape = (3, ho, wo, 7)  # the 2x upsampled input's 2ho x 2wo outputs ('same'), pooled
    with pytest.raises(ValueError, match="upsampled input is not supported"):
        winograd.forward(x, kernel, pt, pl, bias, act, np.empty(big_shape, dtype), scratch, up=(2, 2),
                         argmax=np.empty(big_shape, np.uint8))


def wrong_out_calls():
    """Calls of the two kernels with one array of a wrong shape (or dtype), by name."""
    rng = np.random.default_rng(4)
    f32 = np.float32
    x = rng.standard_normal((2, 6, 6, 3)).astype(f32)
    kernel = rng.standard_normal((3, 3, 3, 4)).astype(f32)
    bias, g = np.zeros(4, f32), rng.standard_normal((2, 6, 6, 4)).astype(f32)
    scratch, narrow = nan_scratch(f32), np.ascontiguousarray(g[:, :, :2])
    return {
        "forward channels": lambda: winograd.forward(x, kernel, 1, 1, bias, 0, np.empty((2, 6, 6, 3), f32), scratch),
        "forward batch": lambda: winograd.forward(x, kernel, 1, 1, bias, 0, np.empty((3, 6, 6, 4), f32), scratch),
        "forward dtype": lambda: winograd.forward(x, kernel, 1, 1, bias, 0, np.empty((2, 6, 6, 4)), scratch),
        "forward too large": lambda: winograd.forward(x, kernel, 1, 1, bias, 0, np.empty((2, 40, 40, 4), f32), scratch),
        "forward too small": lambda: winograd.forward(x, kernel, 1, 1, bias, 0, np.empty((2, 2, 6, 4), f32), scratch),
        "forward bias": lambda: winograd.forward(x, kernel, 1, 1, bias[:3], 0, np.empty((2, 6, 6, 4), f32), scratch),
        "forward argmax": lambda: winograd.forward(x, kernel, 1, 1, bias, 0, np.empty((2, 3, 3, 4), f32), scratch,
                                                   argmax=np.empty((2, 3, 2, 4), np.uint8)),
        "backward kernel_grad": lambda: winograd.backward(x, g, kernel, 1, 1, np.empty((3, 3, 3, 5), f32), None,
                                                          scratch),
        "backward dx": lambda: winograd.backward(x, g, kernel, 1, 1, np.empty_like(kernel),
                                                 np.empty((2, 6, 5, 3), f32), scratch),
        "backward gradient size": lambda: winograd.backward(x, narrow, kernel, 1, 1, np.empty_like(kernel),
                                                            np.empty_like(x), scratch),
    }


@needs_openblas
@pytest.mark.parametrize("what", sorted(wrong_out_calls()))
def test_wrong_out_arrays_are_rejected(what):
    # the kernels trust their arrays' shapes: forward and backward check them first (a wrong shape
    # is a ValueError, never a write outside an array)
    call = wrong_out_calls()[what]
    with pytest.raises(ValueError):
        call()
