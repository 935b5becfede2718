"""The fast path's window kernels (npae.fast: im2col, pool, upsample, phases, conv_direct) compute
their reference operations (npae.functional: conv, pool, upsample, activations), in float32 and
float64, over random shapes."""

import numpy as np
import pytest

from npae import functional as ref
from npae.fast import conv_direct, im2col, phases, pool, upsample
from npae.fast.elementwise import ACT_CODES

DTYPES = [np.float32, np.float64]
ACT_NAMES = {code: name for name, code in ACT_CODES.items()}  # 0 linear, 1 relu, 2 sigmoid


def random_windows(rng, n_cases=12):
    """(shape, window, padding): an image batch (N, H, W, C) and a window (kh, kw, sh, sw, pt, pl, ho,
    wo) with 'valid' or 'same' padding (the fast kernels' arguments)."""
    for _ in range(n_cases):
        n, h, w, c = rng.integers(1, 4), rng.integers(1, 9), rng.integers(1, 9), rng.integers(1, 5)
        kh, kw = rng.integers(1, 4), rng.integers(1, 4)
        sh, sw = rng.integers(1, 3), rng.integers(1, 3)
        padding = str(rng.choice(["valid", "same"]))
        if padding == "valid" and (h < kh or w < kw):
            padding = "same"
        ho, pt, _ = ref.conv.output_size(int(h), int(kh), int(sh), padding)
        wo, pl, _ = ref.conv.output_size(int(w), int(kw), int(sw), padding)
        yield (int(n), int(h), int(w), int(c)), (int(kh), int(kw), int(sh), int(sw), pt, pl, ho, wo), padding


def padded(x, win, value=0.0):
    """x padded by (pt, pl) above and left and, below and right, by what makes the ho x wo windows
    fit (rows and columns no window reads are cut off): what the reference's im2col reads."""
    kh, kw, sh, sw, pt, pl, ho, wo = win
    _, h, w, _ = x.shape
    hp, wp = (ho - 1) * sh + kh, (wo - 1) * sw + kw
    xp = np.pad(x, ((0, 0), (pt, max(0, hp - pt - h)), (pl, max(0, wp - pl - w)), (0, 0)), constant_values=value)
    return xp[:, :hp, :wp]


def ref_im2col(x, win):
    kh, kw, sh, sw, _, _, ho, wo = win
    return ref.conv.im2col(padded(x, win), kh, kw, sh, sw, ho, wo)


def ref_col2im(cols, shape, win):
    """The reference col2im on the padded image, with the padding dropped."""
    kh, kw, sh, sw, pt, pl, ho, wo = win
    n, h, w, c = shape
    hp, wp = (ho - 1) * sh + kh, (wo - 1) * sw + kw
    dxp = ref.conv.col2im(cols, (n, hp, wp, c), kh, kw, sh, sw, ho, wo)
    dx = np.zeros(shape, cols.dtype)
    rows, columns = min(h, hp - pt), min(w, wp - pl)
    dx[:, :rows, :columns] = dxp[:, pt:pt + rows, pl:pl + columns]
    return dx


def ref_maxpool(x, win, padding=None):
    """(out, cache) of the reference max pooling: with its own 'valid' or 'same' padding, or (None)
    of x padded with -inf as ``win`` says."""
    kh, kw, sh, sw, pt, pl, ho, wo = win
    if padding is None:
        out, cache = ref.pool.forward(padded(x, win, -np.inf), (kh, kw), (sh, sw), "valid")
        cache = cache._replace(x_shape=x.shape, pads=(pt, pl))
    else:
        out, cache = ref.pool.forward(x, (kh, kw), (sh, sw), padding)
        assert cache.pads == (pt, pl)
    assert out.shape == (x.shape[0], ho, wo, x.shape[3])
    return out, cache


def winners(argmax, kw):
    """The reference's winner index a * kw + b of each fast argmax code a << s | b."""
    s = pool.code_shift(argmax.itemsize)
    codes = argmax.astype(np.int64)
    return (codes >> s) * kw + (codes & ((1 << s) - 1))


def unpool(g, argmax, x_shape, win):
    """The reference max pooling backward pass, with the winners of a fast argmax."""
    kh, kw, sh, sw, pt, pl, _, _ = win
    return ref.pool.backward(g, ref.pool.MaxPoolCache(x_shape, winners(argmax, kw), (kh, kw), (sh, sw), (pt, pl)))


def ref_conv(x, kernel, padding, up=(1, 1), bias=None):
    """(z, caches) of the reference stride-1 convolution of x upsampled by ``up``."""
    big, up_cache = ref.upsample.forward(x, up)
    z, cache = ref.conv.forward(big, kernel, bias, (1, 1), padding)
    return z, (cache, up_cache)


def ref_conv_backward(g, caches):
    """(dx, dkernel) of :func:`ref_conv`: the convolution's backward pass, then the upsampling's."""
    cache, up_cache = caches
    d_big, dkernel, _ = ref.conv.backward(g, cache)
    return ref.upsample.backward(d_big, up_cache), dkernel


def conv_tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_and_col2im_match_the_reference(dtype):
    rng = np.random.default_rng(1)
    for shape, win, _ in random_windows(rng):
        x = rng.standard_normal(shape).astype(dtype)
        cols = im2col.im2col(x, *win)
        np.testing.assert_array_equal(cols, ref_im2col(x, win), err_msg=f"shape {shape} window {win}")
        assert cols.dtype == dtype
        g = rng.standard_normal(cols.shape).astype(dtype)
        got, want = im2col.col2im(g, *shape, *win), ref_col2im(g, shape, win)
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6,
                                   err_msg=f"shape {shape} window {win}")
        # col2im is the adjoint of im2col: <im2col(x), g> == <x, col2im(g)>
        assert np.isclose(np.sum(cols * g, dtype=np.float64), np.sum(x * got, dtype=np.float64), rtol=1e-4)
        # accumulate=True adds to what out holds
        acc = x.copy()
        assert im2col.col2im(g, *shape, *win, acc, accumulate=True) is acc
        np.testing.assert_allclose(acc, x + want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_matches_the_reference(dtype):
    rng = np.random.default_rng(2)
    for shape, win, padding in random_windows(rng):
        x = rng.standard_normal(shape).astype(dtype)
        out, arg = pool.maxpool_forward(x, *win)
        out_r, cache = ref_maxpool(x, win, padding)
        np.testing.assert_array_equal(out, out_r)
        np.testing.assert_array_equal(winners(arg, win[1]), cache.winner)
        g = rng.standard_normal(out.shape).astype(dtype)
        assert arg.dtype == pool.argmax_dtype(*win[:2])
        np.testing.assert_allclose(pool.maxpool_backward(g, arg, shape[1], shape[2], *win[:6]),
                                   ref.pool.backward(g, cache), rtol=1e-6)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_maxpool_2x2_fast_path_matches_the_reference(padding):
    # whole 2x2 windows take the kernel's fast path, the odd last row/column the general one;
    # small integers make ties common (the first in row-major order must win on both paths)
    rng = np.random.default_rng(9)
    x = rng.integers(0, 3, (3, 7, 9, 5)).astype(np.float32)
    ho, pt, _ = ref.conv.output_size(7, 2, 2, padding)
    wo, pl, _ = ref.conv.output_size(9, 2, 2, padding)
    win = (2, 2, 2, 2, pt, pl, ho, wo)
    out, arg = pool.maxpool_forward(x, *win)
    out_r, cache = ref_maxpool(x, win, padding)
    np.testing.assert_array_equal(out, out_r)
    np.testing.assert_array_equal(winners(arg, 2), cache.winner)
    # its backward's own fast path writes every pixel once (odd last row/column: a window or none)
    g = rng.standard_normal(out.shape).astype(np.float32)
    dx = np.full(x.shape, np.nan, np.float32)
    pool.maxpool_backward(g, arg, 7, 9, *win[:6], dx)
    np.testing.assert_array_equal(dx, ref.pool.backward(g, cache))


@pytest.mark.parametrize("win", [(2, 2, 2, 2, 0, 0, 3, 4), (3, 2, 1, 2, 1, 0, 7, 4)])  # fast path; general
def test_maxpool_backward_through_a_relu_is_the_relu_backward_of_it(win):
    # pooling relu(z): relu_of= hands back dL/dz, the relu's derivative 1[relu(z) > 0] applied to
    # dL/d(relu(z)); many windows are all <= 0 (pooled value 0: no gradient at all)
    rng = np.random.default_rng(11)
    z = rng.standard_normal((3, 7, 9, 4)) - 0.8
    a, relu_cache = ref.activations.forward(z, "relu")
    out, arg = pool.maxpool_forward(a, *win)
    out_r, cache = ref_maxpool(a, win)
    np.testing.assert_array_equal(out, out_r)
    np.testing.assert_array_equal(winners(arg, win[1]), cache.winner)
    g = rng.standard_normal(out.shape)
    assert (out == 0).mean() > 0.1
    want = ref.activations.backward(ref.pool.backward(g, cache), relu_cache)
    np.testing.assert_array_equal(want, ref.pool.backward(g, cache) * (a > 0))
    got = pool.maxpool_backward(g, arg, 7, 9, *win[:6], np.full(z.shape, np.nan), relu_of=out)
    np.testing.assert_array_equal(got, want)


def test_out_buffers_give_the_same_results():
    rng = np.random.default_rng(8)
    for shape, win, _ in random_windows(rng, 6):
        x = rng.standard_normal(shape).astype(np.float32)
        cols = im2col.im2col(x, *win)
        buf = np.full_like(cols, np.nan)
        assert im2col.im2col(x, *win, buf) is buf
        np.testing.assert_array_equal(buf, cols)
        out, arg = pool.maxpool_forward(x, *win)
        buf, obuf = np.full(arg.shape, 99, arg.dtype), np.full(out.shape, np.nan, np.float32)
        out2, arg2 = pool.maxpool_forward(x, *win, buf, obuf)
        assert arg2 is buf and out2 is obuf
        np.testing.assert_array_equal(arg2, arg)
        np.testing.assert_array_equal(out2, out)
        # the backward kernels must overwrite every element of a dirty buffer
        g = rng.standard_normal(out.shape).astype(np.float32)
        dx = pool.maxpool_backward(g, arg, *shape[1:3], *win[:6])
        buf = np.full(shape, np.nan, np.float32)
        np.testing.assert_array_equal(pool.maxpool_backward(g, arg, *shape[1:3], *win[:6], buf), dx)
        np.testing.assert_array_equal(buf, dx)
        gc = rng.standard_normal(cols.shape).astype(np.float32)
        dx = im2col.col2im(gc, *shape, *win)
        buf = np.full(shape, np.nan, np.float32)
        assert im2col.col2im(gc, *shape, *win, buf) is buf
        np.testing.assert_allclose(buf, dx, rtol=1e-5, atol=1e-6)
    x = rng.standard_normal((3, 4, 5, 2)).astype(np.float32)
    up = upsample.upsample_forward(x, 2, 3)
    buf = np.full(up.shape, np.nan, np.float32)
    assert upsample.upsample_forward(x, 2, 3, buf) is buf
    np.testing.assert_array_equal(buf, up)
    dx = upsample.upsample_backward(up, 2, 3)
    buf = np.full(x.shape, np.nan, np.float32)
    assert upsample.upsample_backward(up, 2, 3, buf) is buf
    np.testing.assert_allclose(buf, dx, rtol=1e-6)


def test_maxpool_argmax_codes_and_large_windows():
    # the winner's place in its window, dy << 4 | dx in a uint8; windows over 16 wide use an int32
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 3, 2, 0] = 5.0  # in the bottom-right 2x2 window at (1, 0) of it
    out, arg = pool.maxpool_forward(x, 2, 2, 2, 2, 0, 0, 2, 2)
    assert arg.dtype == np.uint8 and arg[0, 1, 1, 0] == (1 << 4 | 0) and out[0, 1, 1, 0] == 5.0
    assert pool.code_shift(1) == 4 and pool.code_shift(4) == 16
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 20, 18, 3))
    win = (17, 3, 1, 2, 8, 1, 20, 9)  # a 17x3 window, stride (1, 2), padding 8 above and 1 left
    out, arg = pool.maxpool_forward(x, *win)
    out_r, cache = ref_maxpool(x, win)
    assert arg.dtype == np.int32 and pool.argmax_dtype(17, 3) == np.int32
    np.testing.assert_array_equal(out, out_r)
    np.testing.assert_array_equal(winners(arg, 3), cache.winner)
    assert (arg >> 16).max() > 8  # winners below the 16th row of their window: a uint8 code would not hold them
    g = rng.standard_normal(out.shape)
    np.testing.assert_allclose(pool.maxpool_backward(g, arg, 20, 18, *win[:6]), ref.pool.backward(g, cache),
                               rtol=1e-12)


def test_maxpool_ties_send_gradient_to_one_input():
    x = np.zeros((1, 2, 2, 1), np.float64)  # all four inputs tie
    out, arg = pool.maxpool_forward(x, 2, 2, 2, 2, 0, 0, 1, 1)
    dx = pool.maxpool_backward(np.ones_like(out), arg, 2, 2, 2, 2, 2, 2, 0, 0)
    assert dx.sum() == 1.0 and np.count_nonzero(dx) == 1
    assert dx[0, 0, 0, 0] == 1.0  # the first in row-major order, as the reference's


def test_maxpool_same_pads_with_minus_inf_at_bottom_right():
    x = -np.ones((1, 7, 7, 1), np.float32) * np.arange(1, 50, dtype=np.float32).reshape(1, 7, 7, 1)
    ho, pt, pb = ref.conv.output_size(7, 2, 2, "same")
    assert (ho, pt, pb) == (4, 0, 1)
    out, _ = pool.maxpool_forward(x, 2, 2, 2, 2, pt, pt, ho, ho)
    # the last row/column windows hold one real row/column: their max is a real (negative) value, not 0
    assert out[0, 3, 3, 0] == -49.0 and (out < 0).all()
    np.testing.assert_array_equal(out, ref.pool.forward(x, (2, 2), None, "same")[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_upsampling_matches_the_reference_and_backward_sums_blocks(dtype):
    rng = np.random.default_rng(3)
    for sh, sw in [(2, 2), (1, 3), (3, 2)]:
        x = rng.standard_normal((2, 3, 4, 2)).astype(dtype)
        want, cache = ref.upsample.forward(x, (sh, sw))
        np.testing.assert_array_equal(upsample.upsample_forward(x, sh, sw), want)
        g = rng.standard_normal((2, 3 * sh, 4 * sw, 2)).astype(dtype)
        got = upsample.upsample_backward(g, sh, sw)
        np.testing.assert_allclose(got, ref.upsample.backward(g, cache), rtol=1e-6)
        np.testing.assert_allclose(got[0, 0, 0, 0], g[0, :sh, :sw, 0].sum(), rtol=1e-6)


def test_col2im_loses_no_update_with_overlapping_windows():
    # stride 1, 3x3 windows: every interior pixel is covered by 9 windows
    x_shape = (4, 6, 6, 3)
    win = (3, 3, 1, 1, 1, 1, 6, 6)
    ones = np.ones((4 * 36, 27), np.float64)
    dx = im2col.col2im(ones, *x_shape, *win)
    assert dx[:, 1:-1, 1:-1, :].min() == 9 and dx[:, 0, 0, :].max() == 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_conv_matches_the_reference_and_its_adjoints(dtype):
    # conv2d_s1 (forward), conv2d_s1_input_grad and conv2d_s1_kernel_grad agree with the reference
    # convolution's forward and backward passes, and are adjoints:
    # <conv(x, w), g> = <x, conv(g, w_flipped)> = <w, kernel_grad(x, g)>
    rng = np.random.default_rng(4)
    tol = conv_tol(dtype)
    # (the kernels take output channels and, for the rest, input channels four at a time)
    cases = [(shape, win) for shape, win, _ in random_windows(rng, 16)]
    cases += [((2, 5, 6, 9), (3, 3)), ((1, 4, 3, 4), (2, 3))]
    for shape, (kh, kw, *_) in cases:
        n, h, w, cin = shape
        padding = str(rng.choice(["valid", "same"])) if h >= kh and w >= kw else "same"
        ho, pt, _ = ref.conv.output_size(h, kh, 1, padding)
        wo, pl, _ = ref.conv.output_size(w, kw, 1, padding)
        cout = int(rng.integers(1, 11))
        x = rng.standard_normal(shape).astype(dtype)
        wt = rng.standard_normal((kh, kw, cin, cout)).astype(dtype)
        g = rng.standard_normal((n, ho, wo, cout)).astype(dtype)
        where = f"shape {shape} kernel {wt.shape} padding {padding}"
        want, caches = ref_conv(x, wt, padding)
        want_dx, want_dw = ref_conv_backward(g, caches)
        z = conv_direct.conv2d_s1(x, wt, pt, pl, ho, wo, np.full((n, ho, wo, cout), np.nan, dtype))
        np.testing.assert_allclose(z, want, **tol, err_msg=where)
        dx = conv_direct.conv2d_s1_input_grad(g, wt, pt, pl, np.full_like(x, np.nan))
        np.testing.assert_allclose(dx, want_dx, **tol, err_msg=where)
        dw = conv_direct.conv2d_s1_kernel_grad(x, g, pt, pl, np.full_like(wt, np.nan))
        np.testing.assert_allclose(dw, want_dw, **tol, err_msg=where)
        zg = np.sum(z * g, dtype=np.float64)
        assert np.isclose(zg, np.sum(x * dx, dtype=np.float64), rtol=1e-4), where
        assert np.isclose(zg, np.sum(wt * dw, dtype=np.float64), rtol=1e-4), where


@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_conv_of_an_upsampled_input_matches_the_reference_and_adjoints(dtype):
    # conv2d_s1(x, up=u) = the convolution of the upsampled x, phase by phase; its input and kernel
    # gradients are those of the convolution of the upsampled x followed by the upsampling's own
    # backward pass
    rng = np.random.default_rng(6)
    tol = conv_tol(dtype)
    for case in range(12):
        up = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        hs, ws, cin, cout = (int(v) for v in rng.integers(1, [5, 5, 6, 6]))
        n = 2
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        h, w = hs * up[0], ws * up[1]
        padding = "valid" if case % 2 and h >= kh and w >= kw else "same"
        ho, pt, _ = ref.conv.output_size(h, kh, 1, padding)
        wo, pl, _ = ref.conv.output_size(w, kw, 1, padding)
        x = rng.standard_normal((n, hs, ws, cin)).astype(dtype)
        wt = rng.standard_normal((kh, kw, cin, cout)).astype(dtype)
        g = rng.standard_normal((n, ho, wo, cout)).astype(dtype)
        where = f"case {case}: x {x.shape} up {up} kernel {wt.shape} {padding}"
        want, caches = ref_conv(x, wt, padding, up)
        want_dx, want_dw = ref_conv_backward(g, caches)
        z = conv_direct.conv2d_s1(x, wt, pt, pl, ho, wo, np.full((n, ho, wo, cout), np.nan, dtype), up=up)
        np.testing.assert_allclose(z, want, **tol, err_msg=where)
        # the same as the direct convolution of the upsampled image, formed
        big = upsample.upsample_forward(x, *up)
        np.testing.assert_allclose(z, conv_direct.conv2d_s1(big, wt, pt, pl, ho, wo, np.empty_like(z)), **tol)
        dw = conv_direct.conv2d_s1_kernel_grad(x, g, pt, pl, np.full_like(wt, np.nan), up=up)
        np.testing.assert_allclose(dw, want_dw, **tol, err_msg=where)
        dx = np.full_like(x, np.nan)  # every pixel written
        assert conv_direct.conv2d_s1_input_grad(g, wt, pt, pl, dx, up=up) is dx
        np.testing.assert_allclose(dx, want_dx, **tol, err_msg=where)
        assert np.isclose(np.sum(z * g, dtype=np.float64), np.sum(x * dx, dtype=np.float64), rtol=1e-4), where


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [0, 1, 2])
def test_direct_conv_adds_bias_and_activation_as_it_writes(dtype, act):
    # conv2d_s1(bias=, act=) = act(convolution + bias), plain and upsampled input
    rng = np.random.default_rng(7 + act)
    tol = conv_tol(dtype)
    for up, cin, cout in [((1, 1), 1, 9), ((2, 2), 5, 1), ((1, 2), 3, 4)]:
        x = rng.standard_normal((3, 4, 3, cin)).astype(dtype)
        h, w = 4 * up[0], 3 * up[1]
        wt = rng.standard_normal((3, 3, cin, cout)).astype(dtype)
        b = rng.standard_normal(cout).astype(dtype)
        got = conv_direct.conv2d_s1(x, wt, 1, 1, h, w, np.full((3, h, w, cout), np.nan, dtype), up=up, bias=b, act=act)
        z, _ = ref_conv(x, wt, "same", up, bias=b)
        want, _ = ref.activations.forward(z, ACT_NAMES[act])
        np.testing.assert_allclose(got, want, **tol)
        plain = conv_direct.conv2d_s1(x, wt, 1, 1, h, w, np.empty_like(got), up=up)
        np.testing.assert_allclose(got, ref.activations.forward(plain + b, ACT_NAMES[act])[0], **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [0, 1, 2])
def test_direct_conv_with_the_pooling_in_its_kernel(dtype, act):
    # conv2d_s1_maxpool2x2 = the max pooling of act(convolution + bias), winners included; and the
    # kernel and input gradients from the pooled output's gradient (argmax=) = those of its unpooling
    rng = np.random.default_rng(11 + act)
    tol = conv_tol(dtype)
    for (n, h, w, cin, cout, padding) in [(3, 6, 4, 1, 9, "same"), (2, 8, 8, 5, 4, "same"), (1, 6, 8, 3, 2, "valid")]:
        ho, pt, _ = ref.conv.output_size(h, 3, 1, padding)
        wo, pl, _ = ref.conv.output_size(w, 3, 1, padding)
        x = rng.standard_normal((n, h, w, cin)).astype(dtype)
        wt = rng.standard_normal((3, 3, cin, cout)).astype(dtype)
        b = rng.standard_normal(cout).astype(dtype)
        shape = (n, ho // 2, wo // 2, cout)
        pooled, argmax = np.full(shape, np.nan, dtype), np.full(shape, 9, np.uint8)
        assert conv_direct.conv2d_s1_maxpool2x2(x, wt, pt, pl, ho, wo, b, act, pooled, argmax) is pooled
        # the reference: convolution, activation, pooling
        z_ref, caches = ref_conv(x, wt, padding, bias=b)
        a_ref, _ = ref.activations.forward(z_ref, ACT_NAMES[act])
        want, _ = ref.pool.forward(a_ref, (2, 2))
        np.testing.assert_allclose(pooled, want, **tol)
        # the winners: those of the reference pooling of the fast convolution's output (the same
        # numbers, so no rounding can turn a near-tie the other way)
        z = conv_direct.conv2d_s1(x, wt, pt, pl, ho, wo, np.empty((n, ho, wo, cout), dtype), bias=b, act=act)
        want, cache = ref.pool.forward(z, (2, 2))
        np.testing.assert_array_equal(pooled, want)
        np.testing.assert_array_equal(winners(argmax, 2), cache.winner)
        g = rng.standard_normal(shape).astype(dtype)
        unpooled = unpool(g, argmax, z.shape, (2, 2, 2, 2, 0, 0, ho // 2, wo // 2))
        want_dx, want_dw = ref_conv_backward(unpooled, caches)
        dw = conv_direct.conv2d_s1_kernel_grad(x, g, pt, pl, np.full_like(wt, np.nan), argmax=argmax)
        np.testing.assert_allclose(dw, conv_direct.conv2d_s1_kernel_grad(x, unpooled, pt, pl, np.empty_like(wt)), **tol)
        np.testing.assert_allclose(dw, want_dw, **tol)
        dx = conv_direct.conv2d_s1_input_grad(g, wt, pt, pl, np.full_like(x, np.nan), argmax=argmax)
        np.testing.assert_allclose(dx, conv_direct.conv2d_s1_input_grad(unpooled, wt, pt, pl, np.empty_like(x)), **tol)
        np.testing.assert_allclose(dx, want_dx, **tol)


@pytest.mark.parametrize("up", [(1, 1), (2, 2), (3, 2), (1, 3)])
def test_folded_kernels_and_their_adjoint(up):
    # fold_kernel sums the taps that read one small pixel; unfold_kernel_grad is its adjoint:
    # <fold(w), D> = <w, unfold(D)>, for fold's stacked layout and a list of per-phase arrays alike
    rng = np.random.default_rng(12)
    for kh, kw, padding in [(3, 3, "same"), (2, 3, "same"), (3, 1, "valid"), (1, 1, "same")]:
        h, w = 4 * up[0], 5 * up[1]
        ho, pt, _ = ref.conv.output_size(h, kh, 1, padding)
        wo, pl, _ = ref.conv.output_size(w, kw, 1, padding)
        table, taps = phases.upsampled_phases(kh, kw, pt, pl, ho, wo, up)
        assert table.shape == (up[0] * up[1], 8) and len(taps) == len(table)
        assert sorted(map(tuple, table[:, :2])) == [(py, px) for py in range(up[0]) for px in range(up[1])]
        assert (table[:, 6] * table[:, 7]).sum() == ho * wo  # the phases' outputs: each output once
        wt = rng.standard_normal((kh, kw, 2, 3))
        folded = phases.fold_kernel(wt, table, taps)
        assert folded.shape == (len(table), table[:, 4].max(), table[:, 5].max(), 2, 3)
        for r in range(len(table)):  # every tap folded into one tap of each phase
            np.testing.assert_allclose(folded[r].sum(axis=(0, 1)), wt.sum(axis=(0, 1)), rtol=1e-12)
        if up == (1, 1):
            np.testing.assert_array_equal(folded[0], wt)
        d = rng.standard_normal(folded.shape)
        dw = np.full_like(wt, np.nan)
        assert phases.unfold_kernel_grad(d, taps, dw) is dw
        assert np.isclose(np.vdot(folded, d), np.vdot(wt, dw), rtol=1e-12)
        per_phase = [d[r, :kph, :kpw] for r, (kph, kpw) in enumerate(table[:, 4:6])]
        np.testing.assert_allclose(phases.unfold_kernel_grad(per_phase, taps, np.empty_like(wt)), dw, rtol=1e-12)


def wrong_out_calls():
    """Calls of every kernel wrapper with one array of a wrong shape (or dtype), by name."""
    rng = np.random.default_rng(13)
    f32, u8 = np.float32, np.uint8
    x = rng.standard_normal((2, 6, 6, 3)).astype(f32)
    wt = rng.standard_normal((3, 3, 3, 4)).astype(f32)
    b = np.zeros(4, f32)
    g = rng.standard_normal((2, 6, 6, 4)).astype(f32)
    gp, ap = np.zeros((2, 3, 3, 4), f32), np.zeros((2, 3, 3, 4), u8)
    conv, pooled, dx_of, dw_of = (conv_direct.conv2d_s1, conv_direct.conv2d_s1_maxpool2x2,
                                  conv_direct.conv2d_s1_input_grad, conv_direct.conv2d_s1_kernel_grad)
    return {
        "im2col": lambda: im2col.im2col(x, 3, 3, 1, 1, 1, 1, 6, 6, np.empty((72, 26), f32)),
        "im2col dtype": lambda: im2col.im2col(x, 3, 3, 1, 1, 1, 1, 6, 6, np.empty((72, 27), np.float64)),
        "col2im": lambda: im2col.col2im(np.zeros((72, 27), f32), 2, 6, 6, 3, 3, 3, 1, 1, 1, 1, 6, 6,
                                        np.empty((2, 6, 5, 3), f32)),
        "maxpool_forward out": lambda: pool.maxpool_forward(x, 2, 2, 2, 2, 0, 0, 3, 3, out=np.empty((2, 3, 2, 3), f32)),
        "maxpool_forward argmax": lambda: pool.maxpool_forward(x, 2, 2, 2, 2, 0, 0, 3, 3,
                                                               argmax_out=np.empty((2, 3, 3, 3), np.int32)),
        "maxpool_backward": lambda: pool.maxpool_backward(gp, ap, 6, 6, 2, 2, 2, 2, 0, 0, np.empty((2, 6, 5, 4), f32)),
        "maxpool_backward relu_of": lambda: pool.maxpool_backward(gp, ap, 6, 6, 2, 2, 2, 2, 0, 0, relu_of=gp[:, :2]),
        "upsample_forward": lambda: upsample.upsample_forward(x, 2, 2, np.empty((2, 12, 11, 3), f32)),
        "upsample_backward": lambda: upsample.upsample_backward(x, 2, 2, np.empty((2, 3, 2, 3), f32)),
        "conv2d_s1 channels": lambda: conv(x, wt, 1, 1, 6, 6, np.empty((2, 6, 6, 3), f32)),
        "conv2d_s1 batch": lambda: conv(x, wt, 1, 1, 6, 6, np.empty((1, 6, 6, 4), f32)),
        "conv2d_s1 size": lambda: conv(x, wt, 1, 1, 6, 6, np.empty((2, 5, 6, 4), f32)),
        "conv2d_s1 beyond x": lambda: conv(x, wt, 1, 1, 12, 6, np.empty((2, 12, 6, 4), f32)),
        "conv2d_s1 dtype": lambda: conv(x, wt, 1, 1, 6, 6, np.empty((2, 6, 6, 4), np.float64)),
        "conv2d_s1 bias": lambda: conv(x, wt, 1, 1, 6, 6, np.empty((2, 6, 6, 4), f32), bias=b[:3]),
        "conv2d_s1_maxpool2x2 pooled": lambda: pooled(x, wt, 1, 1, 6, 6, b, 0, np.empty((2, 3, 2, 4), f32),
                                                      np.empty((2, 3, 2, 4), u8)),
        "conv2d_s1_maxpool2x2 argmax": lambda: pooled(x, wt, 1, 1, 6, 6, b, 0, np.empty((2, 3, 3, 4), f32),
                                                      np.empty((2, 3, 3, 3), u8)),
        "conv2d_s1_input_grad channels": lambda: dx_of(g, wt, 1, 1, np.empty((2, 6, 6, 2), f32)),
        "conv2d_s1_input_grad batch": lambda: dx_of(g, wt, 1, 1, np.empty((3, 6, 6, 3), f32)),
        "conv2d_s1_input_grad size": lambda: dx_of(g, wt, 1, 1, np.empty((2, 2, 2, 3), f32)),
        "conv2d_s1_input_grad argmax": lambda: dx_of(gp, wt, 1, 1, np.empty((2, 6, 6, 3), f32), argmax=ap[:, :2]),
        "conv2d_s1_kernel_grad channels": lambda: dw_of(x, g, 1, 1, np.empty((3, 3, 3, 5), f32)),
        "conv2d_s1_kernel_grad inputs": lambda: dw_of(x, g, 1, 1, np.empty((3, 3, 2, 4), f32)),
        "conv2d_s1_kernel_grad size": lambda: dw_of(x[:, :2], g, 1, 1, np.empty_like(wt)),
    }


@pytest.mark.parametrize("what", sorted(wrong_out_calls()))
def test_wrong_out_arrays_are_rejected(what):
    # the kernels trust their arrays' shapes: every wrapper checks them first (a wrong shape is a
    # ValueError, never a write outside an array)
    call = wrong_out_calls()[what]
    with pytest.raises(ValueError):
        call()


def _pool_in_child(x):
    out, _ = pool.maxpool_forward(x, 2, 2, 2, 2, 0, 0, 3, 3)
    return float(out.sum())


def test_forked_children_run_parallel_kernels():
    # GNU OpenMP kills a forked child that runs a parallel region; npae's threading layer
    # (TBB, else workqueue: npae/fast/runtime.py) must let multiprocessing's fork start method work
    import multiprocessing
    import os

    import numba

    x = np.random.default_rng(0).random((8, 6, 6, 3), dtype=np.float32)
    want = _pool_in_child(x)  # the parent runs a parallel kernel first
    assert numba.threading_layer() in ("tbb", "workqueue") or "NUMBA_THREADING_LAYER" in os.environ
    with multiprocessing.get_context("fork").Pool(2) as pool_of_children:
        got = pool_of_children.map_async(_pool_in_child, [x, x]).get(timeout=120)
    assert got == [want, want]
