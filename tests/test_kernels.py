"""Every Numba kernel equals its NumPy twin, in float32 and float64, over random shapes."""

import numpy as np
import pytest

from npae import elementwise as E  # noqa: N812
from npae import kernels as K  # noqa: N812

DTYPES = [np.float32, np.float64]


def random_windows(rng, n_cases=12):
    for _ in range(n_cases):
        n, h, w, c = rng.integers(1, 4), rng.integers(1, 9), rng.integers(1, 9), rng.integers(1, 5)
        kh, kw = rng.integers(1, 4), rng.integers(1, 4)
        sh, sw = rng.integers(1, 3), rng.integers(1, 3)
        padding = rng.choice(["valid", "same"])
        if padding == "valid" and (h < kh or w < kw):
            padding = "same"
        ho, pt, _ = K.window_geometry(h, kh, sh, padding)
        wo, pl, _ = K.window_geometry(w, kw, sw, padding)
        yield (int(n), int(h), int(w), int(c)), (int(kh), int(kw), int(sh), int(sw), pt, pl, ho, wo)


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_and_col2im_match_twins(dtype):
    rng = np.random.default_rng(1)
    for shape, win in random_windows(rng):
        x = rng.standard_normal(shape).astype(dtype)
        cols = K.im2col(x, *win)
        np.testing.assert_array_equal(cols, K.im2col_ref(x, *win), err_msg=f"shape {shape} window {win}")
        assert cols.dtype == dtype
        g = rng.standard_normal(cols.shape).astype(dtype)
        got, want = K.col2im(g, *shape, *win), K.col2im_ref(g, *shape, *win)
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6,
                                   err_msg=f"shape {shape} window {win}")
        # col2im is the adjoint of im2col: <im2col(x), g> == <x, col2im(g)>
        assert np.isclose(np.sum(cols * g, dtype=np.float64), np.sum(x * got, dtype=np.float64), rtol=1e-4)
        # accumulate=True adds to what out holds (both versions)
        for f in (K.col2im, K.col2im_ref):
            acc = x.copy()
            f(g, *shape, *win, acc, accumulate=True)
            np.testing.assert_allclose(acc, x + want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_matches_twin(dtype):
    rng = np.random.default_rng(2)
    for shape, win in random_windows(rng):
        x = rng.standard_normal(shape).astype(dtype)
        out, arg = K.maxpool_forward(x, *win)
        out_r, arg_r = K.maxpool_forward_ref(x, *win)
        np.testing.assert_array_equal(out, out_r)
        np.testing.assert_array_equal(arg, arg_r)
        g = rng.standard_normal(out.shape).astype(dtype)
        assert arg.dtype == K.argmax_dtype(*win[:2])
        np.testing.assert_allclose(K.maxpool_backward(g, arg, shape[1], shape[2], *win[:6]),
                                   K.maxpool_backward_ref(g, arg, shape[1], shape[2], *win[:6]), rtol=1e-6)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_maxpool_2x2_fast_path_matches_twin(padding):
    # whole 2x2 windows take the kernel's fast path, the odd last row/column the general one;
    # small integers make ties common (the first in row-major order must win on both paths)
    rng = np.random.default_rng(9)
    x = rng.integers(0, 3, (3, 7, 9, 5)).astype(np.float32)
    ho, pt, _ = K.window_geometry(7, 2, 2, padding)
    wo, pl, _ = K.window_geometry(9, 2, 2, padding)
    win = (2, 2, 2, 2, pt, pl, ho, wo)
    out, arg = K.maxpool_forward(x, *win)
    out_r, arg_r = K.maxpool_forward_ref(x, *win)
    np.testing.assert_array_equal(out, out_r)
    np.testing.assert_array_equal(arg, arg_r)
    # its backward's own fast path writes every pixel once (odd last row/column: a window or none)
    g = rng.standard_normal(out.shape).astype(np.float32)
    dx = np.full(x.shape, np.nan, np.float32)
    K.maxpool_backward(g, arg, 7, 9, *win[:6], dx)
    np.testing.assert_array_equal(dx, K.maxpool_backward_ref(g, arg, 7, 9, *win[:6]))


@pytest.mark.parametrize("win", [(2, 2, 2, 2, 0, 0, 3, 4), (3, 2, 1, 2, 1, 0, 7, 4)])  # fast path; general
def test_maxpool_backward_through_a_relu_is_the_relu_backward_of_it(win):
    # pooling relu(z): relu_of= hands back dL/dz, the relu's derivative 1[relu(z) > 0] applied to
    # dL/d(relu(z)); many windows are all <= 0 (pooled value 0: no gradient at all)
    rng = np.random.default_rng(11)
    z = rng.standard_normal((3, 7, 9, 4)) - 0.8
    a = np.maximum(z, 0)
    out, arg = K.maxpool_forward(a, *win)
    g = rng.standard_normal(out.shape)
    assert (out == 0).mean() > 0.1
    want = K.maxpool_backward_ref(g, arg, 7, 9, *win[:6]) * (a > 0)
    got = K.maxpool_backward(g, arg, 7, 9, *win[:6], np.full(z.shape, np.nan), relu_of=out)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(K.maxpool_backward_ref(g, arg, 7, 9, *win[:6], relu_of=out), want)


def test_out_buffers_give_the_same_results():
    rng = np.random.default_rng(8)
    for shape, win in random_windows(rng, 6):
        x = rng.standard_normal(shape).astype(np.float32)
        cols = K.im2col(x, *win)
        for f in (K.im2col, K.im2col_ref):
            buf = np.full_like(cols, np.nan)
            assert f(x, *win, buf) is buf
            np.testing.assert_array_equal(buf, cols)
        out, arg = K.maxpool_forward(x, *win)
        for f in (K.maxpool_forward, K.maxpool_forward_ref):
            buf, obuf = np.full(arg.shape, 99, arg.dtype), np.full(out.shape, np.nan, np.float32)
            out2, arg2 = f(x, *win, buf, obuf)
            assert arg2 is buf and out2 is obuf
            np.testing.assert_array_equal(arg2, arg)
            np.testing.assert_array_equal(out2, out)
        # the backward kernels must overwrite every element of a dirty buffer
        g = rng.standard_normal(out.shape).astype(np.float32)
        dx = K.maxpool_backward(g, arg, *shape[1:3], *win[:6])
        for f in (K.maxpool_backward, K.maxpool_backward_ref):
            buf = np.full(shape, np.nan, np.float32)
            np.testing.assert_array_equal(f(g, arg, *shape[1:3], *win[:6], buf), dx)
            np.testing.assert_array_equal(buf, dx)
        gc = rng.standard_normal(cols.shape).astype(np.float32)
        dx = K.col2im(gc, *shape, *win)
        for f in (K.col2im, K.col2im_ref):
            buf = np.full(shape, np.nan, np.float32)
            assert f(gc, *shape, *win, buf) is buf
            np.testing.assert_allclose(buf, dx, rtol=1e-5, atol=1e-6)
    x = rng.standard_normal((3, 4, 5, 2)).astype(np.float32)
    up = K.upsample_forward(x, 2, 3)
    for f in (K.upsample_forward, K.upsample_forward_ref):
        buf = np.full(up.shape, np.nan, np.float32)
        assert f(x, 2, 3, buf) is buf
        np.testing.assert_array_equal(buf, up)
    dx = K.upsample_backward(up, 2, 3)
    for f in (K.upsample_backward, K.upsample_backward_ref):
        buf = np.full(x.shape, np.nan, np.float32)
        assert f(up, 2, 3, buf) is buf
        np.testing.assert_allclose(buf, dx, rtol=1e-6)


def test_maxpool_argmax_codes_and_large_windows():
    # the winner's place in its window, dy << 4 | dx in a uint8; windows over 16 wide use an int32
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 3, 2, 0] = 5.0  # in the bottom-right 2x2 window at (1, 0) of it
    out, arg = K.maxpool_forward(x, 2, 2, 2, 2, 0, 0, 2, 2)
    assert arg.dtype == np.uint8 and arg[0, 1, 1, 0] == (1 << 4 | 0) and out[0, 1, 1, 0] == 5.0
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 20, 18, 3))
    win = (17, 3, 1, 2, 8, 1, 20, 9)  # 'same' 17x3 window, stride (1, 2)
    out, arg = K.maxpool_forward(x, *win)
    out_r, arg_r = K.maxpool_forward_ref(x, *win)
    assert arg.dtype == np.int32
    np.testing.assert_array_equal(out, out_r)
    np.testing.assert_array_equal(arg, arg_r)
    g = rng.standard_normal(out.shape)
    np.testing.assert_allclose(K.maxpool_backward(g, arg, 20, 18, *win[:6]),
                               K.maxpool_backward_ref(g, arg, 20, 18, *win[:6]), rtol=1e-12)


def test_maxpool_ties_send_gradient_to_one_input():
    x = np.zeros((1, 2, 2, 1), np.float64)  # all four inputs tie
    out, arg = K.maxpool_forward(x, 2, 2, 2, 2, 0, 0, 1, 1)
    dx = K.maxpool_backward(np.ones_like(out), arg, 2, 2, 2, 2, 2, 2, 0, 0)
    assert dx.sum() == 1.0 and np.count_nonzero(dx) == 1


def test_maxpool_same_pads_with_minus_inf_at_bottom_right():
    x = -np.ones((1, 7, 7, 1), np.float32) * np.arange(1, 50, dtype=np.float32).reshape(1, 7, 7, 1)
    ho, pt, pb = K.window_geometry(7, 2, 2, "same")
    assert (ho, pt, pb) == (4, 0, 1)
    out, _ = K.maxpool_forward(x, 2, 2, 2, 2, pt, pt, ho, ho)
    # the last row/column windows hold one real row/column: their max is a real (negative) value, not 0
    assert out[0, 3, 3, 0] == -49.0 and (out < 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_upsampling_matches_twin_and_backward_sums_blocks(dtype):
    rng = np.random.default_rng(3)
    for sh, sw in [(2, 2), (1, 3), (3, 2)]:
        x = rng.standard_normal((2, 3, 4, 2)).astype(dtype)
        np.testing.assert_array_equal(K.upsample_forward(x, sh, sw), K.upsample_forward_ref(x, sh, sw))
        g = rng.standard_normal((2, 3 * sh, 4 * sw, 2)).astype(dtype)
        got = K.upsample_backward(g, sh, sw)
        np.testing.assert_allclose(got, K.upsample_backward_ref(g, sh, sw), rtol=1e-6)
        np.testing.assert_allclose(got[0, 0, 0, 0], g[0, :sh, :sw, 0].sum(), rtol=1e-6)


def test_col2im_loses_no_update_with_overlapping_windows():
    # stride 1, 3x3 windows: every interior pixel is covered by 9 windows
    x_shape = (4, 6, 6, 3)
    win = (3, 3, 1, 1, 1, 1, 6, 6)
    ones = np.ones((4 * 36, 27), np.float64)
    dx = K.col2im(ones, *x_shape, *win)
    assert dx[:, 1:-1, 1:-1, :].min() == 9 and dx[:, 0, 0, :].max() == 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_conv_matches_twins_and_its_adjoints(dtype):
    # conv2d_s1 (forward), conv2d_s1_input_grad and conv2d_s1_kernel_grad agree with im2col + GEMM
    # (+ col2im), and are adjoints:
    # <conv(x, w), g> = <x, conv(g, w_flipped)> = <w, kernel_grad(x, g)>
    rng = np.random.default_rng(4)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-12}
    # (the kernels take output channels and, for the rest, input channels four at a time)
    cases = [*random_windows(rng, 16), ((2, 5, 6, 9), (3, 3)), ((1, 4, 3, 4), (2, 3))]
    for shape, (kh, kw, *_) in cases:
        n, h, w, cin = shape
        padding = str(rng.choice(["valid", "same"])) if h >= kh and w >= kw else "same"
        ho, pt, _ = K.window_geometry(h, kh, 1, padding)
        wo, pl, _ = K.window_geometry(w, kw, 1, padding)
        cout = int(rng.integers(1, 11))
        x = rng.standard_normal(shape).astype(dtype)
        wt = rng.standard_normal((kh, kw, cin, cout)).astype(dtype)
        g = rng.standard_normal((n, ho, wo, cout)).astype(dtype)
        where = f"shape {shape} kernel {wt.shape} padding {padding}"
        z = K.conv2d_s1(x, wt, pt, pl, ho, wo, np.empty((n, ho, wo, cout), dtype))
        np.testing.assert_allclose(z, K.conv2d_s1_ref(x, wt, pt, pl, ho, wo, np.empty_like(z)), **tol, err_msg=where)
        dx = K.conv2d_s1_input_grad(g, wt, pt, pl, np.full_like(x, np.nan))
        np.testing.assert_allclose(dx, K.conv2d_s1_input_grad_ref(g, wt, pt, pl, np.empty_like(x)), **tol,
                                   err_msg=where)
        dw = K.conv2d_s1_kernel_grad(x, g, pt, pl, np.empty_like(wt))
        np.testing.assert_allclose(dw, K.conv2d_s1_kernel_grad_ref(x, g, pt, pl, np.empty_like(wt)), **tol,
                                   err_msg=where)
        zg = np.sum(z * g, dtype=np.float64)
        assert np.isclose(zg, np.sum(x * dx, dtype=np.float64), rtol=1e-4), where
        assert np.isclose(zg, np.sum(wt * dw, dtype=np.float64), rtol=1e-4), where


@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_conv_of_an_upsampled_input_matches_twins_and_adjoints(dtype):
    # conv2d_s1(x, up=u) = conv2d_s1(upsampled x), phase by phase; its input and kernel gradients are
    # those of the convolution of the upsampled x followed by the upsampling's own backward pass
    rng = np.random.default_rng(6)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-12}
    for case in range(12):
        up = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        hs, ws, cin, cout = (int(v) for v in rng.integers(1, [5, 5, 6, 6]))
        n = 2
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        h, w = hs * up[0], ws * up[1]
        padding = "valid" if case % 2 and h >= kh and w >= kw else "same"
        ho, pt, _ = K.window_geometry(h, kh, 1, padding)
        wo, pl, _ = K.window_geometry(w, kw, 1, padding)
        x = rng.standard_normal((n, hs, ws, cin)).astype(dtype)
        wt = rng.standard_normal((kh, kw, cin, cout)).astype(dtype)
        g = rng.standard_normal((n, ho, wo, cout)).astype(dtype)
        where = f"case {case}: x {x.shape} up {up} kernel {wt.shape} {padding}"
        z = K.conv2d_s1(x, wt, pt, pl, ho, wo, np.empty((n, ho, wo, cout), dtype), up=up)
        big = x.repeat(up[0], axis=1).repeat(up[1], axis=2)
        np.testing.assert_allclose(z, K.conv2d_s1_ref(big, wt, pt, pl, ho, wo, np.empty_like(z)), **tol, err_msg=where)
        np.testing.assert_allclose(z, K.conv2d_s1_ref(x, wt, pt, pl, ho, wo, np.empty_like(z), up=up), **tol)
        dw = K.conv2d_s1_kernel_grad(x, g, pt, pl, np.empty_like(wt), up=up)
        np.testing.assert_allclose(dw, K.conv2d_s1_kernel_grad_ref(big, g, pt, pl, np.empty_like(wt)), **tol,
                                   err_msg=where)
        np.testing.assert_allclose(dw, K.conv2d_s1_kernel_grad_ref(x, g, pt, pl, np.empty_like(wt), up=up), **tol)
        dx = np.full_like(x, np.nan)  # every pixel written
        K.conv2d_s1_input_grad(g, wt, pt, pl, dx, up=up)
        np.testing.assert_allclose(dx, K.conv2d_s1_input_grad_ref(g, wt, pt, pl, np.empty_like(x), up=up), **tol,
                                   err_msg=where)
        dx_big = K.conv2d_s1_input_grad_ref(g, wt, pt, pl, np.empty_like(big))  # the upsampling's adjoint after it
        np.testing.assert_allclose(dx, K.upsample_backward_ref(dx_big, *up), **tol, err_msg=where)
        assert np.isclose(np.sum(z * g, dtype=np.float64), np.sum(x * dx, dtype=np.float64), rtol=1e-4), where


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [0, 1, 2])
def test_direct_conv_adds_bias_and_activation_as_it_writes(dtype, act):
    # conv2d_s1(bias=, act=) = act(conv2d_s1 + bias), plain and upsampled input
    rng = np.random.default_rng(7 + act)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-12}
    for up, cin, cout in [((1, 1), 1, 9), ((2, 2), 5, 1), ((1, 2), 3, 4)]:
        x = rng.standard_normal((3, 4, 3, cin)).astype(dtype)
        h, w = 4 * up[0], 3 * up[1]
        wt = rng.standard_normal((3, 3, cin, cout)).astype(dtype)
        b = rng.standard_normal(cout).astype(dtype)
        got = K.conv2d_s1(x, wt, 1, 1, h, w, np.full((3, h, w, cout), np.nan, dtype), up=up, bias=b, act=act)
        want = K.conv2d_s1_ref(x, wt, 1, 1, h, w, np.empty_like(got), up=up, bias=b, act=act)
        np.testing.assert_allclose(got, want, **tol)
        plain = K.conv2d_s1(x, wt, 1, 1, h, w, np.empty_like(got), up=up)
        np.testing.assert_allclose(got, E.bias_act_forward_ref(plain.reshape(-1, cout), b, act).reshape(got.shape),
                                   **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [0, 1, 2])
def test_direct_conv_with_the_pooling_in_its_kernel(dtype, act):
    # conv2d_s1_maxpool2x2 = maxpool_forward(act(conv2d_s1 + bias)), winners included; and the
    # kernel and input gradients from the pooled output's gradient (argmax=) = those of its unpooling
    rng = np.random.default_rng(11 + act)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-12}
    for (n, h, w, cin, cout, padding) in [(3, 6, 4, 1, 9, "same"), (2, 8, 8, 5, 4, "same"), (1, 6, 8, 3, 2, "valid")]:
        ho, pt, _ = K.window_geometry(h, 3, 1, padding)
        wo, pl, _ = K.window_geometry(w, 3, 1, padding)
        x = rng.standard_normal((n, h, w, cin)).astype(dtype)
        wt = rng.standard_normal((3, 3, cin, cout)).astype(dtype)
        b = rng.standard_normal(cout).astype(dtype)
        shape = (n, ho // 2, wo // 2, cout)
        pooled, argmax = np.full(shape, np.nan, dtype), np.full(shape, 9, np.uint8)
        assert K.conv2d_s1_maxpool2x2(x, wt, pt, pl, ho, wo, b, act, pooled, argmax) is pooled
        z = K.conv2d_s1(x, wt, pt, pl, ho, wo, np.empty((n, ho, wo, cout), dtype), bias=b, act=act)
        want, want_argmax = K.maxpool_forward_ref(z, 2, 2, 2, 2, 0, 0, ho // 2, wo // 2)
        np.testing.assert_allclose(pooled, want, **tol)
        np.testing.assert_array_equal(argmax, want_argmax)
        twin, twin_argmax = np.empty_like(pooled), np.empty_like(argmax)
        K.conv2d_s1_maxpool2x2_ref(x, wt, pt, pl, ho, wo, b, act, twin, twin_argmax)
        np.testing.assert_allclose(twin, want, **tol)
        np.testing.assert_array_equal(twin_argmax, want_argmax)
        g = rng.standard_normal(shape).astype(dtype)
        unpooled = K.maxpool_backward_ref(g, argmax, ho, wo, 2, 2, 2, 2, 0, 0)
        dw = K.conv2d_s1_kernel_grad(x, g, pt, pl, np.empty_like(wt), argmax=argmax)
        np.testing.assert_allclose(dw, K.conv2d_s1_kernel_grad(x, unpooled, pt, pl, np.empty_like(wt)), **tol)
        np.testing.assert_allclose(dw, K.conv2d_s1_kernel_grad_ref(x, g, pt, pl, np.empty_like(wt), argmax=argmax),
                                   **tol)
        dx = K.conv2d_s1_input_grad(g, wt, pt, pl, np.full_like(x, np.nan), argmax=argmax)
        np.testing.assert_allclose(dx, K.conv2d_s1_input_grad(unpooled, wt, pt, pl, np.empty_like(x)), **tol)
        np.testing.assert_allclose(dx, K.conv2d_s1_input_grad_ref(g, wt, pt, pl, np.empty_like(x), argmax=argmax),
                                   **tol)


def test_window_geometry_rules():
    assert K.window_geometry(28, 3, 1, "same") == (28, 1, 1)
    assert K.window_geometry(16, 3, 1, "valid") == (14, 0, 0)
    assert K.window_geometry(7, 2, 2, "same") == (4, 0, 1)
    assert K.window_geometry(6, 4, 1, "same") == (6, 1, 2)  # odd total pad: extra after
    with pytest.raises(ValueError, match="expected an input of at least 5, got 4"):
        K.window_geometry(4, 5, 1, "valid")
    with pytest.raises(ValueError, match="padding must be"):
        K.window_geometry(4, 2, 1, "full")


def _pool_in_child(x):
    out, _ = K.maxpool_forward(x, 2, 2, 2, 2, 0, 0, 3, 3)
    return float(out.sum())


def test_forked_children_run_parallel_kernels():
    # GNU OpenMP kills a forked child that runs a parallel region; npae's threading layer
    # (TBB, else workqueue: npae/_threads.py) must let multiprocessing's fork start method work
    import multiprocessing
    import os

    import numba

    x = np.random.default_rng(0).random((8, 6, 6, 3), dtype=np.float32)
    want = _pool_in_child(x)  # the parent runs a parallel kernel first
    assert numba.threading_layer() in ("tbb", "workqueue") or "NUMBA_THREADING_LAYER" in os.environ
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.map_async(_pool_in_child, [x, x]).get(timeout=120)
    assert got == [want, want]
