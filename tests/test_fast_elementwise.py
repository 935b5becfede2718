"""The fused element-wise kernels (npae.fast.elementwise) compute their reference operations
(npae.functional: activations, losses, optimizers), in float32 and float64."""

import numba
import numpy as np
import pytest

from npae import functional as ref
from npae.fast import elementwise as E  # noqa: N812

DTYPES = [np.float32, np.float64]
ACT_NAMES = {code: name for name, code in E.ACT_CODES.items()}  # 0 linear, 1 relu, 2 sigmoid


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


def reference_bias_act(z, b, act):
    """(a, cache) of the reference activation of z + b."""
    return ref.activations.forward(z + b, ACT_NAMES[act])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [0, 1, 2])
def test_bias_act_forward_and_backward(dtype, act):
    rng = np.random.default_rng(act)
    z = (rng.standard_normal((7, 13)) * 4).astype(dtype)
    z[0, :3] = [-1000, 1000, 0]  # extreme logits stay finite
    b = rng.standard_normal(13).astype(dtype)
    want, cache = reference_bias_act(z, b, act)
    got = z.copy()
    assert E.bias_act_forward(got, b, act) is got  # in place
    np.testing.assert_allclose(got, want, **tol(dtype))
    assert np.isfinite(got).all() and got.dtype == dtype
    g = rng.standard_normal(z.shape).astype(dtype)
    out = np.full_like(g, np.nan)
    assert E.act_backward(g, got, act, out) is out  # (the derivative from the output a)
    # the reference backward pass from the same output (sigmoid's a (1 - a) magnifies a's last-ulp
    # differences where a is near 1)
    np.testing.assert_allclose(out, ref.activations.backward(g, cache._replace(a=got)), **tol(dtype))


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
        want, cache = reference_bias_act(z, b, act)
        got = E.bias_act_forward(z.copy(), b, act)
        np.testing.assert_allclose(got, want, **tol(np.float32))
        g = rng.standard_normal(z.shape).astype(np.float32)
        np.testing.assert_allclose(E.act_backward(g, got, act, np.empty_like(g)),
                                   ref.activations.backward(g, cache._replace(a=got)), **tol(np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_act_in_place_on_a_strided_view(dtype):
    # a view that is not contiguous: the kernel must write the view's elements, not a copy's
    rng = np.random.default_rng(4)
    base = (rng.standard_normal((6, 10)) * 3).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    want = base.copy()
    want[:, ::2], _ = reference_bias_act(base[:, ::2], b, 1)
    E.bias_act_forward(base[:, ::2], b, 1)
    np.testing.assert_allclose(base, want, **tol(dtype))


# the fused losses return the sum over all elements (the reference: the mean) and fill the gradient
LOSSES = [(E.sigmoid_bce_with_grad, ref.losses.sigmoid_bce_forward, ref.losses.sigmoid_bce_backward),
          (E.mse_with_grad, ref.losses.mse_forward, ref.losses.mse_backward)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_losses(dtype):
    rng = np.random.default_rng(5)
    z = (rng.standard_normal((9, 11)) * 3).astype(dtype)
    t = rng.uniform(0, 1, z.shape).astype(dtype)
    for fused, forward, backward in LOSSES:
        grad = np.full_like(z, np.nan)
        loss, cache = forward(z, t)
        assert np.isclose(fused(z, t, grad), loss * z.size, rtol=1e-5 if dtype == np.float32 else 1e-12), fused
        np.testing.assert_allclose(grad, backward(cache), **tol(dtype))
        assert grad.dtype == dtype


def test_float32_bce_sum_is_close_to_float64_over_whole_blocks():
    # the float32 kernel sums each block of 32 in float32: over a batch-sized array its loss must
    # still agree with the float64 reference computed on the same numbers
    rng = np.random.default_rng(7)
    z = (rng.standard_normal((64, 784)) * 4).astype(np.float32)
    t = rng.uniform(0, 1, z.shape).astype(np.float32)
    got = E.sigmoid_bce_with_grad(z, t, np.empty_like(z))
    want = ref.losses.sigmoid_bce_forward(z.astype(np.float64), t.astype(np.float64))[0] * z.size
    assert abs(got - want) <= 1e-8 * want  # measured 5e-10; float32 pairwise summing gives 4e-8


def test_loss_sums_are_the_same_on_every_run():
    rng = np.random.default_rng(8)
    z = (rng.standard_normal((256, 784)) * 3).astype(np.float32)
    t = rng.uniform(0, 1, z.shape).astype(np.float32)
    for fused, _, _ in LOSSES:
        first = fused(z, t, np.empty_like(z))
        assert all(fused(z, t, np.empty_like(z)) == first for _ in range(5)), fused


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_kernels(dtype):
    rng = np.random.default_rng(6)
    p, g = rng.standard_normal(50).astype(dtype), rng.standard_normal(50).astype(dtype)
    slots = [rng.uniform(0, 1, 50).astype(dtype) for _ in range(2)]
    for fast, reference, hyper in [(E.adam_update, ref.optimizers.adam_update, (0.01, 0.9, 0.999, 1e-7)),
                                   (E.adadelta_update, ref.optimizers.adadelta_update, (1.0, 0.95, 1e-7))]:
        a = [p.copy(), g, *(s.copy() for s in slots)]
        b = [p.copy(), g, *(s.copy() for s in slots)]
        fast(*a, *hyper)
        reference(*b, *hyper)
        assert not np.array_equal(a[0], p)  # the parameter moved, in place
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, **tol(dtype))


def test_optimizer_kernels_update_in_place_and_reject_mismatched_slots():
    p = np.ones((4, 5), np.float32)
    g, m, v = np.full_like(p, 0.5), np.zeros_like(p), np.zeros_like(p)
    E.adam_update(p, g, m, v, 0.1, 0.9, 0.999, 1e-7)
    assert (p < 1).all() and (m > 0).all() and (v > 0).all()  # (4, 5) arrays, updated where they are
    with pytest.raises(ValueError, match="optimizer"):
        E.adam_update(p, g, m[:3], v, 0.1, 0.9, 0.999, 1e-7)
    with pytest.raises(ValueError, match="optimizer"):
        E.adadelta_update(p, g, m, v.astype(np.float64), 1.0, 0.95, 1e-7)
    with pytest.raises(ValueError, match="C-contiguous"):
        E.adam_update(p.T, g.T, m.T, v.T, 0.1, 0.9, 0.999, 1e-7)


def test_gather_rows_equals_take():
    rng = np.random.default_rng(7)
    src = rng.standard_normal((50, 6, 5)).astype(np.float32).reshape(50, -1)
    idx = rng.permutation(50)[:17]
    out = np.full((17, 30), np.nan, np.float32)
    assert E.gather_rows(src, idx, out) is out
    np.testing.assert_array_equal(out, np.take(src, idx, axis=0))


@pytest.mark.parametrize("bad", [50, -1, 1000])
def test_gather_rows_rejects_indices_out_of_range(bad):
    rng = np.random.default_rng(9)
    src = rng.standard_normal((50, 30)).astype(np.float32)
    idx = rng.permutation(50)[:17]
    idx[5] = bad
    with pytest.raises(IndexError, match=r"\[0, 50\)"):
        E.gather_rows(src, idx, np.empty((17, 30), np.float32))


def wrong_out_calls():
    """Calls of the element-wise kernels' wrappers with one array of a wrong shape (or dtype)."""
    f32 = np.float32
    z, t = np.zeros((7, 13), f32), np.zeros((7, 13), f32)
    src = np.zeros((5, 3), f32)
    return {
        "bias_act_forward bias": lambda: E.bias_act_forward(z.copy(), np.zeros(12, f32), 1),
        "act_backward transposed": lambda: E.act_backward(z, t, 1, np.empty((13, 7), f32)),
        "act_backward size": lambda: E.act_backward(z, t, 1, np.empty((7, 12), f32)),
        "act_backward output": lambda: E.act_backward(z, t[:, :12], 1, np.empty((7, 13), f32)),
        "sigmoid_bce_with_grad grad": lambda: E.sigmoid_bce_with_grad(z, t, np.empty((7, 12), f32)),
        "sigmoid_bce_with_grad target": lambda: E.sigmoid_bce_with_grad(z, t[:5], np.empty((7, 13), f32)),
        "mse_with_grad grad": lambda: E.mse_with_grad(z, t, np.empty((3, 13), f32)),
        "mse_with_grad target": lambda: E.mse_with_grad(z, t[:, :3], np.empty((7, 13), f32)),
        "gather_rows features": lambda: E.gather_rows(src, np.arange(3), np.empty((3, 2), f32)),
        "gather_rows rows": lambda: E.gather_rows(src, np.arange(3), np.empty((4, 3), f32)),
        "gather_rows dtype": lambda: E.gather_rows(src, np.arange(3), np.empty((3, 3))),
    }


@pytest.mark.parametrize("what", sorted(wrong_out_calls()))
def test_wrong_out_arrays_are_rejected(what):
    # the kernels index every array by the first one's shape: each wrapper checks the others first
    # (a wrong shape is a ValueError, never a read or write outside an array)
    call = wrong_out_calls()[what]
    with pytest.raises(ValueError):
        call()
