"""The fused element-wise kernels equal their NumPy twins (float32 and float64)."""

import numba
import numpy as np
import pytest

from npae import elementwise as E  # noqa: N812

DTYPES = [np.float32, np.float64]


def tol(dtype):
    return {"rtol": 2e-6, "atol": 1e-7} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}


@numba.njit(fastmath={"contract"})  # as in the kernels (FMA where the CPU has it)
def _exp_each(x, out):
    for i in range(x.size):
        out[i] = E.exp_nonpos(x[i])


def test_exp_nonpos_float32_is_accurate():
    x = -np.linspace(0, 87.33, 2_000_001, dtype=np.float32)
    got = np.empty_like(x)
    _exp_each(x, got)
    exact = np.exp(x.astype(np.float64))
    ulps = np.abs(got - exact) / np.spacing(exact.astype(np.float32))
    # 0.93 ulp measured with FMA, 1.21 without (NumPy's own float32 exp: 2.4)
    assert got.dtype == np.float32 and ulps.max() <= 1.5, ulps.max()
    # edges: signed zero, below the smallest normal (flushed to 0), -inf, NaN
    edge = np.array([0.0, -0.0, -1e-30, -87.34, -100.0, -np.inf, np.nan], np.float32)
    got = np.empty_like(edge)
    _exp_each(edge, got)
    np.testing.assert_array_equal(got[:6], [1, 1, 1, 0, 0, 0])
    assert np.isnan(got[6])


def test_exp_nonpos_float64_is_libm_exp():
    x = -np.random.default_rng(0).exponential(5.0, 10_000)
    got = np.empty_like(x)
    _exp_each(x, got)
    np.testing.assert_allclose(got, np.exp(x), rtol=3e-16, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [0, 1, 2])
def test_bias_act_forward_and_backward(dtype, act):
    rng = np.random.default_rng(act)
    z = (rng.standard_normal((7, 13)) * 4).astype(dtype)
    z[0, :3] = [-1000, 1000, 0]  # extreme logits stay finite
    b = rng.standard_normal(13).astype(dtype)
    got, want = E.bias_act_forward(z.copy(), b, act), E.bias_act_forward_ref(z.copy(), b, act)
    np.testing.assert_allclose(got, want, **tol(dtype))
    assert np.isfinite(got).all() and got.dtype == dtype
    g = rng.standard_normal(z.shape).astype(dtype)
    np.testing.assert_allclose(E.act_backward(g, got, act, np.empty_like(g)),
                               E.act_backward_ref(g, got, act, np.empty_like(g)), **tol(dtype))


@pytest.mark.parametrize("act", [0, 1, 2])
@pytest.mark.parametrize("cols", [1, 3])
def test_bias_act_on_few_columns(act, cols):
    # few columns (a 1-channel image as (N*H*W, 1)) are run as wider rows with the bias tiled:
    # contiguous, not contiguous, and a row count with an odd factor
    rng = np.random.default_rng(cols)
    b = rng.standard_normal(cols).astype(np.float32)
    for z in [rng.standard_normal((6 * 512, cols)), rng.standard_normal((6 * 512, 2 * cols))[:, ::2],
              rng.standard_normal((3 * 7, cols))]:
        z = (4 * z).astype(np.float32)
        got = E.bias_act_forward(z.copy(), b, act)
        np.testing.assert_allclose(got, E.bias_act_forward_ref(z.copy(), b, act), **tol(np.float32))
        g = rng.standard_normal(z.shape).astype(np.float32)
        np.testing.assert_allclose(E.act_backward(g, got, act, np.empty_like(g)),
                                   E.act_backward_ref(g, got, act, np.empty_like(g)), **tol(np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_losses(dtype):
    rng = np.random.default_rng(5)
    z = (rng.standard_normal((9, 11)) * 3).astype(dtype)
    t = rng.uniform(0, 1, z.shape).astype(dtype)
    for fused, ref in [(E.sigmoid_bce_with_grad, E.sigmoid_bce_with_grad_ref), (E.mse_with_grad, E.mse_with_grad_ref)]:
        g1, g2 = np.empty_like(z), np.empty_like(z)
        assert np.isclose(fused(z, t, g1), ref(z, t, g2), rtol=1e-5 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(g1, g2, **tol(dtype))


def test_float32_bce_sum_is_close_to_float64_over_whole_blocks():
    # the float32 kernel sums each block of 32 in float32: over a batch-sized array its loss must
    # still agree with the float64 reference computed on the same numbers
    rng = np.random.default_rng(7)
    z = (rng.standard_normal((64, 784)) * 4).astype(np.float32)
    t = rng.uniform(0, 1, z.shape).astype(np.float32)
    got = E.sigmoid_bce_with_grad(z, t, np.empty_like(z))
    want = E.sigmoid_bce_with_grad_ref(z.astype(np.float64), t.astype(np.float64), np.empty(z.shape))
    assert abs(got - want) <= 1e-8 * want  # measured 5e-10; float32 pairwise summing gives 4e-8


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_kernels(dtype):
    rng = np.random.default_rng(6)
    p, g = rng.standard_normal(50).astype(dtype), rng.standard_normal(50).astype(dtype)
    slots = [rng.uniform(0, 1, 50).astype(dtype) for _ in range(2)]
    a = [p.copy(), g, *(s.copy() for s in slots)]
    b = [p.copy(), g, *(s.copy() for s in slots)]
    E.adam_update(*a, 0.01, 0.9, 0.999, 1e-7)
    E.adam_update_ref(*b, 0.01, 0.9, 0.999, 1e-7)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, **tol(dtype))
    a = [p.copy(), g, *(s.copy() for s in slots)]
    b = [p.copy(), g, *(s.copy() for s in slots)]
    E.adadelta_update(*a, 1.0, 0.95, 1e-7)
    E.adadelta_update_ref(*b, 1.0, 0.95, 1e-7)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, **tol(dtype))


def test_gather_rows_equals_take():
    rng = np.random.default_rng(7)
    src = rng.standard_normal((50, 6, 5)).astype(np.float32).reshape(50, -1)
    idx = rng.permutation(50)[:17]
    out = np.full((17, 30), np.nan, np.float32)
    np.testing.assert_array_equal(E.gather_rows(src, idx, out), np.take(src, idx, axis=0))
